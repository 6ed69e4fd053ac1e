"""Native kernels of the caption query (C, `biasamp/corpus/_scan.c`): the exact stage on
ASCII captions (`ExactKernel`), the prefilter's scan where the extension is linked with the
Hyperscan library (`NativeHyperscan`), the mapping of the `hyperscan` package's match
offsets to captions (`rows_with_ends`), and LAION's caption ids (`laion_ids`).

Why: the query's scans already run in Polars' and Hyperscan's native code, and two input
files are processed at once on two threads; what remained in Python (a dozen Polars
operations per file for the exact stage, NumPy arithmetic over every caption, one `mmh3`
call per caption) cost as much CPU as the scans, and much of it held the interpreter lock,
so the two threads mostly waited for each other. These kernels read the caption column's
Arrow buffers in place and release the lock.

The exact stage here gives the same result as the Polars stage (`CaptionMatcher.match` with
`exact_engine="polars"`): a caption is lower-cased, apostrophes (' and `) are dropped,
every other run of characters that are not ASCII letters or digits separates words, and a
vocabulary item (an occupation form or a gender word, one or more words) is found wherever
its words occur in a row; first names are capitalised words ([A-Z][a-z]+ between regex word
boundaries) looked up in gender-guesser's table, as `biasamp.corpus.names.CapitalisedNames`
finds them. It handles captions whose bytes are all ASCII, where those rules are exactly
`normalise` and the name regex; a caption with any other byte is returned to the caller,
which sends it through the Polars stage. Tests compare the two on generated captions.

The extension is built when the package is installed (`pip install -e .`, a C compiler
needed; DEVELOPERS.md); where it could not be built, `available()` is False and the
previous paths are used (Polars, the `hyperscan` package, `mmh3`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

try:
    from biasamp.corpus import _scan
except ImportError:  # not built (no C compiler at install time): the Polars path is used
    _scan = None

SEP, WORD, APOS, OTHER = 0, 1, 2, 3
#: The most distinct first names one caption may hold for the kernel (more: the Polars stage).
MAX_NAMES_PER_CAPTION = 256
INDICATORS = ("none", "male", "female", "both")


def available() -> bool:
    """Is the native extension built and importable here?"""
    return _scan is not None


def libhs_available() -> bool:
    """Was the extension built with the Hyperscan library, and can it run on this CPU?"""
    return _scan is not None and bool(getattr(_scan, "HAVE_HS", 0))


class NativeHyperscan:
    """The prefilter's scan in the extension (Hyperscan's C library): the same patterns and
    the same decisions as `Prefilter`'s scan through the `hyperscan` package, but the match
    offsets are collected in C, without a Python call per match, and without the interpreter
    lock. Captions of 12 bytes or less (inside their string views) are scanned one by one."""

    def __init__(self, patterns: list[bytes]):
        self.patterns = list(patterns)
        self._db = _scan.hs_compile(self.patterns, _scan.HS_FLAG_CASELESS)

    def __getstate__(self):
        return {"patterns": self.patterns}

    def __setstate__(self, state):
        self.__init__(state["patterns"])

    def rows(self, arr: pa.Array, max_bytes: int = 2**32 - 1) -> np.ndarray | None:
        """Sorted candidate rows of a string column (None: a column it cannot address, or
        a data buffer over `max_bytes`, more than one Hyperscan call may scan)."""
        v = _views(arr)
        if v is None:
            return None
        views, inline, data, addresses, sizes = v
        if sizes.max() > max_bytes:
            return None
        valid = np.asarray(arr.is_valid()).view(np.uint8) if arr.null_count else np.zeros(0, np.uint8)
        out = _scan.hs_rows(self._db, views, inline, addresses, sizes, valid)
        del data
        return _as_array(out, np.int64)


def char_classes() -> tuple[np.ndarray, np.ndarray]:
    """Per byte: its class (SEP, WORD, APOS, OTHER = non-ASCII) and its lower-case form."""
    cls = np.zeros(256, np.uint8)
    low = np.arange(256, dtype=np.uint8)
    for c in range(256):
        ch = chr(c)
        if c >= 0x80:
            cls[c] = OTHER
        elif ch.isalnum():
            cls[c] = WORD
            low[c] = ord(ch.lower())
        elif ch in "'`":
            cls[c] = APOS
    return cls, low


def _offsets_and_data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets relative to the data, data bytes) of a string or binary array (not views)."""
    t = arr.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        raise TypeError(f"expected a string column with offsets, got {t}")
    odt = np.int64 if (pa.types.is_large_string(t) or pa.types.is_large_binary(t)) else np.int32
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=odt, count=arr.offset + len(arr) + 1)[arr.offset:].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(1, np.uint8)
    return offs, data


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _as_array(b: bytes, dtype) -> np.ndarray:
    return np.frombuffer(b, dtype=dtype)


def _hash_table(keys: pa.Array):
    """An open-addressing table of the strings `keys` (FNV-1a; a key's id is its position):
    (hashes, ids, bytes, offsets, mask)."""
    keys = _large(keys)
    koff, data = _offsets_and_data(keys)
    start = int(koff[0])
    kbytes = np.ascontiguousarray(data[start : int(koff[-1])]) if len(keys) else np.zeros(1, np.uint8)
    koff = np.ascontiguousarray(koff - start)
    size = 16
    while size < 4 * len(keys):
        size *= 2
    hashes, ids = _scan.fill_table(kbytes, koff, size)
    return _as_array(hashes, np.uint64), _as_array(ids, np.int32), kbytes, koff, size - 1


def _arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A numpy array as an Arrow array without a copy (`pa.array` would import pandas)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def _strings(values: list[str]) -> pa.Array:
    return pl.Series(values, dtype=pl.Utf8).to_arrow(compat_level=pl.CompatLevel.oldest())


class _ArrayCapsule:
    """An Arrow array seen only through the Arrow PyCapsule interface: Polars then imports it
    directly (given a pyarrow array, it imports pyarrow.compute first: about a tenth of a
    second, once per process)."""

    def __init__(self, arr):
        self.arr = arr

    def __arrow_c_array__(self, requested_schema=None):
        return self.arr.__arrow_c_array__(requested_schema)


def polars_series(arr: pa.Array) -> pl.Series:
    """An Arrow array as a Polars Series (see `_ArrayCapsule`)."""
    return pl.Series(_ArrayCapsule(arr))


def _large(arr: pa.Array) -> pa.Array:
    """A string column as large_string (through Polars: `Array.cast` would import
    pyarrow.compute, a tenth of a second)."""
    if pa.types.is_large_string(arr.type):
        return arr
    if not _is_text(arr.type):
        raise TypeError(f"expected a string column, got {arr.type}")
    out = polars_series(arr).to_arrow(compat_level=pl.CompatLevel.oldest())
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _views(arr: pa.Array) -> tuple[np.ndarray, bool, list, np.ndarray, np.ndarray] | None:
    """(int32 views (n, 4), inline, data buffers, their addresses, their sizes) of a string
    column (the caller keeps the buffers alive while the kernels read them): Arrow
    string views as they are; string / large_string as (length, 0, 0, offset) rows over one
    buffer (None if that buffer is 2 GiB or more: views hold 32-bit offsets)."""
    if pa.types.is_string_view(arr.type):
        bufs = arr.buffers()
        views = np.frombuffer(bufs[1], dtype=np.int32, count=4 * (arr.offset + len(arr))).reshape(-1, 4)[arr.offset:]
        data = list(bufs[2:])
        inline = True
    else:
        if not pa.types.is_large_string(arr.type):
            arr = _large(arr)
        offs, _ = _offsets_and_data(arr)
        if len(offs) and offs[-1] >= 2**31:
            return None
        views = np.zeros((len(arr), 4), np.int32)
        views[:, 0] = np.diff(offs)
        views[:, 3] = offs[:-1]
        data = [arr.buffers()[2]]
        inline = False
    addresses = np.array([b.address if b is not None else 0 for b in data] or [0], np.int64)
    sizes = np.array([b.size if b is not None else 0 for b in data] or [0], np.int64)
    return np.ascontiguousarray(views), inline, data, addresses, sizes


def laion_ids(urls: pa.Array, texts: pa.Array) -> np.ndarray:
    """`mmh3.hash64(url + text)[0]` per row of two non-null string columns (any Arrow string
    type), as int64."""
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(urls) != len(texts):
        raise ValueError(f"{len(urls)} urls for {len(texts)} captions")
    if urls.null_count or texts.null_count:
        raise ValueError("caption ids from url + text need both, in every row")
    u, t = _large(urls), _large(texts)
    uo, ud = _offsets_and_data(u)
    to, td = _offsets_and_data(t)
    return _as_array(_scan.hash_pairs(uo, ud, to, td), np.int64)


def rows_with_ends(arr: pa.Array, base: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a string-view column: (rows whose bytes hold the last byte of a match, rows whose
    caption lives inside its view, not decided here). `pos`: sorted last-byte positions, in
    one coordinate over the data buffers (buffer i starts at base[i])."""
    views = _views(arr)[0]
    valid = np.asarray(arr.is_valid()).view(np.uint8) if arr.null_count else np.zeros(0, np.uint8)
    found, short = _scan.rows_with_ends(views, True, np.ascontiguousarray(base, np.int64),
                                        np.ascontiguousarray(pos, np.int64), valid)
    return _as_array(found, np.int64), _as_array(short, np.int64)


class ExactKernel:
    """The exact stage for ASCII captions, compiled (see module doc).

    Built from the matcher's vocabulary: `items` (every occupation form and gender word,
    normalised, sorted), `form_occupations` ((form, occupation) pairs), `term_genders`
    ((word, 'male'|'female') pairs) and optionally first names (a Polars frame with columns
    name and name_gender, matched as capitalised words, as
    `biasamp.corpus.names.CapitalisedNames` does)."""

    def __init__(self, items: list[str], form_occupations: list[tuple[str, str]], term_genders: list[tuple[str, str]],
                 names=None):
        if items != sorted(set(items)):
            raise ValueError("items must be sorted and distinct")
        words = sorted({w for it in items for w in it.split()})
        for w in words:
            if not w.isascii() or not w.isalnum() or w != w.lower():
                raise ValueError(f"vocabulary word {w!r} is not lower-case ASCII letters and digits")
        wid = {w: i for i, w in enumerate(words)}
        self.items = items
        self.V = _hash_table(_strings(words))
        self.maxw = max((len(w) for w in words), default=1)
        self.minw = min((len(w) for w in words), default=1)
        self.bigram = np.zeros(65536, np.uint8)  # the first two letters of some word (the second 0 if it has one)
        for w in words:
            b = w.encode()
            self.bigram[(b[0] << 8) | (b[1] if len(b) > 1 else 0)] = 1
        edges: dict[tuple[int, int], int] = {}  # a trie over word ids: (state, word) -> state; 0 is the root
        term = [-1]
        for k, it in enumerate(items):
            s = 0
            for w in it.split():
                t = edges.get((s, wid[w]))
                if t is None:
                    t = edges[(s, wid[w])] = len(term)
                    term.append(-1)
                s = t
            term[s] = k
        self.n_words = max(1, len(words))
        keys = np.array([s * self.n_words + w for s, w in edges] or [0], np.int64)[: len(edges)]
        vals = np.array(list(edges.values()) or [0], np.int32)[: len(edges)]
        size = 16
        while size < 2 * len(edges):
            size *= 2
        table_keys, table_vals = _scan.fill_edges(np.ascontiguousarray(keys), np.ascontiguousarray(vals), size)
        self.edges = (_as_array(table_keys, np.int64), _as_array(table_vals, np.int32), size - 1)
        self.term = np.array(term, np.int32)
        self.maxlen = max((len(it.split()) for it in items), default=1)
        index = {it: i for i, it in enumerate(items)}
        self.occupations = sorted({o for _, o in form_occupations})
        occ_id = {o: i for i, o in enumerate(self.occupations)}
        by_form: dict[int, list[int]] = {}
        for f, o in form_occupations:
            by_form.setdefault(index[f], []).append(occ_id[o])
        self.is_form = np.array([i in by_form for i in range(len(items))], np.bool_)
        self.form_occ_off = np.zeros(len(items) + 1, np.int64)
        self.form_occ_off[1:] = np.cumsum([len(set(by_form.get(i, []))) for i in range(len(items))])
        self.form_occ = np.array([o for i in range(len(items)) for o in sorted(set(by_form.get(i, [])))], np.int32)
        self.term_sex = np.zeros(len(items), np.uint8)
        for t, g in term_genders:
            self.term_sex[index[t]] |= 1 if g == "male" else 2
        self.find_names = names is not None
        if names is not None:  # names: a Polars frame (name, name_gender); the ASCII ones (no other can occur in an ASCII caption)
            usable = names.filter(pl.col("name").str.contains(r"^[\x00-\x7f]*$"))
            self.names = usable["name"]
            self.name_sex = usable["name_gender"].replace_strict({"male": 1, "female": 2}, return_dtype=pl.UInt8).to_numpy()
            names_arrow = self.names.to_arrow(compat_level=pl.CompatLevel.oldest())
        else:
            self.names = None
            self.name_sex = np.zeros(1, np.uint8)
            names_arrow = _strings([])
        self.N = _hash_table(names_arrow)
        self.cls, self.low = char_classes()
        self._items = pl.Series(items, dtype=pl.Utf8)
        self._occupations = pl.Series(self.occupations, dtype=pl.Utf8)
        self._indicators = pl.Series(INDICATORS, dtype=pl.Utf8)

    def _run(self, arr: pa.Array, rows: np.ndarray):
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if arr.null_count:
            rows = rows[np.asarray(arr.is_valid())[rows]]
        v = _views(arr)
        if v is None:  # a column the kernel cannot address: the Polars stage takes it all
            return None, rows
        views, inline, data, addresses, sizes = v
        tables = (self.cls, self.low, *self.V[:4], *self.N[:4], *self.edges[:2], self.term, self.is_form.view(np.uint8),
                  self.term_sex, self.form_occ_off, self.form_occ, self.name_sex, self.bigram)
        params = (self.V[4], self.N[4], self.edges[2], self.n_words, self.find_names, self.minw, self.maxw, self.maxlen,
                  len(self.items), MAX_NAMES_PER_CAPTION)
        out = _scan.match(views, inline, addresses, sizes, rows, tables, params)
        del data  # the buffers the kernel read, kept alive until here
        dtypes = (np.int64, np.int32, np.int8, np.int64, np.int32, np.int64, np.int32, np.int64, np.int32, np.int64)
        out = [_as_array(b, d) for b, d in zip(out, dtypes)]
        return out[:-1], out[-1]

    def match(self, arr: pa.Array, rows: np.ndarray | None = None):
        """The exact stage over captions `rows` of `arr` (default: all): a Polars frame with
        columns row (position in `arr`), occupation, forms, indicator_terms,
        indicator_names (when names are looked for), indicator, ordered by row and
        occupation; and the rows it leaves to the Polars stage (not ASCII). Null captions
        are skipped. (None, rows) for a column the kernel cannot address."""
        if rows is None:
            rows = np.arange(len(arr), dtype=np.int64)
        res, other = self._run(arr, rows)
        if res is None:
            return None, other
        o_row, o_occ, o_ind, f_off, f_val, t_off, t_val, m_off, m_val = res

        def lists(off, val, values: pl.Series) -> pl.Series:
            # Polars gathers the strings (Arrow's `take` would import pyarrow.compute)
            taken = values.gather(pl.Series(val)).to_arrow(compat_level=pl.CompatLevel.oldest())
            return polars_series(pa.LargeListArray.from_arrays(_arrow(off, pa.int64()), taken))

        cols = {
            "row": pl.Series(o_row),
            "occupation": self._occupations.gather(pl.Series(o_occ)),
            "forms": lists(f_off, f_val, self._items),
            "indicator_terms": lists(t_off, t_val, self._items),
        }
        if self.find_names:
            cols["indicator_names"] = lists(m_off, m_val, self.names)
        cols["indicator"] = self._indicators.gather(pl.Series(o_ind))
        return pl.DataFrame(cols), other


