#!/usr/bin/env python3
"""Gradient-parity fixtures for the Rust trainer.

For three of the committed model fixtures (tests/fixtures/models/<name>/config.yaml +
model.ckpt) this script builds ZFTurbo's MSST model (imported from --msst, never copied),
runs one fixed training batch through it and records what PyTorch computes:

  * the MSST internal loss (`model(mixture, target=target)`: L1 + multi-resolution STFT L1)
    and the gradient of every trainable parameter;
  * MSST's `utils.losses.masked_loss(model(mixture), target, q, coarse)` and its gradients;
  * the parameters after Adam (1 and 2 steps) and after AdamW with gradient-norm clipping
    (2 steps), each run starting from model.ckpt.

    python tools/gen_train_fixtures.py --msst /work/msst          # -> tests/fixtures/train/

Everything is float32 on CPU with 1 thread and fixed seeds; two runs give byte-identical
files. See tests/fixtures/train/README.md for the exact contents.
"""

import argparse
import contextlib
import hashlib
import math
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR))
import gen_fixtures as gf  # noqa: E402  (import_msst, load_config_like_msst, save_tensors)

REPO_ROOT = TOOLS_DIR.parent
MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "train"

SR = 44100
BATCH = 2
MIN_LEN = 8192            # L = smallest even number of hops >= MIN_LEN
BATCH_SCALE = (1.0, 0.5)  # per-batch-item amplitude: keeps masked_loss's quantile mask clear-cut
LR = 1e-3
WEIGHT_DECAY = 0.01
CLIP_FRACTION = 0.5       # clip max_norm ~= CLIP_FRACTION * unclipped total norm (step 1)

# name -> data seed
FIXTURES = {
    "bs_stereo_2stem_hop512": 1101,
    "mel_tiny_stereo": 1202,
    "bs_4stem_linear_skip": 1303,
}

# Parameters of the per-band modules (band split and mask estimators) make up >95% of these
# models. To keep the files small, the sets in SUBSET_SETS hold those parameters only for bands
# SUBSET_BANDS (all other parameters always); `grad.model` always holds every parameter.
# --full: every set holds every parameter (~3.5x larger); --small: grad.model is a subset too.
BAND_PARAM = re.compile(r"^(band_split\.to_features|mask_estimators\.\d+\.to_freqs)\.(\d+)\.")
SUBSET_SETS = ("grad.masked", "adam1", "adam2", "adamw_clip2")
SUBSET_BANDS = lambda nb: sorted({0, 1, nb // 2})  # noqa: E731


# --------------------------------------------------------------------------
# MSST imports
# --------------------------------------------------------------------------

def import_masked_loss():
    """MSST's utils.losses.masked_loss. utils/losses.py imports auraloss and torch_log_wmse at
    module level (for other losses); when they are not installed, empty stand-in modules are
    registered so the import works. masked_loss itself only uses torch."""
    stubbed = []
    for mod, attrs in (("auraloss", ()), ("torch_log_wmse", ("LogWMSE",))):
        try:
            __import__(mod)
        except ModuleNotFoundError:
            stub = types.ModuleType(mod)
            for a in attrs:
                def _unavailable(*_a, _name=f"{mod}.{a}", **_k):
                    raise RuntimeError(f"{_name} is a stand-in (package not installed)")
                setattr(stub, a, _unavailable)
            sys.modules[mod] = stub
            stubbed.append(mod)
    import utils.losses as losses  # noqa: E402
    return losses.masked_loss, stubbed


@contextlib.contextmanager
def keep_stem_axis(mbr):
    """MelBandRoformer.forward squeezes a 1-stem output to [b, s, t] ('b 1 s t -> b s t') and
    then, when a target is given, rearranges it with 'b n s t -> (b n s) t', which fails for a
    3-dim tensor (EinopsError, MSST since commit ead9986). Inside this context that one squeeze
    is skipped, so MSST's own loss code runs on recon [b, 1, s, t] against target [b, 1, s, t]."""
    orig = mbr.rearrange

    def patched(tensor, pattern, **axes):
        if pattern == "b 1 s t -> b s t":
            return tensor
        return orig(tensor, pattern, **axes)

    mbr.rearrange = patched
    try:
        yield
    finally:
        mbr.rearrange = orig


# --------------------------------------------------------------------------
# model, data, losses
# --------------------------------------------------------------------------

class Case:
    """One fixture model: config, MSST modules and a way to get fresh models from model.ckpt."""

    def __init__(self, name, bsr, mbr):
        import torch
        self.name = name
        self.dir = MODELS_DIR / name
        self.config = gf.load_config_like_msst(self.dir / "config.yaml")
        self.is_mel = "num_bands" in self.config.model
        self.mbr = mbr
        self.cls = mbr.MelBandRoformer if self.is_mel else bsr.BSRoformer
        self.state = torch.load(self.dir / "model.ckpt", map_location="cpu", weights_only=True)
        self.num_stems = self.config.model.num_stems
        self.channels = 2 if self.config.model.stereo else 1
        self.hop = self.config.model.stft_hop_length
        n_hops = math.ceil(MIN_LEN / self.hop)
        n_hops += n_hops % 2
        self.length = n_hops * self.hop

    def fresh_model(self, train=True):
        import torch
        kw = dict(self.config.model)
        kw["attn_dropout"] = 0.0
        kw["ff_dropout"] = 0.0
        torch.manual_seed(0)   # construction draws random init; all of it is overwritten below
        model = self.cls(**kw)
        model.load_state_dict(self.state, strict=True)
        model.train(train)
        return model

    def model_loss(self, model, mixture, target, breakdown=False):
        """MSST's internal loss: model(mixture, target=target)."""
        ctx = keep_stem_axis(self.mbr) if (self.is_mel and self.num_stems == 1) else contextlib.nullcontext()
        with ctx:
            return model(mixture, target=target, return_loss_breakdown=breakdown)

    def recon(self, model, mixture):
        """model(mixture) as [b, stems, channels, t] (a 1-stem Mel model returns [b, s, t])."""
        y = model(mixture)
        if y.ndim == 3:
            y = y[:, None]
        return y


def trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_batch(case, seed):
    """mixture [B, C, L], target [B, S, C, L]: noise + sinusoids, batch item b scaled by
    BATCH_SCALE[b]. mixture = sum of stems (+ an independent residual when S == 1)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    B, S, C, L = BATCH, case.num_stems, case.channels, case.length
    t = torch.arange(L, dtype=torch.float64) / SR
    scale = torch.tensor(BATCH_SCALE, dtype=torch.float64).view(B, 1, 1)

    def signals(n):
        noise = 0.1 * torch.randn(B, n, C, L, generator=g, dtype=torch.float64)
        k = 4   # sinusoids per (b, stem, channel): 60 Hz .. 12 kHz log-uniform
        f = 60.0 * 200.0 ** torch.rand(B, n, C, k, 1, generator=g, dtype=torch.float64)
        ph = 2 * math.pi * torch.rand(B, n, C, k, 1, generator=g, dtype=torch.float64)
        a = 0.05 + 0.2 * torch.rand(B, n, C, k, 1, generator=g, dtype=torch.float64)
        sines = (a * torch.sin(2 * math.pi * f * t + ph)).sum(-2)
        return (noise + sines) * scale[:, :, :, None]

    target = signals(S)
    mixture = target.sum(1)
    if S == 1:
        mixture = mixture + signals(1)[:, 0]
    return mixture.float().contiguous(), target.float().contiguous()


def reference_model_loss(model, recon, target):
    """Independent re-statement of MSST's internal loss, used only as a cross-check:
    mean|recon - target| + w * sum_win mean|STFT_win(recon) - STFT_win(target)| (complex modulus),
    STFT: n_fft = max(win, stft_n_fft), hop = multi_stft_hop_size, hann(win), center/reflect."""
    import torch
    L = recon.shape[-1]
    l1 = (recon - target).abs().mean()
    stft = 0.0
    for win in model.multi_stft_resolutions_window_sizes:
        kw = dict(n_fft=max(win, model.multi_stft_n_fft), win_length=win,
                  window=torch.hann_window(win), return_complex=True, **model.multi_stft_kwargs)
        stft = stft + (torch.stft(recon.reshape(-1, L), **kw)
                       - torch.stft(target.reshape(-1, L), **kw)).abs().mean()
    return l1 + model.multi_stft_resolution_loss_weight * stft, l1, stft


def loss_and_grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    grads = {}
    for n, p in trainable(model):
        if p.grad is None:
            raise SystemExit(f"error: parameter {n} got no gradient")
        grads[n] = p.grad.detach().clone()
    return loss.detach().clone(), grads


def run_optimizer(case, mixture, target, *, kind, steps, max_norm=None):
    """From model.ckpt: `steps` x (zero_grad, model loss, backward, [clip], step)."""
    import torch
    model = case.fresh_model()
    params = [p for _, p in trainable(model)]
    if kind == "adam":
        opt = torch.optim.Adam(params, lr=LR, foreach=False)
    else:
        opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, foreach=False)
    losses, norms = [], []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = case.model_loss(model, mixture, target)
        loss.backward()
        losses.append(loss.detach().clone())
        if max_norm is not None:
            norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm, foreach=False).detach().clone())
        opt.step()
    return {n: p.detach().clone() for n, p in trainable(model)}, losses, norms


def band_subset(model, names):
    keep_bands = SUBSET_BANDS(len(model.band_split.to_features))
    out = []
    for n in names:
        m = BAND_PARAM.match(n)
        if m is None or int(m.group(2)) in keep_bands:
            out.append(n)
    return out, keep_bands


def f32_exact(x):
    import torch
    return float(torch.tensor(x, dtype=torch.float32))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# one fixture
# --------------------------------------------------------------------------

def gen_one(case, seed, masked_loss, out_dir, commit, mode):
    import torch

    mixture, target = make_batch(case, seed)
    B, S, C, L = target.shape
    cfg_t = case.config.training
    q = float(cfg_t.q)
    coarse = bool(cfg_t.get("coarse_loss_clip", True))
    assert coarse, "this fixture expects coarse=True"

    model = case.fresh_model(train=True)
    names = [n for n, _ in trainable(model)]
    n_trainable = sum(p.numel() for _, p in trainable(model))
    n_all = sum(p.numel() for p in model.parameters())
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]

    # forward output (train mode), shape checks
    with torch.no_grad():
        raw = model(mixture)
        recon = raw[:, None] if raw.ndim == 3 else raw
    raw_shape = tuple(raw.shape)
    assert recon.shape == (B, S, C, L), (recon.shape, (B, S, C, L))

    # 1) MSST internal loss: value cross-checked against an independent statement of the formula
    loss_m, (l1_m, stft_m) = case.model_loss(model, mixture, target, breakdown=True)
    loss_m, l1_m, stft_m = loss_m.detach(), l1_m.detach(), stft_m.detach()
    ref_total, ref_l1, ref_stft = reference_model_loss(model, recon, target)
    for a, b, what in ((loss_m, ref_total, "total"), (l1_m, ref_l1, "l1"), (stft_m, ref_stft, "stft")):
        assert torch.allclose(a, b, rtol=1e-5, atol=0), (what, float(a), float(b))
    loss_model, grad_model = loss_and_grads(model, lambda: case.model_loss(model, mixture, target))
    assert torch.equal(loss_model, loss_m)

    # 2) MSST masked_loss on model(mixture) reshaped to [B, S, C, L]
    loss_masked, grad_masked = loss_and_grads(
        model, lambda: masked_loss(case.recon(model, mixture), target, q=q, coarse=coarse))
    per_item = ((recon - target) ** 2).mean(dim=(-1, -2)).transpose(0, 1)   # [S, B]
    srt = per_item.sort(dim=1).values
    gap = float(((srt[:, -1] - srt[:, -2]) / srt[:, -1]).min())   # B=2: the dropped item vs the kept one
    assert gap > 0.05, f"masked_loss quantile mask too close to a tie (relative gap {gap})"

    # 3) train() vs eval(): with dropout 0 nothing may differ
    model_eval = case.fresh_model(train=False)
    le, ge = loss_and_grads(model_eval, lambda: case.model_loss(model_eval, mixture, target))
    lme, gme = loss_and_grads(
        model_eval, lambda: masked_loss(case.recon(model_eval, mixture), target, q=q, coarse=coarse))
    train_eval_equal = (torch.equal(le, loss_model) and torch.equal(lme, loss_masked)
                        and all(torch.equal(ge[n], grad_model[n]) and torch.equal(gme[n], grad_masked[n])
                                for n in names))
    assert train_eval_equal, "train() and eval() differ although dropout is 0"

    # 4) optimisers
    adam1, _, _ = run_optimizer(case, mixture, target, kind="adam", steps=1)
    adam2, adam2_losses, _ = run_optimizer(case, mixture, target, kind="adam", steps=2)
    assert torch.equal(adam2_losses[0], loss_model)
    total_norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(grad_model[n]) for n in names]))
    max_norm = f32_exact(float(f"{CLIP_FRACTION * float(total_norm):.3g}"))
    adamw, adamw_losses, clip_norms = run_optimizer(case, mixture, target, kind="adamw", steps=2,
                                                    max_norm=max_norm)
    assert torch.equal(adamw_losses[0], loss_model)
    assert float(clip_norms[0]) > max_norm and float(clip_norms[1]) > max_norm, "clipping must happen"

    # 5) write
    subset_sets = {"full": (), "default": SUBSET_SETS, "small": ("grad.model",) + SUBSET_SETS}[mode]
    subset_names, bands = band_subset(model, names)

    def pick(prefix, d):
        chosen = subset_names if prefix in subset_sets else names
        return {f"{prefix}.{n}": d[n] for n in chosen}

    one = lambda v: torch.tensor([float(v)], dtype=torch.float32)  # noqa: E731
    tensors = {
        "mixture": mixture,
        "target": target,
        "loss.model": loss_model.reshape(1),
        "loss.model_l1": l1_m.reshape(1),
        "loss.model_stft": stft_m.reshape(1),
        "loss.masked": loss_masked.reshape(1),
        "loss.adam2_step2": adam2_losses[1].reshape(1),
        "loss.adamw_clip2_step2": adamw_losses[1].reshape(1),
        "clip.max_norm": one(max_norm),
        "clip.total_norm": clip_norms[0].reshape(1).float(),
        "clip.total_norm_step2": clip_norms[1].reshape(1).float(),
    }
    tensors.update(pick("grad.model", grad_model))
    tensors.update(pick("grad.masked", grad_masked))
    tensors.update(pick("adam1", adam1))
    tensors.update(pick("adam2", adam2))
    tensors.update(pick("adamw_clip2", adamw))

    metadata = {
        "model": case.name,
        "model_class": case.cls.__name__,
        "msst_commit": commit,
        "torch_version": torch.__version__,
        "batch": str(B), "stems": str(S), "channels": str(C), "length": str(L),
        "data_seed": str(seed),
        "attn_dropout": "0.0", "ff_dropout": "0.0", "mode": "train",
        "masked_loss_q": repr(q), "masked_loss_coarse": str(coarse),
        "adam": f"torch.optim.Adam(lr={LR}, betas=(0.9, 0.999), eps=1e-08, weight_decay=0, foreach=False)",
        "adamw": f"torch.optim.AdamW(lr={LR}, betas=(0.9, 0.999), eps=1e-08, weight_decay={WEIGHT_DECAY}, foreach=False)",
        "clip": "torch.nn.utils.clip_grad_norm_(trainable params, max_norm=clip.max_norm) before each AdamW step",
        "subset": (f"{','.join(subset_sets)}: band_split/mask_estimators params of bands {bands} only"
                   if subset_sets else "none (every set holds every trainable parameter)"),
        "model_loss_call": ("model(mixture, target=target) with the 1-stem squeeze skipped (keep_stem_axis)"
                            if case.is_mel and S == 1 else "model(mixture, target=target)"),
        "recon_raw_shape": "x".join(map(str, raw_shape)),
        "frozen_params": ",".join(frozen),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case.name}.safetensors"
    gf.save_tensors(path, tensors, metadata)

    gn = lambda g: float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g[n]) for n in names])))  # noqa: E731
    print(f"{case.name}: {case.cls.__name__}, params {n_trainable} trainable in {len(names)} tensors "
          f"({n_all} incl. frozen: {', '.join(frozen) or 'none'})")
    print(f"  batch mixture {list(mixture.shape)} target {list(target.shape)}; model(mixture) -> {list(raw_shape)}")
    print(f"  loss.model  = {float(loss_model):.9g}  (l1 {float(l1_m):.9g} + stft {float(stft_m):.9g}); "
          f"|grad| = {gn(grad_model):.6g}")
    print(f"  loss.masked = {float(loss_masked):.9g}  (q={q}, coarse={coarse}; per-item MSE [S,B] "
          f"{[[round(float(v), 6) for v in row] for row in per_item]}, min rel gap {gap:.3f}); "
          f"|grad| = {gn(grad_masked):.6g}")
    print(f"  adam2 step-2 loss {float(adam2_losses[1]):.9g}; adamw_clip2: max_norm {max_norm!r}, "
          f"total norm step1 {float(clip_norms[0]):.6g}, step2 {float(clip_norms[1]):.6g}, "
          f"step-2 loss {float(adamw_losses[1]):.9g}")
    print(f"  train()==eval(): {train_eval_equal}; keys {len(tensors)}; "
          f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
          f"{path.stat().st_size / 1e6:.2f} MB sha256 {sha256(path)[:16]}")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msst", default=os.environ.get("MSST_DIR"),
                    help="MSST checkout (default: $MSST_DIR)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--only", action="append", choices=sorted(FIXTURES), help="one model (repeatable)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true",
                      help="every set holds every parameter (~29 MB instead of ~9 MB)")
    size.add_argument("--small", action="store_true",
                      help="grad.model is band-subset too (~3 MB)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import warnings
    warnings.filterwarnings("ignore", message=r".*sdp_kernel.*", category=FutureWarning)

    bsr, _mu, commit = gf.import_msst(args.msst)
    mbr = gf.import_msst_mel()
    masked_loss, stubbed = import_masked_loss()
    print(f"MSST {commit}, torch {torch.__version__}, threads {torch.get_num_threads()}"
          + (f", stand-in modules for: {', '.join(stubbed)}" if stubbed else ""))

    t0 = time.perf_counter()
    for name in (args.only or FIXTURES):
        gen_one(Case(name, bsr, mbr), FIXTURES[name], masked_loss, Path(args.out), commit,
               "full" if args.full else "small" if args.small else "default")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
