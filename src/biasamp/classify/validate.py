"""Validation of a classifier against reference labels (human or another backend).

Input: labels tables with a `label` (predicted) and a `reference` (true: female|male,
compared stripped and lower-cased) column, or labels plus human annotations joined on
item_id; a table with no female/male reference is an error, other reference values a
warning. Output: accuracy, the confusion matrix, sensitivity and specificity per class
with Wilson intervals, and Cohen's kappa with the Fleiss-Cohen-Everitt (1969) large-sample interval
(with humans, and between backends). The labelled table (`item_id, label,
reference`) is what the measure stage's `--validation` reads to correct shares for
classifier error.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import polars as pl

from biasamp.agreement import chance_corrected_parts
from biasamp.agreement import cohen_kappa as _cohen_kappa
from biasamp.errors import BiasampError

CONFIDENT = ("female", "male")
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for k successes out of n (None, None when n = 0)."""
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (no rounding residue)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def _kappa_variance(a: list[str], b: list[str]) -> Fraction:
    """n · Var(kappa-hat): the large-sample variance of Fleiss, Cohen & Everitt (1969), in
    exact arithmetic (so that it is 0 exactly where the table makes it 0, never -1e-17).

    With p_ij the share of items rated i by `a` and j by `b`, p_i. and p_.j the margins and
    p_e = sum_i p_i. p_.i, their formula is
        [sum_i p_ii (1 - (p_i. + p_.i)(1 - k))^2 + (1 - k)^2 sum_{i!=j} p_ij (p_.i + p_j.)^2
         - (k - p_e (1 - k))^2] / (1 - p_e)^2,
    computed here as the variance over the cells (weights p_ij) of g_ii = 1 - (p_i. + p_.i)(1 - k)
    and g_ij = -(1 - k)(p_.i + p_j.), whose mean is k - p_e (1 - k): the same expression, and
    visibly >= 0. Needs p_e < 1."""
    n = len(a)
    cells = Counter(zip(a, b))
    rows, cols = Counter(a), Counter(b)
    p_o = Fraction(sum(c for (i, j), c in cells.items() if i == j), n)
    p_e = Fraction(sum(rows[k] * cols[k] for k in rows), n * n)
    one_minus_k = 1 - (p_o - p_e) / (1 - p_e)
    mean = second = Fraction(0)
    for (i, j), c in cells.items():
        p = Fraction(c, n)
        if i == j:
            g = 1 - Fraction(rows[i] + cols[i], n) * one_minus_k
        else:
            g = -one_minus_k * Fraction(cols[i] + rows[j], n)
        mean += p * g
        second += p * g * g
    return (second - mean * mean) / (1 - p_e) ** 2


def cohen_kappa(a, b, z: float = Z95) -> dict:
    """Cohen's kappa between two label sequences (any number of categories), with its
    large-sample standard error and Wald interval.

    The statistic is `biasamp.agreement.cohen_kappa`'s. The SE is the asymptotic one of
    Fleiss, Cohen & Everitt (1969) (`_kappa_variance`; what statsmodels' `cohens_kappa`
    reports as `std_kappa`), not Cohen's (1960) approximation sqrt(p_o(1 - p_o)/n)/(1 - p_e),
    which overstates it when the margins are unbalanced. The interval kappa ± z·SE is clipped
    to [-1, 1], the range of kappa.

    Left empty (None), with `note` saying why:
    - kappa, SE and interval when kappa is undefined (chance agreement 1: both sequences use
      one and the same label), as everywhere in biasamp (`biasamp.agreement`);
    - SE and interval when the variance estimate is 0 (perfect agreement, for instance, at any
      n): a zero-width interval would claim a certainty no finite sample gives, and resampling
      cannot do better (every bootstrap resample of a perfectly agreeing table agrees
      perfectly), so no interval is reported.
    """
    a = [str(x) for x in a]
    b = [str(x) for x in b]
    if len(a) != len(b):
        raise ValueError("kappa needs two sequences of equal length")
    n = len(a)
    out = {"kappa": None, "se": None, "ci_low": None, "ci_high": None, "n": n, "agreement": None, "note": None}
    if n == 0:
        out["note"] = "no items to compare"
        return out
    po, _ = chance_corrected_parts(a, b)
    out["agreement"] = float(po)
    kappa = _cohen_kappa(a, b)
    if kappa is None:
        out["note"] = (f"undefined: both used a single, identical label ({a[0]!r}) on all {n} items, "
                       "so chance agreement is 1")
        return out
    out["kappa"] = float(kappa)
    var = _kappa_variance(a, b)
    if var <= 0:
        what = ("perfect agreement" if po == 1 else
                "one side using a single label (kappa is then 0 whatever the other says)"
                if len(set(a)) == 1 or len(set(b)) == 1 else "no agreement" if po == 0 else "this table")
        out["note"] = (f"no interval: the large-sample variance estimate is 0 for {what} on {n} items, "
                       "and a zero-width interval would overstate the certainty")
        return out
    se = math.sqrt(var / n)
    out.update(se=se, ci_low=max(-1.0, kappa - z * se), ci_high=min(1.0, kappa + z * se))
    return out


def _read(path) -> pl.DataFrame:
    from .pipeline import read_labels
    from biasamp.tables import read_table

    if isinstance(path, pl.DataFrame):
        return path
    p = Path(path)
    if p.is_dir():
        return read_labels(p)
    return read_table(p)


def _metrics(df: pl.DataFrame, name: str) -> tuple[dict, list[dict]]:
    pred = df["label"].cast(pl.Utf8).fill_null("excluded").to_list()
    ref = df["reference"].cast(pl.Utf8).to_list()
    pairs = [(p, r) for p, r in zip(pred, ref) if r in CONFIDENT]
    n_ref = len(pairs)
    conf = [(p, r) for p, r in pairs if p in CONFIDENT]
    n_conf = len(conf)
    correct = sum(p == r for p, r in conf)
    pred_values = sorted({p for p, _ in pairs}, key=lambda v: (v not in CONFIDENT, CONFIDENT.index(v) if v in CONFIDENT else 0, v))
    confusion = {r: {p: sum(1 for pp, rr in pairs if rr == r and pp == p) for p in pred_values} for r in CONFIDENT}
    acc_lo, acc_hi = wilson(correct, n_conf)
    cov_lo, cov_hi = wilson(n_conf, n_ref)
    rows = []
    per_class = {}
    for c in CONFIDENT:
        tp = sum(1 for p, r in conf if r == c and p == c)
        pos = sum(1 for _, r in conf if r == c)
        tn = sum(1 for p, r in conf if r != c and p != c)
        neg = sum(1 for _, r in conf if r != c)
        ppos = sum(1 for p, _ in conf if p == c)
        sens, spec = (tp / pos if pos else None), (tn / neg if neg else None)
        s_lo, s_hi = wilson(tp, pos)
        p_lo, p_hi = wilson(tn, neg)
        pr_lo, pr_hi = wilson(tp, ppos)
        per_class[c] = {"sensitivity": sens, "sensitivity_ci": [s_lo, s_hi], "specificity": spec,
                        "specificity_ci": [p_lo, p_hi], "precision": tp / ppos if ppos else None,
                        "precision_ci": [pr_lo, pr_hi], "n_reference": pos,
                        "n_reference_total": sum(1 for _, r in pairs if r == c)}
        for metric, k, n, v, lo, hi in (("sensitivity", tp, pos, sens, s_lo, s_hi), ("specificity", tn, neg, spec, p_lo, p_hi),
                                        ("precision", tp, ppos, per_class[c]["precision"], pr_lo, pr_hi)):
            rows.append({"backend": name, "class": c, "metric": metric, "k": k, "n": n, "value": v, "ci_low": lo, "ci_high": hi})
    rows.append({"backend": name, "class": None, "metric": "accuracy", "k": correct, "n": n_conf,
                 "value": correct / n_conf if n_conf else None, "ci_low": acc_lo, "ci_high": acc_hi})
    rows.append({"backend": name, "class": None, "metric": "coverage", "k": n_conf, "n": n_ref,
                 "value": n_conf / n_ref if n_ref else None, "ci_low": cov_lo, "ci_high": cov_hi})
    kappa = cohen_kappa([p for p, _ in conf], [r for _, r in conf])
    rows.append({"backend": name, "class": None, "metric": "kappa", "k": None, "n": kappa["n"], "value": kappa["kappa"],
                 "ci_low": kappa["ci_low"], "ci_high": kappa["ci_high"]})
    errors = (df.filter(pl.col("reference").is_in(list(CONFIDENT)) & pl.col("label").is_in(list(CONFIDENT))
                        & (pl.col("label") != pl.col("reference")))
              .select([c for c in ("item_id", "label", "reference", "p_female") if c in df.columns]).head(100))
    summary = {
        "backend": name, "n": len(df), "n_reference": n_ref, "n_confident": n_conf,
        "abstained_or_excluded": n_ref - n_conf,
        "accuracy": correct / n_conf if n_conf else None, "accuracy_ci": [acc_lo, acc_hi],
        "coverage": n_conf / n_ref if n_ref else None, "coverage_ci": [cov_lo, cov_hi],
        "confusion": confusion, "per_class": per_class, "kappa": kappa,
        "misclassified": errors.to_dicts(),
    }
    return summary, rows


def split_reference(raw: pl.Series) -> tuple[pl.Series, pl.Series, pl.DataFrame, str]:
    """Reference values as validation and probe training read them (stripped, lower-cased):
    (the values so read, the mask of female/male rows, counts of the other values as given,
    those counts listed for a message)."""
    raw = raw.cast(pl.Utf8)
    ref = raw.str.strip_chars().str.to_lowercase()
    ok = ref.is_in(list(CONFIDENT)).fill_null(False)
    other = raw.filter(~ok).value_counts(sort=True)
    listed = ", ".join(f"{'empty' if v is None else repr(v)} ×{n}" for v, n in other.head(10).iter_rows())
    listed += ", …" if len(other) > 10 else ""
    return ref, ok, other, listed


def _check_reference(raw: pl.Series, where, column: str, overlap: tuple | None) -> dict:
    """Refuse a table with nothing to validate against (no female/male reference), and warn
    about reference values that count as unlabelled, so that neither passes silently.
    raw: the reference values as given (compared stripped and lower-cased); overlap, with
    annotations: (item_ids joined, item_ids in the table, annotated items, examples of each).
    Returns {value: rows} of the values that count as unlabelled."""
    _, ok, other, listed = split_reference(raw)
    if not ok.any():
        if overlap is not None:
            raise BiasampError(
                f"{where}: nothing to validate against: {overlap[0]} of its {overlap[1]} item_ids are among the "
                f"{overlap[2]} annotated items, and none of them has a female or male majority label"
                + (f" (their labels: {listed})" if len(raw) else f" (e.g. {overlap[3]!r} vs {overlap[4]!r})"),
                hint="annotations join the labels on item_id: check that both name the images the same way "
                "(e.g. file names with their extension)")
        raise BiasampError(
            f"{where}: nothing to validate against: no row has reference female or male in column {column!r}"
            f" (values found: {listed or 'none, the table is empty'})",
            hint="the reference must be 'female' or 'male' (case and surrounding spaces do not matter)")
    if len(other):
        from biasamp.ui import err_console

        err_console.print(f"[yellow]warning:[/] {where}: {int(other['count'].sum())} of {len(raw)} rows have a reference "
                          f"that is neither female nor male ({listed}); they count as not reference-labelled",
                          highlight=False, soft_wrap=True)
    return {"empty" if v is None else v: int(n) for v, n in other.iter_rows()}


def validate_labels(labelled, *, annotations=None, reference_column: str = "reference", names=None,
                    out: str | Path | None = None) -> dict:
    """Validate labels against reference labels.

    labelled: labels tables (paths, classify output folders or frames) with `label` and a
    reference column; with `annotations` (human CSV/JSONL files), the human majority label
    becomes the reference, joined on item_id. Returns {"summary": dict, "metrics": frame,
    "labelled": frame}; with `out`, writes validation.json, validation.parquet (metrics)
    and labelled.parquet (item_id, backend, label, reference: what `measure --validation`
    reads: the first table's rows whose reference is female or male; with several tables,
    also labelled-<backend>.parquet for each).
    """
    from biasamp.store import atomic_write_json, atomic_write_parquet

    tables = [labelled] if isinstance(labelled, (str, Path, pl.DataFrame)) else list(labelled)
    if not tables:
        raise BiasampError("validate needs at least one labelled table")
    human = None
    if annotations:
        from .human import read_annotations, vote

        human = vote(read_annotations(annotations if isinstance(annotations, (list, tuple)) else [annotations]))
    frames, ignored = [], {}
    for i, t in enumerate(tables):
        df = _read(t)
        where = t if not isinstance(t, pl.DataFrame) else f"table {i}"
        if "label" not in df.columns or "item_id" not in df.columns:
            raise BiasampError(f"{where} has no 'label'/'item_id' column", hint="pass labels tables written by classify")
        df = df.with_columns(pl.col("item_id").cast(pl.Utf8))
        overlap = None
        if human is not None:
            n_labels, ids = len(df), df["item_id"].head(3).to_list()
            df = df.drop([c for c in ("reference",) if c in df.columns]).join(
                human.select("item_id", pl.col("label").alias("reference")), on="item_id", how="inner")
            overlap = (len(df), n_labels, len(human), ids[:3], human["item_id"].head(3).to_list())
        elif reference_column not in df.columns:
            raise BiasampError(f"{where} has no {reference_column!r} column",
                               hint="add the true labels as a 'reference' column (female|male), or pass --annotations")
        elif reference_column != "reference":
            df = df.drop([c for c in ("reference",) if c in df.columns]).rename({reference_column: "reference"})
        name = (names[i] if names else None) or (df["backend"].drop_nulls()[0] if "backend" in df.columns and df["backend"].drop_nulls().len() else f"table{i}")
        if any(f[0] == name for f in frames):
            name = f"{name}#{i}"
        ignored[name] = _check_reference(df["reference"], where, reference_column, overlap)
        df = df.with_columns(pl.col("reference").cast(pl.Utf8).str.strip_chars().str.to_lowercase())
        frames.append((name, df))
    summaries, rows = {}, []
    for name, df in frames:
        s, r = _metrics(df, name)
        summaries[name] = {**s, "reference_ignored": ignored[name]}
        rows += r
    between = []
    for a in range(len(frames)):
        for b in range(a + 1, len(frames)):
            (na, da), (nb, db) = frames[a], frames[b]
            j = da.select("item_id", pl.col("label").alias("a")).join(db.select("item_id", pl.col("label").alias("b")), on="item_id")
            both = j.filter(pl.col("a").is_in(list(CONFIDENT)) & pl.col("b").is_in(list(CONFIDENT)))
            k = cohen_kappa(both["a"].to_list(), both["b"].to_list())
            k_all = cohen_kappa(j["a"].fill_null("excluded").to_list(), j["b"].fill_null("excluded").to_list())
            between.append({"a": na, "b": nb, "n_shared": len(j), "kappa_confident": k, "kappa_all_labels": k_all})
            rows.append({"backend": f"{na} vs {nb}", "class": None, "metric": "kappa", "k": None, "n": k["n"],
                         "value": k["kappa"], "ci_low": k["ci_low"], "ci_high": k["ci_high"]})
    metrics = pl.DataFrame(rows, schema={"backend": pl.Utf8, "class": pl.Utf8, "metric": pl.Utf8, "k": pl.Int64,
                                         "n": pl.Int64, "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})
    keep = ["item_id", "label", "reference", "p_female"]
    per_backend = {
        n: df.filter(pl.col("reference").is_in(list(CONFIDENT)))
        .select([c for c in keep if c in df.columns])
        .with_columns(pl.col("label").fill_null("excluded"), pl.lit(n).alias("backend"))
        for n, df in frames
    }
    labelled_df = per_backend[frames[0][0]]
    summary = {"backends": summaries, "between_backends": between,
               "reference": "human annotations (majority vote)" if human is not None else f"column {reference_column!r}",
               "labelled": frames[0][0]}
    if out is not None:
        import re

        out = Path(out)
        atomic_write_json(summary, out / "validation.json")
        atomic_write_parquet(metrics, out / "validation.parquet")
        atomic_write_parquet(labelled_df, out / "labelled.parquet")
        if len(frames) > 1:
            for n, df in per_backend.items():
                atomic_write_parquet(df, out / f"labelled-{re.sub(r'[^A-Za-z0-9_.-]+', '_', n)}.parquet")
    return {"summary": summary, "metrics": metrics, "labelled": labelled_df}
