"""Linear probe: logistic regression (L2, Newton/IRLS) on L2-normalised image embeddings.

Stored by the file's suffix: `.safetensors` (tensors `weight` (d,) and `bias` (1,), string
metadata with the embedding model, its region and the training counts) or `.json` (an object
with `weight` (a list), `bias` (a number) and the same metadata as its other keys). No pickle
anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError


def _check_l2(l2) -> float:
    l2 = float(l2)
    if not (0.0 < l2 < float("inf")):
        raise BiasampError(f"the probe's L2 penalty must be a positive number, got {l2}",
                           hint="the default is 1.0; larger values shrink the weights more (e.g. --l2 0.1 or --l2 10)")
    return l2


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, max_iter: int = 100, tol: float = 1e-8,
                 info: dict | None = None) -> tuple[np.ndarray, float]:
    """Minimise mean log-loss + l2/(2n)·|w|² (bias unpenalised) by Newton's method.

    l2 must be positive: without a penalty the optimum of separable data is at infinity.
    `info`, when given, receives `iterations` and `converged` (the last Newton step below
    `tol`); a fit that stops at `max_iter` without converging is not an optimum."""
    l2 = _check_l2(l2)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    if n == 0 or len(np.unique(y)) < 2:
        raise BiasampError("a linear probe needs labelled examples of both classes (female and male)")
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        z = xb @ w
        p = 1.0 / (1.0 + np.exp(-z))
        g = xb.T @ (p - y) + reg * w
        s = p * (1 - p)
        h = (xb * s[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < tol:
            converged = True
            break
    if info is not None:
        info.update(iterations=it, converged=converged)
    return w[:-1], float(w[-1])


PROBE_SUFFIXES = (".safetensors", ".json")


def _check_suffix(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in PROBE_SUFFIXES:
        raise BiasampError(f"cannot write a probe to {p}: its suffix {p.suffix or '(none)'!r} is neither "
                           ".safetensors nor .json", hint=f"name it e.g. {p.with_suffix('.safetensors').name} "
                           f"or {p.with_suffix('.json').name}")
    return p


def save_probe(path: str | Path, weight: np.ndarray, bias: float, meta: dict) -> Path:
    """Write a probe as its suffix says: `.safetensors` (float32 tensors, metadata as strings)
    or `.json` (`weight`, `bias` and the metadata as one object, numbers kept as numbers, in
    the layout `load_probe` reads). Any other suffix is refused."""
    from biasamp.store import atomic_write_bytes

    p = _check_suffix(path)
    bad = sorted({"weight", "bias"} & set(meta))
    if bad:
        raise BiasampError(f"probe metadata may not use the key(s) {', '.join(bad)}: they hold the probe itself")
    if p.suffix.lower() == ".json":
        doc = {"weight": [float(v) for v in np.asarray(weight, np.float64).ravel()], "bias": float(bias),
               **{k: v if isinstance(v, (bool, int, float, str)) or v is None else str(v) for k, v in meta.items()}}
        return atomic_write_bytes((json.dumps(doc, indent=1) + "\n").encode("utf-8"), p)
    from safetensors.numpy import save

    data = save({"weight": np.asarray(weight, np.float32), "bias": np.asarray([bias], np.float32)},
                metadata={k: str(v) for k, v in meta.items()})
    return atomic_write_bytes(data, p)


def load_probe(path: str | Path) -> tuple[np.ndarray, float, dict]:
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise BiasampError(f"probe file not found: {p}")
    if p.suffix.lower() == ".json":
        try:
            d = json.loads(p.read_text())
            return np.asarray(d["weight"], np.float64), float(d["bias"]), {k: v for k, v in d.items() if k not in ("weight", "bias")}
        except (ValueError, KeyError, TypeError) as e:
            raise BiasampError(f"probe file {p} is not a probe JSON (weight, bias, embed_model): {e}") from None
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            return f.get_tensor("weight").astype(np.float64), float(f.get_tensor("bias")[0]), meta
    except Exception as e:
        raise BiasampError(f"cannot read probe {p}: {type(e).__name__}: {e}", hint="a probe is a .safetensors "
                           "file written by train-probe, or a JSON with weight, bias and embed_model") from None


def train_linear_probe(labelled, out: str | Path, *, reference_column: str = "reference", l2: float = 1.0,
                       embed_model: str | None = None, max_iter: int = 100) -> dict:
    """Train from classify output(s) with embeddings and a `reference` (female|male) column.

    `labelled`: a classify output folder or labels table with `embedding_file`/`embedding_row`
    columns (from `classify --embeddings`), joined with the true labels; or a pair
    (embeddings folder, table with item_id + reference). References are compared without
    case or surrounding spaces (as validate does); other values are left out, with a warning
    naming them. `out` ends in .safetensors or .json (the format written). Returns the
    training summary, which is also the probe's metadata; `converged` is False (and a
    warning printed) when Newton's method stopped at `max_iter` steps.
    """
    from biasamp.ui import err_console

    from .embeddings import load_labelled_embeddings
    from .models import model_reference
    from .validate import split_reference

    _check_suffix(out)  # both checked before any file is read
    l2 = _check_l2(l2)
    df, emb, model = load_labelled_embeddings(labelled, reference_column=reference_column)
    ref, is_ref, other, listed = split_reference(df[reference_column])
    has_emb = pl.Series(np.isfinite(emb).all(axis=1))
    where = labelled[1] if isinstance(labelled, (list, tuple)) else labelled
    where = where if isinstance(where, (str, Path)) else "the reference table"
    if len(other):
        err_console.print(f"[yellow]warning:[/] {where}: {int(other['count'].sum())} of {len(ref)} rows have a "
                          f"{reference_column} that is neither female nor male ({listed}); "
                          "they are not used to train the probe", highlight=False, soft_wrap=True)
    no_emb = int((is_ref & ~has_emb).sum())
    if no_emb:
        err_console.print(f"[yellow]warning:[/] {where}: {no_emb} rows with a female or male {reference_column} "
                          "have no embedding (their image could not be decoded); they are not used",
                          highlight=False, soft_wrap=True)
    keep = (is_ref & has_emb).to_numpy()
    if not keep.any():
        raise BiasampError(f"no rows with {reference_column} = female|male and an embedding to train on")
    y = (ref.to_numpy()[keep] == "female").astype(float)
    info: dict = {}
    w, b = fit_logistic(emb[keep], y, l2=l2, max_iter=max_iter, info=info)
    p = 1 / (1 + np.exp(-(emb[keep] @ w + b)))
    name = embed_model or model
    summary = {"embed_model": model_reference(name) if name else None, "region": "image", "n": int(keep.sum()),
               "n_female": int(y.sum()), "n_male": int((1 - y).sum()),
               "n_reference_ignored": int(other["count"].sum()) if len(other) else 0, "l2": l2,
               "iterations": info["iterations"], "converged": info["converged"],
               "train_accuracy": float(((p >= 0.5) == (y == 1)).mean())}
    if not info["converged"]:
        err_console.print(f"[yellow]warning:[/] the probe's fit stopped after {info['iterations']} Newton steps without "
                          f"converging (largest weight {float(np.abs(w).max()):.3g}); the data may be separable "
                          "with too small a penalty: raise --l2 (the probe records converged = False)",
                          highlight=False, soft_wrap=True)
    save_probe(out, w, b, {k: v for k, v in summary.items() if v is not None})
    return summary
