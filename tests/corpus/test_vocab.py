"""Bundled occupation lists and gender lexicons, and their loaders."""

from __future__ import annotations

import pytest

from biasamp.errors import BiasampError
from biasamp.vocab.lexicons import load_lexicon
from biasamp.vocab.occupations import Occupation, load_occupations, normalise, pluralise, slug

# The study's lists, as written in reference/paper-method.md (normalised: apostrophes dropped).
PAPER_MALE = "he, hes, he's, him, his, himself, male, males, man, mans, men, mens, boy, boys, gent, gents, gentleman, gentlemans, gentlemen, gentlemens"
PAPER_FEMALE = "she, shes, she's, her, hers, her's, herself, female, females, woman, womans, women, womens, girl, girls, lady, ladies"


def _words(s: str) -> set[str]:
    return {normalise(w) for w in s.split(", ")}


def test_default_list_is_dall_eval_plus_study_code():
    occs = load_occupations()
    names = [o.name for o in occs]
    assert len(names) == 89 == len(set(names))
    for n in ("accountant", "TV presenter", "makeup artist", "sign language interpreter", "attorney", "poet", "intern"):
        assert n in names


def test_fair_diffusion_list():
    occs = load_occupations("fair-diffusion")
    assert len(occs) == 153
    assert "CEO" in [o.name for o in occs]


def test_forms_plural_possessive_variants():
    by = {o.name: o for o in load_occupations()}
    assert set(by["police officer"].forms) == {"police officer", "police officers"}
    assert {"makeup artist", "make up artist", "make up artists", "makeup artists"} <= set(by["makeup artist"].forms)
    assert {"salesperson", "salespeople", "salespersons", "salespeoples"} <= set(by["salesperson"].forms)
    assert {"secretary", "secretaries", "secretarys"} == set(by["secretary"].forms)
    assert "engineers" in by["engineer"].forms  # plural and possessive ("engineer's" normalised)
    assert "physician" not in by["doctor"].forms  # synonyms off by default
    on = {o.name: o for o in load_occupations(synonyms=True)}
    assert "physician" in on["doctor"].forms and "physicians" in on["doctor"].forms


@pytest.mark.parametrize(
    "word,plural",
    [("nurse", "nurses"), ("coach", "coaches"), ("secretary", "secretaries"), ("attorney", "attorneys"),
     ("fireman", "firemen"), ("salesperson", "salespeople"), ("police officer", "police officers"), ("clergy", "clergy")],
)
def test_pluralise(word, plural):
    assert pluralise(word)[0] == plural


def test_normalise_and_slug():
    assert normalise("Make-up  Artist’s!") == "make up artists"
    assert normalise("she's") == "shes"
    assert slug("TV presenter") == "tv-presenter"


def test_user_file(tmp_path):
    f = tmp_path / "occ.txt"
    f.write_text("# mine\nengineer\n\nhair stylist | hairstylist\n", encoding="utf-8")
    occs = load_occupations(f)
    assert [o.name for o in occs] == ["engineer", "hair stylist"]
    assert "hairstylists" in occs[1].forms
    assert [o.name for o in load_occupations(["baker", "cook"])] == ["baker", "cook"]


@pytest.mark.parametrize(
    "text,msg",
    [("engineer\nEngineer\n", "repeats line 1"), ("# nothing\n", "holds no occupation"), ("| x\n", "no occupation before")],
)
def test_user_file_errors(tmp_path, text, msg):
    f = tmp_path / "occ.txt"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(BiasampError, match=msg):
        load_occupations(f)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(BiasampError, match="not found.*nope.txt"):
        load_occupations(tmp_path / "nope.txt")


def test_paper_lexicon_is_the_studys_lists():
    lex = load_lexicon("paper")
    assert set(lex.male) == _words(PAPER_MALE)
    assert set(lex.female) == _words(PAPER_FEMALE)


def test_extended_lexicon_adds_what_paper_misses():
    paper, ext = load_lexicon("paper"), load_lexicon("extended")
    assert paper.male < ext.male and paper.female < ext.female
    for w in ("actress", "waitress", "chairwoman", "mother", "wife", "wifes"):
        assert w in ext.female and w not in paper.female
    for w in ("businessman", "son", "husband"):
        assert w in ext.male and w not in paper.male
    assert not ext.male & ext.female
    assert "mrs" in ext.female and "mrs" not in ext.male  # possessive of "mr" is not made


def test_custom_lexicon(tmp_path):
    f = tmp_path / "lex.toml"
    f.write_text('name = "mine"\nextends = "paper"\nmale = ["bro"]\nfemale = ["sis"]\n', encoding="utf-8")
    lex = load_lexicon(f)
    assert lex.name == "mine" and "bro" in lex.male and "he" in lex.male and "sis" in lex.female
    bad = tmp_path / "bad.toml"
    bad.write_text('male = ["x"]\nfemale = ["x"]\n', encoding="utf-8")
    with pytest.raises(BiasampError, match="both male and female"):
        load_lexicon(bad)
    with pytest.raises(BiasampError, match="not found"):
        load_lexicon(tmp_path / "none.toml")


def test_occupation_without_letters():
    with pytest.raises(BiasampError):
        Occupation("!!!")
