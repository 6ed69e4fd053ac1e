"""The caption query over a whole corpus: files in, `mentions` + stats out, resumable.

Output folder layout (`out`):

    mentions/occupation=<slug>/part-<batch>.parquet   the mentions, by occupation; one file per
                                                       occupation and compacted batch of input files
    mentions/part-<shard>.parquet                      with partition="shard" instead: one per input file
    mentions/_staged/part-<shard>.arrow                an input file's mentions until compacted
    _progress/<shard>.json                             an input file is done (its counts)
    _compacted/<batch>.json                            the input files a compacted batch holds
    files.parquet                                      one row per input file (the skip list too)
    stats.parquet                                      per-occupation statistics
    query.manifest.json                                parameters, versions, matcher fingerprint
    .discarded-<id>/                                   an overwritten run's folders, while they are deleted

`<shard>` is the input file's base name plus a hash of its full path. An input file is
committed when its `_progress` marker is written (after its staged part, written
atomically); a re-run skips committed files and first deletes parts of uncommitted ones,
so a killed run resumes without duplicates. At the end of a run, `compact` moves the staged
parts into the occupation partitions batch by batch (files, then the batch's record, then
the staged parts are deleted; an interrupted compaction is redone). `read_mentions` reads
committed rows only, staged or compacted, each once;
`biasamp.tables.read_table(out / "mentions", "mentions")` reads every Parquet part.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import mmh3
import polars as pl

from biasamp import tables
from biasamp.corpus import kernels
from biasamp.corpus.matcher import CaptionMatcher, query_batch
from biasamp.corpus.readers import CorpusFile, resolve_inputs
from biasamp.errors import BiasampError
from biasamp.store import atomic_path, atomic_write_json, atomic_write_parquet, write_manifest
from biasamp.vocab.lexicons import load_lexicon
from biasamp.vocab.occupations import load_occupations, slug

PARTITIONS = ("occupation", "shard")
STAGED = "_staged"  # mentions/_staged/part-<shard>.arrow: an input file's rows before compaction
COMPACTED = "_compacted"  # out/_compacted/<batch>.json: the input files a compacted batch holds
COMPACT_ROWS = 1_000_000  # mention rows per compacted batch (~0.27 GB: 53,738 benchmark rows are 14.5 MB of Arrow IPC)
FILES_SCHEMA = {
    "source": pl.Utf8, "shard": pl.Utf8, "format": pl.Utf8, "status": pl.Utf8, "rows": pl.Int64,
    "null_text": pl.Int64, "empty_text": pl.Int64, "non_utf8": pl.Int64, "candidates": pl.Int64,
    "captions_matched": pl.Int64, "mention_rows": pl.Int64, "ids_hash": pl.Int64, "ids_url_text": pl.Int64,
    "ids_fallback": pl.Int64, "text_column": pl.Utf8, "url_column": pl.Utf8, "id_column": pl.Utf8,
    "seconds": pl.Float64, "error": pl.Utf8,
}


@dataclass
class QueryResult:
    out: Path
    files: pl.DataFrame  # one row per input file (status ok | skipped)
    stats: pl.DataFrame  # per occupation

    @property
    def mentions_dir(self) -> Path:
        return self.out / "mentions"

    def mentions(self) -> pl.DataFrame:
        return read_mentions(self.out)


def shard_id(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60]
    return f"{stem}-{mmh3.hash64(path)[0] & 0xFFFFFFFF:08x}"


def make_matcher(occupations=None, lexicon="paper", names="auto", synonyms=False, prefilter_engine="auto",
                 exact_engine="auto") -> CaptionMatcher:
    occs = load_occupations(occupations, synonyms=synonyms)
    lex = load_lexicon(lexicon)
    return CaptionMatcher(occs, lex, names if names else None, prefilter_engine, exact_engine)


def _bad_file(path: str, e: Exception) -> BiasampError:
    if isinstance(e, BiasampError):
        return e
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return BiasampError(
        f"cannot read corpus file {path}: {type(e).__name__}: {msg}"[:600],
        hint="the file may be corrupt or truncated; re-download it, or pass --skip-bad-files to skip and record it",
    )


def process_file(cf: CorpusFile, matcher: CaptionMatcher, keep: tuple[str, ...] = ()) -> tuple[pl.DataFrame, dict]:
    """Mentions of one input file and its counts (raises on unreadable input)."""
    t0 = time.perf_counter()
    info = {"rows": 0, "null_text": 0, "empty_text": 0, "candidates": 0}
    lf = cf.lazy()
    keep_cols = tuple(cf.columns.keep) if cf.columns else ()
    if lf is not None and cf.format == "parquet":
        # Two phases: decode only the caption column and prefilter it; then decode the
        # other columns (url, id, kept ones) and keep only the surviving rows.
        s = lf.select(pl.col("text")).collect()["text"]
        info["rows"] = s.len()
        info["null_text"] = s.null_count()
        info["empty_text"] = int((s.str.len_bytes() == 0).sum() or 0)
        idx = matcher.candidate_rows(s)
        info["candidates"] = idx.len()
        rest = lf.drop("text", "row").collect()
        cand_df = pl.concat(
            [idx.alias("row").to_frame(), s.gather(idx).to_frame("text"), rest[idx]], how="horizontal"
        )
        keep_cols = tuple(cf.columns.keep)
        mentions = query_batch(cand_df, matcher, source=cf.path, prefiltered=True, keep=keep_cols)
    elif lf is not None:
        text = pl.col("text")
        # One pass: candidates plus the rare null and empty captions (counted, then dropped).
        odd = text.is_null() | (text.str.len_bytes() == 0)
        if cf.format != "parquet":  # Polars decodes CSV lossily: count captions it had to repair
            odd = odd | text.str.contains("\ufffd", literal=True)
        cand_df = lf.filter(odd | matcher.prefilter(text)).collect(engine="streaming")
        info["rows"] = int(lf.select(pl.len()).collect().item())
        info["null_text"] = cand_df["text"].null_count()
        info["empty_text"] = int((cand_df["text"].str.len_bytes() == 0).sum() or 0)
        if cf.format != "parquet":
            cf.replaced = int(cand_df["text"].str.contains("\ufffd", literal=True).sum() or 0)
        cand_df = cand_df.filter((text.str.len_bytes() > 0) & matcher.prefilter(text))
        info["candidates"] = cand_df.height
        keep_cols = tuple(cf.columns.keep)
        mentions = query_batch(cand_df, matcher, source=cf.path, prefiltered=True, keep=keep_cols)
    else:
        parts = []
        for batch in cf.batches():
            text = batch["text"]
            info["rows"] += batch.height
            info["null_text"] += text.null_count()
            info["empty_text"] += int((text.str.len_bytes() == 0).sum() or 0)
            cand = batch[matcher.candidate_rows(text)]
            info["candidates"] += cand.height
            keep_cols = tuple(cf.columns.keep) if cf.columns else ()
            parts.append(query_batch(cand, matcher, source=cf.path, prefiltered=True, keep=keep_cols))
        mentions = pl.concat(parts, how="diagonal_relaxed") if parts else None
        if mentions is None or not parts:
            mentions = query_batch(pl.DataFrame({"text": pl.Series([], dtype=pl.Utf8)}), matcher, source=cf.path)
    rules = mentions.unique("row")["id_rule"].value_counts() if mentions.height else None
    rule = dict(rules.iter_rows()) if rules is not None else {}
    info.update(
        non_utf8=cf.replaced,
        captions_matched=mentions["row"].n_unique() if mentions.height else 0,
        mention_rows=mentions.height,
        ids_hash=rule.get("hash", 0),
        ids_url_text=rule.get("url+text", 0),
        ids_fallback=rule.get("fallback", 0),
        text_column=cf.columns.text if cf.columns else None,
        url_column=cf.columns.url if cf.columns else None,
        id_column=cf.columns.id if cf.columns else None,
        seconds=time.perf_counter() - t0,
    )
    info["counts"] = indicator_counts(mentions)
    return mentions, info


def indicator_counts(mentions: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{occupation: {indicator: rows}}: kept in each file's progress marker, so the
    statistics of a run are sums of small dicts, not a scan of all its mentions."""
    if not mentions.height:
        return {}
    out: dict[str, dict[str, int]] = {}
    for occ, ind, n in mentions.group_by("occupation", "indicator").len().iter_rows():
        out.setdefault(occ, {})[ind] = int(n)
    return out


def _commit(out: Path, shard: str, mentions: pl.DataFrame, info: dict, partition: str) -> None:
    """Write one input file's mentions atomically, then its progress marker.

    With partition="occupation" the rows go to one staged file per input file
    (`mentions/_staged/part-<shard>.arrow`, Arrow IPC: writing and reading it back costs
    almost nothing); `compact` later moves them into the occupation partitions, a few
    large Parquet files (one small file per occupation and input file cost more CPU to
    write than the matching itself, and would make LAION-size outputs hundreds of
    thousands of files). Parquet parts are written with LZ4 and no column statistics, the
    cheapest Parquet write.
    """
    mdir = out / "mentions"
    if partition == "skip":
        pass
    elif partition == "occupation":
        if mentions.height:
            with atomic_path(mdir / STAGED / f"part-{shard}.arrow") as tmp:
                mentions.write_ipc(tmp, compression="uncompressed")
    else:
        atomic_write_parquet(mentions, mdir / f"part-{shard}.parquet")
    atomic_write_json(info, out / "_progress" / f"{shard}.json")


def _parts_of(mdir: Path, shard: str) -> list[Path]:
    """Every part file an input file may have left (also the per-file partition files of
    earlier versions of this layout)."""
    return (
        list(mdir.glob(f"part-{shard}.parquet"))
        + list(mdir.glob(f"{STAGED}/part-{shard}.arrow"))
        + list(mdir.glob(f"occupation=*/part-{shard}.parquet"))
    )


TRASH = ".discarded-"  # out/.discarded-<id>/: an overwritten run's folders, being deleted


def _discard(out: Path, subs: tuple[str, ...]):
    """Move `out`'s folders `subs` aside at once (the run starts on a clean folder) and
    delete them, and any left by an earlier run, in a background thread (deleting a large
    output takes a while; nothing reads those folders). Returns the thread to join."""
    import threading
    import uuid

    if subs:
        trash = out / f"{TRASH}{uuid.uuid4().hex[:12]}"
        for sub in subs:
            if (out / sub).exists():
                trash.mkdir(exist_ok=True)
                os.replace(out / sub, trash / sub)
    doomed = sorted(out.glob(f"{TRASH}*"))

    def delete():
        for d in doomed:
            shutil.rmtree(d, ignore_errors=True)

    t = threading.Thread(target=delete, name="biasamp-discard", daemon=True)
    t.start()
    return t


def _markers(out: Path) -> dict[str, dict]:
    d = out / "_progress"
    if not d.exists():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}


def _part_key(f: Path) -> str:
    """The shard or batch id in a part file's name (`part-<id>.parquet|.arrow`)."""
    return f.stem[len("part-"):]


def _detach(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with its strings copied where they are views into much larger buffers (the
    captions of the whole input file, which would otherwise stay in memory as long as the
    rows are held)."""
    old = pl.CompatLevel.oldest()
    cols = []
    for name, dtype in df.schema.items():
        if dtype == pl.Utf8:
            arr = df[name].to_arrow(compat_level=pl.CompatLevel.newest())
            held = sum(b.size for b in arr.buffers()[2:] if b is not None)
            if held > 2 * int(df[name].str.len_bytes().sum() or 0) + (1 << 20):
                cols.append(kernels.polars_series(df[name].to_arrow(compat_level=old)).alias(name))
    return df.with_columns(cols) if cols else df


def _by_occupation(mentions: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {occ: df for (occ,), df in mentions.partition_by("occupation", as_dict=True, maintain_order=True).items()}


def _batches(out: Path) -> dict[str, list[str]]:
    """Compacted batches: batch id -> the input files' shard ids it holds."""
    d = out / COMPACTED
    if not d.exists():
        return {}
    return {p.stem: json.loads(p.read_text())["shards"] for p in sorted(d.glob("*.json"))}


def _tidy(out: Path) -> None:
    """Remove what an interrupted run left: temporary files, partition files of batches
    that were never recorded, staged files whose rows are already compacted."""
    mdir = out / "mentions"
    for tmp in list(mdir.rglob(".*.tmp")):
        tmp.unlink(missing_ok=True)
    batches = _batches(out)
    shards = set(_markers(out))
    compacted = {sh for b in batches.values() for sh in b}
    for f in mdir.glob("occupation=*/part-*.parquet"):
        if _part_key(f) not in batches and _part_key(f) not in shards:
            f.unlink()
    for f in mdir.glob(f"{STAGED}/part-*.arrow"):
        if _part_key(f) in compacted:
            f.unlink()


class Compactor:
    """Moves committed input files' mentions into the occupation partitions, in batches.

    `add(shard, mentions)` takes the rows of an input file that was just committed (its
    staged file is on disk): they are split by occupation at once (in the worker's thread)
    and kept in memory; when `batch_rows` rows are held, a batch is written. `finish()`
    writes what is held, then compacts staged files on disk that are not in memory (input
    files of an earlier, interrupted run). A batch is one Parquet file per occupation,
    `occupation=<slug>/part-<batch>.parquet`, written atomically; then
    `_compacted/<batch>.json` records its input files; then their staged files are deleted.
    An interrupted compaction is redone by the next run (`_tidy` removes its files).
    """

    def __init__(self, out: Path, *, batch_rows: int = COMPACT_ROWS, workers: int | None = None):
        import threading

        self.out = Path(out)
        self.mdir = self.out / "mentions"
        self.batch_rows = batch_rows
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.held: list[tuple[str, dict[str, pl.DataFrame]]] = []
        self.held_rows = 0
        self.written: list[str] = []
        self._hold = threading.Lock()
        self._write = threading.Lock()

    def add(self, shard: str, mentions: pl.DataFrame) -> None:
        if not mentions.height:
            return
        mentions = _detach(mentions)
        parts = _by_occupation(mentions)  # split here, in the worker's thread, outside the lock
        with self._hold:
            self.held.append((shard, parts))
            self.held_rows += mentions.height
            if self.held_rows < self.batch_rows:
                return
            take, self.held, self.held_rows = self.held, [], 0
        self._write_batch(take)

    def finish(self) -> list[str]:
        with self._hold:
            take, self.held, self.held_rows = self.held, [], 0
        if take:
            self._write_batch(take)
        self._compact_disk()
        return self.written

    def _write_batch(self, items: list[tuple[str, dict[str, pl.DataFrame]]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        items = sorted(items, key=lambda it: it[0])  # the same batch holds its rows in the same order
        shards = [sh for sh, _ in items]
        batch = "b" + hashlib.sha256("\n".join(shards).encode()).hexdigest()[:16]
        by_occ: dict[str, list[pl.DataFrame]] = {}
        for _, parts in items:
            for occ, df in parts.items():
                by_occ.setdefault(occ, []).append(df)

        def write(occ: str) -> int:
            df = pl.concat(by_occ[occ], how="diagonal_relaxed") if len(by_occ[occ]) > 1 else by_occ[occ][0]
            with atomic_path(self.mdir / f"occupation={slug(occ)}" / f"part-{batch}.parquet") as tmp:
                df.write_parquet(tmp, compression="lz4", statistics=False)
            return df.height

        with self._write:  # one batch at a time, its files written by all cores
            # two threads per core: a small file's opening, writing and renaming overlap the
            # encoding of another (measured: 0.17-0.20 s instead of 0.22-0.26 s for the
            # 538,156 rows of the benchmark's last batch, 89 files)
            with ThreadPoolExecutor(2 * self.workers) as pool:
                rows = sum(pool.map(write, sorted(by_occ)))
            atomic_write_json({"shards": shards, "rows": rows}, self.out / COMPACTED / f"{batch}.json")
            for sh in shards:
                (self.mdir / STAGED / f"part-{sh}.arrow").unlink(missing_ok=True)
            self.written.append(batch)

    def _compact_disk(self) -> None:
        """Staged files on disk (committed input files not compacted yet), in batches."""
        _tidy(self.out)
        done = _markers(self.out)
        staged = sorted(f for f in self.mdir.glob(f"{STAGED}/part-*.arrow") if _part_key(f) in done)
        group, rows = [], 0
        for i, f in enumerate(staged):
            group.append(f)
            rows += int(done[_part_key(f)].get("mention_rows") or 0)
            if rows >= self.batch_rows or i == len(staged) - 1:
                self._write_batch([(_part_key(g), _by_occupation(pl.read_ipc(g))) for g in group])
                group, rows = [], 0


def compact(out: str | Path, *, batch_rows: int = COMPACT_ROWS, workers: int | None = None) -> list[str]:
    """Compact the staged mentions of an output folder (see `Compactor`); returns the
    batch ids written."""
    return Compactor(Path(out), batch_rows=batch_rows, workers=workers).finish()


def query_corpus(
    corpus: list[str] | str,
    out: str | Path,
    *,
    occupations: str | Path | list[str] | None = None,
    lexicon: str | Path = "paper",
    names: str | None = "auto",
    synonyms: bool = False,
    text_column: str | None = None,
    url_column: str | None = None,
    id_column: str | None = None,
    keep: tuple[str, ...] | list[str] = (),
    skip_bad_files: bool = False,
    partition: str = "occupation",
    overwrite: bool = False,
    progress: bool = True,
    matcher: CaptionMatcher | None = None,
    workers: int | None = None,
    prefilter: str = "auto",
    exact: str = "auto",
) -> QueryResult:
    """Find every caption that mentions an occupation, with its gender indicators.

    Writes `out/mentions` (see module doc), `out/files.parquet`, `out/stats.parquet` and
    returns them. Resumes a previous run into the same `out` with the same settings;
    `overwrite=True` starts afresh. `names`: "auto" | "capitalised" | "spacy" | None (off).
    `workers` input files are read at once (default: one per CPU core); each is itself
    scanned by Polars on all cores. `prefilter`: "auto" | "hyperscan" | "regex"
    (`biasamp.corpus.prefilter`); `exact`: "auto" | "native" | "polars" (the exact stage:
    `biasamp.corpus.kernels` for ASCII captions, or Polars for all). The result is the
    same, only the speed differs.
    """
    from biasamp import ui

    if partition not in PARTITIONS:
        raise BiasampError(f"unknown partition {partition!r}", hint=f"one of {', '.join(PARTITIONS)}")
    out = Path(out)
    files = resolve_inputs(corpus)
    matcher = matcher or make_matcher(occupations, lexicon, names, synonyms, prefilter, exact)
    discard: tuple[str, ...] = ()
    params = {
        "corpus": [str(c) for c in ([corpus] if isinstance(corpus, str) else corpus)],
        "occupations": str(occupations) if occupations is not None and not isinstance(occupations, list) else occupations,
        "lexicon": str(lexicon),
        "names": matcher.names_backend,
        "synonyms": synonyms,
        "text_column": text_column, "url_column": url_column, "id_column": id_column,
        "keep": list(keep), "partition": partition, "skip_bad_files": skip_bad_files,
    }
    manifest = out / "query.manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        same = old.get("matcher", {}).get("fingerprint") == matcher.fingerprint() and old.get("params", {}).get("partition") == partition and old.get("params", {}).get("keep", []) == list(keep)
        if not same and not overwrite:
            raise BiasampError(
                f"{out} holds a query run with other settings (occupations, lexicon, names, keep or partition)",
                hint="use another --out folder, or --overwrite to replace it",
            )
        if overwrite:
            discard = ("mentions", "_progress", COMPACTED)
            for f in ("files.parquet", "stats.parquet"):
                (out / f).unlink(missing_ok=True)
    elif overwrite:
        discard = ("mentions", "_progress", COMPACTED)
    # the old run's folders moved aside at once, deleted in the background (with leftovers)
    cleaner = _discard(out, discard) if out.is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, "query", params, extra={"matcher": matcher.describe(), "inputs": len(files)})
    mdir = out / "mentions"
    mdir.mkdir(exist_ok=True)
    _tidy(out)
    (mdir / "part-empty.parquet").unlink(missing_ok=True)
    done = _markers(out)
    shards = {f: shard_id(f) for f in files}
    todo = [f for f in files if shards[f] not in done or done[shards[f]].get("status") != "ok"]
    def work(f: str):
        sh = shards[f]
        for p in _parts_of(mdir, sh):  # leftovers of a killed run
            p.unlink()
        (out / "_progress" / f"{sh}.json").unlink(missing_ok=True)
        base = {"source": f, "shard": sh}
        try:
            cf = CorpusFile(f, text_column, url_column, id_column, tuple(keep))
            base["format"] = cf.format
            mentions, info = process_file(cf, matcher, tuple(keep))
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - every reading error is reported with the file
            err = _bad_file(f, e)
            if not skip_bad_files:
                raise err from None
            _commit(out, sh, pl.DataFrame(), {**base, "status": "skipped", "error": str(err)}, "skip")
            return
        _commit(out, sh, mentions, {**base, "status": "ok", **info}, partition)
        if compactor is not None:
            compactor.add(sh, mentions)

    compactor = Compactor(out, workers=workers) if partition == "occupation" else None
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with ui.progress("query captions (files)", total=len(files), enabled=progress) as advance:
        advance(len(files) - len(todo))
        if n_workers == 1:
            for f in todo:
                work(f)
                advance()
        else:
            from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

            with ThreadPoolExecutor(n_workers) as pool:
                futures = [pool.submit(work, f) for f in todo]
                pending = set(futures)
                while pending:  # the progress bar moves as each file is done
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        if fut.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise fut.exception()
                        advance()
    if compactor is not None:
        compactor.finish()
    markers = _markers(out)
    files_df = files_table(out, markers=markers)  # every committed input file of this folder, this run's and earlier ones
    if not any(mdir.rglob("*.parquet")):
        atomic_write_parquet(_empty_mentions(matcher), mdir / "part-empty.parquet")
    atomic_write_parquet(files_df, out / "files.parquet")
    stats = marker_stats(out, files_df, markers=markers)
    if stats is None:  # markers of an older version without counts: count the mentions
        stats = mention_stats(scan_mentions(out), files_df)
    atomic_write_parquet(stats, out / "stats.parquet")
    if cleaner is not None:
        cleaner.join()
    return QueryResult(out, files_df, stats)


def _empty_mentions(matcher: CaptionMatcher) -> pl.DataFrame:
    return query_batch(pl.DataFrame({"text": pl.Series([], dtype=pl.Utf8)}), matcher)


def files_table(out: str | Path, only: set[str] | None = None, markers: dict[str, dict] | None = None) -> pl.DataFrame:
    markers = _markers(Path(out)) if markers is None else markers
    rows = [m for sh, m in markers.items() if only is None or sh in only]
    if not rows:
        return pl.DataFrame(schema=FILES_SCHEMA)
    return pl.DataFrame([{k: r.get(k) for k in FILES_SCHEMA} for r in rows], schema=FILES_SCHEMA).sort("source")


def _mentions_dir(path: str | Path) -> tuple[Path, Path | None]:
    p = Path(path)
    if (p / "mentions").is_dir():
        return p / "mentions", p
    if p.name == "mentions" and (p.parent / "_progress").is_dir():
        return p, p.parent
    return p, None


def _committed_files(path: str | Path) -> tuple[Path, list[Path]]:
    mdir, out = _mentions_dir(path)
    if not mdir.is_dir():
        raise BiasampError(f"no mentions folder at {path}", hint="run `biasamp captions query … --out DIR` first")
    files = sorted(mdir.rglob("*.parquet"))  # a mentions folder on its own: its Parquet parts
    if out is not None:
        files += sorted(mdir.glob(f"{STAGED}/part-*.arrow"))
        # committed: a compacted batch's files, staged or per-file parts of input files with
        # a progress marker whose rows are not in a compacted batch yet
        batches = _batches(out)
        compacted = {sh for b in batches.values() for sh in b}
        ok = set(_markers(out)) - compacted
        files = [f for f in files if f.name == "part-empty.parquet" or _part_key(f) in ok or _part_key(f) in batches]
    return mdir, files


def scan_mentions(path: str | Path, columns: tuple[str, ...] = ("caption_id", "occupation", "indicator")) -> pl.LazyFrame:
    """A lazy scan of some columns of the committed mentions (bounded memory for stats)."""
    _, files = _committed_files(path)
    if not files:
        return tables.MENTIONS.empty().select(columns).lazy()
    pq = [f for f in files if f.suffix == ".parquet"]
    ipc = [f for f in files if f.suffix == ".arrow"]
    scans = ([pl.scan_parquet(pq, hive_partitioning=False).select(columns)] if pq else []) + [pl.scan_ipc(f).select(columns) for f in ipc]
    return pl.concat(scans, how="vertical_relaxed")


def _read_part(f: Path) -> pl.DataFrame:
    return pl.read_ipc(f) if f.suffix == ".arrow" else pl.read_parquet(f, hive_partitioning=False)


def read_mentions(path: str | Path, occupations: list[str] | None = None) -> pl.DataFrame:
    """The `mentions` table of a query output folder (or its `mentions` folder), validated.

    Only parts of committed input files are read (an interrupted run's leftovers are not).
    """
    mdir, files = _committed_files(path)
    if occupations is not None:
        want = {slug(o) for o in occupations}
        files = [f for f in files if not f.parent.name.startswith("occupation=") or f.parent.name.split("=", 1)[1] in want]
    if not files:
        return tables.validate(tables.MENTIONS.empty(), "mentions", source=mdir)
    df = pl.concat([_read_part(f) for f in files], how="diagonal_relaxed")
    if occupations is not None:
        df = df.filter(pl.col("occupation").is_in(list(occupations)))
    return tables.validate(df, "mentions", source=mdir)


def marker_stats(out: str | Path, files: pl.DataFrame, markers: dict[str, dict] | None = None) -> pl.DataFrame | None:
    """`mention_stats` from the per-file counts in the progress markers (None if a marker
    has none)."""
    rows: dict[tuple[str, str], int] = {}
    for m in (_markers(Path(out)) if markers is None else markers).values():
        if m.get("status") != "ok":
            continue
        if "counts" not in m:
            return None
        for occ, by in m["counts"].items():
            for ind, n in by.items():
                rows[(occ, ind)] = rows.get((occ, ind), 0) + n
    counts = pl.DataFrame(
        [(o, i, n) for (o, i), n in rows.items()],
        schema={"occupation": pl.Utf8, "indicator": pl.Utf8, "n": pl.Int64}, orient="row",
    )
    return mention_stats(counts, files, weight="n")


def mention_stats(mentions: pl.DataFrame | pl.LazyFrame, files: pl.DataFrame | None = None, weight: str | None = None) -> pl.DataFrame:
    """Per occupation: captions, counts by indicator, indicator rate, male/female shares.

    - `indicator_rate` = captions with any gender indicator / captions;
    - `male_share`, `female_share` = male (female) / (male + female), i.e. among captions
      whose indicators point one way only ("both" and "none" excluded); null when 0;
    - `per_million` = captions per million captions scanned (non-null texts of ok files).
    """
    c = pl.col("indicator")
    lf = mentions.lazy()
    if weight is None:  # one row per mention
        lf = lf.with_columns(pl.lit(1, dtype=pl.Int64).alias("_n"))
    w = pl.col(weight or "_n")
    g = lf.group_by("occupation").agg(
        w.sum().cast(pl.Int64).alias("captions"),
        *[w.filter(c == k).sum().cast(pl.Int64).alias(k) for k in ("male", "female", "both", "none")],
    ).collect(engine="streaming")
    one_way = pl.col("male") + pl.col("female")
    scanned = None
    if files is not None and files.height:
        ok = files.filter(pl.col("status") == "ok")
        scanned = int((ok["rows"].sum() or 0) - (ok["null_text"].sum() or 0))
    g = g.with_columns(
        ((pl.col("captions") - pl.col("none")) / pl.col("captions")).alias("indicator_rate"),
        pl.when(one_way > 0).then(pl.col("male") / one_way).otherwise(None).alias("male_share"),
        pl.when(one_way > 0).then(pl.col("female") / one_way).otherwise(None).alias("female_share"),
        (pl.col("captions") * 1e6 / scanned if scanned else pl.lit(None, dtype=pl.Float64)).alias("per_million"),
    )
    return g.sort("captions", "occupation", descending=[True, False])


@dataclass
class CorpusStats:
    occupations: pl.DataFrame
    files: pl.DataFrame
    totals: dict


def corpus_stats(out: str | Path) -> CorpusStats:
    """Statistics of a query output folder, recomputed from its mentions and file markers."""
    mdir, root = _mentions_dir(out)
    if root is None:
        raise BiasampError(f"{out} is not a query output folder (no mentions/ and _progress/)", hint="give the --out folder of `biasamp captions query`")
    files = files_table(root)
    mentions = scan_mentions(root)
    stats = mention_stats(mentions, files)
    matched = mentions.select(pl.len().alias("rows"), pl.col("caption_id").n_unique().alias("ids")).collect(engine="streaming")
    ok = files.filter(pl.col("status") == "ok")
    totals = {
        "files": files.height,
        "files_skipped": int((files["status"] == "skipped").sum()),
        "captions_scanned": int(ok["rows"].sum() or 0),
        "null_text": int(ok["null_text"].sum() or 0),
        "empty_text": int(ok["empty_text"].sum() or 0),
        "non_utf8": int(ok["non_utf8"].sum() or 0),
        "captions_matched": int(ok["captions_matched"].sum() or 0),
        "distinct_caption_ids": int(matched["ids"][0]) if matched["rows"][0] else 0,
        "mention_rows": int(matched["rows"][0]),
    }
    return CorpusStats(stats, files, totals)
