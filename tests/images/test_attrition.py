"""Attrition counts per step and the differential-loss flag."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.images import attrition_table
from biasamp.images.schema import finish


def _downloads(ids, statuses):
    return finish(
        pl.DataFrame(
            {
                "caption_id": ids,
                "item_id": [str(i) for i in ids],
                "url": [f"http://x.invalid/{i}" for i in ids],
                "status": statuses,
                "received": [s in ("ok", "not_an_image", "too_small") for s in statuses],
            }
        )
    )


def _labels(ids, face, label):
    return pl.DataFrame(
        {"item_id": [str(i) for i in ids], "source": "train", "face_status": face, "p_female": [0.5] * len(ids), "label": label}
    )


def test_counts_per_step(make_selection):
    rows = [("keyword", "nurse", i, "u") for i in range(6)] + [("nearest", "nurse", i, "u") for i in range(3)]
    rows.append(("keyword", "nurse", 0, "u"))  # a caption listed twice (two templates) counts once
    sel = make_selection(rows)
    dl = _downloads([0, 1, 2, 3, 4], ["ok", "ok", "ok", "not_an_image", "timeout"])  # caption 5 never fetched
    lab = _labels([0, 1, 2], ["ok", "ok", "no_face"], ["female", "ambiguous", "no_face"])
    t = attrition_table(sel, dl, lab)
    k = t.filter(pl.col("condition") == "keyword").row(0, named=True)
    assert (k["selected"], k["downloaded"], k["decoded"], k["face_ok"], k["confident"]) == (6, 4, 3, 2, 1)
    assert (k["lost_not_an_image"], k["lost_timeout"], k["not_fetched"], k["n_female"]) == (1, 1, 1, 1)
    assert k["face_filter_applied"] is True
    n = t.filter(pl.col("condition") == "nearest").row(0, named=True)
    assert (n["selected"], n["decoded"], n["confident"]) == (3, 3, 1)
    # without labels the later steps are unknown, not zero
    t2 = attrition_table(sel, dl)
    assert t2["face_ok"].null_count() == len(t2) and t2["decoded"].to_list() == t["decoded"].to_list()


def test_embedding_labels_count_as_no_face_filter(make_selection):
    sel = make_selection([("keyword", "nurse", i, "u") for i in range(2)])
    dl = _downloads([0, 1], ["ok", "ok"])
    lab = _labels([0, 1], [None, None], ["male", "ambiguous"])
    r = attrition_table(sel, dl, lab).row(0, named=True)
    assert (r["face_ok"], r["confident"], r["face_filter_applied"]) == (2, 1, False)


def _differential(make_selection, rates, n=100, seed=0):
    rng = np.random.default_rng(seed)
    rows, ids, statuses = [], [], []
    cid = 0
    for occ, rate in rates.items():
        ok = rng.permutation([True] * round(rate * n) + [False] * (n - round(rate * n)))
        for good in ok:
            rows.append(("keyword", occ, cid, "u"))
            ids.append(cid)
            statuses.append("ok" if good else "http_error")
            cid += 1
    return make_selection(rows), _downloads(ids, statuses)


def test_differential_loss_is_flagged(make_selection):
    sel, dl = _differential(make_selection, {"nurse": 0.9, "engineer": 0.88, "ceo": 0.4, "pilot": 0.91})
    t = attrition_table(sel, dl)
    flags = dict(zip(t["occupation"], t["flagged"]))
    assert flags == {"ceo": True, "engineer": False, "nurse": False, "pilot": False}
    ceo = t.filter(pl.col("occupation") == "ceo").row(0, named=True)
    assert ceo["flag"] == "more loss than most occupations" and ceo["q_value"] < 0.05
    assert ceo["retained"] == pytest.approx(0.4) and ceo["retained_median"] == pytest.approx(0.89)
    from scipy.stats import binomtest

    assert ceo["p_value"] == pytest.approx(binomtest(40, 100, 0.89).pvalue)
    assert t["differential"].to_list() == [True] * 4
    # the chi-square statistic against a by-hand computation
    k = t["decoded"].to_numpy().astype(float)
    n = t["selected"].to_numpy().astype(float)
    obs = np.stack([k, n - k], 1)
    exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
    assert t["chi2"][0] == pytest.approx(((obs - exp) ** 2 / exp).sum())
    assert t["chi2_dof"][0] == 3


def test_equal_loss_is_not_flagged(make_selection):
    sel, dl = _differential(make_selection, {"nurse": 0.8, "engineer": 0.8, "ceo": 0.8})
    t = attrition_table(sel, dl)
    assert not any(t["flagged"]) and t["differential"].to_list() == [False] * 3


def test_small_gap_needs_min_gap(make_selection):
    # a significant but small difference is not flagged under the default 10-point rule
    sel, dl = _differential(make_selection, {"a": 0.99, "b": 0.93, "c": 0.96}, n=2000)
    t = attrition_table(sel, dl)
    assert (t.filter(pl.col("occupation") != "c")["q_value"] < 0.05).all() and not any(t["flagged"])
    t2 = attrition_table(sel, dl, min_gap=0.02)
    assert dict(zip(t2["occupation"], t2["flagged"])) == {"a": True, "b": True, "c": False}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["ok", "timeout", "not_an_image", "http_error", None]), st.sampled_from(["female", "male", "ambiguous", "no_face"])), min_size=1, max_size=40))
def test_steps_never_increase(make_selection, items):
    rows = [("keyword", f"occ{o}", i, "u") for i, (o, _, _) in enumerate(items)]
    sel = make_selection(rows)
    fetched = [(i, s) for i, (_, s, _) in enumerate(items) if s is not None]
    dl = _downloads([i for i, _ in fetched], [s for _, s in fetched])
    lab = _labels(
        [i for i, s in fetched if s == "ok"],
        ["ok" if items[i][2] != "no_face" else "no_face" for i, s in fetched if s == "ok"],
        [items[i][2] for i, s in fetched if s == "ok"],
    )
    t = attrition_table(sel, dl, lab)
    for r in t.iter_rows(named=True):
        assert r["selected"] >= r["downloaded"] >= r["decoded"] >= r["face_ok"] >= r["confident"] >= 0
    assert t["selected"].sum() == len(items)
