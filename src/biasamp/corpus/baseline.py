"""The straightforward method, kept as a reference: one caption at a time in Python.

Per caption: `normalise` it, run one combined `re` of all occupation forms, and, if any
matched, one combined `re` of the lexicon's words; person names by checking each word.
It defines the same result as the vectorised engine (`biasamp.corpus.matcher`) and is
what the engine is tested and benchmarked against. Slow: use it on samples.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import polars as pl

from biasamp.corpus.matcher import CaptionMatcher
from biasamp.vocab.occupations import normalise


def _contains_words(outer: str, inner: str) -> bool:
    return f" {inner} " in f" {outer} "


def _merge_once(strings: list[str], base: list[str]) -> set[str]:
    by_prefix: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for w in (tuple(x.split()) for x in base):
        for k in range(1, len(w)):
            by_prefix.setdefault(w[:k], []).append(w)
    out = set()
    for wa in (tuple(x.split()) for x in strings):
        for k in range(len(wa) - 1, 0, -1):
            for wb in by_prefix.get(wa[-k:], ()):
                if wb != wa:
                    out.add(" ".join(wa + wb[k:]))
    return out


def _merge_overlaps(strings: list[str], rounds: int = 4) -> list[str]:
    """Strings 'a b' + 'b c' -> 'a b c' (and chains of such), so a leftmost-first search
    finds every item even where items overlap without containing one another."""
    have = set(strings)
    new = sorted(have)
    for _ in range(rounds):
        new = sorted(_merge_once(new, strings) - have)
        if not new:
            break
        have.update(new)
    return sorted(have - set(strings))


def _contained(m: str, items: set[str]) -> list[str]:
    """The items that occur in `m` as whole words (itself included)."""
    w = m.split()
    return sorted({" ".join(w[i:j]) for i in range(len(w)) for j in range(i + 1, len(w) + 1)} & items)


def _is_capitalised(tok: str) -> bool:
    return (
        len(tok) >= 2
        and unicodedata.category(tok[0]) == "Lu"
        and all(unicodedata.category(c) == "Ll" for c in tok[1:])
    )


def baseline_match(texts: Iterable[str | None], matcher: CaptionMatcher) -> pl.DataFrame:
    """(row, occupation, forms, indicator_terms, [indicator_names], indicator) per mention."""
    pairs = matcher.form_occupation.rows()
    form_occ: dict[str, list[str]] = {}
    for f, o in pairs:
        form_occ.setdefault(f, []).append(o)
    forms = set(form_occ)
    merged = _merge_overlaps(sorted(forms))
    implied = {m: _contained(m, forms) for m in sorted(forms) + merged}
    alts = sorted(implied, key=lambda w: (-len(w), w))
    occ_re = re.compile(r"\b(?:" + "|".join(map(re.escape, alts)) + r")\b")
    term_gender = dict(matcher.term_gender.rows())
    term_re = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(term_gender, key=lambda w: (-len(w), w)))) + r")\b")
    finder = matcher._name_finder()
    if finder is not None and finder.backend != "capitalised":
        raise ValueError("the baseline implements the 'capitalised' name finder only")
    names = dict(finder.table.iter_rows()) if finder is not None else None
    word_re = re.compile(r"\w+")
    out = []
    for row, text in enumerate(texts):
        if not text:
            continue
        norm = normalise(text)
        occs: dict[str, set[str]] = {}
        for m in occ_re.finditer(norm):
            for f in implied[m.group()]:
                for o in form_occ[f]:
                    occs.setdefault(o, set()).add(f)
        if not occs:
            continue
        terms = sorted({m.group() for m in term_re.finditer(norm)})
        male = any(term_gender[t] == "male" for t in terms)
        female = any(term_gender[t] == "female" for t in terms)
        found_names: list[str] = []
        if names is not None:
            for tok in word_re.findall(text):
                if _is_capitalised(tok) and tok in names and tok not in found_names:
                    found_names.append(tok)
            male = male or any(names[n] == "male" for n in found_names)
            female = female or any(names[n] == "female" for n in found_names)
        ind = "both" if male and female else "male" if male else "female" if female else "none"
        for o in sorted(occs):
            rec = {"row": row, "occupation": o, "forms": sorted(occs[o]), "indicator_terms": terms}
            if names is not None:
                rec["indicator_names"] = found_names
            rec["indicator"] = ind
            out.append(rec)
    schema = {"row": pl.Int64, "occupation": pl.Utf8, "forms": pl.List(pl.Utf8), "indicator_terms": pl.List(pl.Utf8)}
    if names is not None:
        schema["indicator_names"] = pl.List(pl.Utf8)
    schema["indicator"] = pl.Utf8
    return pl.DataFrame(out, schema=schema)
