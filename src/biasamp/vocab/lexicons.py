"""Gender indicator lexicons: word lists whose presence marks a caption male or female.

Bundled: "paper" (the study's exact lists) and "extended" (those plus the gendered words
they miss). A lexicon is a TOML file with `male` and `female` word lists, optionally
`extends = "<other lexicon>"` and `possessives = true` (add "<word>s" for each word that
does not end in "s"). Words are normalised like captions (see
`biasamp.vocab.occupations.normalise`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from biasamp.errors import BiasampError
from biasamp.vocab import data_path
from biasamp.vocab.occupations import normalise

BUNDLED_LEXICONS = {"paper": "lexicon_paper.toml", "extended": "lexicon_extended.toml"}


@dataclass(frozen=True)
class Lexicon:
    name: str
    male: frozenset[str]
    female: frozenset[str]
    source: str = ""

    def terms(self) -> list[tuple[str, str]]:
        """(normalised term, 'male'|'female') pairs, sorted."""
        return sorted([(t, "male") for t in self.male] + [(t, "female") for t in self.female])

    def gender_of(self, term: str) -> str | None:
        t = normalise(term)
        return "male" if t in self.male else "female" if t in self.female else None


def _load_toml(path: Path, where: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BiasampError(
            f"lexicon file not found: {path}", hint=f"give a TOML file or a bundled lexicon: {', '.join(BUNDLED_LEXICONS)}"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise BiasampError(f"{where} is not valid TOML: {e}") from None


def load_lexicon(spec: str | Path | None = None, *, _depth: int = 0) -> Lexicon:
    """A bundled lexicon by name ("paper", "extended") or a TOML file."""
    if spec is None:
        spec = "paper"
    if _depth > 5:
        raise BiasampError(f"lexicon {spec!r}: 'extends' chain too long (a cycle?)")
    s = str(spec)
    if s in BUNDLED_LEXICONS:
        path, where = data_path(BUNDLED_LEXICONS[s]), f"bundled lexicon {s!r}"
    else:
        path, where = Path(s), f"lexicon file {s}"
    d = _load_toml(path, where)
    male: set[str] = set()
    female: set[str] = set()
    for key in ("male", "female"):
        words = d.get(key, [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise BiasampError(f"{where}: {key!r} must be a list of words")
    if "extends" in d:
        base = load_lexicon(d["extends"], _depth=_depth + 1)
        male |= base.male
        female |= base.female
    possessives = bool(d.get("possessives", False))
    explicit = {key: {normalise(w) for w in d.get(key, [])} - {""} for key in ("male", "female")}
    male |= explicit["male"]
    female |= explicit["female"]
    if possessives:  # "wife's" -> "wifes"; never where it makes a word of the other list ("mr" -> "mrs")
        for key, target, other in (("male", male, female), ("female", female, male)):
            for n in explicit[key]:
                if not n.endswith("s") and n + "s" not in other:
                    target.add(n + "s")
    if not male and not female:
        raise BiasampError(f"{where} has no words", hint="give 'male = [...]' and 'female = [...]'")
    both = sorted(male & female)
    if both:
        raise BiasampError(f"{where}: word(s) {both} are listed as both male and female", hint="list each word once")
    return Lexicon(str(d.get("name", s)), frozenset(male), frozenset(female), str(d.get("source", "")))
