"""Pack an ImageFolder tree's files into one .npz, and unpack it, byte for byte.

python -m inference.training.pack pack ../shared/datasets/fer2013 .gpudata/fer2013.npz
python -m inference.training.pack unpack .gpudata/fer2013.npz /tmp/fer2013

A lent GPU gets the checkout and nothing beside it, and FER2013's 32,298 small JPEGs
are too many files to send one by one: this puts their bytes, unchanged (no re-encoding,
so the pixels training sees are the same), into one uncompressed archive — JPEG does not
compress further. Never commit the archive; it is the dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def pack(root: Path, out: Path) -> int:
    """Write every file under ``root`` into ``out``; return how many."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    blobs = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
    names = "\n".join(p.relative_to(root).as_posix() for p in files).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        data=np.frombuffer(b"".join(blobs), dtype=np.uint8),
        offsets=offsets,
        names=np.frombuffer(names, dtype=np.uint8),
    )
    return len(files)


def unpack(archive: Path, dest: Path) -> int:
    """Recreate the packed files under ``dest``; return how many."""
    with np.load(archive) as z:
        data, offsets = z["data"], z["offsets"]
        names = z["names"].tobytes().decode().split("\n")
    for i, name in enumerate(names):
        path = dest / name
        if not path.resolve().is_relative_to(dest.resolve()):
            raise ValueError(f"{name} escapes {dest}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    return len(names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("archive", type=Path)
    u.add_argument("dest", type=Path)
    args = ap.parse_args()
    if args.verb == "pack":
        print(f"packed {pack(args.root, args.out)} files into {args.out}")
    else:
        print(f"unpacked {unpack(args.archive, args.dest)} files into {args.dest}")


if __name__ == "__main__":
    main()
