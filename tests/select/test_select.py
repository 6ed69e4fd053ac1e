"""End-to-end selection with the real all-MiniLM-L6-v2: nearest neighbours, the study's
phrasing finding, diagnostics and the embedding cache across runs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from biasamp.select import ALL_MENTIONS, POOLED, select_training_examples
from biasamp.vocab.prompts import resolve_templates


@pytest.fixture(scope="module")
def result(minilm, mentions_table):
    return select_training_examples(mentions_table, embedder=minilm, templates="all", n=3, k=3, show_progress=False)


def test_phrasing_dominates_similarity_but_does_not_leak(minilm, result, mentions):
    """The study's finding: for "A photo of the face of a singer" a template-like caption
    about a politician scores above real captions about singers — a search over all
    captions would pick it; the nearest strategies draw only from captions that mention
    the occupation."""
    prompt = "A photo of the face of a singer"
    leak = "A photo of the face of a politician"
    real = "singer performing live on stage at the summer festival 2019"
    v = minilm.encode([prompt, leak, real])
    assert v[1] @ v[0] > v[2] @ v[0] + 0.1

    nb = result.neighbours.filter((pl.col("occupation") == "singer") & (pl.col("template") == "face"))
    assert nb["prompt"][0] == prompt
    leak_row = nb.filter(pl.col("text") == leak)
    real_row = nb.filter(pl.col("text") == real)
    assert leak_row["rank"].item() < real_row["rank"].item()
    assert not leak_row["mentions_occupation"].item() and real_row["mentions_occupation"].item()
    assert not leak_row["selected"].item()

    singer_ids = set(mentions.filter(pl.col("occupation") == "singer")["caption_id"])
    for cond in ("nearest", "nearest-no-indicators"):
        picked = result.condition(cond).filter(pl.col("occupation") == "singer")
        assert set(picked["caption_id"]) <= singer_ids
        assert leak not in picked["text"].to_list()


def test_nearest_matches_brute_force_over_the_occupation_pool(minilm, result, mentions):
    templates = resolve_templates("all")
    for occ in ("singer", "nurse"):
        pool = mentions.filter(pl.col("occupation") == occ)
        cv = minilm.encode(pool["text"].to_list())
        pv = minilm.encode([t.render(occ) for t in templates])
        sims = cv @ pv.T
        got = result.condition("nearest").filter(pl.col("occupation") == occ)
        for ti, t in enumerate(templates):
            rows = got.filter(pl.col("template") == t.id).sort("rank")
            expect = np.argsort(-sims[:, ti], kind="stable")[:3]
            assert rows["caption_id"].to_list() == pool["caption_id"].gather(expect).to_list()
            np.testing.assert_allclose(rows["similarity"].to_numpy(), sims[expect, ti], atol=1e-4)
        pooled = got.filter(pl.col("template") == POOLED).sort("rank")
        mean = sims.mean(1)
        assert pooled["caption_id"].to_list() == pool["caption_id"].gather(np.argsort(-mean, kind="stable")[:3]).to_list()
        np.testing.assert_allclose(pooled["similarity"].to_numpy(), np.sort(mean)[::-1][:3], atol=1e-4)


def test_nearest_no_indicators_and_templates_column(result):
    ni = result.condition("nearest-no-indicators")
    assert set(ni["indicator"]) == {"none"}
    assert set(result.condition("nearest")["template"]) == {"face", "works-as", "portrait", "photo", "image", POOLED}
    assert result.condition("keyword")["template"].null_count() == len(result.condition("keyword"))
    # sample rows carry their pooled similarity to the occupation's prompts
    assert result.condition("keyword")["similarity"].null_count() == 0


def test_similarity_diagnostics(result, mentions):
    sim = result.similarity
    assert {"condition", "occupation", "template", "n", "mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max"} <= set(sim.columns)
    for occ in ("singer", "politician", "nurse", "engineer"):
        near = sim.filter((pl.col("condition") == "nearest") & (pl.col("occupation") == occ) & (pl.col("template") == POOLED))
        kw = sim.filter((pl.col("condition") == "keyword") & (pl.col("occupation") == occ))
        allm = sim.filter((pl.col("condition") == ALL_MENTIONS) & (pl.col("occupation") == occ))
        assert near["mean"].item() >= kw["mean"].item() - 1e-9
        assert near["mean"].item() >= allm["mean"].item() - 1e-9 and near["max"].item() == pytest.approx(allm["max"].item())
        assert allm["n"].item() == mentions.filter(pl.col("occupation") == occ).height
    q = sim.select("q05", "q25", "q50", "q75", "q95").to_numpy()
    assert (np.diff(q, axis=1) >= -1e-12).all()


def test_pools_for_nearest(result):
    p = result.pools.filter((pl.col("condition") == "nearest-no-indicators") & (pl.col("occupation") == "engineer"))
    assert p["n_pool"].item() == 2 and p["flag"].item() == "short_pool"


def test_rerun_embeds_nothing_twice(tmp_path, minilm, counting, mentions):
    first = counting(minilm)
    a = select_training_examples(mentions, embedder=first, cache_dir=tmp_path, templates="all", n=2, k=2, show_progress=False)
    prompts = {t.render(o) for t in resolve_templates("all") for o in mentions["occupation"].unique()}
    assert len(prompts) == 20
    # every distinct text once (two captions are word for word the prompts of their occupation)
    assert first.texts == len(set(mentions["text"]) | prompts) == 40
    second = counting(minilm)
    b = select_training_examples(mentions, embedder=second, cache_dir=tmp_path, templates="all", n=2, k=2, show_progress=False)
    assert second.calls == 0 and second.texts == 0
    assert b.params["embedding"]["embedded"] == 0
    assert a.selection.equals(b.selection)


def test_pool_by_max(minilm, mentions):
    r = select_training_examples(mentions, strategies=["nearest"], embedder=minilm, templates="all", k=2, pool_by="max",
                                 inspect_top=0, show_progress=False)
    pooled = r.selection.filter(pl.col("template") == POOLED)
    per = r.selection.filter(pl.col("template") != POOLED)
    for occ in ("singer", "nurse"):
        best = per.filter(pl.col("occupation") == occ)["similarity"].max()
        assert pooled.filter((pl.col("occupation") == occ) & (pl.col("rank") == 1))["similarity"].item() == pytest.approx(best, abs=1e-5)
    assert r.neighbours.is_empty()


def test_a_query_output_selected_one_group_of_occupations_at_a_time(tmp_path, minilm, monkeypatch):
    """Reading only the occupations asked for (their partitions) gives the same rows as one
    selection over all occupations: samples and neighbours are drawn per occupation."""
    from biasamp.corpus import make_corpus, query_corpus
    from biasamp.select import select_training_examples

    make_corpus(4000, seed=3, out=tmp_path / "c", rows_per_file=2000, occupation_rate=0.2)
    out = tmp_path / "q"
    query_corpus(str(tmp_path / "c"), out, names=None, progress=False)
    kw = dict(strategies=["keyword", "nearest"], n=5, k=5, templates="study", embedder=minilm, show_progress=False, inspect_top=0)
    everything = select_training_examples(out, **kw)
    group = ["nurse", "engineer", "singer"]
    import biasamp.corpus.query as query_mod

    read, real_read = [], query_mod._read_part
    monkeypatch.setattr(query_mod, "_read_part", lambda f: read.append(f.parent.name) or real_read(f))
    part = select_training_examples(out, occupations=group, **kw)
    assert set(read) == {"occupation=nurse", "occupation=engineer", "occupation=singer"}  # only their partitions
    key = ["condition", "occupation", "template", "rank"]
    want = everything.selection.filter(pl.col("occupation").is_in(group)).sort(key, nulls_last=False)
    got = part.selection.sort(key, nulls_last=False)
    assert got.height > 20 and got.select("condition", "occupation", "caption_id").equals(want.select("condition", "occupation", "caption_id"))
    assert part.params["mentions"] < everything.params["mentions"]
