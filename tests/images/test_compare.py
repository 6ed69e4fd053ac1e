"""Embedding-based vs image-based labels: agreement, Cohen's kappa, confusion."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.errors import BiasampError
from biasamp.images import cohen_kappa, compare_embedding_labels


def _kappa_reference(a, b):
    """Kappa from the confusion matrix (an independent formulation)."""
    cats = sorted(set(a) | set(b))
    m = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b):
        m[cats.index(x), cats.index(y)] += 1
    n = m.sum()
    po = np.trace(m) / n
    pe = (m.sum(0) * m.sum(1)).sum() / n**2
    return (po - pe) / (1 - pe)


def test_kappa_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["female", "male"]), st.sampled_from(["female", "male"])), min_size=2, max_size=60))
def test_kappa_matches_reference(pairs):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    k = cohen_kappa(a, b)
    if len(set(a) | set(b)) == 1:
        assert k is None
    else:
        assert k == pytest.approx(_kappa_reference(a, b))


def _labels(ids, labels, face=None, p=None):
    return pl.DataFrame(
        {
            "item_id": [str(i) for i in ids],
            "face_status": face or ["ok"] * len(ids),
            "p_female": p or [0.5] * len(ids),
            "label": labels,
        },
        schema_overrides={"face_status": pl.Utf8},
    )


def test_compare_on_common_items():
    emb = _labels([1, 2, 3, 4, 5, 6, 9], ["female", "female", "male", "male", "ambiguous", "female", "male"], face=[None] * 7)
    img = _labels(
        [1, 2, 3, 4, 5, 6, 7],
        ["female", "male", "male", "male", "female", "no_face", "female"],
        face=["ok", "ok", "ok", "ok", "ok", "no_face", "ok"],
    )
    res = compare_embedding_labels(emb, img)
    s = res.summary.row(0, named=True)
    assert s["n_common"] == 6 and s["n_both_confident"] == 4
    assert s["agreement"] == pytest.approx(3 / 4)
    assert s["cohen_kappa"] == pytest.approx(_kappa_reference(["female", "male", "male", "male"], ["female", "female", "male", "male"]))
    assert s["n_image_face_rejected"] == 1 and s["n_face_rejected_but_embedding_confident"] == 1
    conf = {r["image_label"]: r for r in res.confusion.iter_rows(named=True)}
    assert conf["male"]["female"] == 1 and conf["male"]["male"] == 2 and conf["no_face"]["female"] == 1
    assert int(res.confusion.drop("image_label").sum_horizontal().sum()) == 6


def test_no_common_items_is_an_error():
    with pytest.raises(BiasampError, match="share no item_id"):
        compare_embedding_labels(_labels([1], ["male"]), _labels([2], ["male"]))
