"""Embedders through their real loading code: MiniLM (offline package), a tiny CLIP built
from a config, precomputed LAION-style shards; the batch function; the embedding cache."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from biasamp.errors import BiasampError
from biasamp.select.cache import CachedEmbedder, EmbeddingCache, text_key
from biasamp.select.embedders import EMBEDDERS, EmbedBatch, PrecomputedEmbedder, embed_batch, embed_to_shards, make_embedder, save_precomputed

TEXTS = ["A photo of the face of an engineer", "nurse in scrubs at the hospital ward", "wedding singer hire london"]


def test_registry_names():
    assert {"minilm", "sentence-transformers", "clip-text", "precomputed"} <= set(EMBEDDERS.names())
    with pytest.raises(BiasampError, match="unknown embedder 'word2vec'"):
        make_embedder("word2vec")


def test_minilm_matches_bare_model_and_is_normalised(minilm):
    v = minilm.encode(TEXTS)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    bare = minilm.model.encode(TEXTS)
    bare = bare / np.linalg.norm(bare, axis=1, keepdims=True)
    np.testing.assert_allclose(v, bare, atol=1e-5)
    assert minilm.key.startswith("sentence-transformers:") and "@" in minilm.key  # offline folder + fingerprint
    assert minilm.encode([]).shape == (0, 384)


def test_clip_text_matches_clipmodel_text_features(tiny_clip):
    import torch

    path, model, tok = tiny_clip
    e = make_embedder("clip-text", str(path), device="cpu", batch_size=2)
    assert e.dim == 16
    v = e.encode(TEXTS)
    enc = tok(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        ref = model.get_text_features(**enc)
    ref = (ref if isinstance(ref, torch.Tensor) else ref.pooler_output).numpy()
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(v, ref, atol=1e-5)
    assert not np.allclose(v[0], v[1])
    # a caption longer than CLIP's 77 tokens is truncated, not an error
    assert e.encode(["word " * 200]).shape == (1, 16)


def test_clip_text_bad_folder_is_clear(tmp_path):
    with pytest.raises(BiasampError, match="cannot load CLIP model"):
        make_embedder("clip-text", str(tmp_path))


def laion_layout(root, texts, vecs, rows_per_shard=2):
    (root / "text_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    for s, i in enumerate(range(0, len(texts), rows_per_shard)):
        np.save(root / "text_emb" / f"text_emb_{s}.npy", vecs[i : i + rows_per_shard].astype(np.float16))
        pl.DataFrame({"caption": texts[i : i + rows_per_shard], "url": [f"u{j}" for j in range(i, i + len(texts[i : i + rows_per_shard]))]}).write_parquet(root / "metadata" / f"metadata_{s}.parquet")


def test_precomputed_reads_laion_layout_memory_mapped(tmp_path, minilm):
    texts = TEXTS + ["Opera singer rehearsing Verdi", "politician giving a speech"]
    vecs = minilm.encode(texts)
    laion_layout(tmp_path, texts, vecs)
    e = make_embedder("precomputed", str(tmp_path))
    assert len(e) == 5 and e.dim == 384 and not e.cacheable
    assert isinstance(e._arrays[0], np.memmap)
    got = e.encode(list(reversed(texts)))
    np.testing.assert_allclose(got, vecs[::-1], atol=2e-3)  # stored as float16
    with pytest.raises(BiasampError, match="no stored vector"):
        e.encode(["A photo of the face of a singer"])
    e2 = PrecomputedEmbedder(str(tmp_path), query=minilm)
    q = e2.encode(["A photo of the face of a singer", texts[0]])
    np.testing.assert_allclose(q[0], minilm.encode(["A photo of the face of a singer"])[0], atol=1e-5)


def test_precomputed_misaligned_shards_are_refused(tmp_path):
    np.save(tmp_path / "emb_0.npy", np.ones((3, 4), np.float32))
    pl.DataFrame({"caption": ["a", "b"]}).write_parquet(tmp_path / "emb_0.parquet")
    with pytest.raises(BiasampError, match="holds 3 vectors but .* holds 2 rows"):
        make_embedder("precomputed", str(tmp_path))
    np.save(tmp_path / "emb_7.npy", np.ones((1, 4), np.float32))
    with pytest.raises(BiasampError, match="no matching metadata"):
        make_embedder("precomputed", str(tmp_path))


def test_embed_batch_is_a_pure_function_over_frames(minilm):
    import pyarrow as pa

    df = pl.DataFrame({"caption_id": [1, 2, 3], "text": TEXTS})
    out = embed_batch(df, minilm)
    assert out.columns == ["caption_id", "text", "vector"]
    v = np.stack(out["vector"].to_numpy())
    np.testing.assert_allclose(v, minilm.encode(TEXTS), atol=1e-6)
    arrow = embed_batch(df.to_arrow(), minilm)
    assert isinstance(arrow, pa.Table) and arrow.num_rows == 3
    pdf = embed_batch(df.to_pandas(), minilm)
    assert list(pdf.columns) == ["caption_id", "text", "vector"]
    mapper = EmbedBatch(minilm)  # what a Ray map_batches actor pool would construct once
    assert mapper(df)["vector"].shape == (3,)
    with pytest.raises(BiasampError, match="no column 'caption'"):
        embed_batch(df, minilm, text_column="caption")


def test_cache_second_run_calls_model_zero_times(tmp_path, minilm, counting):
    c1 = counting(minilm)
    e1 = CachedEmbedder(c1, tmp_path / "cache", chunk_size=2)
    v1 = e1.encode(TEXTS + TEXTS[:1])
    assert c1.texts == 3 and e1.stats.embedded == 3 and c1.calls == 2  # repeats once, chunks of 2
    c2 = counting(minilm)
    e2 = CachedEmbedder(c2, tmp_path / "cache")
    v2 = e2.encode(TEXTS)
    assert c2.calls == 0 and e2.stats.cached == 3
    np.testing.assert_array_equal(v1[:3], v2)
    np.testing.assert_allclose(v2, minilm.encode(TEXTS), atol=1e-5)
    # a new text: only that one is embedded
    e3 = CachedEmbedder(counting(minilm), tmp_path / "cache")
    e3.encode(TEXTS + ["a brand new caption"])
    assert e3.embedder.texts == 1


def test_cache_is_keyed_by_model(tmp_path, minilm, counting):
    CachedEmbedder(counting(minilm), tmp_path).encode(TEXTS)
    other = counting(minilm)
    other.key = "sentence-transformers:another-model"
    CachedEmbedder(other, tmp_path).encode(TEXTS)
    assert other.texts == 3
    assert text_key("m1", "x") != text_key("m2", "x") and text_key("m1", "x") == text_key("m1", "x")


def test_uncommitted_shard_is_ignored_and_reembedded(tmp_path, minilm, counting):
    e = CachedEmbedder(counting(minilm), tmp_path, chunk_size=1)
    e.encode(TEXTS)
    folder = e.cache.folder
    keys = sorted(folder.glob("part-*.keys.parquet"))
    assert len(keys) == 3
    keys[0].unlink()  # as if killed between writing the vectors and committing the keys
    c = counting(minilm)
    CachedEmbedder(c, tmp_path).encode(TEXTS)
    assert c.texts == 1
    (folder / "part-broken.npy").write_bytes(b"not numpy")
    (folder / "part-broken.keys.parquet").write_bytes(b"not parquet")
    with pytest.raises(BiasampError, match="unreadable"):
        EmbeddingCache(tmp_path, minilm.key)


def test_embed_to_shards_round_trips_through_precomputed(tmp_path, minilm):
    texts = TEXTS + [TEXTS[0], None, "Opera singer rehearsing Verdi"]
    shards = embed_to_shards(texts, tmp_path / "emb", minilm, ids=[1, 2, 3, 1, 5, 6], shard_rows=3, show_progress=False)
    assert shards["rows"].to_list() == [3, 1]
    e = make_embedder("precomputed", str(tmp_path / "emb"))
    assert len(e) == 4
    np.testing.assert_allclose(e.encode(TEXTS), minilm.encode(TEXTS), atol=1e-5)
    meta = pl.read_parquet(tmp_path / "emb" / "emb_0.parquet")
    assert meta.columns == ["caption", "caption_id"]
    again = embed_to_shards(texts, tmp_path / "emb", "minilm-that-would-fail-to-load", shard_rows=3, show_progress=False)
    assert len(again) == 2  # every shard present: nothing is loaded or embedded


def test_save_precomputed_writes_aligned_pair(tmp_path):
    npy, meta = save_precomputed(["a", "b"], np.eye(2, 3), tmp_path, shard=4)
    assert np.load(npy).shape == (2, 3) and pl.read_parquet(meta)["caption"].to_list() == ["a", "b"]
