#!/usr/bin/env python3
"""Training-speed baseline: MSST's BS-RoFormer / Mel-Band RoFormer in PyTorch.

    python tools/bench_train_pytorch.py --msst /work/msst --config C.yaml \
        [--batch B] [--chunk SAMPLES] [--steps N] [--warmup W] [--threads T] \
        [--loss model|masked] [--device cpu|cuda] [--json]

The model is built from the config as MSST does, with random init (torch.manual_seed(0)),
the config's dropouts, and `model.train()`. The batch is random, with the config's shape:
`training.batch_size`, `audio.num_channels` and `audio.chunk_size`. The optimizer is
Adam(lr=training.lr). Each step does forward (`--loss model`: MSST's internal loss
`model(x, target=y)`; `--loss masked`: `utils.losses.masked_loss(model(x), y, q,
coarse)`), backward, `optimizer.step()` and `zero_grad()`. After W warmup steps, N steps are
timed one at a time. The report gives the median s/step, steps/s, peak RSS, the torch version
and the thread count.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR))
import gen_fixtures as gf          # noqa: E402  (import_msst, load_config_like_msst)
import gen_train_fixtures as gtf   # noqa: E402  (import_masked_loss, keep_stem_axis)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msst", default=os.environ.get("MSST_DIR"), help="MSST checkout (default: $MSST_DIR)")
    ap.add_argument("--config", required=True, help="MSST-style YAML config")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: training.batch_size)")
    ap.add_argument("--chunk", type=int, default=None, help="samples per item (default: audio.chunk_size)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warmup steps (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--loss", choices=("model", "masked"), default="model",
                    help="model: MSST internal loss (default); masked: utils.losses.masked_loss")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0:
        sys.exit("error: --steps must be >= 1 and --warmup >= 0")

    import warnings
    warnings.filterwarnings("ignore", message=r".*sdp_kernel.*", category=FutureWarning)
    import torch
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    bsr, _mu, commit = gf.import_msst(args.msst)
    mbr = gf.import_msst_mel()
    config = gf.load_config_like_msst(args.config)
    is_mel = "num_bands" in config.model
    cls = mbr.MelBandRoformer if is_mel else bsr.BSRoformer

    torch.manual_seed(0)
    model = cls(**dict(config.model)).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=float(config.training.lr))

    batch = args.batch or int(config.training.batch_size)
    chunk = args.chunk or int(config.audio.chunk_size)
    channels = int(config.audio.get("num_channels", 2 if config.model.stereo else 1))
    stems = int(config.model.num_stems)
    g = torch.Generator().manual_seed(1)
    x = (0.1 * torch.randn(batch, channels, chunk, generator=g)).to(device)
    y = (0.1 * torch.randn(batch, stems, channels, chunk, generator=g)).to(device)

    # a 1-stem MelBandRoformer's own loss crashes in MSST (see gen_train_fixtures.keep_stem_axis)
    squeeze_fix = is_mel and stems == 1
    if args.loss == "masked":
        masked_loss, _ = gtf.import_masked_loss()
        q = float(config.training.q)
        coarse = bool(config.training.get("coarse_loss_clip", True))

    def loss_fn():
        if args.loss == "model":
            if squeeze_fix:
                with gtf.keep_stem_axis(mbr):
                    return model(x, target=y)
            return model(x, target=y)
        out = model(x)
        if out.ndim == 3:
            out = out[:, None]
        return masked_loss(out, y[..., :out.shape[-1]], q=q, coarse=coarse)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    sync()
    times, last = [], None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        last = step()
        sync()
        times.append(time.perf_counter() - t0)

    med = statistics.median(times)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    result = {
        "config": str(args.config),
        "model": cls.__name__,
        "params": sum(p.numel() for p in params),
        "batch": batch, "channels": channels, "stems": stems, "chunk": chunk,
        "loss": args.loss + (" (1-stem squeeze skipped)" if squeeze_fix and args.loss == "model" else ""),
        "optimizer": f"Adam(lr={float(config.training.lr)})",
        "device": str(device),
        "warmup": args.warmup, "steps": args.steps,
        "median_s_per_step": med,
        "steps_per_s": 1.0 / med,
        "mean_s_per_step": statistics.fmean(times),
        "min_s_per_step": min(times), "max_s_per_step": max(times),
        "step_times_s": times,
        "last_loss": float(last),
        "peak_rss_mb": rss_kb / 1024.0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "msst_commit": commit,
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['model']} ({result['params']} params) from {result['config']}")
    print(f"  batch [{batch}, {channels}, {chunk}], stems {stems}, loss {result['loss']}, "
          f"{result['optimizer']}, {device}, torch {result['torch']}, {result['threads']} threads")
    print(f"  {args.steps} steps after {args.warmup} warmup: median {med:.4f} s/step "
          f"({1.0 / med:.3f} steps/s), min {min(times):.4f}, max {max(times):.4f}")
    print(f"  last loss {result['last_loss']:.6g}, peak RSS {result['peak_rss_mb']:.1f} MB"
          + (f", peak CUDA {result['peak_cuda_mb']:.1f} MB" if "peak_cuda_mb" in result else ""))


if __name__ == "__main__":
    main()
