"""Where images come from: folders, webdataset tar shards, tables of images, img2dataset output.

Every input is cut into shards with stable ids (so a killed run resumes shard by shard).
A shard yields `Item`s: an id, the image (bytes already read, or a path read later in a
worker thread), columns passed through to the labels table, or the reason there is no
image (a missing file, a failed download) — never a silent drop. Item ids are known when
the shards are cut, so ids shared by two images are refused before any work: the labels
table is joined on item_id.

A `biasamp generate` run folder (`generate.manifest.json` + `generations/`) is read through
its generations table, whose `image` paths are relative to the run folder.
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
#: What marks a `biasamp generate` run folder (beside its `generations/` table folder).
GENERATE_MANIFEST = "generate.manifest.json"
#: The `source` of generated images (the measure stage's name for that side).
GEN_SOURCE = "gen"


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
    ids: list[str] = field(default_factory=list)  # the item ids it yields, in order
    input: Path | None = None  # the input (as given) it was cut from

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


def _tar_item_id(key: str, js: dict) -> str:
    """A tar member's id: `item_id` from its .json (generate's tars: one per image), else
    `caption_id` (img2dataset's training tars: one image per caption), else the key."""
    for f in ("item_id", "caption_id"):
        if js.get(f) is not None and not isinstance(js[f], (dict, list)):
            return str(js[f])
    return key


def _tar_groups(path: Path, *, images: bool = True) -> Iterator[tuple[str, dict]]:
    """(key, {"image": bytes, "json": dict}) per key with an image member, streamed.

    Members of one key are consecutive in a webdataset shard, so a key is yielded as soon as
    the next key starts and only one image is held in memory. `images=False` reads only the
    (small) .json members: enough to know the ids.
    """
    import json

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
                if cur_key is not None and "image" in cur:  # a key without an image (a lone .txt) is no item
                    yield cur_key, cur
                cur_key, cur = key, {}
            if _is_image_name(m.name) and "image" not in cur:
                cur["image"] = tf.extractfile(m).read() if images else b""
            elif ext == "json":
                try:
                    js = json.loads(tf.extractfile(m).read())
                except ValueError:
                    js = None
                if isinstance(js, dict):
                    cur["json"] = js
        if cur_key is not None and "image" in cur:
            yield cur_key, cur
    except (OSError, tarfile.TarError, EOFError) as e:
        raise BiasampError(f"tar shard {path} is damaged: {e}", hint="re-download or remove this shard") from None
    finally:
        tf.close()


def tar_items(path: Path, *, meta: dict | None = None) -> Iterator[Item]:
    """Items of a webdataset tar: one per key with an image member (`.json` fields kept)."""
    for key, g in _tar_groups(path):
        js = g.get("json", {})
        m = {k: js[k] for k in PASSTHROUGH if k in js and not isinstance(js[k], (dict, list))}
        m.update(meta or {})
        yield Item(_tar_item_id(key, js), data=g["image"], meta=m)


def _tar_ids(path: Path) -> list[str]:
    return [_tar_item_id(key, g.get("json", {})) for key, g in _tar_groups(path, images=False)]


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


def _img2dataset_ids(df: pl.DataFrame, parquet: Path, id_column: str | None = None) -> list[str]:
    """Item ids of an img2dataset shard's rows: `caption_id` (else `item_id`), else `key`."""
    if "key" not in df.columns:
        raise BiasampError(f"{parquet} has no 'key' column; is it an img2dataset output shard?")
    idc = id_column or next((c for c in ("caption_id", "item_id") if c in df.columns), "key")
    return [str(v) if v is not None else str(k) for v, k in zip(df[idc].to_list(), df["key"].to_list())]


def img2dataset_items(parquet: Path, *, id_column: str | None = None, meta: dict | None = None) -> Iterator[Item]:
    """One item per input row of an img2dataset shard: its image from the tar, or the failure."""
    df = pl.read_parquet(parquet)
    ids = _img2dataset_ids(df, parquet, id_column)
    tar = parquet.with_suffix(".tar")
    images: dict[str, bytes] = {}
    if tar.exists():
        with tarfile.open(tar) as tf:
            for m in tf:
                if m.isfile() and _is_image_name(m.name):
                    images[_wds_key(m.name)[0].rpartition("/")[2]] = tf.extractfile(m).read()
    keep = [c for c in PASSTHROUGH if c in df.columns]
    has_status = "status" in df.columns
    for iid, r in zip(ids, df.iter_rows(named=True)):
        m = {k: r[k] for k in keep}
        m.update(meta or {})
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


def generate_run_of(path: Path) -> Path | None:
    """The `biasamp generate` run folder that `path` is, or whose `generations/` or `images/`
    folder or generations part file it is (its `image` paths are relative to the run
    folder); else None."""
    path = Path(path)

    def is_run(d: Path) -> bool:
        return (d / GENERATE_MANIFEST).is_file() and (d / "generations").is_dir()

    if path.is_dir():
        if is_run(path):
            return path
        if path.name in ("generations", "images") and is_run(path.parent):
            return path.parent
    elif path.parent.name == "generations" and is_run(path.parent.parent):
        return path.parent.parent
    return None


def _table_shards(df: pl.DataFrame, path: Path, base: Path, tag: str, shard_size: int, source: str | None,
                  passthrough: tuple[str, ...]) -> list[Shard]:
    """Shards of a table of images (`image` resolved against `base`); its ids are checked
    for duplicates with every other input's by `discover`."""
    missing = [c for c in ("item_id", "image") if c not in df.columns]
    if missing:
        raise BiasampError(
            f"table {path} has no column(s) {', '.join(missing)}; found {', '.join(df.columns)}",
            hint="a table of images needs item_id and image (a path relative to the table, or x.tar::member)",
        )
    if df["item_id"].null_count():
        raise BiasampError(f"table {path}: column 'item_id' has empty values")
    ids = [str(v) for v in df["item_id"].to_list()]  # as table_items names them; duplicates: _check_unique_ids
    shards = []
    for i, (a, b) in enumerate(_chunks(len(df), shard_size)):
        if a == b:
            continue
        shards.append(Shard(f"{tag}-{i:05d}", source, b - a, lambda a=a, b=b: table_items(
            df, base, (a, b), passthrough=passthrough, where=f" of {path}"), ids=ids[a:b]))
    return shards


def _generate_run_shards(run: Path, shard_size: int, source: str | None, passthrough: tuple[str, ...]) -> list[Shard]:
    """Shards of a generate run: its generations parts (committed whole, so a part's shards
    keep their ids when the run is finished later and classified again)."""
    tag = _tag(run)
    shards = []
    for part in sorted((run / "generations").glob("part-*.parquet")):
        df = _read_any_table(part)
        shards += _table_shards(df, part, run, f"{tag}-{part.stem}", shard_size, source or GEN_SOURCE, passthrough)
    return shards


def _no_images(path: Path, run: Path | None, skipped: int, tables: list[Path]) -> BiasampError:
    """The error for an input without images, with a hint at what was probably meant."""
    if run is not None:
        hint = (f"{run} is a biasamp generate run without generated images yet (no rows under generations/): "
                "finish it with the same biasamp generate command, then classify it again")
    elif path.is_file():
        what = "rows" if path.name.endswith(TABLE_EXTENSIONS) else "image members"
        hint = f"it has no {what}; check it is the file you meant"
    elif path.name == "images" and (path.parent / GENERATE_MANIFEST).is_file():
        hint = f"this looks like the images/ folder of a biasamp generate run: pass the run folder {path.parent}"
    elif (path / GENERATE_MANIFEST).is_file():
        hint = f"{path} looks like a biasamp generate run without its generations/ folder: generate it again"
    elif tables:
        hint = (f"tables inside a folder are not read: pass the table itself, e.g. {tables[0]} "
                "(a table of images needs item_id and image columns)")
    else:
        hint = f"check the path; image files need one of the extensions {', '.join(IMAGE_EXTENSIONS)}"
    where = f" ({skipped} non-image files skipped)" if path.is_dir() and run is None else ""
    return BiasampError(f"no images found in {path}{where}", hint=hint)


def discover(inputs, *, shard_size: int = 1000, source: str | None = None,
             passthrough: tuple[str, ...] = PASSTHROUGH) -> tuple[list[Shard], dict]:
    """Cut the inputs into shards. Returns (shards, notes) where notes counts skipped files.

    Refuses an input that holds no image, and item ids shared by two images (the labels
    table is joined on item_id), before any image is read.
    """
    shards: list[Shard] = []
    notes = {"non_image_files_skipped": 0}
    for raw in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        path = Path(raw)
        if not path.exists():
            raise BiasampError(f"input not found: {path}", hint="pass image folders, .tar shards or tables of images")
        tag = _tag(path)
        run = generate_run_of(path)
        skipped, tables = 0, []
        new: list[Shard] = []
        if run is not None and path.is_dir():  # the run folder, or its generations/ or images/ folder
            new = _generate_run_shards(run, shard_size, source, passthrough)
        elif path.is_dir():
            parts = _img2dataset_parquets(path)
            if parts:
                src = source or "train"
                for p in parts:
                    df = pl.read_parquet(p, columns=[c for c in ("caption_id", "item_id", "key")
                                                     if c in pl.read_parquet_schema(p)])
                    ids = _img2dataset_ids(df, p)
                    new.append(Shard(f"{tag}-{p.stem}", src, len(ids), lambda p=p: img2dataset_items(p), ids=ids))
            else:
                files = sorted(f for f in path.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(path).parts))
                # generate runs inside the folder (e.g. a study's generate stage) are read as runs
                runs = sorted({f.parent for f in files if f.name == GENERATE_MANIFEST and generate_run_of(f.parent)})
                for r in runs:
                    new += _generate_run_shards(r, shard_size, source, passthrough)
                if runs:  # one pass: drop every file under a run (its images are read through its table)
                    prefixes = {r.relative_to(path).parts for r in runs}
                    depths = sorted({len(p) for p in prefixes})
                    files = [f for f in files
                             if not any(f.relative_to(path).parts[:d] in prefixes for d in depths)]
                tars = [f for f in files if f.suffix == ".tar"]
                imgs = [f for f in files if _is_image_name(f.name)]
                tables = [f for f in files if f.name.endswith(TABLE_EXTENSIONS)]
                skipped = len(files) - len(tars) - len(imgs)
                notes["non_image_files_skipped"] += skipped
                for t in tars:
                    ids = _tar_ids(t)
                    new.append(Shard(f"{_tag(t)}", source, len(ids), lambda t=t: tar_items(t), ids=ids))
                for i, (a, b) in enumerate(_chunks(len(imgs), shard_size)):
                    if a == b:
                        continue
                    chunk = imgs[a:b]
                    new.append(Shard(f"{tag}-{i:05d}", source, len(chunk), lambda chunk=chunk, base=path: (
                        Item(str(f.relative_to(base)), path=str(f)) for f in chunk),
                        ids=[str(f.relative_to(path)) for f in chunk]))
        elif path.suffix == ".tar":
            ids = _tar_ids(path)
            in_run = path.parent.name == "images" and generate_run_of(path.parent.parent) is not None
            new.append(Shard(tag, source or (GEN_SOURCE if in_run else None), len(ids), lambda path=path: tar_items(path), ids=ids))
        elif path.name.endswith(TABLE_EXTENSIONS):
            # a part file of a generate run: its image paths are relative to the run folder
            new = _table_shards(_read_any_table(path), path, run or path.parent, tag, shard_size,
                                source or GEN_SOURCE, passthrough)
        elif _is_image_name(path.name):
            new.append(Shard(tag, source, 1, lambda path=path: iter([Item(path.name, path=str(path))]),
                             ids=[path.name]))
        else:
            raise BiasampError(f"cannot tell what {path} holds", hint="pass image folders, .tar shards, image files, "
                               "or tables (.parquet/.csv/.jsonl) with item_id and image columns")
        if not sum(s.n for s in new):
            raise _no_images(path, run, skipped, tables)
        for s in new:
            s.input = path
        shards += new
    ids = [s.shard_id for s in shards]
    if len(set(ids)) != len(ids):
        raise BiasampError("the same input is given twice", hint="pass each folder, tar or table once")
    _check_unique_ids(shards)
    return shards, notes


def _check_unique_ids(shards: list[Shard]) -> None:
    """Two images with one item_id cannot both be joined to their prompt or caption."""
    ids = pl.DataFrame({
        "item_id": pl.Series([i for s in shards for i in s.ids], dtype=pl.Utf8),
        "input": pl.Series([str(s.input) for s in shards for _ in s.ids], dtype=pl.Utf8),
    })
    dup = ids.filter(pl.col("item_id").is_duplicated())
    if dup.is_empty():
        return
    first = dup["item_id"][0]
    where = dup.filter(pl.col("item_id") == first)["input"].unique(maintain_order=True).to_list()
    n = dup["item_id"].n_unique()
    raise BiasampError(
        f"duplicate item_id: {n} id(s) name more than one image, e.g. {first!r} in {' and in '.join(where)}",
        hint="every image needs its own item_id (the labels table is joined on it): classify inputs that "
             "reuse ids into separate --out folders, or list the images in a table with unique item_id values",
    )
