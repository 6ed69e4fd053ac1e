"""Attrition: how many selected training captions survive each step, per condition and
occupation, and whether the losses differ across occupations.

Steps: selected → downloaded (bytes, or an embedding, arrived) → decoded (a usable image:
status ok) → passed the face filter (labels.face_status == ok; labels without a face filter,
such as the embeddings source, count as passing and are marked) → confidently classified
(label female or male).

Differential loss rule (per condition, at the tested step, `decoded` by default):
- a chi-square test of independence on the occupation × (kept, lost) table
  (`chi2`, `chi2_dof`, `chi2_p`; `differential` = chi2_p < alpha);
- per occupation, its retention is compared with the *median* retention of the
  condition's occupations (`retained_median`; robust to a few outlying occupations, which
  would drag a pooled "all the others" rate) by an exact binomial test; p-values are
  adjusted with Benjamini–Hochberg within the condition (`q_value`); an occupation is
  flagged when q < alpha AND its retention differs from the median by at least `min_gap`
  (`flag` says in which direction).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.images import schema
from biasamp.tables import LABELS_CONFIDENT, validate

STEPS = ("selected", "downloaded", "decoded", "face_ok", "confident")
LOSS_STATUSES = tuple(s for s in schema.STATUSES if s != "ok")


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (NaN kept as NaN)."""
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        from scipy.stats import false_discovery_control

        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


def attrition_table(
    selection: pl.DataFrame,
    downloads: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    *,
    stage: str = "decoded",
    min_gap: float = 0.10,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per (condition, occupation): counts at each step, loss reasons, and flags."""
    from scipy.stats import binomtest, chi2_contingency

    if stage not in STEPS[1:]:
        raise BiasampError(f"unknown attrition step {stage!r}", hint=f"pick one of {', '.join(STEPS[1:])}")
    if stage in ("face_ok", "confident") and labels is None:
        raise BiasampError(f"testing losses at step {stage!r} needs a labels table", hint="pass --labels")
    selection = validate(selection, "selection")
    downloads = validate(downloads, schema.DOWNLOADS)
    sel = selection.select("condition", "occupation", "caption_id").unique()
    d = downloads.select("caption_id", "status", "received").unique("caption_id", keep="last")
    t = sel.join(d, on="caption_id", how="left")
    t = t.with_columns(
        pl.col("received").fill_null(False),
        (pl.col("status") == "ok").fill_null(False).alias("decoded"),
    )
    if labels is not None:
        labels = validate(labels, "labels")
        lab = labels.select(
            pl.col("item_id"),
            pl.col("face_status"),
            pl.col("label"),
        ).unique("item_id", keep="last")
        t = t.with_columns(pl.col("caption_id").cast(pl.Utf8).alias("item_id")).join(lab, on="item_id", how="left")
        t = t.with_columns(
            (
                pl.col("decoded")
                & pl.col("label").is_not_null()
                & ((pl.col("face_status") == "ok") | pl.col("face_status").is_null())
            ).alias("face_ok"),
            (pl.col("decoded") & pl.col("label").is_not_null() & pl.col("face_status").is_null()).alias("_nofilter"),
        )
        t = t.with_columns((pl.col("face_ok") & pl.col("label").is_in(list(LABELS_CONFIDENT))).alias("confident"))
    aggs = [
        pl.len().alias("selected"),
        pl.col("received").sum().alias("downloaded"),
        pl.col("decoded").sum().alias("decoded"),
    ]
    if labels is not None:
        aggs += [
            pl.col("face_ok").sum().alias("face_ok"),
            pl.col("confident").sum().alias("confident"),
            (pl.col("label") == "female").and_(pl.col("confident")).sum().alias("n_female"),
            (pl.col("label") == "male").and_(pl.col("confident")).sum().alias("n_male"),
            (~pl.col("_nofilter").any()).alias("face_filter_applied"),
        ]
    aggs += [pl.col("status").is_null().sum().alias("not_fetched")]
    aggs += [(pl.col("status") == s).sum().alias(f"lost_{s}") for s in LOSS_STATUSES]
    g = t.group_by("condition", "occupation").agg(aggs).sort("condition", "occupation")
    if labels is None:
        g = g.with_columns(
            pl.lit(None, dtype=pl.UInt32).alias("face_ok"),
            pl.lit(None, dtype=pl.UInt32).alias("confident"),
        )
    g = g.with_columns([pl.col(c).cast(pl.Int64) for c in g.columns if g.schema[c] in (pl.UInt32, pl.UInt64)])
    g = g.with_columns(
        (pl.col("downloaded") / pl.col("selected")).alias("downloaded_rate"),
        (pl.col("decoded") / pl.col("selected")).alias("decoded_rate"),
        (pl.col("face_ok") / pl.col("selected")).alias("face_ok_rate"),
        (pl.col("confident") / pl.col("selected")).alias("confident_rate"),
    )

    out = []
    for cond, part in g.group_by("condition", maintain_order=True):
        n = part["selected"].to_numpy().astype(np.int64)
        k = part[stage].to_numpy().astype(np.int64)
        lost = n - k
        chi2 = dof = chi_p = math.nan
        table = np.stack([k, lost], axis=1)
        table = table[table.sum(axis=1) > 0]
        if len(table) >= 2 and (table.sum(axis=0) > 0).all():
            res = chi2_contingency(table, correction=False)
            chi2, chi_p, dof = float(res[0]), float(res[1]), float(res[2])
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        med = float(np.nanmedian(rate)) if (n > 0).any() else math.nan
        pvals = np.full(len(n), np.nan)
        for i in range(len(n)):
            if n[i] == 0 or math.isnan(med) or (n > 0).sum() < 2:
                continue
            pvals[i] = binomtest(int(k[i]), int(n[i]), med).pvalue
        q = _bh(pvals)
        gap = rate - med
        flagged = (q < alpha) & (np.abs(gap) >= min_gap)
        out.append(
            part.with_columns(
                pl.lit(stage).alias("tested_step"),
                pl.Series("retained", rate),
                pl.lit(med).alias("retained_median"),
                pl.Series("gap", gap),
                pl.Series("p_value", pvals),
                pl.Series("q_value", q),
                pl.Series("flagged", flagged),
                pl.Series(
                    "flag",
                    [
                        ("more loss than most occupations" if gp < 0 else "less loss than most occupations") if f else None
                        for f, gp in zip(flagged, gap)
                    ],
                    dtype=pl.Utf8,
                ),
                pl.lit(chi2).alias("chi2"),
                pl.lit(dof).alias("chi2_dof"),
                pl.lit(chi_p).alias("chi2_p"),
                pl.lit(bool(chi_p < alpha) if not math.isnan(chi_p) else None, dtype=pl.Boolean).alias("differential"),
            )
        )
    if not out:
        return g
    res = pl.concat(out, how="vertical_relaxed").with_columns(pl.col(pl.Float64).fill_nan(None))
    first = ["condition", "occupation", "selected", "downloaded", "decoded", "face_ok", "confident"]
    return res.select(first + [c for c in res.columns if c not in first])
