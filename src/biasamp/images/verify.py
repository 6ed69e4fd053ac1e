"""Decoding checks and image access: paths and `shard.tar::member` references."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

TAR_SEP = "::"


def split_ref(ref: str) -> tuple[str, str | None]:
    """'a/b.tar::m.jpg' -> ('a/b.tar', 'm.jpg'); 'a/b.jpg' -> ('a/b.jpg', None)."""
    if TAR_SEP in ref:
        tar, member = ref.split(TAR_SEP, 1)
        return tar, member
    return ref, None


def resolve(ref: str, base: str | Path) -> tuple[Path, str | None]:
    path, member = split_ref(ref)
    p = Path(path)
    return (p if p.is_absolute() else Path(base) / p), member


def read_image_bytes(ref: str, base: str | Path = ".") -> bytes:
    """The bytes of one image reference (path or tar::member, relative to `base`)."""
    path, member = resolve(ref, base)
    if member is None:
        return path.read_bytes()
    with tarfile.open(path) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise FileNotFoundError(f"{member} in {path}")
        return f.read()


@dataclass
class Check:
    status: str  # ok | not_an_image | too_small | missing
    error_message: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    sha256: str | None = None


def check_bytes(data: bytes, min_image_size: int = 0) -> Check:
    """Decode fully with Pillow; report size, format and the bytes' sha256."""
    from PIL import Image

    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            w, h = im.size
            if fmt == "JPEG":  # decode at 1/8 scale: every byte is still read, so damage still shows
                im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
            im.load()  # truncated or corrupt payloads fail here
    except Exception as e:  # noqa: BLE001 - any decoder failure means "not an image"
        msg = str(e) or type(e).__name__
        return Check("not_an_image", f"cannot decode: {msg}", sha256=digest)
    if min(w, h) < min_image_size:
        return Check("too_small", f"{w}x{h} is below the minimum side {min_image_size}", w, h, fmt, digest)
    return Check("ok", None, w, h, fmt, digest)


def check_refs(refs: list[str], base: str | Path, *, min_image_size: int = 0, threads: int = 4) -> list[Check]:
    """Check many references; members of one tar are read in a single pass over it."""
    out: list[Check | None] = [None] * len(refs)
    by_tar: dict[Path, list[tuple[int, str]]] = defaultdict(list)
    plain: list[tuple[int, Path]] = []
    for i, ref in enumerate(refs):
        path, member = resolve(ref, base)
        if member is None:
            plain.append((i, path))
        else:
            by_tar[path].append((i, member))

    def one_file(item: tuple[int, Path]) -> tuple[int, Check]:
        i, path = item
        try:
            data = path.read_bytes()
        except OSError as e:
            return i, Check("missing", f"cannot read {path}: {e.strerror or e}")
        return i, check_bytes(data, min_image_size)

    def one_tar(item: tuple[Path, list[tuple[int, str]]]) -> list[tuple[int, Check]]:
        path, wanted = item
        res: list[tuple[int, Check]] = []
        names = {m: i for i, m in wanted}
        try:
            with tarfile.open(path) as tf:
                for ti in tf:
                    if ti.name in names:
                        f = tf.extractfile(ti)
                        data = f.read() if f is not None else b""
                        res.append((names.pop(ti.name), check_bytes(data, min_image_size)))
        except (OSError, tarfile.TarError) as e:
            res += [(i, Check("missing", f"cannot read {path}: {e}")) for i in names.values()]
            names = {}
        res += [(i, Check("missing", f"{m} not found in {path}")) for m, i in names.items()]
        return res

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for i, c in pool.map(one_file, plain):
            out[i] = c
        for lst in pool.map(one_tar, list(by_tar.items())):
            for i, c in lst:
                out[i] = c
    return out  # type: ignore[return-value]
