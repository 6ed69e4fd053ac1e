"""The `embeddings` source: labels from LAION's precomputed CLIP image embeddings.

LAION publishes, per part `i`, `img_emb_i.npy` (one CLIP image embedding per row) and
`metadata_i.parquet` (the same rows' url, caption …). The arrays are memory-mapped and only
the selected rows are read. Each embedding is compared with CLIP text embeddings of the
class texts ("A photo of a man", "A photo of a woman"): softmax over the scaled cosine
similarities gives P(female), and the usual thresholds give female / male / ambiguous.

No image is downloaded, so **no face filter is applied**: an image with no person, or with
several, still gets a label. `compare_embedding_labels` measures how far these labels agree
with image-based ones on the images that are available.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.images import schema
from biasamp.tables import LABELS_TABLE, validate

#: The study's class texts, in the order P(male), P(female).
DEFAULT_CLASS_TEXTS = ("A photo of a man", "A photo of a woman")
BACKEND = "clip-embeddings"
NO_FACE_FILTER = "precomputed embedding: no face filter applied"


def find_parts(folder: str | Path) -> list[tuple[Path, Path]]:
    """Pairs (img_emb_i.npy, metadata_i.parquet) found anywhere under `folder`, by part number."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BiasampError(f"embeddings folder not found: {folder}")
    num = re.compile(r"_(\d+)\.(npy|parquet)$")
    embs = {int(m.group(1)): p for p in folder.rglob("img_emb_*.npy") if (m := num.search(p.name))}
    metas = {int(m.group(1)): p for p in folder.rglob("metadata_*.parquet") if (m := num.search(p.name))}
    if not embs:
        raise BiasampError(
            f"no img_emb_*.npy files under {folder}",
            hint="point --embeddings at a folder holding LAION's img_emb/ and metadata/ parts",
        )
    lonely = sorted(set(embs) ^ set(metas))
    if lonely:
        i = lonely[0]
        have = embs.get(i) or metas.get(i)
        raise BiasampError(
            f"part {i} has {have.name} but no matching {'metadata' if i in embs else 'img_emb'} file under {folder}",
            hint="each img_emb_i.npy needs its metadata_i.parquet (same rows, same order)",
        )
    return [(embs[i], metas[i]) for i in sorted(embs)]


def text_embeddings_from_clip(model_path: str | Path, texts: tuple[str, ...] = DEFAULT_CLASS_TEXTS) -> tuple[np.ndarray, float, str]:
    """(embeddings [n_texts, d], logit scale, model name) from a transformers CLIPModel."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    try:
        model = CLIPModel.from_pretrained(str(model_path), use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(str(model_path))
    except (OSError, ValueError) as e:
        raise BiasampError(
            f"cannot load a CLIP model from {model_path}: {e}",
            hint="pass a local folder saved with CLIPModel.save_pretrained (or a cached hub id)",
        ) from None
    model.eval()
    with torch.no_grad():
        enc = tok(list(texts), padding=True, return_tensors="pt")
        feats = model.get_text_features(**enc)
        if not isinstance(feats, torch.Tensor):  # some versions return an output object
            emb = getattr(feats, "text_embeds", None)
            feats = emb if emb is not None else feats.pooler_output
        scale = float(model.logit_scale.exp().item())
    return feats.float().cpu().numpy(), scale, str(model_path)


def zero_shot(image_emb: np.ndarray, text_emb: np.ndarray, logit_scale: float) -> np.ndarray:
    """P(female) per row: softmax(scale * cos(image, [male, female]))[:, 1]."""
    img = np.asarray(image_emb, dtype=np.float64)
    txt = np.asarray(text_emb, dtype=np.float64)
    img = img / np.clip(np.linalg.norm(img, axis=1, keepdims=True), 1e-12, None)
    txt = txt / np.clip(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12, None)
    logits = logit_scale * img @ txt.T
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e[:, 1] / e.sum(axis=1)


def label_from_p(p: np.ndarray, threshold: float) -> list[str]:
    return ["female" if x >= threshold else "male" if x <= 1 - threshold else "ambiguous" for x in p]


def fetch_embeddings(
    selection: pl.DataFrame,
    out: str | Path,
    *,
    embeddings: str | Path,
    clip_model: str | Path | None = None,
    text_embeddings: str | Path | np.ndarray | None = None,
    class_texts: tuple[str, str] = DEFAULT_CLASS_TEXTS,
    logit_scale: float | None = None,
    threshold: float = 0.9,
    id_column: str | None = None,
    show_progress: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Label the selected captions from precomputed image embeddings: (downloads, labels, stats).

    Text embeddings come from `clip_model` (a transformers CLIPModel folder; its logit scale
    is used) or from `text_embeddings` (.npy, rows = [male text, female text]; logit scale
    `logit_scale`, default 100 as in CLIP).
    """
    from biasamp.ui import progress

    if (clip_model is None) == (text_embeddings is None):
        raise BiasampError(
            "the embeddings source needs exactly one of a CLIP model or precomputed text embeddings",
            hint="pass --clip-model FOLDER (the model that made the image embeddings) or --text-embeddings FILE.npy",
        )
    if not 0.5 <= threshold <= 1:
        raise BiasampError(f"threshold must be in [0.5, 1], got {threshold}")
    if clip_model is not None:
        text, scale, model_name = text_embeddings_from_clip(clip_model, tuple(class_texts))
    else:
        if isinstance(text_embeddings, (str, Path)):
            try:
                text = np.load(text_embeddings)
            except (OSError, ValueError) as e:
                raise BiasampError(f"cannot read text embeddings {text_embeddings}: {e}") from None
            model_name = f"text-embeddings:{Path(text_embeddings).name}"
        else:
            text, model_name = np.asarray(text_embeddings), "text-embeddings"
        scale = 100.0
        if text.ndim != 2 or text.shape[0] != 2:
            raise BiasampError(
                f"text embeddings must have shape (2, d) (rows: male text, female text), got {text.shape}",
            )
    if logit_scale is not None:
        scale = float(logit_scale)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    caps = selection.select("caption_id", *(["url"] if "url" in selection.columns else [])).unique(
        "caption_id", maintain_order=True
    )
    parts = find_parts(embeddings)
    found: list[pl.DataFrame] = []
    remaining = set(caps["caption_id"].to_list())
    with progress("fetch (embeddings)", len(parts), enabled=show_progress) as advance:
        for emb_path, meta_path in parts:
            cols = pl.read_parquet_schema(meta_path)
            col = id_column or next((c for c in ("caption_id", "hash") if c in cols), None)
            if id_column is not None and id_column not in cols:
                raise BiasampError(f"{meta_path} has no column {id_column!r}; columns: {', '.join(cols)}")
            on = col if col is not None else "url"
            if on not in cols:
                raise BiasampError(
                    f"{meta_path} has no caption id (caption_id, hash) nor url column to match the selection",
                    hint="pass --id-column naming the metadata column with caption ids",
                )
            if on == "url" and "url" not in caps.columns:
                raise BiasampError("the embeddings metadata can only be matched on url, but the selection has no url")
            meta = pl.read_parquet(meta_path, columns=[on]).with_row_index("_row")
            arr = np.load(emb_path, mmap_mode="r")
            if arr.ndim != 2 or arr.shape[0] != len(meta):
                raise BiasampError(
                    f"{emb_path.name} has {arr.shape[0]} rows but {meta_path.name} has {len(meta)}",
                    hint="img_emb_i.npy and metadata_i.parquet must be aligned row by row",
                )
            if arr.shape[1] != text.shape[1]:
                raise BiasampError(
                    f"image embeddings in {emb_path.name} have {arr.shape[1]} dimensions but the text embeddings "
                    f"have {text.shape[1]}",
                    hint="use the CLIP model that produced the image embeddings (LAION: ViT-L/14 for 768)",
                )
            if on == "url":
                sel = caps.filter(pl.col("caption_id").is_in(list(remaining))).select("caption_id", "url")
                hit = meta.join(sel, on="url", how="inner")
            else:
                hit = meta.with_columns(pl.col(on).cast(pl.Int64, strict=False).alias("caption_id")).filter(
                    pl.col("caption_id").is_in(list(remaining))
                )
            hit = hit.unique("caption_id", keep="first").sort("_row")
            if len(hit):
                rows = hit["_row"].to_numpy()
                p = zero_shot(np.asarray(arr[rows]), text, scale)
                found.append(
                    pl.DataFrame(
                        {
                            "caption_id": hit["caption_id"].cast(pl.Int64),
                            "p_female": p,
                            "embedding_file": str(emb_path),
                            "embedding_row": hit["_row"].cast(pl.Int64),
                        }
                    )
                )
                remaining -= set(hit["caption_id"].to_list())
            del arr
            advance(1)
    got = (
        pl.concat(found)
        if found
        else pl.DataFrame(schema={"caption_id": pl.Int64, "p_female": pl.Float64, "embedding_file": pl.Utf8, "embedding_row": pl.Int64})
    )
    joined = caps.join(got, on="caption_id", how="left")
    ok = joined["p_female"].is_not_null()
    downloads = schema.finish(
        joined.with_columns(
            pl.col("caption_id").cast(pl.Utf8).alias("item_id"),
            pl.when(ok).then(pl.lit("ok")).otherwise(pl.lit("missing")).alias("status"),
            pl.Series("received", ok),
            pl.when(ok).then(None).otherwise(pl.lit("no precomputed embedding for this caption")).alias("error_message"),
            pl.lit("embeddings").alias("source"),
        ).drop("p_female")
    ).sort("caption_id")
    lab = got.sort("caption_id")
    labels = pl.DataFrame(
        {
            "item_id": lab["caption_id"].cast(pl.Utf8),
            "source": "train",
            "face_status": pl.Series([None] * len(lab), dtype=pl.Utf8),
            "n_faces": pl.Series([None] * len(lab), dtype=pl.Int64),
            "p_female": lab["p_female"],
            "label": label_from_p(lab["p_female"].to_numpy(), threshold),
            "backend": BACKEND,
            "model": model_name,
            "reason": NO_FACE_FILTER,
        }
    )
    labels = validate(labels, LABELS_TABLE)
    return downloads, labels, {"parts": len(parts), "found": len(lab), "logit_scale": scale, "model": model_name}
