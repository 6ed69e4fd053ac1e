"""Rogan–Gladen correction and the validation set's uncertainty in the intervals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from biasamp.errors import BiasampError
from biasamp.measure import Correction, measure
from biasamp.measure import metrics as M


@given(st.floats(0, 1), st.floats(0.55, 1), st.floats(0.55, 1))
def test_rogan_gladen_inverts_misclassification(pi, se, sp):
    c = Correction.from_values(se, sp)
    p_obs = se * pi + (1 - sp) * (1 - pi)
    assert c.correct(p_obs) == pytest.approx(pi, abs=1e-9)


def test_correct_clips_to_unit_interval():
    c = Correction.from_values(0.9, 0.9)
    assert c.correct(0.02) == 0.0 and c.correct(0.99) == 1.0


def _validation(tp, fn, tn, fp, abstain=0):
    label = ["female"] * tp + ["male"] * fn + ["male"] * tn + ["female"] * fp + ["ambiguous"] * abstain
    ref = ["female"] * (tp + fn) + ["male"] * (tn + fp) + ["female"] * abstain
    return pl.DataFrame({"label": label, "reference": ref})


def test_from_validation_counts(tmp_path):
    c = Correction.from_validation(_validation(90, 10, 160, 40, abstain=7))
    assert c.sensitivity == pytest.approx(0.9) and c.specificity == pytest.approx(0.8)
    assert (c.n_pos, c.n_neg, c.n_abstained, c.origin) == (100, 200, 7, "validation")
    p = tmp_path / "val.csv"
    _validation(90, 10, 160, 40).write_csv(p)
    assert Correction.from_validation(p).sensitivity == pytest.approx(0.9)
    assert Correction.from_validation(_validation(90, 10, 160, 40).to_pandas()).specificity == pytest.approx(0.8)


@pytest.mark.parametrize(
    "df, match",
    [
        (pl.DataFrame({"label": ["female"]}), "missing column"),
        (pl.DataFrame({"label": ["woman"], "reference": ["female"]}), "unknown label 'woman' at data row 1"),
        (pl.DataFrame({"label": ["female", "male"], "reference": ["female", "unknown"]}), "reference must be female or male"),
        (_validation(10, 0, 0, 0), "both truly female"),
        (_validation(5, 5, 5, 5), "no better than chance"),
    ],
)
def test_validation_errors(df, match):
    with pytest.raises(BiasampError, match=match):
        Correction.from_validation(df)


def test_from_values_errors():
    with pytest.raises(BiasampError, match="no better than chance"):
        Correction.from_values(0.4, 0.5)
    with pytest.raises(BiasampError, match="sensitivity"):
        Correction.from_values(1.2, 0.9)
    with pytest.raises(BiasampError, match="both n_pos and n_neg"):
        Correction.from_values(0.9, 0.9, n_pos=10)


def test_beta_draws_centre_on_the_estimates():
    c = Correction.from_values(0.9, 0.8, n_pos=400, n_neg=400)
    rng = np.random.default_rng(0)
    d = np.array([c.draw(rng) for _ in range(4000)])
    assert d[:, 0].mean() == pytest.approx(0.9, abs=0.01) and d[:, 1].mean() == pytest.approx(0.8, abs=0.01)
    assert 0.01 < d[:, 0].std() < 0.02  # ≈ sqrt(.9·.1/400) = 0.015
    assert Correction.from_values(0.9, 0.8).draw(rng) == (0.9, 0.8)


def _study():
    rng = np.random.default_rng(1)
    n = 20
    pt = rng.uniform(0.15, 0.85, n)
    ft, fg = rng.binomial(500, pt), rng.binomial(300, np.clip(pt + 0.05 * np.sign(pt - 0.5), 0, 1))
    return pl.DataFrame(
        {
            "source": ["train"] * n + ["gen"] * n,
            "condition": ["k"] * (2 * n),
            "occupation": [f"o{i}" for i in range(n)] * 2,
            "n_female": np.concatenate([ft, fg]),
            "n_male": np.concatenate([500 - ft, 300 - fg]),
        }
    )


def test_measure_with_correction_columns_and_reference():
    df = _study()
    corr = Correction.from_values(0.92, 0.88)
    r = measure(df, n_boot=300, correction=corr, by_group=False)
    a = r.amplification
    for col in ("p_train_corrected", "p_gen_corrected", "amp_corrected", "amp_corrected_lo", "amp_corrected_hi"):
        assert col in a.columns and a[col].null_count() == 0
    # reference: correct each share by hand, then the study's amplification
    row = a.row(0, named=True)
    pt = (row["p_train"] + 0.88 - 1) / (0.92 + 0.88 - 1)
    pg = (row["p_gen"] + 0.88 - 1) / (0.92 + 0.88 - 1)
    assert row["p_train_corrected"] == pytest.approx(min(max(pt, 0), 1))
    assert row["amp_corrected"] == pytest.approx(M.amplification(min(max(pt, 0), 1), min(max(pg, 0), 1)))
    s = r.summary["conditions"]["k"]
    assert s["mean_amp_corrected_lo"] <= s["mean_amp_corrected"] <= s["mean_amp_corrected_hi"]
    assert r.summary["settings"]["correction"]["sensitivity"] == 0.92
    # without a correction the columns are absent
    assert "amp_corrected" not in measure(df, n_boot=50, by_group=False).amplification.columns


def test_validation_uncertainty_widens_intervals():
    df = _study()
    fixed = measure(df, n_boot=1500, correction=Correction.from_values(0.9, 0.85), by_group=False)
    small = measure(df, n_boot=1500, correction=Correction.from_values(0.9, 0.85, n_pos=60, n_neg=60), by_group=False)
    w_fixed = (fixed.amplification["p_train_corrected_hi"] - fixed.amplification["p_train_corrected_lo"]).mean()
    w_small = (small.amplification["p_train_corrected_hi"] - small.amplification["p_train_corrected_lo"]).mean()
    assert w_small > 1.3 * w_fixed
    # the point estimates do not depend on the validation size
    assert fixed.amplification["amp_corrected"].equals(small.amplification["amp_corrected"])


def test_cli_correction_options(cli_runner, tmp_path):
    from biasamp.cli import app

    data = tmp_path / "counts.parquet"
    _study().write_parquet(data)
    r = cli_runner.invoke(app, ["measure", str(data), "--out", str(tmp_path / "o1"), "--n-boot", "50", "-q",
                                "--sensitivity", "0.9", "--specificity", "0.85"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "amp_corrected" in pl.read_parquet(tmp_path / "o1" / "amplification.parquet").columns
    val = tmp_path / "val.csv"
    _validation(90, 10, 170, 30).write_csv(val)
    r = cli_runner.invoke(app, ["measure", str(data), "--out", str(tmp_path / "o2"), "--n-boot", "50", "-q",
                                "--validation", str(val)])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli_runner.invoke(app, ["measure", str(data), "--n-boot", "50", "-q", "--sensitivity", "0.9"])
    assert r.exit_code == 2 and "--sensitivity and --specificity go together" in r.output
