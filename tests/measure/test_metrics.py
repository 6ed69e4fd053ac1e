"""Metrics against plain-Python reference implementations written from the papers'
formulas, plus invariants checked with hypothesis."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from biasamp.measure import METRICS
from biasamp.measure import metrics as M

# --------------------------------------------------------------------------- references


def ref_amp(pt, pg):
    s = 0 if pt == 0.5 else (1 if pt > 0.5 else -1)
    return 100 * s * (pg - pt)


def ref_amp_abs(pt, pg):
    return 100 * (abs(pg - 0.5) - abs(pt - 0.5))


def ref_category(pt, pg, band=0.04):
    if abs(pg - pt) < band:
        return "reflected"
    return "amplified" if abs(pt - 0.5) < abs(pg - 0.5) else "mitigated"


def ref_directional_t2a(train_counts, p_gen):
    """Wang & Russakovsky 2021, BiasAmp_{T→A}, literally: tasks t = occupations,
    attributes a ∈ {female, male}; joint probabilities from the pooled training set.
    Exact arithmetic (fractions), so ties P(a,t) = P(a)P(t) are ties."""
    total = sum(f + m for f, m in train_counts)
    p_attr = {"female": Fraction(sum(f for f, _ in train_counts), total)}
    p_attr["male"] = 1 - p_attr["female"]
    terms = []
    for (f, m), pg in zip(train_counts, p_gen):
        n = f + m
        pg = Fraction(float(pg))
        p_task = Fraction(n, total)
        for a, joint, p_true, p_pred in (
            ("female", Fraction(f, total), Fraction(f, n), pg),
            ("male", Fraction(m, total), Fraction(m, n), 1 - pg),
        ):
            y = 1 if joint > p_attr[a] * p_task else 0
            delta = p_pred - p_true
            terms.append(y * delta + (1 - y) * (-delta))
    return float(100 * sum(terms) / (2 * len(train_counts)))


def ref_zhao(p_train, p_gen):
    """Zhao et al. 2017: 1/|O| Σ_g Σ_o 1[b*(o,g) > 1/|G|] (b̃(o,g) − b*(o,g))."""
    total = 0.0
    for pt, pg in zip(p_train, p_gen):
        for b_star, b_tilde in ((pt, pg), (1 - pt, 1 - pg)):
            if b_star > 0.5:
                total += b_tilde - b_star
    return 100 * total / len(p_train)


shares = st.floats(0.0, 1.0, allow_nan=False)


# --------------------------------------------------------------------------- registry


def test_registry_names_and_docs():
    assert set(METRICS.names()) >= {"amp", "amp_abs", "category", "mean_amp", "mean_amp_abs", "directional_t2a", "zhao_biasamp"}
    for name in METRICS.names():
        m = METRICS.get(name)
        assert m.formula and m.reference and m.question and m.level in ("occupation", "condition")


def test_study_example_engineer():
    # Figure 1 of the study: engineer 25% female in training, 10% generated → +15 points
    assert M.amplification(0.25, 0.10) == pytest.approx(15.0)
    assert METRICS.get("category")(0.25, 0.10).item() == "amplified"


# --------------------------------------------------------------------------- vs references


@given(st.lists(st.tuples(shares, shares), min_size=1, max_size=30))
def test_occupation_metrics_match_reference(pairs):
    pt = np.array([a for a, _ in pairs])
    pg = np.array([b for _, b in pairs])
    np.testing.assert_allclose(M.amplification(pt, pg), [ref_amp(a, b) for a, b in pairs], atol=1e-9)
    np.testing.assert_allclose(M.amplification_abs(pt, pg), [ref_amp_abs(a, b) for a, b in pairs], atol=1e-9)
    assert list(M.category(pt, pg, 0.04)) == [ref_category(a, b) for a, b in pairs]


@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.integers(0, 500), shares).filter(lambda t: t[0] + t[1] > 0),
        min_size=1,
        max_size=25,
    )
)
def test_directional_t2a_matches_literal_formula(rows):
    f = np.array([r[0] for r in rows], dtype=float)
    n = np.array([r[0] + r[1] for r in rows], dtype=float)
    pg = np.array([r[2] for r in rows])
    ref = ref_directional_t2a([(r[0], r[1]) for r in rows], pg)
    assert M.directional_t2a(f, n, pg) == pytest.approx(ref, abs=1e-9)


@given(st.lists(st.tuples(shares, shares), min_size=1, max_size=30))
def test_zhao_matches_reference_and_equals_mean_amp(pairs):
    pt = np.array([a for a, _ in pairs])
    pg = np.array([b for _, b in pairs])
    z = M.zhao_biasamp(pt, pg)
    assert z == pytest.approx(ref_zhao(pt, pg), abs=1e-9)
    # with two genders, Zhao's BiasAmp is the study's mean amplification
    assert z == pytest.approx(M.mean_amplification(pt, pg), abs=1e-9)


def test_condition_metrics_reduce_axis0_and_keep_replicates():
    rng = np.random.default_rng(0)
    pt = rng.uniform(size=(12, 7))
    pg = rng.uniform(size=(12, 7))
    out = M.mean_amplification(pt, pg)
    assert out.shape == (7,)
    np.testing.assert_allclose(out, [np.mean([ref_amp(a, b) for a, b in zip(pt[:, j], pg[:, j])]) for j in range(7)])


# --------------------------------------------------------------------------- invariants


@given(shares, shares)
def test_swapping_female_and_male_leaves_amplification_unchanged(pt, pg):
    assert M.amplification(1 - pt, 1 - pg) == pytest.approx(M.amplification(pt, pg), abs=1e-9)
    assert M.amplification_abs(1 - pt, 1 - pg) == pytest.approx(M.amplification_abs(pt, pg), abs=1e-9)
    if abs(abs(pg - pt) - 0.04) > 1e-9:  # away from the band's edge, where rounding decides
        assert M.category(1 - pt, 1 - pg).item() == M.category(pt, pg).item()


@given(shares)
def test_no_change_no_amplification(p):
    assert M.amplification(p, p) == 0
    assert M.amplification_abs(p, p) == 0
    assert M.category(p, p).item() == "reflected"


@given(shares, shares)
def test_bounds(pt, pg):
    assert -100 <= M.amplification(pt, pg) <= 100
    assert -50 <= M.amplification_abs(pt, pg) <= 50
    # amplification never exceeds the distance the majority share can still grow
    assert M.amplification(pt, pg) <= 100 * (1 - max(pt, 1 - pt)) + 1e-9 or pt == 0.5


@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300), shares), min_size=1, max_size=20))
def test_t2a_swap_invariance(rows):
    f = np.array([r[0] for r in rows], dtype=float)
    m = np.array([r[1] for r in rows], dtype=float)
    pg = np.array([r[2] for r in rows])
    a = M.directional_t2a(f, f + m, pg)
    b = M.directional_t2a(m, f + m, 1 - pg)
    assert a == pytest.approx(b, abs=1e-9)


def test_band_is_a_parameter():
    assert M.category(0.30, 0.35, band=0.04).item() == "mitigated"
    assert M.category(0.30, 0.35, band=0.10).item() == "reflected"
    assert M.category(0.30, 0.20, band=0.04).item() == "amplified"


def test_fixed_direction_only_overrides_nonzero():
    assert M.amplification(0.55, 0.6, fixed_direction=-1) == pytest.approx(-5.0)
    assert M.amplification(0.55, 0.6, fixed_direction=0) == pytest.approx(5.0)
    assert math.isclose(M.direction(0.5), 0.0)
