"""Annotation tasks: a stratified, seeded sample of labelled images copied into a folder.

A task folder holds everything the annotation server needs and nothing it must not show::

    task.json          what the task is: seed, strata, label set, inputs, counts
    items.parquet      one row per image: key, item_id, image, source, occupation, condition,
                       label (the classifier's), p_female, band, stratum, stratum_size, weight, origin
    images/            the images, copied (tar members extracted) as images/<key>.<ext>
    annotations.jsonl  the append-only answers (written by the server)

Items are presented in `key` order, a seeded shuffle of the sample, so that images of one
occupation do not come in a row (which would give the occupation away).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.annotate.log import ANNOTATION_LABELS
from biasamp.errors import BiasampError
from biasamp.store import atomic_write_json, atomic_write_parquet
from biasamp.tables import read_table

TASK_FILE = "task.json"
ITEMS_FILE = "items.parquet"
IMAGES_DIR = "images"
LOG_FILE = "annotations.jsonl"
TASK_FORMAT = "biasamp-annotation-task"
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}
STRATA_COLUMNS = ("source", "occupation", "label", "band")


@dataclass(frozen=True)
class Task:
    """A loaded annotation task."""

    folder: Path
    meta: dict
    items: pl.DataFrame

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE


def band_labels(edges: tuple[float, ...]) -> list[str]:
    """Names of the confidence bands cut at `edges` (inside 0..1): '[0,0.1)', …, '[0.9,1]'."""
    cuts = [0.0, *edges, 1.0]
    return [f"[{lo:g},{hi:g}{']' if i == len(cuts) - 2 else ')'}" for i, (lo, hi) in enumerate(zip(cuts, cuts[1:]))]


def _check_edges(edges) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges)
    if any(not 0 < e < 1 for e in edges) or list(edges) != sorted(set(edges)):
        raise BiasampError(
            f"confidence band edges {list(edges)} must be increasing numbers strictly between 0 and 1",
            hint="e.g. --bands 0.1,0.5,0.9 (the default)",
        )
    return edges


def _band_expr(edges: tuple[float, ...]) -> pl.Expr:
    names = band_labels(edges)
    expr = pl.when(pl.col("p_female").is_null() | pl.col("p_female").is_nan()).then(pl.lit("none"))
    for e, name in zip(edges, names):
        expr = expr.when(pl.col("p_female") < e).then(pl.lit(name))
    return expr.otherwise(pl.lit(names[-1]))


def _allocate(sizes: list[int], n: int, allocation: str, rng: np.random.Generator) -> list[int]:
    """How many items to draw from each stratum: `n` in all, never more than a stratum holds."""
    sizes_a = np.asarray(sizes, dtype=np.int64)
    n = min(n, int(sizes_a.sum()))
    take = np.zeros(len(sizes_a), dtype=np.int64)
    if allocation == "proportional":
        share = sizes_a * n / max(1, sizes_a.sum())
        take = np.floor(share).astype(np.int64)
        rest = n - int(take.sum())
        # largest remainder, ties broken by a seeded order
        order = sorted(range(len(sizes_a)), key=lambda i: (-(share[i] - take[i]), rng.random()))
        for i in order[:rest]:
            take[i] += 1
        return take.tolist()
    # equal: fill level by level; when a level cannot be filled, a seeded draw picks the strata
    remaining = n
    while remaining > 0:
        open_ = np.flatnonzero(take < sizes_a)
        if len(open_) <= remaining:
            take[open_] += 1
            remaining -= len(open_)
        else:
            chosen = rng.choice(open_, size=remaining, replace=False)
            take[chosen] += 1
            remaining = 0
    return take.tolist()


def _resolve_image(ref: str, bases: list[Path]) -> tuple[Path, str | None] | None:
    """(file, tar member or None) for an image reference, or None when nothing is found."""
    if "::" in ref:
        path_part, member = ref.split("::", 1)
    else:
        path_part, member = ref, None
    p = Path(path_part).expanduser()
    candidates = [p] if p.is_absolute() else [b / p for b in bases]
    for c in candidates:
        if c.is_file():
            return c, member
    return None


def _read_labels(paths: list[Path], image_column: str) -> pl.DataFrame:
    frames = []
    seen: dict[str, Path] = {}
    for path in paths:
        df = read_table(path, "labels")
        if image_column not in df.columns:
            raise BiasampError(
                f"labels table {path} has no {image_column!r} column, so its images cannot be found; "
                f"columns found: {', '.join(df.columns)}",
                hint="add an image column (a path relative to the table's folder, an absolute path "
                "or 'shard.tar::member'), or name another column with --image-column (for labels of an "
                "image folder, whose item_id is the path inside it: --image-column item_id --image-root FOLDER)",
            )
        dup = df.filter(pl.col("item_id").is_duplicated())["item_id"].head(3).to_list()
        if dup:
            raise BiasampError(f"labels table {path}: item_id {dup} appear more than once", hint="item_id must be unique")
        for iid in df["item_id"].to_list():
            if iid in seen:
                raise BiasampError(
                    f"item_id {iid!r} is in both {seen[iid]} and {path}",
                    hint="the annotations are matched by item_id, so it must be unique across the tables sampled",
                )
            seen[iid] = path
        base = path if path.is_dir() else path.parent
        df = df.with_columns(
            pl.col(image_column).cast(pl.Utf8).alias("_image_ref"),
            pl.lit(str(path)).alias("labels_file"),
            pl.lit(str(base)).alias("_base"),
        )
        for col, default in (("source", "(none)"), ("occupation", "(none)"), ("condition", None)):
            if col not in df.columns:
                df = df.with_columns(pl.lit(default, dtype=pl.Utf8).alias(col))
        frames.append(df)
    return pl.concat(frames, how="diagonal_relaxed")


def sample_task(
    labels: str | Path | list[str | Path],
    out: str | Path,
    *,
    n: int = 200,
    seed: int = 0,
    bands: tuple[float, ...] | list[float] = (0.1, 0.5, 0.9),
    strata: tuple[str, ...] | list[str] = STRATA_COLUMNS,
    allocation: str = "equal",
    image_column: str = "image",
    image_root: str | Path | None = None,
    missing: str = "error",
    title: str | None = None,
) -> pl.DataFrame:
    """Draw a stratified sample of labelled images and write it as an annotation task folder.

    Strata are the combinations of `strata` (default: source, occupation, predicted label and
    confidence band of p_female, cut at `bands`). `allocation="equal"` gives every stratum the
    same number of items where it can (so rare strata such as 'female, low confidence' are
    seen); `"proportional"` follows the strata's sizes. Each item's `weight` is its stratum size
    over the number drawn from it (the inverse inclusion probability), for reweighting.
    The same inputs and seed give the same task. Returns the items table (also in items.parquet).
    """
    paths = [Path(p) for p in (labels if isinstance(labels, (list, tuple)) else [labels])]
    if not paths:
        raise BiasampError("no labels table given", hint="pass one or more labels tables (Parquet, CSV or JSONL)")
    if n < 1:
        raise BiasampError(f"--n must be at least 1 (got {n})")
    if allocation not in ("equal", "proportional"):
        raise BiasampError(f"unknown allocation {allocation!r}", hint="use 'equal' or 'proportional'")
    if missing not in ("error", "skip"):
        raise BiasampError(f"unknown missing-image policy {missing!r}", hint="use 'error' or 'skip'")
    edges = _check_edges(bands)
    strata = tuple(strata)
    bad = [s for s in strata if s not in STRATA_COLUMNS + ("condition",)]
    if bad:
        raise BiasampError(f"unknown stratum column(s) {bad}", hint=f"use some of {', '.join(STRATA_COLUMNS + ('condition',))}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BiasampError(
            f"{out} already exists and is not an empty folder",
            hint="write the task to a new folder (an existing task and its answers are never overwritten)",
        )

    df = _read_labels(paths, image_column)
    df = df.with_columns(_band_expr(edges).alias("band"))
    # a stable starting order, so the sample depends on the seed and the rows, not their order
    df = df.sort("source", "item_id")
    rng = np.random.default_rng(seed)

    key_cols = list(strata)
    df = df.with_columns(
        pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("(none)") for c in key_cols], separator=" | ").alias("stratum")
        if key_cols
        else pl.lit("all").alias("stratum")
    )
    groups = df.group_by("stratum", maintain_order=True).agg(pl.len().alias("size")).sort("stratum")
    take = _allocate(groups["size"].to_list(), n, allocation, rng)
    parts = df.partition_by("stratum", as_dict=True, maintain_order=True)
    picked = []
    for stratum, size, k in zip(groups["stratum"], groups["size"], take):
        if k == 0:
            continue
        rows = parts[(stratum,)]
        idx = np.sort(rng.choice(size, size=k, replace=False))
        picked.append(rows[idx.tolist()].with_columns(pl.lit(size).alias("stratum_size"), pl.lit(size / k).alias("weight")))
    sample = pl.concat(picked, how="vertical_relaxed")
    sample = sample[rng.permutation(len(sample)).tolist()]  # presentation order: no runs of one occupation

    # find every image before writing anything
    found: list[tuple[Path, str | None] | None] = []
    for ref, base in zip(sample["_image_ref"].to_list(), sample["_base"].to_list()):
        bases = [Path(image_root)] if image_root is not None else [Path(base), Path(base).parent]
        found.append(_resolve_image(ref, bases) if ref else None)
    lost = [i for i, f in enumerate(found) if f is None]
    if lost and missing == "error":
        show = ", ".join(f"{sample['item_id'][i]} ({sample['_image_ref'][i]!r})" for i in lost[:3])
        raise BiasampError(
            f"{len(lost)} sampled image(s) not found, e.g. {show}; looked beside the labels table and its parent folder",
            hint="pass --image-root FOLDER that image paths are relative to, or --missing skip to sample without them",
        )
    if lost:
        keep = [i for i in range(len(sample)) if found[i] is not None]
        sample, found = sample[keep], [found[i] for i in keep]
    if len(sample) == 0:
        raise BiasampError("the sample is empty: no sampled image was found", hint="check the image column and --image-root")

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / IMAGES_DIR).mkdir(parents=True)
    try:
        names = _copy_images(found, tmp / IMAGES_DIR)
        items = sample.with_columns(
            pl.Series("key", range(len(sample)), dtype=pl.Int64),
            pl.Series("image", [f"{IMAGES_DIR}/{nm}" for nm in names], dtype=pl.Utf8),
            pl.col("_image_ref").alias("origin"),
        )
        front = ["key", "item_id", "image", "source", "occupation", "condition", "label", "p_female", "band",
                 "stratum", "stratum_size", "weight", "origin", "labels_file"]
        rest = [c for c in items.columns if c not in front and not c.startswith("_") and c != image_column]
        items = items.select([c for c in front if c in items.columns] + rest)
        atomic_write_parquet(items, tmp / ITEMS_FILE)
        meta = {
            "format": TASK_FORMAT,
            "version": 1,
            "title": title or f"{len(items)} images",
            "seed": seed,
            "n_requested": n,
            "n_items": len(items),
            "n_missing_images_skipped": len(lost),
            "allocation": allocation,
            "bands": list(edges),
            "strata": list(strata),
            "n_strata": len(groups),
            "inputs": [str(p) for p in paths],
            "labels": [{"value": v, "text": t, "key": k} for v, t, k in ANNOTATION_LABELS],
        }
        atomic_write_json(meta, tmp / TASK_FILE)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return items


def _copy_images(found: list[tuple[Path, str | None]], dest: Path) -> list[str]:
    """Copy files and extract tar members to dest/<key>.<ext>; return the file names."""
    width = max(6, len(str(len(found))))
    names: list[str | None] = [None] * len(found)
    by_tar: dict[Path, list[int]] = {}
    for i, (path, member) in enumerate(found):
        if member is None:
            ext = path.suffix.lower() if path.suffix.lower() in IMAGE_TYPES else ".img"
            names[i] = f"{i:0{width}d}{ext}"
            shutil.copyfile(path, dest / names[i])
        else:
            by_tar.setdefault(path, []).append(i)
    for tar_path, idxs in by_tar.items():
        try:
            with tarfile.open(tar_path) as tf:
                for i in idxs:
                    member = found[i][1]
                    try:
                        fh = tf.extractfile(member)
                    except KeyError:
                        fh = None
                    if fh is None:
                        raise BiasampError(
                            f"tar shard {tar_path} has no file member {member!r}",
                            hint="check the image column ('shard.tar::member')",
                        )
                    ext = Path(member).suffix.lower()
                    names[i] = f"{i:0{width}d}{ext if ext in IMAGE_TYPES else '.img'}"
                    with fh, open(dest / names[i], "wb") as w:
                        shutil.copyfileobj(fh, w)
        except tarfile.TarError as e:
            raise BiasampError(f"cannot read tar shard {tar_path}: {e}") from None
    return names  # type: ignore[return-value]


def load_task(folder: str | Path) -> Task:
    """Read and check a task folder written by `sample_task`."""
    folder = Path(folder)
    meta_path = folder / TASK_FILE
    if not meta_path.is_file():
        raise BiasampError(
            f"{folder} is not an annotation task folder (no {TASK_FILE})",
            hint="make one with `biasamp annotate sample LABELS… --out DIR`",
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BiasampError(f"{meta_path} is not valid JSON: {e}") from None
    if meta.get("format") != TASK_FORMAT:
        raise BiasampError(f"{meta_path} is not a biasamp annotation task (format {meta.get('format')!r})")
    items = read_table(folder / ITEMS_FILE)
    need = ["key", "item_id", "image"]
    miss = [c for c in need if c not in items.columns]
    if miss:
        raise BiasampError(f"{folder / ITEMS_FILE} is missing column(s) {miss}")
    items = items.sort("key")
    if items["key"].to_list() != list(range(len(items))):
        raise BiasampError(f"{folder / ITEMS_FILE}: keys must run 0..{len(items) - 1} without gaps")
    return Task(folder=folder, meta=meta, items=items)


def describe_sample(items: pl.DataFrame) -> pl.DataFrame:
    """Counts drawn per stratum with the stratum sizes (for the CLI summary)."""
    return (
        items.group_by("stratum")
        .agg(pl.len().alias("n"), pl.col("stratum_size").first().alias("stratum_size"))
        .sort("stratum")
    )


