"""Matching rules, indicators, names, caption ids; the engine equals the reference method."""

from __future__ import annotations

import pickle

import mmh3
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biasamp.corpus import query_batch, query_batch_arrow
from biasamp.corpus.baseline import baseline_match
from biasamp.corpus.matcher import CaptionMatcher, caption_ids, fallback_caption_id, prefilter_regex
from biasamp.corpus.names import installed_spacy_model, make_name_finder
from biasamp.corpus.query import make_matcher
from biasamp.errors import BiasampError
from biasamp.vocab.lexicons import load_lexicon
from biasamp.vocab.occupations import load_occupations


@pytest.fixture(scope="module")
def paper():
    return make_matcher(lexicon="paper", names=None)


@pytest.fixture(scope="module")
def extended():
    return make_matcher(lexicon="extended", names=None)


@pytest.fixture(scope="module")
def named():
    return make_matcher(lexicon="paper", names="capitalised")


def run(m, texts, **kw):
    df = pl.DataFrame({"text": pl.Series(texts, dtype=pl.Utf8), "url": [f"https://x/{i}.jpg" for i in range(len(texts))]})
    return query_batch(df, m, **kw)


def occs(m, text):
    return sorted(run(m, [text])["occupation"].to_list())


@pytest.mark.parametrize(
    "text,expected",
    [
        ("An ENGINEER at work", ["engineer"]),
        ("engineering students", []),  # whole words only
        ("the engineers' canteen", ["engineer"]),
        ("Engineer’s helmet", ["engineer"]),
        ("two police-officers", ["police officer"]),
        ("police\tofficer on duty", ["police officer"]),
        ("police", []),
        ("make-up artist backstage", ["makeup artist"]),
        ("makeup artists", ["makeup artist"]),
        ("salespeople at a fair", ["salesperson"]),
        ("a film director and a nurse", ["director", "film director", "nurse"]),
        ("nurse_doctor", ["doctor", "nurse"]),
        ("a doctor.nurse", ["doctor", "nurse"]),
        ("TV-presenter", ["TV presenter"]),
        ("a physician", []),  # synonyms are off by default
    ],
)
def test_occupation_rules(paper, text, expected):
    assert occs(paper, text) == expected


def test_synonyms_on():
    m = make_matcher(synonyms=True, names=None)
    got = run(m, ["two physicians"])
    assert got["occupation"].to_list() == ["doctor"] and got["forms"].to_list() == [["physicians"]]


@pytest.mark.parametrize(
    "text,indicator,terms",
    [
        ("a female engineer", "female", ["female"]),
        ("engineer and his dog", "male", ["his"]),
        ("He's an engineer", "male", ["hes"]),
        ("she's an engineer", "female", ["shes"]),
        ("man and woman engineers", "both", ["man", "woman"]),
        ("engineer at work", "none", []),
        ("engineer in Manhattan", "none", []),  # words, not substrings
    ],
)
def test_indicators(paper, text, indicator, terms):
    got = run(paper, [text])
    assert got["indicator"].to_list() == [indicator]
    assert got["indicator_terms"].to_list() == [terms]


def test_paper_and_extended_differ(paper, extended):
    texts = [
        "actress and waitress",  # no occupation: not returned at all
        "the businessman is a lawyer",
        "a nurse with her mother",
        "singer and his wife",
        "chairwoman and engineer",
        "a doctor with a woman",
    ]
    p = run(paper, texts).select("row", "indicator")
    e = run(extended, texts).select("row", "indicator")
    assert p["indicator"].to_list() == ["none", "female", "male", "none", "female"]
    assert e["indicator"].to_list() == ["male", "female", "both", "female", "female"]
    assert p["row"].to_list() == e["row"].to_list() == [1, 2, 3, 4, 5]


def test_names(named, paper):
    got = run(named, ["Maria, nurse", "Will the doctor come", "John and his wife, doctors", "MARIA nurse", "Paris nurse"])
    assert got.columns[:7] == ["caption_id", "occupation", "text", "url", "indicator", "indicator_terms", "indicator_names"]
    assert got["indicator_names"].to_list() == [["Maria"], [], ["John"], [], []]
    assert got["indicator"].to_list() == ["female", "none", "male", "none", "none"]
    # names off: no column, no indicator from names
    off = run(paper, ["Maria, nurse"])
    assert "indicator_names" not in off.columns and off["indicator"].to_list() == ["none"]


def test_spacy_backend_absent_is_clear():
    if installed_spacy_model():
        pytest.skip("a spaCy model is installed here")
    with pytest.raises(BiasampError, match="spaCy|spacy"):
        make_name_finder("spacy")
    assert make_name_finder("auto").backend == "capitalised"


def test_caption_id_rules():
    df = pl.DataFrame({
        "text": ["a nurse", "a nurse", "a nurse", None],
        "url": ["https://a/1.jpg", None, "https://a/3.jpg", None],
        "hash": [123, None, None, None],
        "row": [0, 1, 2, 3],
    })
    out = caption_ids(df, source_name="f.parquet")
    assert out["id_rule"].to_list() == ["hash", "fallback", "url+text", "fallback"]
    ids = out["caption_id"].to_list()
    assert ids[0] == 123
    assert ids[2] == mmh3.hash64("https://a/3.jpga nurse")[0]
    assert ids[1] == fallback_caption_id("a nurse", "f.parquet", 1) == mmh3.hash64("a nurse\x1ff.parquet\x1f1")[0]
    assert out["caption_id"].dtype == pl.Int64
    # stable: the same input gives the same ids
    assert caption_ids(df, source_name="f.parquet")["caption_id"].to_list() == ids


def test_arrow_batch_and_pickle(paper):
    table = pa.table({"text": ["a nurse", "nothing"], "url": ["u1", "u2"]})
    got = query_batch(table, paper, source="s3://bucket/file.parquet")
    assert got["occupation"].to_list() == ["nurse"] and got["source"].to_list() == ["s3://bucket/file.parquet"]
    m2 = pickle.loads(pickle.dumps(paper))
    assert query_batch(table, m2).drop("source").equals(got.drop("source"))
    arrow = query_batch_arrow(pa.table({"TEXT": ["a nurse"], "URL": ["u1"]}), m2)
    assert isinstance(arrow, pa.Table) and arrow.column("occupation").to_pylist() == ["nurse"]


def test_raw_batches_resolve_columns(paper):
    got = query_batch(pl.DataFrame({"TEXT": ["a nurse"], "URL": ["u"], "hash": [7]}), paper)
    assert got["caption_id"].to_list() == [7] and got["url"].to_list() == ["u"]
    with pytest.raises(BiasampError, match="no text column .*columns found: alt_title"):
        query_batch(pl.DataFrame({"alt_title": ["a nurse"]}), paper)


def test_overlapping_forms_are_all_found():
    m = CaptionMatcher(load_occupations(["sign language", "language teacher", "teacher"]), load_lexicon("paper"), None)
    got = run(m, ["a sign language teacher"])
    assert sorted(got["occupation"].to_list()) == ["language teacher", "sign language", "teacher"]
    chain = CaptionMatcher(load_occupations(["a b", "b c", "c d"]), load_lexicon("paper"), None)
    got = run(chain, ["x a b c d y", "a b c"])
    assert got.filter(pl.col("row") == 0)["occupation"].to_list() == ["a b", "b c", "c d"]
    assert got.filter(pl.col("row") == 1)["occupation"].to_list() == ["a b", "b c"]
    ref = baseline_match(["x a b c d y", "a b c"], chain)
    assert got.select(ref.columns).sort("row", "occupation").equals(ref.sort("row", "occupation"))


def test_prefilter_is_a_superset(paper):
    # every caption the exact stage matches passes the prefilter
    texts = ["The Engineer", "engineers'", "POLICE - OFFICER", "make_up artist", "Salespeople's", "nurse", "police_nurse"]
    df = pl.DataFrame({"text": texts})
    assert df.select(paper.prefilter("text"))["text"].all()
    assert "[^a-zA-Z0-9]" in prefilter_regex(["police officer"])


WORDS = ["nurse", "nurses", "engineer", "police", "officer", "officers", "film", "director", "make", "up",
         "artist", "his", "her", "she's", "man", "women", "Maria", "John", "the", "engineering", "a", "Will",
         "salespeople", "TV", "presenter", "wife", "actress", "businessman", "É", "ñandú"]
SEPS = [" ", "  ", "-", ", ", "_", "'", "’", "\t", "!", "/"]


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPS), st.booleans()), min_size=0, max_size=10))
def test_engine_equals_reference(named, parts):
    """The vectorised engine and the one-caption-at-a-time reference agree on any caption."""
    text = "".join((w.upper() if up else w) + sep for w, sep, up in parts)
    for m in (named,):
        got = run(m, [text, text.lower()]).select("row", "occupation", "forms", "indicator_terms", "indicator_names", "indicator")
        ref = baseline_match([text, text.lower()], m)
        assert got.sort("row", "occupation").equals(ref.sort("row", "occupation")), text


def test_engine_equals_reference_on_synthetic(extended):
    from biasamp.corpus import make_corpus

    df = make_corpus(20_000, seed=11, occupation_rate=0.3, decoy_rate=0.2, name_rate=0.3)
    m = make_matcher(lexicon="extended", names="capitalised")
    got = query_batch(df.select(pl.col("TEXT").alias("text"), pl.col("URL").alias("url")), m)
    ref = baseline_match(df["TEXT"].to_list(), m)
    assert got.height > 5_000
    assert got.select(ref.columns).sort("row", "occupation").equals(ref.sort("row", "occupation"))
