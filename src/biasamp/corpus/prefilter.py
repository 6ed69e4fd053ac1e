"""The prefilter: which captions could mention an occupation, found in one scan of the bytes.

Every caption is looked at by the prefilter, so it decides the query's speed. It must keep
every caption the exact stage would match (a superset; false positives only cost time in
the exact stage). Two engines give that guarantee:

- `hyperscan` (default where Hyperscan is available): Intel's multi-pattern matcher scans
  the caption column's Arrow data buffers as they are, without a copy and without
  per-caption calls, for one case-insensitive pattern per occupation key (its words joined
  by "any run of non-word bytes"), and the match offsets are mapped back to rows, each
  caption decided on its own bytes. No left word boundary is asked for, so a match may start
  inside a word ("factor" for "actor") or run across two adjacent captions in the buffer;
  both only add candidates. Two ways to the same scan:
  - biasamp's C extension linked with the Hyperscan library
    (`biasamp.corpus.kernels.NativeHyperscan`, where the library was installed when biasamp
    was built): matches are collected and mapped in C without the interpreter lock, and the
    captions of 12 bytes or less (which live inside Arrow's string views, not in the data
    buffers) are scanned one by one;
  - the `hyperscan` package otherwise: Python is called once per match, and the short
    captions go through the regex engine below.
- `regex`: one case-insensitive regular expression (`prefilter_regex`) run by Polars (Rust's
  regex crate) on each caption. Used for occupations with non-ASCII letters (whose case
  folding Hyperscan does not do as Polars' lower-casing does), where Hyperscan is missing,
  and for buffers too large for one scan.

Known gap (both engines): an apostrophe inside an occupation word ("engi'neer") is removed
by normalisation, so the exact stage would match, but the prefilter does not let it through.

Lower-casing can turn a non-ASCII character into an ASCII letter (KELVIN SIGN -> "k",
LATIN CAPITAL LETTER I WITH DOT ABOVE -> "i" + a combining dot), which a byte scan for
ASCII letters would not see: a caption containing one of `ASCII_LOWERING` is always a
candidate.
"""

from __future__ import annotations

import threading

import numpy as np
import polars as pl
import pyarrow as pa

from biasamp.corpus import kernels
from biasamp.errors import BiasampError

#: Non-ASCII characters whose lower-case form contains an ASCII letter or digit (derived
#: from the Unicode data by `ascii_lowering_chars()`; a test checks this list against it).
ASCII_LOWERING = ("\u0130", "\u212a")

#: Strings this long or shorter are stored inside an Arrow string view, not in its data buffers.
VIEW_INLINE_BYTES = 12

#: Hyperscan scans at most 2**32 - 1 bytes at once; a larger buffer goes through the regex.
MAX_SCAN_BYTES = 2**31


class _TooLarge(Exception):
    pass


def _check_scannable(buffers: list) -> None:
    if any(b is not None and b.size > MAX_SCAN_BYTES for b in buffers):
        raise _TooLarge

_RX_META = set(r"\.+*?()|[]{}^$#&-~")


def ascii_lowering_chars() -> tuple[str, ...]:
    """Non-ASCII characters whose `str.lower()` contains an ASCII letter or digit."""
    import sys

    return tuple(
        chr(cp) for cp in range(0x80, sys.maxunicode + 1)
        if any(ch.isascii() and ch.isalnum() for ch in chr(cp).lower())
    )


def _implies(k2: tuple[str, ...], k1: tuple[str, ...]) -> bool:
    """Does every raw text matching key k1 also match key k2? Keys match at the start of a
    word ("smith" does not find "blacksmith") and may run on at the end ("engineer" finds
    "engineers")."""
    if len(k2) == 1:
        return any(w.startswith(k2[0]) for w in k1)
    if len(k2) != len(k1):
        return False
    return k1[0] == k2[0] and k1[-1].startswith(k2[-1]) and k1[1:-1] == k2[1:-1]


def prefilter_keys(forms: list[str]) -> list[tuple[str, ...]]:
    """The occupation forms as word tuples, minus those another key already finds
    ("engineers" is found by "engineer"), longest first."""
    keys = {tuple(f.split()) for f in forms}
    # A key can only be implied by one starting with the same letters: compare within those groups.
    by_start: dict[str, list[tuple[str, ...]]] = {}
    for k in keys:
        by_start.setdefault(k[0][:1], []).append(k)
    keys = {
        k for k in keys
        if not any(o != k and _implies(o, k) for s in {w[:1] for w in k} for o in by_start.get(s, ()))
    }
    for k in keys:
        for w in k:
            if any(ch in _RX_META for ch in w):
                raise ValueError(f"unexpected regex character in normalised word {w!r}")
    return sorted(keys, key=lambda k: (-len(" ".join(k)), k))


def prefilter_regex(forms: list[str], keys: list[tuple[str, ...]] | None = None) -> str:
    """One case-insensitive regex that every caption mentioning a form matches.

    Each key's words, joined by "any run of non-word characters", after the start of the
    text or a character that is not an ASCII letter or digit (a superset of the word
    starts that normalisation makes: "_" and "é" are word characters to Rust's `\\b`,
    separators or letters to the normaliser); no end boundary, so plurals and possessives
    of a key also match.
    """
    ascii_start, other = [], []
    for k in keys if keys is not None else prefilter_keys(forms):
        body = r"[\W_]+".join(k)
        (ascii_start if k[0][:1].isascii() else other).append(body)
    alts = []
    if ascii_start:
        alts.append(r"(?:^|[^a-zA-Z0-9])(?:" + "|".join(ascii_start) + ")")
    alts += other
    return "(?i)(?:" + "|".join(alts) + ")"


def hyperscan_available() -> bool:
    """Hyperscan through biasamp's extension (linked with the C library) or the `hyperscan` package."""
    if kernels.libhs_available():
        return True
    try:
        import hyperscan  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or no usable CPU support: the regex engine is used
        return False
    return True


class Prefilter:
    """Candidate rows of a caption column (see module doc). Picklable: the Hyperscan
    database is compiled when the prefilter is made, and again where it is unpickled."""

    def __init__(self, forms: list[str], engine: str = "auto"):
        self.keys = prefilter_keys(forms)
        self.regex = prefilter_regex(forms, self.keys)
        ascii_keys = all(w.isascii() for k in self.keys for w in k)
        requested = engine
        if engine == "auto":
            engine = "hyperscan" if ascii_keys and hyperscan_available() else "regex"
        elif engine == "hyperscan":
            if not ascii_keys:
                raise BiasampError("the hyperscan prefilter needs ASCII occupation names", hint="use prefilter engine 'regex'")
            if not hyperscan_available():
                raise BiasampError("the hyperscan prefilter needs the 'hyperscan' package", hint="pip install hyperscan, or use prefilter engine 'regex'")
        elif engine != "regex":
            raise BiasampError(f"unknown prefilter engine {engine!r}", hint="one of auto, hyperscan, regex")
        self.engine = engine
        self._db = None
        self._native = None
        self._local = threading.local()
        self._lock = threading.Lock()
        if engine == "hyperscan":
            try:  # compiled now: a CPU Hyperscan cannot run on shows here, not mid-run
                self._database()
            except Exception as e:  # noqa: BLE001
                if requested == "hyperscan":
                    raise BiasampError(f"the hyperscan prefilter cannot run here: {e}", hint="use prefilter engine 'regex'") from None
                self.engine = "regex"

    def __getstate__(self):
        return {"keys": self.keys, "regex": self.regex, "engine": self.engine}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._db = None
        self._native = None
        self._local = threading.local()
        self._lock = threading.Lock()
        if self.engine == "hyperscan" and not hyperscan_available():
            self.engine = "regex"  # e.g. a worker without the package: the same result, slower

    # -- hyperscan ------------------------------------------------------------------------
    def _patterns(self) -> list[bytes]:
        pats = [r"[\W_]+".join(k).encode() for k in self.keys]
        return pats + [c.encode() for c in ASCII_LOWERING]

    def _database(self):
        """The compiled patterns: biasamp's extension where it is linked with the Hyperscan
        library (`self._native`), else the `hyperscan` package's database."""
        if self._db is None:
            with self._lock:
                if self._db is None:
                    if kernels.libhs_available():
                        self._native = kernels.NativeHyperscan(self._patterns())
                        self._db = self._native
                    else:
                        import hyperscan as hs

                        pats = self._patterns()
                        db = hs.Database(mode=hs.HS_MODE_BLOCK)
                        db.compile(expressions=pats, ids=list(range(len(pats))), elements=len(pats), flags=[hs.HS_FLAG_CASELESS] * len(pats))
                        self._db = db
        return self._db

    def _scratch(self, db):
        s = getattr(self._local, "scratch", None)
        if s is None:
            import hyperscan as hs

            s = self._local.scratch = hs.Scratch(db)
        return s

    def _scan_ends(self, buffers: list) -> list[np.ndarray]:
        """End offsets of every match in each buffer."""
        db = self._database()
        scratch = self._scratch(db)
        out = []
        for buf in buffers:
            ends: list[int] = []
            if buf is not None and buf.size:
                add = ends.append
                db.scan(buf, match_event_handler=lambda _i, _f, to, _fl, _c: add(to), scratch=scratch)
            out.append(np.asarray(ends, dtype=np.int64))
        return out

    def _match_ends(self, data: list, base: np.ndarray) -> np.ndarray:
        """The last byte of every match in the buffers `data`, sorted, in one coordinate
        (buffer i starts at base[i])."""
        ends = self._scan_ends(data)
        pos = np.concatenate([e - 1 + base[i] for i, e in enumerate(ends)]) if ends else np.empty(0, np.int64)
        if len(pos) and not (pos[1:] >= pos[:-1]).all():
            pos = np.sort(pos)
        return pos

    def _hyperscan_rows(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rows found in the data buffers, rows the regex must still check)."""
        n = len(arr)
        if pa.types.is_string_view(arr.type):
            bufs = arr.buffers()
            data = bufs[2:]
            _check_scannable(data)
            sizes = np.array([b.size if b is not None else 0 for b in data], dtype=np.int64)
            base = np.concatenate([[0], np.cumsum(sizes)])
            if kernels.available():  # the decisions below, in native code without the interpreter lock
                return kernels.rows_with_ends(arr, base, self._match_ends(data, base))
            valid = np.asarray(arr.is_valid()) if arr.null_count else None
            views = np.frombuffer(bufs[1], dtype=np.int32, count=4 * (arr.offset + n)).reshape(-1, 4)[arr.offset:]
            lens = views[:, 0]
            long_ = lens > VIEW_INLINE_BYTES
            if valid is not None:
                long_ &= valid
            if long_.all():  # the usual case: no gathers needed
                rows = None
                starts = base[views[:, 2]] + views[:, 3]
                stops = starts + lens
            else:
                rows = np.flatnonzero(long_)
                starts = base[views[rows, 2]] + views[rows, 3]
                stops = starts + lens[rows]
            short = np.flatnonzero((lens <= VIEW_INLINE_BYTES) & (lens > 0) & (valid if valid is not None else True))
        else:  # string or large_string (`rows` casts anything else)
            valid = np.asarray(arr.is_valid()) if arr.null_count else None
            odt = np.int64 if pa.types.is_large_string(arr.type) else np.int32
            bufs = arr.buffers()
            offs = np.frombuffer(bufs[1], dtype=odt, count=arr.offset + n + 1)[arr.offset:].astype(np.int64)
            lo, hi = int(offs[0]), int(offs[-1])
            data = [bufs[2].slice(lo, hi - lo) if bufs[2] is not None else None]
            _check_scannable(data)
            base = np.zeros(1, dtype=np.int64)
            rows = None
            starts, stops = offs[:-1] - lo, offs[1:] - lo
            if valid is not None:
                rows = np.flatnonzero(valid)
                starts, stops = starts[rows], stops[rows]
            short = np.empty(0, dtype=np.int64)
        pos = self._match_ends(data, base)
        if not len(pos) or not len(starts):
            return np.empty(0, dtype=np.int64), short
        # Decided per caption, not per match: captions may share or overlap bytes (string
        # views of repeated captions, of dictionary-encoded Parquet pages, of slices), so a
        # caption is a candidate when some match's last byte lies in its byte range.
        first = np.searchsorted(pos, starts, side="left")  # the first match ending at or after its start
        hit = pos[np.minimum(first, len(pos) - 1)] < stops
        hit &= first < len(pos)
        found = np.flatnonzero(hit) if rows is None else rows[hit]
        return found.astype(np.int64), short

    # -- public ---------------------------------------------------------------------------
    def expr(self, text: str | pl.Expr = "text") -> pl.Expr:
        """The regex prefilter as a Polars expression (True = may mention an occupation)."""
        e = pl.col(text) if isinstance(text, str) else text
        return e.str.contains(self.regex)

    def rows(self, texts: pl.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Sorted positions of the captions that may mention an occupation."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
        if isinstance(texts, pa.Array):
            text_types = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
            arr = texts if any(t(texts.type) for t in text_types) else texts.cast(pa.large_string())
            s = pl.Series("text", arr)
        else:
            s = texts if texts.dtype == pl.Utf8 else texts.cast(pl.Utf8)
            arr = None
        if self.engine == "regex" or len(s) == 0:
            return self._regex_rows(s)
        if arr is None:
            arr = s.to_arrow(compat_level=pl.CompatLevel.newest())
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
        self._database()
        if self._native is not None:
            found = self._native.rows(arr, MAX_SCAN_BYTES)
            return found if found is not None else self._regex_rows(s)
        try:
            found, short = self._hyperscan_rows(arr)
        except _TooLarge:
            return self._regex_rows(s)
        if len(short):
            short = short[self._regex_rows(s.gather(pl.Series(short, dtype=pl.Int64)))]
            found = np.sort(np.concatenate([found, short]))  # disjoint: short captions are not in the buffers
        return found.astype(np.int64)

    def _regex_rows(self, s: pl.Series) -> np.ndarray:
        return s.str.contains(self.regex).fill_null(False).arg_true().to_numpy().astype(np.int64)
