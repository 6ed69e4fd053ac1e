"""The caption query over a whole corpus: files in, `mentions` + stats out, resumable.

Output folder layout (`out`):

    mentions/occupation=<slug>/part-<shard>.parquet   one file per (occupation, input file)
    mentions/part-<shard>.parquet                      with partition="shard" instead
    _progress/<shard>.json                             an input file is done (its counts)
    files.parquet                                      one row per input file (the skip list too)
    stats.parquet                                      per-occupation statistics
    query.manifest.json                                parameters, versions, matcher fingerprint

`<shard>` is the input file's base name plus a hash of its full path. An input file is
committed when its `_progress` marker is written (after its parts, each written
atomically); a re-run skips committed files and first deletes parts of uncommitted ones,
so a killed run resumes without duplicates. `read_mentions` reads committed parts only;
`biasamp.tables.read_table(out / "mentions", "mentions")` reads every part.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import mmh3
import polars as pl

from biasamp import tables
from biasamp.corpus.matcher import CaptionMatcher, query_batch
from biasamp.corpus.readers import CorpusFile, resolve_inputs
from biasamp.errors import BiasampError
from biasamp.store import atomic_path, atomic_write_json, atomic_write_parquet, write_manifest
from biasamp.vocab.lexicons import load_lexicon
from biasamp.vocab.occupations import load_occupations, slug

PARTITIONS = ("occupation", "shard")
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


def make_matcher(occupations=None, lexicon="paper", names="auto", synonyms=False) -> CaptionMatcher:
    occs = load_occupations(occupations, synonyms=synonyms)
    lex = load_lexicon(lexicon)
    return CaptionMatcher(occs, lex, names if names else None)


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
        text = pl.col("text")
        s = lf.select(text).collect()["text"]
        info["rows"] = s.len()
        info["null_text"] = s.null_count()
        nonempty = s.str.len_bytes() > 0
        info["empty_text"] = int(s.len() - info["null_text"] - (nonempty.sum() or 0))
        keep_mask = (nonempty & s.str.contains(matcher.prefilter_regex)).fill_null(False)
        idx = keep_mask.arg_true()
        info["candidates"] = idx.len()
        rest = lf.drop("text", "row").collect()
        cand_df = pl.concat(
            [idx.cast(pl.Int64).alias("row").to_frame(), s.gather(idx).to_frame("text"), rest[idx]], how="horizontal"
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
            cand = batch.filter(pl.col("text").is_not_null() & matcher.prefilter("text"))
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
    return mentions, info


def _commit(out: Path, shard: str, mentions: pl.DataFrame, info: dict, partition: str) -> None:
    mdir = out / "mentions"
    if partition == "skip":
        pass
    elif partition == "occupation":
        if mentions.height:
            # Many small files per input file: LZ4 without column statistics is the cheapest
            # write here (about 20% less CPU than the zstd default for the same rows).
            for (occ,), part in mentions.partition_by("occupation", as_dict=True, maintain_order=True).items():
                with atomic_path(mdir / f"occupation={slug(occ)}" / f"part-{shard}.parquet") as tmp:
                    part.write_parquet(tmp, compression="lz4", statistics=False)
    else:
        atomic_write_parquet(mentions, mdir / f"part-{shard}.parquet")
    atomic_write_json(info, out / "_progress" / f"{shard}.json")


def _parts_of(mdir: Path, shard: str) -> list[Path]:
    return list(mdir.glob(f"part-{shard}.parquet")) + list(mdir.glob(f"occupation=*/part-{shard}.parquet"))


def _markers(out: Path) -> dict[str, dict]:
    d = out / "_progress"
    if not d.exists():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}


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
) -> QueryResult:
    """Find every caption that mentions an occupation, with its gender indicators.

    Writes `out/mentions` (see module doc), `out/files.parquet`, `out/stats.parquet` and
    returns them. Resumes a previous run into the same `out` with the same settings;
    `overwrite=True` starts afresh. `names`: "auto" | "capitalised" | "spacy" | None (off).
    `workers` input files are read at once (default: one per CPU core); each is itself
    scanned by Polars on all cores.
    """
    from biasamp import ui

    if partition not in PARTITIONS:
        raise BiasampError(f"unknown partition {partition!r}", hint=f"one of {', '.join(PARTITIONS)}")
    out = Path(out)
    files = resolve_inputs(corpus)
    matcher = matcher or make_matcher(occupations, lexicon, names, synonyms)
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
            for sub in ("mentions", "_progress"):
                shutil.rmtree(out / sub, ignore_errors=True)
            for f in ("files.parquet", "stats.parquet"):
                (out / f).unlink(missing_ok=True)
    elif overwrite:
        shutil.rmtree(out / "mentions", ignore_errors=True)
        shutil.rmtree(out / "_progress", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, "query", params, extra={"matcher": matcher.describe(), "inputs": len(files)})
    mdir = out / "mentions"
    mdir.mkdir(exist_ok=True)
    for tmp in list(mdir.rglob(".*.tmp")):
        tmp.unlink(missing_ok=True)
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

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with ui.progress("query captions (files)", total=len(files), enabled=progress) as advance:
        advance(len(files) - len(todo))
        if n_workers == 1:
            for f in todo:
                work(f)
                advance()
        else:
            from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

            with ThreadPoolExecutor(n_workers) as pool:
                futures = [pool.submit(work, f) for f in todo]
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in finished:
                        if fut.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise fut.exception()
                        advance()
    files_df = files_table(out)  # every committed input file of this folder, this run's and earlier ones
    if not any(mdir.rglob("*.parquet")):
        atomic_write_parquet(_empty_mentions(matcher), mdir / "part-empty.parquet")
    atomic_write_parquet(files_df, out / "files.parquet")
    stats = mention_stats(scan_mentions(out), files_df)
    atomic_write_parquet(stats, out / "stats.parquet")
    return QueryResult(out, files_df, stats)


def _empty_mentions(matcher: CaptionMatcher) -> pl.DataFrame:
    return query_batch(pl.DataFrame({"text": pl.Series([], dtype=pl.Utf8)}), matcher)


def files_table(out: str | Path, only: set[str] | None = None) -> pl.DataFrame:
    rows = [m for sh, m in _markers(Path(out)).items() if only is None or sh in only]
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
    files = sorted(mdir.rglob("*.parquet"))
    if out is not None:
        ok = set(_markers(out))
        files = [f for f in files if f.name == "part-empty.parquet" or f.stem[len("part-"):] in ok]
    return mdir, files


def scan_mentions(path: str | Path, columns: tuple[str, ...] = ("caption_id", "occupation", "indicator")) -> pl.LazyFrame:
    """A lazy scan of some columns of the committed mentions (bounded memory for stats)."""
    _, files = _committed_files(path)
    if not files:
        return tables.MENTIONS.empty().select(columns).lazy()
    return pl.scan_parquet(files, hive_partitioning=False).select(columns)


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
    df = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal_relaxed")
    if occupations is not None:
        df = df.filter(pl.col("occupation").is_in(list(occupations)))
    return tables.validate(df, "mentions", source=mdir)


def mention_stats(mentions: pl.DataFrame | pl.LazyFrame, files: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per occupation: captions, counts by indicator, indicator rate, male/female shares.

    - `indicator_rate` = captions with any gender indicator / captions;
    - `male_share`, `female_share` = male (female) / (male + female), i.e. among captions
      whose indicators point one way only ("both" and "none" excluded); null when 0;
    - `per_million` = captions per million captions scanned (non-null texts of ok files).
    """
    c = pl.col("indicator")
    g = mentions.lazy().group_by("occupation").agg(
        pl.len().cast(pl.Int64).alias("captions"),
        (c == "male").sum().cast(pl.Int64).alias("male"),
        (c == "female").sum().cast(pl.Int64).alias("female"),
        (c == "both").sum().cast(pl.Int64).alias("both"),
        (c == "none").sum().cast(pl.Int64).alias("none"),
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
