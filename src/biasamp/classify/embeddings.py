"""Image embeddings written by `classify --embeddings`: one `.npy` per shard + refs in labels.

The labels table carries `embedding_file` (relative to the classify output folder) and
`embedding_row`; `load_embeddings` returns the rows' vectors in table order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError


def _base_and_labels(path: str | Path) -> tuple[Path, pl.DataFrame]:
    """(classify output folder, its labels) from the folder, its labels/ or embeddings/
    folder, or a labels file inside it."""
    from .pipeline import read_labels

    p = Path(path)
    if not p.exists():
        raise BiasampError(f"not found: {p}", hint="pass a classify output folder written with --embeddings")
    if p.is_dir() and p.name in ("labels", "embeddings") and (p.parent / "labels").is_dir():
        p = p.parent
    if p.is_dir():
        return p, read_labels(p)
    base = p.parent.parent if p.parent.name == "labels" else p.parent
    return base, read_labels(p)


def load_embeddings(df: pl.DataFrame, base: str | Path) -> np.ndarray:
    """Vectors for the rows of `df` (NaN rows where an image had no embedding).

    One read per embeddings file, rows gathered at once; every file must hold vectors of
    one dimension (a labels folder mixing models is refused, naming the files)."""
    if "embedding_file" not in df.columns or "embedding_row" not in df.columns:
        raise BiasampError("the labels table has no embedding columns",
                           hint="run classify with --embeddings (CLIP) or --embed-model to save image embeddings")
    base = Path(base)
    refs = df.select(pl.col("embedding_file").cast(pl.Utf8), pl.col("embedding_row").cast(pl.Int64)).with_row_index("_i")
    refs = refs.filter(pl.col("embedding_file").is_not_null() & pl.col("embedding_row").is_not_null())
    if refs.is_empty():
        raise BiasampError("no row of the labels table has an embedding")
    out = None
    first_file = None
    for (f,), part in refs.group_by(["embedding_file"], maintain_order=True):
        fp = base / f
        if not fp.exists():
            raise BiasampError(f"embedding file {fp} is missing", hint="keep the embeddings/ folder beside labels/")
        arr = np.load(fp, allow_pickle=False)
        if arr.ndim != 2:
            raise BiasampError(f"embedding file {fp} holds an array of shape {arr.shape}, not one vector per row",
                               hint="delete it and its labels part, then classify again to redo that shard")
        rows = part["embedding_row"].to_numpy()
        if len(rows) and (rows.min() < 0 or rows.max() >= len(arr)):
            raise BiasampError(f"embedding file {fp} has {len(arr)} rows, but the labels table points at row {int(rows.max())}",
                               hint="the file and its labels part do not belong together: delete both and classify again")
        if out is None:
            out, first_file = np.full((len(df), arr.shape[1]), np.nan, np.float32), fp
        elif arr.shape[1] != out.shape[1]:
            raise BiasampError(f"embedding files of one labels table differ in dimension: {first_file} holds {out.shape[1]}, "
                               f"{fp} holds {arr.shape[1]}",
                               hint="the table mixes embeddings of two models: classify each model into its own --out")
        out[part["_i"].to_numpy()] = arr[rows]
    return out


def _manifest_model(base: Path) -> str | None:
    m = base / "classify.manifest.json"
    if not m.exists():
        return None
    params = json.loads(m.read_text()).get("params", {})
    return params.get("embed_model") or params.get("classifier_options", {}).get("model")


def load_labelled_embeddings(labelled, *, reference_column: str = "reference") -> tuple[pl.DataFrame, np.ndarray, str | None]:
    """(labels with reference, embeddings, embedding model) from classify output(s).

    `labelled` is a classify output folder whose labels already carry `reference`, or a
    pair (classify output folder, table with item_id + reference).
    """
    from biasamp.tables import read_table

    if isinstance(labelled, (list, tuple)) and len(labelled) == 2:
        base, df = _base_and_labels(labelled[0])
        ref = labelled[1] if isinstance(labelled[1], pl.DataFrame) else read_table(labelled[1])
        if reference_column not in ref.columns:
            if "label" in ref.columns:
                ref = ref.rename({"label": reference_column})
            else:
                raise BiasampError(f"reference table has no {reference_column!r} or 'label' column")
        df = df.drop([c for c in (reference_column,) if c in df.columns]).join(
            ref.select(pl.col("item_id").cast(pl.Utf8), reference_column), on="item_id", how="inner")
    else:
        base, df = _base_and_labels(labelled)
    if reference_column not in df.columns:
        raise BiasampError(f"labels have no {reference_column!r} column to train on",
                           hint="join the true labels (female|male) as a 'reference' column, or pass a reference table")
    model = None
    if "embedding_model" in df.columns and df["embedding_model"].drop_nulls().len():
        model = df["embedding_model"].drop_nulls()[0]
    return df, load_embeddings(df, base), model or _manifest_model(base)
