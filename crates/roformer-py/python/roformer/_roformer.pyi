# The compiled extension; use the `roformer.Separator` wrapper, which checks shapes and dtypes.
from typing import Dict, List, Optional

import numpy as np
import numpy.typing as npt

class RoformerError(Exception): ...

class _Separator:
    def __init__(
        self,
        model: Optional[str],
        config: Optional[str],
        device: str,
        precision: str,
        tta: bool,
        overlap: Optional[int],
        chunk_size: Optional[int],
        batch_size: Optional[int],
        instrumental: bool,
    ) -> None: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def stems(self) -> List[str]: ...
    def describe(self) -> List[str]: ...
    def separate(
        self, audio: npt.NDArray[np.float32], sample_rate: int
    ) -> Dict[str, npt.NDArray[np.float32]]: ...
    def separate_file(
        self, input: str, out_dir: str, format: str, pcm: str, overwrite: bool
    ) -> List[str]: ...
