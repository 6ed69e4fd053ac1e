"""Inter-annotator agreement: Cohen's kappa for a pair of annotators, Fleiss' kappa for more.

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
from itertools import combinations

import numpy as np
import polars as pl


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa between two raters' labels of the same items (None when undefined)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
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


def agreement_table(answers: pl.DataFrame) -> pl.DataFrame:
    """Agreement among annotators over the items labelled more than once.

    `answers` has one row per (item_id, annotator) with a `label`. Two annotators: Cohen's
    kappa. More: Fleiss' kappa over all items with at least two answers, and Cohen's kappa
    for every pair. Columns: statistic, annotators, n_items, observed_agreement, kappa, note.
    """
    rows: list[dict] = []
    names = sorted(answers["annotator"].unique().to_list()) if len(answers) else []
    by_item: dict[str, dict[str, str]] = {}
    for item, ann, lab in answers.select("item_id", "annotator", "label").iter_rows():
        by_item.setdefault(item, {})[ann] = lab
    for x, y in combinations(names, 2):
        common = [(d[x], d[y]) for d in by_item.values() if x in d and y in d]
        if not common:
            continue
        a, b = [c[0] for c in common], [c[1] for c in common]
        k = cohen_kappa(a, b)
        rows.append(
            {
                "statistic": "cohen_kappa",
                "annotators": f"{x} + {y}",
                "n_items": len(common),
                "observed_agreement": sum(p == q for p, q in common) / len(common),
                "kappa": k,
                "note": "" if k is not None else "undefined: both annotators used a single, identical label",
            }
        )
    if len(names) > 2:
        multi = [d for d in by_item.values() if len(d) >= 2]
        if multi:
            cats = sorted({lab for d in multi for lab in d.values()})
            idx = {c: j for j, c in enumerate(cats)}
            counts = np.zeros((len(multi), len(cats)))
            for i, d in enumerate(multi):
                for lab in d.values():
                    counts[i, idx[lab]] += 1
            k = fleiss_kappa(counts)
            n_i = counts.sum(axis=1)
            p_obs = float(((counts * (counts - 1)).sum(axis=1) / (n_i * (n_i - 1))).mean())
            rows.append(
                {
                    "statistic": "fleiss_kappa",
                    "annotators": " + ".join(names),
                    "n_items": len(multi),
                    "observed_agreement": p_obs,
                    "kappa": k,
                    "note": "" if k is not None else "undefined: every answer used the same label",
                }
            )
    schema = {
        "statistic": pl.Utf8,
        "annotators": pl.Utf8,
        "n_items": pl.Int64,
        "observed_agreement": pl.Float64,
        "kappa": pl.Float64,
        "note": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema)
