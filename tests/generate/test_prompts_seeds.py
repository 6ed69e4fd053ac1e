"""Prompt building, truncation, item ids and seeds (no model needed)."""

import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.errors import BiasampError
from biasamp.generate import TEMPLATE_CONDITION, build_prompts, derive_seed, fit_to_tokens
from biasamp.generate.prompts import item_ids, parse_occupations


def test_templates_times_occupations_with_article_by_sound():
    df = build_prompts("engineer, hour worker,university professor, MRI technician", "face,works-as")
    assert df.columns == ["condition", "occupation", "group", "template", "caption_id", "text"]
    assert set(df["condition"]) == {TEMPLATE_CONDITION}
    got = dict(zip(zip(df["occupation"], df["group"]), df["text"]))
    assert got[("engineer", "face")] == "A photo of the face of an engineer"
    assert got[("hour worker", "works-as")] == "A person who works as an hour worker"
    assert got[("university professor", "face")] == "A photo of the face of a university professor"
    assert got[("MRI technician", "face")] == "A photo of the face of an MRI technician"
    assert len(df) == 8 and df["caption_id"].null_count() == 8


def test_user_template_and_unknown_placeholder():
    df = build_prompts(["nurse"], "A drawing of {a} {occupation}")
    assert df["text"].to_list() == ["A drawing of a nurse"]
    with pytest.raises(BiasampError, match=r"\{job\}"):
        build_prompts(["nurse"], "A drawing of {a} {job}")


def test_occupations_file_comments_variants_and_duplicates(tmp_path):
    f = tmp_path / "occ.txt"
    f.write_text("# mine\nnurse\ncareer counselor | career counsellor\n\nnurse  # again\n")
    assert parse_occupations(str(f)) == ["nurse", "career counselor"]
    assert parse_occupations("a, b ,,a") == ["a", "b"]
    with pytest.raises(BiasampError, match="not found"):
        parse_occupations(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(BiasampError, match="lists no occupation"):
        parse_occupations(str(tmp_path / "empty.txt"))


def test_bundled_occupations_are_the_default():
    from biasamp.generate.prompts import default_occupations_file

    if default_occupations_file() is None:
        with pytest.raises(BiasampError, match="no occupations given"):
            build_prompts()
    else:
        df = build_prompts()
        assert len(df) > 10 and df["occupation"].is_unique().all()


def _selection(tmp_path, rows):
    df = pl.DataFrame(rows, schema={"condition": pl.Utf8, "occupation": pl.Utf8, "caption_id": pl.Int64, "text": pl.Utf8}, orient="row")
    p = tmp_path / "selection.parquet"
    df.write_parquet(p)
    return p


def test_captions_as_prompts(tmp_path):
    p = _selection(
        tmp_path,
        [
            ("captions-as-prompts", "nurse", 11, "  a nurse at work "),
            ("captions-as-prompts", "nurse", 11, "a nurse at work"),  # duplicate caption
            ("captions-as-prompts", "chef", -7, "chef in a kitchen"),
            ("keyword", "nurse", 12, "not a prompt"),
        ],
    )
    df = build_prompts(captions=p)
    assert df["group"].to_list() == ["11", "-7"]
    assert df["text"].to_list() == ["a nurse at work", "chef in a kitchen"]
    assert df["condition"].to_list() == ["captions-as-prompts"] * 2
    assert build_prompts("chef", captions=p)["caption_id"].to_list() == [-7]
    both = build_prompts("chef", "photo", captions=p)  # templates given explicitly: both kinds
    assert sorted(both["condition"].to_list()) == ["captions-as-prompts", "templates"]


def test_captions_errors_name_the_problem(tmp_path):
    p = _selection(tmp_path, [("keyword", "nurse", 1, "x")])
    with pytest.raises(BiasampError, match="conditions present: keyword"):
        build_prompts(captions=p)
    q = _selection(tmp_path, [("captions-as-prompts", "nurse", 1, None)])
    with pytest.raises(BiasampError, match=r"rows \[0\]"):
        build_prompts(captions=q)
    (tmp_path / "bad.parquet").write_bytes(b"nope")
    with pytest.raises(BiasampError, match="bad.parquet"):
        build_prompts(captions=tmp_path / "bad.parquet")


def _chars(text):  # a stand-in tokenizer: one token per character plus start and end
    return len(text) + 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=12), min_size=1, max_size=30), st.integers(3, 80))
def test_truncation_keeps_the_longest_fitting_word_prefix(words, limit):
    text = " ".join(words)
    cut, truncated, n = fit_to_tokens(text, _chars, limit)
    assert n == _chars(text)
    assert truncated == (_chars(text) > limit)
    assert _chars(cut) <= limit
    if not truncated:
        assert cut == text
    else:
        assert text.startswith(cut)
        kept = cut.split()
        if kept and cut == " ".join(words[: len(kept)]):  # cut at a word boundary: maximal
            if len(kept) < len(words):
                assert _chars(" ".join(words[: len(kept) + 1])) > limit


def test_item_ids_are_unique_and_dot_free():
    ids = item_ids(["templates", "captions-as-prompts"], ["Police Officer", "nurse"], ["face", "-123"], [0, 12])
    assert ids == ["templates__police-officer__face__00000", "captions-as-prompts__nurse__-123__00012"]
    assert all("." not in i and "/" not in i for i in ids)


def test_seed_derivation():
    s = derive_seed(42, "A photo of the face of an engineer", 0)
    assert s == derive_seed(42, "A photo of the face of an engineer", 0)
    assert 0 <= s < 2**63
    others = {derive_seed(43, "A photo of the face of an engineer", 0), derive_seed(42, "A photo of the face of a nurse", 0), derive_seed(42, "A photo of the face of an engineer", 1)}
    assert s not in others and len(others) == 3
    # pinned: the derivation is part of the output format (sha256 of "42\x1fprompt\x1f0", first 63 bits)
    import hashlib

    h = hashlib.sha256("42\x1fA photo of the face of an engineer\x1f0".encode()).digest()
    assert s == int.from_bytes(h[:8], "big") & (2**63 - 1)


def test_item_id_slugs_keep_non_ascii_names_apart():
    from biasamp.generate.prompts import slug

    names = ["médecin", "medecin", "m-decin", "护士", "医生", "Krankenschwester", "TV presenter"]
    slugs = [slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert slug("médecin").startswith("medecin-") and slug("TV presenter") == "tv-presenter" and slug("nurse") == "nurse"
    assert all(re.fullmatch(r"[0-9a-z-]+", s) for s in slugs)  # file-name and webdataset-key safe


@given(st.text(min_size=1, max_size=20))
def test_slug_is_key_safe_and_stable(name):
    from biasamp.generate.prompts import slug

    s = slug(name)
    assert re.fullmatch(r"[0-9a-z-]+", s)
    assert "." not in s and s == slug(name)
