"""The report's built-in sections over measure's outputs.

Each returns a `Fragment` (HTML + markdown) or None when its inputs are absent.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl

from biasamp.report.core import Fragment, RunTables, order_conditions, section
from biasamp.report.render import (
    Figures,
    Table,
    details,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_pct_ci,
    join_md,
    md_esc,
    mpl_text,
    paragraph,
)

CATEGORY_COLORS = {"amplified": "#b3261e", "reflected": "#6b7280", "mitigated": "#1f5fa8"}
OTHER_COLOR = "#a0a7ae"
#: a condition with more groups than this (captions used as prompts) is summarised, not listed
MAX_GROUPS_SHOWN = 20


def _col(df: pl.DataFrame, name: str) -> list[Any]:
    return df[name].to_list() if name in df.columns else [None] * len(df)


def _settings(run: RunTables) -> dict:
    s = (run.summary or {}).get("settings") or {}
    return s if isinstance(s, dict) else {}


def _band(run: RunTables) -> float:
    s = _settings(run)
    for k in ("reflected_band", "band", "reflected"):
        v = s.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1:
            return float(v)
    return 0.04


def _sorted_amp(run: RunTables) -> pl.DataFrame | None:
    amp = run.amplification
    if amp is None or not {"condition", "occupation"} <= set(amp.columns):
        return None
    order = {c: i for i, c in enumerate(run.conditions())}
    return amp.with_columns(pl.col("condition").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_ord")).sort(
        "_ord", "occupation"
    ).drop("_ord")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------
# conditions


def _condition_stats(run: RunTables) -> dict[str, dict]:
    """Per condition: summary.json's numbers, or means over amplification.parquet (no CI)."""
    stats = dict(((run.summary or {}).get("conditions") or {}))
    amp = run.amplification
    if amp is not None and "amp" in amp.columns:
        for cond in amp["condition"].unique(maintain_order=True).to_list():
            if cond in stats:
                continue
            sub = amp.filter(pl.col("condition") == cond)
            vals = sub.filter(pl.col("amp").is_not_null() & pl.col("amp").is_not_nan())
            cat = _col(sub, "category")
            stats[cond] = {
                "n_occupations": len(sub),
                "mean_amp": vals["amp"].mean() if len(vals) else None,
                "n_amplified": cat.count("amplified"),
                "n_reflected": cat.count("reflected"),
                "n_mitigated": cat.count("mitigated"),
                "n_flagged": sum(f is not None for f in _col(sub, "flag")),
            }
    return stats


@section("conditions", "Amplification by condition", order=20)
def conditions_section(run: RunTables, figures: Figures) -> Fragment | None:
    stats = _condition_stats(run)
    if not stats:
        return None
    conds = order_conditions(stats)
    header = [
        "condition", "occupations", "mean amplification (points) [95% CI]", "mean absolute form [95% CI]",
        "amplified", "reflected", "mitigated", "significant (q < 0.05)", "flagged",
        "directional T→A [95% CI]", "Zhao BiasAmp [95% CI]",
    ]  # fmt: skip
    rows = []
    for c in conds:
        s = stats[c] or {}
        rows.append(
            [
                c,
                fmt_num(s.get("n_occupations")),
                fmt_ci(s.get("mean_amp"), s.get("mean_amp_lo"), s.get("mean_amp_hi"), 2),
                fmt_ci(s.get("mean_amp_abs"), s.get("mean_amp_abs_lo"), s.get("mean_amp_abs_hi"), 2),
                fmt_num(s.get("n_amplified")),
                fmt_num(s.get("n_reflected")),
                fmt_num(s.get("n_mitigated")),
                fmt_num(s.get("n_significant")),
                fmt_num(s.get("n_flagged")),
                fmt_ci(s.get("directional_t2a"), s.get("directional_t2a_lo"), s.get("directional_t2a_hi"), 3),
                fmt_ci(s.get("zhao_biasamp"), s.get("zhao_biasamp_lo"), s.get("zhao_biasamp_hi"), 3),
            ]
        )
    # drop columns that are empty for every condition
    keep = [i for i in range(len(header)) if i < 3 or any(r[i] != "–" for r in rows)]
    table = Table([header[i] for i in keep], [[r[i] for i in keep] for r in rows], numeric=set(range(1, len(keep))))
    lead = (
        "Mean over occupations of sign(p_train − 0.5) · (p_gen − p_train), in percentage points: positive when "
        "generated images lean further towards the training majority than the training images do. Counts use "
        f"Fair Diffusion's categories (reflected when |p_gen − p_train| < {_band(run):g})."
    )
    h, m = paragraph(lead)
    html_parts, md_parts = [h, table.html()], [m, table.markdown()]
    by_group = (run.summary or {}).get("by_group") or {}
    grows = []
    many = []
    for c in order_conditions(by_group):
        groups = by_group.get(c) or {}
        if len(groups) > MAX_GROUPS_SHOWN:  # captions used as prompts: one group per caption
            many.append(f"{c}: {len(groups)} groups")
            continue
        for g in sorted(groups):
            s = groups[g] or {}
            grows.append([c, g, fmt_num(s.get("n_occupations")), fmt_ci(s.get("mean_amp"), s.get("mean_amp_lo"), s.get("mean_amp_hi"), 2)])
    if not grows and run.by_group is not None and {"condition", "group", "amp"} <= set(run.by_group.columns):
        bg = run.by_group.group_by("condition", "group").agg(
            pl.len().alias("n"), pl.col("amp").filter(pl.col("amp").is_not_nan()).mean().alias("mean_amp")
        )
        for c in order_conditions(bg["condition"].to_list()):
            sub = bg.filter(pl.col("condition") == c).sort("group")
            if len(sub) > MAX_GROUPS_SHOWN:
                many.append(f"{c}: {len(sub)} groups")
                continue
            for r in sub.iter_rows(named=True):
                grows.append([c, r["group"], fmt_num(r["n"]), fmt_ci(r["mean_amp"], None, None, 2)])
    if grows or many:
        html_parts.append("<h3>Per template</h3>")
        md_parts.append("### Per template")
    if grows:
        gt = Table(["condition", "group (template)", "occupations", "mean amplification [95% CI]"], grows, numeric={2, 3})
        html_parts.append(gt.html())
        md_parts.append(gt.markdown())
    if many:
        h2, m2 = paragraph(
            f"Not listed (more than {MAX_GROUPS_SHOWN} groups, e.g. one per caption used as prompt): "
            + "; ".join(many) + ". See by_group.parquet."
        )
        html_parts.append(h2)
        md_parts.append(m2)
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# planted truth (simulated runs)


def _covering(df: pl.DataFrame, lo: str, hi: str, target: str) -> str:
    """'k/n': intervals [lo, hi] that contain `target`, among rows that have an interval."""
    if not {lo, hi, target} <= set(df.columns):
        return "–"
    ok = df.filter(pl.col(lo).is_not_null() & pl.col(hi).is_not_null() & pl.col(target).is_not_null())
    if not len(ok):
        return "–"
    n_cov = ok.filter((pl.col(lo) <= pl.col(target)) & (pl.col(target) <= pl.col(hi))).height
    return f"{n_cov}/{len(ok)}"


@section("truth", "Planted truth (simulated data)", order=25)
def truth_section(run: RunTables, figures: Figures) -> Fragment | None:
    truth, amp = run.truth, run.amplification
    if truth is None or amp is None or not {"condition", "occupation", "amp"} <= set(truth.columns) or "amp" not in amp.columns:
        return None
    t_cols = [pl.col("amp").alias("true_amp")]
    if "amp_observed" in truth.columns:
        t_cols.append(pl.col("amp_observed").alias("true_amp_observed"))
    if "model_amp" in truth.columns:
        t_cols.append(pl.col("model_amp").alias("true_model_amp"))
    j = amp.join(truth.select("condition", "occupation", *t_cols), on=["condition", "occupation"], how="inner")
    if not len(j):
        return None
    corrected = "amp_corrected" in j.columns and j["amp_corrected"].drop_nulls().len() > 0
    stats = _condition_stats(run)
    has_obs = "true_amp_observed" in j.columns and (j["true_amp_observed"] - j["true_amp"]).abs().max() > 1e-9
    rows = []
    for c in order_conditions(j["condition"].to_list()):
        sub = j.filter(pl.col("condition") == c)
        s = stats.get(c) or {}
        # uncorrected intervals estimate the shares as the classifier sees them; corrected ones the true shares
        covered = _covering(sub, "amp_lo", "amp_hi", "true_amp_observed" if has_obs else "true_amp")
        covered_corr = _covering(sub, "amp_corrected_lo", "amp_corrected_hi", "true_amp") if corrected else None
        row = [c]
        if "true_model_amp" in sub.columns:
            row.append(fmt_num(sub["true_model_amp"].mean(), 2, signed=True))
        row.append(fmt_num(sub["true_amp"].mean(), 2, signed=True))
        if has_obs:
            row.append(fmt_num(sub["true_amp_observed"].mean(), 2, signed=True))
        row += [fmt_ci(s.get("mean_amp"), s.get("mean_amp_lo"), s.get("mean_amp_hi"), 2), covered]
        if corrected:
            row += [fmt_ci(s.get("mean_amp_corrected"), s.get("mean_amp_corrected_lo"), s.get("mean_amp_corrected_hi"), 2), covered_corr]
        rows.append(row)
    header = ["condition"]
    if "true_model_amp" in j.columns:
        header.append("planted model amplification")
    header.append("true amplification of this comparison")
    if has_obs:
        header.append("expected with the classifier's errors")
    header += ["measured [95% CI]", "occupation CIs covering the truth" + (" (with errors)" if has_obs else "")]
    if corrected:
        header += ["corrected [95% CI]", "corrected occupation CIs covering the true amplification"]
    table = Table(header, rows, numeric=set(range(1, len(header))))
    h, m = paragraph(
        "The simulator planted the model's amplification over the training data comparable to the prompt. "
        "A comparison against less comparable training data (keyword search picks up captions with gender words, "
        "whose images are more balanced) shows amplification the model never added."
    )
    return Fragment(h + table.html(), join_md([m, table.markdown()]))


# ---------------------------------------------------------------------------------------
# scatter


@section("scatter", "Training vs generated shares", order=30)
def scatter_section(run: RunTables, figures: Figures) -> Fragment | None:
    amp = _sorted_amp(run)
    if amp is None or not {"p_train", "p_gen"} <= set(amp.columns):
        return None
    conds = [c for c in run.conditions() if c in set(amp["condition"].to_list())]
    if not conds:
        return None
    band = _band(run)
    ncols = min(3, len(conds))
    nrows = math.ceil(len(conds) / ncols)

    def draw(fig) -> None:
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for k, ax in enumerate(axes.flat):
            if k >= len(conds):
                ax.set_visible(False)
                continue
            c = conds[k]
            sub = amp.filter(pl.col("condition") == c)
            ax.fill_between([0, 0.5], [0, 0], [0, 0.5], color=CATEGORY_COLORS["amplified"], alpha=0.10, lw=0)
            ax.fill_between([0.5, 1], [0.5, 1], [1, 1], color=CATEGORY_COLORS["amplified"], alpha=0.10, lw=0,
                            label="amplification region")  # fmt: skip
            ax.fill_between([0, 1], [-band, 1 - band], [band, 1 + band], color="#9aa3ab", alpha=0.15, lw=0,
                            label=f"reflected (±{band:g})")  # fmt: skip
            ax.plot([0, 1], [0, 1], ls="--", color="#333333", lw=0.9, label="y = x")
            ax.axvline(0.5, color="#cccccc", lw=0.6)
            ax.axhline(0.5, color="#cccccc", lw=0.6)
            cats = _col(sub, "category")
            for cat, color in [*CATEGORY_COLORS.items(), (None, OTHER_COLOR)]:
                sel = [i for i, x in enumerate(cats) if (x == cat if cat else x not in CATEGORY_COLORS)]
                if not sel:
                    continue
                xs = [sub["p_train"][i] for i in sel]
                ys = [sub["p_gen"][i] for i in sel]
                pts = [(x, y) for x, y in zip(xs, ys) if _finite(x) and _finite(y)]
                if pts:
                    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=16, color=color, alpha=0.85,
                               edgecolors="white", linewidths=0.4, label=cat or "no category", zorder=3)  # fmt: skip
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.set_title(mpl_text(c), fontsize=10)
            if k % ncols == 0:
                ax.set_ylabel("p_gen (share female, generated)", fontsize=8)
            if k // ncols == nrows - 1 or k + ncols >= len(conds):
                ax.set_xlabel("p_train (share female, training)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_tick_params(labelbottom=True)
        legend: dict[str, Any] = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        per_row = {1: 3, 2: 4}.get(ncols, 7)
        fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(per_row, len(legend)), fontsize=8, frameon=False)

    ref = figures.add(draw, "scatter-shares", "Share female per occupation: training (x) vs generated (y), one panel per condition. "
                      "Points in the shaded region lean further towards the training majority (amplification).",
                      (5.0, 5.8) if len(conds) == 1 else (3.6 * ncols, 3.6 * nrows + 0.6))  # fmt: skip
    return Fragment(ref.html, ref.markdown)


# ---------------------------------------------------------------------------------------
# forest


@section("forest", "Amplification per occupation", order=40)
def forest_section(run: RunTables, figures: Figures) -> Fragment | None:
    amp = _sorted_amp(run)
    if amp is None or "amp" not in amp.columns:
        return None
    stats = _condition_stats(run)
    html_parts, md_parts = [], []
    html_parts.append(paragraph("Per occupation, amplification in percentage points with its 95% interval, sorted; "
                                "the shaded band is the condition's mean with its interval.")[0])  # fmt: skip
    conds = [c for c in run.conditions() if c in set(amp["condition"].to_list())]
    for k, c in enumerate(conds):
        sub = amp.filter((pl.col("condition") == c) & pl.col("amp").is_not_null() & pl.col("amp").is_not_nan()).sort("amp")
        if not len(sub):
            continue
        s = stats.get(c) or {}
        n = len(sub)

        def draw(fig, sub=sub, s=s, c=c, n=n) -> None:
            ax = fig.subplots()
            ys = list(range(n))
            amps = sub["amp"].to_list()
            lo = _col(sub, "amp_lo")
            hi = _col(sub, "amp_hi")
            cats = _col(sub, "category")
            if _finite(s.get("mean_amp_lo")) and _finite(s.get("mean_amp_hi")):
                ax.axvspan(s["mean_amp_lo"], s["mean_amp_hi"], color="#f2c14e", alpha=0.25, lw=0, label="mean, 95% CI")
            if _finite(s.get("mean_amp")):
                ax.axvline(s["mean_amp"], color="#b07d00", lw=1.2, label=f"mean {s['mean_amp']:+.2f}")
            ax.axvline(0, color="#333333", lw=0.8)
            for y, a, l, h, cat in zip(ys, amps, lo, hi, cats):
                color = CATEGORY_COLORS.get(cat, OTHER_COLOR)
                if _finite(l) and _finite(h):
                    ax.plot([l, h], [y, y], color=color, lw=1.1, alpha=0.8)
                ax.plot([a], [y], "o", ms=3.2, color=color)
            ax.set_yticks(ys)
            ax.set_yticklabels([mpl_text(o) for o in sub["occupation"].to_list()], fontsize=7 if n > 40 else 8)
            ax.set_ylim(-0.7, n - 0.3)
            ax.set_xlabel("amplification (percentage points)", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(mpl_text(c), fontsize=10)
            ax.grid(axis="x", color="#eeeeee", lw=0.6)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="lower right", fontsize=7, frameon=False)

        ref = figures.add(draw, f"forest-{c}", f"Amplification per occupation with 95% intervals: {c}", (7.0, max(2.4, 0.7 + 0.16 * n)))
        mean_txt = fmt_ci(s.get("mean_amp"), s.get("mean_amp_lo"), s.get("mean_amp_hi"), 2)
        html_parts.append(details(f"{c}: {n} occupations, mean {mean_txt}", ref.html, open_=(k == 0)))
        md_parts.append(f"### {md_esc(c)}\n\n{ref.markdown}")
    if len(html_parts) == 1:
        return None
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# corrected vs uncorrected


@section("corrected", "Corrected for classifier error", order=50)
def corrected_section(run: RunTables, figures: Figures) -> Fragment | None:
    amp = _sorted_amp(run)
    stats = _condition_stats(run)
    has_col = amp is not None and "amp_corrected" in amp.columns and amp["amp_corrected"].drop_nulls().len() > 0
    has_sum = any(_finite((s or {}).get("mean_amp_corrected")) for s in stats.values())
    if not (has_col or has_sum):
        return None
    rows = []
    for c in order_conditions(stats):
        s = stats[c] or {}
        if _finite(s.get("mean_amp_corrected")):
            corr = fmt_ci(s.get("mean_amp_corrected"), s.get("mean_amp_corrected_lo"), s.get("mean_amp_corrected_hi"), 2)
        elif has_col:
            sub = amp.filter(pl.col("condition") == c)["amp_corrected"].drop_nulls().drop_nans()
            corr = fmt_ci(sub.mean() if len(sub) else None, None, None, 2)
        else:
            corr = "–"
        rows.append([c, fmt_ci(s.get("mean_amp"), s.get("mean_amp_lo"), s.get("mean_amp_hi"), 2), corr])
    table = Table(["condition", "uncorrected mean amplification [95% CI]", "corrected (Rogan–Gladen) [95% CI]"], rows, numeric={1, 2})
    h, m = paragraph(
        "Shares corrected for the classifier's sensitivity and specificity (Rogan–Gladen), with the uncertainty of "
        "those error rates carried into the intervals. A classifier that errs pulls both shares towards the middle "
        "and so shrinks amplification; the corrected figures undo that."
    )
    html_parts, md_parts = [h, table.html()], [m, table.markdown()]
    if has_col and {"p_train_corrected", "p_gen_corrected"} <= set(amp.columns):
        sub = amp.filter(pl.col("amp").is_not_null() & pl.col("amp_corrected").is_not_null())
        if len(sub):

            def draw(fig) -> None:
                ax = fig.subplots()
                a, b = sub["amp"].to_list(), sub["amp_corrected"].to_list()
                pts = [(x, y) for x, y in zip(a, b) if _finite(x) and _finite(y)]
                lo = min(min(p) for p in pts) - 1
                hi = max(max(p) for p in pts) + 1
                ax.plot([lo, hi], [lo, hi], ls="--", color="#333333", lw=0.8, label="y = x")
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color="#1f5fa8", alpha=0.7)
                ax.set_xlabel("uncorrected amplification (points)", fontsize=8)
                ax.set_ylabel("corrected amplification (points)", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.legend(fontsize=7, frameon=False)

            ref = figures.add(draw, "corrected-vs-uncorrected", "Per occupation and condition: corrected vs uncorrected amplification", (4.6, 4.2))
            html_parts.append(ref.html)
            md_parts.append(ref.markdown)
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# exclusions


@section("exclusions", "Exclusions", order=60)
def exclusions_section(run: RunTables, figures: Figures) -> Fragment | None:
    ex = run.exclusions
    if ex is None or not {"source", "reason", "n"} <= set(ex.columns):
        return None
    if "condition" not in ex.columns:
        ex = ex.with_columns(pl.lit("(all)").alias("condition"))
    ex = ex.with_columns(pl.col("n").cast(pl.Int64, strict=False))
    reasons = sorted(ex["reason"].drop_nulls().unique().to_list())
    totals = ex.group_by("source", "condition", "reason").agg(pl.col("n").sum())
    confident: dict[tuple[str, str], int] = {}
    amp = run.amplification
    if amp is not None:
        for src in ("train", "gen"):
            if f"n_{src}" in amp.columns:
                for c, v in amp.group_by("condition").agg(pl.col(f"n_{src}").sum()).iter_rows():
                    confident[(src, c)] = int(v or 0)
    rows = []
    for src in ("train", "gen", *sorted(set(totals["source"].to_list()) - {"train", "gen"})):
        for c in order_conditions(totals.filter(pl.col("source") == src)["condition"].to_list()):
            sub = totals.filter((pl.col("source") == src) & (pl.col("condition") == c))
            per = {r: int(n) for r, n in zip(sub["reason"].to_list(), sub["n"].to_list())}
            n_ex = sum(per.values())
            conf = confident.get((src, c))
            share = fmt_pct(n_ex / (n_ex + conf)) if conf is not None and n_ex + conf > 0 else "–"
            rows.append([src, c, *[str(per.get(r, 0)) for r in reasons], str(n_ex), "–" if conf is None else str(conf), share])
    if not rows:
        return None
    header = ["source", "condition", *reasons, "excluded", "confident labels", "excluded share"]
    table = Table(header, rows, numeric=set(range(2, len(header))))
    h, m = paragraph(
        "Images not counted, by reason: no face, several faces, a face too small, flagged as unsafe, the classifier "
        "unsure (ambiguous) or an error. Nothing is dropped silently; the shares above are among confident labels only."
    )
    per_occ = ex.group_by("source", "condition", "occupation").agg(pl.col("n").sum().alias("excluded")) if "occupation" in ex.columns else None
    html_parts, md_parts = [h, table.html()], [m, table.markdown()]
    if per_occ is not None and len(per_occ):
        top = per_occ.sort("excluded", descending=True).head(25)
        t2 = Table(["source", "condition", "occupation", "excluded"],
                   [[r[0], r[1], r[2], str(r[3])] for r in top.iter_rows()], numeric={3})  # fmt: skip
        html_parts.append(details("Occupations with the most exclusions (top 25)", t2.html()))
        md_parts += ["**Occupations with the most exclusions (top 25)**", t2.markdown()]
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# per-occupation table and flags


@section("flags", "Flagged occupations", order=65)
def flags_section(run: RunTables, figures: Figures) -> Fragment | None:
    amp = _sorted_amp(run)
    if amp is None or "flag" not in amp.columns:
        return None
    fl = amp.filter(pl.col("flag").is_not_null())
    if not len(fl):
        return None
    table = Table(["condition", "occupation", "flag"], [[r["condition"], r["occupation"], r["flag"]] for r in fl.iter_rows(named=True)])
    h, m = paragraph("These occupations are left out of the condition means; the flag says why.")
    return Fragment(h + table.html(), join_md([m, table.markdown()]))


@section("occupations", "All occupations", order=70)
def occupations_section(run: RunTables, figures: Figures) -> Fragment | None:
    amp = _sorted_amp(run)
    if amp is None:
        return None
    corrected = "amp_corrected" in amp.columns and amp["amp_corrected"].drop_nulls().len() > 0
    header = ["occupation", "n train", "p_train [95% CI]", "n gen", "p_gen [95% CI]", "amplification [95% CI]"]
    if corrected:
        header.append("corrected [95% CI]")
    header += ["q", "category", "flag"]
    html_parts = [paragraph("Shares of images perceived as female among confident labels, with 95% intervals; q is the "
                            "Benjamini–Hochberg adjusted p-value of the test of no amplification.")[0]]  # fmt: skip
    md_parts = []
    conds = [c for c in run.conditions() if c in set(amp["condition"].to_list())]
    for k, c in enumerate(conds):
        sub = amp.filter(pl.col("condition") == c)
        rows = []
        for r in sub.iter_rows(named=True):
            row = [
                r.get("occupation"),
                fmt_num(r.get("n_train")),
                fmt_pct_ci(r.get("p_train"), r.get("p_train_lo"), r.get("p_train_hi")),
                fmt_num(r.get("n_gen")),
                fmt_pct_ci(r.get("p_gen"), r.get("p_gen_lo"), r.get("p_gen_hi")),
                fmt_ci(r.get("amp"), r.get("amp_lo"), r.get("amp_hi"), 1),
            ]
            if corrected:
                row.append(fmt_ci(r.get("amp_corrected"), r.get("amp_corrected_lo"), r.get("amp_corrected_hi"), 1))
            q = r.get("q_value")
            row += ["–" if not _finite(q) else (f"{q:.3g}" if q >= 0.001 else "<0.001"), r.get("category") or "–", r.get("flag") or ""]
            rows.append(row)
        table = Table(header, rows, numeric={1, 2, 3, 4, 5, *([6] if corrected else [])})
        html_parts.append(details(f"{c} ({len(sub)} occupations)", table.html(), open_=False))
        md_parts += [f"### {md_esc(c)}", table.markdown()]
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# settings


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k in sorted(d, key=str):
            out += _flatten(d[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        v = d if isinstance(d, str) else json.dumps(d, default=str)
        if len(v) > 300:
            v = v[:300] + " …"
        out.append((prefix, v))
    return out


@section("settings", "Settings", order=90)
def settings_section(run: RunTables, figures: Figures) -> Fragment | None:
    parts_html, parts_md = [], []
    s = _settings(run)
    if s:
        t = Table(["setting", "value"], [list(kv) for kv in _flatten(s)], css_class="wrap")
        parts_html += ["<h3>Measurement</h3>", t.html()]
        parts_md += ["### Measurement", t.markdown()]
    sim = run.simulation
    if sim:
        sim = {k: v for k, v in sim.items() if k != "occupations"}
        t = Table(["setting", "value"], [list(kv) for kv in _flatten(sim)], css_class="wrap")
        parts_html += ["<h3>Simulation</h3>", t.html()]
        parts_md += ["### Simulation", t.markdown()]
    if not parts_html:
        return None
    return Fragment("".join(parts_html), join_md(parts_md))

