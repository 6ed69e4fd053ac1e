"""Report sections that a whole-study run adds: models side by side, training-image
attrition, similarity diagnostics, classifier validation, example images, the exact config.

`build_report` imports this module on its own (see docs/report.md, "Adding a section").
Every section reads files the study's report stage gathers at the top of the run directory
and returns None when they are absent, so a plain `biasamp measure` run directory still
gets the measure sections only. Everything from data is escaped (`esc`, `md_esc`, `Table`);
example images are embedded as base64 PNG thumbnails so the page stays self-contained.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import tarfile
from pathlib import Path
from typing import Any

import polars as pl

from biasamp.report.core import Fragment, RunTables, order_conditions, section
from biasamp.report.render import (
    Figures,
    Table,
    details,
    esc,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_pct_ci,
    join_md,
    md_esc,
    mpl_text,
    paragraph,
)

#: colours of models in the comparison chart, in order of appearance (cycled)
MODEL_COLORS = ("#1f5fa8", "#b3261e", "#2e7d32", "#8e44ad", "#b07d00", "#00838f", "#6b7280")
#: example thumbnails: longest side in pixels, and at most this many images on the page
THUMB_SIZE = 96
MAX_THUMBNAILS = 600
#: at most this many example images per (model, occupation)
EXAMPLES_PER_OCCUPATION = 8
#: the pseudo-condition of selection diagnostics: every caption that mentions the occupation
ALL_MENTIONS = "all-mentions"
POOLED = "pooled"
QUANTILES = ("q05", "q25", "q50", "q75", "q95")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ci_text(run: RunTables) -> str:
    settings = (run.summary or {}).get("settings") if isinstance(run.summary, dict) else None
    ci = settings.get("ci", 0.95) if isinstance(settings, dict) else 0.95
    if isinstance(ci, (int, float)) and not isinstance(ci, bool) and 0 < ci < 1:
        return f"{100 * ci:g}%"
    return "95%"


def _has(df: pl.DataFrame | None, cols: set[str]) -> bool:
    return df is not None and len(df) > 0 and cols <= set(df.columns)


def _style(css: str) -> str:
    """A scoped `<style>` block (the page's Content-Security-Policy allows inline styles)."""
    return f"<style>{css}</style>"


def _table_html(header: list[str], rows: list[list[Any]], *, numeric: set[int] = frozenset(),
                row_classes: list[str | None] | None = None, caption: str | None = None) -> str:
    """Like `Table.html()`, with a CSS class per row (used to highlight flagged rows)."""
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(header))
    body = []
    for k, row in enumerate(rows):
        cls = row_classes[k] if row_classes else None
        cells = "".join(f'<td{" class=num" if i in numeric else ""}>{esc(c)}</td>' for i, c in enumerate(row))
        body.append(f'<tr{f" class={esc(cls)!r}" if cls else ""}>{cells}</tr>')
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# ---------------------------------------------------------------------------------------
# models side by side: the paradox table for every model


@section("models", "Models side by side", order=22)
def models_section(run: RunTables, figures: Figures) -> Fragment | None:
    df = run.parquet("models")
    if not _has(df, {"model", "condition", "mean_amp"}):
        return None
    for c in ("mean_amp_lo", "mean_amp_hi", "mean_amp_abs", "n_occupations", "n_flagged", "n_amplified",
              "n_reflected", "n_mitigated", "n_significant"):
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    df = df.with_columns(pl.col("model", "condition").cast(pl.Utf8), pl.col("mean_amp").cast(pl.Float64, strict=False))
    df = df.filter(pl.col("model").is_not_null() & pl.col("condition").is_not_null())
    if not len(df):
        return None
    models = df["model"].unique(maintain_order=True).to_list()
    conds = order_conditions(df["condition"].to_list())
    cell = {(r["model"], r["condition"]): r for r in df.iter_rows(named=True)}
    ci = _ci_text(run)

    header = ["condition", *[f"{m}: mean amplification [{ci} CI]" for m in models]]

    def mean_ci(m: str, c: str) -> str:
        r = cell.get((m, c)) or {}
        return fmt_ci(r.get("mean_amp"), r.get("mean_amp_lo"), r.get("mean_amp_hi"), 2)

    rows = [[c, *[mean_ci(m, c) for m in models]] for c in conds]
    table = Table(header, rows, numeric=set(range(1, len(header))))

    series = []
    for m in models:
        steps = [f"{c} {fmt_num(cell[(m, c)]['mean_amp'], 2, signed=True)}" for c in conds
                 if (m, c) in cell and _finite(cell[(m, c)]["mean_amp"])]
        if steps:
            series.append((m, " → ".join(steps)))
    lead = (f"Mean amplification over occupations, in percentage points, per condition and model, with {ci} "
            "bootstrap intervals. The study's series for Stable Diffusion against LAION was 12.57 → 7.92 → 7.55 → "
            "4.35 as the training captions were made more like the prompts; the same series for the models here:")
    h, m_ = paragraph(lead)
    series_html = "<ul>" + "".join(f"<li><strong>{esc(m)}</strong>: {esc(s)}</li>" for m, s in series) + "</ul>"
    series_md = "\n".join(f"- **{md_esc(m)}**: {md_esc(s)}" for m, s in series)
    html_parts, md_parts = [h, series_html, table.html()], [m_, series_md, table.markdown()]

    def draw(fig) -> None:
        ax = fig.subplots()
        n_m = len(models)
        width = 0.7 / max(n_m, 1)
        for k, m in enumerate(models):
            xs, ys, lo, hi = [], [], [], []
            for i, c in enumerate(conds):
                r = cell.get((m, c))
                if r is None or not _finite(r["mean_amp"]):
                    continue
                xs.append(i - 0.35 + width * (k + 0.5))
                ys.append(r["mean_amp"])
                lo.append(r["mean_amp"] - r["mean_amp_lo"] if _finite(r["mean_amp_lo"]) else 0.0)
                hi.append(r["mean_amp_hi"] - r["mean_amp"] if _finite(r["mean_amp_hi"]) else 0.0)
            color = MODEL_COLORS[k % len(MODEL_COLORS)]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=5, color=color, capsize=3, lw=1.2, label=mpl_text(m))
        ax.axhline(0, color="#333333", lw=0.8)
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels([mpl_text(c) for c in conds], fontsize=8, rotation=15 if len(conds) > 3 else 0)
        ax.set_xlim(-0.6, len(conds) - 0.4)
        ax.set_ylabel("mean amplification (points)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="#eeeeee", lw=0.6)
        ax.legend(fontsize=7, frameon=False)

    ref = figures.add(draw, "models-by-condition", f"Mean amplification per condition and model, with {ci} intervals",
                      (min(7.5, 2.2 + 1.2 * len(conds)), 3.4))
    html_parts.append(ref.html)
    md_parts.append(ref.markdown)

    count_cols = [("n_occupations", "occupations"), ("n_amplified", "amplified"), ("n_reflected", "reflected"),
                  ("n_mitigated", "mitigated"), ("n_significant", "significant (q < 0.05)"), ("n_flagged", "flagged")]
    crow = []
    for m in models:
        for c in conds:
            r = cell.get((m, c))
            if r is None:
                continue
            crow.append([m, c, fmt_ci(r["mean_amp_abs"], None, None, 2),
                         *[fmt_num(int(r[k]) if _finite(r[k]) else None) for k, _ in count_cols]])
    ct = Table(["model", "condition", "mean absolute form", *[t for _, t in count_cols]], crow, numeric=set(range(2, 9)))
    html_parts.append(details("Counts per model and condition", ct.html()))
    md_parts += ["**Counts per model and condition**", ct.markdown()]

    amp = run.parquet("amplification_models")
    if len(models) > 1 and _has(amp, {"model", "condition", "occupation", "amp"}):
        for c in conds:
            sub = amp.filter(pl.col("condition") == c)
            if not len(sub):
                continue
            by = {(r["model"], r["occupation"]): r for r in sub.iter_rows(named=True)}
            occs = sorted(sub["occupation"].cast(pl.Utf8).unique().to_list())
            orows = [[o, *[fmt_ci((by.get((m, o)) or {}).get("amp"), (by.get((m, o)) or {}).get("amp_lo"),
                                  (by.get((m, o)) or {}).get("amp_hi"), 1) for m in models]] for o in occs]
            ot = Table(["occupation", *[f"{m} [{ci} CI]" for m in models]], orows, numeric=set(range(1, len(models) + 1)))
            html_parts.append(details(f"Per occupation, {c}: amplification per model", ot.html()))
            md_parts += [f"**Per occupation, {md_esc(c)}: amplification per model**", ot.markdown()]
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# training-image attrition

_ATTRITION_CSS = "tr.ba-flagged td{background:#fde8e6;font-weight:600}tr.ba-flagged td:last-child{color:#b3261e}"
_STEPS = (("selected", "selected"), ("downloaded", "downloaded"), ("decoded", "decoded"),
          ("face_ok", "passed face filter"), ("confident", "confidently labelled"))


@section("training-attrition", "Training-image attrition", order=62)
def attrition_section(run: RunTables, figures: Figures) -> Fragment | None:
    df = run.parquet("attrition")
    if not _has(df, {"condition", "occupation", "selected"}):
        return None
    steps = [(k, t) for k, t in _STEPS if k in df.columns and df[k].drop_nulls().len() > 0]
    if "flagged" not in df.columns:
        df = df.with_columns(pl.lit(False).alias("flagged"))
    df = df.with_columns(pl.col("flagged").fill_null(False))
    tested = df["tested_step"].drop_nulls().unique().to_list() if "tested_step" in df.columns else []
    tested_txt = ", ".join(sorted(map(str, tested))) or "decoded"
    lead = (f"How many of the selected training captions kept an image at each step, per condition. Losses are tested "
            f"at the step “{tested_txt}”: a chi-square test across occupations (differential loss when p < 0.05), and "
            "per occupation an exact binomial test against the condition's median retention (Benjamini–Hochberg "
            "adjusted q). Highlighted occupations lose markedly more or fewer images than most; their shares may be "
            "biased by what was lost.")
    h, m = paragraph(lead)
    html_parts, md_parts = [_style(_ATTRITION_CSS), h], [m]

    loss_cols = [c for c in df.columns if c.startswith("lost_") and df[c].drop_nulls().sum() > 0]
    if "not_fetched" in df.columns and df["not_fetched"].drop_nulls().sum() > 0:
        loss_cols.append("not_fetched")
    conds = order_conditions(df["condition"].cast(pl.Utf8).to_list())
    srows, sclasses = [], []
    for c in conds:
        sub = df.filter(pl.col("condition") == c)
        tot = {k: int(sub[k].drop_nulls().sum()) for k, _ in steps}
        sel = tot.get("selected", 0)
        chi_p = sub["chi2_p"].drop_nulls()[0] if "chi2_p" in sub.columns and sub["chi2_p"].drop_nulls().len() else None
        diff = sub["differential"].drop_nulls()[0] if "differential" in sub.columns and sub["differential"].drop_nulls().len() else None
        n_flag = int(sub["flagged"].sum())
        row = [c, str(len(sub))]
        for k, _ in steps:
            row.append(f"{tot[k]} ({fmt_pct(tot[k] / sel, 0)})" if k != "selected" and sel else str(tot[k]))
        row += ["–" if chi_p is None else (f"{chi_p:.3g}" if chi_p >= 0.001 else "<0.001"),
                "–" if diff is None else ("yes" if diff else "no"), str(n_flag)]
        srows.append(row)
        sclasses.append("ba-flagged" if diff or n_flag else None)
    sheader = ["condition", "occupations", *[t for _, t in steps], "chi-square p", "differential loss", "flagged occupations"]
    html_parts.append(_table_html(sheader, srows, numeric=set(range(1, len(sheader) - 2)), row_classes=sclasses))
    md_parts.append(Table(sheader, srows, numeric=set(range(1, len(sheader) - 2))).markdown())
    if loss_cols:
        lrows = [[c, *[str(int(df.filter(pl.col("condition") == c)[k].drop_nulls().sum())) for k in loss_cols]] for c in conds]
        lt = Table(["condition", *[k.removeprefix("lost_").replace("_", " ") for k in loss_cols]], lrows,
                   numeric=set(range(1, len(loss_cols) + 1)))
        html_parts.append(details("Why images were lost", lt.html()))
        md_parts += ["**Why images were lost**", lt.markdown()]

    header = ["occupation", *[t for _, t in steps], "retained", "median retained", "gap", "q", "flag"]
    for c in conds:
        sub = df.filter(pl.col("condition") == c).sort("occupation")
        rows, classes = [], []
        for r in sub.iter_rows(named=True):
            q = r.get("q_value")
            flag = r.get("flag") or ("flagged" if r["flagged"] else "")
            rows.append([r["occupation"], *[fmt_num(r.get(k)) for k, _ in steps], fmt_pct(r.get("retained")),
                         fmt_pct(r.get("retained_median")), fmt_pct(r.get("gap")) if r.get("gap") is not None else "–",
                         "–" if not _finite(q) else (f"{q:.3g}" if q >= 0.001 else "<0.001"),
                         f"⚑ {flag}" if r["flagged"] else ""])
            classes.append("ba-flagged" if r["flagged"] else None)
        n_flag = sum(1 for x in classes if x)
        numeric = set(range(1, len(header) - 1))
        summary = f"{c}: {len(sub)} occupations, {n_flag} flagged"
        html_parts.append(details(summary, _table_html(header, rows, numeric=numeric, row_classes=classes), open_=n_flag > 0))
        md_parts += [f"### {md_esc(summary)}", Table(header, rows, numeric=numeric).markdown()]
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# similarity diagnostics


def _quantile_stats(values: list[float]) -> dict:
    import numpy as np

    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if not len(a):
        return {}
    q = np.quantile(a, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": int(len(a)), "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max()),
            **dict(zip(QUANTILES, map(float, q)))}


def text_similarity_stats(run: RunTables) -> tuple[dict[str, dict], str] | None:
    """Caption↔prompt similarity per condition: {condition: {n, mean, q05…q95}} and where it
    came from. From the selected captions' own similarities when selection.parquet carries
    them (rows pooled over templates where a condition has them, so every caption counts
    once and conditions compare like with like); otherwise from diagnostics/similarity.parquet,
    whose per-occupation quantiles are averaged (weighted by captions). The `all-mentions`
    baseline comes from the diagnostics."""
    stats: dict[str, dict] = {}
    source = ""
    sel = run.parquet("selection")
    if _has(sel, {"condition", "similarity"}) and sel["similarity"].drop_nulls().len() > 0:
        sel = sel.with_columns(pl.col("condition").cast(pl.Utf8), pl.col("similarity").cast(pl.Float64, strict=False))
        sel = sel.filter(pl.col("condition").is_not_null() & pl.col("similarity").is_not_null()
                         & pl.col("similarity").is_not_nan())
        for c in order_conditions(sel["condition"].cast(pl.Utf8).to_list()):
            sub = sel.filter(pl.col("condition") == c)
            if "template" in sub.columns:
                pooled = sub.filter(pl.col("template").is_null() | (pl.col("template") == POOLED))
                sub = pooled if len(pooled) else sub
            s = _quantile_stats(sub["similarity"].to_list())
            if s:
                stats[c] = s | {"exact": True}
        source = "selection.parquet"
    diag = run.parquet("diagnostics/similarity")
    if _has(diag, {"condition", "n", "mean", *QUANTILES}):
        d = diag.filter(pl.col("n") > 0)
        if "template" in d.columns:  # per condition, the rows pooled over templates when present
            has_pooled = d.group_by("condition").agg((pl.col("template").is_null() | (pl.col("template") == POOLED)).any().alias("_p"))
            d = d.join(has_pooled, on="condition").filter(
                ~pl.col("_p") | pl.col("template").is_null() | (pl.col("template") == POOLED)).drop("_p")
        for c in order_conditions(d["condition"].cast(pl.Utf8).to_list()):
            if c in stats:
                continue
            sub = d.filter(pl.col("condition") == c)
            w = sub["n"].cast(pl.Float64)
            tot = float(w.sum())
            s = {"n": int(tot), "exact": False}
            for k in ("mean", *QUANTILES):
                s[k] = float((sub[k].cast(pl.Float64) * w).sum() / tot)
            for k, f in (("min", "min"), ("max", "max")):
                if k in sub.columns:
                    s[k] = float(getattr(sub[k], f)())
            stats[c] = s
        source = f"{source} and diagnostics/similarity.parquet" if source else "diagnostics/similarity.parquet"
    if not stats:
        return None
    return stats, source


def _fmt3(v: Any) -> str:
    return "–" if not _finite(v) else f"{v:.3f}"


@section("similarity-diagnostics", "Similarity diagnostics", order=64)
def similarity_section(run: RunTables, figures: Figures) -> Fragment | None:
    text = text_similarity_stats(run)
    img = run.parquet("image_similarity")
    if not _has(img, {"condition", "similarity"}):
        img = run.parquet("similarity")  # `biasamp similarity --out similarity.parquet`
        if not _has(img, {"condition", "similarity", "n_train", "n_gen"}):
            img = None
    if text is None and img is None:
        return None
    html_parts: list[str] = []
    md_parts: list[str] = []
    if text is not None:
        stats, source = text
        conds = list(stats)
        h, m = paragraph(
            "Cosine similarity between each selected training caption and the occupation's prompts (pooled over "
            "templates), per condition: the study's explanation of the paradox is that captions chosen by keyword are "
            "unlike the prompts, and nearest neighbours close that gap. “all-mentions” is every caption that mentions "
            "the occupation. Rows marked ≈ average per-occupation quantiles (weighted by captions) rather than pool "
            f"all captions. Source: {source}.")
        rows = [[c + ("" if s.get("exact", True) else " ≈"), fmt_num(s.get("n")), _fmt3(s.get("mean")),
                 *[_fmt3(s.get(q)) for q in QUANTILES]] for c, s in stats.items()]
        t = Table(["condition", "captions", "mean", "5%", "25%", "median", "75%", "95%"], rows, numeric=set(range(1, 8)))

        def draw(fig) -> None:
            ax = fig.subplots()
            bxp = [{"label": mpl_text(c), "whislo": s["q05"], "q1": s["q25"], "med": s["q50"], "q3": s["q75"],
                    "whishi": s["q95"], "mean": s["mean"], "fliers": []} for c, s in stats.items()]
            ax.bxp(bxp, orientation="horizontal", showmeans=True, patch_artist=True,
                   boxprops={"facecolor": "#dbe6f3", "edgecolor": "#1f5fa8"},
                   meanprops={"marker": "D", "markerfacecolor": "#b3261e", "markeredgecolor": "#b3261e", "markersize": 4},
                   medianprops={"color": "#1f5fa8"})
            ax.invert_yaxis()
            ax.set_xlabel("cosine similarity caption ↔ prompt (box: quartiles, whiskers: 5%–95%, ◆ mean)", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(axis="x", color="#eeeeee", lw=0.6)

        ref = figures.add(draw, "text-similarity", "Caption ↔ prompt similarity per condition", (6.8, 0.9 + 0.42 * len(conds)))
        html_parts += ["<h3>Caption ↔ prompt (text)</h3>", h, ref.html, t.html()]
        md_parts += ["### Caption ↔ prompt (text)", m, ref.markdown, t.markdown()]
        diag = run.parquet("diagnostics/similarity")
        if _has(diag, {"condition", "occupation", "q50"}):
            d = diag
            if "template" in d.columns:
                d = d.filter(pl.col("template").is_null() | (pl.col("template") == POOLED))
            if len(d):
                dconds = order_conditions(d["condition"].cast(pl.Utf8).to_list())
                med = {(r["occupation"], r["condition"]): r["q50"] for r in d.iter_rows(named=True)}
                occs = sorted(d["occupation"].cast(pl.Utf8).unique().to_list())
                ot = Table(["occupation", *dconds], [[o, *[_fmt3(med.get((o, c))) for c in dconds]] for o in occs],
                           numeric=set(range(1, len(dconds) + 1)))
                html_parts.append(details("Median similarity per occupation", ot.html()))
                md_parts += ["**Median similarity per occupation**", ot.markdown()]
    if img is not None:
        img = img.with_columns(pl.col("condition").cast(pl.Utf8), pl.col("similarity").cast(pl.Float64, strict=False))
        img = img.filter(pl.col("condition").is_not_null() & pl.col("similarity").is_not_null()
                         & pl.col("similarity").is_not_nan())
        conds = order_conditions(img["condition"].cast(pl.Utf8).to_list())
        if conds:
            h, m = paragraph(
                "Mean pairwise cosine similarity between training and generated image embeddings, per occupation, "
                "summarised per condition (mean over occupations; within-training and within-generated similarity "
                "for scale). Higher means the training images chosen by a condition look more like what the model "
                "draws.")
            rows = []
            for c in conds:
                sub = img.filter(pl.col("condition") == c)
                rows.append([c, str(len(sub)),
                             fmt_num(int(sub["n_train"].sum())) if "n_train" in sub.columns else "–",
                             fmt_num(int(sub["n_gen"].sum())) if "n_gen" in sub.columns else "–",
                             _fmt3(sub["similarity"].mean()),
                             _fmt3(sub["similarity"].min()) + " – " + _fmt3(sub["similarity"].max()),
                             _fmt3(sub["within_train"].drop_nulls().mean()) if "within_train" in sub.columns else "–",
                             _fmt3(sub["within_gen"].drop_nulls().mean()) if "within_gen" in sub.columns else "–"])
            t = Table(["condition", "occupations", "training images", "generated images", "mean similarity", "range",
                       "within training", "within generated"], rows, numeric=set(range(1, 8)))

            def draw_img(fig) -> None:
                ax = fig.subplots()
                for i, c in enumerate(conds):
                    sub = img.filter(pl.col("condition") == c)
                    ys = sub["similarity"].to_list()
                    xs = [i + 0.18 * ((k % 7) - 3) / 3 for k in range(len(ys))]
                    ax.scatter(xs, ys, s=10, color="#1f5fa8", alpha=0.55, lw=0)
                    if {"ci_low", "ci_high"} <= set(sub.columns):
                        for x, lo, hi in zip(xs, sub["ci_low"].to_list(), sub["ci_high"].to_list()):
                            if _finite(lo) and _finite(hi):
                                ax.plot([x, x], [lo, hi], color="#1f5fa8", alpha=0.35, lw=0.8)
                    ax.plot([i - 0.3, i + 0.3], [sub["similarity"].mean()] * 2, color="#b3261e", lw=2)
                ax.set_xticks(range(len(conds)))
                ax.set_xticklabels([mpl_text(c) for c in conds], fontsize=8)
                ax.set_ylabel("mean cosine similarity (training ↔ generated)", fontsize=8)
                ax.tick_params(axis="y", labelsize=7)
                ax.grid(axis="y", color="#eeeeee", lw=0.6)

            ref = figures.add(draw_img, "image-similarity", "Training ↔ generated image-embedding similarity per "
                              "occupation (dots, with intervals) and condition mean (bar)", (min(7.5, 2.0 + 1.3 * len(conds)), 3.2))
            html_parts += ["<h3>Training ↔ generated images (embeddings)</h3>", h, ref.html, t.html()]
            md_parts += ["### Training ↔ generated images (embeddings)", m, ref.markdown, t.markdown()]
            if "occupation" in img.columns:
                orows = [[r["occupation"], r["condition"], fmt_num(r.get("n_train")), fmt_num(r.get("n_gen")),
                          (_fmt3(r["similarity"]) + (f" [{_fmt3(r.get('ci_low'))}, {_fmt3(r.get('ci_high'))}]"
                                                     if _finite(r.get("ci_low")) and _finite(r.get("ci_high")) else ""))]
                         for r in img.sort("occupation").iter_rows(named=True)]
                ot = Table(["occupation", "condition", "training", "generated", "similarity [CI]"], orows, numeric={2, 3, 4})
                html_parts.append(details("Per occupation", ot.html()))
                md_parts += ["**Per occupation**", ot.markdown()]
    if not html_parts:
        return None
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# classifier validation


def _validation(run: RunTables) -> tuple[dict | None, pl.DataFrame | None]:
    summ = run.json("validation") or run.json("validation/validation")
    met = run.parquet("validation")
    if met is None:
        met = run.parquet("validation/validation")
    if not _has(met, {"backend", "metric", "value"}):
        met = None
    if not isinstance(summ, dict) or not isinstance(summ.get("backends"), dict) or not summ["backends"]:
        summ = None
    return summ, met


def _metrics_from_summary(summ: dict) -> pl.DataFrame:
    rows = []
    for name, s in summ["backends"].items():
        for cls, pc in (s.get("per_class") or {}).items():
            for metric in ("sensitivity", "specificity", "precision"):
                lo, hi = (pc.get(f"{metric}_ci") or [None, None])[:2]
                rows.append({"backend": name, "class": cls, "metric": metric, "k": None, "n": None,
                             "value": pc.get(metric), "ci_low": lo, "ci_high": hi})
        for metric in ("accuracy", "coverage"):
            lo, hi = (s.get(f"{metric}_ci") or [None, None])[:2]
            rows.append({"backend": name, "class": None, "metric": metric, "k": None, "n": None,
                         "value": s.get(metric), "ci_low": lo, "ci_high": hi})
        k = s.get("kappa") or {}
        rows.append({"backend": name, "class": None, "metric": "kappa", "k": None, "n": k.get("n"),
                     "value": k.get("kappa"), "ci_low": k.get("ci_low"), "ci_high": k.get("ci_high")})
    return pl.DataFrame(rows, schema={"backend": pl.Utf8, "class": pl.Utf8, "metric": pl.Utf8, "k": pl.Int64,
                                      "n": pl.Int64, "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})


@section("classifier-validation", "Classifier validation", order=55)
def validation_section(run: RunTables, figures: Figures) -> Fragment | None:
    summ, met = _validation(run)
    if summ is None and met is None:
        return None
    if met is None:
        met = _metrics_from_summary(summ)
    for c in ("class", "k", "n", "ci_low", "ci_high"):
        if c not in met.columns:
            met = met.with_columns(pl.lit(None).alias(c))
    ref_txt = (summ or {}).get("reference")
    h, m = paragraph(
        "How the perceived-gender classifier compares with reference labels"
        + (f" ({ref_txt})" if ref_txt else "")
        + ": the confusion matrix (rows: reference; columns: what the classifier said, abstentions included), and "
        "sensitivity, specificity and precision per class with 95% Wilson intervals. These error rates are what the "
        "correction for classifier error uses.")
    html_parts, md_parts = [h], [m]
    backends = list((summ or {}).get("backends") or {}) or met["backend"].unique(maintain_order=True).to_list()
    for b in backends:
        s = ((summ or {}).get("backends") or {}).get(b) or {}
        bm = met.filter(pl.col("backend") == b)
        html_parts.append(f"<h3>{esc(b)}</h3>")
        md_parts.append(f"### {md_esc(b)}")
        conf = s.get("confusion")
        if isinstance(conf, dict) and conf:
            first = {"female": 0, "male": 1}
            refs = sorted(conf, key=lambda v: (first.get(v, 2), str(v)))
            preds = sorted({p for r in refs for p in (conf[r] or {})}, key=lambda v: (first.get(v, 2), str(v)))
            mat = [[int((conf[r] or {}).get(p) or 0) for p in preds] for r in refs]
            ct = Table(["reference \\ predicted", *preds, "total"], [[r, *map(str, row), str(sum(row))] for r, row in zip(refs, mat)],
                       numeric=set(range(1, len(preds) + 2)), caption="Confusion matrix")

            def draw_conf(fig, refs=refs, preds=preds, mat=mat) -> None:
                ax = fig.subplots()
                vmax = max(max(row) for row in mat) or 1
                ax.imshow(mat, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
                for i, row in enumerate(mat):
                    for j, v in enumerate(row):
                        ax.text(j, i, str(v), ha="center", va="center", fontsize=9,
                                color="white" if v > 0.6 * vmax else "#1d232a")
                ax.set_xticks(range(len(preds)))
                ax.set_xticklabels([mpl_text(p) for p in preds], fontsize=8)
                ax.set_yticks(range(len(refs)))
                ax.set_yticklabels([mpl_text(r) for r in refs], fontsize=8)
                ax.set_xlabel("predicted", fontsize=8)
                ax.set_ylabel("reference", fontsize=8)

            fr = figures.add(draw_conf, f"confusion-{b}", f"Confusion matrix: {b}", (1.6 + 0.9 * len(preds), 0.9 + 0.7 * len(refs)))
            html_parts += [fr.html, ct.html()]
            md_parts += [fr.markdown, ct.markdown()]
        rows = []
        for r in bm.iter_rows(named=True):
            if r["metric"] == "kappa":
                val = fmt_ci(r["value"], r["ci_low"], r["ci_high"], 3, signed=False)
            else:
                val = fmt_pct_ci(r["value"], r["ci_low"], r["ci_high"])
            kn = f"{r['k']}/{r['n']}" if r["k"] is not None and r["n"] is not None else fmt_num(r["n"])
            rows.append([r["metric"], r["class"] or "", val, kn])
        if rows:
            mt = Table(["metric", "class", "value [95% CI]", "k/n"], rows, numeric={2, 3})
            pts = bm.filter(pl.col("metric").is_in(["sensitivity", "specificity", "precision"]) & pl.col("value").is_not_null())
            if len(pts):
                def draw_ci(fig, pts=pts) -> None:
                    ax = fig.subplots()
                    labels = [f"{mpl_text(c)} {mt_}" for c, mt_ in zip(pts["class"].to_list(), pts["metric"].to_list())]
                    for y, (v, lo, hi) in enumerate(zip(pts["value"].to_list(), pts["ci_low"].to_list(), pts["ci_high"].to_list())):
                        if _finite(lo) and _finite(hi):
                            ax.plot([lo, hi], [y, y], color="#1f5fa8", lw=1.6)
                        ax.plot([v], [y], "o", color="#1f5fa8", ms=5)
                    ax.set_yticks(range(len(labels)))
                    ax.set_yticklabels(labels, fontsize=8)
                    ax.invert_yaxis()
                    ax.set_xlim(min(0.5, min(x for x in pts["ci_low"].fill_null(1.0).to_list())) - 0.02, 1.01)
                    ax.set_xlabel("share (95% Wilson interval)", fontsize=8)
                    ax.tick_params(axis="x", labelsize=7)
                    ax.grid(axis="x", color="#eeeeee", lw=0.6)

                fr2 = figures.add(draw_ci, f"validation-{b}", f"Sensitivity, specificity and precision with 95% intervals: {b}",
                                  (5.6, 0.8 + 0.32 * len(pts)))
                html_parts.append(fr2.html)
                md_parts.append(fr2.markdown)
            html_parts.append(mt.html())
            md_parts.append(mt.markdown())
    between = (summ or {}).get("between_backends") or []
    if between:
        brow = []
        for x in between:
            k = x.get("kappa_confident") or {}
            brow.append([x.get("a"), x.get("b"), fmt_num(x.get("n_shared")),
                         fmt_ci(k.get("kappa"), k.get("ci_low"), k.get("ci_high"), 3, signed=False)])
        bt = Table(["classifier", "classifier", "shared images", "Cohen's kappa (confident labels) [95% CI]"], brow, numeric={2, 3})
        html_parts += ["<h3>Agreement between classifiers</h3>", bt.html()]
        md_parts += ["### Agreement between classifiers", bt.markdown()]
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# example images


def read_image_bytes(path: str, run_dir: Path, tars: dict[str, tarfile.TarFile]) -> bytes | None:
    """The bytes of an image file or a `shard.tar::member`; None when it cannot be read.
    Relative paths are taken from `run_dir`; open tar files are kept in `tars`."""
    try:
        if "::" in path:
            tar_path, member = path.split("::", 1)
            p = Path(tar_path)
            p = p if p.is_absolute() else run_dir / p
            key = str(p)
            if key not in tars:
                tars[key] = tarfile.open(p, "r:*")
            f = tars[key].extractfile(member)
            return None if f is None else f.read()
        p = Path(path)
        p = p if p.is_absolute() else run_dir / p
        return p.read_bytes()
    except (OSError, KeyError, tarfile.TarError, ValueError):
        return None


def thumbnail_png(data: bytes, max_side: int = 96, *, palette: bool = True) -> tuple[bytes, int, int] | None:
    """A PNG thumbnail whose longer side is at most `max_side` pixels (aspect kept, never
    enlarged), with its width and height; None when the bytes are not an image Pillow can
    decode. With `palette`, colour images are reduced to a 256-colour palette (fast octree,
    dithered), which shrinks a photo's thumbnail by about two thirds at no visible cost at
    this size."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB")
            im.thumbnail((max_side, max_side))
            if palette and im.mode in ("RGB", "RGBA"):
                im = im.quantize(256, method=Image.Quantize.FASTOCTREE)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
            return buf.getvalue(), im.width, im.height
    except Exception:  # noqa: BLE001 - any undecodable file becomes a placeholder, never a crash
        return None


def _examples_css(size: int) -> str:
    return (
        ".ba-occ{margin:0.3rem 0 0.9rem}.ba-occ h4{margin:0.2rem 0;font-size:0.95rem}"
        ".ba-thumbs{display:flex;flex-wrap:wrap;gap:0.45rem}"
        f".ba-thumb{{width:{size + 8}px;margin:0;font-size:0.72rem;color:#5b6570;line-height:1.2;overflow-wrap:anywhere}}"
        ".ba-thumb span{display:block;margin-top:0.15rem}"
        f".ba-thumb img{{display:block;max-width:{size}px;max-height:{size}px;border:1px solid #d6dbe0}}"
        f".ba-missing{{width:{size}px;height:{size}px;display:flex;align-items:center;justify-content:center;"
        "text-align:center;background:#f5f7f9;border:1px dashed #a0a7ae;color:#5b6570}"
    )


@section("example-images", "Example images", order=75)
def examples_section(run: RunTables, figures: Figures) -> Fragment | None:
    ex = run.parquet("examples")
    if not _has(ex, {"occupation", "image_path"}):
        return None
    for c in ("model", "condition", "group", "prompt", "item_id", "label"):
        if c not in ex.columns:
            ex = ex.with_columns(pl.lit(None, dtype=pl.Utf8).alias(c))
    ex = ex.with_columns(pl.col(c).cast(pl.Utf8) for c in ("model", "occupation", "condition", "label", "prompt", "item_id",
                                                          "image_path"))
    cond_rank = {c: i for i, c in enumerate(order_conditions(ex["condition"].drop_nulls().to_list()))}
    ex = ex.with_columns(pl.col("condition").replace_strict(cond_rank, default=len(cond_rank), return_dtype=pl.Int64).alias("_c"))
    models = ex["model"].unique(maintain_order=True).to_list()
    thumb_dir = figures.out_dir / "thumbnails"
    tars: dict[str, tarfile.TarFile] = {}
    written: set[str] = set()
    shown = missing = left_out = 0
    h, m = paragraph(
        f"A few generated images per occupation (thumbnails, at most {THUMB_SIZE} px), with the condition they were "
        "generated for and the classifier's label. Hover a thumbnail for its prompt. An image that could not be "
        "read is shown as a grey box.")
    html_parts, md_parts = [_style(_examples_css(THUMB_SIZE)), h], [m]
    try:
        for mi, model in enumerate(models):
            sub = ex.filter(pl.col("model").is_null() if model is None else pl.col("model") == model)
            occs = sorted(sub["occupation"].drop_nulls().unique().to_list())
            occ_html, occ_md = [], []
            for occ in occs:
                rows = sub.filter(pl.col("occupation") == occ).sort("_c", "item_id", nulls_last=True).head(EXAMPLES_PER_OCCUPATION)
                cells, md_imgs = [], []
                for r in rows.iter_rows(named=True):
                    if shown + missing >= MAX_THUMBNAILS:
                        left_out += 1
                        continue
                    cap = " · ".join(str(x) for x in (r["condition"], r["label"]) if x)
                    alt = f"{occ} — {cap}" if cap else str(occ)
                    title = r["prompt"] or alt
                    data = read_image_bytes(str(r["image_path"] or ""), run.run_dir, tars) if r["image_path"] else None
                    th = thumbnail_png(data, THUMB_SIZE) if data is not None else None
                    if th is None:
                        missing += 1
                        cells.append(f'<div class="ba-thumb" title="{esc(title)}"><div class="ba-missing">image '
                                     f'missing</div><span>{esc(cap)}</span></div>')
                        md_imgs.append(f"[image missing: {md_esc(alt)}]")
                        continue
                    png, w, hgt = th
                    shown += 1
                    b64 = base64.b64encode(png).decode("ascii")
                    cells.append(f'<div class="ba-thumb" title="{esc(title)}"><img src="data:image/png;base64,{b64}" '
                                 f'width="{w}" height="{hgt}" alt="{esc(alt)}"><span>{esc(cap)}</span></div>')
                    if figures.write_files:
                        from biasamp.store import atomic_write_bytes

                        name = f"m{mi}-{shown:04d}.png"
                        atomic_write_bytes(png, thumb_dir / name)
                        written.add(name)
                        md_imgs.append(f"![{md_esc(alt)}](thumbnails/{name})")
                    else:
                        md_imgs.append(f"[{md_esc(alt)}]")
                if cells:
                    occ_html.append(f'<div class="ba-occ"><h4>{esc(occ)}</h4><div class="ba-thumbs">{"".join(cells)}</div></div>')
                    occ_md.append(f"**{md_esc(occ)}**\n\n" + " ".join(md_imgs))
            if occ_html:
                label = model if model is not None else "generated images"
                n_occ = len(occ_html)
                html_parts.append(details(f"{label}: {n_occ} occupation{'' if n_occ == 1 else 's'}", "".join(occ_html),
                                          open_=(mi == 0)))
                md_parts += [f"### {md_esc(label)}", *occ_md]
    finally:
        for t in tars.values():
            t.close()
    if figures.write_files and thumb_dir.is_dir():  # thumbnails of an earlier build that this one did not write
        for old in thumb_dir.glob("m*-*.png"):
            if old.name not in written:
                old.unlink(missing_ok=True)
    if shown + missing == 0:
        return None
    notes = []
    if missing:
        notes.append(f"{missing} image(s) could not be read (missing file or undecodable); shown as grey boxes.")
    if left_out:
        notes.append(f"{left_out} more image(s) not shown (at most {MAX_THUMBNAILS} on the page); see examples.parquet.")
    for n in notes:
        nh, nm = paragraph(n)
        html_parts.append(nh.replace("<p>", '<p class="note">', 1))
        md_parts.append(f"*{nm}*")
    return Fragment("".join(html_parts), join_md(md_parts))


# ---------------------------------------------------------------------------------------
# the exact config


def _fence(text: str) -> str:
    longest = max((len(x) for x in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


@section("study-config", "Study config", order=95)
def config_section(run: RunTables, figures: Figures) -> Fragment | None:
    p = run.run_dir / "config.toml"
    lang = "toml"
    text = None
    if p.is_file():
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = None
    if text is None:
        cfg = run.json("config")
        if cfg is None:
            return None
        text, lang = json.dumps(cfg, indent=2, ensure_ascii=False, default=str), "json"
    what = "the config file exactly as it was read" if lang == "toml" else "the validated config (config.json)"
    h, m = paragraph(f"The study ran from {what}; rerunning it with `biasamp run` reproduces this report.")
    pre = ('<pre style="overflow:auto;max-height:40rem;max-width:100%;background:#f5f7f9;border:1px solid #d6dbe0;'
           f'padding:0.6rem 0.8rem;font-size:0.85rem"><code>{esc(text)}</code></pre>')
    fence = _fence(text)
    md = f"{fence}{lang}\n{text.rstrip(chr(10))}\n{fence}"
    return Fragment(h + pre, join_md([m, md]))
