"""Agreement between raters (annotators, classifiers): Cohen's kappa for a pair, Fleiss' kappa for more.

One implementation for every stage (annotate, classify, images); it needs only numpy.

Cohen (1960): kappa = (p_o - p_e) / (1 - p_e), with p_o the share of items both annotators
labelled the same and p_e = sum_k p_1(k) p_2(k) from each annotator's own label shares.

Fleiss (1971): for items i with n_i ratings, n_ij of them in category j,
P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)), P_bar = mean_i P_i,
p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2 and kappa = (P_bar - P_e) / (1 - P_e).
With the same number of ratings per item this is Fleiss' statistic exactly; items with
different numbers of ratings (at least two) enter through their own P_i.

Kappa is undefined when chance agreement is 1 (everyone used a single category): then the
value is None and the note says why, never a silent NaN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["chance_corrected_parts", "cohen_kappa", "fleiss_kappa"]


def chance_corrected_parts(a: Sequence[str], b: Sequence[str]) -> tuple[float, float] | None:
    """(p_o, p_e) of two raters' labels of the same items: the share they label the same and
    the agreement expected by chance from each rater's own label shares (None when no items)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return p_o, p_e


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa between two raters' labels of the same items (None when undefined)."""
    parts = chance_corrected_parts(a, b)
    if parts is None:
        return None
    p_o, p_e = parts
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items × categories matrix of rating counts (None when undefined).

    Items with fewer than two ratings carry no agreement information and are ignored.
    """
    m = np.asarray(counts, dtype=float)
    if m.ndim != 2:
        raise ValueError("counts must be a 2-D items × categories matrix")
    n_i = m.sum(axis=1)
    m, n_i = m[n_i >= 2], n_i[n_i >= 2]
    if len(m) == 0:
        return None
    p_i = (m * (m - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = m.sum(axis=0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))
