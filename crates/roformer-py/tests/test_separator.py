"""The Python package against the `roformer` command: same samples, same files, same errors.

Run by tools/test-python.sh, which builds the CLI and sets ROFORMER_BIN.
"""

import os
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import roformer

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "models" / "bs_stereo_2stem_hop512"
MODEL, CONFIG, MIXTURE = FIXTURE / "model.ckpt", FIXTURE / "config.yaml", FIXTURE / "mixture.wav"


def config_instruments(path):
    """training.instruments of an MSST YAML config, or [target_instrument] when it is set (the
    venv has no YAML parser; the fixture's config is block-style YAML)."""
    section, key, instruments, target = None, None, [], None
    for line in Path(path).read_text().splitlines():
        if line and not line[0].isspace():
            section, key = line.rstrip(":"), None
        elif section == "training":
            item = line.strip()
            if item.startswith("- ") and key == "instruments":
                instruments.append(item[2:].strip())
            elif ":" in item:
                key, value = (part.strip() for part in item.split(":", 1))
                if key == "target_instrument" and value not in ("", "null", "~"):
                    target = value
    return [target] if target else instruments


STEMS = config_instruments(CONFIG)


def read_float_wav(path):
    """(rate, float32 (channels, frames)) of a 32-bit float WAV, plain or WAVE_FORMAT_EXTENSIBLE
    (the stdlib `wave` module reads integer PCM only)."""
    data = Path(path).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == 0xFFFE:  # extensible: the sub-format GUID starts with the real tag
                tag = struct.unpack("<H", body[24:26])[0]
            assert (tag, bits) == (3, 32), f"{path}: not 32-bit float ({tag}, {bits})"
            fmt = (channels, rate)
        elif cid == b"data":
            samples = np.frombuffer(body, dtype="<f4")
        pos += 8 + size + (size & 1)
    channels, rate = fmt
    return rate, samples.reshape(-1, channels).T.copy()


@pytest.fixture(scope="module")
def sep():
    return roformer.Separator(MODEL, config=CONFIG)


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    subprocess.run(
        [os.environ["ROFORMER_BIN"], "separate", str(MIXTURE), "--model", str(MODEL),
         "--config", str(CONFIG), "--pcm", "f32", "-o", str(out), "-q"],
        check=True,
    )
    return out / MIXTURE.stem


def test_separate_matches_the_cli_bit_for_bit(sep, cli_out):
    rate, mix = read_float_wav(MIXTURE)
    stems = sep.separate(mix, rate)
    assert list(stems) == STEMS
    for name in STEMS:
        _, theirs = read_float_wav(cli_out / f"{name}.wav")
        ours = stems[name]
        assert ours.dtype == np.float32 and ours.shape == mix.shape, (name, ours.shape)
        assert np.array_equal(ours, theirs), f"{name}: max diff {np.abs(ours - theirs).max()}"
    # float64 input holds the same values: the same result.
    again = sep.separate(mix.astype(np.float64), rate)
    assert all(np.array_equal(again[n], stems[n]) for n in STEMS)


@pytest.mark.parametrize("pcm", ["f32", 32])
def test_separate_file_writes_the_cli_bytes(sep, cli_out, tmp_path, pcm):
    written = sep.separate_file(MIXTURE, tmp_path, format="wav", pcm=pcm)
    assert sorted(Path(p).name for p in written) == sorted(f"{n}.wav" for n in STEMS)
    for name in STEMS:
        assert (tmp_path / f"{name}.wav").read_bytes() == (cli_out / f"{name}.wav").read_bytes()
    # Outputs exist and overwrite is off: nothing to do.
    assert sep.separate_file(MIXTURE, tmp_path, pcm=pcm) == []


def test_stems_are_the_configs_instruments(sep):
    assert STEMS == ["vocals", "other"]  # the parser above read the config
    assert sep.stems == STEMS
    rate, mix = read_float_wav(MIXTURE)
    part = mix[:, : mix.shape[1] // 3]  # a length that is no multiple of chunk or hop
    stems = sep.separate(part, rate)
    assert list(stems) == STEMS
    assert all(a.shape == part.shape and a.dtype == np.float32 for a in stems.values())


def test_model_facts(sep):
    assert (sep.sample_rate, sep.channels) == (44100, 2)
    assert "model.ckpt" in repr(sep) and "vocals" in repr(sep)
    assert roformer.RoformerError.__module__ == "roformer"


def test_bad_checkpoints_raise_and_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    for path in [garbage, truncated, tmp_path / "missing.ckpt"]:
        with pytest.raises(roformer.RoformerError) as err:
            roformer.Separator(path, config=CONFIG)
        assert path.name in str(err.value), str(err.value)
    with pytest.raises(roformer.RoformerError, match="carries no config"):
        roformer.Separator(MODEL)


def test_bad_options_and_audio_raise(sep):
    with pytest.raises(ValueError, match="unknown precision"):
        roformer.Separator(MODEL, config=CONFIG, precision="fp8")
    with pytest.raises(roformer.RoformerError, match="device `cuda` is not available"):
        roformer.Separator(MODEL, config=CONFIG, device="cuda")
    with pytest.raises(roformer.RoformerError, match="overlap"):
        roformer.Separator(MODEL, config=CONFIG, overlap=0)
    with pytest.raises(ValueError, match="float array"):
        sep.separate(np.zeros((2, 1000), dtype=np.int16), 44100)
    with pytest.raises(ValueError, match="shape"):
        sep.separate(np.zeros((1, 2, 1000), dtype=np.float32), 44100)
    with pytest.raises(ValueError, match="more channels than frames"):
        sep.separate(np.zeros((1000, 2), dtype=np.float32), 44100)
    for rate in [0, -44100, 44100.5]:
        with pytest.raises(ValueError, match="sample rate"):
            sep.separate(np.zeros((2, 1000), dtype=np.float32), rate)
    with pytest.raises(roformer.RoformerError):
        sep.separate(np.zeros((2, 0), dtype=np.float32), 44100)
    with pytest.raises(ValueError, match="FLAC stores integers"):
        sep.separate_file(MIXTURE, "unused", format="flac", pcm="f32")
    with pytest.raises(roformer.RoformerError, match="no-such-file.wav"):
        sep.separate_file("no-such-file.wav", "unused")


def test_mono_input_and_builtin_model(sep):
    rate, mix = read_float_wav(MIXTURE)
    mono = mix[0]
    stems = sep.separate(mono, rate)
    duplicated = sep.separate(np.stack([mono, mono]), rate)
    assert all(np.array_equal(stems[n], duplicated[n]) for n in STEMS)
    builtin = roformer.Separator()
    assert builtin.stems == ["vocals", "drums", "bass", "other"]
    assert builtin.channels == 2 and builtin.sample_rate > 0


def test_two_threads_give_the_sequential_results(sep):
    rate, mix = read_float_wav(MIXTURE)
    inputs = [mix, mix[::-1].copy() * 0.5]
    sequential = [sep.separate(x, rate) for x in inputs]
    results = [None, None]

    def work(i):
        results[i] = sep.separate(inputs[i], rate)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seq, par in zip(sequential, results):
        assert all(np.array_equal(seq[n], par[n]) for n in STEMS)
