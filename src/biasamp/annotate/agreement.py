"""Inter-annotator agreement table: Cohen's kappa for a pair of annotators, Fleiss' kappa for more.

The statistics (and their formulas) live in `biasamp.agreement`, shared with classify and
images, and are re-exported here.

Kappa is undefined when chance agreement is 1 (everyone used a single category): then the
value is None and the note says why, never a silent NaN.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl

from biasamp.agreement import cohen_kappa, fleiss_kappa

__all__ = ["agreement_table", "cohen_kappa", "fleiss_kappa"]


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
