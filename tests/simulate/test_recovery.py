"""The simulator against the measurement core: planted truth is recovered, the paradox
shows, and nominal 95% intervals cover about 95% of the time."""

import polars as pl
import pytest

from biasamp.simulate import simulate_study

measure_mod = pytest.importorskip("biasamp.measure")


def _measured(study, **kw):
    return measure_mod.measure(study.observations, n_boot=kw.pop("n_boot", 400), seed=kw.pop("seed", 0), **kw)


def test_large_n_recovers_planted_truth():
    # training shares away from 0.5, where the sign in the study's metric is itself uncertain
    # (benchmarks/bench_coverage.py shows that case separately)
    shares = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    study = simulate_study(n_occupations=12, n_train=2500, n_gen=2500, true_amp=4.0, train_shares=shares, seed=11)
    res = _measured(study, n_boot=300, by_group=False)
    j = res.amplification.join(study.truth, on=["condition", "occupation"], suffix="_true")
    assert j.height == 12 * 5 and j["flag"].null_count() == j.height
    # shares and amplification per occupation: within 4 standard errors of the truth
    # (standard error from the interval's width; n ≈ 2,100 confident images per side)
    for est, true in (("p_train", "p_train_true"), ("p_gen", "p_gen_true"), ("amp", "amp_true")):
        se = (j[f"{est}_hi"] - j[f"{est}_lo"]) / 3.92
        z = ((j[est] - j[true]) / se).abs()
        assert z.max() < 4.0, (est, z.max())
        assert se.max() < (0.03 if est != "amp" else 3.0)
    # most per-occupation intervals contain the truth
    covered = ((j["amp_lo"] <= j["amp_true"]) & (j["amp_true"] <= j["amp_hi"])).mean()
    assert covered >= 0.85
    # condition means: within their intervals' reach of the planted truth
    truth = study.truth.group_by("condition").agg(pl.col("amp").mean())
    for cond, t in truth.iter_rows():
        s = res.summary["conditions"][cond]
        assert abs(s["mean_amp"] - t) < 1.2, (cond, s["mean_amp"], t)
        assert s["mean_amp_lo"] - 0.5 <= t <= s["mean_amp_hi"] + 0.5
    # on comparable data the planted amplification itself comes back
    nni = res.summary["conditions"]["nearest-no-indicators"]
    assert nni["mean_amp_lo"] < 4.0 < nni["mean_amp_hi"]


def test_paradox_keyword_vs_nearest_without_indicators():
    study = simulate_study(n_occupations=24, n_train=600, n_gen=600, true_amp=0.0, seed=5)
    res = _measured(study)
    c = res.summary["conditions"]
    kw, nni = c["keyword"], c["nearest-no-indicators"]
    # keyword selection: clear amplification; comparable data: none
    assert kw["mean_amp_lo"] > 2.0
    assert nni["mean_amp_lo"] < 0 < nni["mean_amp_hi"]
    assert kw["mean_amp"] - nni["mean_amp"] > 3.0
    assert kw["n_amplified"] > nni["n_amplified"]
    # the ordering of the study: keyword > nearest > nearest-no-indicators
    assert kw["mean_amp"] > c["nearest"]["mean_amp"] > nni["mean_amp"]


def test_correction_undoes_classifier_error():
    study = simulate_study(
        n_occupations=10, n_train=3000, n_gen=3000, true_amp=8.0, sensitivity=0.85, specificity=0.8,
        conditions=["no-indicators"], share_range=(0.1, 0.3), seed=2,
    )  # fmt: skip
    corr = measure_mod.Correction.from_values(0.85, 0.8)
    res = _measured(study, n_boot=300, correction=corr)
    s = res.summary["conditions"]["no-indicators"]
    # the errors shrink the measured amplification; the corrected mean recovers the planted 8 points
    assert s["mean_amp"] < 6.5
    assert abs(s["mean_amp_corrected"] - 8.0) < 1.5


@pytest.mark.slow
def test_interval_coverage_is_near_nominal():
    """A smaller version of benchmarks/bench_coverage.py, with a wider tolerance."""
    from biasamp.simulate.coverage import coverage_study

    res = coverage_study(n_studies=60, n_occupations=20, n_train=200, n_gen=200, n_boot=400, seed=3)
    for q in ("amp", "p_train", "p_gen"):
        cov = res.bootstrap[q]
        assert cov.total == 1200
        assert 0.915 <= cov.rate <= 0.98, (q, cov.rate)
    lo, hi = res.bootstrap["amp"].interval
    assert lo < res.bootstrap["amp"].rate < hi
