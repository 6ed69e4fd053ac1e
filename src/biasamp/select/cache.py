"""An on-disk embedding cache keyed by (model, text), so a re-run embeds nothing twice.

Layout: `<cache_dir>/<sha1(model key)[:16]>/` holds `model.json` (the model key) and shard
pairs `part-<stamp>.npy` (float32 vectors) + `part-<stamp>.keys.parquet` (column `key`:
the 20-byte sha1 of model key + NUL + text, row-aligned with the vectors). A shard is
committed by writing the vectors, then the keys file, each atomically (temporary name,
then rename): the keys file is the commit marker, so a killed run leaves no half shard
and the next run embeds only what is missing. Vectors are memory-mapped on read.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.store import atomic_path, atomic_write_parquet, atomic_write_text


def text_key(model_key: str, text: str) -> bytes:
    return hashlib.sha1(f"{model_key}\x00{text}".encode("utf-8", "surrogatepass")).digest()


def gather_rows(arrays: Sequence[np.ndarray], hits: pl.DataFrame, out: np.ndarray, found: np.ndarray) -> None:
    """out[pos] = arrays[shard][row] for each hit (columns pos, shard, row); marks found.

    Runs where both the positions and the stored rows advance by one are copied as slices
    (sequential reads of memory-mapped files); scattered rows are gathered in row order."""
    hits = hits.sort("shard", "row")
    for (si,), part in hits.group_by("shard", maintain_order=True):
        pos = part["pos"].to_numpy()
        rows = part["row"].to_numpy()
        found[pos] = True
        arr = arrays[si]
        brk = np.flatnonzero((np.diff(pos) != 1) | (np.diff(rows) != 1)) + 1
        if len(brk) < max(1, len(pos) // 64):
            for a, b in zip(np.r_[0, brk], np.r_[brk, len(pos)]):
                out[pos[a] : pos[a] + (b - a)] = arr[rows[a] : rows[a] + (b - a)]
        else:
            out[pos] = arr[rows]


def unique_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
    """Distinct texts in first-seen order and, when there were repeats, each input's index
    into them (None when every text is distinct)."""
    s = pl.Series("text", list(texts), dtype=pl.Utf8)
    if s.n_unique() == len(s):
        return s.to_list(), None
    uniq = s.unique(maintain_order=True)
    inverse = (
        s.to_frame().join(uniq.to_frame().with_row_index("u"), on="text", how="left", maintain_order="left")["u"]
    )
    return uniq.to_list(), inverse.to_numpy().astype(np.int64)


class EmbeddingCache:
    """Vectors for one model, stored as committed shards under `root`."""

    def __init__(self, root: str | Path, model_key: str):
        self.model_key = model_key
        self.folder = Path(root) / hashlib.sha1(model_key.encode()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "model.json"
        if not meta.exists():
            atomic_write_text(json.dumps({"model": model_key}) + "\n", meta)
        self._arrays: list[np.ndarray] = []
        self._frames: list[pl.DataFrame] = []  # per shard: key, shard, row
        self._index: pl.DataFrame | None = None
        self._loaded: set[str] = set()
        self.dim: int | None = None
        self.refresh()

    def refresh(self) -> None:
        """Pick up shards committed since the last look (by this or another process)."""
        for keys_file in sorted(self.folder.glob("part-*.keys.parquet")):
            stem = keys_file.name[: -len(".keys.parquet")]
            if stem in self._loaded:
                continue
            npy = self.folder / f"{stem}.npy"
            if not npy.exists():
                continue
            try:
                arr = np.load(npy, mmap_mode="r")
                keys = pl.read_parquet(keys_file, columns=["key"])["key"]
            except Exception as e:
                raise BiasampError(
                    f"embedding cache shard {keys_file} is unreadable: {type(e).__name__}: {e}",
                    hint=f"delete {keys_file} and {npy}; the next run re-embeds those texts",
                ) from None
            if arr.ndim != 2 or arr.shape[0] != len(keys):
                raise BiasampError(
                    f"embedding cache shard {npy} does not match {keys_file} ({arr.shape} vs {len(keys)} keys)",
                    hint="delete both files; the next run re-embeds those texts",
                )
            if self.dim is None:
                self.dim = arr.shape[1]
            elif arr.shape[1] != self.dim:
                raise BiasampError(f"embedding cache shard {npy} has {arr.shape[1]}-d vectors, others {self.dim}-d")
            si = len(self._arrays)
            self._arrays.append(arr)
            self._frames.append(pl.DataFrame({"key": pl.Series(keys, dtype=pl.Binary),
                                              "shard": pl.Series(np.full(len(keys), si, np.int32)),
                                              "row": pl.Series(np.arange(len(keys), dtype=np.int64))}))
            self._index = None
            self._loaded.add(stem)

    def index(self) -> pl.DataFrame:
        """key → (shard, row); the first shard holding a key wins."""
        if self._index is None:
            frames = self._frames or [pl.DataFrame(schema={"key": pl.Binary, "shard": pl.Int32, "row": pl.Int64})]
            self._index = pl.concat(frames).unique(subset="key", keep="first", maintain_order=True)
        return self._index

    def __len__(self) -> int:
        return len(self.index())

    def get(self, keys: Sequence[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors) for `keys`; rows not found are zero."""
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        if not self._frames or not len(keys):
            return found, out
        if self.dim is not None and self.dim != dim:
            raise BiasampError(f"embedding cache {self.folder} holds {self.dim}-d vectors, the model gives {dim}-d")
        want = pl.DataFrame({"key": pl.Series(list(keys), dtype=pl.Binary), "pos": np.arange(len(keys), dtype=np.int64)})
        hits = want.join(self.index(), on="key", how="inner")
        gather_rows(self._arrays, hits, out, found)
        return found, out

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path | None:
        """Commit one shard (vectors first, then the keys file that marks it done)."""
        if len(keys) == 0:
            return None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        stem = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        npy = self.folder / f"{stem}.npy"
        with atomic_path(npy) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, vectors)
        keys_file = self.folder / f"{stem}.keys.parquet"
        atomic_write_parquet(pl.DataFrame({"key": pl.Series(list(keys), dtype=pl.Binary)}), keys_file)
        self.refresh()
        return keys_file


@dataclass
class EmbedStats:
    texts: int = 0  # texts asked for (with repeats)
    unique: int = 0  # distinct texts
    cached: int = 0  # distinct texts found in the cache
    embedded: int = 0  # distinct texts sent to the model
    model_calls: int = 0  # calls of the wrapped embedder's encode


class CachedEmbedder:
    """Wraps an embedder: repeats are embedded once, cached texts never again.

    Missing texts are embedded in chunks of `chunk_size` (in request order); each chunk is
    committed to the cache as it finishes, so an interrupted run resumes where it stopped. Without a cache folder it still removes repeats.
    """

    cacheable = False

    def __init__(self, embedder, cache_dir: str | Path | None = None, *, chunk_size: int = 8192, progress=None):
        self.embedder = embedder
        self.key = embedder.key
        self.dim = embedder.dim
        self.chunk_size = chunk_size
        self.cache = EmbeddingCache(cache_dir, embedder.key) if cache_dir is not None and embedder.cacheable else None
        self.stats = EmbedStats()
        self.progress = progress

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.stats.texts += len(texts)
        utexts, inverse = unique_texts(texts)
        self.stats.unique += len(utexts)
        if self.cache is not None:
            keys = [text_key(self.key, t) for t in utexts]
            found, vecs = self.cache.get(keys, self.dim)
        else:
            keys = None
            found = np.zeros(len(utexts), dtype=bool)
            vecs = np.zeros((len(utexts), self.dim), dtype=np.float32)
        self.stats.cached += int(found.sum())
        if self.progress is not None and found.any():
            self.progress(int(found.sum()))
        todo = np.flatnonzero(~found)
        if len(todo):
            # chunks keep the request order (the model sorts by length inside a call), so a
            # later run asking for the same texts reads the cache sequentially
            for s in range(0, len(todo), self.chunk_size):
                idx = todo[s : s + self.chunk_size]
                v = self.embedder.encode([utexts[i] for i in idx])
                self.stats.model_calls += 1
                self.stats.embedded += len(idx)
                vecs[idx] = v
                if self.cache is not None:
                    self.cache.put([keys[i] for i in idx], v)
                if self.progress is not None:
                    self.progress(len(idx))
        return vecs if inverse is None else vecs[inverse]
