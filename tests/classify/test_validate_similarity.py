"""Validation metrics against independent references; similarity against brute force."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.classify import cohen_kappa, pairwise_similarity, validate_labels, wilson
from biasamp.errors import BiasampError


def _wilson_by_root(k, n, z=1.959963984540054):
    """Reference: the Wilson interval is {p : |k/n - p| <= z sqrt(p(1-p)/n)}; solve numerically."""
    from scipy.optimize import brentq

    ph = k / n
    f = lambda p: (ph - p) ** 2 - z * z * p * (1 - p) / n  # noqa: E731
    eps = 1e-12  # f vanishes at p = k/n when k is 0 or n: bracket the other root
    lo = 0.0 if k == 0 else brentq(f, 0.0, min(ph, 1 - eps), xtol=1e-14)
    hi = 1.0 if k == n else brentq(f, max(ph, eps), 1.0, xtol=1e-14)
    return lo, hi


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_the_root_definition(kn):
    k, n = kn
    lo, hi = wilson(k, n)
    rlo, rhi = _wilson_by_root(k, n)
    assert lo == pytest.approx(rlo, abs=1e-9) and hi == pytest.approx(rhi, abs=1e-9)
    assert lo <= k / n <= hi


def test_wilson_empty():
    assert wilson(0, 0) == (None, None)


def test_kappa_textbook_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 → kappa 0.4
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    k = cohen_kappa(a, b)
    assert k["kappa"] == pytest.approx(0.4) and k["agreement"] == pytest.approx(0.7) and k["n"] == 50


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("fma"), st.sampled_from("fma")), min_size=1, max_size=60))
def test_kappa_matches_a_crosstab_formula(pairs):
    import pandas as pd

    a, b = zip(*pairs)
    ct = pd.crosstab(pd.Series(a), pd.Series(b)).reindex(index=list("fma"), columns=list("fma"), fill_value=0)
    n = ct.values.sum()
    po = np.trace(ct.values) / n
    pe = sum(ct.loc[c].sum() * ct[c].sum() for c in "fma") / n**2
    k = cohen_kappa(a, b)
    if pe < 1:
        assert k["kappa"] == pytest.approx((po - pe) / (1 - pe), abs=1e-12)
        assert -1 <= k["kappa"] <= 1
    else:  # undefined: empty, with a note (the SE and interval: tests/classify/test_validate_kappa.py)
        assert k["kappa"] is None and k["ci_low"] is None and "undefined" in k["note"]


def test_validate_metrics_by_hand(tmp_path):
    df = pl.DataFrame({
        "item_id": [str(i) for i in range(10)],
        "label": ["female", "female", "male", "male", "male", "female", "ambiguous", "no_face", "male", "female"],
        "reference": ["female", "female", "female", "male", "male", "male", "female", "male", "male", "unsure"],
        "backend": ["dlib-onnx"] * 10,
    })
    res = validate_labels(df, out=tmp_path)
    s = res["summary"]["backends"]["dlib-onnx"]
    # confident pairs (pred, ref): ff ff mf mm mm fm mm → 7; correct 5
    assert s["n_reference"] == 9 and s["n_confident"] == 7 and s["accuracy"] == pytest.approx(5 / 7)
    assert s["confusion"]["female"] == {"female": 2, "male": 1, "ambiguous": 1, "no_face": 0}
    assert s["confusion"]["male"] == {"female": 1, "male": 3, "ambiguous": 0, "no_face": 1}
    f = s["per_class"]["female"]
    assert f["sensitivity"] == pytest.approx(2 / 3) and f["specificity"] == pytest.approx(3 / 4)
    assert f["sensitivity_ci"] == pytest.approx(list(_wilson_by_root(2, 3)))
    assert s["kappa"]["kappa"] == pytest.approx(cohen_kappa(["f", "f", "m", "m", "m", "f", "m"],
                                                            ["f", "f", "f", "m", "m", "m", "m"])["kappa"])
    assert {"item_id": "2", "label": "male", "reference": "female"} in [
        {k: r[k] for k in ("item_id", "label", "reference")} for r in s["misclassified"]]
    j = json.loads((tmp_path / "validation.json").read_text())
    assert j["backends"]["dlib-onnx"]["n_confident"] == 7
    lab = pl.read_parquet(tmp_path / "labelled.parquet")
    assert {"item_id", "label", "reference", "backend"} <= set(lab.columns) and lab.height == 9  # "unsure" dropped
    m = pl.read_parquet(tmp_path / "validation.parquet")
    acc = m.filter(pl.col("metric") == "accuracy").row(0, named=True)
    assert (acc["k"], acc["n"]) == (5, 7)


def test_validate_requires_a_reference():
    with pytest.raises(BiasampError, match="reference"):
        validate_labels(pl.DataFrame({"item_id": ["a"], "label": ["male"]}))


def test_validation_surfaces_the_grace_hopper_failure(photo_dir, tmp_path, cli_runner):
    """The dlib model calls Grace Hopper male: validation against human labels shows it."""
    from biasamp.cli import app
    from biasamp.classify import classify_images

    subset = tmp_path / "photos"
    subset.mkdir()
    for name in ("astronaut.png", "grace_hopper.jpg"):
        (subset / name).write_bytes((photo_dir / name).read_bytes())
    classify_images([subset], tmp_path / "dlib", show_progress=False)
    classify_images([subset], tmp_path / "none", face_detector="none", show_progress=False)
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n".join(json.dumps({"item_id": i, "label": "female", "annotator": a})
                             for i in ("astronaut.png", "grace_hopper.jpg") for a in ("x", "y")) + "\n")
    r = cli_runner.invoke(app, ["validate", str(tmp_path / "dlib"), str(tmp_path / "none"), "--annotations", str(ann),
                                "--out", str(tmp_path / "v"), "-q"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "v" / "validation.json").read_text())
    d = s["backends"]["dlib-onnx"]
    assert d["confusion"]["female"] == {"male": 1, "ambiguous": 1}
    assert d["confusion"]["male"] == {"male": 0, "ambiguous": 0}
    assert d["accuracy"] == 0.0 and d["per_class"]["female"]["sensitivity"] == 0.0
    assert [m["item_id"] for m in d["misclassified"]] == ["grace_hopper.jpg"]
    assert len(s["between_backends"]) == 1


def test_pairwise_similarity_brute_force():
    rng = np.random.default_rng(3)
    t, g = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    r = pairwise_similarity(t, g, n_boot=300, rng=np.random.default_rng(0))
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    brute = np.mean([[float(a @ b) for b in gn] for a in tn])
    assert r["similarity"] == pytest.approx(brute)
    within = np.mean([float(tn[i] @ tn[j]) for i in range(7) for j in range(7) if i != j])
    assert r["within_train"] == pytest.approx(within)
    assert r["ci_low"] <= r["similarity"] <= r["ci_high"]
    same = pairwise_similarity(t, t[:, :], n_boot=0)
    assert same["ci_low"] is None and not math.isnan(same["similarity"])
    empty = pairwise_similarity(t, np.zeros((0, 5)))
    assert empty["similarity"] is None and empty["n_gen"] == 0


def test_bootstrap_interval_covers_resampled_means():
    rng = np.random.default_rng(5)
    t, g = rng.normal(size=(30, 8)) + 1, rng.normal(size=(30, 8)) + 1
    r1 = pairwise_similarity(t, g, n_boot=400, rng=np.random.default_rng(1))
    r2 = pairwise_similarity(t, g, n_boot=400, rng=np.random.default_rng(1))
    assert r1 == r2  # seeded
    assert r1["ci_high"] - r1["ci_low"] > 0


def test_measure_reads_the_labelled_table(tmp_path):
    correction = pytest.importorskip("biasamp.measure.correction")
    df = pl.DataFrame({"item_id": list("abcdef"), "label": ["female", "male", "male", "female", "ambiguous", "male"],
                       "reference": ["female", "female", "male", "male", "female", "male"]})
    res = validate_labels(df, out=tmp_path)
    c = correction.Correction.from_validation(tmp_path / "labelled.parquet")
    f = res["summary"]["backends"]["table0"]["per_class"]["female"]
    assert (c.sensitivity, c.specificity) == pytest.approx((f["sensitivity"], f["specificity"]))
    assert (c.sensitivity, c.specificity) == pytest.approx((1 / 2, 2 / 3))
