"""Occupation lists for the caption query: bundled lists, user files, surface forms.

An occupation has a template-ready singular name ("police officer", "TV presenter") and
surface forms that count as a mention of it in a caption: the name and its spelling
variants, their plurals ("police officers", "salespeople") and possessives ("engineer's",
normalised to "engineers"), and, only when asked for, synonyms ("physician" for doctor).

Captions and forms are compared after `normalise`: lower-cased, apostrophes removed, every
other run of non-word characters (and "_") turned into one space. So "Make-up artist's"
and "make up artists" are the same text, and whole-word matching is a plain search for
" form " in " text ".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from biasamp.errors import BiasampError
from biasamp.vocab import data_path

#: Bundled occupation lists: name -> (file, description).
BUNDLED_LISTS = {
    "default": ("occupations.txt", "DALL-Eval's 83 professions plus the 6 further ones named in the study's code (89)"),
    "fair-diffusion": ("occupations_fair_diffusion.txt", "Fair Diffusion's 153 occupations (Apache-2.0)"),
}
SYNONYMS_FILE = "occupation_synonyms.toml"

APOSTROPHES = "'\u2019\u02bc\u2018`"
_APOS_RE = re.compile(f"[{APOSTROPHES}]")
_SEP_RE = re.compile(r"[\W_]+")
#: The same normalisation as Rust-regex patterns, for Polars expressions.
POLARS_APOSTROPHES = f"[{APOSTROPHES}]"
POLARS_SEPARATORS = r"[\W_]+"

# Irregular last words: singular -> plurals.
_IRREGULAR = {
    "person": ("people", "persons"),
    "man": ("men",),
    "woman": ("women",),
    "child": ("children",),
    "staff": ("staff",),
    "personnel": ("personnel",),
    "clergy": ("clergy",),
    "chief": ("chiefs",),
    "roof": ("roofs",),
    "fish": ("fish",),
}


def normalise(text: str) -> str:
    """Lower-case, drop apostrophes, turn other non-word runs (and "_") into one space."""
    return _SEP_RE.sub(" ", _APOS_RE.sub("", text.lower())).strip()


def pluralise(phrase: str) -> tuple[str, ...]:
    """Plural(s) of a (multi-word) noun phrase: its last word is inflected."""
    words = phrase.split()
    if not words:
        return ()
    *head, last = words
    low = last.lower()
    if low in _IRREGULAR:
        plurals = _IRREGULAR[low]
    elif low.endswith(("man",)) and not low.endswith(("human", "german", "shaman")):
        plurals = (last[:-3] + "men",)
    elif low.endswith("person"):
        plurals = (last[:-6] + "people", last + "s")
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        plurals = (last + "es",)
    elif low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        plurals = (last[:-1] + "ies",)
    else:
        plurals = (last + "s",)
    return tuple(" ".join([*head, p]) for p in plurals)


def surface_forms(phrase: str) -> tuple[str, ...]:
    """The normalised forms of one phrase: itself, plurals, possessives (sorted)."""
    base = normalise(phrase)
    if not base:
        return ()
    forms = {base}
    for p in pluralise(base):
        forms.add(p)
        if not p.endswith("s"):
            forms.add(p + "s")  # "salespeople's" -> "salespeoples"
    forms.add(base + "s")  # "engineer's" -> "engineers"
    return tuple(sorted(forms))


@dataclass(frozen=True)
class Occupation:
    """One occupation: its template-ready name and what counts as a mention of it."""

    name: str
    variants: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    forms: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if not normalise(self.name):
            raise BiasampError(f"occupation {self.name!r} has no letters or digits")
        forms: set[str] = set()
        for phrase in (self.name, *self.variants, *self.synonyms):
            forms.update(surface_forms(phrase))
        object.__setattr__(self, "forms", tuple(sorted(forms)))

    @property
    def slug(self) -> str:
        return slug(self.name)


def slug(name: str) -> str:
    """A file-name-safe id for an occupation: "TV presenter" -> "tv-presenter"."""
    s = re.sub(r"[^0-9a-z]+", "-", normalise(name)).strip("-")
    return s or "occupation"


def parse_occupation_lines(lines: list[str], *, where: str) -> list[Occupation]:
    """Parse 'name | variant | …' lines (blank lines and '#' comments skipped)."""
    out: list[Occupation] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(lines, 1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        name, variants = fields[0], tuple(f for f in fields[1:] if f)
        if not name:
            raise BiasampError(f"{where} line {i}: no occupation before '|'", hint="write: name | variant | …")
        if not normalise(name):
            raise BiasampError(f"{where} line {i}: occupation {name!r} has no letters or digits")
        key = normalise(name)
        if key in seen:
            raise BiasampError(
                f"{where} line {i}: occupation {name!r} repeats line {seen[key]}",
                hint="list each occupation once; put spelling variants after '|'",
            )
        seen[key] = i
        out.append(Occupation(name, variants))
    if not out:
        raise BiasampError(f"{where} holds no occupation", hint="one occupation per line")
    return out


@lru_cache(maxsize=1)
def bundled_synonyms() -> dict[str, tuple[str, ...]]:
    with open(data_path(SYNONYMS_FILE), "rb") as f:
        d = tomllib.load(f)
    return {normalise(k): tuple(v) for k, v in d.items()}


def load_occupations(
    spec: str | Path | list[str] | None = None,
    *,
    synonyms: bool | dict[str, list[str]] = False,
) -> list[Occupation]:
    """Occupations from a bundled list name ("default", "fair-diffusion"), a file (one
    occupation per line, variants after '|'), or a list of names.

    `synonyms=True` adds the bundled synonyms (occupation_synonyms.toml); a dict adds
    those given (occupation -> synonyms). Off by default, as in the study's keyword query.
    """
    if spec is None:
        spec = "default"
    if isinstance(spec, (list, tuple)):
        occs = parse_occupation_lines([str(s) for s in spec], where="occupation list")
    else:
        s = str(spec)
        if s in BUNDLED_LISTS:
            path = data_path(BUNDLED_LISTS[s][0])
            occs = parse_occupation_lines(path.read_text(encoding="utf-8").splitlines(), where=f"bundled list {s!r}")
        else:
            p = Path(s)
            if not p.exists():
                raise BiasampError(
                    f"occupations file not found: {s}",
                    hint=f"give a file (one occupation per line) or a bundled list: {', '.join(BUNDLED_LISTS)}",
                )
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise BiasampError(f"occupations file {s} is not UTF-8 text ({e})", hint="save it as UTF-8") from None
            occs = parse_occupation_lines(text.splitlines(), where=f"occupations file {s}")
    if synonyms:
        table = bundled_synonyms() if synonyms is True else {normalise(k): tuple(v) for k, v in synonyms.items()}
        occs = [Occupation(o.name, o.variants, table.get(normalise(o.name), ())) for o in occs]
    return occs


def forms_table(occupations: list[Occupation]) -> list[tuple[str, str]]:
    """(normalised form, occupation name) pairs; a form may belong to several occupations."""
    return sorted({(f, o.name) for o in occupations for f in o.forms})
