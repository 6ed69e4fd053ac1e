"""The vectorised cluster bootstrap against its definition and a plain reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, false_discovery_control

from biasamp.measure import benjamini_hochberg, measure
from biasamp.measure import core as core_mod
from biasamp.measure.bootstrap import MixtureTables, SideSampler, SideSpec, bootstrap_p_value, percentile_interval
from biasamp.measure.stats import two_proportion_z_test


def _spec(groups_per_unit):
    """groups_per_unit: list of lists of (n, f)."""
    ug, n, f = [], [], []
    for u, gs in enumerate(groups_per_unit):
        for nn, ff in gs:
            ug.append(u)
            n.append(nn)
            f.append(ff)
    return SideSpec(len(groups_per_unit), np.array(ug), np.array(n), np.array(f))


def _cell_slice(t, u):
    a = t.cell_start[u]
    b = t.cell_start[u + 1] if u + 1 < t.n_units else len(t.cdf)
    return a, b


@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 60), st.floats(0, 1)), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 2**31),
)
@settings(max_examples=40, deadline=None)
def test_tables_are_the_exact_mixture_and_lookups_invert_them(units, seed):
    groups = [[(n, int(round(q * n))) for n, q in gs] for gs in units]
    t = MixtureTables(_spec(groups))
    rng = np.random.default_rng(seed)
    for u, gs in enumerate(groups):
        a, b = _cell_slice(t, u)
        pmf = np.diff(np.concatenate([[0.0], t.cdf[a:b]]))
        if t.singleton[u]:
            N = sum(n for n, _ in gs)
            F = sum(f for _, f in gs)
            comps = [(N, F)]
        else:
            comps = gs
        # reference: the equal-weight mixture of Binomial(n_g, f_g / n_g), by (n, k)
        ref: dict[tuple[int, int], float] = {}
        for n, f in comps:
            for k in range(n + 1):
                ref[(n, k)] = ref.get((n, k), 0.0) + binom.pmf(k, n, f / n) / len(comps)
        got: dict[tuple[int, int], float] = {}
        for nn, kk, pp in zip(t.n[a:b], t.k[a:b], pmf):
            got[(int(nn), int(kk))] = got.get((int(nn), int(kk)), 0.0) + pp
        for key, p in ref.items():
            assert got.get(key, 0.0) == pytest.approx(p, abs=1e-12)
        assert np.all(np.diff(t.cdf[a:b]) >= 0) and t.cdf[b - 1] == 1.0
    # lookups equal a plain search in each cell's cdf
    cells = np.arange(len(groups))
    uu = rng.random((len(groups), 64))
    uu[:, 0] = 0.0
    uu[:, 1] = np.nextafter(1.0, 0.0)
    idx = t.lookup(cells, uu).reshape(len(groups), 64)
    for u in range(len(groups)):
        a, b = _cell_slice(t, u)
        assert np.array_equal(idx[u], a + np.searchsorted(t.cdf[a:b], uu[u], side="right"))


def test_two_stage_moments_match_theory():
    # unit 0: two unequal groups (cluster bootstrap); unit 1: singletons (pooled binomial)
    groups = [[(30, 6), (10, 9)], [(1, 1)] * 7 + [(1, 0)] * 13]
    s = SideSampler(_spec(groups))
    R = 40000
    rng = np.random.default_rng(5)
    F, N, _ = s.draw(rng.random((s.n_uniforms, R)))
    # unit 0: two draws from {(30, Bin(30,.2)), (10, Bin(10,.9))} with prob 1/2 each
    EN = 2 * (30 + 10) / 2
    EF = 2 * (30 * 0.2 + 10 * 0.9) / 2
    assert N[0].mean() == pytest.approx(EN, rel=0.01)
    assert F[0].mean() == pytest.approx(EF, rel=0.01)
    var_one = (0.5 * (30 * 0.2 * 0.8 + 36) + 0.5 * (10 * 0.9 * 0.1 + 81)) - (EF / 2) ** 2
    assert F[0].var() == pytest.approx(2 * var_one, rel=0.05)
    # unit 1: Binomial(20, 7/20)
    assert set(N[1].tolist()) == {20}
    assert F[1].mean() == pytest.approx(7, rel=0.01)
    assert F[1].var() == pytest.approx(20 * 0.35 * 0.65, rel=0.05)


def test_by_group_draws_are_within_group_binomials():
    groups = [[(40, 10), (60, 45)]]
    s = SideSampler(_spec(groups), by_group=True)
    R = 30000
    _, _, Fg = s.draw(np.random.default_rng(2).random((s.n_uniforms, R)))
    assert Fg.shape == (2, R)
    assert Fg[0].mean() == pytest.approx(10, rel=0.02) and Fg[0].max() <= 40
    assert Fg[1].var() == pytest.approx(60 * 0.75 * 0.25, rel=0.06)


def _reference_bootstrap(groups_t, groups_g, R, seed):
    """Plain per-replicate loop: groups with replacement, then images within groups."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(R):
        side = []
        for groups in (groups_t, groups_g):
            pick = rng.integers(0, len(groups), len(groups))
            f = sum(rng.binomial(groups[i][0], groups[i][1] / groups[i][0]) for i in pick)
            side.append(f / sum(groups[i][0] for i in pick))
        out.append(side)
    return np.array(out)


def test_measure_intervals_agree_with_reference_bootstrap():
    groups_t = [(1, 1)] * 120 + [(1, 0)] * 280  # 400 captions, 30% female
    groups_g = [(50, 5), (50, 12), (45, 3), (50, 9)]  # 4 templates
    rows = [("train", "k", "x", f"c{i}", f, n - f) for i, (n, f) in enumerate(groups_t)]
    rows += [("gen", "k", "x", f"t{i}", f, n - f) for i, (n, f) in enumerate(groups_g)]
    df = pl.DataFrame(rows, schema=["source", "condition", "occupation", "group", "n_female", "n_male"], orient="row")
    r = measure(df, n_boot=4000, seed=3).amplification.row(0, named=True)
    ref = _reference_bootstrap(groups_t, groups_g, 4000, seed=11)
    amp = 100 * np.sign(0.3 - 0.5) * (ref[:, 1] - ref[:, 0])
    lo, hi = np.quantile(amp, [0.025, 0.975])
    # two independent Monte Carlo runs of the same bootstrap: intervals agree closely
    assert r["amp_lo"] == pytest.approx(lo, abs=1.0)
    assert r["amp_hi"] == pytest.approx(hi, abs=1.0)
    plo, phi = np.quantile(ref[:, 1], [0.025, 0.975])
    assert r["p_gen_lo"] == pytest.approx(plo, abs=0.01) and r["p_gen_hi"] == pytest.approx(phi, abs=0.01)


def _counts_frame(n_occ=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(n_occ):
        p = rng.uniform(0.1, 0.9)
        rows.append(("train", "k", f"o{o}", "(all)", int(rng.binomial(300, p)), 0))
        for t in range(3):
            f = int(rng.binomial(40, p))
            rows.append(("gen", "k", f"o{o}", f"t{t}", f, 40 - f))
    df = pl.DataFrame(rows, schema=["source", "condition", "occupation", "group", "n_female", "n_male"], orient="row")
    return df.with_columns(pl.when(pl.col("source") == "train").then(300 - pl.col("n_female")).otherwise(pl.col("n_male")).alias("n_male"))


def test_seeded_and_independent_of_chunking(monkeypatch):
    df = _counts_frame()
    a = measure(df, n_boot=300, seed=7)
    b = measure(df, n_boot=300, seed=7)
    assert a.amplification.equals(b.amplification) and a.summary == b.summary
    monkeypatch.setattr(core_mod, "CHUNK_ELEMENTS", 50)  # a few replicates per chunk
    c = measure(df, n_boot=300, seed=7)
    assert a.amplification.equals(c.amplification)
    for key, v in a.summary["conditions"]["k"].items():  # means: equal up to summation order
        assert c.summary["conditions"]["k"][key] == pytest.approx(v, rel=1e-12, abs=1e-12)
    threaded = measure(df, n_boot=300, seed=7, threads=2)
    assert a.amplification.equals(threaded.amplification)  # threads split chunks, not streams
    shuffled = measure(df.sample(fraction=1.0, shuffle=True, seed=3), n_boot=300, seed=7)
    assert a.amplification.equals(shuffled.amplification)  # row order does not matter
    d = measure(df, n_boot=300, seed=8)
    assert not a.amplification["amp_lo"].equals(d.amplification["amp_lo"])


def test_percentile_interval_and_p_value():
    x = np.arange(1, 101, dtype=float)
    lo, hi = percentile_interval(x, 0.9)
    assert lo == pytest.approx(np.quantile(x, 0.05)) and hi == pytest.approx(np.quantile(x, 0.95))
    d = np.concatenate([np.full(5, -1.0), np.full(95, 1.0)])
    assert bootstrap_p_value(d) == pytest.approx(2 * 6 / 101)
    assert bootstrap_p_value(np.zeros(10)) == 1.0


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60))
def test_bh_matches_scipy(p):
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(np.array(p), method="bh"), atol=1e-12)


def test_two_proportion_z_matches_chi_square():
    from scipy.stats import chi2_contingency

    for f1, n1, f2, n2 in [(30, 100, 45, 100), (5, 50, 20, 60), (200, 1000, 230, 1000)]:
        chi2, p, _, _ = chi2_contingency([[f1, n1 - f1], [f2, n2 - f2]], correction=False)
        assert two_proportion_z_test(f1, n1, f2, n2) == pytest.approx(p, rel=1e-9)
    assert two_proportion_z_test(10, 10, 5, 5) == 1.0


def test_binomial_coverage_of_per_occupation_intervals():
    """300 occupations with known shares, counts input (parametric bootstrap): the 95%
    intervals of amp should cover the truth about 95% of the time."""
    rng = np.random.default_rng(42)
    n_occ, n_t, n_g = 300, 400, 200
    pt = rng.uniform(0.1, 0.9, n_occ)
    pg = np.clip(pt + np.sign(pt - 0.5) * 0.05, 0, 1)
    ft, fg = rng.binomial(n_t, pt), rng.binomial(n_g, pg)
    df = pl.DataFrame(
        {
            "source": ["train"] * n_occ + ["gen"] * n_occ,
            "condition": ["k"] * (2 * n_occ),
            "occupation": [f"o{i}" for i in range(n_occ)] * 2,
            "n_female": np.concatenate([ft, fg]),
            "n_male": np.concatenate([n_t - ft, n_g - fg]),
        }
    )
    a = measure(df, n_boot=1000, seed=1, by_group=False).amplification.sort("occupation")
    truth = 100 * np.sign(pt - 0.5) * (pg - pt)
    order = np.argsort([f"o{i}" for i in range(n_occ)])
    covered = (a["amp_lo"].to_numpy() <= truth[order]) & (truth[order] <= a["amp_hi"].to_numpy())
    assert 0.91 <= covered.mean() <= 0.99


@given(st.integers(1, 40), st.integers(1, 300), st.floats(0.5, 0.99), st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_integer_percentile_interval_equals_numpy(B, R, ci, seed):
    from biasamp.measure.bootstrap import integer_percentile_interval

    rng = np.random.default_rng(seed)
    n = rng.integers(0, 50, B)
    F = rng.integers(0, n[:, None] + 1, (B, R))
    lo, hi = integer_percentile_interval(F, n, ci)
    rlo, rhi = percentile_interval(F.astype(float), ci, axis=1)
    np.testing.assert_allclose(lo, rlo, atol=1e-9)
    np.testing.assert_allclose(hi, rhi, atol=1e-9)
