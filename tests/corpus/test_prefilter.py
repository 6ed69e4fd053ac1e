"""The prefilter: both engines keep every caption the exact stage matches, on any Arrow layout."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biasamp.corpus import kernels, make_corpus
from biasamp.corpus.baseline import baseline_match
from biasamp.corpus.matcher import CaptionMatcher, query_batch
from biasamp.corpus.prefilter import ASCII_LOWERING, Prefilter, ascii_lowering_chars, hyperscan_available
from biasamp.corpus.query import make_matcher
from biasamp.errors import BiasampError

needs_hyperscan = pytest.mark.skipif(not hyperscan_available(), reason="the hyperscan package is not installed")


def _package_available() -> bool:
    try:
        import hyperscan  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.fixture(scope="module")
def matchers():
    """regex; hyperscan (through biasamp's extension where it is linked with the library,
    else the package); and "hyperscan-package", the package's binding even where the
    library is linked, so that both scans are tested."""
    out = {e: make_matcher(names=None, prefilter_engine=e) for e in (["regex", "hyperscan"] if hyperscan_available() else ["regex"])}
    if kernels.libhs_available() and _package_available():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "libhs_available", lambda: False)
            m = make_matcher(names=None, prefilter_engine="hyperscan")
        assert not isinstance(m._prefilter._database(), kernels.NativeHyperscan)
        out["hyperscan-package"] = m
    return out


def hyperscans(matchers: dict) -> list:
    return [m for name, m in matchers.items() if name.startswith("hyperscan")]


def exact_rows(m: CaptionMatcher, texts: list[str | None]) -> set[int]:
    """Rows the exact stage matches, run on every caption (no prefilter)."""
    df = pl.DataFrame({"text": pl.Series(texts, dtype=pl.Utf8)}).with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    return set(m.match(df.filter(pl.col("text").is_not_null()))["row"].to_list())


def test_ascii_lowering_list_is_current():
    # the characters that lower-case to ASCII letters, derived again from the Unicode data
    assert ascii_lowering_chars() == ASCII_LOWERING


TRICKY = [
    "nurse", "a nurse", "NURSE", "Nurse's day", "engineers", "xnurse", "nursex", "the police_officer",
    "police - officer", "police\u2014officer", "police\u00a0officer", "make-up artist", "Make Up Artists",
    "", None, "short", "a baker!", "BA\u212aER at work", "\u212aeeper", "caf\u00e9 nurse", "nurse\u0301",
    "Salespeople’s stand", "a chef" * 3000, "x" * 11 + "nurse", "TV presenter",
]


@pytest.mark.parametrize("layout", ["view", "large", "small", "sliced", "chunked"])
def test_engines_keep_every_exact_match(matchers, layout):
    texts = TRICKY + [t for t in TRICKY if t] * 2
    s = pl.Series("text", texts, dtype=pl.Utf8)
    arrow = {
        "view": lambda: s.to_arrow(compat_level=pl.CompatLevel.newest()),
        "large": lambda: s.to_arrow(),
        "small": lambda: s.to_arrow().cast(pa.string()),
        "sliced": lambda: pa.concat_arrays([pa.array(["pad nurse"] * 3, type=pa.large_string()), s.to_arrow()]).slice(3),
        "chunked": lambda: pa.chunked_array([s.to_arrow()[:10], s.to_arrow()[10:]]),
    }[layout]()
    for name, m in matchers.items():
        want = exact_rows(m, texts)
        got = set(m.candidate_rows(arrow).to_list())
        assert want <= got, (name, layout, sorted(want - got))
        assert all(texts[i] is not None and texts[i] != "" for i in got)


@needs_hyperscan
def test_kelvin_sign_and_boundaries(matchers):
    for hs in hyperscans(matchers):
        # KELVIN SIGN lower-cases to "k": "BA\u212aER" is a baker to the exact stage
        assert set(hs.match(pl.DataFrame({"row": [0], "text": ["BA\u212aER at work"]}))["occupation"]) == {"baker"}
        assert hs.candidate_rows(pl.Series(["BA\u212aER at work"])).to_list() == [0]
        # captions that start or end with a key, next to captions ending/starting with letters
        texts = ["abc", "nurse", "xyz", "nurse", "nursery school", "zzz nurse", "q"]
        assert {1, 3, 5} <= set(hs.candidate_rows(pl.Series(texts)).to_list())


@needs_hyperscan
def test_hyperscan_and_regex_give_the_same_mentions(matchers, tmp_path):
    d = make_corpus(20_000, seed=11, out=tmp_path / "c", rows_per_file=20_000, occupation_rate=0.1, decoy_rate=0.1)
    df = pl.read_parquet(d[0], columns=["TEXT", "URL"]).rename({"TEXT": "text", "URL": "url"})
    a = query_batch(df, matchers["regex"])
    for hs in hyperscans(matchers):
        b = query_batch(df, hs)
        assert a.height > 1000 and a.equals(b)
        # and hyperscan lets through few captions beyond the regex's
        na, nb = len(matchers["regex"].candidate_rows(df["text"])), len(hs.candidate_rows(df["text"]))
        assert na <= nb <= na * 1.05


WORDS = ["nurse", "nurses", "engineer", "police", "officer", "film", "director", "make", "up", "artist",
         "baker", "BA\u212aER", "chef", "the", "engineering", "a", "TV", "presenter", "É", "ñandú", "xnurse"]
SEPS = ["", " ", "  ", "-", ", ", "_", "'", "’", "\t", "\n", "/", "\u00a0"]


@needs_hyperscan
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPS), st.booleans()), max_size=6), min_size=1, max_size=8))
def test_hyperscan_never_drops_a_match(matchers, captions):
    """Whatever the captions and however they sit next to each other in the buffer."""
    texts = ["".join((w.upper() if up else w) + sep for w, sep, up in parts) for parts in captions]
    for m in hyperscans(matchers):
        assert exact_rows(m, texts) <= set(m.candidate_rows(pl.Series(texts, dtype=pl.Utf8)).to_list())


@needs_hyperscan
@pytest.mark.parametrize("which", ["hyperscan", "hyperscan-package"])
def test_picklable_and_thread_safe(matchers, which):
    if which not in matchers:
        pytest.skip("no such variant here")
    m = matchers[which]
    m = m if which == "hyperscan-package" else pickle.loads(pickle.dumps(m))  # unpickled, the package variant becomes the library one
    assert m.prefilter_engine == "hyperscan"
    texts = pl.Series(["a nurse", "nothing", "the engineer's desk", None] * 5000)
    want = m.candidate_rows(texts).to_list()
    results = []

    def work():
        for _ in range(5):
            results.append(m.candidate_rows(texts).to_list())

    threads = [threading.Thread(target=work) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 15 and all(r == want for r in results)
    assert want == [i for i in range(20000) if i % 4 in (0, 2)]


def test_captions_sharing_bytes(matchers, tmp_path):
    """String views may share or overlap bytes: repeated captions of a dictionary-encoded
    Parquet page, a gather with repeated rows, slices beside their originals."""
    caps = ["a nurse working at the hospital today"] * 4 + ["the baker sells bread in the town"] * 3 + ["nothing relevant here at all"] * 3
    pl.DataFrame({"TEXT": caps}).write_parquet(tmp_path / "dict.parquet")
    from_parquet = pl.read_parquet(tmp_path / "dict.parquet")["TEXT"]
    base = pl.Series(["the engineer fixed the old bridge", "a nurse and her patient at home", "nothing to see here today"])
    gathered = base.gather([0, 0, 2, 1, 1, 1, 0])
    sliced = pl.concat([base, base.str.slice(2, 28), base.str.slice(0, 14)])
    for texts in (from_parquet, gathered, sliced):
        for name, m in matchers.items():
            want = exact_rows(m, texts.to_list())
            assert want and want <= set(m.candidate_rows(texts).to_list()), (name, texts.to_list())
    res = {}
    for name in matchers:
        from biasamp.corpus.query import query_corpus, read_mentions

        r = query_corpus([str(tmp_path / "dict.parquet")], tmp_path / name, matcher=matchers[name], progress=False)
        res[name] = read_mentions(r.out).height
    assert set(res.values()) == {7}


def test_keys_are_not_dropped_for_a_key_inside_a_word():
    # "smith" does not find "blacksmith" (keys match at a word start): both stay keys
    for engine in ["regex"] + (["hyperscan"] if hyperscan_available() else []):
        m = make_matcher(occupations=["smith", "blacksmith"], names=None, prefilter_engine=engine)
        texts = ["blacksmith", "a blacksmith at work today", "goldsmiths", "a smith"]
        assert exact_rows(m, texts) == {0, 1, 3}
        assert {0, 1, 3} <= set(m.candidate_rows(pl.Series(texts)).to_list()), engine


@needs_hyperscan
def test_buffers_too_large_for_one_scan_go_through_the_regex(matchers, monkeypatch):
    import biasamp.corpus.prefilter as pre

    texts = pl.Series(["a nurse at the hospital today", "nothing here at all, really", "the engineer is here"])
    for m in hyperscans(matchers):
        want = m.candidate_rows(texts).to_list()
        with monkeypatch.context() as mp:
            mp.setattr(pre, "MAX_SCAN_BYTES", 10)
            calls = []
            mp.setattr(pre.Prefilter, "_scan_ends", lambda self, b: calls.append(1))
            mp.setattr(kernels._scan, "hs_rows", lambda *a: calls.append(1), raising=False)
            regex = []
            mp.setattr(pre.Prefilter, "_regex_rows", lambda self, s, f=pre.Prefilter._regex_rows: regex.append(1) or f(self, s))
            assert m.candidate_rows(texts).to_list() == want == [0, 2] and not calls and regex


def test_known_gap_apostrophe_inside_a_word(matchers):
    # documented: an apostrophe that splits an occupation word hides it from the prefilter
    for m in matchers.values():
        assert exact_rows(m, ["engi'neer"]) == {0} and len(m.candidate_rows(pl.Series(["engi'neer"]))) == 0


@needs_hyperscan
def test_falls_back_to_the_regex_where_hyperscan_cannot_run(monkeypatch):
    import biasamp.corpus.prefilter as pre

    m = make_matcher(names=None)
    texts = pl.Series(["a nurse at the hospital today", "nothing", "the engineer is here"])
    want = m.candidate_rows(texts).to_list()
    # unpickled on a worker without the package
    monkeypatch.setattr(pre, "hyperscan_available", lambda: False)
    moved = pickle.loads(pickle.dumps(m))
    assert moved.prefilter_engine == "regex" and moved.describe()["prefilter"] == "regex"
    assert moved.candidate_rows(texts).to_list() == want
    monkeypatch.undo()

    # a CPU the compiled database cannot run on: auto falls back, an explicit request says why
    def broken(self):
        raise RuntimeError("no SSSE3")

    monkeypatch.setattr(pre.Prefilter, "_database", broken)
    assert Prefilter(["nurse"], "auto").engine == "regex"
    with pytest.raises(BiasampError, match="cannot run here"):
        Prefilter(["nurse"], "hyperscan")


def test_engine_choice():
    assert Prefilter(["nurse"], "regex").engine == "regex"
    # non-ASCII occupation names: hyperscan's case folding differs from Polars' lower-casing
    assert Prefilter(["técnico"], "auto").engine == "regex"
    with pytest.raises(BiasampError, match="unknown prefilter engine"):
        Prefilter(["nurse"], "fast")
    if hyperscan_available():
        with pytest.raises(BiasampError, match="ASCII"):
            Prefilter(["técnico"], "hyperscan")
    rows = Prefilter(["técnico"], "auto").rows(pl.Series(["un TÉCNICO", "x", None]))
    assert np.array_equal(rows, [0])


def test_baseline_agrees_through_the_default_engine():
    m = make_matcher(names=None)
    # (not "nurse" + COMBINING ACUTE: a word character to the engine's regex, not to Python's re)
    texts = [t for t in TRICKY if t and "\u0301" not in t]
    got = query_batch(pl.DataFrame({"text": texts}), m).select("row", "occupation", "forms", "indicator_terms", "indicator")
    ref = baseline_match(texts, m).select(got.columns)
    assert got.sort("row", "occupation").equals(ref.sort("row", "occupation"))
