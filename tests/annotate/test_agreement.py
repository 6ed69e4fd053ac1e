"""Kappa statistics against worked examples from the literature and independent formulas."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.annotate import agreement_table, cohen_kappa, fleiss_kappa

LABELS = ["female", "male", "unsure", "no_person", "several_people"]


def _pairs(table: dict[tuple[str, str], int]) -> tuple[list[str], list[str]]:
    a, b = [], []
    for (x, y), n in table.items():
        a += [x] * n
        b += [y] * n
    return a, b


@pytest.mark.parametrize(
    "table, expected",
    [
        # Cohen's kappa article, Wikipedia: 50 grant proposals, kappa = 0.4
        ({("yes", "yes"): 20, ("yes", "no"): 5, ("no", "yes"): 10, ("no", "no"): 15}, 0.4),
        # same article, "similar percentage agreement" examples: 0.1304 and 0.2593
        ({("yes", "yes"): 45, ("yes", "no"): 15, ("no", "yes"): 25, ("no", "no"): 15}, 0.1304),
        ({("yes", "yes"): 25, ("yes", "no"): 35, ("no", "yes"): 5, ("no", "no"): 35}, 0.2593),
    ],
)
def test_cohen_kappa_worked_examples(table, expected):
    a, b = _pairs(table)
    assert cohen_kappa(a, b) == pytest.approx(expected, abs=5e-5)


def test_fleiss_kappa_worked_example():
    # Fleiss' kappa article, Wikipedia: 10 subjects, 14 raters, 5 categories; P_bar 0.378, P_e 0.213, kappa 0.210
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(counts) == pytest.approx(0.20993, abs=5e-5)


def test_undefined_kappa_is_none_with_a_note():
    assert cohen_kappa(["male"] * 4, ["male"] * 4) is None
    assert fleiss_kappa([[3, 0], [3, 0]]) is None
    df = pl.DataFrame({"item_id": ["a", "a"], "annotator": ["x", "y"], "label": ["male", "male"]})
    t = agreement_table(df)
    assert t["kappa"].to_list() == [None] and "undefined" in t["note"][0]


def _scott_pi(a, b):
    """Scott's pi from its own definition (pooled marginals): what Fleiss' kappa is for two raters."""
    n = len(a)
    p_o = np.mean([x == y for x, y in zip(a, b)])
    pooled = Counter(a) + Counter(b)
    p_e = sum((c / (2 * n)) ** 2 for c in pooled.values())
    return (p_o - p_e) / (1 - p_e)


def _cohen_matrix(a, b):
    """Cohen's kappa from the confusion matrix (an independent formulation)."""
    cats = sorted(set(a) | set(b))
    idx = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b):
        m[idx[x], idx[y]] += 1
    m /= m.sum()
    p_o = np.trace(m)
    p_e = float(m.sum(1) @ m.sum(0))
    return (p_o - p_e) / (1 - p_e)


pair_lists = st.integers(2, 40).flatmap(
    lambda n: st.tuples(st.lists(st.sampled_from(LABELS), min_size=n, max_size=n),
                        st.lists(st.sampled_from(LABELS), min_size=n, max_size=n))
)


@settings(max_examples=150, deadline=None)
@given(pair_lists)
def test_kappa_properties(ab):
    a, b = ab
    k = cohen_kappa(a, b)
    assert k == cohen_kappa(b, a)  # symmetric
    if k is None:
        assert len(set(a) | set(b)) == 1
        return
    assert k == pytest.approx(_cohen_matrix(a, b), abs=1e-12)
    assert -1.0 <= k <= 1.0 + 1e-12
    if len(set(a)) > 1:
        assert cohen_kappa(a, a) == pytest.approx(1.0)
    counts = [[int(x == c) + int(y == c) for c in LABELS] for x, y in zip(a, b)]
    assert fleiss_kappa(counts) == pytest.approx(_scott_pi(a, b), abs=1e-12)


def test_cohen_matches_scikit_learn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    a = rng.choice(LABELS, 200).tolist()
    b = [x if rng.random() < 0.7 else rng.choice(LABELS) for x in a]
    assert cohen_kappa(a, b) == pytest.approx(metrics.cohen_kappa_score(a, b), abs=1e-12)


def test_agreement_table_two_and_three_annotators():
    two = pl.DataFrame(
        {
            "item_id": ["1", "1", "2", "2", "3", "3", "4"],
            "annotator": ["x", "y"] * 3 + ["x"],
            "label": ["female", "female", "male", "female", "male", "male", "unsure"],
        }
    )
    t = agreement_table(two)
    assert t["statistic"].to_list() == ["cohen_kappa"] and t["n_items"].to_list() == [3]
    assert t["kappa"][0] == pytest.approx(cohen_kappa(["female", "male", "male"], ["female", "female", "male"]))
    three = pl.concat([two, pl.DataFrame({"item_id": ["1", "2"], "annotator": ["z", "z"], "label": ["female", "male"]})])
    t3 = agreement_table(three)
    assert t3["statistic"].to_list().count("cohen_kappa") == 3
    fl = t3.filter(pl.col("statistic") == "fleiss_kappa")
    # items 1 (3 ratings), 2 (3), 3 (2): the variable-raters form, checked against the matrix form
    expected = fleiss_kappa([[3, 0], [1, 2], [0, 2]])
    assert fl["n_items"][0] == 3 and fl["kappa"][0] == pytest.approx(expected)
