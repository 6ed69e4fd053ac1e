"""How alike are training and generated images? Mean pairwise cosine similarity of their
CLIP embeddings per (occupation, condition), with bootstrap confidence intervals.

For L2-normalised embeddings T (training) and G (generated), the mean over all pairs of
cos(t, g) is mean(T @ G.T). A bootstrap replicate resamples training and generated images
independently (with replacement) and recomputes that mean; the interval is the percentile
interval over replicates, each group with its own seeded generator.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError


def _within(x: np.ndarray) -> float | None:
    n = len(x)
    if n < 2:
        return None
    s = x.sum(0)
    return float((s @ s - (x * x).sum()) / (n * (n - 1)))


def pairwise_similarity(train: np.ndarray, gen: np.ndarray, *, n_boot: int = 1000, ci: float = 0.95,
                        rng: np.random.Generator | None = None) -> dict:
    """Mean pairwise cosine similarity between two sets of embeddings, with a bootstrap CI."""
    t = np.asarray(train, np.float64)
    g = np.asarray(gen, np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12)
    g = g / np.linalg.norm(g, axis=1, keepdims=True).clip(1e-12)
    out = {"n_train": len(t), "n_gen": len(g), "similarity": None, "ci_low": None, "ci_high": None,
           "within_train": _within(t), "within_gen": _within(g)}
    if len(t) == 0 or len(g) == 0:
        return out
    s = t @ g.T
    out["similarity"] = float(s.mean())
    if n_boot > 0:
        rng = rng or np.random.default_rng(0)
        sims = np.empty(n_boot)
        for start in range(0, n_boot, 256):
            b = min(256, n_boot - start)
            ct = rng.multinomial(len(t), np.full(len(t), 1 / len(t)), size=b)
            cg = rng.multinomial(len(g), np.full(len(g), 1 / len(g)), size=b)
            sims[start : start + b] = ((ct @ s) * cg).sum(1) / (len(t) * len(g))
        a = (1 - ci) / 2
        out["ci_low"], out["ci_high"] = (float(x) for x in np.quantile(sims, [a, 1 - a]))
    return out


def image_similarity(inputs, *, by: tuple[str, ...] = ("occupation", "condition"), n_boot: int = 1000,
                     ci: float = 0.95, seed: int = 0, statuses: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Per group (`by`), mean pairwise cosine similarity of training vs generated embeddings.

    inputs: classify output folders (or labels files inside them) written with embeddings;
    rows need `source` (train|gen) and the `by` columns. statuses: keep only rows whose
    face_status is one of these (default: every image that has an embedding).
    """
    from .embeddings import _base_and_labels, load_embeddings

    frames, embs = [], []
    for p in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        base, df = _base_and_labels(p)
        missing = [c for c in ("source", *by) if c not in df.columns]
        if missing:
            raise BiasampError(f"labels in {p} lack column(s) {', '.join(missing)}",
                               hint="classify generations tables / img2dataset folders (which carry occupation and "
                               "condition), and pass --source train|gen for plain folders")
        embs.append(load_embeddings(df, base))
        frames.append(df.select("source", *by, *([c for c in ("face_status",) if c in df.columns])))
    df = pl.concat(frames, how="diagonal_relaxed").with_row_index("_i")
    emb = np.concatenate(embs)
    keep = pl.Series(np.isfinite(emb).all(axis=1))
    if statuses is not None:
        keep = keep & df["face_status"].is_in(list(statuses))
    df = df.filter(keep)
    rows = []
    for key, grp in df.group_by(list(by), maintain_order=True):
        key = key if isinstance(key, tuple) else (key,)
        idx_t = grp.filter(pl.col("source") == "train")["_i"].to_numpy()
        idx_g = grp.filter(pl.col("source") == "gen")["_i"].to_numpy()
        gseed = zlib.crc32("\x1f".join(map(str, key)).encode())
        r = pairwise_similarity(emb[idx_t], emb[idx_g], n_boot=n_boot, ci=ci, rng=np.random.default_rng([seed, gseed]))
        rows.append({**dict(zip(by, key)), **r})
    schema = {**{b: pl.Utf8 for b in by}, "n_train": pl.Int64, "n_gen": pl.Int64, "similarity": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "within_train": pl.Float64, "within_gen": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort(list(by))
