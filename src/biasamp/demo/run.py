"""The demo: a simulated study where the model amplifies nothing, yet comparing its images
with training captions found by keyword search shows amplification (the paradox).

Three stages, each the library function a real study uses: `simulate_study` (in place of
captions, images and a classifier), `measure` (with a classifier-error correction, since
the simulated classifier errs), and `build_report`. Everything lands in one run directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from biasamp.report import ReportPaths


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and its conditions table."""

    out_dir: Path
    report: ReportPaths
    conditions: pl.DataFrame
    seconds: float


def conditions_table(summary: dict, truth: pl.DataFrame) -> pl.DataFrame:
    """Per condition (display order): the planted truth beside the measured mean amplification."""
    from biasamp.report import order_conditions
    from biasamp.simulate import truth_summary

    planted = {r["condition"]: r for r in truth_summary(truth).iter_rows(named=True)}
    rows = []
    for c in order_conditions(summary.get("conditions", {})):
        s = summary["conditions"][c]
        t = planted.get(c, {})
        rows.append(
            {
                "condition": c,
                "planted_model_amp": t.get("mean_model_amp"),
                "true_amp": t.get("mean_amp"),
                "mean_amp": s.get("mean_amp"),
                "mean_amp_lo": s.get("mean_amp_lo"),
                "mean_amp_hi": s.get("mean_amp_hi"),
                "mean_amp_corrected": s.get("mean_amp_corrected"),
                "n_amplified": s.get("n_amplified"),
                "n_reflected": s.get("n_reflected"),
                "n_mitigated": s.get("n_mitigated"),
            }
        )
    return pl.DataFrame(rows, schema_overrides={k: pl.Float64 for k in ("planted_model_amp", "true_amp", "mean_amp", "mean_amp_lo", "mean_amp_hi", "mean_amp_corrected")})


def format_conditions(table: pl.DataFrame) -> str:
    """The conditions table as plain fixed-width text (fits 90 columns, never truncated)."""

    def f(v, signed=True):
        return "–" if v is None else (f"{v:+.2f}" if signed else f"{v:.2f}")

    header = ("condition", "planted", "truth", "measured [95% CI]", "corrected", "amp/refl/mit")
    rows = [header]
    for r in table.iter_rows(named=True):
        ci = f"{f(r['mean_amp'])} [{f(r['mean_amp_lo'])}, {f(r['mean_amp_hi'])}]" if r["mean_amp"] is not None else "–"
        counts = "/".join("–" if r[k] is None else str(r[k]) for k in ("n_amplified", "n_reflected", "n_mitigated"))
        rows.append((r["condition"], f(r["planted_model_amp"]), f(r["true_amp"]), ci, f(r["mean_amp_corrected"]), counts))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["SIMULATED DATA: mean amplification per condition, percentage points",
             "  planted: what the model adds over comparable training data; truth: what this comparison should show"]  # fmt: skip
    for k, row in enumerate(rows):
        lines.append("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    seed: int = 0,
    n_occupations: int = 24,
    n_train: int = 300,
    n_gen: int = 300,
    n_boot: int = 1000,
    true_amp: float = 0.0,
    indicator_share: float = 0.3,
    indicator_skew: float = 0.2,
    sensitivity: float = 0.97,
    specificity: float = 0.95,
    validation_size: int = 1000,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Simulate a study (the model amplifies `true_amp` points over its comparable training
    data; by default none), measure it with a correction for the simulated classifier's
    `sensitivity`/`specificity` (as if measured on `validation_size` labelled images of each
    gender), and write the report. Returns the paths and the conditions table."""
    from biasamp.measure import Correction, measure
    from biasamp.report import build_report
    from biasamp.simulate import simulate_study

    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say(f"simulating {n_occupations} occupations × 5 conditions ({n_train} training and {n_gen} generated images each)")
    study = simulate_study(
        n_occupations=n_occupations,
        n_train=n_train,
        n_gen=n_gen,
        true_amp=true_amp,
        indicator_share=indicator_share,
        indicator_skew=indicator_skew,
        sensitivity=sensitivity,
        specificity=specificity,
        seed=seed,
    )
    study.write(out)
    say(f"measuring ({n_boot} bootstrap replicates)")
    correction = Correction.from_values(sensitivity, specificity, n_pos=validation_size, n_neg=validation_size)
    result = measure(study.observations, n_boot=n_boot, seed=seed, correction=correction)
    result.write(out)
    say("writing the report")
    report = build_report(out, title="biasamp demo: a model that amplifies nothing (simulated data)")
    table = conditions_table(result.summary, study.truth)
    return DemoResult(out, report, table, time.perf_counter() - t0)
