"""CLI: `biasamp fetch`, `biasamp attrition`, `biasamp compare-embedding-labels`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("fetch")
    def fetch_cmd(
        selection: Path = typer.Argument(..., help="selection table (parquet/csv/jsonl)"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (images, downloads.parquet)"),
        source: str = typer.Option("download", "--source", help="download | local | embeddings"),
        # download
        timeout: float = typer.Option(10, help="[download] seconds allowed per socket operation"),
        deadline: Optional[float] = typer.Option(None, help="[download] seconds allowed for one try of a URL in all (default 3 × timeout)"),
        retries: int = typer.Option(0, help="[download] extra tries per URL"),
        processes: int = typer.Option(1, help="[download] img2dataset processes"),
        threads: int = typer.Option(64, help="[download] download threads per process"),
        output_format: str = typer.Option("webdataset", "--format", help="[download] webdataset (tar shards) | files"),
        image_size: Optional[int] = typer.Option(None, help="[download] resize to this size (default: keep the original bytes)"),
        resize_mode: str = typer.Option("keep_ratio", help="[download] img2dataset resize mode when --image-size is set"),
        samples_per_shard: int = typer.Option(1000, help="[download] captions per shard"),
        retry_failed: bool = typer.Option(False, help="[download] try again captions that failed with timeout / http_error / error"),
        allow_noai: bool = typer.Option(False, help="[download] ignore X-Robots-Tag: noai (default: respect it)"),
        user_agent_token: Optional[str] = typer.Option(None, help="[download] token added to the User-Agent"),
        min_image_size: int = typer.Option(64, help="[download, local] minimum shorter side in pixels"),
        # local
        store: Optional[Path] = typer.Option(None, help="[local] img2dataset output folder, or index file / folder with index.*"),
        id_column: Optional[str] = typer.Option(None, help="[local, embeddings] column holding caption ids"),
        path_column: Optional[str] = typer.Option(None, help="[local] index column holding image paths"),
        # embeddings
        embeddings: Optional[Path] = typer.Option(None, help="[embeddings] folder with img_emb_*.npy and metadata_*.parquet"),
        clip_model: Optional[str] = typer.Option(None, help="[embeddings] CLIP model folder for the class texts"),
        text_embeddings: Optional[Path] = typer.Option(None, help="[embeddings] .npy of class text embeddings (rows: man, woman)"),
        logit_scale: Optional[float] = typer.Option(None, help="[embeddings] softmax scale (default: the model's, or 100)"),
        threshold: float = typer.Option(0.9, help="[embeddings] P(female) ≥ t → female, ≤ 1−t → male"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    ) -> None:
        """Get the selected captions' training images (resumable) and write OUT/downloads.parquet."""
        from biasamp.errors import BiasampError
        from biasamp.images.fetch import fetch_training_images
        from biasamp.ui import console, print_table

        if source == "download":
            opts = dict(
                timeout=timeout,
                deadline=deadline,
                retries=retries,
                processes=processes,
                threads=threads,
                output_format=output_format,
                image_size=image_size,
                resize_mode=resize_mode,
                samples_per_shard=samples_per_shard,
                retry_failed=retry_failed,
                min_image_size=min_image_size,
                user_agent_token=user_agent_token,
                disallowed_header_directives=[] if allow_noai else None,
            )
        elif source == "local":
            if store is None:
                raise BiasampError("--source local needs --store", hint="pass the image store folder or index file")
            opts = dict(store=store, id_column=id_column, path_column=path_column, min_image_size=min_image_size)
        elif source == "embeddings":
            if embeddings is None:
                raise BiasampError("--source embeddings needs --embeddings FOLDER")
            opts = dict(
                embeddings=embeddings,
                clip_model=clip_model,
                text_embeddings=text_embeddings,
                logit_scale=logit_scale,
                threshold=threshold,
                id_column=id_column,
            )
        else:
            opts = {}
        res = fetch_training_images(selection, out, source=source, show_progress=not quiet, **opts)
        print_table(res.status_counts(), title=f"{len(res.downloads)} captions")
        console.print(f"downloads table: {out / 'downloads.parquet'}")
        if res.labels is not None:
            print_table(res.labels.group_by("label").len("n").sort("label"), title="labels")
            console.print(f"labels table: {out / 'labels.parquet'} (no face filter: see docs/fetch.md)")

    @app.command("attrition")
    def attrition_cmd(
        selection: Path = typer.Argument(..., help="selection table"),
        downloads: Path = typer.Option(..., "--downloads", help="downloads table written by `biasamp fetch`"),
        labels: Optional[Path] = typer.Option(None, "--labels", help="labels table of the training images"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write attrition.parquet"),
        stage: str = typer.Option("decoded", help="step whose losses are tested: downloaded | decoded | face_ok | confident"),
        min_gap: float = typer.Option(0.10, help="flag an occupation only if its retention differs by at least this"),
        alpha: float = typer.Option(0.05, help="significance level (Benjamini–Hochberg within a condition)"),
    ) -> None:
        """Per condition and occupation: selected → downloaded → decoded → face filter → confident, with differential-loss flags."""
        from biasamp.images.attrition import attrition_table
        from biasamp.images.schema import DOWNLOADS
        from biasamp.store import atomic_write_parquet
        from biasamp.tables import read_table
        from biasamp.ui import console, print_table

        sel = read_table(selection, "selection")
        dl = read_table(downloads, DOWNLOADS)
        lab = read_table(labels, "labels") if labels is not None else None
        table = attrition_table(sel, dl, lab, stage=stage, min_gap=min_gap, alpha=alpha)
        target = out if out is not None else downloads.parent / "attrition.parquet"
        if target.suffix != ".parquet":
            target = target / "attrition.parquet"
        atomic_write_parquet(table, target)
        cols = ["condition", "occupation", "selected", "downloaded", "decoded", "face_ok", "confident", "retained", "q_value", "flagged"]
        print_table(table.select([c for c in cols if c in table.columns]), title="attrition")
        console.print(f"attrition table: {target}")
        flagged = table.filter(table["flagged"].fill_null(False)) if "flagged" in table.columns else table.head(0)
        if len(flagged):
            console.print(f"[bold red]{len(flagged)} occupation(s) lose markedly more or fewer images than the others[/]")

    @app.command("compare-embedding-labels")
    def compare_cmd(
        embedding_labels: Path = typer.Argument(..., help="labels from --source embeddings"),
        image_labels: Path = typer.Argument(..., help="labels of the downloaded images (classify stage)"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for comparison.parquet and confusion.parquet"),
    ) -> None:
        """Agreement, Cohen's kappa and confusion of embedding-based vs image-based labels."""
        from biasamp.images.compare import compare_embedding_labels
        from biasamp.store import atomic_write_parquet
        from biasamp.tables import read_table
        from biasamp.ui import print_table

        res = compare_embedding_labels(read_table(embedding_labels, "labels"), read_table(image_labels, "labels"))
        print_table(res.summary, title="embedding vs image labels")
        print_table(res.confusion, title="confusion (rows: image label, columns: embedding label)")
        if out is not None:
            atomic_write_parquet(res.summary, Path(out) / "comparison.parquet")
            atomic_write_parquet(res.confusion, Path(out) / "confusion.parquet")
