"""Deterministic PNG encoding and image shards committed atomically.

A shard of images is either a folder of PNG files (`images/<shard>/<item_id>.png`) or a
webdataset tar (`images/<shard>.tar` holding `<item_id>.png` and `<item_id>.json`). A
shard is written under a temporary name and renamed into place when whole; the
`generations` Parquet shard is committed after it, and marks the shard as done.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import numpy as np

FORMATS = ("files", "webdataset")
TAR_SEP = "::"


def encode_png(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of an HxWx3 uint8 array; same pixels and text -> same bytes."""
    from PIL import Image, PngImagePlugin

    img = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB") if pixels.ndim == 3 else Image.fromarray(pixels)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in sorted(text.items()):
            info.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False, pnginfo=info)
    return buf.getvalue()


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (N,H,W,C) to uint8 the way diffusers rounds them; NaN -> 0."""
    x = np.nan_to_num(np.asarray(images, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class ShardWriter:
    """Write one shard of images under a temporary name; `commit()` renames it into place."""

    def __init__(self, root: str | Path, shard: str, fmt: str = "files"):
        if fmt not in FORMATS:
            from biasamp.errors import BiasampError

            raise BiasampError(f"unknown image format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
        self.root = Path(root)
        self.shard = shard
        self.fmt = fmt
        self.root.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        if fmt == "files":
            self.final = self.root / shard
            self.tmp = self.root / f".{shard}.{tag}.tmp"
            self.tmp.mkdir()
            self._tar = None
        else:
            self.final = self.root / f"{shard}.tar"
            self.tmp = self.root / f".{shard}.tar.{tag}.tmp"
            self._tar = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT)

    def ref(self, item_id: str, run_dir: str | Path) -> str:
        """The `image` column value: a path relative to `run_dir`, or `tar::member`."""
        rel = self.final.relative_to(Path(run_dir))
        if self.fmt == "files":
            return (rel / f"{item_id}.png").as_posix()
        return f"{rel.as_posix()}{TAR_SEP}{item_id}.png"

    def add(self, item_id: str, png: bytes, meta: dict | None = None) -> None:
        if self._tar is None:
            with open(self.tmp / f"{item_id}.png", "wb") as f:
                f.write(png)
                f.flush()
                os.fsync(f.fileno())  # here, on the writer thread, not at commit time
            return
        members = [(f"{item_id}.png", png)]
        if meta is not None:
            members.append((f"{item_id}.json", json.dumps(meta, sort_keys=True, default=str).encode("utf-8")))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))

    def commit(self) -> Path:
        if self._tar is not None:
            self._tar.close()
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.final)
        else:
            if self.final.exists():  # left by a run killed before its table shard was committed
                shutil.rmtree(self.final)
            os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            Path(self.tmp).unlink(missing_ok=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def clean_temporaries(root: str | Path) -> None:
    """Remove shards a killed run left half-written."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in root.glob(".*.tmp"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def read_image_bytes(ref: str, run_dir: str | Path) -> bytes:
    """The PNG bytes an `image` column value points to (file or tar member)."""
    run_dir = Path(run_dir)
    if TAR_SEP in ref:
        tar_path, member = ref.split(TAR_SEP, 1)
        with tarfile.open(run_dir / tar_path) as tar:
            f = tar.extractfile(member)
            if f is None:
                raise FileNotFoundError(f"{member} in {tar_path}")
            return f.read()
    return (run_dir / ref).read_bytes()


def open_image(ref: str, run_dir: str | Path):
    """The PIL image an `image` column value points to."""
    from PIL import Image

    img = Image.open(io.BytesIO(read_image_bytes(ref, run_dir)))
    img.load()
    return img
