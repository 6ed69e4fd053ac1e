"""The caption matcher: occupations and gender indicators in one pass over a batch.

`query_batch` is the heavy part, a pure function from a batch of captions (a Polars frame
or an Arrow table with standard column names) to the `mentions` rows it yields, so the
local engine and a distributed one (Ray Data `map_batches`) run the same code.

How a batch is matched (native code does the scanning: Hyperscan, biasamp's C extension
`biasamp.corpus.kernels`, Polars' Rust code):

1. Prefilter, over every caption (`biasamp.corpus.prefilter`): one case-insensitive pattern
   per occupation key (a form's words joined by "any run of non-word characters"). It keeps
   only captions that could mention an occupation, and never drops one the exact stage
   would match, unless an apostrophe splits an occupation word ("engi'neer").
2. Exact stage, on the survivors only: captions are normalised (lower-cased, apostrophes
   removed, other non-word runs turned into a space; `biasamp.vocab.occupations.normalise`),
   padded with a space at both ends, and searched for every occupation form *and* gender
   word written between spaces (" police officer ", " her "), all occurrences, overlapping
   ones included (Aho-Corasick, Polars' `extract_many`): in a normalised caption that is
   exactly a whole-word match. So "film director" is a mention of "film director" and of
   "director", and every gender word is found. With `exact_engine="native"` (the default
   where the extension is built), the C kernel does the same for ASCII captions in one
   pass, names and output rows included; other captions take the Polars path.
3. Person names on the captions that mention an occupation (`biasamp.corpus.names`).
   `indicator` is male (male words/names only), female, both, or none.

`biasamp.corpus.baseline` is the same result computed another way (one caption at a time,
Python's `re` with word boundaries).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import mmh3
import polars as pl
import pyarrow as pa

from biasamp.corpus import kernels
from biasamp.corpus.prefilter import Prefilter, prefilter_regex  # noqa: F401 - re-exported (tests, users)
from biasamp.errors import BiasampError
from biasamp.vocab.lexicons import Lexicon, load_lexicon
from biasamp.vocab.occupations import (
    POLARS_APOSTROPHES,
    Occupation,
    load_occupations,
)

def normalise_expr(expr: pl.Expr) -> pl.Expr:
    """`biasamp.vocab.occupations.normalise` as a Polars expression."""
    # Same result as replacing every run of [\W_] by one space, but it leaves single spaces
    # alone, so most captions need no new string (several times faster in Polars).
    return (
        expr.str.to_lowercase()
        .str.replace_all(POLARS_APOSTROPHES, "")
        .str.replace_all(r"[\W_]{2,}|[^\w ]|_", " ")
    )


@dataclass
class CaptionMatcher:
    """Occupations + a gender lexicon (+ a person-name finder) compiled for matching.

    Picklable (the name finder is built lazily), so it can be shipped to workers.
    """

    occupations: list[Occupation] = field(default_factory=lambda: load_occupations())
    lexicon: Lexicon = field(default_factory=lambda: load_lexicon("paper"))
    names: str | None = "auto"  # name-finder backend: "auto", "capitalised", "spacy", or None (off)
    prefilter_engine: str = "auto"  # "auto" (hyperscan where it imports), "hyperscan", "regex"
    exact_engine: str = "auto"  # "auto" (native where it is built), "native", "polars"

    def __post_init__(self):
        if not self.occupations:
            raise BiasampError("no occupations to look for")
        pairs = sorted({(f, o.name) for o in self.occupations for f in o.forms})
        forms = sorted({f for f, _ in pairs})
        self.form_occupation = pl.DataFrame(pairs, schema={"item": pl.Utf8, "occupation": pl.Utf8}, orient="row")
        terms = self.lexicon.terms()
        self.term_gender = pl.DataFrame(terms, schema={"item": pl.Utf8, "term_gender": pl.Utf8}, orient="row")
        # Occupation forms and gender words together, each between spaces: in a normalised
        # caption (words of word characters, single spaces) padded with a space at both ends,
        # an item occurs as whole words exactly where " item " occurs. An overlapping
        # Aho-Corasick search (Polars' `extract_many`) then finds every occurrence of every
        # item, nested or overlapping ones included ("film director" and "director").
        items = sorted(set(forms) | {t for t, _ in terms})
        for i in items:
            if i != " ".join(i.split()) or not i:
                raise ValueError(f"vocabulary item {i!r} is not normalised")
        self.padded_item = pl.DataFrame({"_m": [f" {i} " for i in items], "item": items})
        self.padded_items = self.padded_item["_m"].to_list()
        self._prefilter = Prefilter(forms, self.prefilter_engine)
        self.prefilter_engine = self._prefilter.engine
        self.prefilter_regex = self._prefilter.regex
        self._finder = None
        self.names_backend = None
        if self.names:
            self._name_finder()  # resolve "auto" now, so the backend used is known and recorded
        self._kernel = None
        if self.exact_engine not in ("auto", "native", "polars"):
            raise BiasampError(f"unknown exact-stage engine {self.exact_engine!r}", hint="one of auto, native, polars")
        if self.exact_engine != "polars":
            ascii_words = all(w.isascii() and w.isalnum() and w == w.lower() for i in items for w in i.split())
            finder = self._name_finder()
            if kernels.available() and ascii_words and (finder is None or finder.backend == "capitalised"):
                self._kernel = kernels.ExactKernel(
                    items, pairs, terms, names=finder.table if finder is not None else None
                )
            elif self.exact_engine == "native":
                raise BiasampError(
                    "the native exact stage needs biasamp's C extension (built when biasamp is installed with a C "
                    "compiler), occupation and lexicon words of ASCII letters and digits, and the capitalised name "
                    "finder (or none)",
                    hint="reinstall with a C compiler (pip install -e .), or use exact engine 'polars'",
                )
        self.exact_engine = "native" if self._kernel is not None else "polars"

    # -- names -------------------------------------------------------------------------
    def _name_finder(self):
        if self._finder is None and self.names:
            from biasamp.corpus.names import make_name_finder

            exclude = frozenset(self.lexicon.male | self.lexicon.female) | frozenset(
                w for o in self.occupations for f in o.forms for w in f.split()
            )
            self._finder = make_name_finder(self.names, exclude)
            self.names_backend = self._finder.backend
        return self._finder

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_finder"] = None
        return d

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.prefilter_engine = self._prefilter.engine  # the prefilter may fall back where it lands
        if self._kernel is not None and not kernels.available():  # e.g. a worker where the extension is not built
            self._kernel = None
            self.exact_engine = "polars"

    # -- description -------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of everything that decides the output (for safe resume)."""
        spec = {
            "forms": self.form_occupation.rows(),
            "terms": self.term_gender.rows(),
            "names": self.names_backend,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "occupations": [o.name for o in self.occupations],
            "n_forms": self.form_occupation.height,
            "lexicon": self.lexicon.name,
            "names": self.names_backend,
            "prefilter": self.prefilter_engine,
            "exact": self.exact_engine,
            "fingerprint": self.fingerprint(),
        }

    # -- matching ----------------------------------------------------------------------
    def prefilter(self, text: str | pl.Expr = "text") -> pl.Expr:
        """True for captions that may mention an occupation (a superset of the matches);
        the regex engine, as an expression for lazy scans."""
        return self._prefilter.expr(text)

    def candidate_rows(self, texts: pl.Series | pa.Array | pa.ChunkedArray) -> pl.Series:
        """Positions of the captions that may mention an occupation (`biasamp.corpus.prefilter`)."""
        return pl.Series("row", self._prefilter.rows(texts), dtype=pl.Int64)

    def _hits_polars(self, df: pl.DataFrame, *, text: str, key: str) -> pl.DataFrame:
        padded = (" " + normalise_expr(pl.col(text)) + " ").str.extract_many(self.padded_items, overlapping=True)
        return (
            df.select(pl.col(key), padded.alias("_m"))
            .explode("_m")
            .drop_nulls("_m")
            .unique()
            .join(self.padded_item, on="_m")
            .select(key, "item")
        )

    def match(self, df: pl.DataFrame, *, text: str = "text", key: str = "row") -> pl.DataFrame:
        """Exact stage: one row per (key, occupation) with forms, indicator terms and names.

        Columns: key, occupation, forms, indicator_terms, [indicator_names], indicator.
        `df` may hold any captions (the prefilter is not needed for correctness).
        """
        if self._kernel is not None and df.height and df.schema[text] == pl.Utf8 and _strictly_increasing(df[key]):
            return self._match_kernel(df, text=text, key=key)
        # (keys repeated or out of order: Polars groups and sorts by key, the kernel by position)
        return self._match_polars(df, text=text, key=key)

    def _match_kernel(self, df: pl.DataFrame, *, text: str, key: str) -> pl.DataFrame:
        """`match` by the compiled kernel (`biasamp.corpus.kernels`) for ASCII captions, by
        Polars for the rest."""
        arr = df[text].to_arrow(compat_level=pl.CompatLevel.newest())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
        out, others = self._kernel.match(arr)
        if out is None:  # a column the kernel cannot read
            return self._match_polars(df, text=text, key=key)
        # the kernel's rows are positions in `df`: its keys instead
        out = out.with_columns(df[key].gather(out["row"]).alias("_key")).drop("row").rename({"_key": key})
        out = out.select(key, *[c for c in out.columns if c != key])
        if len(others):
            rest = self._match_polars(df[pl.Series(others, dtype=pl.Int64)], text=text, key=key)
            out = pl.concat([out, rest], how="vertical_relaxed").sort(key, "occupation")
        return out

    def _match_polars(self, df: pl.DataFrame, *, text: str, key: str) -> pl.DataFrame:
        hits = self._hits_polars(df, text=text, key=key)
        found = (
            hits.join(self.form_occupation, on="item")
            .sort(key, "occupation", "item")
            .group_by(key, "occupation", maintain_order=True)
            .agg(pl.col("item").alias("forms"))
        )
        keys = found.select(pl.col(key).unique())
        terms = (
            hits.join(keys, on=key, how="semi")
            .join(self.term_gender, on="item")
            .sort(key, "item")
            .group_by(key, maintain_order=True)
            .agg(
                pl.col("item").alias("indicator_terms"),
                (pl.col("term_gender") == "male").any().alias("_tm"),
                (pl.col("term_gender") == "female").any().alias("_tf"),
            )
        )
        out = found.join(terms, on=key, how="left")
        male = pl.col("_tm").fill_null(False)
        female = pl.col("_tf").fill_null(False)
        finder = self._name_finder()
        if finder is not None:
            raw = df.select(pl.col(key), pl.col(text)).join(keys, on=key, how="semi")
            names = (
                finder.find(raw, text=text, key=key)
                .group_by(key)
                .agg(
                    pl.col("name").alias("indicator_names"),
                    (pl.col("name_gender") == "male").any().alias("_nm"),
                    (pl.col("name_gender") == "female").any().alias("_nf"),
                )
            )
            out = out.join(names, on=key, how="left")
            male = male | pl.col("_nm").fill_null(False)
            female = female | pl.col("_nf").fill_null(False)
        empty = pl.lit([], dtype=pl.List(pl.Utf8))
        cols = [
            pl.col(key),
            pl.col("occupation"),
            pl.col("forms"),
            pl.col("indicator_terms").fill_null(empty),
        ]
        if finder is not None:
            cols.append(pl.col("indicator_names").fill_null(empty))
        cols.append(
            pl.when(male & female).then(pl.lit("both")).when(male).then(pl.lit("male"))
            .when(female).then(pl.lit("female")).otherwise(pl.lit("none")).alias("indicator")
        )
        return out.select(cols).sort(key, "occupation")


def _strictly_increasing(keys: pl.Series) -> bool:
    if keys.null_count():
        return False
    if keys.len() < 2:
        return True
    if not keys.dtype.is_numeric():
        return keys.is_sorted() and keys.n_unique() == keys.len()
    return bool((keys.diff().drop_nulls() > 0).all())


# -- caption ids ---------------------------------------------------------------------------
def laion_caption_id(url: str, text: str) -> int:
    """LAION's rule: the first signed 64-bit half of MurmurHash3 x64-128 of url + text."""
    return mmh3.hash64(url + text)[0]


def fallback_caption_id(text: str, source_name: str, row: int) -> int:
    """Without a url: MurmurHash3 of text, the file's base name and the row, joined by U+001F."""
    return mmh3.hash64(f"{text}\x1f{source_name}\x1f{row}")[0]


def caption_ids(df: pl.DataFrame, *, source_name: str, text="text", url="url", hash="hash", row="row") -> pl.DataFrame:
    """Add `caption_id` (Int64) and `id_rule` (hash | url+text | fallback) to `df`."""
    n = df.height
    if (  # the usual LAION-2B-en case, in one native call: no id column, a url and a caption in every row
        n and hash not in df.columns and url in df.columns and kernels.available()
        and df.schema[url] == pl.Utf8 and df.schema[text] == pl.Utf8
        and not df[url].null_count() and not df[text].null_count()
    ):
        old = pl.CompatLevel.oldest()  # large_string: what the kernel reads
        vals = kernels.laion_ids(df[url].to_arrow(compat_level=old), df[text].to_arrow(compat_level=old))
        return df.with_columns(pl.Series("caption_id", vals, dtype=pl.Int64), pl.lit("url+text").alias("id_rule"))
    h = df[hash].cast(pl.Int64, strict=False) if hash in df.columns else pl.Series([None] * n, dtype=pl.Int64)
    u = df[url].cast(pl.Utf8) if url in df.columns else pl.Series([None] * n, dtype=pl.Utf8)
    t = df[text]
    rule = (
        pl.select(
            pl.when(h.is_not_null()).then(pl.lit("hash"))
            .when(u.is_not_null() & t.is_not_null()).then(pl.lit("url+text"))
            .otherwise(pl.lit("fallback"))
        ).to_series()
    )
    ids = h.clone()
    hash64 = mmh3.hash64
    idx = (rule == "url+text").arg_true()
    if idx.len() and kernels.available() and u.dtype == pl.Utf8 and t.dtype == pl.Utf8:  # native, without the interpreter lock
        old = pl.CompatLevel.oldest()  # large_string: what the kernel reads
        vals = kernels.laion_ids(u.gather(idx).to_arrow(compat_level=old), t.gather(idx).to_arrow(compat_level=old))
        ids.scatter(idx, pl.Series(vals, dtype=pl.Int64))
    elif idx.len():  # url + text joined by Polars, hashed one string at a time
        vals = [hash64(x)[0] for x in (u.gather(idx) + t.gather(idx)).to_list()]
        ids.scatter(idx, pl.Series(vals, dtype=pl.Int64))
    idx = (rule == "fallback").arg_true()
    if idx.len():
        rows = df[row].gather(idx).to_list()
        vals = [fallback_caption_id(tx or "", source_name, r) for tx, r in zip(t.gather(idx).to_list(), rows)]
        ids.scatter(idx, pl.Series(vals, dtype=pl.Int64))
    return df.with_columns(ids.alias("caption_id"), rule.alias("id_rule"))


# -- the pure batch function -------------------------------------------------------------------
def query_batch(
    batch: pl.DataFrame | pa.Table | pa.RecordBatch,
    matcher: CaptionMatcher,
    *,
    source: str = "",
    prefiltered: bool = False,
    keep: tuple[str, ...] | list[str] = (),
) -> pl.DataFrame:
    """Mentions in one batch of captions: a pure function (frame in, frame out).

    `batch` has standard columns: `text` (required), `url`, `hash`, `row` (the caption's
    position in its file; made from the batch order if absent) and any `keep` columns; or
    a corpus's own columns, resolved as the readers do (TEXT/caption, URL, hash; any case).
    Returns the `mentions` rows: caption_id, occupation, text, url, indicator,
    indicator_terms, [indicator_names], forms, source, row, id_rule, *keep.
    """
    df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
    if not isinstance(df, pl.DataFrame):  # pl.from_arrow may give a Series for one column
        df = df.to_frame()
    if "text" not in df.columns:  # a raw batch (e.g. LAION's TEXT/URL/hash): resolve the columns
        from biasamp.corpus.readers import resolve_columns, standard_exprs

        cols = resolve_columns(df.columns, source or "batch", keep=keep)
        extra = [pl.col("row")] if "row" in df.columns else []
        df = df.select(*extra, *standard_exprs(cols, dict(df.schema)))
    if "row" not in df.columns:
        df = df.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    if df.schema["text"] != pl.Utf8:
        df = df.with_columns(pl.col("text").cast(pl.Utf8))
    if not prefiltered:
        df = df[matcher.candidate_rows(df["text"])]
    found = matcher.match(df, text="text", key="row")
    base_cols = ["row", "text"] + [c for c in ("url", "hash") if c in df.columns] + [c for c in keep if c in df.columns and c not in ("row", "text", "url", "hash")]
    rows = df.select(base_cols).join(found.select("row").unique(), on="row", how="semi")
    source_name = source.rstrip("/").rsplit("/", 1)[-1]
    rows = caption_ids(rows, source_name=source_name)
    out = found.join(rows, on="row", how="left")
    if "url" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.Utf8).alias("url"))
    first = ["caption_id", "occupation", "text", "url", "indicator", "indicator_terms"]
    if "indicator_names" in out.columns:
        first.append("indicator_names")
    rest = ["forms", "row", "id_rule"] + [c for c in keep if c in out.columns and c not in first]
    return out.with_columns(pl.lit(source, dtype=pl.Utf8).alias("source")).select(
        *first, "forms", pl.col("source"), *[c for c in rest if c != "forms"]
    )


def query_batch_arrow(batch: pa.Table | pa.RecordBatch | pl.DataFrame, matcher: CaptionMatcher, **kwargs) -> pa.Table:
    """`query_batch` returning an Arrow table (what Ray Data's `map_batches` expects)."""
    return query_batch(batch, matcher, **kwargs).to_arrow()
