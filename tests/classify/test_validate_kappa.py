"""Cohen's kappa's standard error and interval in `biasamp validate`: the large-sample variance
of Fleiss, Cohen & Everitt (1969), checked against independent references (the published
formula transcribed in numpy, the delta method by numerical differentiation, simulation, and
statsmodels where it is installed), the edge cases, and the interval's invariants."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.classify import cohen_kappa, validate_labels

Z = 1.959963984540054


def _sequences(table) -> tuple[list[str], list[str]]:
    """Two raters' labels with crosstab `table` (rows: the first rater, columns: the second)."""
    t = np.asarray(table, dtype=int)
    a, b = [], []
    for i in range(t.shape[0]):
        for j in range(t.shape[1]):
            a += [f"c{i}"] * int(t[i, j])
            b += [f"c{j}"] * int(t[i, j])
    return a, b


def _kappa_of_probs(p: np.ndarray) -> float:
    pe = float(p.sum(axis=1) @ p.sum(axis=0))
    return (float(np.trace(p)) - pe) / (1 - pe)


def _fce_1969(table) -> tuple[float, float]:
    """(kappa, SE) from the formula as published (Fleiss, Cohen & Everitt 1969, eq. 13), term by term."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    p = t / n
    row, col = p.sum(axis=1), p.sum(axis=0)  # p_i., p_.j
    pe = float(row @ col)
    k = (float(np.trace(p)) - pe) / (1 - pe)
    m = len(p)
    term_a = sum(p[i, i] * (1 - (row[i] + col[i]) * (1 - k)) ** 2 for i in range(m))
    term_b = (1 - k) ** 2 * sum(p[i, j] * (col[i] + row[j]) ** 2 for i in range(m) for j in range(m) if i != j)
    term_c = (k - pe * (1 - k)) ** 2
    return k, math.sqrt(max(0.0, (term_a + term_b - term_c) / ((1 - pe) ** 2 * n)))


def _delta_method_se(table) -> float:
    """SE by the delta method with a numerical gradient: Var = g' (diag p - p p') g / n, g the
    derivative of kappa with respect to the cell shares (central differences)."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    p = (t / n).ravel()
    h = 1e-6
    grad = np.empty_like(p)
    for c in range(len(p)):
        up, dn = p.copy(), p.copy()
        up[c] += h
        dn[c] -= h
        grad[c] = (_kappa_of_probs(up.reshape(t.shape)) - _kappa_of_probs(dn.reshape(t.shape))) / (2 * h)
    cov = np.diag(p) - np.outer(p, p)
    return math.sqrt(max(0.0, float(grad @ cov @ grad) / n))


def _random_tables(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        m = int(rng.integers(2, 6))  # 2 to 5 categories (validate's all-labels kappa has more than two)
        probs = rng.dirichlet(np.full(m * m, 0.7)) + np.eye(m).ravel() * rng.uniform(0, 3)
        probs[rng.random(m * m) < 0.15] = 0  # some empty cells
        if probs.sum() == 0:
            continue
        n = int(rng.integers(5, 400))
        t = rng.multinomial(n, probs / probs.sum()).reshape(m, m)
        yield t


def test_textbook_example_by_hand():
    # 50 items, [[20, 5], [10, 15]]: p_o 0.7, p_e 0.5, kappa 0.4. FCE (1969) by hand:
    # term a 0.4·0.34² + 0.3·0.46² = 0.10972; term b 0.6²·(0.1·1.1² + 0.2·0.9²) = 0.10188;
    # term c (0.4 − 0.5·0.6)² = 0.01; Var = 0.2016 / (0.5² · 50) = 0.016128.
    k = cohen_kappa(*_sequences([[20, 5], [10, 15]]))
    assert k["kappa"] == pytest.approx(0.4) and k["se"] == pytest.approx(math.sqrt(0.016128), rel=1e-12)
    assert k["ci_low"] == pytest.approx(0.4 - Z * k["se"]) and k["ci_high"] == pytest.approx(0.4 + Z * k["se"])
    assert k["note"] is None
    # Cohen's (1960) approximation sqrt(p_o(1 - p_o)/n)/(1 - p_e) = 0.1296 is not what is reported
    assert k["se"] != pytest.approx(math.sqrt(0.7 * 0.3 / 50) / 0.5, rel=1e-3)


def test_matches_the_published_formula_and_the_delta_method_on_random_tables():
    checked = 0
    for t in _random_tables(7, 400):
        a, b = _sequences(t)
        k = cohen_kappa(a, b)
        n = len(a)
        p = t / n
        pe = float(p.sum(axis=1) @ p.sum(axis=0))
        if pe >= 1:
            assert k["kappa"] is None
            continue
        ref_k, ref_se = _fce_1969(t)
        assert k["kappa"] == pytest.approx(ref_k, abs=1e-12)
        if k["se"] is None:
            assert ref_se == pytest.approx(0, abs=1e-7) and k["ci_low"] is None and k["ci_high"] is None
            continue
        assert k["se"] == pytest.approx(ref_se, rel=1e-9)
        assert k["se"] == pytest.approx(_delta_method_se(t), rel=1e-5, abs=1e-9)
        assert k["ci_low"] == pytest.approx(max(-1.0, ref_k - Z * ref_se), abs=1e-12)
        assert k["ci_high"] == pytest.approx(min(1.0, ref_k + Z * ref_se), abs=1e-12)
        checked += 1
    assert checked > 300


def test_matches_statsmodels_on_random_tables():
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    for t in _random_tables(11, 300):
        a, b = _sequences(t)
        k = cohen_kappa(a, b)
        if k["kappa"] is None:
            continue
        sm = inter_rater.cohens_kappa(t)
        assert k["kappa"] == pytest.approx(sm.kappa, abs=1e-12)
        if k["se"] is None:  # statsmodels' floating-point variance is then ±1e-17 (its SE 0 or nan)
            assert sm.var_kappa == pytest.approx(0, abs=1e-12)
            continue
        assert k["se"] == pytest.approx(sm.std_kappa, rel=1e-9)
        assert k["ci_low"] == pytest.approx(max(-1.0, sm.kappa_low), abs=1e-12)
        assert k["ci_high"] == pytest.approx(min(1.0, sm.kappa_upp), abs=1e-12)


def test_se_matches_the_spread_of_kappa_in_simulation():
    """With unbalanced margins (where Cohen's 1960 SE is about 20% too large) the reported SE is
    the standard deviation of kappa-hat over repeated samples."""
    rng = np.random.default_rng(3)
    probs = np.array([[0.72, 0.18], [0.02, 0.08]])  # rows: reference, columns: classifier
    n, reps = 400, 4000
    tabs = rng.multinomial(n, probs.ravel(), size=reps).reshape(reps, 2, 2) / n
    po = tabs[:, 0, 0] + tabs[:, 1, 1]
    pe = tabs.sum(axis=2)[:, 0] * tabs.sum(axis=1)[:, 0] + tabs.sum(axis=2)[:, 1] * tabs.sum(axis=1)[:, 1]
    sd = float(((po - pe) / (1 - pe)).std())
    k = cohen_kappa(*_sequences(np.rint(probs * n).astype(int)))
    old = math.sqrt(k["agreement"] * (1 - k["agreement"]) / n) / (1 - float(probs.sum(axis=1) @ probs.sum(axis=0)))
    assert k["se"] == pytest.approx(sd, rel=0.06)
    assert old / sd > 1.12  # the approximation it replaces is visibly off here


def test_perfect_agreement_has_no_interval():
    for n in (2, 10, 1000):
        k = cohen_kappa(["f", "m"] * (n // 2), ["f", "m"] * (n // 2))
        assert k["kappa"] == 1.0 and k["agreement"] == 1.0 and k["n"] == n
        assert k["se"] is None and k["ci_low"] is None and k["ci_high"] is None
        assert "variance estimate is 0" in k["note"] and "perfect agreement" in k["note"]
    three = cohen_kappa(list("fmafma"), list("fmafma"))
    assert three["kappa"] == 1.0 and three["ci_low"] is None


def test_total_disagreement():
    # two categories, swapped: kappa -1, variance estimate 0 → no interval
    k = cohen_kappa(["f", "m"] * 5, ["m", "f"] * 5)
    assert k["kappa"] == pytest.approx(-1.0) and k["se"] is None and k["ci_low"] is None
    assert "no agreement" in k["note"]
    # unbalanced disagreement: kappa above -1, a proper interval
    a, b = _sequences([[0, 7], [3, 0]])
    k = cohen_kappa(a, b)
    ref_k, ref_se = _fce_1969([[0, 7], [3, 0]])
    assert k["kappa"] == pytest.approx(ref_k) and k["se"] == pytest.approx(ref_se)
    assert k["ci_low"] == -1.0 and k["ci_high"] == pytest.approx(ref_k + Z * ref_se)


def test_one_class_absent():
    # the reference is all female, the classifier says male sometimes: kappa 0 (p_o = p_e)
    a, b = _sequences([[6, 4], [0, 0]])
    k = cohen_kappa(a, b)
    ref_k, ref_se = _fce_1969([[6, 4], [0, 0]])
    assert k["kappa"] == pytest.approx(0.0, abs=1e-12) and ref_k == pytest.approx(0.0, abs=1e-12)
    # kappa is 0 for any table where one side uses a single label, and its variance estimate 0
    assert ref_se == pytest.approx(0, abs=1e-7) and _delta_method_se([[6, 4], [0, 0]]) == pytest.approx(0, abs=1e-6)
    assert k["se"] is None and k["ci_low"] is None and k["ci_high"] is None
    assert "variance estimate is 0" in k["note"] and "single label" in k["note"]
    # a class one rater never uses, with some agreement on the other classes
    t = [[12, 3, 0], [2, 9, 0], [1, 2, 0]]
    k = cohen_kappa(*_sequences(t))
    ref_k, ref_se = _fce_1969(t)
    assert k["kappa"] == pytest.approx(ref_k) and k["se"] == pytest.approx(ref_se)
    assert k["se"] == pytest.approx(_delta_method_se(t), rel=1e-5)


def test_undefined_kappa_is_empty_with_a_note():
    for n in (1, 2, 50):
        k = cohen_kappa(["male"] * n, ["male"] * n)
        assert k["kappa"] is None and k["se"] is None and k["ci_low"] is None and k["ci_high"] is None
        assert k["agreement"] == 1.0 and k["n"] == n and "undefined" in k["note"] and "'male'" in k["note"]
    empty = cohen_kappa([], [])
    assert empty["kappa"] is None and empty["n"] == 0 and empty["note"]
    with pytest.raises(ValueError):
        cohen_kappa(["a"], [])


def test_interval_is_clipped_to_the_range_of_kappa():
    # n = 10, 9 agree: unclipped upper bound 1.2 or so
    a = ["f"] * 5 + ["m"] * 5
    b = ["f"] * 5 + ["m"] * 4 + ["f"]
    k = cohen_kappa(a, b)
    ref_k, ref_se = _fce_1969([[5, 0], [1, 4]])
    assert ref_k + Z * ref_se > 1 and k["ci_high"] == 1.0
    assert k["ci_low"] == pytest.approx(ref_k - Z * ref_se) and k["se"] == pytest.approx(ref_se)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("fmax"), st.sampled_from("fmax")), min_size=1, max_size=80))
def test_interval_properties(pairs):
    a, b = (list(x) for x in zip(*pairs))
    k = cohen_kappa(a, b)
    assert k == cohen_kappa(b, a)  # symmetric
    undefined = len(set(a)) == 1 and set(a) == set(b)
    assert (k["kappa"] is None) == undefined
    if undefined:
        assert k["se"] is None and k["ci_low"] is None and "undefined" in k["note"]
        return
    assert -1 - 1e-12 <= k["kappa"] <= 1 + 1e-12
    has_ci = k["ci_low"] is not None
    assert has_ci == (k["ci_high"] is not None) == (k["se"] is not None) == (k["note"] is None)
    if has_ci:
        assert k["se"] > 0
        assert -1.0 <= k["ci_low"] <= k["kappa"] <= k["ci_high"] <= 1.0
    else:
        assert "variance estimate is 0" in k["note"]
        assert _fce_1969(_crosstab(a, b))[1] == pytest.approx(0, abs=1e-7)


def _crosstab(a, b):
    cats = sorted(set(a) | set(b))
    t = np.zeros((len(cats), len(cats)), dtype=int)
    for x, y in zip(a, b):
        t[cats.index(x), cats.index(y)] += 1
    return t


def test_validate_reports_the_interval_and_the_note(tmp_path):
    # all confident labels and references male: kappa undefined, reported empty with the note
    df = pl.DataFrame({"item_id": [f"i{k}" for k in range(4)], "label": ["male"] * 4, "reference": ["male"] * 4})
    res = validate_labels(df, out=tmp_path)
    s = res["summary"]["backends"]["table0"]["kappa"]
    assert s["kappa"] is None and s["ci_low"] is None and "undefined" in s["note"]
    row = res["metrics"].filter(pl.col("metric") == "kappa").row(0, named=True)
    assert row["value"] is None and row["ci_low"] is None and row["ci_high"] is None and row["n"] == 4
    # between backends on all labels (three categories): the FCE interval of the k × k table
    one = pl.DataFrame({"item_id": [f"i{k}" for k in range(12)],
                        "label": ["female", "male", "ambiguous", "female", "male", "male",
                                  "female", "ambiguous", "male", "female", "female", "male"],
                        "reference": ["female", "male", "female", "female", "male", "male",
                                      "female", "male", "male", "female", "male", "male"]})
    two = one.with_columns(pl.Series("label", ["female", "male", "female", "ambiguous", "male", "female",
                                               "female", "ambiguous", "male", "male", "female", "male"]))
    res = validate_labels([one, two], names=["a", "b"])
    ka = res["summary"]["between_backends"][0]["kappa_all_labels"]
    ref_k, ref_se = _fce_1969(_crosstab(one["label"].to_list(), two["label"].to_list()))
    assert ka["kappa"] == pytest.approx(ref_k) and ka["se"] == pytest.approx(ref_se)
    kb = res["summary"]["backends"]["a"]["kappa"]
    conf = one.filter(pl.col("label").is_in(["female", "male"]))
    ref_k, ref_se = _fce_1969(_crosstab(conf["label"].to_list(), conf["reference"].to_list()))
    assert kb["kappa"] == pytest.approx(ref_k) and kb["se"] == pytest.approx(ref_se)
    assert kb["ci_low"] == pytest.approx(max(-1, ref_k - Z * ref_se)) and kb["ci_high"] == pytest.approx(min(1, ref_k + Z * ref_se))
