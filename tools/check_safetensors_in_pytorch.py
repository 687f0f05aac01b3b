#!/usr/bin/env python3
"""Checks that a `roformer convert` output loads in PyTorch exactly like the original checkpoint.

Manual check (CI never runs Python). It:
  1. builds MSST's model from the YAML config (as MSST's get_model_from_config does) and loads
     the original checkpoint (.ckpt/.pth) with load_state_dict(strict=True);
  2. reads the converted file with `safetensors.torch.load_file`, checks that its keys, shapes
     and values equal the checkpoint's state dict, and that its `msst_config` metadata is the
     YAML text verbatim;
  3. builds a second model from the config extracted from that metadata and loads the converted
     tensors into it with load_state_dict(strict=True);
  4. runs both models (eval mode) on the same random input and requires identical outputs.

Usage:
  /work/venv/torch/bin/python tools/check_safetensors_in_pytorch.py --msst /work/msst \
      --ckpt model.ckpt --config config.yaml --safetensors model.safetensors [--samples N]

Exit status 0 when everything matches, 1 otherwise.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path


def import_msst(msst_dir):
    if not msst_dir:
        sys.exit("error: pass --msst DIR or set MSST_DIR (a checkout of "
                 "ZFTurbo/Music-Source-Separation-Training)")
    msst_dir = str(Path(msst_dir).resolve())
    if not Path(msst_dir, "models", "bs_roformer", "__init__.py").is_file():
        sys.exit(f"error: {msst_dir} does not look like an MSST checkout")
    sys.path.insert(0, msst_dir)


def load_config_like_msst(path):
    """utils/settings.py: load_config for model_type != 'htdemucs'."""
    import yaml
    from ml_collections import ConfigDict
    with open(path, "r") as f:
        return ConfigDict(yaml.load(f, Loader=yaml.FullLoader))


def model_from_config(path, model_type):
    """utils/settings.py: get_model_from_config, for the RoFormer families."""
    config = load_config_like_msst(path)
    if "model_type" in config.get("training", {}):
        model_type = config.training.model_type
    if model_type is None:
        model_type = "mel_band_roformer" if "num_bands" in config.model else "bs_roformer"
    if model_type == "bs_roformer":
        from models.bs_roformer import BSRoformer
        model = BSRoformer(**dict(config.model))
    elif model_type == "mel_band_roformer":
        from models.bs_roformer import MelBandRoformer
        model = MelBandRoformer(**dict(config.model))
    else:
        sys.exit(f"error: model type {model_type} is not a RoFormer")
    model.eval()
    return model, config, model_type


def original_state_dict(path):
    """The checkpoint's state dict, unwrapped like MSST and our reader do."""
    import torch
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model", "state"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "model."):
            if sd and all(k.startswith(prefix) and len(k) > len(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--msst", default=os.environ.get("MSST_DIR"))
    ap.add_argument("--ckpt", required=True, help="the original checkpoint")
    ap.add_argument("--config", required=True, help="the MSST YAML config it was converted with")
    ap.add_argument("--safetensors", required=True, help="the `roformer convert` output")
    ap.add_argument("--model-type", default=None,
                    help="bs_roformer or mel_band_roformer (default: from the config)")
    ap.add_argument("--samples", type=int, default=None,
                    help="input length (default: the config's audio.chunk_size)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import warnings
    warnings.filterwarnings("ignore")
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    import_msst(args.msst)

    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    # 1. The original, as MSST would load it.
    model_a, config, model_type = model_from_config(args.config, args.model_type)
    sd_ckpt = original_state_dict(args.ckpt)
    model_a.load_state_dict(sd_ckpt, strict=True)
    print(f"model  {model_type}, {len(sd_ckpt)} tensors in {args.ckpt}")

    # 2. The converted file, tensor by tensor, and its metadata.
    sd_st = load_file(args.safetensors)
    with safe_open(args.safetensors, framework="pt") as f:
        meta = f.metadata() or {}
    check(sorted(sd_st) == sorted(sd_ckpt),
          f"same {len(sd_st)} tensor names as the checkpoint")
    mismatched = [
        k for k in sd_ckpt
        if k not in sd_st
        or sd_st[k].shape != sd_ckpt[k].shape
        or not torch.equal(sd_st[k].to(sd_ckpt[k].dtype), sd_ckpt[k])
    ]
    check(not mismatched, "same shapes and values" +
          (f" (differ: {', '.join(mismatched[:5])})" if mismatched else ""))
    dtypes = sorted({str(t.dtype) for t in sd_st.values()})
    print(f"dtypes {', '.join(dtypes)}; metadata keys {', '.join(sorted(meta))}")
    yaml_text = Path(args.config).read_text()
    check(meta.get("msst_config") == yaml_text, "msst_config metadata is the YAML verbatim")

    # 3. A model built from the embedded config, loaded strictly from the converted file.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        tmp.write(meta.get("msst_config", ""))
        embedded = tmp.name
    try:
        model_b, _, _ = model_from_config(embedded, args.model_type)
    finally:
        os.unlink(embedded)
    model_b.load_state_dict(sd_st, strict=True)
    check(True, "load_state_dict(strict=True) from safetensors.torch.load_file")

    # 4. Same output on the same input.
    channels = 2 if config.model.get("stereo", False) else 1
    samples = args.samples or int(config.audio.chunk_size)
    g = torch.Generator().manual_seed(args.seed)
    x = 0.3 * torch.randn(1, channels, samples, generator=g)
    with torch.inference_mode():
        ya = model_a(x)
        yb = model_b(x)
    diff = (ya - yb).abs().max().item()
    check(torch.equal(ya, yb),
          f"forward on [1, {channels}, {samples}] identical (output {list(ya.shape)}, "
          f"max |diff| {diff:g})")

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
