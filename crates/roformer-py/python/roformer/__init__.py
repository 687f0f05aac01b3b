"""Music source separation with BS-RoFormer and Mel-Band RoFormer, compatible with the
checkpoints and YAML configs of ZFTurbo's Music-Source-Separation-Training (MSST).

    import roformer
    sep = roformer.Separator("model.ckpt", config="model.yaml")
    stems = sep.separate(audio, 44100)   # audio: (channels, frames) or (frames,) array
    stems["vocals"]                       # float32 (channels, frames) at sep.sample_rate

No torch needed: the engine is Rust (the `roformer` crate). Errors are RoformerError with the
message the `roformer` command prints.
"""

from os import PathLike, fspath
from typing import Dict, List, Optional, Union

import numpy as np

from ._roformer import RoformerError, _Separator

__all__ = ["Separator", "RoformerError"]

_Path = Union[str, PathLike]


class Separator:
    """A model (checkpoint + MSST YAML config) loaded once, ready to separate.

    ``model=None`` loads the small built-in 4-stem model. A ``.safetensors`` file written by
    ``roformer convert`` or ``roformer train`` needs no ``config``. Options override the
    config's ``inference`` section (``overlap``, ``chunk_size``, ``batch_size``); ``tta`` averages
    with channel-swapped and polarity-inverted passes; ``instrumental`` adds
    ``mixture - vocals``; ``precision`` ("f32", "bf16", "int8") sets the CPU engine's matrix
    products. One Separator may be used from several threads at once; the GIL is released
    while it computes.
    """

    def __init__(
        self,
        model: Optional[_Path] = None,
        config: Optional[_Path] = None,
        *,
        device: str = "cpu",
        precision: str = "f32",
        tta: bool = False,
        overlap: Optional[int] = None,
        chunk_size: Optional[int] = None,
        batch_size: Optional[int] = None,
        instrumental: bool = False,
    ) -> None:
        self._inner = _Separator(
            None if model is None else fspath(model),
            None if config is None else fspath(config),
            device,
            precision,
            bool(tta),
            overlap,
            chunk_size,
            batch_size,
            bool(instrumental),
        )

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz (stems come out at this rate)."""
        return self._inner.sample_rate

    @property
    def channels(self) -> int:
        """The channels the model takes and its stems have."""
        return self._inner.channels

    @property
    def stems(self) -> List[str]:
        """The names of the stems, in order."""
        return self._inner.stems

    def separate(self, audio, sample_rate: int) -> Dict[str, np.ndarray]:
        """Separates ``audio`` (a float array, ``(channels, frames)`` or ``(frames,)`` for mono)
        at ``sample_rate`` Hz into ``{stem: float32 array (channels, frames)}`` at the model's
        rate and channel count (other rates are resampled, mono is duplicated for stereo models,
        more channels are downmixed)."""
        array = np.asarray(audio)
        if not (np.issubdtype(array.dtype, np.floating)):
            raise ValueError(
                f"audio must be a float array (samples in [-1, 1]), not {array.dtype}"
            )
        if array.ndim == 1:
            array = array[np.newaxis, :]
        if array.ndim != 2:
            raise ValueError(
                f"audio must have shape (channels, frames) or (frames,), not {array.shape}"
            )
        if 0 < array.shape[1] < array.shape[0]:
            raise ValueError(
                f"audio of shape {array.shape} has more channels than frames: "
                "pass (channels, frames), e.g. audio.T for a (frames, channels) array"
            )
        if int(sample_rate) != sample_rate or sample_rate < 1:
            raise ValueError(f"sample rate must be a positive integer (Hz), not {sample_rate!r}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        return self._inner.separate(array, int(sample_rate))

    def separate_file(
        self,
        input: _Path,
        out_dir: _Path,
        *,
        format: str = "wav",
        pcm: Union[int, str] = 24,
        overwrite: bool = False,
    ) -> List[str]:
        """Separates an audio file (wav, flac, mp3, ogg, m4a, aiff) into
        ``out_dir/<stem>.<format>``, streaming with flat memory. ``format``: "wav" or "flac";
        ``pcm``: 16, 24 or "f32" (WAV only). Files are written under a temporary name and renamed
        when complete. Returns the written paths; without ``overwrite``, existing outputs are
        kept and an input whose outputs all exist returns ``[]``."""
        pcm = {16: "16", 24: "24", 32: "f32", "32": "f32", "float": "f32"}.get(pcm, str(pcm))
        paths = self._inner.separate_file(
            fspath(input), fspath(out_dir), format, pcm, bool(overwrite)
        )
        return [fspath(p) for p in paths]

    def __repr__(self) -> str:
        models = "; ".join(self._inner.describe())
        return (
            f"roformer.Separator({models}: {self.sample_rate} Hz, {self.channels} channel(s), "
            f"stems {self.stems})"
        )
