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

It also writes tests/fixtures/htdemucs/bag: a bag of three tiny models as demucs' BagOfModels
holds them (see `BAG` and `make_bag`); `--only bag` writes that alone.
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


def config_dict(instruments, segment, num_overlap, section, samplerate=44100):
    return {
        "audio": {"chunk_size": samplerate * segment, "min_mean_abs": 0.001, "hop_length": 1024},
        "training": {"batch_size": 1, "segment": segment, "shift": 1, "samplerate": samplerate,
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


def facebook_package(model, seed):
    """The model as Facebook's demucs writes its checkpoints. serialize_model records the
    class of the model it is given; MSST's HTDemucs is a copy of demucs.htdemucs.HTDemucs with
    the same weights and keyword arguments, and what we must read is Facebook's class name.
    Facebook's class has no `num_subbands` (always 1) and keeps `segment` as a Fraction (a
    pickled GLOBAL of its own, as in the released files)."""
    from fractions import Fraction

    import demucs.htdemucs
    from demucs.states import serialize_model
    from omegaconf import OmegaConf
    fb_kwargs = {k: v for k, v in model._init_args_kwargs[1].items() if k != "num_subbands"}
    fb_kwargs["segment"] = Fraction(fb_kwargs["segment"])
    fb = demucs.htdemucs.HTDemucs(**fb_kwargs)
    fb.load_state_dict(model.state_dict())
    return serialize_model(fb, OmegaConf.create({"seed": seed}), half=True)


# A bag of models as demucs' BagOfModels holds them (htdemucs_ft: one model per stem): three
# tiny HT Demucs of the same stems and layout, different seeds and training segments, written
# as `.th` packages named by signature, with a demucs-style YAML (signatures, a weights matrix,
# a segment). At 4 kHz so the reference stays small; MSST's "demucs" demix needs whole-second
# segments (`samplerate * segment` indexes the track).
BAG = {
    "instruments": ["drums", "bass", "other", "vocals"],
    "samplerate": 4000,
    "htdemucs": dict(channels=8, nfft=256, depth=2, bottom_channels=0, t_layers=1, t_heads=2,
                     t_hidden_scale=2.0),
    # signature, training segment (s), seed, file name carries a checksum (`<sig>-<sha256[:8]>`)
    "models": [("1a2b3c4d", 3, 11, True), ("5e6f7a8b", 2, 12, False), ("9c0d1e2f", 1, 13, True)],
    "weights": [[1.0, 0.5, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.25, 0.0, 1.0, 0.0]],
    # demucs' rule: lowers the first model's segment to 2 s, keeps the third's 1 s (an HT Demucs
    # never runs longer than its training segment).
    "segment": 2,
    "seconds": 2.6,
    "seed": 14,
}


def make_bag(out, ht, mu):
    """Writes OUT/bag: the packages, bag.yaml (demucs' remote format, signatures),
    bag_files.yaml (the same bag naming its files), mixture.wav and reference.safetensors.
    demucs' own loader (`demucs.pretrained.get_model` on the folder: LocalRepo + BagOnlyRepo,
    with its checksum check and BagOfModels' asserts) reads the bag back; each model's output
    is MSST's demix of the model demucs loaded, with the segment BagOfModels gave it."""
    import hashlib

    import numpy as np
    import torch
    import yaml
    from demucs.apply import BagOfModels
    from demucs.pretrained import get_model
    from omegaconf import OmegaConf
    out.mkdir(parents=True, exist_ok=True)
    instruments, rate = BAG["instruments"], BAG["samplerate"]
    files = []
    for sig, segment, seed, checksum in BAG["models"]:
        config = OmegaConf.create(config_dict(instruments, segment, 4,
                                              base_htdemucs(**BAG["htdemucs"]), rate))
        torch.manual_seed(seed)
        model = ht.get_model(config)
        randomise(model, seed)
        path = out / f"{sig}.th"
        torch.save(facebook_package(model, seed), path)
        if checksum:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
            path = path.rename(out / f"{sig}-{sha}.th")
        files.append(path.name)
    body = {"models": [m[0] for m in BAG["models"]], "weights": BAG["weights"],
            "segment": BAG["segment"]}
    (out / "bag.yaml").write_text(yaml.safe_dump(body, sort_keys=False, default_flow_style=None))
    (out / "bag_files.yaml").write_text(yaml.safe_dump({**body, "models": files}, sort_keys=False,
                                                       default_flow_style=None))

    bag = get_model("bag", repo=out)
    assert isinstance(bag, BagOfModels) and bag.sources == instruments
    mix = make_mixture(BAG["seconds"], 2, BAG["seed"], rate)
    write_mixture(out / "mixture.wav", mix, rate)
    estimates, totals = 0.0, [0.0] * len(instruments)
    for sub, weights in zip(bag.models, bag.weights):
        segment = sub.segment
        assert segment == int(segment), segment
        config = OmegaConf.create(config_dict(instruments, int(segment), 4,
                                              base_htdemucs(**BAG["htdemucs"]), rate))
        sub.eval()
        separated = mu.demix(config, sub, mix, torch.device("cpu"), "htdemucs")
        res = torch.from_numpy(np.stack([separated[k] for k in instruments]).astype(np.float32))
        # demucs/apply.py, apply_model on a BagOfModels: out[k] *= w[k]; totals[k] += w[k];
        # estimates += out; then estimates[k] /= totals[k].
        for k, w in enumerate(weights):
            res[k] *= w
            totals[k] += w
        estimates = estimates + res
    for k in range(len(instruments)):
        estimates[k] /= totals[k]
    save_tensors(out / "reference.safetensors", {"separated": estimates},
                 {"instruments": ",".join(instruments),
                  "segments": ",".join(str(int(s.segment)) for s in bag.models)})
    print(f"bag: {len(bag.models)} models ({', '.join(files)}), "
          f"{sum(p.numel() for p in bag.models[0].parameters())} parameters each, "
          f"segments {[int(s.segment) for s in bag.models]}, separated {tuple(estimates.shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--msst", required=True, help="checkout of ZFTurbo/Music-Source-Separation-Training")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--only", nargs="*", help="fixture names (`bag` for the bag of models)")
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
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    if not args.real_shape and (not args.only or "bag" in args.only):
        make_bag(Path(args.out) / "bag", ht, mu)
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
        torch.save(facebook_package(model, seed), out / "model.th")

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
