"""Caption corpora: finding the files, reading each format, resolving the columns.

Inputs are local paths, globs, folders, or fsspec URLs (`s3://…`, `hf://…`, `memory://…`,
`file://…`, with globs). Formats, by file name:

- `.parquet`: LAION metadata in any published schema, img2dataset shard tables, anything
  with a caption column.
- `.csv`, `.tsv` (optionally `.gz`): with a header, or headerless two-column files as
  CC3M (`caption<TAB>url`) and CC12M (`url<TAB>caption`) ship them: a first line none of
  whose fields is a known column name is data, and of its two fields the one that starts
  with `http://` or `https://` is the url, the other the caption.
- `.jsonl`, `.ndjson` (optionally `.gz`): one JSON object per line.
- `.tar`: webdataset shards (img2dataset output): per sample key, the caption from
  `<key>.txt`, else the `caption`/`text` field of `<key>.json`; url (and hash, if any)
  from `<key>.json`.

Columns are found case-insensitively: text = the first of `text`, `caption`, `txt`,
`alt_text`, `alt`; url = `url`, `image_url`, `link`; id = `hash`. Override with
`text_column=` / `url_column=` / `id_column=`. Caption bytes that are not UTF-8 are decoded
with U+FFFD replacement characters (counted per file), never dropped.
"""

from __future__ import annotations

import glob as _glob
import gzip
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError

TEXT_COLUMNS = ("text", "caption", "txt", "alt_text", "alt")
URL_COLUMNS = ("url", "image_url", "link")
ID_COLUMNS = ("hash",)
SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".ndjson", ".tar", ".csv.gz", ".tsv.gz", ".jsonl.gz", ".ndjson.gz")
BATCH_ROWS = 262_144


def _has_scheme(p: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", p))


def is_local(p: str) -> bool:
    return not _has_scheme(p) or p.startswith("file://")


def local_path(p: str) -> str:
    return p[len("file://"):] if p.startswith("file://") else p


def file_format(path: str) -> str:
    low = path.lower()
    for suf in SUFFIXES:
        if low.endswith(suf):
            return suf.lstrip(".").removesuffix(".gz").replace("ndjson", "jsonl")
    raise BiasampError(
        f"unsupported corpus file {path}",
        hint=f"supported: {', '.join(SUFFIXES)}",
    )


def _supported(p: str) -> bool:
    name = p.rstrip("/").rsplit("/", 1)[-1]
    return p.lower().endswith(SUFFIXES) and not name.startswith((".", "_"))


def resolve_inputs(corpus: list[str] | str) -> list[str]:
    """Expand paths, globs, folders and fsspec URLs into a sorted list of corpus files."""
    if isinstance(corpus, (str, Path)):
        corpus = [str(corpus)]
    out: list[str] = []
    for item in map(str, corpus):
        if is_local(item):
            p = local_path(item)
            if any(ch in p for ch in "*?["):
                found = sorted(f for f in _glob.glob(p, recursive=True) if os.path.isfile(f) and _supported(f))
            elif os.path.isdir(p):
                found = sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and _supported(str(f)) and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts))
            elif os.path.isfile(p):
                file_format(p)
                found = [p]
            else:
                raise BiasampError(f"corpus path not found: {item}", hint="give files, folders, globs or fsspec URLs")
        else:
            import fsspec

            fs, _, paths = fsspec.core.get_fs_token_paths(item)
            proto = item.split("://", 1)[0]
            if any(ch in item for ch in "*?["):
                cands = sorted(fs.glob(item.split("://", 1)[1]))
            elif fs.isdir(paths[0]):
                cands = sorted(fs.find(paths[0]))
            elif fs.exists(paths[0]):
                file_format(item)
                cands = [paths[0]]
            else:
                raise BiasampError(f"corpus URL not found: {item}")
            found = [f"{proto}://{c.lstrip('/') if proto != 'memory' else c}" if "://" not in c else c for c in cands]
            found = [f for f in found if _supported(f)]
        if not found:
            raise BiasampError(f"no corpus files in {item}", hint=f"corpus files end with one of {', '.join(SUFFIXES)}")
        out.extend(found)
    seen: dict[str, None] = {}
    for f in out:
        seen.setdefault(f, None)
    return list(seen)


def _open(path: str, mode: str = "rb"):
    if is_local(path):
        return open(local_path(path), mode)
    import fsspec

    return fsspec.open(path, mode).open()


def find_column(columns: list[str], candidates: tuple[str, ...], given: str | None, *, what: str, path: str, required: bool) -> str | None:
    lower = {c.lower(): c for c in columns}
    if given:
        if given in columns:
            return given
        if given.lower() in lower:
            return lower[given.lower()]
        raise BiasampError(f"{path}: no {what} column {given!r}; columns found: {', '.join(columns) or '(none)'}")
    for c in candidates:
        if c in lower:
            return lower[c]
    if required:
        raise BiasampError(
            f"{path}: no {what} column (looked for {', '.join(candidates)}, any case); columns found: {', '.join(columns) or '(none)'}",
            hint=f"name the {what} column with --{what}-column",
        )
    return None


@dataclass
class Columns:
    text: str
    url: str | None = None
    id: str | None = None
    keep: list[str] = field(default_factory=list)


def resolve_columns(columns: list[str], path: str, *, text_column=None, url_column=None, id_column=None, keep=()) -> Columns:
    text = find_column(columns, TEXT_COLUMNS, text_column, what="text", path=path, required=True)
    url = find_column(columns, URL_COLUMNS, url_column, what="url", path=path, required=bool(url_column))
    hid = find_column(columns, ID_COLUMNS, id_column, what="id", path=path, required=bool(id_column))
    kept = []
    for k in keep:
        c = find_column(columns, (), k, what=f"kept ({k})", path=path, required=True)
        kept.append(c)
    return Columns(text, url, hid, kept)


def standard_exprs(cols: Columns, schema: dict) -> list[pl.Expr]:
    """Rename to the standard names: text, url, hash, kept columns as they are."""
    text = pl.col(cols.text)
    if schema.get(cols.text) not in (pl.Utf8, pl.String):
        text = text.cast(pl.Utf8)
    out = [text.alias("text")]
    if cols.url:
        out.append(pl.col(cols.url).cast(pl.Utf8).alias("url"))
    if cols.id:
        out.append(pl.col(cols.id).cast(pl.Int64, strict=False).alias("hash"))
    out += [pl.col(k) for k in cols.keep if k not in ("text", "url", "hash", "row")]
    return out


# ------------------------------------------------------------------------------------------
# CSV / TSV
# ------------------------------------------------------------------------------------------
def _first_line(path: str) -> bytes:
    with _open(path) as f:
        if path.lower().endswith(".gz"):
            f = gzip.GzipFile(fileobj=f)
        return f.readline(1 << 20)


def csv_layout(path: str) -> dict:
    """Separator, whether there is a header, and the column names (see module doc)."""
    fmt = file_format(path)
    sep = "\t" if fmt == "tsv" else ","
    line = _first_line(path).decode("utf-8", "replace").rstrip("\r\n")
    if not line:
        return {"separator": sep, "has_header": True, "columns": None}
    fields = [f.strip().strip('"') for f in line.split(sep)]
    known = {c for c in TEXT_COLUMNS + URL_COLUMNS + ID_COLUMNS}
    if any(f.lower() in known for f in fields):
        return {"separator": sep, "has_header": True, "columns": None}
    if len(fields) == 2:
        is_url = [f.startswith(("http://", "https://")) for f in fields]
        if is_url == [False, True]:
            return {"separator": sep, "has_header": False, "columns": ["caption", "url"]}
        if is_url == [True, False]:
            return {"separator": sep, "has_header": False, "columns": ["url", "caption"]}
    return {"separator": sep, "has_header": True, "columns": None}


# ------------------------------------------------------------------------------------------
# One corpus file
# ------------------------------------------------------------------------------------------
@dataclass
class CorpusFile:
    """One input file, opened lazily: `lazy()` for Polars-scannable local files, else `batches()`."""

    path: str
    text_column: str | None = None
    url_column: str | None = None
    id_column: str | None = None
    keep: tuple[str, ...] = ()
    format: str = ""
    columns: Columns | None = None
    replaced: int = 0  # captions whose bytes were not UTF-8

    def __post_init__(self):
        self.format = file_format(self.path)

    def _resolve(self, names: list[str]) -> Columns:
        self.columns = resolve_columns(names, self.path, text_column=self.text_column, url_column=self.url_column, id_column=self.id_column, keep=self.keep)
        return self.columns

    # -- the fast path: a LazyFrame with standard columns (row, text, url, hash, keep) ------
    def lazy(self) -> pl.LazyFrame | None:
        """A lazy scan for local parquet/csv/tsv/jsonl files; None where only batches work."""
        if not is_local(self.path) or self.path.lower().endswith(".gz"):
            return None
        p = local_path(self.path)
        if self.format == "parquet":
            lf = pl.scan_parquet(p, row_index_name="row")
            schema = lf.collect_schema()
            cols = self._resolve([c for c in schema.names() if c != "row"])
            if schema[cols.text] == pl.Binary:
                return None  # decode bytes in Python (lossy), batch path
        elif self.format in ("csv", "tsv"):
            lay = csv_layout(self.path)
            lf = pl.scan_csv(
                p,
                separator=lay["separator"],
                has_header=lay["has_header"],
                new_columns=lay["columns"],
                infer_schema=False,
                encoding="utf8-lossy",
                quote_char=None if self.format == "tsv" else '"',
                truncate_ragged_lines=True,
                row_index_name="row",
            )
            schema = lf.collect_schema()
            cols = self._resolve([c for c in schema.names() if c != "row"])
        else:
            return None
        return lf.select(pl.col("row").cast(pl.Int64), *standard_exprs(cols, dict(schema)))

    # -- the general path: batches of standard columns -----------------------------------------
    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
        if self.format == "parquet":
            yield from self._parquet_batches(batch_rows)
        elif self.format in ("csv", "tsv"):
            yield from self._whole_batches(self._read_csv(), batch_rows)
        elif self.format == "jsonl":
            yield from self._whole_batches(self._read_jsonl(), batch_rows)
        elif self.format == "tar":
            yield from self._whole_batches(self._read_tar(), batch_rows)

    def _whole_batches(self, df: pl.DataFrame, batch_rows: int) -> Iterator[pl.DataFrame]:
        cols = self._resolve(df.columns)
        df = self._decode(df, cols)
        df = df.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        std = df.select(pl.col("row"), *standard_exprs(cols, dict(df.schema)))
        for off in range(0, max(std.height, 1), batch_rows):
            yield std.slice(off, batch_rows)

    def _decode(self, df: pl.DataFrame, cols: Columns) -> pl.DataFrame:
        if df.schema[cols.text] == pl.Binary:
            vals = df[cols.text].to_list()
            out = []
            for v in vals:
                if v is None:
                    out.append(None)
                    continue
                try:
                    out.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    self.replaced += 1
                    out.append(v.decode("utf-8", "replace"))
            df = df.with_columns(pl.Series(cols.text, out, dtype=pl.Utf8))
        return df

    def _parquet_batches(self, batch_rows: int) -> Iterator[pl.DataFrame]:
        import pyarrow.parquet as pq

        f = _open(self.path)
        try:
            pf = pq.ParquetFile(f)
            cols = self._resolve(pf.schema_arrow.names)
            wanted = [c for c in dict.fromkeys([cols.text, cols.url, cols.id, *cols.keep]) if c]
            row = 0
            for rb in pf.iter_batches(batch_size=batch_rows, columns=wanted):
                df = pl.from_arrow(rb)
                if isinstance(df, pl.Series):
                    df = df.to_frame()
                df = self._decode(df, cols)
                df = df.with_columns(pl.int_range(row, row + df.height, dtype=pl.Int64).alias("row"))
                row += df.height
                yield df.select(pl.col("row"), *standard_exprs(cols, dict(df.schema)))
        finally:
            f.close()

    def _raw_bytes(self) -> bytes:
        with _open(self.path) as f:
            data = f.read()
        if self.path.lower().endswith(".gz"):
            data = gzip.decompress(data)
        return data

    def _lossy(self, data: bytes) -> bytes:
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            text = data.decode("utf-8", "replace")
            self.replaced += text.count("\ufffd")
            return text.encode("utf-8")

    def _read_csv(self) -> pl.DataFrame:
        lay = csv_layout(self.path)
        data = self._lossy(self._raw_bytes())
        if not data.strip():
            raise BiasampError(f"{self.path}: empty file (no header, no rows)")
        return pl.read_csv(
            io.BytesIO(data),
            separator=lay["separator"],
            has_header=lay["has_header"],
            new_columns=lay["columns"],
            infer_schema=False,
            quote_char=None if self.format == "tsv" else '"',
            truncate_ragged_lines=True,
        )

    def _read_jsonl(self) -> pl.DataFrame:
        data = self._lossy(self._raw_bytes())
        if not data.strip():
            return pl.DataFrame({"text": pl.Series([], dtype=pl.Utf8)})
        return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)

    def _read_tar(self) -> pl.DataFrame:
        samples: dict[str, dict] = {}
        order: list[str] = []
        with _open(self.path) as f:
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    name = m.name.rsplit("/", 1)[-1]
                    if "." not in name:
                        continue
                    prefix = m.name[: len(m.name) - len(name)]
                    key, ext = name.split(".", 1)
                    key = prefix + key
                    ext = ext.lower()
                    if ext not in ("txt", "json"):
                        continue
                    data = tar.extractfile(m).read()
                    try:
                        s = data.decode("utf-8")
                    except UnicodeDecodeError:
                        self.replaced += 1
                        s = data.decode("utf-8", "replace")
                    if key not in samples:
                        samples[key] = {}
                        order.append(key)
                    if ext == "txt":
                        samples[key]["txt"] = s
                    else:
                        try:
                            samples[key]["json"] = json.loads(s)
                        except json.JSONDecodeError as e:
                            raise BiasampError(f"{self.path}: member {m.name} is not valid JSON ({e})") from None
        rows = []
        for key in order:
            s = samples[key]
            meta = s.get("json") or {}
            low = {str(k).lower(): v for k, v in meta.items()} if isinstance(meta, dict) else {}
            text = s.get("txt")
            if text is None:
                text = next((low[c] for c in ("caption", "text") if c in low), None)
            rows.append({"key": key, "caption": text, "url": low.get("url"), "hash": low.get("hash")})
        return pl.DataFrame(rows, schema={"key": pl.Utf8, "caption": pl.Utf8, "url": pl.Utf8, "hash": pl.Int64})
