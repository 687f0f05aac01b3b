#!/usr/bin/env python3
"""Reference fixtures for the Rust HT Demucs port, computed by MSST's own code.

The truth is MSST's `models/demucs4ht.py` (its `HTDemucs`, built from the layers of the PyPI
`demucs` 4.x package) and MSST's `demix` in "demucs" mode: this script builds small models
with random weights from MSST-style YAML configs and records what they compute. Nothing of
the model is re-implemented here.

    python tools/gen_htdemucs_fixtures.py --msst /path/to/Music-Source-Separation-Training

writes tests/fixtures/htdemucs/<name>/{config.yaml, model.ckpt, model.th, mixture.wav,
reference.safetensors}. `model.th` is the same model as Facebook's demucs writes its
checkpoints (`demucs.states.serialize_model` + `torch.save`: a dict of klass, args, kwargs,
state, training_args, the state in fp16 with `half=True`, so its weights are model.ckpt's
rounded by torch); `model.ckpt` is MSST's plain state dict. Everything runs float32 on CPU with fixed seeds.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import make_mixture, save_tensors, write_mixture  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "htdemucs"


def base_htdemucs(**overrides):
    """MSST's config_musdb18_htdemucs.yaml `htdemucs` section, with overrides."""
    section = {
        "channels": 48, "channels_time": None, "growth": 2,
        "num_subbands": 1, "nfft": 4096, "wiener_iters": 0, "end_iters": 0,
        "wiener_residual": False, "cac": True,
        "depth": 4, "rewrite": True,
        "multi_freqs": [], "multi_freqs_depth": 3, "freq_emb": 0.2, "emb_scale": 10,
        "emb_smooth": True,
        "kernel_size": 8, "stride": 4, "time_stride": 2, "context": 1, "context_enc": 0,
        "norm_starts": 4, "norm_groups": 4,
        "dconv_mode": 3, "dconv_depth": 2, "dconv_comp": 8, "dconv_init": 1e-3,
        "bottom_channels": 512,
        "t_layers": 5, "t_hidden_scale": 4.0, "t_heads": 8, "t_dropout": 0.0,
        "t_layer_scale": True, "t_gelu": True,
        "t_emb": "sin", "t_max_positions": 10000, "t_max_period": 10000.0,
        "t_weight_pos_embed": 1.0, "t_cape_mean_normalize": True, "t_cape_augment": True,
        "t_cape_glob_loc_scale": [5000.0, 1.0, 1.4], "t_sin_random_shift": 0,
        "t_norm_in": True, "t_norm_in_group": False, "t_group_norm": False,
        "t_norm_first": True, "t_norm_out": True,
        "t_weight_decay": 0.0, "t_lr": None,
        "t_sparse_self_attn": False, "t_sparse_cross_attn": False, "t_mask_type": "diag",
        "t_mask_random_seed": 42, "t_sparse_attn_window": 400, "t_global_window": 100,
        "t_sparsity": 0.95, "t_auto_sparsity": False,
        "t_cross_first": False,
        "rescale": 0.1,
    }
    section.update(overrides)
    return section


# name -> (instruments, segment seconds, num_overlap, htdemucs overrides, mixture seconds, seed)
FIXTURES = {
    # The released htdemucs layout (nfft 4096, depth 4, DConv in both, bottom channels,
    # norm_out, layer scale) at a few channels and 3 transformer layers.
    "htdemucs_4stem": (["drums", "bass", "other", "vocals"], 1, 4,
                       dict(channels=8, bottom_channels=32, t_layers=3, t_heads=2), 1.3, 1),
    # htdemucs_6s's stems; a small FFT whose frequency axis the last encoder layer uses up,
    # so the time branch merges into the frequency branch there (the `empty` layers, as in
    # HDemucs). GroupNorm from layer 2, DConv in the encoder only, no bottom channels, the
    # cross-attention layer first, 3x3 rewrite context in the decoder.
    "htdemucs_6stem_merge": (["drums", "bass", "other", "vocals", "guitar", "piano"], 1, 2,
                             dict(channels=8, nfft=256, depth=3, norm_starts=2, dconv_mode=1,
                                  bottom_channels=0, t_layers=2, t_heads=4,
                                  t_cross_first=True, t_hidden_scale=2.0), 1.2, 2),
}


def config_dict(instruments, segment, num_overlap, section):
    return {
        "audio": {"chunk_size": 44100 * segment, "min_mean_abs": 0.001, "hop_length": 1024},
        "training": {"batch_size": 1, "segment": segment, "shift": 1, "samplerate": 44100,
                     "channels": 2, "normalize": True, "instruments": instruments,
                     "target_instrument": None, "use_amp": False},
        "inference": {"num_overlap": num_overlap, "batch_size": 1},
        "model": "htdemucs",
        "htdemucs": section,
    }


def randomise(model, seed):
    """Weights far from their init so every branch matters: layer scales and the DConv
    scales start at 1e-4/1e-3, which would hide errors in what they scale."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale") or ".scale" in name:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g)
                        + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--msst", required=True, help="checkout of ZFTurbo/Music-Source-Separation-Training")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--only", nargs="*", help="fixture names")
    ap.add_argument("--real-shape", action="store_true",
                    help="instead, the released htdemucs shape (48 channels, 5 transformer "
                         "layers, ~42 M parameters) with MSST's segment of 11 s, into --out, for "
                         "an acceptance check (not committed; HTDEMUCS_FIXTURE_DIR=OUT/"
                         "htdemucs_real_shape cargo test -p roformer --test htdemucs_parity)")
    args = ap.parse_args()
    if args.real_shape:
        FIXTURES.clear()
        FIXTURES["htdemucs_real_shape"] = (["drums", "bass", "other", "vocals"], 11, 4,
                                           dict(), 12.0, 3)

    import numpy as np
    import torch
    import yaml
    from omegaconf import OmegaConf
    sys.path.insert(0, str(Path(args.msst).resolve()))
    import models.demucs4ht as ht  # noqa: E402
    import utils.model_utils as mu  # noqa: E402
    from demucs.states import serialize_model  # noqa: E402
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    for name, (instruments, segment, overlap, overrides, seconds, seed) in FIXTURES.items():
        if args.only and name not in args.only:
            continue
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        cfg_path = out / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config_dict(instruments, segment, overlap,
                                                       base_htdemucs(**overrides)),
                                           sort_keys=False))
        config = OmegaConf.load(cfg_path)  # as MSST loads htdemucs configs
        torch.manual_seed(seed)
        model = ht.get_model(config)
        randomise(model, seed)
        model.eval()

        state = model.state_dict()
        torch.save(state, out / "model.ckpt")
        # Facebook's layout. serialize_model records the class of the model it is given;
        # MSST's HTDemucs is a copy of demucs.htdemucs.HTDemucs with the same weights and
        # keyword arguments, and what we must read is Facebook's class name.
        # Facebook's class has no `num_subbands` (always 1) and keeps `segment` as a Fraction
        # (a pickled GLOBAL of its own, as in the released files).
        import demucs.htdemucs
        from fractions import Fraction
        fb_kwargs = {k: v for k, v in model._init_args_kwargs[1].items() if k != "num_subbands"}
        fb_kwargs["segment"] = Fraction(fb_kwargs["segment"])
        fb = demucs.htdemucs.HTDemucs(**fb_kwargs)
        fb.load_state_dict(state)
        package = serialize_model(fb, OmegaConf.create({"seed": seed}), half=True)
        torch.save(package, out / "model.th")

        mix = make_mixture(seconds, 2, seed)
        write_mixture(out / "mixture.wav", mix)
        chunk = int(config.training.samplerate * config.training.segment)
        tensors = {}
        with torch.no_grad():
            first = torch.from_numpy(mix[:, :chunk]).float()[None]
            first = torch.nn.functional.pad(first, (0, chunk - first.shape[-1]))
            tensors["chunk_input"] = first[0]
            tensors["chunk_output"] = model(first)[0]
        separated = mu.demix(config, model, mix, torch.device("cpu"), "htdemucs")
        tensors["separated"] = torch.from_numpy(
            np.stack([separated[k] for k in instruments]).astype(np.float32))
        save_tensors(out / "reference.safetensors", tensors,
                     {"instruments": ",".join(instruments), "chunk": chunk})
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, "
              f"chunk {chunk}, separated {tuple(tensors['separated'].shape)}")


main()
