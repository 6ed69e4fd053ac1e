"""Top-k search by cosine similarity (inner product of unit vectors) with FAISS.

- `exact` (default): brute force over the candidate vectors in chunks (bounded memory;
  works on memory-mapped arrays), partial results merged. Exact. Under 20 queries it runs
  FAISS's brute-force kernel (`faiss.knn`, what `IndexFlatIP` runs); from 20 queries one
  BLAS matrix product per chunk and a partial sort, measured ~1.8× faster than FAISS's
  kernel for 310 queries on the project's 2-core machines (benchmarks/bench_select.py).
- `flat`: always FAISS's brute-force kernel. Exact; the benchmark's baseline.
- `ivf`: an inverted-file index (`IndexIVFFlat`, inner product); `nlist` ≈ √n lists,
  `nprobe` lists searched (default max(32, nlist/8)). Approximate: recall@k is measured in tests/select and in
  benchmarks/bench_select.py (see docs/select.md).
- `hnsw`: a graph index (`IndexHNSWFlat`, M=32); `ef_search` controls recall.
- `auto`: exact up to `approx_threshold` candidates, IVF above. The selection stage asks
  few queries (occupations × templates) per candidate set, so exact search is usually
  the fastest as well as the correct choice; an index pays off when it is reused.

GPU: when FAISS was built with GPU support and sees a GPU (and `device` is not "cpu"),
exact search runs with `faiss.knn_gpu` and IVF indexes are moved to the GPU; otherwise
the CPU kernels run.
Ties are broken by the lower candidate id so results are deterministic.
"""

from __future__ import annotations

import math

import numpy as np

from biasamp.errors import BiasampError

INDEXES = ("exact", "flat", "ivf", "hnsw", "auto")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise BiasampError("vector search needs faiss", hint="pip install faiss-cpu (or faiss-gpu)") from None
    return faiss


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_available() -> bool:
    """True when the installed FAISS has GPU support and sees a GPU."""
    try:
        import faiss

        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


_GPU_RES = None


def _gpu_resources():
    global _GPU_RES
    if _GPU_RES is None:
        _GPU_RES = _faiss().StandardGpuResources()
    return _GPU_RES


def _use_gpu(device: str) -> bool:
    """GPU search unless device is 'cpu'; falls back to CPU when FAISS has no GPU support
    (e.g. faiss-cpu beside a CUDA torch)."""
    return device != "cpu" and gpu_available()


def _sort_ties(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending, then id ascending (-1 padding last)."""
    big = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    s = np.where(ids < 0, -np.inf, scores)
    order = np.lexsort((big, -s), axis=-1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


#: below this many queries FAISS's SIMD brute force beats one BLAS product (FAISS switches
#: to BLAS itself at 20: `distance_compute_blas_threshold`)
FAISS_BELOW_QUERIES = 20


def exact_topk(queries: np.ndarray, base: np.ndarray, k: int, *, chunk_rows: int = 262_144, device: str = "auto",
               engine: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products; returns (scores [q, k'], ids [q, k']) with k' = min(k, n).

    engine "faiss": FAISS's brute-force kernel (`faiss.knn`, what `IndexFlatIP` runs);
    engine "blas": one matrix product per chunk (NumPy/BLAS) and a partial sort;
    engine "auto": faiss for fewer than 20 queries (a nearest search per occupation),
    blas for more (the global search), each the faster one where measured.
    On a GPU that FAISS can use, `faiss.knn_gpu` runs instead.
    """
    if engine == "auto":
        engine = "faiss" if len(queries) < FAISS_BELOW_QUERIES and _has_faiss() else "blas"
    q = _as_f32(queries)
    n = base.shape[0]
    k = min(k, n)
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    gpu = _use_gpu(device)
    faiss = _faiss() if gpu or engine == "faiss" else None
    # keep the similarity block near 64 MB whatever the number of queries
    step = max(k, min(chunk_rows, (16 * 1024 * 1024) // max(1, len(q)))) if engine == "blas" and not gpu else chunk_rows
    best_s = best_i = None
    for start in range(0, n, step):
        block = _as_f32(base[start : start + step])
        kk = min(k, len(block))
        if gpu:
            s, i = faiss.knn_gpu(_gpu_resources(), q, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
        elif engine == "faiss":
            s, i = faiss.knn(q, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            sims = q @ block.T  # (queries, rows): each query's partial sort reads one contiguous row
            if kk < len(block):
                i = np.argpartition(sims, len(block) - kk, axis=1)[:, len(block) - kk :]
            else:
                i = np.broadcast_to(np.arange(len(block)), sims.shape)
            s = np.take_along_axis(sims, i, 1)
        i = i.astype(np.int64) + start
        if best_s is None:
            best_s, best_i = s, i
        else:
            cs = np.concatenate([best_s, s], 1)
            ci = np.concatenate([best_i, i], 1)
            part = np.argpartition(-cs, k - 1, axis=1)[:, :k] if cs.shape[1] > k else np.argsort(-cs, 1)
            best_s = np.take_along_axis(cs, part, 1)
            best_i = np.take_along_axis(ci, part, 1)
    return _sort_ties(best_s, best_i)


class ApproxIndex:
    """An approximate inner-product index over unit vectors (IVF or HNSW)."""

    def __init__(self, base: np.ndarray, kind: str = "ivf", *, nlist: int | None = None, nprobe: int | None = None,
                 hnsw_m: int = 32, ef_search: int | None = None, seed: int = 0, device: str = "auto"):
        faiss = _faiss()
        x = _as_f32(base)
        n, d = x.shape
        self.kind = kind
        self.n = n
        if kind == "ivf":
            self.nlist = nlist or max(1, min(65_536, int(math.sqrt(n))))
            self.nlist = min(self.nlist, n)
            quant = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quant, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            train = x if n <= 64 * self.nlist else x[np.sort(rng.choice(n, 64 * self.nlist, replace=False))]
            index.cp.seed = seed
            index.train(train)
            index.add(x)
            self.nprobe = min(self.nlist, nprobe or max(32, self.nlist // 8))
            index.nprobe = self.nprobe
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.add(x)
            self.ef_search = ef_search or 128
            index.hnsw.efSearch = self.ef_search
        else:
            raise BiasampError(f"unknown approximate index {kind!r}", hint="use ivf or hnsw")
        if kind == "ivf" and _use_gpu(device):
            index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        s, i = self.index.search(_as_f32(queries), k)
        return _sort_ties(s, i.astype(np.int64))


def knn(queries: np.ndarray, base: np.ndarray, k: int, *, index: str = "exact", approx_threshold: int = 5_000_000,
        nprobe: int | None = None, ef_search: int | None = None, device: str = "auto", chunk_rows: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """Top-k candidates (by inner product) of `base` for each query row.

    Returns (scores, ids), each [n_queries, min(k, n_base)]; ids index rows of `base`;
    an approximate index may return fewer hits (id -1, score -inf) when it finds fewer.
    """
    if index not in INDEXES:
        raise BiasampError(f"unknown index {index!r}", hint=f"use one of {', '.join(INDEXES)}")
    if index == "auto":
        index = "exact" if base.shape[0] <= approx_threshold else "ivf"
    if index in ("exact", "flat"):
        return exact_topk(queries, base, k, chunk_rows=chunk_rows, device=device, engine="faiss" if index == "flat" else "auto")
    idx = ApproxIndex(base, index, nprobe=nprobe, ef_search=ef_search, device=device)
    s, i = idx.search(queries, k)
    s = np.where(i < 0, -np.inf, s).astype(np.float32)
    return s, i


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean share of the exact top-k found by the approximate search."""
    if exact_ids.size == 0:
        return 1.0
    hits = [len(set(a[a >= 0].tolist()) & set(e.tolist())) / len(e) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits))
