"""Vector search against a NumPy reference, approximate recall, pooled top-k."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.errors import BiasampError
from biasamp.select import pooled_topk
from biasamp.select.search import ApproxIndex, exact_topk, knn, recall_at_k


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_topk(q, b, k):
    s = q @ b.T
    order = np.lexsort((np.broadcast_to(np.arange(b.shape[0]), s.shape), -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, 1), order


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 40), chunk=st.integers(16, 128), seed=st.integers(0, 1000))
def test_exact_matches_numpy_reference_across_chunks(n, k, chunk, seed):
    rng = np.random.default_rng(seed)
    b = unit(rng, n, 16)
    q = unit(rng, 3, 16)
    rs, ri = reference_topk(q, b, k)
    for engine in ("blas", "faiss"):
        s, i = exact_topk(q, b, k, chunk_rows=chunk, device="cpu", engine=engine)
        assert i.shape == (3, min(k, n))
        np.testing.assert_allclose(s, rs, atol=1e-5)
        # same neighbours up to float ties
        assert all(set(a) == set(r) or np.allclose(np.sort(sa), np.sort(sr), atol=1e-5) for a, r, sa, sr in zip(i, ri, s, rs))


def test_ties_are_broken_by_lower_id():
    b = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    for index in ("exact", "flat"):
        s, i = knn(np.array([[1, 0]], dtype=np.float32), b, 3, index=index, chunk_rows=2)
        assert i[0].tolist() == [0, 2, 3]


def test_k_larger_than_base_and_empty():
    rng = np.random.default_rng(0)
    b = unit(rng, 4, 8)
    s, i = knn(b[:2], b, 10)
    assert i.shape == (2, 4) and i[0, 0] == 0 and i[1, 0] == 1
    s, i = knn(b[:2], b[:0], 10)
    assert i.shape == (2, 0)
    with pytest.raises(BiasampError, match="unknown index"):
        knn(b, b, 1, index="lsh")


def clustered(rng, n, d=64, centres=64, spread=0.35):
    c = unit(rng, centres, d)
    x = c[rng.integers(0, centres, n)] + spread * rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivf_recall_at_10_against_exact():
    """Recall@10 of IVF vs exact search on clustered unit vectors (10k × 64-d, 300 clusters):
    at the default nprobe, and exhaustive when every list is probed."""
    rng = np.random.default_rng(1)
    base = clustered(rng, 10_000, centres=300, spread=0.6)
    queries = clustered(rng, 100, centres=300, spread=0.6)
    _, exact = exact_topk(queries, base, 10)
    idx = ApproxIndex(base, "ivf")
    assert idx.nlist == 100 and idx.nprobe == 32
    assert recall_at_k(idx.search(queries, 10)[1], exact) >= 0.9
    full = ApproxIndex(base, "ivf", nprobe=idx.nlist)
    assert recall_at_k(full.search(queries, 10)[1], exact) == 1.0
    few = ApproxIndex(base, "ivf", nprobe=2)
    assert recall_at_k(few.search(queries, 10)[1], exact) < recall_at_k(idx.search(queries, 10)[1], exact)


def test_hnsw_recall_at_10_against_exact():
    rng = np.random.default_rng(3)
    base = clustered(rng, 3_000, centres=100, spread=0.6)
    queries = clustered(rng, 50, centres=100, spread=0.6)
    _, exact = exact_topk(queries, base, 10)
    assert recall_at_k(ApproxIndex(base, "hnsw").search(queries, 10)[1], exact) >= 0.95


def test_auto_switches_to_approximate_above_threshold():
    rng = np.random.default_rng(2)
    base = clustered(rng, 3000)
    q = base[:5]
    s, i = knn(q, base, 5, index="auto", approx_threshold=100)
    assert (i[:, 0] == np.arange(5)).all()  # each query finds itself even approximately
    s2, i2 = knn(q, base, 5, index="auto", approx_threshold=10_000)
    np.testing.assert_array_equal(i2, exact_topk(q, base, 5)[1])


@pytest.mark.parametrize("pool_by", ["mean", "max"])
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(1, 30), t=st.integers(1, 5), seed=st.integers(0, 999))
def test_pooled_topk_matches_brute_force(pool_by, n, k, t, seed):
    rng = np.random.default_rng(seed)
    base = unit(rng, n, 12)
    queries = unit(rng, t, 12)
    s, i = pooled_topk(queries, base, k, pool_by)
    sims = base @ queries.T
    ref = sims.mean(1) if pool_by == "mean" else sims.max(1)
    order = np.lexsort((np.arange(n), -ref))[: min(k, n)]
    np.testing.assert_allclose(s, ref[order], atol=1e-5)
    np.testing.assert_allclose(ref[i], ref[order], atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=20))
def test_row_gather_view_only_for_consecutive_runs(ids):
    from biasamp.select.core import _rows

    vecs = np.arange(31 * 2, dtype=np.float32).reshape(31, 2)
    np.testing.assert_array_equal(_rows(vecs, np.array(ids, dtype=np.int64)), vecs[np.array(ids, dtype=np.int64)].reshape(-1, 2))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "", "é"]), max_size=30))
def test_unique_texts_inverse(texts):
    from biasamp.select.cache import unique_texts

    uniq, inverse = unique_texts(texts)
    assert uniq == list(dict.fromkeys(texts))
    back = texts if inverse is None else [uniq[i] for i in inverse]
    assert back == texts
