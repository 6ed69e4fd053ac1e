"""The `local` source: map caption ids to an image store the user already has.

Stores understood:
- img2dataset output (a folder of `NNNNN.parquet` shard tables with `key`/`status`, and
  images as `NNNNN.tar` webdataset shards, `NNNNN/` folders of files, or image bytes inside
  the parquet tables);
- an index file (CSV, TSV, Parquet or JSONL; or a folder holding `index.<ext>`) with a
  caption id column and an image path column, paths relative to the index file.
Rows are matched on the caption id (`caption_id`, else LAION's `hash`, else `--id-column`);
a store without ids is matched on `url`.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError
from biasamp.images import schema
from biasamp.images.verify import TAR_SEP, check_refs
from biasamp.store import atomic_write_bytes

INDEX_NAMES = ("index.parquet", "index.csv", "index.tsv", "index.jsonl")
ID_CANDIDATES = ("caption_id", "hash")
PATH_CANDIDATES = ("image", "path", "file", "filepath", "filename")
IMAGE_BYTES_COLUMNS = ("jpg", "png", "webp", "jpeg")
EXTRACTED = "images/local"


def _read_any(p: Path) -> pl.DataFrame:
    s = p.suffix.lower()
    try:
        if s == ".parquet":
            return pl.read_parquet(p)
        if s in (".csv", ".tsv"):
            return pl.read_csv(p, separator="\t" if s == ".tsv" else ",", infer_schema_length=10000)
        if s in (".jsonl", ".ndjson"):
            return pl.read_ndjson(p)
    except Exception as e:  # noqa: BLE001 - name the unreadable file
        raise BiasampError(f"cannot read {p}: {type(e).__name__}: {e}") from None
    raise BiasampError(f"unknown index file type {p}", hint="use .parquet, .csv, .tsv or .jsonl")


def _ref(path: Path, out: Path, member: str | None = None) -> str:
    path = path.resolve()
    try:
        s = str(path.relative_to(out.resolve()))
    except ValueError:
        s = str(path)
    return s + (TAR_SEP + member if member else "")


def _match_column(df: pl.DataFrame, id_column: str | None, where: Path) -> tuple[str, str]:
    """(store column, selection column) to join on."""
    if id_column is not None:
        if id_column not in df.columns:
            raise BiasampError(
                f"store {where} has no column {id_column!r}; columns: {', '.join(df.columns)}",
                hint="pass --id-column naming the store's caption id column",
            )
        return id_column, "caption_id"
    for c in ID_CANDIDATES:
        if c in df.columns:
            return c, "caption_id"
    if "url" in df.columns:
        return "url", "url"
    raise BiasampError(
        f"store {where} has neither a caption id column ({', '.join(ID_CANDIDATES)}) nor a url column",
        hint="pass --id-column naming the column that holds caption ids",
    )


def _is_img2dataset(folder: Path) -> list[Path]:
    shards = sorted(p for p in folder.glob("*.parquet") if p.stem.isdigit())
    if not shards:
        return []
    cols = pl.read_parquet_schema(shards[0])
    return shards if {"key", "status"} <= set(cols) else []


def _img2dataset_store(folder: Path, out: Path) -> pl.DataFrame:
    """Rows: store columns + `_ref` (image reference or None) + `_status`, `_message`."""
    shards = _is_img2dataset(folder)
    rows = []
    for p in shards:
        shard = p.stem
        cols = pl.read_parquet_schema(p)
        byte_col = next((c for c in IMAGE_BYTES_COLUMNS if c in cols), None)
        df = pl.read_parquet(p)
        tar = folder / f"{shard}.tar"
        sub = folder / shard
        if tar.exists():
            with tarfile.open(tar) as tf:
                names = [n for n in tf.getnames() if not n.endswith((".json", ".txt"))]
            member = {n.rsplit(".", 1)[0]: n for n in names}
            refs = [_ref(tar, out, member[k]) if k in member else None for k in df["key"].to_list()]
        elif sub.is_dir():
            files = {n.rsplit(".", 1)[0]: n for n in os.listdir(sub) if not n.endswith((".json", ".txt"))}
            refs = [_ref(sub / files[k], out) if k in files else None for k in df["key"].to_list()]
        elif byte_col is not None:
            refs = [f"{shard}{TAR_SEP}parquet{TAR_SEP}{i}" if v is not None else None for i, v in enumerate(df[byte_col])]
            df = df.with_columns(pl.col(byte_col).alias("_bytes"))
        else:
            refs = [None] * len(df)
        df = df.with_columns(pl.Series("_ref", refs, dtype=pl.Utf8))
        rows.append(df.drop([c for c in IMAGE_BYTES_COLUMNS if c in df.columns]))
    return pl.concat(rows, how="diagonal_relaxed")


def _index_store(index: Path, path_column: str | None) -> pl.DataFrame:
    df = _read_any(index)
    if path_column is None:
        path_column = next((c for c in PATH_CANDIDATES if c in df.columns), None)
    if path_column is None or path_column not in df.columns:
        raise BiasampError(
            f"index {index} has no image path column ({path_column or ', '.join(PATH_CANDIDATES)}); "
            f"columns: {', '.join(df.columns)}",
            hint="pass --path-column naming the column with image paths",
        )
    base = index.parent.resolve()

    def absref(v: str | None) -> str | None:
        if v is None or v == "":
            return None
        path, _, member = v.partition(TAR_SEP)
        p = Path(path)
        p = p if p.is_absolute() else base / p
        return str(p) + (TAR_SEP + member if member else "")

    return df.with_columns(
        pl.col(path_column).cast(pl.Utf8).map_elements(absref, return_dtype=pl.Utf8).alias("_ref"),
    )


def fetch_local(
    selection: pl.DataFrame,
    out: str | Path,
    *,
    store: str | Path,
    id_column: str | None = None,
    path_column: str | None = None,
    min_image_size: int = 64,
    check_threads: int = 4,
    show_progress: bool = True,
) -> tuple[pl.DataFrame, dict]:
    """Find each selected caption's image in `store`; decode it; return (downloads, stats)."""
    from biasamp.ui import progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Path(store)
    if not store.exists():
        raise BiasampError(f"image store not found: {store}", hint="pass --store with an existing folder or index file")
    kind = "index"
    if store.is_dir():
        idx = next((store / n for n in INDEX_NAMES if (store / n).exists()), None)
        if idx is not None:
            table = _index_store(idx, path_column)
        elif _is_img2dataset(store):
            kind = "img2dataset"
            table = _img2dataset_store(store, out)
        else:
            raise BiasampError(
                f"{store} is neither img2dataset output (NNNNN.parquet shards) nor a folder with an index file",
                hint=f"add an index file ({' / '.join(INDEX_NAMES)}) with caption_id and image path columns",
            )
    else:
        table = _index_store(store, path_column)
    store_col, sel_col = _match_column(table, id_column, store)
    caps = selection.select("caption_id", *(["url"] if "url" in selection.columns else [])).unique(
        "caption_id", maintain_order=True
    )
    if sel_col == "url" and "url" not in caps.columns:
        raise BiasampError("the store can only be matched on url, but the selection has no url column")
    key_dtype = caps.schema[sel_col]
    try:
        table = table.with_columns(pl.col(store_col).cast(key_dtype, strict=True).alias("_key"))
    except Exception:  # noqa: BLE001
        raise BiasampError(
            f"store {store}: column {store_col!r} cannot be read as {key_dtype} caption ids",
            hint="pass --id-column naming the column that holds caption ids",
        ) from None
    if "status" in table.columns:  # img2dataset store: prefer a successful row per caption
        table = table.with_columns((pl.col("status") != "success").alias("_rank")).sort("_rank", maintain_order=True)
    table = table.unique("_key", keep="first", maintain_order=True)
    keep = ["_key", "_ref"] + [c for c in ("status", "error_message", "_bytes") if c in table.columns]
    joined = caps.join(table.select(keep), left_on=sel_col, right_on="_key", how="left", coalesce=False)
    joined = joined.with_columns(pl.col(sel_col).alias("_sel"))

    n = len(joined)
    statuses: list[str] = []
    messages: list[str | None] = []
    received: list[bool] = []
    refs: list[str | None] = []
    ids = joined["caption_id"].to_list()
    store_status = joined["status"].to_list() if "status" in joined.columns else [None] * n
    store_msg = joined["error_message"].to_list() if "error_message" in joined.columns else [None] * n
    blobs = joined["_bytes"].to_list() if "_bytes" in joined.columns else [None] * n
    for i, (k, ref) in enumerate(zip(joined["_key"].to_list(), joined["_ref"].to_list())):
        if k is None:
            statuses.append("missing"), messages.append(f"caption not in the store {store}"), received.append(False)
            refs.append(None)
            continue
        st = store_status[i]
        if st is not None and st != "success":
            s = schema.status_from_img2dataset(st, store_msg[i])
            statuses.append(s), messages.append(store_msg[i]), received.append(st == "failed_to_resize")
            refs.append(None)
            continue
        if ref is None:
            statuses.append("missing"), messages.append(f"no image file for this caption in {store}")
            received.append(False), refs.append(None)
            continue
        if blobs[i] is not None:  # image bytes inside a parquet store: extract once
            ext = "jpg"
            dest = out / EXTRACTED / f"{ids[i]}.{ext}"
            if not dest.exists():
                atomic_write_bytes(blobs[i], dest)
            ref = _ref(dest, out)
        statuses.append("?"), messages.append(None), received.append(True), refs.append(ref)

    todo = [i for i, s in enumerate(statuses) if s == "?"]
    width: list = [None] * n
    height: list = [None] * n
    fmts: list = [None] * n
    shas: list = [None] * n
    step = 500
    with progress("fetch (local)", len(todo), enabled=show_progress) as advance:
        for j in range(0, len(todo), step):
            chunk = todo[j : j + step]
            for i, c in zip(chunk, check_refs([refs[i] for i in chunk], out, min_image_size=min_image_size, threads=check_threads)):
                statuses[i], messages[i] = c.status, c.error_message
                width[i], height[i], fmts[i], shas[i] = c.width, c.height, c.format, c.sha256
                if c.status == "missing":
                    received[i] = False
            advance(len(chunk))
    refs = [r if s == "ok" else None for r, s in zip(refs, statuses)]
    res = pl.DataFrame(
        {
            "caption_id": joined["caption_id"],
            "item_id": joined["caption_id"].cast(pl.Utf8),
            "url": joined["url"] if "url" in joined.columns else pl.Series([None] * n, dtype=pl.Utf8),
            "status": statuses,
            "received": received,
            "error_message": pl.Series(messages, dtype=pl.Utf8),
            "image": pl.Series(refs, dtype=pl.Utf8),
            "width": pl.Series(width, dtype=pl.Int64),
            "height": pl.Series(height, dtype=pl.Int64),
            "format": pl.Series(fmts, dtype=pl.Utf8),
            "sha256": pl.Series(shas, dtype=pl.Utf8),
            "source": "local",
        }
    )
    return schema.finish(res).sort("caption_id"), {"store": str(store), "store_kind": kind, "matched_on": store_col}
