#!/usr/bin/env python3
"""Time roformer against MSST's PyTorch model on the same weights and the same input chunk
(BS- and Mel-Band RoFormer configs, and HT Demucs configs with `model: htdemucs`).

Run through tools/bench-vs-pytorch (see tools/README.md):

    tools/bench-vs-pytorch --config C --msst /work/msst [--model CKPT] [--threads N] \\
        [--runs R] [--precision f32,bf16,int8]

Steps, each timed run in its own process so that peak memory is separate:
1. Weights: --model CKPT, or a random model built in PyTorch from the config with --seed
   (gen_fixtures.build_model; for HT Demucs, MSST's models/demucs4ht.get_model with PyTorch's
   own initialisation) and saved to a temporary checkpoint; both sides load that file.
2. `roformer bench --model CKPT --config C --threads N --runs R --json --save-output F` for each
   precision (f32 first). Its saved `input` (one chunk of chunk_size samples, deterministic) is
   the input PyTorch gets.
3. PyTorch: `model(x)` under `torch.no_grad()` with `torch.set_num_threads(N)`, one warm-up,
   then R timed runs; peak RSS from `resource.getrusage`.
4. Report: medians, PyTorch / ours, GFLOP/s, the matmul floor and ours / floor (from roformer's
   report), peak RSS of each, the SNR of our f32 output against PyTorch's, and of every other
   precision against our f32 output.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO_ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import gen_fixtures  # noqa: E402  (import_msst, load_config_like_msst, build_model)


# --------------------------------------------------------------------------
# PyTorch side (run in child processes)
# --------------------------------------------------------------------------

def is_htdemucs(config_path):
    """MSST's test for HT Demucs configs (`model: htdemucs`, or an `htdemucs:` section)."""
    import yaml
    with open(config_path) as f:
        raw = yaml.safe_load(f) or {}
    return raw.get("model") == "htdemucs" or "htdemucs" in raw


def htdemucs_model(msst_dir, config_path):
    """MSST's HTDemucs for the config, loaded as MSST loads htdemucs configs (OmegaConf), and
    the MSST commit."""
    from omegaconf import OmegaConf
    _bsr, _mu, commit = gen_fixtures.import_msst(msst_dir)
    import models.demucs4ht as ht
    return ht.get_model(OmegaConf.load(config_path)), commit


def is_mel(config):
    model = dict(config.model)
    return model.get("num_bands") is not None and model.get("freqs_per_bands") is None


def msst_module(msst_dir, config):
    """(module, class) of the network the config describes, from MSST's code."""
    bsr, _mu, commit = gen_fixtures.import_msst(msst_dir)
    if is_mel(config):
        mbr = gen_fixtures.import_msst_mel()
        return mbr, mbr.MelBandRoformer, commit
    return bsr, bsr.BSRoformer, commit


def read_state_dict(path):
    """A checkpoint's state dict: torch.save zips (possibly wrapped) or safetensors."""
    import torch
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model", "state"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def cmd_make_checkpoint(args):
    import torch
    torch.set_num_threads(args.threads)
    if is_htdemucs(args.config):
        torch.manual_seed(args.seed)   # PyTorch's own initialisation
        model, _ = htdemucs_model(args.msst, args.config)
    else:
        config = gen_fixtures.load_config_like_msst(args.config)
        module, cls, _ = msst_module(args.msst, config)
        model = gen_fixtures.build_model(module, config, args.seed, cls)
    torch.save(model.state_dict(), args.out)
    params = sum(p.numel() for p in model.state_dict().values())
    print(json.dumps({"parameters": params}))


def cmd_torch_run(args):
    import warnings
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    torch.set_num_threads(args.threads)
    # MSST's attention still uses torch.backends.cuda.sdp_kernel(), deprecated in torch 2.x.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if is_htdemucs(args.config):
        model, commit = htdemucs_model(args.msst, args.config)
    else:
        config = gen_fixtures.load_config_like_msst(args.config)
        module, cls, commit = msst_module(args.msst, config)
        model = cls(**dict(config.model))   # as MSST's get_model_from_config
    model.load_state_dict(read_state_dict(args.ckpt), strict=True)
    model.eval()
    x = torch.from_numpy(load_file(args.input)["input"][:1].copy())   # [1, C, chunk]
    with torch.no_grad():
        t = time.perf_counter()
        y = model(x)
        warmup = time.perf_counter() - t
        runs = []
        for _ in range(args.runs):
            t = time.perf_counter()
            y = model(x)
            runs.append(time.perf_counter() - t)
    np.save(args.out, y.numpy().astype(np.float32))
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    print(json.dumps({
        "warmup_s": warmup,
        "runs_s": runs,
        "median_s": float(np.median(runs)),
        "peak_rss_mb": maxrss_kb / 1024.0,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "msst_commit": commit,
        "output_shape": list(y.shape),
    }))


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------

def run_json(cmd, what):
    """Runs cmd (stderr passed through), returns its stdout parsed as JSON."""
    print(f"$ {' '.join(str(c) for c in cmd)}", file=sys.stderr, flush=True)
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"error: {what} failed (exit {p.returncode})")
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        sys.exit(f"error: {what} did not print JSON:\n{p.stdout}")


def find_roformer(explicit):
    candidates = [explicit, os.environ.get("ROFORMER")]
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates.append(str(Path(target) / "release" / "roformer"))
    candidates.append(str(REPO_ROOT / "target" / "release" / "roformer"))
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    sys.exit("error: no roformer binary: build it with `cargo build --release -p roformer-cli` "
             "or pass --roformer PATH (or set ROFORMER)")


def snr_db(reference, estimate):
    import numpy as np
    r = reference.astype(np.float64).ravel()
    e = estimate.astype(np.float64).ravel()
    noise = np.sum((r - e) ** 2)
    signal = np.sum(r ** 2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise))


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def cmd_main(args):
    import numpy as np
    from safetensors.numpy import load_file

    sys.stdout.reconfigure(line_buffering=True)
    precisions = [p for spec in args.precision for p in spec.split(",") if p]
    for p in precisions:
        if p not in ("f32", "bf16", "int8"):
            sys.exit(f"error: unknown precision `{p}` (expected f32, bf16 or int8)")
    # Every SNR is against our f32 output: run f32 first, whether asked or not.
    precisions = ["f32"] + [p for p in dict.fromkeys(precisions) if p != "f32"]
    if not args.msst:
        sys.exit("error: pass --msst DIR or set MSST_DIR (a checkout of "
                 "ZFTurbo/Music-Source-Separation-Training)")
    config = Path(args.config).resolve()
    if not config.is_file():
        sys.exit(f"error: no config file {config}")
    roformer = find_roformer(args.roformer)
    threads = args.threads or os.cpu_count()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-vs-pytorch-"))
    work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--config", config, "--msst", args.msst, "--threads", threads]
    try:
        if args.model:
            ckpt = Path(args.model).resolve()
            weights = str(ckpt)
        else:
            ckpt = work / "model.ckpt"
            made = run_json(me + ["_make-checkpoint", *common, "--seed", args.seed,
                                  "--out", ckpt], "building the PyTorch model")
            weights = f"random (PyTorch, seed {args.seed}, {made['parameters']} parameters)"

        ours = {}
        outputs = {}
        for p in precisions:
            out = work / f"roformer_{p}.safetensors"
            ours[p] = run_json([roformer, "bench", "--model", ckpt, "--config", config,
                                "--threads", threads, "--runs", args.runs, "--json",
                                "--precision", p, "--save-output", out],
                               f"roformer bench --precision {p}")
            outputs[p] = load_file(str(out))["output"]
        torch_out = work / "pytorch_output.npy"
        torch = run_json(me + ["_torch-run", *common, "--ckpt", ckpt,
                               "--input", work / "roformer_f32.safetensors",
                               "--runs", args.runs, "--out", torch_out], "the PyTorch run")

        # Our output is [chunks, stems, C, chunk]; PyTorch's [1, stems, C, L] or, for one stem,
        # [1, C, L] (L < chunk for Mel-Band models without match_input_audio_length).
        ref = np.load(torch_out)
        ref = ref.reshape(outputs["f32"].shape[1:-1] + (ref.shape[-1],))
        snr_vs_torch = snr_db(ref, outputs["f32"][0][..., :ref.shape[-1]])
        snr_vs_f32 = {p: snr_db(outputs["f32"], outputs[p]) for p in precisions if p != "f32"}
        same_as_f32 = [p for p in precisions[1:] if np.array_equal(outputs["f32"], outputs[p])]
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    f32 = ours["f32"]
    # roformer counts FLOPs for the RoFormers only (None for HT Demucs).
    gflop = f32.get("gflop_per_chunk")
    rows = []
    for p in precisions:
        o = ours[p]
        rows.append({
            "precision": p,
            "ours_s": o["s_per_chunk"],
            "pytorch_s": torch["median_s"],
            "ratio": torch["median_s"] / o["s_per_chunk"],
            "gflop_per_s": o.get("gflop_per_s"),
            "floor_s": o.get("floor_s_per_chunk"),
            "ours_over_floor": o.get("ours_over_floor"),
            "peak_rss_mb": o["peak_rss_mb"],
            "snr_vs_f32_db": snr_vs_f32.get(p),
            "runs_s": o["runs_s"],
        })
    summary = {
        "config": str(config),
        "weights": weights,
        "threads": threads,
        "runs": args.runs,
        "chunk_size": f32["chunk_size"],
        "audio_seconds": f32["audio_seconds"],
        "gflop_per_chunk": gflop,
        "architecture": f32["architecture"],
        "matmul": f32.get("matmul"),
        "pytorch": {**torch, "gflop_per_s": gflop and gflop / torch["median_s"]},
        "snr_f32_vs_pytorch_db": snr_vs_torch,
        "roformer": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")

    print(f"config      {config}")
    print(f"weights     {weights}")
    print(f"input       one chunk of {f32['chunk_size']} samples ({f32['audio_seconds']:.2f} s), "
          f"{f32['channels']} channel(s); {threads} thread(s), median of {args.runs} run(s)")
    print(f"model       {f32['architecture']}, {f32['parameters']} parameters")
    if gflop is not None:
        m = f32["matmul"]
        print(f"work        {gflop:.4g} GFLOP per chunk; f32 matmul {m['m']}x{m['k']} . "
              f"{m['k']}x{m['n']}: {fmt(m['f32_gflop_per_s'], '.1f')} GFLOP/s")
    torch_rate = "" if gflop is None else f"{gflop / torch['median_s']:.4g} GFLOP/s, "
    print(f"PyTorch     {torch['median_s']:.3f} s per chunk "
          f"(runs {', '.join(f'{t:.3f}' for t in torch['runs_s'])}), "
          f"{torch_rate}peak RSS {torch['peak_rss_mb']:.0f} MiB "
          f"(torch {torch['torch']}, MSST {torch['msst_commit'][:7]})")
    print(f"SNR of our f32 output vs PyTorch's: {snr_vs_torch:.1f} dB")
    print()
    header = ("| precision | ours s/chunk | PyTorch s/chunk | ratio | GFLOP/s | floor s "
              "| ours/floor | peak RSS | SNR vs f32 |")
    print(header)
    print("|" + "---|" * 9)
    for r in rows:
        snr = r["snr_vs_f32_db"]
        snr = "-" if snr is None else "identical" if snr == float("inf") else f"{snr:.1f} dB"
        print(f"| {r['precision']} | {r['ours_s']:.3f} | {r['pytorch_s']:.3f} | "
              f"{r['ratio']:.2f} | {fmt(r['gflop_per_s'], '.4g')} | {fmt(r['floor_s'], '.4g')} | "
              f"{fmt(r['ours_over_floor'], '.2f')} | {fmt(r['peak_rss_mb'], '.0f')} MiB | {snr} |")
    print(f"\nratio = PyTorch / ours (above 1: we are faster); PyTorch peak RSS "
          f"{torch['peak_rss_mb']:.0f} MiB")
    for p in same_as_f32:
        print(f"note: --precision {p} gave the f32 output bit for bit: this roformer build "
              f"does not use {p} for this model")
    if args.keep and not args.workdir:
        print(f"files kept in {work}")


def shared_options(p):
    p.add_argument("--config", required=True, help="MSST YAML config")
    p.add_argument("--msst", default=os.environ.get("MSST_DIR"),
                   help="MSST checkout (default: $MSST_DIR)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both sides (default: all cores)")


def internal(argv):
    """The child processes: `_make-checkpoint` and `_torch-run`."""
    p = argparse.ArgumentParser(prog=f"bench_vs_pytorch.py {argv[0]}")
    shared_options(p)
    if argv[0] == "_make-checkpoint":
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--out", required=True)
        run = cmd_make_checkpoint
    else:
        p.add_argument("--ckpt", required=True)
        p.add_argument("--input", required=True)
        p.add_argument("--runs", type=int, required=True)
        p.add_argument("--out", required=True)
        run = cmd_torch_run
    args = p.parse_args(argv[1:])
    args.threads = args.threads or os.cpu_count()
    run(args)


def main():
    argv = sys.argv[1:]
    if argv and argv[0] in ("_make-checkpoint", "_torch-run"):
        return internal(argv)
    ap = argparse.ArgumentParser(prog="bench-vs-pytorch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    shared_options(ap)
    ap.add_argument("--model", help="checkpoint (.ckpt/.pth/.safetensors); default: a random "
                                    "model built in PyTorch from the config")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up")
    ap.add_argument("--precision", action="append", default=None,
                    help="roformer precision(s): f32, bf16, int8; repeat or comma-separate "
                         "(f32 always runs: the SNRs are against it)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random model")
    ap.add_argument("--roformer", help="roformer binary (default: $ROFORMER, then "
                                       "$CARGO_TARGET_DIR/release/roformer, target/release/roformer)")
    ap.add_argument("--workdir", help="keep the checkpoint and outputs in this folder")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", help="also write the summary as JSON to this file")
    args = ap.parse_args(argv)
    if args.runs < 1:
        sys.exit("error: --runs must be at least 1")
    args.precision = args.precision or ["f32"]
    cmd_main(args)


if __name__ == "__main__":
    main()
