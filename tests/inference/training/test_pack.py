"""The GPU-lease archive of an ImageFolder tree round-trips byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.training.pack import pack, unpack


def test_pack_then_unpack_recreates_every_file_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "fer"
    files = {
        "train/happy/a.jpg": b"\xff\xd8 jpeg bytes",
        "train/sad/b.jpg": b"",  # an empty file survives too
        "val/happy/c d.jpg": bytes(range(256)),
    }
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    assert pack(src, tmp_path / "fer.npz") == 3
    assert unpack(tmp_path / "fer.npz", tmp_path / "out") == 3
    got = {
        p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    }
    assert got == files


def test_unpack_refuses_a_name_that_escapes_the_destination(tmp_path: Path) -> None:
    names = np.frombuffer(b"../evil.jpg", dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", data=np.zeros(1, np.uint8), offsets=np.array([0, 1]), names=names)
    with pytest.raises(ValueError, match="escapes"):
        unpack(tmp_path / "bad.npz", tmp_path / "out")
    assert not (tmp_path / "evil.jpg").exists()
