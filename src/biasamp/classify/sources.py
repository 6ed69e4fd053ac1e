"""Where images come from: folders, webdataset tar shards, tables of images, img2dataset output.

Every input is cut into shards with stable ids (so a killed run resumes shard by shard).
A shard yields `Item`s: an id, the image (bytes already read, or a path read later in a
worker thread), columns passed through to the labels table, or the reason there is no
image (a missing file, a failed download) — never a silent drop.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".jfif")
TABLE_EXTENSIONS = (".parquet", ".csv", ".tsv", ".jsonl", ".ndjson")
#: Columns of an input table carried into the labels table when present.
PASSTHROUGH = ("caption_id", "url", "occupation", "condition", "group", "template", "prompt", "seed", "rank", "similarity")


@dataclass
class Item:
    item_id: str
    data: bytes | None = None
    path: str | None = None
    meta: dict = field(default_factory=dict)
    error: str | None = None
    array: object = None  # an already decoded H x W x 3 uint8 RGB array

    def read(self) -> bytes | str | None:
        return self.data if self.data is not None else self.path


@dataclass
class Shard:
    shard_id: str
    source: str | None
    n: int
    _items: Callable[[], Iterator[Item]]

    def items(self) -> Iterator[Item]:
        return self._items()


def _tag(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "input"
    return f"{stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)] or [(0, 0)]


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _wds_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the basename."""
    d, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext.lower()


# ------------------------------------------------------------------ tar shards


def tar_items(path: Path, *, id_field: str | None = "caption_id", meta: dict | None = None) -> Iterator[Item]:
    """Items of a webdataset tar: one per key with an image member (`.json` fields kept).

    Streams: members of one key are consecutive in a webdataset shard, so an item is
    yielded as soon as the next key starts and only one image is held in memory.
    """
    import json

    def emit(key: str, g: dict) -> Item | None:
        if "image" not in g:
            return None  # a key without an image member (e.g. a lone .txt) is not an image
        js = g.get("json") if isinstance(g.get("json"), dict) else {}
        item_id = js.get(id_field) if id_field else None
        m = {k: js[k] for k in PASSTHROUGH if k in js and not isinstance(js[k], (dict, list))}
        m.update(meta or {})
        return Item(str(item_id) if item_id is not None else key, data=g["image"], meta=m)

    try:
        tf = tarfile.open(path)
    except (OSError, tarfile.TarError) as e:
        raise BiasampError(f"cannot open tar shard {path}: {e}", hint="check the file is a complete tar") from None
    cur_key, cur = None, {}
    try:
        for m in tf:
            if not m.isfile():
                continue
            key, ext = _wds_key(m.name)
            if key != cur_key:
                if cur_key is not None and (it := emit(cur_key, cur)) is not None:
                    yield it
                cur_key, cur = key, {}
            if _is_image_name(m.name) and "image" not in cur:
                cur["image"] = tf.extractfile(m).read()
            elif ext == "json":
                try:
                    cur["json"] = json.loads(tf.extractfile(m).read())
                except ValueError:
                    pass
        if cur_key is not None and (it := emit(cur_key, cur)) is not None:
            yield it
    except (OSError, tarfile.TarError, EOFError) as e:
        raise BiasampError(f"tar shard {path} is damaged: {e}", hint="re-download or remove this shard") from None
    finally:
        tf.close()


def _count_tar_images(path: Path) -> int:
    try:
        with tarfile.open(path) as tf:
            return len({_wds_key(m.name)[0] for m in tf if m.isfile() and _is_image_name(m.name)})
    except (OSError, tarfile.TarError, EOFError) as e:
        raise BiasampError(f"cannot read tar shard {path}: {e}", hint="check the file is a complete tar") from None


# ------------------------------------------------------------------ tables


def _read_any_table(path: Path) -> pl.DataFrame:
    from biasamp.tables import read_table

    return read_table(path)


class _TarCache:
    """Members of `x.tar::member` references, read once per tar."""

    def __init__(self):
        self._tars: dict[str, dict[str, bytes]] = {}

    def get(self, tar_path: Path, member: str) -> bytes | None:
        key = str(tar_path)
        if key not in self._tars:
            data: dict[str, bytes] = {}
            with tarfile.open(tar_path) as tf:
                for m in tf:
                    if m.isfile():
                        data[m.name] = tf.extractfile(m).read()
            self._tars = {key: data}  # keep one tar in memory at a time
        return self._tars[key].get(member)


def table_items(df: pl.DataFrame, base: Path, rows: tuple[int, int], *, image_col: str = "image",
                passthrough: tuple[str, ...] = PASSTHROUGH, where: str = "") -> Iterator[Item]:
    cache = _TarCache()
    keep = [c for c in passthrough if c in df.columns]
    status_cols = [c for c in ("status", "error_message") if c in df.columns and c not in keep]
    sub = df.slice(rows[0], rows[1] - rows[0])
    for r in sub.select("item_id", image_col, *keep, *status_cols).iter_rows(named=True):
        meta = {k: r[k] for k in keep}
        ref = r[image_col]
        iid = str(r["item_id"])
        if ref is None or str(ref) == "":
            if r.get("status") not in (None, "ok", "success"):  # a downloads table: say why
                msg = r.get("error_message")
                yield Item(iid, meta=meta, error=f"not downloaded: {r['status']}" + (f": {msg}" if msg else ""))
            else:
                yield Item(iid, meta=meta, error=f"no image path in column {image_col!r}{where}")
            continue
        ref = str(ref)
        if "::" in ref:
            tar_name, member = ref.split("::", 1)
            tar_path = Path(tar_name) if Path(tar_name).is_absolute() else base / tar_name
            try:
                data = cache.get(tar_path, member)
            except (OSError, tarfile.TarError, EOFError) as e:
                yield Item(iid, meta=meta, error=f"cannot read tar {tar_path}: {e}")
                continue
            if data is None:
                yield Item(iid, meta=meta, error=f"member {member!r} not in {tar_path}")
            else:
                yield Item(iid, data=data, meta=meta)
        else:
            p = Path(ref) if Path(ref).is_absolute() else base / ref
            yield Item(iid, path=str(p), meta=meta)


# ------------------------------------------------------------------ img2dataset


def _img2dataset_parquets(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.glob("*.parquet")):
        if p.with_suffix(".tar").exists() or (p.with_name(p.stem + "_stats.json")).exists():
            out.append(p)
    return out


def img2dataset_items(parquet: Path, *, id_column: str | None = None, meta: dict | None = None) -> Iterator[Item]:
    """One item per input row of an img2dataset shard: its image from the tar, or the failure."""
    df = pl.read_parquet(parquet)
    if "key" not in df.columns:
        raise BiasampError(f"{parquet} has no 'key' column; is it an img2dataset output shard?")
    idc = id_column or next((c for c in ("caption_id", "item_id") if c in df.columns), "key")
    tar = parquet.with_suffix(".tar")
    images: dict[str, bytes] = {}
    if tar.exists():
        with tarfile.open(tar) as tf:
            for m in tf:
                if m.isfile() and _is_image_name(m.name):
                    images[_wds_key(m.name)[0].rpartition("/")[2]] = tf.extractfile(m).read()
    keep = [c for c in PASSTHROUGH if c in df.columns]
    has_status = "status" in df.columns
    for r in df.iter_rows(named=True):
        m = {k: r[k] for k in keep}
        m.update(meta or {})
        iid = str(r[idc]) if r[idc] is not None else str(r["key"])
        status = r.get("status") if has_status else "success"
        key = r["key"]
        if key is not None and str(key) in images:
            yield Item(iid, data=images[str(key)], meta=m)
        elif status != "success":
            err = r.get("error_message")
            yield Item(iid, meta=m, error=f"not downloaded: {status}" + (f": {err}" if err else ""))
        else:
            yield Item(iid, meta=m, error=f"image {key} missing from {tar.name}")


# ------------------------------------------------------------------ discovery


def discover(inputs, *, shard_size: int = 1000, source: str | None = None,
             passthrough: tuple[str, ...] = PASSTHROUGH) -> tuple[list[Shard], dict]:
    """Cut the inputs into shards. Returns (shards, notes) where notes counts skipped files."""
    shards: list[Shard] = []
    notes = {"non_image_files_skipped": 0}
    for raw in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        path = Path(raw)
        if not path.exists():
            raise BiasampError(f"input not found: {path}", hint="pass image folders, .tar shards or tables of images")
        tag = _tag(path)
        if path.is_dir():
            parts = _img2dataset_parquets(path)
            if parts:
                src = source or "train"
                for p in parts:
                    n = pl.scan_parquet(p).select(pl.len()).collect().item()
                    shards.append(Shard(f"{tag}-{p.stem}", src, n,
                                        lambda p=p: img2dataset_items(p)))
                continue
            files = sorted(f for f in path.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(path).parts))
            tars = [f for f in files if f.suffix == ".tar"]
            imgs = [f for f in files if _is_image_name(f.name)]
            notes["non_image_files_skipped"] += len(files) - len(tars) - len(imgs)
            for t in tars:
                shards.append(Shard(f"{_tag(t)}", source, _count_tar_images(t),
                                    lambda t=t: tar_items(t)))
            for i, (a, b) in enumerate(_chunks(len(imgs), shard_size)):
                if a == b:
                    continue
                chunk = imgs[a:b]
                shards.append(Shard(f"{tag}-{i:05d}", source, len(chunk), lambda chunk=chunk, base=path: (
                    Item(str(f.relative_to(base)), path=str(f)) for f in chunk)))
        elif path.suffix == ".tar":
            shards.append(Shard(tag, source, _count_tar_images(path), lambda path=path: tar_items(path)))
        elif path.name.endswith(TABLE_EXTENSIONS):
            df = _read_any_table(path)
            missing = [c for c in ("item_id", "image") if c not in df.columns]
            if missing:
                raise BiasampError(
                    f"table {path} has no column(s) {', '.join(missing)}; found {', '.join(df.columns)}",
                    hint="a table of images needs item_id and image (a path relative to the table, or x.tar::member)",
                )
            if df["item_id"].null_count():
                raise BiasampError(f"table {path}: column 'item_id' has empty values")
            dup = df["item_id"].cast(pl.Utf8).is_duplicated()
            if dup.any():
                first = df.filter(dup)["item_id"].head(3).to_list()
                raise BiasampError(f"table {path}: duplicate item_id values {first}", hint="item_id must be unique")
            src = source or "gen"
            for i, (a, b) in enumerate(_chunks(len(df), shard_size)):
                if a == b:
                    continue
                shards.append(Shard(f"{tag}-{i:05d}", src, b - a, lambda a=a, b=b, df=df, path=path: table_items(
                    df, path.parent, (a, b), passthrough=passthrough, where=f" of {path}")))
        elif _is_image_name(path.name):
            shards.append(Shard(tag, source, 1, lambda path=path: iter([Item(path.name, path=str(path))])))
        else:
            raise BiasampError(f"cannot tell what {path} holds", hint="pass image folders, .tar shards, image files, "
                               "or tables (.parquet/.csv/.jsonl) with item_id and image columns")
    ids = [s.shard_id for s in shards]
    if len(set(ids)) != len(ids):
        raise BiasampError("the same input is given twice", hint="pass each folder, tar or table once")
    return shards, notes
