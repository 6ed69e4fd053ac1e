"""Multiple-testing control and a reference two-proportion test."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), same order as the input.

    q_(i) = min_{j >= i} min(1, p_(j) · m / j) over the p-values sorted ascending.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be finite and in [0, 1]")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    q = np.empty(m)
    q[order] = q_sorted
    return q


def two_proportion_z_test(f1, n1, f2, n2) -> np.ndarray:
    """Two-sided pooled two-proportion z-test of p1 = p2 (ignores clustering).

    Returns 1.0 where both samples are all-female or all-male (no variance).
    """
    f1, n1, f2, n2 = (np.asarray(a, dtype=float) for a in (f1, n1, f2, n2))
    pooled = (f1 + f2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (f2 / n2 - f1 / n1) / se
    p = 2 * norm.sf(np.abs(z))
    return np.where(se > 0, p, 1.0)
