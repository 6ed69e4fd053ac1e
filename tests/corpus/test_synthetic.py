"""The synthetic corpus: schema, rates, and the engine recovers its truth labels."""

from __future__ import annotations

import polars as pl
import pytest

from biasamp.corpus import make_corpus, query_batch
from biasamp.corpus.query import make_matcher

LAION_2B_EN = ["SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity"]


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    return make_corpus(40_000, seed=3, occupation_rate=0.2)


def test_schema_and_determinism(corpus):
    assert corpus.columns[:8] == LAION_2B_EN
    assert {"true_occupation", "true_gender_paper", "true_gender_extended", "true_name"} <= set(corpus.columns)
    assert corpus.height == 40_000
    again = make_corpus(2_000, seed=3, occupation_rate=0.2)
    assert again.equals(make_corpus(2_000, seed=3, occupation_rate=0.2))
    assert not again.equals(make_corpus(2_000, seed=4, occupation_rate=0.2))


def test_rates(corpus):
    occ = corpus["true_occupation"].is_not_null().mean()
    assert 0.18 < occ < 0.22
    g = corpus.filter(pl.col("true_occupation").is_not_null())["true_gender_extended"].value_counts()
    shares = {k: v / g["count"].sum() for k, v in g.iter_rows()}
    assert 0.27 < shares["male"] < 0.33 and 0.17 < shares["female"] < 0.23 and 0.03 < shares["both"] < 0.07


@pytest.mark.parametrize("lexicon", ["paper", "extended"])
def test_engine_recovers_truth(corpus, lexicon):
    m = make_matcher(lexicon=lexicon, names=None)
    batch = corpus.select(pl.col("TEXT").alias("text"), pl.col("URL").alias("url"))
    got = query_batch(batch, m)
    truth = corpus.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    # every caption written with an occupation is found under that occupation ...
    found = truth.filter(pl.col("true_occupation").is_not_null()).join(
        got.select("row", pl.col("occupation").alias("true_occupation"), "indicator"), on=["row", "true_occupation"], how="left"
    )
    assert found["indicator"].null_count() == 0
    # ... with exactly the gender words written into it
    assert (found["indicator"] == found[f"true_gender_{lexicon}"]).all()
    # and no caption without an occupation is returned (decoys such as "engineering" included)
    assert got.join(truth.filter(pl.col("true_occupation").is_null()), on="row", how="semi").height == 0


def test_writes_files(tmp_path):
    paths = make_corpus(2_500, seed=1, out=tmp_path / "c", rows_per_file=1_000)
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    df = pl.read_parquet(tmp_path / "c" / "*.parquet")
    assert df.height == 2_500 and df["SAMPLE_ID"].n_unique() == 2_500
    assert (tmp_path / "c" / "synthetic.json").exists()
