"""CLI: `biasamp select` (training-example selection) and `biasamp embed` (precompute vectors)."""

from __future__ import annotations

from pathlib import Path

import typer


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _occupations(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    p = Path(spec)
    if p.is_file():
        return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    return [x.strip() for x in spec.split(",") if x.strip()]


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select_cmd(
        mentions: Path = typer.Argument(..., help="mentions table: Parquet file or folder, CSV or JSONL"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (selection.parquet, diagnostics/)"),
        strategy: list[str] = typer.Option(None, "--strategy", "-s", help="condition(s), repeat or comma-separate; default: all five"),
        n: int = typer.Option(100, "--n", help="captions sampled per occupation (keyword, no-indicators)"),
        k: int = typer.Option(100, "--k", help="nearest captions per occupation and template"),
        templates: str = typer.Option("study", "--templates", "-t", help="template ids, set names, a text with {a} {occupation}, or a file"),
        occupations: str = typer.Option(None, "--occupations", help="comma-separated list or a file (one per line); default: all in MENTIONS"),
        embedder: str = typer.Option("minilm", "--embedder", "-e", help="minilm, sentence-transformers, clip-text, precomputed, or none"),
        model: str = typer.Option(None, "--model", "-m", help="model id or folder (precomputed: the shards folder)"),
        query_embedder: str = typer.Option("minilm", "--query-embedder", help="precomputed only: embedder for prompts and unseen captions"),
        query_model: str = typer.Option(None, "--query-model", help="precomputed only: its model"),
        cache_dir: Path = typer.Option(None, "--cache-dir", help="embedding cache (default OUT/embedding-cache)"),
        no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the embedding cache"),
        seed: int = typer.Option(0, "--seed", help="sampling seed"),
        pool_by: str = typer.Option("mean", "--pool-by", help="pooled nearest: mean or max similarity over templates"),
        index: str = typer.Option("exact", "--index", help="exact, flat (FAISS kernel), ivf, hnsw or auto"),
        approx_threshold: int = typer.Option(5_000_000, "--approx-threshold", help="auto: candidate count above which IVF is used"),
        no_indicator_values: str = typer.Option("none", "--no-indicator-values", help="indicator values that count as 'no gender indicator'"),
        inspect_top: int = typer.Option(10, "--inspect-top", help="neighbours kept per prompt in diagnostics/neighbours (0: none)"),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda/gpu"),
        batch_size: int = typer.Option(64, "--batch-size", help="texts per model batch"),
    ) -> None:
        """Choose the training captions that stand for each occupation, per condition."""
        import polars as pl

        from biasamp import ui
        from biasamp.select.core import select_training_examples

        emb = None if embedder == "none" else embedder
        if emb == "precomputed":
            from biasamp.select.embedders import make_embedder

            emb = make_embedder("precomputed", model, query=query_embedder, query_model=query_model, device=device, batch_size=batch_size)
        result = select_training_examples(
            mentions, strategies=_split(strategy), n=n, k=k, templates=templates,
            occupations=_occupations(occupations), embedder=emb, model=model if isinstance(emb, str) else None,
            cache_dir=None if no_cache else (cache_dir or out / "embedding-cache"), seed=seed, pool_by=pool_by,
            index=index, approx_threshold=approx_threshold,
            no_indicator_values=[v.strip() for v in no_indicator_values.split(",") if v.strip()],
            inspect_top=inspect_top, device=device, batch_size=batch_size,
        )
        paths = result.write(out)
        summary = result.pools.group_by("condition", maintain_order=True).agg(
            pl.col("occupation").n_unique().alias("occupations"),
            (pl.col("flag") != "ok").sum().alias("flagged"),
        )
        rows = result.selection.group_by("condition").agg(
            pl.len().alias("rows"), pl.col("caption_id").n_unique().alias("distinct captions"))
        summary = summary.join(rows, on="condition", how="left").select(
            "condition", "occupations", "rows", "distinct captions", "flagged").fill_null(0)
        ui.print_table(summary, title=f"selection written to {paths['selection']}")
        for msg in result.messages():
            ui.err_console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    @app.command("embed")
    def embed_cmd(
        table: Path = typer.Argument(..., help="a table with a text column (mentions, or any Parquet/CSV/JSONL)"),
        out: Path = typer.Option(..., "--out", "-o", help="folder for emb_N.npy + emb_N.parquet shards"),
        embedder: str = typer.Option("minilm", "--embedder", "-e", help="minilm, sentence-transformers or clip-text"),
        model: str = typer.Option(None, "--model", "-m", help="model id or folder"),
        text_column: str = typer.Option("text", "--text-column", help="column holding the texts"),
        id_column: str = typer.Option("caption_id", "--id-column", help="column of ids kept beside the texts (if present)"),
        shard_rows: int = typer.Option(100_000, "--shard-rows", help="texts per shard"),
        cache_dir: Path = typer.Option(None, "--cache-dir", help="embedding cache folder (optional)"),
        device: str = typer.Option("auto", "--device"),
        batch_size: int = typer.Option(64, "--batch-size"),
    ) -> None:
        """Embed the distinct texts of a table into shards the `precomputed` embedder reads."""
        from biasamp import tables, ui
        from biasamp.errors import BiasampError
        from biasamp.select.embedders import embed_to_shards

        df = tables.read_table(table)
        if text_column not in df.columns:
            raise BiasampError(f"{table} has no column {text_column!r}; columns: {', '.join(df.columns)}", hint="name it with --text-column")
        ids = df[id_column].to_list() if id_column in df.columns else None
        shards = embed_to_shards(df[text_column].to_list(), out, embedder, model, ids=ids, shard_rows=shard_rows,
                                 cache_dir=cache_dir, device=device, batch_size=batch_size)
        ui.print_table(shards, title=f"embeddings written to {out}")
