#!/usr/bin/env python3
"""Writes seed inputs for the `eval` fuzz target (see fuzz/fuzz_targets/eval.rs for the format):
small tracks of short 16-bit WAV stems, some with an instrumental estimate, different lengths
or a FLAC reference. Usage: tools/fuzz_eval_seeds.py OUT_DIR [FLAC_FILE]"""
import io, math, os, struct, sys, wave

STEMS = ["vocals", "other", "mixture", "instrumental", "bass"]


def wav(freq, frames, channels=2, rate=44100):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = []
        for i in range(frames):
            # Channels differ (a phase apart): identical ones send BSSEval to its slow SVD
            # fallback on every run.
            samples += [int(8000 * math.sin(2 * math.pi * freq * i / rate + c))
                        for c in range(channels)]
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return buf.getvalue()


def record(estimate, stem, ext, data):
    kind = int(estimate) | STEMS.index(stem) << 1 | ["wav", "flac", "mp3"].index(ext) << 4
    return bytes([kind]) + struct.pack("<I", len(data)) + data


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    n = 22050
    seeds = {
        "two_stems": [(0, "vocals", "wav", wav(440, n)), (0, "other", "wav", wav(660, n)),
                      (0, "mixture", "wav", wav(550, n)), (1, "vocals", "wav", wav(445, n)),
                      (1, "other", "wav", wav(650, n))],
        "instrumental": [(0, "vocals", "wav", wav(440, n)), (0, "other", "wav", wav(660, n)),
                         (1, "instrumental", "wav", wav(650, n))],
        "lengths_mono": [(0, "vocals", "wav", wav(440, n, 1)), (0, "bass", "wav", wav(110, n - 100, 1)),
                         (1, "vocals", "wav", wav(440, n + 7, 1))],
    }
    if len(sys.argv) > 2:
        flac = open(sys.argv[2], "rb").read()[:60000]
        seeds["flac"] = [(0, "vocals", "flac", flac), (1, "vocals", "wav", wav(440, n))]
    for name, files in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([1 if name == "lengths_mono" else 0]))
            for estimate, stem, ext, data in files:
                f.write(record(estimate, stem, ext, data))


main()
