"""`fetch_training_images`: one entry point over the image sources (registry `SOURCES`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError
from biasamp.registry import Registry, lazy
from biasamp.tables import read_table, validate

#: Image sources by name. Each factory takes (selection, out, **options) and returns
#: (downloads, stats) or (downloads, labels, stats).
SOURCES: Registry = Registry("image source")
SOURCES.register("download", lazy("biasamp.images.download", "fetch_download"), doc="download URLs with img2dataset")
SOURCES.register("local", lazy("biasamp.images.local", "fetch_local"), doc="an image store already on disk")
SOURCES.register(
    "embeddings",
    lazy("biasamp.images.embeddings", "fetch_embeddings"),
    doc="LAION's precomputed CLIP image embeddings, zero-shot labels (no face filter)",
)

DOWNLOADS_FILE = "downloads.parquet"
LABELS_FILE = "labels.parquet"


@dataclass
class FetchResult:
    downloads: pl.DataFrame
    out: Path
    source: str
    labels: pl.DataFrame | None = None  # the embeddings source labels without images
    stats: dict = field(default_factory=dict)

    def status_counts(self) -> pl.DataFrame:
        return self.downloads.group_by("status").len("n").sort("n", descending=True)


def fetch_training_images(
    selection: pl.DataFrame | str | Path,
    out: str | Path,
    *,
    source: str = "download",
    show_progress: bool = False,
    **options,
) -> FetchResult:
    """Get the training images of a selection from `source`; write `downloads.parquet`
    (and `labels.parquet` for the embeddings source) in `out`; resumable.

    Options are the chosen source's keyword arguments (see docs/fetch.md).
    """
    from biasamp.images.schema import DOWNLOADS
    from biasamp.store import atomic_write_parquet, write_manifest

    if isinstance(selection, (str, Path)):
        selection = read_table(selection, "selection")
    else:
        selection = validate(selection, "selection")
    if selection["caption_id"].null_count():
        rows = selection.with_row_index("_row", offset=1).filter(pl.col("caption_id").is_null())["_row"].head(3).to_list()
        raise BiasampError(
            f"selection: caption_id is empty at data rows {rows} (counted from 1)",
            hint="every selected caption needs its caption_id (see docs/tables.md)",
        )
    factory = SOURCES.get(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        res = factory(selection, out, show_progress=show_progress, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise BiasampError(f"source {source!r}: {e}", hint="see docs/fetch.md for each source's options") from None
        raise
    labels = None
    if len(res) == 3:
        downloads, labels, stats = res
    else:
        downloads, stats = res
    downloads = validate(downloads, DOWNLOADS)
    atomic_write_parquet(downloads, out / DOWNLOADS_FILE)
    if labels is not None:
        atomic_write_parquet(labels, out / LABELS_FILE)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if not hasattr(v, "shape")}
    write_manifest(
        out,
        "fetch",
        {"source": source, **params},
        extra={"stats": stats, "n_captions": len(downloads), "status": dict(downloads["status"].value_counts().iter_rows())},
    )
    return FetchResult(downloads=downloads, out=out, source=source, labels=labels, stats=stats)
