#!/usr/bin/env python3
"""BSSEval v4 reference values on degenerate tracks, computed by museval 0.4.1.

    ~/.cache/museval-venv/bin/python tools/gen_degenerate_bss_fixtures.py
    (venv: pip install museval==0.4.1 soundfile)

Writes tests/fixtures/metrics/degenerate/<case>/{references,estimates}/{vocals,accompaniment}.flac
(stereo, 44.1 kHz, 16-bit, 4 s cut from tests/fixtures/metrics/references) and expected.json:
per case and stem, museval's per-window sdr/isr/sir/sar (`museval.evaluate`, 1 s windows and
hops, 512 taps; NaN as null) computed from the FLAC files as written, so that both sides read
the same samples. Cases:
- identical_channels: every reference is a mono source panned to the centre (both channels
  bit-identical), which makes museval's `solve` raise LinAlgError and fall back to `lstsq`;
- lowpass_16k: references band-limited at 16 kHz (an FFT brick wall), as AAC-coded releases are;
- silent_windows: the vocals reference is digital silence in its second and fourth seconds.
Deterministic (fixed numpy seeds).
"""

import json
from pathlib import Path

import museval
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SOURCE = next((REPO / "tests" / "fixtures" / "metrics" / "references").iterdir())
OUT = REPO / "tests" / "fixtures" / "metrics" / "degenerate"
SR = 44100
SECONDS = 4
STEMS = ["vocals", "accompaniment"]


def load_sources():
    stems = {s: sf.read(SOURCE / f"{s}.flac", dtype="float64")[0][: SR * SECONDS] for s in
             ["vocals", "drums", "bass", "other"]}
    acc = 0.5 * (stems["drums"] + stems["bass"] + stems["other"])
    return {"vocals": stems["vocals"], "accompaniment": acc}  # (frames, channels)


def identical_channels(refs):
    return {k: np.repeat(v.mean(axis=1, keepdims=True), 2, axis=1) for k, v in refs.items()}


def lowpass_16k(refs):
    out = {}
    for k, v in refs.items():
        spec = np.fft.rfft(v, axis=0)
        freqs = np.fft.rfftfreq(v.shape[0], 1.0 / SR)
        spec[freqs > 16000.0] = 0.0
        out[k] = np.fft.irfft(spec, n=v.shape[0], axis=0)
    return out


def silent_windows(refs):
    out = {k: v.copy() for k, v in refs.items()}
    for second in (1, 3):
        out["vocals"][second * SR:(second + 1) * SR] = 0.0
    return out


CASES = {"identical_channels": identical_channels, "lowpass_16k": lowpass_16k,
         "silent_windows": silent_windows}


def estimates_of(refs, seed):
    """Each reference with a leak of the other and a little independent noise per channel."""
    rng = np.random.default_rng(seed)
    v, a = refs["vocals"], refs["accompaniment"]
    return {
        "vocals": 0.9 * v + 0.1 * a + 0.003 * rng.standard_normal(v.shape),
        "accompaniment": a + 0.05 * v + 0.003 * rng.standard_normal(a.shape),
    }


def write(path, audio):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1.0, 32767 / 32768), SR, subtype="PCM_16")
    return sf.read(path, dtype="float64")[0]


def main():
    base = load_sources()
    expected = {"museval": museval.__version__ if hasattr(museval, "__version__") else "0.4.1",
                "cases": {}}
    for seed, (case, make) in enumerate(CASES.items()):
        refs = make(base)
        ests = estimates_of(refs, seed)
        refs = {k: write(OUT / case / "references" / f"{k}.flac", refs[k]) for k in STEMS}
        ests = {k: write(OUT / case / "estimates" / f"{k}.flac", ests[k]) for k in STEMS}
        sdr, isr, sir, sar = museval.evaluate(
            np.stack([refs[k] for k in STEMS]), np.stack([ests[k] for k in STEMS]),
            win=SR, hop=SR, padding=True)
        nulls = lambda row: [None if np.isnan(x) else float(x) for x in row]
        expected["cases"][case] = {
            stem: {"sdr": nulls(sdr[i]), "isr": nulls(isr[i]), "sir": nulls(sir[i]),
                   "sar": nulls(sar[i])}
            for i, stem in enumerate(STEMS)}
        print(case, {s: expected["cases"][case][s]["sdr"] for s in STEMS})
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
