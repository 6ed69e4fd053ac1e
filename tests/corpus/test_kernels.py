"""The native kernels (C extension) give exactly what the Polars paths give.

Each test compares a native result with an independent one: the exact stage with the
Polars exact stage, the Hyperscan-library prefilter with the regex prefilter, the caption
ids with the `mmh3` package.
"""

from __future__ import annotations

import os
import pickle

import mmh3
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biasamp.corpus import kernels
from biasamp.corpus.matcher import CaptionMatcher
from biasamp.corpus.query import make_matcher
from biasamp.errors import BiasampError

needs_native = pytest.mark.skipif(not kernels.available(), reason="the native extension is not built here")
needs_libhs = pytest.mark.skipif(not kernels.libhs_available(), reason="built without the Hyperscan library")


def test_native_kernels_are_built_where_required():
    """scripts/test.sh asks for them, so that a broken build cannot hide behind the fallbacks."""
    if os.environ.get("BIASAMP_REQUIRE_NATIVE") == "1":
        assert kernels.available(), "the C extension biasamp.corpus._scan was not built (pip install -e . with a C compiler)"
    if os.environ.get("BIASAMP_REQUIRE_LIBHS") == "1":
        assert kernels.libhs_available(), "libhs is installed but the extension was built without it"


@pytest.fixture(scope="module")
def pairs():
    """(native, polars) matchers per lexicon and name setting."""
    out = {}
    for lexicon in ("paper", "extended"):
        for names in (None, "capitalised"):
            native = make_matcher(lexicon=lexicon, names=names, exact_engine="auto")
            polars = make_matcher(lexicon=lexicon, names=names, exact_engine="polars")
            out[lexicon, names] = (native, polars)
    return out


def both(pair, texts, layout="view"):
    native, polars = pair
    s = pl.Series("text", texts, dtype=pl.Utf8)
    df = pl.DataFrame({"row": pl.Series(np.arange(len(texts)) * 7 + 3, dtype=pl.Int64), "text": s})
    if layout != "view":
        arr = pa.array(texts, type={"large": pa.large_string(), "small": pa.string()}[layout])
        df = df.with_columns(pl.Series("text", arr))
    return native.match(df), polars.match(df)


@needs_native
def test_native_engine_is_used(pairs):
    assert pairs["paper", None][0].exact_engine == "native"
    assert pairs["paper", None][1].exact_engine == "polars"
    assert pairs["paper", None][0].describe()["exact"] == "native"


WORDS = [
    "nurse", "Nurse", "NURSES", "nurse's", "nurse’s", "nurses'", "engineer", "engi'neer", "engineering", "police",
    "officer", "Police-Officer", "film", "director", "make", "up", "make-up", "artist", "he", "He", "her", "his",
    "she", "man", "woman", "men", "women", "mother", "son", "actress", "waitress", "chairwoman", "businessman",
    "Maria", "John", "MARIA", "maria", "McDonald", "O'Neil", "Anna_", "_Anna", "Anna2", "Rose", "Paris", "Will",
    "the", "a", "of", "2", "x" * 40, "doctor" * 3, "café", "Émile", "\u212aelvin", "\u0130stanbul", "😀", "ñandú",
    "tv", "presenter", "baker", "chef", "CEO", "dj",
]
SEPS = [" ", "  ", ", ", "-", "_", "'", "`", "’", "/", "\t", ".", "!!", " — ", "\u00a0", "(", ")"]


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPS)), max_size=12), min_size=1, max_size=12),
       st.sampled_from([("paper", None), ("paper", "capitalised"), ("extended", None), ("extended", "capitalised")]),
       st.sampled_from(["view", "large", "small"]))
def test_native_equals_polars(pairs, captions, setting, layout):
    texts = ["".join(w + s for w, s in parts) for parts in captions]
    native, polars = both(pairs[setting], texts, layout)
    assert native.equals(polars), (texts, native, polars)


@needs_native
def test_native_equals_polars_on_odd_captions(pairs):
    texts = [
        None, "", " ", "nurse", "a nurse", "Maria, a nurse", "NURSE", "short nurse", "x" * 5000 + " nurse",
        "nurse " * 3000, "a " + "n" * 300 + " nurse", "the police_officer", "police officer's car", "he/she nurse",
        "Maria Maria John nurse", "The café nurse", "\u212aathy the nurse", "engi'neer on site", "nurse\x00he",
        " ".join(f"{chr(65 + i % 26)}{'abcdefghij'[i % 10]}{'klmno'[i % 5]}" for i in range(400)) + " nurse",
    ]
    for setting, pair in pairs.items():
        for layout in ("view", "large", "small"):
            native, polars = both(pair, texts, layout)
            assert native.equals(polars), (setting, layout)


@needs_native
def test_more_names_than_the_kernel_holds_go_to_polars(pairs):
    names = pairs["paper", "capitalised"][0]._name_finder().table["name"].to_list()
    ascii_names = [n for n in names if n.isascii()][: kernels.MAX_NAMES_PER_CAPTION + 20]
    text = "a nurse with " + " ".join(ascii_names)
    native, polars = both(pairs["paper", "capitalised"], [text, "a nurse with Maria"])
    assert native.equals(polars)
    assert len(native["indicator_names"][0]) > kernels.MAX_NAMES_PER_CAPTION


@needs_native
def test_sliced_and_shared_views(pairs):
    """Captions that share bytes (repeats, slices) are each matched on their own bytes."""
    native_m, polars_m = pairs["paper", "capitalised"]
    base = pl.Series(["the engineer fixed the old bridge", "a nurse and her patient at home", "nothing to see here today"])
    s = base.gather([0, 1, 1, 2, 0, 2, 1]).slice(1, 5)
    df = pl.DataFrame({"row": pl.Series(range(5), dtype=pl.Int64), "text": s})
    assert native_m.match(df).equals(polars_m.match(df))
    assert native_m.match(df)["row"].to_list() == [0, 1, 3]


@needs_native
def test_caption_ids_equal_mmh3():
    rng = np.random.default_rng(0)
    urls = [f"https://img{i}.example.com/{rng.integers(1 << 62)}.jpg" for i in range(300)]
    texts = ["", "a", "é", "x" * 15, "x" * 16, "x" * 17, "y" * 5000] + [
        "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, size=int(n))) for n in rng.integers(0, 80, size=293)
    ]
    got = kernels.laion_ids(pa.array(urls), pa.array(texts, pa.large_string()))
    assert got.tolist() == [mmh3.hash64(u + t)[0] for u, t in zip(urls, texts)]


@needs_native
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.text(max_size=300)), min_size=1, max_size=20))
def test_caption_ids_equal_mmh3_on_any_text(pairs_of_strings):
    urls, texts = zip(*pairs_of_strings)
    got = kernels.laion_ids(pl.Series(urls).to_arrow(), pl.Series(texts).to_arrow())
    assert got.tolist() == [mmh3.hash64(u + t)[0] for u, t in zip(urls, texts)]


@needs_libhs
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPS)), max_size=10), max_size=40))
def test_library_prefilter_keeps_every_exact_match(pairs, captions):
    """The library's scan, like the regex, keeps every caption the exact stage matches (but
    for the documented apostrophe inside a word), short captions inside their views included."""
    m = pairs["paper", None][0]
    texts = ["".join(w + s for w, s in parts) for parts in captions]
    s = pl.Series(texts, dtype=pl.Utf8)
    exact = set(m.match(pl.DataFrame({"row": pl.Series(range(len(texts)), dtype=pl.Int64), "text": s}))["row"].to_list())
    exact -= {i for i, t in enumerate(texts) if "engi'neer" in t}
    assert exact <= set(m.candidate_rows(s).to_list())
    assert exact <= set(m._prefilter._regex_rows(s).tolist())


@needs_libhs
def test_library_prefilter_is_used_and_survives_pickling():
    m = make_matcher(names=None)
    assert isinstance(m._prefilter._database(), kernels.NativeHyperscan)
    texts = pl.Series(["a nurse at the hospital today", "nothing here", None, "the engineer is here", "nurse"] * 1000)
    want = m.candidate_rows(texts).to_list()
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.candidate_rows(texts).to_list() == want
    assert want[:4] == [0, 3, 4, 5]


def test_without_the_extension_the_polars_paths_run(monkeypatch):
    texts = ["Maria, a nurse", "the engineer's son", "nothing", None]
    df = pl.DataFrame({"row": pl.Series(range(4), dtype=pl.Int64), "text": pl.Series(texts, dtype=pl.Utf8)})
    want = make_matcher(exact_engine="polars").match(df)
    monkeypatch.setattr(kernels, "_scan", None)
    m = make_matcher()
    assert m.exact_engine == "polars" and m.prefilter_engine in ("hyperscan", "regex")
    assert m.match(df).equals(want)
    with pytest.raises(BiasampError, match="native exact stage"):
        make_matcher(exact_engine="native")


def test_unknown_exact_engine_is_a_clear_error():
    with pytest.raises(BiasampError, match="unknown exact-stage engine"):
        make_matcher(exact_engine="fast")


@needs_native
def test_non_ascii_vocabulary_uses_polars():
    from biasamp.vocab.occupations import Occupation

    m = CaptionMatcher(occupations=[Occupation("pâtissier")], names=None)
    assert m.exact_engine == "polars"
    df = pl.DataFrame({"row": [0, 1], "text": ["un pâtissier", "a baker"]})
    assert m.match(df)["row"].to_list() == [0]


@needs_native
def test_keys_out_of_order_or_repeated_match_as_polars_does(pairs):
    native, polars = pairs["paper", "capitalised"]
    for keys in ([5, 3, 9], [1, 1, 2], [2, 2, 2]):
        df = pl.DataFrame({"row": pl.Series(keys, dtype=pl.Int64), "text": ["a nurse", "a nurse and her son", "Maria, an engineer"]})
        assert native.match(df).equals(polars.match(df)), keys


@needs_native
def test_binary_captions_are_not_read_as_text(pairs):
    native, polars = pairs["paper", None]
    df = pl.DataFrame({"row": [0, 1], "text": pl.Series([b"a nurse", b"an engineer"], dtype=pl.Binary)})
    with pytest.raises(pl.exceptions.PolarsError):
        polars.match(df)
    with pytest.raises(pl.exceptions.PolarsError):
        native.match(df)
    # caption ids of a binary column take the package's path, as before
    from biasamp.corpus.matcher import caption_ids

    ids = caption_ids(pl.DataFrame({"text": df["text"], "url": ["https://a/1", "https://a/2"], "row": [0, 1]}), source_name="x")
    assert ids["caption_id"].to_list() == [mmh3.hash64(b"https://a/1" + b"a nurse")[0], mmh3.hash64(b"https://a/2an engineer")[0]]


def test_laion_ids_checks_its_input():
    if not kernels.available():
        pytest.skip("the native extension is not built here")
    with pytest.raises(ValueError, match="urls for"):
        kernels.laion_ids(pa.array(["u"] * 3), pa.array(["t"]))
    with pytest.raises(TypeError, match="string column"):
        kernels.laion_ids(pa.array([b"u"]), pa.array([b"t"]))
    with pytest.raises(ValueError, match="in every row"):
        kernels.laion_ids(pa.array(["u", None]), pa.array(["t", "s"]))


@needs_native
def test_a_null_slot_may_hold_any_view(pairs):
    """Arrow leaves a null slot's view unspecified: it is never read, nor checked."""
    good = pa.array(["a nurse at the hospital today", None, "an engineer on site"], pa.string_view())
    bufs = good.buffers()
    views = np.frombuffer(bufs[1], dtype=np.int32).reshape(-1, 4).copy()
    views[1] = [100, 0, 7, 12345]  # a long string in data buffer 7, which does not exist
    arr = pa.Array.from_buffers(pa.string_view(), 3, [bufs[0], pa.py_buffer(views.tobytes()), *bufs[2:]], null_count=1)
    arr.validate(full=True)
    m = pairs["paper", None][0]
    assert m.candidate_rows(arr).to_list() == [0, 2]
    assert m._kernel.match(arr)[0]["row"].to_list() == [0, 2]


@needs_native
def test_a_view_outside_its_buffer_is_an_error_not_a_crash(pairs):
    good = pa.array(["a nurse at the hospital today", "an engineer on site"], pa.string_view())
    bufs = good.buffers()
    views = np.frombuffer(bufs[1], dtype=np.int32).reshape(-1, 4).copy()
    views[1, 3] = 1 << 20  # an offset past the end of the buffer
    arr = pa.Array.from_buffers(pa.string_view(), 2, [None, pa.py_buffer(views.tobytes()), *bufs[2:]])
    with pytest.raises(ValueError, match="outside its data buffer"):
        pairs["paper", None][0]._kernel.match(arr)


def test_an_upper_case_vocabulary_word_falls_back_to_polars():
    from biasamp.vocab.lexicons import Lexicon

    lex = Lexicon(name="odd", male=frozenset({"HE"}), female=frozenset({"she"}), source="test")
    m = CaptionMatcher(lexicon=lex, names=None)
    assert m.exact_engine == "polars"
