"""Person names as gender indicators.

Two finders, picked by name (`NAME_FINDERS`):

- "capitalised": every capitalised word ("Maria", not "MARIA" or "maria") that
  gender-guesser knows as a first name. "mostly_male"/"mostly_female" count as
  male/female; androgynous ("andy") and unknown names are dropped. Words that are mostly
  ordinary words in captions ("Will", "Rose", "Paris"; vocab/names_exclude.txt) and words
  of the lexicon or occupation list are never names. Vectorised (Polars), no model needed.
- "spacy": spaCy PERSON entities, first token looked up in the same table. Needs an
  installed `en_core_web_*` model (none is bundled); used by "auto" when one is present.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import polars as pl

from biasamp.errors import BiasampError
from biasamp.registry import Registry
from biasamp.vocab import data_path

#: A capitalised word: an upper-case letter then lower-case letters, as a whole word.
NAME_TOKEN = r"\b\p{Lu}\p{Ll}+\b"
SPACY_MODELS = ("en_core_web_trf", "en_core_web_lg", "en_core_web_md", "en_core_web_sm")


@lru_cache(maxsize=1)
def excluded_words() -> frozenset[str]:
    lines = data_path("names_exclude.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))


#: Bump when `_derive_first_names` changes, so cached tables are rebuilt.
FIRST_NAMES_RULES = 1


@lru_cache(maxsize=1)
def first_name_genders() -> dict[str, str]:
    """gender-guesser's first names -> 'male' | 'female' (mostly_ folded in, andy dropped).

    Deriving it takes about 0.3-0.5 s (gender-guesser parses its whole dictionary), so the
    result is kept in `biasamp.store.cache_dir()`, keyed by gender-guesser's version, its
    data file's size and these rules."""
    return dict(_load_first_names().iter_rows())


@lru_cache(maxsize=1)
def first_name_frame() -> pl.DataFrame:
    """`first_name_genders` as a frame (name, gender), read straight from the cache."""
    return _load_first_names()


def _load_first_names() -> pl.DataFrame:
    import hashlib
    from importlib import metadata
    from pathlib import Path

    from biasamp.store import atomic_path, cache_dir

    import gender_guesser

    data = Path(gender_guesser.__file__).parent / "data" / "nam_dict.txt"
    try:
        version = metadata.version("gender-guesser")
    except metadata.PackageNotFoundError:
        version = "?"
    size = data.stat().st_size if data.exists() else 0
    key = hashlib.sha256(f"{version}|{size}|{FIRST_NAMES_RULES}".encode()).hexdigest()[:16]
    cache = cache_dir()
    path = cache / f"first-names-{key}.parquet" if cache else None
    schema = {"name": pl.Utf8, "gender": pl.Utf8}
    if path is not None and path.exists():
        try:
            cached = pl.read_parquet(path)
            if cached.height and dict(cached.schema) == schema:
                return cached
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt below
            pass
    out = _derive_first_names()
    table = pl.DataFrame({"name": list(out), "gender": list(out.values())}, schema=schema)
    if path is not None and out:
        try:
            with atomic_path(path) as tmp:
                table.write_parquet(tmp)
        except OSError:
            pass
    return table


def _derive_first_names() -> dict[str, str]:
    import re

    from gender_guesser.detector import Detector

    d = Detector(case_sensitive=True)
    pat = re.compile(r"^[^\W\d_][^\W\d_]+$")
    out: dict[str, str] = {}
    for name in d.names:
        if not pat.match(name) or not name[0].isupper() or not name[1:].islower():
            continue
        g = d.get_gender(name)
        if g in ("male", "mostly_male"):
            out[name] = "male"
        elif g in ("female", "mostly_female"):
            out[name] = "female"
    return out


def names_table(exclude: frozenset[str] = frozenset()) -> pl.DataFrame:
    """(name, name_gender) for every usable first name, minus excluded words (any case)."""
    skip = pl.Series(sorted(excluded_words() | {e.lower() for e in exclude}), dtype=pl.Utf8)
    table = first_name_frame().rename({"gender": "name_gender"})
    return table.filter(~pl.col("name").str.to_lowercase().is_in(skip.implode()))


class CapitalisedNames:
    """Capitalised words that gender-guesser knows as first names."""

    backend = "capitalised"

    def __init__(self, exclude: frozenset[str] = frozenset()):
        self.table = names_table(exclude)

    def find(self, df: pl.DataFrame, text: str = "text", key: str = "_key") -> pl.DataFrame:
        """(key, name, name_gender) rows, one per distinct gendered name in each text."""
        toks = (
            df.select(pl.col(key), pl.col(text).str.extract_all(NAME_TOKEN).alias("name"))
            .explode("name")
            .drop_nulls("name")
            .unique(maintain_order=True)
        )
        return toks.join(self.table, on="name", how="inner", maintain_order="left")


class SpacyNames:
    """spaCy PERSON entities, first token looked up in gender-guesser's table."""

    backend = "spacy"

    def __init__(self, exclude: frozenset[str] = frozenset(), model: str | None = None):
        if importlib.util.find_spec("spacy") is None:
            raise BiasampError("person names by spaCy need the 'spacy' package", hint="pip install spacy, or use --names-backend capitalised")
        model = model or installed_spacy_model()
        if model is None:
            raise BiasampError(
                f"no spaCy English model installed (looked for {', '.join(SPACY_MODELS)})",
                hint="install one (python -m spacy download en_core_web_lg) or use --names-backend capitalised",
            )
        import spacy

        self.model = model
        self.nlp = spacy.load(model, disable=["parser", "lemmatizer", "tagger", "attribute_ruler"])
        self.table = dict(names_table(exclude).iter_rows())

    def find(self, df: pl.DataFrame, text: str = "text", key: str = "_key") -> pl.DataFrame:
        rows = []
        for k, doc in zip(df[key].to_list(), self.nlp.pipe([t or "" for t in df[text].to_list()], batch_size=256)):
            seen = set()
            for ent in doc.ents:
                if ent.label_ != "PERSON" or not len(ent):
                    continue
                first = ent[0].text
                g = self.table.get(first)
                if g and first not in seen:
                    seen.add(first)
                    rows.append((k, first, g))
        return pl.DataFrame(rows, schema={key: df.schema[key], "name": pl.Utf8, "name_gender": pl.Utf8}, orient="row")


def installed_spacy_model() -> str | None:
    if importlib.util.find_spec("spacy") is None:
        return None
    for m in SPACY_MODELS:
        if importlib.util.find_spec(m) is not None:
            return m
    return None


NAME_FINDERS: Registry = Registry("person-name finder")
NAME_FINDERS.register("capitalised", CapitalisedNames, doc="capitalised words looked up in gender-guesser (no model needed)")
NAME_FINDERS.register("spacy", SpacyNames, doc="spaCy PERSON entities (needs an en_core_web_* model)")


def make_name_finder(backend: str = "auto", exclude: frozenset[str] = frozenset()):
    """A name finder by name; "auto" = spaCy when a model is installed, else capitalised."""
    if backend == "auto":
        backend = "spacy" if installed_spacy_model() else "capitalised"
    return NAME_FINDERS.get(backend)(exclude)
