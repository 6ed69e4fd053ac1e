"""The embeddings source: LAION-style img_emb/metadata parts, zero-shot CLIP labels."""

from __future__ import annotations


import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from biasamp.errors import BiasampError
from biasamp.images import fetch_training_images
from biasamp.images.embeddings import zero_shot
from biasamp.tables import validate

D = 16


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random CLIP built from a config with an offline byte-level tokenizer, saved to disk."""
    from biasamp.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip"), image_size=32, patch_size=8, heads=4, projection_dim=D,
                           processor=False)


def _reference_text_embeddings(path, texts):
    """Independent path: run the text transformer and the projection by hand."""
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    m = CLIPModel.from_pretrained(path)
    t = CLIPTokenizer.from_pretrained(path)
    with torch.no_grad():
        enc = t(texts, padding=True, return_tensors="pt")
        pooled = m.text_model(**enc).pooler_output
        return m.text_projection(pooled).numpy(), float(m.logit_scale.exp())


def _softmax_p_female(img, txt, scale):
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    z = scale * img @ txt.T
    from scipy.special import softmax

    return softmax(z, axis=1)[:, 1]


@pytest.fixture
def laion(tmp_path):
    """Two LAION-style parts: img_emb/img_emb_{0,1}.npy + metadata/metadata_{0,1}.parquet."""
    rng = np.random.default_rng(1)
    (tmp_path / "img_emb").mkdir()
    (tmp_path / "metadata").mkdir()
    all_emb = {}
    cid = 1000
    for part in range(2):
        n = 6
        emb = rng.normal(size=(n, D)).astype(np.float16)  # LAION ships float16
        ids = list(range(cid, cid + n))
        cid += n
        np.save(tmp_path / "img_emb" / f"img_emb_{part}.npy", emb)
        pl.DataFrame({"url": [f"http://x.invalid/{i}.jpg" for i in ids], "caption": [f"c{i}" for i in ids]}).write_parquet(
            tmp_path / "metadata" / f"metadata_{part}.parquet"
        )
        all_emb.update({i: emb[k].astype(np.float64) for k, i in enumerate(ids)})
    return tmp_path, all_emb


def _selection(make_selection, ids):
    return make_selection([("keyword", "nurse", i, f"http://x.invalid/{i}.jpg") for i in ids])


def test_labels_from_a_tiny_clip_model(tiny_clip, laion, make_selection, tmp_path):
    folder, all_emb = laion
    ids = [1001, 1004, 1007, 1011, 5555]  # rows from both parts, and one caption with no embedding
    res = fetch_training_images(
        _selection(make_selection, ids), tmp_path / "out", source="embeddings", embeddings=folder, clip_model=tiny_clip, threshold=0.6
    )
    txt, scale = _reference_text_embeddings(tiny_clip, ["A photo of a man", "A photo of a woman"])
    found = [i for i in ids if i in all_emb]
    want = _softmax_p_female(np.stack([all_emb[i] for i in found]), txt, scale)
    lab = validate(res.labels, "labels")
    assert lab["item_id"].to_list() == [str(i) for i in found]
    np.testing.assert_allclose(lab["p_female"].to_numpy(), want, rtol=1e-5, atol=1e-6)
    want_label = ["female" if p >= 0.6 else "male" if p <= 0.4 else "ambiguous" for p in want]
    assert lab["label"].to_list() == want_label
    assert lab["face_status"].null_count() == len(lab) and set(lab["reason"]) == {"precomputed embedding: no face filter applied"}
    d = res.downloads
    assert d["status"].to_list() == ["ok", "ok", "ok", "ok", "missing"]
    assert d["image"].null_count() == len(d)  # nothing was downloaded
    assert (tmp_path / "out" / "labels.parquet").exists()


def test_precomputed_text_embeddings_and_hash_ids(laion, make_selection, tmp_path):
    folder, all_emb = laion
    # LAION metadata with a `hash` column (the caption id) instead of matching on url
    for part in range(2):
        p = folder / "metadata" / f"metadata_{part}.parquet"
        m = pl.read_parquet(p)
        m.with_columns(pl.col("url").str.extract(r"/(\d+)\.jpg").cast(pl.Int64).alias("hash")).with_columns(
            pl.lit("http://moved.invalid/").alias("url")
        ).write_parquet(p)
    txt = np.random.default_rng(3).normal(size=(2, D))
    np.save(tmp_path / "text.npy", txt)
    ids = [1000, 1006]
    res = fetch_training_images(
        _selection(make_selection, ids), tmp_path / "o", source="embeddings", embeddings=folder, text_embeddings=tmp_path / "text.npy", logit_scale=50
    )
    want = _softmax_p_female(np.stack([all_emb[i] for i in ids]), txt, 50)
    np.testing.assert_allclose(res.labels["p_female"].to_numpy(), want, rtol=1e-6)
    assert res.downloads["embedding_row"].to_list() == [0, 0]


def test_embedding_errors(laion, make_selection, tmp_path):
    folder, _ = laion
    sel = _selection(make_selection, [1000])
    np.save(tmp_path / "t3.npy", np.zeros((2, D + 1)))
    with pytest.raises(BiasampError, match="dimensions"):
        fetch_training_images(sel, tmp_path / "o", source="embeddings", embeddings=folder, text_embeddings=tmp_path / "t3.npy")
    with pytest.raises(BiasampError, match="exactly one of"):
        fetch_training_images(sel, tmp_path / "o", source="embeddings", embeddings=folder)
    (folder / "metadata" / "metadata_1.parquet").unlink()
    np.save(tmp_path / "t.npy", np.zeros((2, D)))
    with pytest.raises(BiasampError, match="part 1 has img_emb_1.npy but no matching metadata"):
        fetch_training_images(sel, tmp_path / "o", source="embeddings", embeddings=folder, text_embeddings=tmp_path / "t.npy")
    np.save(folder / "img_emb" / "img_emb_1.npy", np.zeros((3, D)))
    pl.DataFrame({"url": ["a"]}).write_parquet(folder / "metadata" / "metadata_1.parquet")
    with pytest.raises(BiasampError, match="aligned row by row"):
        fetch_training_images(sel, tmp_path / "o", source="embeddings", embeddings=folder, text_embeddings=tmp_path / "t.npy")


@settings(max_examples=40, deadline=None)
@given(
    img=arrays(np.float64, (5, 4), elements=st.floats(-3, 3)).filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all()),
    txt=arrays(np.float64, (2, 4), elements=st.floats(-3, 3)).filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all()),
    scale=st.floats(1, 100),
    k=st.floats(0.1, 10),
)
def test_zero_shot_invariants(img, txt, scale, k):
    p = zero_shot(img, txt, scale)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(zero_shot(img * k, txt, scale), p, atol=1e-9)  # only directions matter
    np.testing.assert_allclose(zero_shot(img, txt[::-1], scale), 1 - p, atol=1e-9)  # swapping the texts
