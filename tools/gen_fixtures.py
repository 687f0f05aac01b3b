#!/usr/bin/env python3
"""Reference-fixture generator for the Rust BS-RoFormer / Mel-Band RoFormer port.

The truth is ZFTurbo's Music-Source-Separation-Training (MSST) code itself:
this script imports MSST's `BSRoformer`, `MelBandRoformer` and `demix` (never
re-implements them), builds small randomised models from MSST-style YAML
configs, and records what MSST computes for them.

Default mode writes the committed fixtures to tests/fixtures/models/:

    python tools/gen_fixtures.py --msst /path/to/Music-Source-Separation-Training

Acceptance mode (not committed; big files, writes to --out only):

    python tools/gen_fixtures.py --msst ... --real-shape --depth 1 --seconds 3 --out /tmp/rs-smoke
    python tools/gen_fixtures.py --msst ... --real-shape-mel --depth 1 --seconds 3 --out /tmp/mel-smoke

Everything runs float32 on CPU with 2 threads and fixed seeds; two runs give
byte-identical files.
"""

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "models"

SR = 44100
CHUNK_START = 4410      # start (samples) of `chunk_input` inside the mixture
CHUNK_LEN = 8192        # length of `chunk_input`


# --------------------------------------------------------------------------
# MSST import
# --------------------------------------------------------------------------

def import_msst(msst_dir):
    if not msst_dir:
        sys.exit("error: pass --msst DIR or set MSST_DIR (a checkout of "
                 "ZFTurbo/Music-Source-Separation-Training)")
    msst_dir = str(Path(msst_dir).resolve())
    if not Path(msst_dir, "models", "bs_roformer", "bs_roformer.py").is_file():
        sys.exit(f"error: {msst_dir} does not look like an MSST checkout")
    sys.path.insert(0, msst_dir)
    import models.bs_roformer.bs_roformer as bsr  # noqa: E402
    import utils.model_utils as mu                # noqa: E402
    try:
        commit = subprocess.run(["git", "-C", msst_dir, "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        commit = "unknown"
    return bsr, mu, commit


def import_msst_mel():
    """MSST's mel_band_roformer module (after import_msst put MSST on sys.path)."""
    import models.bs_roformer.mel_band_roformer as mbr  # noqa: E402
    return mbr


# --------------------------------------------------------------------------
# YAML config (MSST style, tuples as !!python/tuple)
# --------------------------------------------------------------------------

def _scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        s = repr(v)
        if "e" in s:
            mant, ex = s.split("e")
            if "." not in mant:
                mant += ".0"   # PyYAML (YAML 1.1) needs a dot to read 1e-05 as a float
            s = f"{mant}e{ex}"
        return s
    if isinstance(v, str):
        return v
    raise TypeError(f"unsupported yaml scalar {v!r}")


def to_yaml(cfg):
    """cfg: dict section -> dict key -> value (insertion-ordered)."""
    lines = []
    for section, body in cfg.items():
        lines.append(f"{section}:")
        for k, v in body.items():
            if isinstance(v, tuple):
                lines.append(f"  {k}: !!python/tuple")
                lines += [f"    - {_scalar(x)}" for x in v]
            elif isinstance(v, list):
                lines.append(f"  {k}:")
                lines += [f"  - {_scalar(x)}" for x in v]
            else:
                lines.append(f"  {k}: {_scalar(v)}")
        lines.append("")
    return "\n".join(lines)


def load_config_like_msst(path):
    """Exactly utils/settings.py: load_config for model_type != 'htdemucs'."""
    import yaml
    from ml_collections import ConfigDict
    with open(path, "r") as f:
        return ConfigDict(yaml.load(f, Loader=yaml.FullLoader))


def make_config(*, dim, depth, stereo, num_stems, hop, n_fft=2048, win=2048,
                time_depth=1, freq_depth=1, linear_depth=0, freqs_per_bands,
                dim_head, heads, flash_attn, mask_estimator_depth, mlp_expansion_factor,
                skip_connection, zero_dc, instruments, target_instrument,
                chunk_size, num_overlap, batch_size):
    dim_t = chunk_size // hop + 1
    channels = 2 if stereo else 1
    return {
        "audio": {
            "chunk_size": chunk_size,
            "dim_f": 1024,
            "dim_t": dim_t,
            "hop_length": hop,
            "n_fft": n_fft,
            "num_channels": channels,
            "sample_rate": SR,
            "min_mean_abs": 0.0,
        },
        "model": {
            "dim": dim,
            "depth": depth,
            "stereo": stereo,
            "num_stems": num_stems,
            "time_transformer_depth": time_depth,
            "freq_transformer_depth": freq_depth,
            "linear_transformer_depth": linear_depth,
            "freqs_per_bands": tuple(freqs_per_bands),
            "dim_head": dim_head,
            "heads": heads,
            "attn_dropout": 0.1,
            "ff_dropout": 0.1,
            "flash_attn": flash_attn,
            "dim_freqs_in": n_fft // 2 + 1,
            "stft_n_fft": n_fft,
            "stft_hop_length": hop,
            "stft_win_length": win,
            "stft_normalized": False,
            "mask_estimator_depth": mask_estimator_depth,
            "multi_stft_resolution_loss_weight": 1.0,
            "multi_stft_resolutions_window_sizes": (4096, 2048, 1024, 512, 256),
            "multi_stft_hop_size": 147,
            "multi_stft_normalized": False,
            "mlp_expansion_factor": mlp_expansion_factor,
            "skip_connection": skip_connection,
            "zero_dc": zero_dc,
        },
        "training": {
            "batch_size": 2,
            "gradient_accumulation_steps": 1,
            "grad_clip": 0,
            "instruments": list(instruments),
            "lr": 1.0e-05,
            "patience": 2,
            "reduce_factor": 0.95,
            "target_instrument": target_instrument,
            "num_epochs": 1000,
            "num_steps": 1000,
            "q": 0.95,
            "coarse_loss_clip": True,
            "ema_momentum": 0.999,
            "optimizer": "adam",
            "other_fix": False,
            "use_amp": True,
        },
        "inference": {
            "batch_size": batch_size,
            "dim_t": dim_t,
            "num_overlap": num_overlap,
        },
    }


def make_mel_config(*, num_bands, sample_rate=SR, match_input_audio_length=None,
                    omit_mask_estimator_depth=False, **kw):
    """A MelBandRoformer config: make_config's, with `num_bands` (and the mel filterbank's
    `sample_rate`) in place of `freqs_per_bands`, keys in the order of MSST's Mel configs."""
    cfg = make_config(freqs_per_bands=(), **kw)
    model = {}
    for k, v in cfg["model"].items():
        if k == "freqs_per_bands":
            model["num_bands"] = num_bands
        elif k == "mask_estimator_depth" and omit_mask_estimator_depth:
            continue   # MSST's MelBandRoformer default (1) applies
        else:
            model[k] = v
        if k == "dim_freqs_in":
            model["sample_rate"] = sample_rate
    if match_input_audio_length is not None:
        model["match_input_audio_length"] = match_input_audio_length
    cfg["model"] = model
    return cfg


# --------------------------------------------------------------------------
# model randomisation
# --------------------------------------------------------------------------

def build_model(bsr, config, seed, cls=None):
    """`bsr` is the model's module (bs_roformer or mel_band_roformer), `cls` its model class."""
    import torch
    torch.manual_seed(seed)
    cls = cls or bsr.BSRoformer
    model = cls(**dict(config.model))   # as MSST get_model_from_config
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, bsr.RMSNorm):
                mod.gamma.copy_(1.0 + 0.2 * torch.randn(mod.gamma.shape, generator=g))
            elif isinstance(mod, bsr.LinearAttention):
                mod.temperature.copy_(0.5 * torch.randn(mod.temperature.shape, generator=g))
    model.eval()
    return model


# --------------------------------------------------------------------------
# deterministic music-like test mixture
# --------------------------------------------------------------------------

def make_mixture(seconds, channels, seed, rate=SR):
    """Returns float32 [channels, N] at `rate` Hz, peak 0.5."""
    import numpy as np
    n = int(round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    rng = np.random.default_rng(seed)
    left = np.zeros(n)
    right = np.zeros(n)

    # harmonic voices: (f0, vibrato rate, vibrato depth, note length s, pan 0..1)
    voices = [(220.0, 5.0, 0.004, 0.5, 0.5),     # "vocal": centre, vibrato
              (329.63, 4.3, 0.002, 0.25, 0.25),  # "lead": left-ish
              (110.0, 0.0, 0.0, 1.0, 0.7),       # "bass": right-ish
              (523.25, 6.1, 0.003, 0.125, 0.85)]
    for vi, (f0, vr, vd, note, pan) in enumerate(voices):
        # melody: step the pitch per note
        steps = np.array([0, 3, 5, 7, 5, 3, 0, -2])
        note_idx = np.floor(t / note).astype(int)
        semis = steps[(note_idx + vi) % len(steps)]
        f = f0 * 2.0 ** (semis / 12.0) * (1.0 + vd * np.sin(2 * np.pi * vr * t))
        phase = 2 * np.pi * np.cumsum(f) / rate
        tn = t - note_idx * note                       # time inside the note
        env = (1.0 - np.exp(-tn / 0.01)) * np.exp(-tn / (0.6 * note))
        sig = sum((0.6 ** k) * np.sin(k * phase + 0.3 * k * vi) for k in range(1, 7))
        sig *= env * (0.35 if vi == 0 else 0.2)
        left += sig * np.cos(pan * np.pi / 2)
        right += sig * np.sin(pan * np.pi / 2)

    # kick every 0.5 s: decaying sine with falling pitch
    tk = np.mod(t, 0.5)
    fk = 50.0 + 90.0 * np.exp(-tk / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(fk) / rate) * np.exp(-tk / 0.12)
    left += 0.6 * kick
    right += 0.6 * kick

    # a little noise (hats on the off-beats + floor), different per channel
    th = np.mod(t + 0.25, 0.5)
    hat_env = np.exp(-th / 0.02)
    left += (0.05 * hat_env + 0.005) * rng.standard_normal(n)
    right += (0.05 * hat_env + 0.005) * rng.standard_normal(n)

    mix = np.stack([left, right]) if channels == 2 else ((left + right) * 0.5)[None]
    mix = mix * (0.5 / np.max(np.abs(mix)))
    return mix.astype(np.float32)


def write_mixture(path, mix, rate=SR):
    """32-bit IEEE-float WAV (format tag 3), written by hand: soundfile/libsndfile
    adds a PEAK chunk with a timestamp, which would make the file differ per run."""
    import struct
    import numpy as np
    channels, frames = mix.shape
    data = np.ascontiguousarray(mix.T, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<II", 4, frames)
            + b"data" + struct.pack("<I", len(data)) + data)
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_mixture_like_msst(path, config):
    """inference.py: librosa.load(sr=sample_rate, mono=False) + mono handling."""
    import librosa
    import numpy as np
    mix, _ = librosa.load(str(path), sr=getattr(config.audio, "sample_rate", 44100), mono=False)
    if len(mix.shape) == 1:
        mix = np.expand_dims(mix, axis=0)
        if "num_channels" in config.audio and config.audio["num_channels"] == 2:
            mix = np.concatenate([mix, mix], axis=0)
    return mix


# --------------------------------------------------------------------------
# forward-pass replica (up to the masks) built from the model's own submodules
# --------------------------------------------------------------------------

def replica_forward(bsr, model, raw_audio):
    """Mirror of BSRoformer.forward (eval, no checkpointing, all stems).

    Returns (stft_input [b, f*s, t, 2], masks [b, n, f*s, t, 2], recon [b, n, s, t]).
    """
    import torch
    from einops import rearrange, pack, unpack

    device = raw_audio.device
    if raw_audio.ndim == 2:
        raw_audio = rearrange(raw_audio, 'b t -> b 1 t')

    raw_audio, packed_shape = bsr.pack_one(raw_audio, '* t')
    stft_window = model.stft_window_fn(device=device)
    stft_repr = torch.stft(raw_audio, **model.stft_kwargs, window=stft_window, return_complex=True)
    stft_repr = torch.view_as_real(stft_repr)
    stft_repr = bsr.unpack_one(stft_repr, packed_shape, '* f t c')
    stft_repr = rearrange(stft_repr, 'b s f t c -> b (f s) t c')
    stft_input = stft_repr

    x = rearrange(stft_repr, 'b f t c -> b t (f c)')
    x = model.band_split(x)

    store = [None] * len(model.layers)
    for i, block in enumerate(model.layers):
        if len(block) == 3:
            linear_transformer, time_transformer, freq_transformer = block
            x, ft_ps = pack([x], 'b * d')
            x = linear_transformer(x)
            x, = unpack(x, ft_ps, 'b * d')
        else:
            time_transformer, freq_transformer = block

        if model.skip_connection:
            for j in range(i):
                x = x + store[j]

        x = rearrange(x, 'b t f d -> b f t d')
        x, ps = pack([x], '* t d')
        x = time_transformer(x)
        x, = unpack(x, ps, '* t d')
        x = rearrange(x, 'b f t d -> b t f d')
        x, ps = pack([x], '* f d')
        x = freq_transformer(x)
        x, = unpack(x, ps, '* f d')

        if model.skip_connection:
            store[i] = x

    x = model.final_norm(x)
    mask = torch.stack([fn(x) for fn in model.mask_estimators], dim=1)
    mask = rearrange(mask, 'b n t (f c) -> b n f t c', c=2)
    masks = mask

    # rest of forward, to prove the replica is faithful
    num_stems = len(model.mask_estimators)
    spec = torch.view_as_complex(rearrange(stft_repr, 'b f t c -> b 1 f t c'))
    spec = spec * torch.view_as_complex(mask)
    spec = rearrange(spec, 'b n (f s) t -> (b n s) f t', s=model.audio_channels)
    if model.zero_dc:
        spec = spec.index_fill(1, torch.tensor(0, device=device), 0.)
    recon = torch.istft(spec, **model.stft_kwargs, window=stft_window, return_complex=False,
                        length=raw_audio.shape[-1])
    recon = rearrange(recon, '(b n s) t -> b n s t', s=model.audio_channels, n=num_stems)
    return stft_input, masks, recon


def replica_forward_mel(mbr, model, raw_audio):
    """Mirror of MelBandRoformer.forward (eval, no checkpointing, all stems).

    Returns (stft_input [b, f*s, t, 2],
             band_masks [b, n, t, sum(band widths)]: the mask estimators' output before the
                 overlapping bands are averaged, ordered [band][freq][ch][re, im],
             masks [b, n, f*s, t, 2]: the averaged masks multiplied with the mixture,
             recon: what the model returns).
    """
    import torch
    from einops import rearrange, pack, unpack, repeat

    device = raw_audio.device
    if raw_audio.ndim == 2:
        raw_audio = rearrange(raw_audio, 'b t -> b 1 t')
    batch, channels, raw_audio_length = raw_audio.shape
    istft_length = raw_audio_length if model.match_input_audio_length else None

    raw_audio, packed_shape = mbr.pack_one(raw_audio, '* t')
    stft_window = model.stft_window_fn(device=device)
    stft_repr = torch.stft(raw_audio, **model.stft_kwargs, window=stft_window, return_complex=True)
    stft_repr = torch.view_as_real(stft_repr)
    stft_repr = mbr.unpack_one(stft_repr, packed_shape, '* f t c')
    stft_repr = rearrange(stft_repr, 'b s f t c -> b (f s) t c')
    stft_input = stft_repr

    batch_arange = torch.arange(batch, device=device)[..., None]
    x = stft_repr[batch_arange, model.freq_indices]
    x = rearrange(x, 'b f t c -> b t (f c)')
    x = model.band_split(x)

    store = [None] * len(model.layers)
    for i, block in enumerate(model.layers):
        if len(block) == 3:
            linear_transformer, time_transformer, freq_transformer = block
            x, ft_ps = pack([x], 'b * d')
            x = linear_transformer(x)
            x, = unpack(x, ft_ps, 'b * d')
        else:
            time_transformer, freq_transformer = block

        if model.skip_connection:
            for j in range(i):
                x = x + store[j]

        x = rearrange(x, 'b t f d -> b f t d')
        x, ps = pack([x], '* t d')
        x = time_transformer(x)
        x, = unpack(x, ps, '* t d')
        x = rearrange(x, 'b f t d -> b t f d')
        x, ps = pack([x], '* f d')
        x = freq_transformer(x)
        x, = unpack(x, ps, '* f d')

        if model.skip_connection:
            store[i] = x

    band_masks = torch.stack([fn(x) for fn in model.mask_estimators], dim=1)  # b n t (f c)
    num_stems = band_masks.shape[1]

    # rest of forward, to prove the replica is faithful
    masks = rearrange(band_masks, 'b n t (f c) -> b n f t c', c=2)
    spec = torch.view_as_complex(rearrange(stft_repr, 'b f t c -> b 1 f t c'))
    masks = torch.view_as_complex(masks).type(spec.dtype)
    scatter_indices = repeat(model.freq_indices, 'f -> b n f t', b=batch, n=num_stems, t=spec.shape[-1])
    spec_stems = repeat(spec, 'b 1 ... -> b n ...', n=num_stems)
    masks_summed = torch.zeros_like(spec_stems).scatter_add_(2, scatter_indices, masks)
    denom = repeat(model.num_bands_per_freq, 'f -> (f r) 1', r=channels)
    masks_averaged = masks_summed / denom.clamp(min=1e-8)
    spec = spec * masks_averaged
    spec = rearrange(spec, 'b n (f s) t -> (b n s) f t', s=model.audio_channels)
    if model.zero_dc:
        spec = spec.index_fill(1, torch.tensor(0, device=device), 0.)
    recon = torch.istft(spec, **model.stft_kwargs, window=stft_window, return_complex=False,
                        length=istft_length)
    recon = rearrange(recon, '(b n s) t -> b n s t', b=batch, s=model.audio_channels, n=num_stems)
    if num_stems == 1:
        recon = rearrange(recon, 'b 1 s t -> b s t')
    return stft_input, band_masks, torch.view_as_real(masks_averaged), recon


# --------------------------------------------------------------------------
# fixture writers
# --------------------------------------------------------------------------

def save_tensors(path, tensors, metadata=None):
    """Write a float32 .safetensors file with a byte-stable header.

    safetensors' own writer emits the metadata map in hash order, so the file
    bytes differ from run to run; this writer sorts everything. The result is
    read back with safetensors and checked.
    """
    import json
    import struct
    import numpy as np
    import torch
    from safetensors import safe_open
    arrays = {}
    for k, v in tensors.items():
        if isinstance(v, torch.Tensor):
            assert v.dtype == torch.float32, (k, v.dtype)
            v = v.detach().cpu().numpy()
        assert v.dtype == np.float32, (k, v.dtype)
        arrays[k] = np.ascontiguousarray(v, dtype="<f4")
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    for k in sorted(arrays):
        raw = arrays[k].tobytes()
        header[k] = {"dtype": "F32", "shape": list(arrays[k].shape),
                     "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs))
    with safe_open(str(path), "np") as f:
        assert (f.metadata() or {}) == (header.get("__metadata__") or {})
        assert sorted(f.keys()) == sorted(arrays)
        for k in arrays:
            assert np.array_equal(f.get_tensor(k), arrays[k]), k


def run_demix(mu, config, model, mix, model_type="bs_roformer"):
    """MSST demix with inference.batch_size = 1; returns ([n_instr, C, N], names)."""
    import numpy as np
    import torch
    config.inference.batch_size = 1
    res = mu.demix(config, model, mix, device=torch.device("cpu"), model_type=model_type, pbar=False)
    names = list(mu.prefer_target_instrument(config))
    sep = np.stack([res[k] for k in names]).astype(np.float32)
    return sep, names


def gen_model_fixture(bsr, mu, commit, out_root, name, cfg_dict, seed, seconds, real_shape=False,
                      mbr=None):
    """`mbr` given: a MelBandRoformer fixture (bsr is unused then)."""
    import numpy as np
    import torch

    out = Path(out_root) / name if name else Path(out_root)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.yaml"
    cfg_path.write_text(to_yaml(cfg_dict))
    config = load_config_like_msst(cfg_path)
    # the YAML must round-trip to what we meant (tuples stay tuples)
    for sec, body in cfg_dict.items():
        for k, v in body.items():
            got = config[sec][k]
            assert got == v and type(got) is type(v), (sec, k, got, v)

    if mbr is not None:
        model = build_model(mbr, config, seed, cls=mbr.MelBandRoformer)
    else:
        model = build_model(bsr, config, seed)
    torch.save(model.state_dict(), out / "model.ckpt")
    # reload as MSST inference does (load_state_dict from the file)
    model.load_state_dict(torch.load(out / "model.ckpt", map_location="cpu", weights_only=True))
    model.eval()

    channels = config.audio.num_channels
    assert channels == model.audio_channels
    write_mixture(out / "mixture.wav", make_mixture(seconds, channels, seed + 2))
    mix = read_mixture_like_msst(out / "mixture.wav", config)
    assert mix.dtype == np.float32 and mix.shape[0] == channels
    assert np.array_equal(mix, make_mixture(seconds, channels, seed + 2))

    tensors = {}
    if not real_shape:
        chunk = torch.from_numpy(mix[None, :, CHUNK_START:CHUNK_START + CHUNK_LEN].copy())
        with torch.no_grad():
            chunk_output = model(chunk)
            if mbr is not None:
                stft_input, band_masks, masks, recon = replica_forward_mel(mbr, model, chunk)
                tensors["band_masks"] = band_masks
                tensors["freq_indices"] = model.freq_indices.to(torch.float32)
                if chunk_output.ndim == 3:   # a 1-stem Mel model returns b s t
                    chunk_output = chunk_output[:, None]
                    recon = recon[:, None]
            else:
                stft_input, masks, recon = replica_forward(bsr, model, chunk)
        assert torch.equal(recon, chunk_output), "replica forward differs from model forward"
        tensors.update(chunk_input=chunk, stft_input=stft_input, masks=masks,
                       chunk_output=chunk_output)

    t0 = time.perf_counter()
    sep, names = run_demix(mu, config, model, mix,
                           "mel_band_roformer" if mbr is not None else "bs_roformer")
    demix_s = time.perf_counter() - t0
    tensors["separated"] = sep
    if not real_shape and config.training.target_instrument:
        instr = "vocals" if "vocals" in names else names[0]
        tensors["separated_instrumental"] = mix - sep[names.index(instr)]

    chunk_size = config.inference.chunk_size if "chunk_size" in config.inference else config.audio.chunk_size
    metadata = {
        "instruments": ",".join(names),
        "chunk_size": str(chunk_size),
        "num_overlap": str(config.inference.num_overlap),
        "demix_batch_size": "1",
        "sample_rate": str(SR),
        "msst_commit": commit,
    }
    if not real_shape:
        metadata["chunk_start"] = str(CHUNK_START)
    save_tensors(out / "reference.safetensors", tensors, metadata)
    return out, demix_s


def gen_stft_fixture(out_root, seed=1234):
    import torch
    out = Path(out_root) / "stft"
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(2, 20000, generator=g) * 0.3
    tensors = {"signal": signal}
    window = torch.hann_window(2048)
    kw = dict(n_fft=2048, win_length=2048, window=window, normalized=False)
    for hop in (441, 512):
        spec = torch.stft(signal, hop_length=hop, center=True, pad_mode="reflect", onesided=True,
                          return_complex=True, **kw)
        tensors[f"stft_hop{hop}"] = torch.view_as_real(spec)
        tensors[f"istft_hop{hop}"] = torch.istft(spec, hop_length=hop, length=20000, **kw)
        if hop == 441:
            # 19000: shorter than the signal. 20868: beyond the signal end; it is the
            # longest length torch.istft accepts here (T=46 frames: 45*441 + 1024 - 1);
            # 21000 makes torch raise "window overlap add min: 1" (NOLA check).
            for length in (19000, 20868):
                tensors[f"istft_hop441_len{length}"] = torch.istft(spec, hop_length=hop, length=length, **kw)
    save_tensors(out / "reference.safetensors", tensors,
                 {"n_fft": "2048", "win_length": "2048", "window": "hann_window(2048)",
                  "center": "true", "pad_mode": "reflect"})
    return out


MEL_BAND_CASES = [   # (sample_rate, n_fft, n_mels)
    (44100, 2048, 60), (44100, 2048, 128), (44100, 4096, 60), (48000, 2048, 60),
    (32000, 1024, 40), (44100, 2048, 12), (44100, 2048, 10), (22050, 512, 24),
]


def mel_band_layout(sr, n_fft, n_mels):
    """Exactly MelBandRoformer.__init__'s band layout (mono freq_indices, band sizes)."""
    import torch
    from einops import repeat, reduce
    from librosa import filters
    fb = torch.from_numpy(filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels))
    raw = fb.clone()
    fb[0][0] = 1.
    fb[-1, -1] = 1.
    freqs_per_band = fb > 0
    assert freqs_per_band.any(dim=0).all()
    freqs = n_fft // 2 + 1
    freq_indices = repeat(torch.arange(freqs), 'f -> b f', b=n_mels)[freqs_per_band]
    return (raw, freq_indices, reduce(freqs_per_band, 'b f -> b', 'sum'),
            reduce(freqs_per_band, 'b f -> f', 'sum'))


def gen_mel_bands_fixture(out_root):
    """Band membership from librosa's filterbank for several (sr, n_fft, n_mels): mono
    freq_indices, bins per band and bands per bin (as float32 integers), and the raw filterbank
    values of one case."""
    import torch
    out = Path(out_root) / "mel_bands"
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for sr, n_fft, n_mels in MEL_BAND_CASES:
        raw, freq_indices, per_band, per_freq = mel_band_layout(sr, n_fft, n_mels)
        key = f"sr{sr}_nfft{n_fft}_mels{n_mels}"
        tensors[f"{key}.freq_indices"] = freq_indices.to(torch.float32)
        tensors[f"{key}.num_freqs_per_band"] = per_band.to(torch.float32)
        tensors[f"{key}.num_bands_per_freq"] = per_freq.to(torch.float32)
        if (sr, n_fft, n_mels) == (32000, 1024, 40):
            tensors[f"{key}.filterbank"] = raw
    import librosa
    save_tensors(out / "reference.safetensors", tensors,
                 {"cases": ";".join(f"{a},{b},{c}" for a, b, c in MEL_BAND_CASES),
                  "librosa": librosa.__version__})
    return out


# --------------------------------------------------------------------------
# fixture definitions
# --------------------------------------------------------------------------

def fixture_specs(bsr):
    default_bands = tuple(bsr.DEFAULT_FREQS_PER_BANDS)
    return [
        ("bs_stereo_2stem_hop512", 100, 2.0, make_config(
            dim=16, depth=1, stereo=True, num_stems=2, hop=512, freqs_per_bands=default_bands,
            dim_head=8, heads=2, flash_attn=True, mask_estimator_depth=2, mlp_expansion_factor=1,
            skip_connection=False, zero_dc=True, instruments=["vocals", "other"],
            target_instrument=None, chunk_size=16384, num_overlap=2, batch_size=2)),
        ("bs_mono_hop441", 200, 2.0, make_config(
            dim=16, depth=2, stereo=False, num_stems=1, hop=441, freqs_per_bands=default_bands,
            dim_head=8, heads=2, flash_attn=False, mask_estimator_depth=2, mlp_expansion_factor=1,
            skip_connection=False, zero_dc=False, instruments=["vocals", "other"],
            target_instrument="vocals", chunk_size=441 * 40, num_overlap=4, batch_size=2)),
        # 4 stems x (16*8200) output weights dominate this model's size, so its mixture is 1 s
        ("bs_4stem_linear_skip", 300, 1.0, make_config(
            dim=8, depth=3, stereo=True, num_stems=4, hop=441, linear_depth=1,
            freqs_per_bands=(16,) * 32 + (32,) * 8 + (257,),
            dim_head=8, heads=2, flash_attn=True, mask_estimator_depth=3, mlp_expansion_factor=2,
            skip_connection=True, zero_dc=True, instruments=["bass", "drums", "other", "vocals"],
            target_instrument=None, chunk_size=17640, num_overlap=2, batch_size=2)),
    ]


def mel_fixture_specs():
    return [
        # stereo, one target stem (+ instrumental), linear transformer, mask depth 2 = 3 Linears,
        # hop 441 with a chunk that is a multiple of it (as every published config)
        ("mel_tiny_stereo", 400, 0.8, make_mel_config(
            num_bands=12, dim=16, depth=1, stereo=True, num_stems=1, hop=441, linear_depth=1,
            dim_head=8, heads=2, flash_attn=True, mask_estimator_depth=2, mlp_expansion_factor=1,
            skip_connection=False, zero_dc=True, instruments=["vocals", "other"],
            target_instrument="vocals", chunk_size=441 * 40, num_overlap=2, batch_size=2)),
        # mono, two stems, mask_estimator_depth left to MSST's Mel default (1 = 2 Linears),
        # skip connections, no zero_dc, match_input_audio_length with a chunk (16000) that is not
        # a multiple of the hop
        ("mel_tiny_mono", 500, 1.0, make_mel_config(
            num_bands=10, match_input_audio_length=True, omit_mask_estimator_depth=True,
            dim=8, depth=2, stereo=False, num_stems=2, hop=512,
            dim_head=8, heads=2, flash_attn=False, mask_estimator_depth=1, mlp_expansion_factor=1,
            skip_connection=True, zero_dc=False, instruments=["vocals", "other"],
            target_instrument=None, chunk_size=16000, num_overlap=4, batch_size=2)),
    ]


def real_shape_mel_config(depth, overlap):
    """viperx's vocals Mel-Band RoFormer (model_mel_band_roformer_ep_3005_sdr_11.4360)."""
    return make_mel_config(
        num_bands=60, dim=384, depth=depth, stereo=True, num_stems=1, hop=441,
        dim_head=64, heads=8, flash_attn=True, mask_estimator_depth=2, mlp_expansion_factor=4,
        skip_connection=False, zero_dc=True, instruments=["vocals", "other"],
        target_instrument="vocals", chunk_size=352800, num_overlap=overlap, batch_size=4)


def real_shape_config(bsr, depth, overlap):
    return make_config(
        dim=512, depth=depth, stereo=True, num_stems=1, hop=441,
        freqs_per_bands=tuple(bsr.DEFAULT_FREQS_PER_BANDS), dim_head=64, heads=8,
        flash_attn=True, mask_estimator_depth=2, mlp_expansion_factor=4,
        skip_connection=False, zero_dc=True, instruments=["vocals", "other"],
        target_instrument="vocals", chunk_size=352800, num_overlap=overlap, batch_size=4)


def summarize(folder):
    print(f"{folder}:")
    total = 0
    for f in sorted(Path(folder).iterdir()):
        data = f.read_bytes()
        total += len(data)
        print(f"  {f.name:24s} {len(data):>11,d} B  sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    print(f"  {'total':24s} {total:>11,d} B")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msst", default=os.environ.get("MSST_DIR"),
                    help="MSST checkout (default: $MSST_DIR)")
    ap.add_argument("--out", default=None,
                    help=f"output folder (default {DEFAULT_OUT}; required with --real-shape)")
    ap.add_argument("--only", action="append", default=None,
                    help="generate only this fixture (repeatable): a model fixture name, 'stft' or "
                         "'mel_bands'")
    ap.add_argument("--real-shape", action="store_true",
                    help="vocals-model shape (viperx ep_317) with random weights, for acceptance runs")
    ap.add_argument("--real-shape-mel", action="store_true",
                    help="Mel-Band vocals-model shape (viperx ep_3005) with random weights, for "
                         "acceptance runs")
    ap.add_argument("--depth", type=int, default=12, help="--real-shape: depth (default 12)")
    ap.add_argument("--seconds", type=float, default=30.0, help="--real-shape: mixture length")
    ap.add_argument("--overlap", type=int, default=2, help="--real-shape: num_overlap (default 2)")
    args = ap.parse_args()

    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)  # MSST's deprecated torch.cuda.amp / sdp_kernel
    import torch
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    bsr, mu, commit = import_msst(args.msst)
    mbr = import_msst_mel()

    if args.real_shape or args.real_shape_mel:
        if not args.out:
            sys.exit("error: --real-shape needs --out (keep big files out of the repository)")
        if args.real_shape_mel:
            cfg = real_shape_mel_config(args.depth, args.overlap)
            out, demix_s = gen_model_fixture(bsr, mu, commit, args.out, None, cfg, seed=950,
                                             seconds=args.seconds, real_shape=True, mbr=mbr)
        else:
            cfg = real_shape_config(bsr, args.depth, args.overlap)
            out, demix_s = gen_model_fixture(bsr, mu, commit, args.out, None, cfg, seed=900,
                                             seconds=args.seconds, real_shape=True)
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        summarize(out)
        print(f"demix wall time: {demix_s:.2f} s  (depth {args.depth}, {args.seconds} s audio, "
              f"overlap {args.overlap}, batch_size 1, {torch.get_num_threads()} threads)")
        print(f"peak RSS: {rss_kib / 1024:.1f} MiB")
        return

    out_root = Path(args.out) if args.out else DEFAULT_OUT
    grand = 0
    for name, seed, seconds, cfg in fixture_specs(bsr):
        if args.only and name not in args.only:
            continue
        out, _ = gen_model_fixture(bsr, mu, commit, out_root, name, cfg, seed, seconds)
        grand += summarize(out)
    for name, seed, seconds, cfg in mel_fixture_specs():
        if args.only and name not in args.only:
            continue
        out, _ = gen_model_fixture(bsr, mu, commit, out_root, name, cfg, seed, seconds, mbr=mbr)
        grand += summarize(out)
    if not args.only or "mel_bands" in args.only:
        grand += summarize(gen_mel_bands_fixture(out_root))
    if not args.only or "stft" in args.only:
        grand += summarize(gen_stft_fixture(out_root))
    print(f"all fixtures: {grand:,d} B")


if __name__ == "__main__":
    main()
