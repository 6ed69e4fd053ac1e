"""`biasamp captions …`: query a caption corpus, show its statistics, make a synthetic one."""

from __future__ import annotations

from pathlib import Path

import typer


captions = typer.Typer(
    help="Caption corpora: find the captions that mention each occupation, with their gender words.",
    no_args_is_help=True,
)


@captions.command("query")
def query_cmd(
    corpus: list[str] = typer.Argument(..., help="Files, folders, globs or fsspec URLs (parquet, csv, tsv, jsonl, webdataset tar)."),
    out: Path = typer.Option(..., "--out", help="Output folder (mentions/, stats.parquet, files.parquet)."),
    occupations: str = typer.Option(None, "--occupations", help="Occupations file (one per line, variants after '|') or bundled list: default, fair-diffusion."),
    lexicon: str = typer.Option("paper", "--lexicon", help="Gender words: paper (the study's lists), extended, or a TOML file."),
    names: bool = typer.Option(True, "--names/--no-names", help="Count person first names as gender indicators."),
    names_backend: str = typer.Option("auto", "--names-backend", help="auto (spaCy if a model is installed, else capitalised), capitalised, spacy."),
    synonyms: bool = typer.Option(False, "--synonyms", help="Also match bundled synonyms (doctor ~ physician)."),
    text_column: str = typer.Option(None, "--text-column", help="Caption column (default: text, caption, … any case)."),
    url_column: str = typer.Option(None, "--url-column", help="URL column (default: url, any case)."),
    id_column: str = typer.Option(None, "--id-column", help="Caption id column (default: hash, any case)."),
    keep: list[str] = typer.Option([], "--keep", help="Extra input column to copy into mentions (repeatable)."),
    skip_bad_files: bool = typer.Option(False, "--skip-bad-files", help="Skip unreadable files and record them in files.parquet."),
    partition: str = typer.Option("occupation", "--partition", help="mentions layout: occupation (one folder each) or shard (one file per input file)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output with other settings."),
    workers: int = typer.Option(None, "--workers", help="Input files read at once (default: CPU cores)."),
    prefilter: str = typer.Option("auto", "--prefilter", help="Prefilter engine: auto (hyperscan where installed), hyperscan, regex. Same result, different speed."),
    exact: str = typer.Option("auto", "--exact", help="Exact-stage engine: auto (native where built), native, polars. Same result, different speed."),
) -> None:
    """Find every caption that mentions an occupation, tagged with its gender indicators."""
    from biasamp import ui
    from biasamp.corpus.query import query_corpus

    result = query_corpus(
        corpus, out, occupations=occupations, lexicon=lexicon, names=names_backend if names else None,
        synonyms=synonyms, text_column=text_column, url_column=url_column, id_column=id_column,
        keep=tuple(keep), skip_bad_files=skip_bad_files, partition=partition, overwrite=overwrite, workers=workers, prefilter=prefilter,
        exact=exact,
    )
    _print(result.stats, result.files)
    ui.console.print(f"mentions written to {result.mentions_dir}")


@captions.command("stats")
def stats_cmd(
    out: Path = typer.Argument(..., help="The --out folder of `biasamp captions query`."),
    rows: int = typer.Option(40, "--rows", help="Occupations to print."),
) -> None:
    """Per-occupation statistics of a query output: captions, indicators, male/female shares."""
    from biasamp.corpus.query import corpus_stats

    s = corpus_stats(out)
    _print(s.occupations, s.files, rows=rows)


def _print(stats, files, rows: int = 40) -> None:
    import polars as pl

    from biasamp import ui

    ui.print_table(
        stats.select("occupation", "captions", "male", "female", "both", "none", "indicator_rate", "male_share", "female_share", "per_million"),
        title="captions per occupation",
        max_rows=rows,
    )
    ok = files.filter(pl.col("status") == "ok")
    skipped = files.filter(pl.col("status") == "skipped")
    ui.console.print(
        f"{ok.height} file(s), {int(ok['rows'].sum() or 0):,} captions scanned "
        f"({int(ok['null_text'].sum() or 0):,} null, {int(ok['empty_text'].sum() or 0):,} empty, "
        f"{int(ok['non_utf8'].sum() or 0):,} not UTF-8), {int(ok['captions_matched'].sum() or 0):,} mention an occupation"
    )
    if skipped.height:
        ui.print_table(skipped.select("source", "error"), title=f"{skipped.height} file(s) skipped")


@captions.command("synthetic")
def synthetic_cmd(
    n: int = typer.Argument(..., help="Number of captions."),
    out: Path = typer.Option(..., "--out", help="Folder for part-*.parquet (LAION-2B-en columns + truth columns)."),
    seed: int = typer.Option(0, "--seed"),
    occupations: str = typer.Option(None, "--occupations", help="Occupations file or bundled list name."),
    occupation_rate: float = typer.Option(0.05, "--occupation-rate", help="Share of captions that mention an occupation."),
    rows_per_file: int = typer.Option(1_000_000, "--rows-per-file"),
) -> None:
    """Write a labelled SYNTHETIC caption corpus (generated text, for tests and demos)."""
    from biasamp import ui
    from biasamp.corpus.synthetic import make_corpus

    paths = make_corpus(n, seed=seed, occupations=occupations, occupation_rate=occupation_rate, out=out, rows_per_file=rows_per_file)
    ui.console.print(f"{n:,} synthetic captions in {len(paths)} file(s) under {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(captions, name="captions")
