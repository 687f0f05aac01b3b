#!/usr/bin/env python3
"""Reference fixtures for `--tta` and model ensembles, computed by MSST's own code.

    python tools/gen_tta_ensemble_fixtures.py --msst /path/to/Music-Source-Separation-Training

Writes:
- tests/fixtures/tta/reference.safetensors: MSST `apply_tta` (after `bigshifts_wrapper` with
  bigshifts=1, i.e. plain `demix`; inference.batch_size = 1) on the committed tiny model
  tests/fixtures/models/bs_stereo_2stem_hop512 and its mixture.wav.
- tests/fixtures/ensemble/reference.safetensors: MSST ensemble.py `average_waveforms` for every
  algorithm on small deterministic random signals.

Reuses the loaders and the byte-stable safetensors writer of tools/gen_fixtures.py. Runs in a few
seconds on CPU; float32, fixed seeds, byte-identical output on every run.
"""

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_fixtures as gf  # noqa: E402

REPO_ROOT = HERE.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
TTA_MODEL = "bs_stereo_2stem_hop512"
ALGORITHMS = ["avg_wave", "median_wave", "min_wave", "max_wave",
              "avg_fft", "median_fft", "min_fft", "max_fft"]


def gen_tta(msst_dir, commit, out_root):
    import numpy as np
    import torch
    import models.bs_roformer.bs_roformer as bsr
    import utils.model_utils as mu

    model_dir = FIXTURES / "models" / TTA_MODEL
    config = gf.load_config_like_msst(model_dir / "config.yaml")
    model = bsr.BSRoformer(**dict(config.model))
    model.load_state_dict(torch.load(model_dir / "model.ckpt", map_location="cpu", weights_only=True))
    model.eval()
    mix = gf.read_mixture_like_msst(model_dir / "mixture.wav", config)
    assert not config.inference.get("normalize", False)

    config.inference.batch_size = 1
    device = torch.device("cpu")
    with torch.no_grad():
        # inference.py: bigshifts_wrapper (default bigshifts=1), then apply_tta on the same mix
        waveforms = mu.bigshifts_wrapper(config, model, mix, device, model_type="bs_roformer",
                                         pbar=False, bigshifts=1)
        waveforms = mu.apply_tta(config, model, mix, waveforms, device, "bs_roformer",
                                 bigshifts=1, pbar=False)
    names = list(mu.prefer_target_instrument(config))
    sep = np.stack([waveforms[k] for k in names]).astype(np.float32)
    instr = "vocals" if "vocals" in names else names[0]
    tensors = {
        "separated": sep,
        # inference.py --extract_instrumental: mix_orig - waveforms_orig[instr]
        "separated_instrumental": (mix - waveforms[instr]).astype(np.float32),
    }
    out = Path(out_root) / "tta"
    out.mkdir(parents=True, exist_ok=True)
    gf.save_tensors(out / "reference.safetensors", tensors, {
        "model": f"models/{TTA_MODEL}",
        "instruments": ",".join(names),
        "demix_batch_size": "1",
        "msst_commit": commit,
    })
    return out


def gen_ensemble(commit, out_root):
    import numpy as np
    import ensemble as msst_ensemble   # MSST's ensemble.py

    # MSST's absmax (max_fft) does `np.ogrid[...].insert(...)`: numpy >= 2 returns a tuple there, so
    # it raises AttributeError. Same function with the tuple made a list; everything else is MSST's.
    def absmax(a, *, axis):
        dims = list(a.shape)
        dims.pop(axis)
        indices = list(np.ogrid[tuple(slice(0, d) for d in dims)])
        argmax = np.abs(a).argmax(axis=axis)
        indices.insert((len(a.shape) + axis) % len(a.shape), argmax)
        return a[tuple(indices)]
    msst_ensemble.absmax = absmax

    rng = np.random.default_rng(4321)
    length = 3000   # not a multiple of the 1024 hop
    tensors, meta = {}, {"algorithms": ",".join(ALGORITHMS), "n_fft": "2048", "hop": "1024",
                         "msst_commit": commit}
    for n, weights in ((3, [1.0, 2.5, 0.5]), (4, [0.75, 1.0, 3.0, 1.5])):
        # different loudness per signal, so that min/max picks from every one
        scales = np.array([0.3, 1.0, 0.6, 0.8][:n])[:, None, None]
        inputs = (rng.standard_normal((n, 2, length)) * scales).astype(np.float32)
        tensors[f"inputs{n}"] = inputs
        tensors[f"weights{n}"] = np.array(weights, dtype=np.float32)
        for alg in ALGORITHMS:
            res = msst_ensemble.average_waveforms(inputs.copy(), list(weights), alg)
            assert res.shape == (2, length), (alg, res.shape)
            tensors[f"{alg}_{n}"] = np.asarray(res).astype(np.float32)
    out = Path(out_root) / "ensemble"
    out.mkdir(parents=True, exist_ok=True)
    gf.save_tensors(out / "reference.safetensors", tensors, meta)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msst", default=os.environ.get("MSST_DIR"),
                    help="MSST checkout (default: $MSST_DIR)")
    ap.add_argument("--out", default=str(FIXTURES), help=f"output root (default {FIXTURES})")
    args = ap.parse_args()

    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    _, _, commit = gf.import_msst(args.msst)   # puts MSST on sys.path

    total = 0
    total += gf.summarize(gen_tta(args.msst, commit, args.out))
    total += gf.summarize(gen_ensemble(commit, args.out))
    print(f"all fixtures: {total:,d} B")


if __name__ == "__main__":
    main()
