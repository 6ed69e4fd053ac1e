"""Linear probe: logistic regression (L2, Newton/IRLS) on L2-normalised image embeddings.

Stored as safetensors: tensors `weight` (d,) and `bias` (1,), metadata with the embedding
model, its region and the training counts. No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, max_iter: int = 100, tol: float = 1e-8) -> tuple[np.ndarray, float]:
    """Minimise mean log-loss + l2/(2n)·|w|² (bias unpenalised) by Newton's method."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    if n == 0 or len(np.unique(y)) < 2:
        raise BiasampError("a linear probe needs labelled examples of both classes (female and male)")
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(max_iter):
        z = xb @ w
        p = 1.0 / (1.0 + np.exp(-z))
        g = xb.T @ (p - y) + reg * w
        s = p * (1 - p)
        h = (xb * s[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < tol:
            break
    return w[:-1], float(w[-1])


def save_probe(path: str | Path, weight: np.ndarray, bias: float, meta: dict) -> Path:
    from safetensors.numpy import save

    from biasamp.store import atomic_write_bytes

    data = save({"weight": np.asarray(weight, np.float32), "bias": np.asarray([bias], np.float32)},
                metadata={k: str(v) for k, v in meta.items()})
    return atomic_write_bytes(data, path)


def load_probe(path: str | Path) -> tuple[np.ndarray, float, dict]:
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise BiasampError(f"probe file not found: {p}")
    if p.suffix == ".json":
        try:
            d = json.loads(p.read_text())
            return np.asarray(d["weight"], np.float64), float(d["bias"]), {k: v for k, v in d.items() if k not in ("weight", "bias")}
        except (ValueError, KeyError) as e:
            raise BiasampError(f"probe file {p} is not a probe JSON (weight, bias, embed_model): {e}") from None
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            return f.get_tensor("weight").astype(np.float64), float(f.get_tensor("bias")[0]), meta
    except Exception as e:
        raise BiasampError(f"cannot read probe {p}: {type(e).__name__}: {e}", hint="a probe is a .safetensors "
                           "file written by train-probe, or a JSON with weight, bias and embed_model") from None


def train_linear_probe(labelled, out: str | Path, *, reference_column: str = "reference", l2: float = 1.0,
                       embed_model: str | None = None) -> dict:
    """Train from classify output(s) with embeddings and a `reference` (female|male) column.

    `labelled`: a classify output folder or labels table with `embedding_file`/`embedding_row`
    columns (from `classify --embeddings`), joined with the true labels; or a pair
    (embeddings folder, table with item_id + reference). Returns the training summary.
    """
    from .embeddings import load_labelled_embeddings

    df, emb, model = load_labelled_embeddings(labelled, reference_column=reference_column)
    ref = df[reference_column].cast(pl.Utf8).str.to_lowercase()
    keep = (ref.is_in(["female", "male"]) & pl.Series(np.isfinite(emb).all(axis=1))).to_numpy()
    if not keep.any():
        raise BiasampError(f"no rows with {reference_column} = female|male and an embedding to train on")
    y = (ref.to_numpy()[keep] == "female").astype(float)
    w, b = fit_logistic(emb[keep], y, l2=l2)
    p = 1 / (1 + np.exp(-(emb[keep] @ w + b)))
    summary = {"embed_model": embed_model or model, "region": "image", "n": int(keep.sum()),
               "n_female": int(y.sum()), "n_male": int((1 - y).sum()), "l2": l2,
               "train_accuracy": float(((p >= 0.5) == (y == 1)).mean())}
    save_probe(out, w, b, summary)
    return summary
