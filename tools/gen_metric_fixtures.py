#!/usr/bin/env python3
"""Reference values for `roformer eval`, computed by museval 0.4.1 and MSST's utils/metrics.py.

    /work/venv/metrics/bin/python tools/gen_metric_fixtures.py \
        --torch-python /work/venv/torch/bin/python --msst /work/msst [--track DIR]

Writes tests/fixtures/metrics/:
- references/<track>/{vocals,drums,bass,other}.flac: a 4-stem stereo 44.1 kHz 16-bit track.
  With --track DIR (a track folder written by tools/render-dataset) it is cut from DIR first;
  otherwise the committed files are reused. The vocals are set to digital silence for the first
  1.3 s, so that museval's first window is NaN.
- expected.json: for each case (a set of estimates, each built from the references by a recipe
  that the Rust test rebuilds sample for sample), the metrics of every estimated stem:
  `sdr`, `si_sdr`, `fullness`, `bleedless` from MSST's metric functions (called as its
  `get_metrics` calls them for valid.py: float64 reference, float32 estimate), and
  `bss_sdr`/`bss_isr`/`bss_sir`/`bss_sar` as museval reports them (`eval_mus_track`, then the
  nanmedian over its stored frames), with the per-window values in `bss_frames`.

Two interpreters, because the references live in two environments: this script runs in a venv
with museval (see tools/README.md) and starts itself again under --torch-python (torch, librosa,
torchaudio) for MSST's functions. Deterministic: no random state, the noise is a counter-based
hash (splitmix64) that the Rust test repeats.
"""

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
OUT = REPO_ROOT / "tests" / "fixtures" / "metrics"
STEMS = ["vocals", "drums", "bass", "other"]
SR = 44100
SECONDS = 8.0
VOCALS_SILENT_S = 1.3

# Each case is a set of estimates; each estimate a recipe, applied in this order (float64, then
# stored as float32): gain * base, FIR (causal, same length), + leaks (gain * another reference),
# + uniform noise at snr_db below the energy of the stem's reference, zeroed spans (seconds).
# `base` is a reference stem, `instrumental` (the sum of the non-vocal references) or `mixture`.
CASES = [
    ("four_stems", OrderedDict([
        ("vocals", {"base": "vocals", "noise": {"snr_db": 20.0, "seed": 1}}),
        ("drums", {"base": "drums", "fir": [0.6, 0.25, 0.1, 0.05],
                   "noise": {"snr_db": 30.0, "seed": 2}}),
        ("bass", {"base": "bass", "gain": 0.9,
                  "leaks": [{"stem": "other", "gain": 0.15}, {"stem": "drums", "gain": 0.05}],
                  "noise": {"snr_db": 15.0, "seed": 3}}),
        ("other", {"base": "other", "noise": {"snr_db": 5.0, "seed": 4}, "zero": [[5.0, 6.2]]}),
    ])),
    ("vocals_instrumental", OrderedDict([
        ("vocals", {"base": "vocals", "leaks": [{"stem": "drums", "gain": 0.2}],
                    "noise": {"snr_db": 25.0, "seed": 5}}),
        ("instrumental", {"base": "instrumental", "leaks": [{"stem": "vocals", "gain": 0.1}],
                          "noise": {"snr_db": 18.0, "seed": 6}}),
    ])),
    ("vocals_only", OrderedDict([
        ("vocals", {"base": "vocals", "fir": [0.5, 0.5], "noise": {"snr_db": 10.0, "seed": 7}}),
    ])),
    ("two_stems_poor", OrderedDict([
        ("vocals", {"base": "mixture"}),
        ("drums", {"base": "drums", "gain": 0.5, "noise": {"snr_db": 0.0, "seed": 8}}),
    ])),
]


def splitmix_noise(seed, count):
    """Uniform in [-1, 1): splitmix64 of (seed + (i + 1) * golden), top 53 bits."""
    i = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return 2.0 * u - 1.0


def signal(refs, name):
    """A reference stem, `instrumental` or `mixture` as float64 [channel][sample]."""
    if name == "instrumental":
        return sum(refs[s] for s in STEMS if s != "vocals")
    if name == "mixture":
        return sum(refs[s] for s in STEMS)
    return refs[name]


def build_estimate(refs, stem, recipe):
    x = recipe.get("gain", 1.0) * signal(refs, recipe["base"])
    if "fir" in recipe:
        h = np.asarray(recipe["fir"], dtype=np.float64)
        x = np.stack([np.convolve(c, h)[: c.shape[0]] for c in x])
    for leak in recipe.get("leaks", []):
        x = x + leak["gain"] * signal(refs, leak["stem"])
    if "noise" in recipe:
        target = signal(refs, stem)
        n = splitmix_noise(recipe["noise"]["seed"], x.size).reshape(x.shape)
        scale = np.sqrt(np.sum(target ** 2) / (np.sum(n ** 2) * 10.0 ** (recipe["noise"]["snr_db"] / 10.0)))
        x = x + scale * n
    for start, end in recipe.get("zero", []):
        x[:, int(round(start * SR)):int(round(end * SR))] = 0.0
    return x.astype(np.float32)


def read_references(track_dir):
    import soundfile as sf
    refs = {}
    for s in STEMS:
        path = next(p for p in (track_dir / f"{s}.flac", track_dir / f"{s}.wav") if p.exists())
        audio, sr = sf.read(path, always_2d=True)  # float64, like MSST and musdb read files
        assert sr == SR, (path, sr)
        refs[s] = audio.T.copy()
    return refs


def cut_track(src, dst):
    """Copies the first SECONDS of a rendered track as 16-bit FLAC, vocals silent at the start."""
    import soundfile as sf
    dst.mkdir(parents=True, exist_ok=True)
    n = int(SECONDS * SR)
    for s in STEMS:
        audio, sr = sf.read(src / f"{s}.wav", always_2d=True, dtype="int16")
        assert sr == SR and audio.shape[1] == 2, (s, sr, audio.shape)
        audio = audio[:n].copy()
        if s == "vocals":
            audio[: int(VOCALS_SILENT_S * SR)] = 0
        sf.write(dst / f"{s}.flac", audio, SR, format="FLAC", subtype="PCM_16")


class FakeTarget:
    def __init__(self, audio):
        self.audio = audio


class FakeTrack:
    """What museval.eval_mus_track reads from a musdb Track."""

    def __init__(self, name, refs):
        self.name = name
        self.rate = SR
        self.subset = "test"
        self.targets = OrderedDict((s, FakeTarget(refs[s].T)) for s in STEMS)
        self.targets["accompaniment"] = FakeTarget(signal(refs, "instrumental").T)


def museval_scores(track_name, refs, estimates):
    """museval's values for the stems of `estimates` (our stem names), as `roformer eval` groups
    them: museval's own eval_mus_track, with `instrumental` as MUSDB's `accompaniment`; a stem
    alone is paired with its complement (accompaniment = mixture - estimate)."""
    import museval
    user = {("accompaniment" if k == "instrumental" else k): v.T.astype(np.float64)
            for k, v in estimates.items()}
    if len(user) == 1:
        (only, est), = user.items()
        assert only == "vocals", "the complement pairing is only exercised for vocals"
        user["accompaniment"] = signal(refs, "mixture").T - est
    store = museval.eval_mus_track(FakeTrack(track_name, refs), user)
    out = {}
    for t in store.scores["targets"]:
        name = "instrumental" if t["name"] == "accompaniment" else t["name"]
        if name not in estimates:
            continue
        frames = {m: [float(f["metrics"][m]) for f in t["frames"]] for m in ("SDR", "ISR", "SIR", "SAR")}
        out[name] = {
            **{f"bss_{m.lower()}": float(store.frames_agg(v)) for m, v in frames.items()},
            "bss_frames": {m.lower(): [None if np.isnan(x) else x for x in v] for m, v in frames.items()},
        }
    return out


def msst_worker(npz_path, out_path, msst_dir):
    """Runs under the torch interpreter: MSST's get_metrics as valid.py calls it."""
    import types
    # torchaudio's compiled extension may not match the installed torch; MSST only needs its
    # pure-Python AmplitudeToDB, so load torchaudio without the extension.
    ext = types.ModuleType("torchaudio._extension")
    ext._IS_TORCHAUDIO_EXT_AVAILABLE = False
    ext._IS_ALIGN_AVAILABLE = False
    ext.fail_if_no_align = lambda f: f
    sys.modules.setdefault("torchaudio._extension", ext)
    sys.path.insert(0, str(msst_dir))
    from utils.metrics import bleed_full, sdr, si_sdr
    data = np.load(npz_path)
    out = {}
    for key in data.files:
        if not key.startswith("est/"):
            continue
        _, case, stem = key.split("/")
        reference = data[f"ref/{case}/{stem}"]  # float64 (GT read by soundfile)
        estimate = data[key]                     # float32 (the model's output)
        # get_metrics' own glue (float() of sdr's 1-element array) fails under numpy >= 2.4, so
        # call its metric functions as it does: sdr on [None]-expanded arrays, si_sdr and
        # bleed_full on (channels, samples).
        bleedless, fullness = bleed_full(reference, estimate)
        out.setdefault(case, {})[stem] = {
            "sdr": float(sdr(reference[None], estimate[None])[0]),
            "si_sdr": float(si_sdr(reference, estimate)),
            "fullness": float(fullness),
            "bleedless": float(bleedless),
        }
    with open(out_path, "w") as f:
        json.dump(out, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--track", type=Path, help="a tools/render-dataset track folder to cut the references from")
    ap.add_argument("--name", default="bach_bwv7.7", help="the track's folder name in the fixtures")
    ap.add_argument("--torch-python", default="/work/venv/torch/bin/python")
    ap.add_argument("--msst", type=Path, default=Path(os.environ.get("MSST_DIR", "/work/msst")))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--msst-worker", nargs=2, metavar=("NPZ", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.msst_worker:
        msst_worker(*args.msst_worker, args.msst)
        return

    import museval
    track_dir = args.out / "references" / args.name
    if args.track:
        cut_track(args.track, track_dir)
    refs = read_references(track_dir)

    arrays = {"mixture": signal(refs, "mixture")}
    estimates = {}
    for case, recipes in CASES:
        estimates[case] = OrderedDict((stem, build_estimate(refs, stem, r)) for stem, r in recipes.items())
        for stem, est in estimates[case].items():
            arrays[f"est/{case}/{stem}"] = est
            arrays[f"ref/{case}/{stem}"] = signal(refs, stem)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "signals.npz"
        res = Path(tmp) / "msst.json"
        np.savez(npz, **arrays)
        subprocess.run([args.torch_python, __file__, "--msst-worker", str(npz), str(res),
                        "--msst", str(args.msst)], check=True)
        msst = json.loads(res.read_text())

    msst_commit = subprocess.run(["git", "-C", str(args.msst), "rev-parse", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
    doc = OrderedDict([
        ("generator", "tools/gen_metric_fixtures.py"),
        ("museval_version", importlib.metadata.version("museval")),
        ("msst_commit", msst_commit),
        ("track", args.name),
        ("sample_rate", SR),
        ("cases", []),
    ])
    for case, recipes in CASES:
        bss = museval_scores(args.name, refs, estimates[case])
        stems = OrderedDict()
        for stem in recipes:
            stems[stem] = OrderedDict(**msst[case][stem], **bss[stem])
        doc["cases"].append(OrderedDict([("name", case), ("estimates", recipes), ("stems", stems)]))
        for stem, v in stems.items():
            print(f"{case:20s} {stem:12s} " + " ".join(
                f"{k}={v[k]:8.3f}" for k in ("sdr", "si_sdr", "bss_sdr", "bss_isr", "bss_sir", "bss_sar",
                                             "fullness", "bleedless")))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "expected.json").write_text(json.dumps(doc, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
