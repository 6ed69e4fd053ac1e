"""Coverage of measure's confidence intervals over many simulated studies.

Each simulated study (its own seed) becomes one condition of a single `measure` call, so
all studies are bootstrapped together. An interval *covers* when it contains the planted
truth of its (study, occupation): `amp_observed` for amplification (what a perfect
measurement of these images with this classifier would give) and `p_*_observed` for the
shares. A nominal 95% interval should cover about 95% of the time.

As a baseline measured in the same run, the Wald interval of the difference of two
independent proportions (normal approximation, no bootstrap) is scored on the same data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from biasamp.simulate.study import simulate_study


@dataclass
class Coverage:
    """Share of intervals that contain the truth, with a 95% Clopper–Pearson interval."""

    quantity: str
    covered: int
    total: int
    mean_width: float

    @property
    def rate(self) -> float:
        return self.covered / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        from scipy.stats import beta

        k, n = self.covered, self.total
        lo = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        hi = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        return float(lo), float(hi)

    def row(self) -> dict[str, Any]:
        lo, hi = self.interval
        return {"quantity": self.quantity, "covered": self.covered, "intervals": self.total, "coverage": self.rate,
                "coverage_lo": lo, "coverage_hi": hi, "mean_width": self.mean_width}  # fmt: skip


@dataclass
class CoverageResult:
    bootstrap: dict[str, Coverage]
    wald: Coverage
    settings: dict[str, Any]
    seconds_simulate: float
    seconds_measure: float
    per_unit: pl.DataFrame

    def table(self) -> pl.DataFrame:
        rows = [dict(c.row(), method="bootstrap") for c in self.bootstrap.values()]
        rows.append(dict(self.wald.row(), method="wald (baseline)"))
        return pl.DataFrame(rows).select("method", "quantity", "covered", "intervals", "coverage", "coverage_lo", "coverage_hi", "mean_width")


def _cover(df: pl.DataFrame, est_lo: str, est_hi: str, truth: str, name: str, scale: float = 1.0) -> Coverage:
    ok = df.filter(pl.col(est_lo).is_not_null() & pl.col(est_hi).is_not_null())
    lo, hi, t = ok[est_lo].to_numpy(), ok[est_hi].to_numpy(), ok[truth].to_numpy() * scale
    covered = int(np.sum((lo <= t + 1e-12) & (t <= hi + 1e-12)))
    return Coverage(name, covered, len(ok), float(np.mean(hi - lo)) if len(ok) else float("nan"))


def coverage_study(
    *,
    n_studies: int = 200,
    n_occupations: int = 20,
    n_train: int = 250,
    n_gen: int = 250,
    n_boot: int = 1000,
    ci: float = 0.95,
    true_amp: float = 5.0,
    amp_sd: float = 2.0,
    share_bands: tuple[tuple[float, float], ...] = ((0.15, 0.4), (0.6, 0.85)),
    templates: tuple[str, ...] = ("face",),
    condition: str = "nearest-no-indicators",
    sensitivity: float = 1.0,
    specificity: float = 1.0,
    abstention_rate: float = 0.05,
    seed: int = 0,
) -> CoverageResult:
    """Simulate `n_studies` studies of one `condition`, measure them in one call, and score
    the per-occupation intervals of `amp`, `p_train` and `p_gen` against the truth.

    Training shares are drawn uniformly from `share_bands` (by default away from 0.5,
    where the sign in the study's metric is undetermined and no interval can be trusted
    to cover; pass `((0.4, 0.6),)` to see that case)."""
    from scipy.stats import norm

    from biasamp.measure import measure

    t0 = time.perf_counter()
    obs_parts, truth_parts = [], []
    for k in range(n_studies):
        rng = np.random.default_rng([seed, 7, k])
        band = rng.integers(0, len(share_bands), n_occupations)
        shares = [rng.uniform(*share_bands[b]) for b in band]
        s = simulate_study(
            n_occupations=n_occupations, conditions=[condition], templates=list(templates), n_train=n_train,
            n_gen=n_gen, true_amp=true_amp, amp_sd=amp_sd, train_shares=shares, sensitivity=sensitivity,
            specificity=specificity, abstention_rate=abstention_rate, seed=seed * 1_000_003 + k,
        )  # fmt: skip
        name = f"study-{k:05d}"
        obs_parts.append(s.observations.with_columns(pl.lit(name).alias("condition")))
        truth_parts.append(s.truth.with_columns(pl.lit(name).alias("condition")))
    obs = pl.concat(obs_parts)
    truth = pl.concat(truth_parts)
    t1 = time.perf_counter()
    res = measure(obs, n_boot=n_boot, seed=seed, ci=ci, by_group=False)
    t2 = time.perf_counter()
    amp = res.amplification.join(
        truth.select("condition", "occupation", "amp_observed", "p_train_observed", "p_gen_observed"),
        on=["condition", "occupation"],
    ).filter(pl.col("flag").is_null())
    boot = {
        "amp": _cover(amp, "amp_lo", "amp_hi", "amp_observed", "amp"),
        "p_train": _cover(amp, "p_train_lo", "p_train_hi", "p_train_observed", "p_train"),
        "p_gen": _cover(amp, "p_gen_lo", "p_gen_hi", "p_gen_observed", "p_gen"),
    }
    # baseline: Wald interval of the study's amplification, sign taken from the estimate
    z = float(norm.ppf(0.5 + ci / 2))
    pt, pg = amp["p_train"].to_numpy(), amp["p_gen"].to_numpy()
    nt, ng = amp["n_train"].to_numpy(), amp["n_gen"].to_numpy()
    se = 100 * np.sqrt(pt * (1 - pt) / nt + pg * (1 - pg) / ng)
    a = amp["amp"].to_numpy()
    wald = amp.select("amp_observed").with_columns(pl.Series("w_lo", a - z * se), pl.Series("w_hi", a + z * se))
    wald_cov = _cover(wald, "w_lo", "w_hi", "amp_observed", "amp")
    settings = {
        "n_studies": n_studies, "n_occupations": n_occupations, "n_train": n_train, "n_gen": n_gen, "n_boot": n_boot,
        "ci": ci, "true_amp": true_amp, "amp_sd": amp_sd, "share_bands": [list(b) for b in share_bands], "templates": list(templates),
        "condition": condition, "sensitivity": sensitivity, "specificity": specificity, "seed": seed,
    }  # fmt: skip
    return CoverageResult(boot, wald_cov, settings, t1 - t0, t2 - t1, amp)
