"""Sample strategies, flags and input errors (no model needed: embedder=None)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.errors import BiasampError
from biasamp.select import STRATEGIES, Strategy, sample_order, select_training_examples
from biasamp.select.strategies import mix64, resolve_strategies

SAMPLES = ["keyword", "no-indicators", "captions-as-prompts"]


def run(mentions, **kw):
    kw.setdefault("strategies", SAMPLES)
    return select_training_examples(mentions, embedder=None, show_progress=False, **kw)


def test_keyword_sample_is_seeded_uniform_subset(mentions):
    r = run(mentions, n=3, seed=7)
    kw = r.condition("keyword")
    assert kw["template"].null_count() == len(kw)
    for occ, g in kw.group_by("occupation"):
        pool = mentions.filter(pl.col("occupation") == occ[0])
        assert len(g) == min(3, len(pool))
        assert set(g["caption_id"]) <= set(pool["caption_id"])
        assert g["rank"].to_list() == list(range(1, len(g) + 1))
    assert run(mentions, n=3, seed=7).selection.equals(r.selection)
    assert not run(mentions, n=3, seed=8).selection.equals(r.selection)


def test_sample_is_row_order_invariant_and_nested(mentions):
    a = run(mentions, n=2, strategies=["keyword"]).selection
    b = run(mentions.reverse(), n=2, strategies=["keyword"]).selection
    assert a.equals(b)
    big = run(mentions, n=4, strategies=["keyword"]).selection
    assert set(a["caption_id"]) <= set(big["caption_id"])


def test_sampling_is_uniform():
    # each of 10 captions should be first in about 1/10 of seeds
    ids = np.arange(10, dtype=np.int64) * 7919 + 3
    firsts = np.bincount([sample_order(ids, seed, "nurse")[0] for seed in range(4000)], minlength=10)
    chi2 = ((firsts - 400) ** 2 / 400).sum()
    assert chi2 < 27.9  # p = 0.001 for 9 degrees of freedom


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), unique=True, max_size=40), st.integers(0, 10**6))
def test_sample_order_is_a_permutation_independent_of_input_order(ids, seed):
    arr = np.array(ids, dtype=np.int64)
    order = sample_order(arr, seed, "pilot")
    assert sorted(order.tolist()) == list(range(len(ids)))
    rev = sample_order(arr[::-1], seed, "pilot")
    assert arr[order].tolist() == arr[::-1][rev].tolist()


def test_mix64_is_a_bijection_on_a_sample():
    x = np.arange(100_000, dtype=np.uint64)
    assert len(np.unique(mix64(x))) == len(x)


def test_no_indicators_keeps_only_none(mentions):
    r = run(mentions, n=10)
    sel = r.condition("no-indicators").join(mentions.select("caption_id", "occupation", "indicator"), on=["caption_id", "occupation"])
    assert set(sel["indicator_right"]) == {"none"}
    # same seeded order as keyword, restricted to captions without indicators
    kw = run(mentions, n=100, strategies=["keyword"]).selection.filter(pl.col("indicator") == "none")
    ni = run(mentions, n=100, strategies=["no-indicators"]).selection
    for occ in ni["occupation"].unique():
        assert kw.filter(pl.col("occupation") == occ)["caption_id"].to_list() == ni.filter(pl.col("occupation") == occ)["caption_id"].to_list()


def test_no_indicator_values_selectable(mentions):
    r = run(mentions, n=100, strategies=["no-indicators"], no_indicator_values=["none", "female"])
    assert set(r.selection["indicator"]) == {"none", "female"}


def test_captions_as_prompts_reuses_the_keyword_sample(mentions):
    r = run(mentions, n=3, strategies=["captions-as-prompts"])
    assert set(r.selection["condition"]) == {"captions-as-prompts"}
    kw = run(mentions, n=3, strategies=["keyword"]).selection
    cap = r.selection.drop("condition")
    assert cap.equals(kw.drop("condition"))
    assert STRATEGIES.get("captions-as-prompts").prompts == "captions"


def test_k_larger_than_pool_takes_all_and_flags(mentions):
    r = run(mentions, n=6, strategies=["keyword"])
    nurse = r.condition("keyword").filter(pl.col("occupation") == "nurse")
    assert len(nurse) == 5
    flag = r.pools.filter((pl.col("occupation") == "nurse"))
    assert flag["flag"].to_list() == ["short_pool"] and flag["n_pool"].item() == 5 and flag["n_selected"].item() == 5
    assert any("only 5 candidate" in m and "nurse" in m for m in r.messages())
    ok = r.pools.filter(pl.col("occupation") == "singer")
    assert ok["flag"].item() == "ok"


def test_empty_pool_is_flagged(mentions):
    m = mentions.filter(~((pl.col("occupation") == "engineer") & (pl.col("indicator") == "none")))
    r = run(m, n=2, strategies=["no-indicators", "keyword"], occupations=["engineer", "nurse", "astronaut"])
    flags = {(c, o): f for c, o, f in r.pools.select("condition", "occupation", "flag").iter_rows()}
    assert flags[("no-indicators", "engineer")] == "empty_pool"
    assert flags[("no-indicators", "astronaut")] == "empty_pool"
    assert flags[("keyword", "astronaut")] == "empty_pool"
    assert flags[("keyword", "engineer")] == "ok"
    assert r.condition("no-indicators").filter(pl.col("occupation") == "engineer").is_empty()
    assert any("no candidate caption for 'astronaut'" in msg for msg in r.messages())
    assert set(r.selection["occupation"]) <= {"engineer", "nurse"}


def test_unknown_template_placeholder_is_a_clear_error(mentions):
    with pytest.raises(BiasampError, match=r"unknown placeholder\(s\) \{job\}"):
        run(mentions, templates="A photo of {a} {job}")


def test_unknown_strategy_and_bad_parameters(mentions):
    with pytest.raises(BiasampError, match="unknown strategy 'nearestt'"):
        run(mentions, strategies=["nearestt"])
    with pytest.raises(BiasampError, match="need an embedder"):
        run(mentions, strategies=["nearest"])
    with pytest.raises(BiasampError, match="at least 1"):
        run(mentions, n=0)
    with pytest.raises(BiasampError, match="pool_by"):
        run(mentions, pool_by="median")


def test_bad_mentions_tables_name_the_problem(mentions, tmp_path):
    with pytest.raises(BiasampError, match="missing column.*indicator"):
        run(mentions.drop("indicator"))
    with pytest.raises(BiasampError, match="'indicator' has unknown value"):
        run(mentions.with_columns(pl.lit("man").alias("indicator")))
    with pytest.raises(BiasampError, match="caption_id.*empty values"):
        run(mentions.with_columns(pl.when(pl.col("caption_id") == 101).then(None).otherwise(pl.col("caption_id")).alias("caption_id")))
    with pytest.raises(BiasampError, match="file not found"):
        run(tmp_path / "nope.parquet")


def test_repeated_rows_are_reported_not_silently_dropped(mentions):
    r = run(pl.concat([mentions, mentions.head(2)]), n=100, strategies=["keyword"])
    assert any("2 repeated (caption_id, occupation)" in m for m in r.messages())
    assert len(r.selection) == len(mentions)


def test_custom_composed_strategy(mentions):
    s = Strategy("random-no-indicators-2", "sample", pool=("no-indicators", "has-text"))
    r = run(mentions, strategies=[s], n=2)
    assert set(r.selection["condition"]) == {"random-no-indicators-2"}
    assert set(r.selection["indicator"]) == {"none"}
    assert [x.name for x in resolve_strategies("all")] == ["keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators"]


def test_indicator_and_pool_diagnostics(mentions):
    r = run(mentions, n=100)
    ind = r.indicators
    allm = ind.filter((pl.col("condition") == "all-mentions") & pl.col("occupation").is_null())
    assert allm["n"].item() == len(mentions)
    assert allm["n_female"].item() == (mentions["indicator"] == "female").sum()
    ni = ind.filter((pl.col("condition") == "no-indicators") & pl.col("occupation").is_null())
    assert ni["share_none"].item() == 1.0
    row = ind.filter((pl.col("condition") == "keyword") & (pl.col("occupation") == "nurse"))
    assert row["share_female"].item() == pytest.approx(2 / 5)
    assert set(r.pools.columns) >= {"condition", "occupation", "n_mentions", "n_pool", "n_requested", "n_selected", "flag", "message"}
    assert r.similarity.is_empty() and r.neighbours.is_empty()


def test_write_round_trip(mentions, tmp_path):
    from biasamp.tables import read_table

    r = run(mentions, n=3)
    paths = r.write(tmp_path / "out")
    back = read_table(paths["selection"], "selection")
    assert back.equals(r.selection)
    for name in ("pools", "similarity", "indicators", "neighbours", "prompts"):
        assert (tmp_path / "out" / "diagnostics" / f"{name}.parquet").exists()
    import json

    manifest = json.loads((tmp_path / "out" / "select.manifest.json").read_text())
    assert manifest["params"]["n"] == 3 and manifest["stage"] == "select"
    assert any(f["flag"] == "short_pool" for f in manifest["flags"])
