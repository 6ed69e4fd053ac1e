"""Compare embedding-based labels with image-based labels on the images both cover.

Agreement and Cohen's kappa are computed on the items both label confidently (female or
male); the confusion table covers every label value, so abstentions and the face filter's
exclusions show too. Items the image classifier's face filter rejected but the embeddings
labelled confidently are counted apart: that is what the missing face filter costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from biasamp.agreement import cohen_kappa
from biasamp.errors import BiasampError
from biasamp.tables import LABELS, LABELS_CONFIDENT, validate

__all__ = ["Comparison", "cohen_kappa", "compare_embedding_labels"]


@dataclass
class Comparison:
    summary: pl.DataFrame  # one row of figures
    confusion: pl.DataFrame  # image label (rows) × embedding label (columns), counts


def compare_embedding_labels(embedding_labels: pl.DataFrame, image_labels: pl.DataFrame) -> Comparison:
    emb = validate(embedding_labels, "labels", source="embedding labels")
    img = validate(image_labels, "labels", source="image labels")
    e = emb.select("item_id", pl.col("label").alias("embedding_label"), pl.col("p_female").alias("embedding_p_female"))
    i = img.select(
        "item_id",
        pl.col("label").alias("image_label"),
        pl.col("p_female").alias("image_p_female"),
        pl.col("face_status").alias("image_face_status"),
    )
    both = e.unique("item_id", keep="last").join(i.unique("item_id", keep="last"), on="item_id", how="inner")
    if len(both) == 0:
        raise BiasampError(
            "the two labels tables share no item_id",
            hint="label the downloaded training images (item_id = caption_id) and compare with the embeddings' labels",
        )
    conf = both.filter(
        pl.col("embedding_label").is_in(list(LABELS_CONFIDENT)) & pl.col("image_label").is_in(list(LABELS_CONFIDENT))
    )
    a, b = conf["image_label"].to_list(), conf["embedding_label"].to_list()
    agree = (sum(x == y for x, y in zip(a, b)) / len(a)) if a else None
    face_rejected = both.filter(pl.col("image_face_status").is_not_null() & (pl.col("image_face_status") != "ok"))
    corr = None
    pp = both.drop_nulls(["embedding_p_female", "image_p_female"])
    if len(pp) >= 2 and pp["embedding_p_female"].std() and pp["image_p_female"].std():
        corr = float(pp.select(pl.corr("embedding_p_female", "image_p_female")).item())
    summary = pl.DataFrame(
        {
            "n_common": [len(both)],
            "n_both_confident": [len(conf)],
            "agreement": [agree],
            "cohen_kappa": [cohen_kappa(a, b)],
            "p_female_correlation": [corr],
            "n_image_face_rejected": [len(face_rejected)],
            "n_face_rejected_but_embedding_confident": [
                int(face_rejected["embedding_label"].is_in(list(LABELS_CONFIDENT)).sum())
            ],
            "embedding_share_female": [b.count("female") / len(b) if b else None],
            "image_share_female": [a.count("female") / len(a) if a else None],
        },
        schema_overrides={"agreement": pl.Float64, "cohen_kappa": pl.Float64, "p_female_correlation": pl.Float64,
                          "embedding_share_female": pl.Float64, "image_share_female": pl.Float64},
    )
    order = {v: k for k, v in enumerate(LABELS)}
    cols = sorted(set(both["embedding_label"].to_list()), key=order.get)
    rows = sorted(set(both["image_label"].to_list()), key=order.get)
    counts = both.group_by("image_label", "embedding_label").len()
    wide = counts.pivot(on="embedding_label", index="image_label", values="len")
    confusion = (
        pl.DataFrame({"image_label": rows})
        .join(wide, on="image_label", how="left")
        .select("image_label", *[pl.col(c).fill_null(0).cast(pl.Int64) for c in cols])
    )
    return Comparison(summary, confusion)
