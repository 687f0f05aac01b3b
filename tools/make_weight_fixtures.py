#!/usr/bin/env python3
"""Writes the tiny checkpoint fixtures used by `roformer::weights` tests.

Run with a Python that has torch and safetensors:
    /work/venv/torch/bin/python tools/make_weight_fixtures.py
Output: tests/fixtures/weights/*.{pt,ckpt,safetensors} (each a few KB).

The values are simple closed forms (arange, scaled) so the Rust tests can
check them independently of this script.
"""
import io
import os
import pickle
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "weights")


def base_dict():
    """A small state dict. Expected values (checked by the Rust tests):
    a       f32 [2, 3]  = arange(6)
    b_t     f32 [4, 3]  = arange(12).reshape(3, 4).T   (non-contiguous: stride (1, 4))
    off     f32 [4]     = arange(10)[3:7] = [3, 4, 5, 6] (storage offset 3)
    h       f16 [4]     = arange(4) * 0.5
    bf      bf16 [5]    = arange(5) - 2
    d       f64 [2, 2]  = arange(4) / 4
    step    i64 [3]     = [7, 8, 9]
    """
    big = torch.arange(10, dtype=torch.float32)
    sd = OrderedDict()
    sd["a"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    sd["b_t"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    sd["off"] = big[3:7]
    sd["h"] = torch.arange(4, dtype=torch.float16) * 0.5
    sd["bf"] = torch.arange(5, dtype=torch.float32).to(torch.bfloat16) - 2
    sd["d"] = (torch.arange(4, dtype=torch.float64) / 4).reshape(2, 2)
    sd["step"] = torch.tensor([7, 8, 9], dtype=torch.int64)
    assert not sd["b_t"].is_contiguous()
    return sd


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def hand_zip(path, pkl: bytes, prefix="archive"):
    """A torch-style zip archive around a hand-written data.pkl."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", "little")
        z.writestr(f"{prefix}/version", "3\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = base_dict()

    # Plain state dict; torch uses the file stem as the archive's top folder.
    torch.save(sd, os.path.join(OUT, "plain.pt"))
    # Parameters (nn.Parameter -> _rebuild_parameter) in a model's own state dict (with _metadata).
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) / 10)
        lin.bias.copy_(torch.tensor([-1.0, 1.0]))
    torch.save({"lin.weight": lin.weight, "lin.bias": lin.bias}, os.path.join(OUT, "params.pt"))
    torch.save(lin.state_dict(), os.path.join(OUT, "module_state.pt"))
    # Wrappers and prefixes.
    torch.save({"state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1, "betas": (0.9, 0.99)}},
               os.path.join(OUT, "wrapped_state_dict.ckpt"))
    torch.save({"state": OrderedDict(("model." + k, v) for k, v in sd.items()), "step": 10},
               os.path.join(OUT, "wrapped_state_model_prefix.ckpt"))
    torch.save(OrderedDict(("module." + k, v) for k, v in sd.items()),
               os.path.join(OUT, "module_prefix.pth"))

    # Malicious: torch.save pickles the object normally (GLOBAL posix.system + REDUCE).
    torch.save({"a": sd["a"], "evil": Evil()}, os.path.join(OUT, "evil_torch.pt"))
    # Malicious, hand-written: GLOBAL 'os system' + REDUCE.
    evil = b"\x80\x02cos\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."
    hand_zip(os.path.join(OUT, "evil_os_system.pt"), evil)
    # builtins.eval through STACK_GLOBAL (protocol 4 style).
    evil2 = (b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94"
             b"\x8c\x06print()\x94\x85\x94R\x94.")
    hand_zip(os.path.join(OUT, "evil_eval.pt"), evil2)
    # An unsupported opcode (INST 'i') in data.pkl.
    hand_zip(os.path.join(OUT, "bad_opcode.pt"), b"\x80\x02(i__main__\nX\n.")

    # Truncated: the first half of a valid checkpoint.
    data = open(os.path.join(OUT, "plain.pt"), "rb").read()
    open(os.path.join(OUT, "truncated.pt"), "wb").write(data[: len(data) // 2])

    # Corrupt storage: replace one storage with a shorter one (rewrite the zip).
    with zipfile.ZipFile(os.path.join(OUT, "plain.pt")) as zin, \
         zipfile.ZipFile(os.path.join(OUT, "short_storage.pt"), "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            buf = zin.read(info.filename)
            if info.filename.endswith("/data/0"):
                buf = buf[:8]
            zout.writestr(info.filename, buf)

    # Legacy (pre-1.6) serialization.
    torch.save(sd, os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)

    # Safetensors with metadata (contiguous copies: safetensors refuses views that share storage).
    st = {k: v.contiguous().clone() for k, v in sd.items()}
    save_file(st, os.path.join(OUT, "plain.safetensors"), metadata={"config": "x: 1"})
    st_file = open(os.path.join(OUT, "plain.safetensors"), "rb").read()
    open(os.path.join(OUT, "truncated.safetensors"), "wb").write(st_file[: len(st_file) - 10])

    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        assert size < 20_000, name
        print(f"{size:7d}  {name}")


if __name__ == "__main__":
    main()
