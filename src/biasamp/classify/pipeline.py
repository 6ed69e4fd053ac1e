"""The classify stage: decode → face filter → (NSFW filter) → gender classifier → abstention.

`Labeler` holds the models and labels one batch of items at a time (`label_items`), or a
stream of batches (`label_stream`), where a thread pool decodes, detects faces and
prepares model inputs for the next batch while the current batch runs through the
classifier. The same object is what a Ray actor pool would hold: build it once per worker,
call it per batch. `classify_images` is the stage: inputs → sharded, resumable labels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.store import fingerprint as run_fingerprint
from biasamp.store import model_reference, settings_changed

from .decode import DEFAULT_MAX_PIXELS, decode_image
from .faces import Face, face_filter, make_face_detector
from .models import DEFAULT_NSFW_MODEL, ClipImageModel, abstain, make_classifier
from .sources import PASSTHROUGH, Item, discover

LABEL_COLUMNS = {
    "item_id": pl.Utf8, "source": pl.Utf8, "face_status": pl.Utf8, "n_faces": pl.Int64, "p_female": pl.Float64,
    "label": pl.Utf8, "backend": pl.Utf8, "model": pl.Utf8, "reason": pl.Utf8, "detector": pl.Utf8,
    "face_x0": pl.Float64, "face_y0": pl.Float64, "face_x1": pl.Float64, "face_y1": pl.Float64,
    "face_score": pl.Float64, "width": pl.Int64, "height": pl.Int64,
}


@dataclass
class _Front:
    """What the per-image stage hands to the batch stage."""

    item: Item
    status: str | None = None  # None = decoded and passed the face filter (so far "ok")
    reason: str | None = None
    n_faces: int | None = None
    face: Face | None = None
    width: int | None = None
    height: int | None = None
    size: tuple[int, int] | None = None  # decoded (w, h)
    cls_input: object = None
    nsfw_input: object = None
    emb_input: object = None
    extra: dict = field(default_factory=dict)


class Labeler:
    """Face filter + classifier + abstention over batches of images.

    Parameters are those of `classify_images` (see there). Models are loaded once, here.
    """

    def __init__(self, classifier: str = "dlib-onnx", *, face_detector: str = "dlib", min_face: float = 0.1,
                 low: float = 0.1, high: float = 0.9, nsfw: bool = False, nsfw_model: str = DEFAULT_NSFW_MODEL,
                 embeddings: bool = False, embed_model: str | None = None, workers: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, decode_max_side: int | None = 2048, device: str = "auto",
                 classifier_options: dict | None = None, detector_options: dict | None = None):
        _check_numbers(min_face=min_face, workers=workers, max_pixels=max_pixels)
        abstain([0.5], low, high)  # validates the thresholds
        self.low, self.high, self.min_face = low, high, min_face
        self.max_pixels, self.decode_max_side = max_pixels, decode_max_side
        copts = dict(classifier_options or {})
        if classifier in ("clip", "linear-probe"):
            copts.setdefault("device", device)
        self.classifier = make_classifier(classifier, **copts)
        self.backend = classifier
        self.needs_pixels = self.classifier.needs_pixels
        self.detector = make_face_detector(face_detector, **(detector_options or {})) if self.needs_pixels else None
        self.nsfw = None
        if nsfw and not self.needs_pixels:
            from biasamp.ui import err_console

            err_console.print(f"[yellow]warning:[/] the NSFW filter (--nsfw) does not run with the {classifier} classifier: "
                              "it reads no images, so no label is 'nsfw'; the annotators' labels are used as they are",
                              highlight=False, soft_wrap=True)
        if nsfw and self.needs_pixels:
            from .models import SafetyChecker

            self.nsfw = SafetyChecker(nsfw_model, device=device)
        self.embedder = None
        self.shared_embeddings = False
        if embeddings or embed_model:
            if not self.needs_pixels:
                raise BiasampError("embeddings need images; the human classifier reads none",
                                   hint="run classify with --classifier clip (or --embed-model) for embeddings")
            cls_runner = getattr(self.classifier, "runner", None)
            if cls_runner is not None and (embed_model is None or embed_model == cls_runner.model_name) \
                    and cls_runner.region == "image":
                self.embedder, self.shared_embeddings = cls_runner, True
            elif embed_model is None and cls_runner is None:
                raise BiasampError(f"the {classifier} classifier makes no image embeddings",
                                   hint="name a CLIP model with --embed-model (e.g. openai/clip-vit-large-patch14)")
            else:
                self.embedder = ClipImageModel(embed_model or cls_runner.model_name, device=device)
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="classify") if self.workers > 0 else None

    # -------------------------------------------------------------- per image

    def _front(self, item: Item) -> _Front:
        f = _Front(item)
        if item.error:
            f.status, f.reason = "error", item.error
            return f
        if not self.needs_pixels:
            return f
        if item.array is not None:
            img = np.ascontiguousarray(item.array, dtype=np.uint8)
            if img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
                f.status, f.reason = "error", f"not an H x W x 3 RGB array: shape {img.shape}"
                return f
            f.width, f.height = img.shape[1], img.shape[0]
        else:
            dec = decode_image(item.read(), max_pixels=self.max_pixels, max_side=self.decode_max_side)
            f.width, f.height = dec.width, dec.height
            if not dec.ok:
                f.status, f.reason = "error", dec.reason
                return f
            img = dec.array
        f.size = (img.shape[1], img.shape[0])
        try:
            faces = self.detector.detect(img)
            f.n_faces = len(faces) if self.detector.name != "none" else None
            status, face = face_filter(faces, img.shape[1], img.shape[0], min_face=self.min_face)
            if len(faces) == 1:
                f.face = faces[0]
            if self.embedder is not None:
                f.emb_input = self.embedder.prepare(img, None)
            if status != "ok":
                f.status = status
                return f
            if self.nsfw is not None:
                f.nsfw_input = self.nsfw.prepare(img)
            if self.shared_embeddings and getattr(self.classifier.runner, "region", "image") == "image":
                f.cls_input = f.emb_input
            else:
                f.cls_input = self.classifier.prepare(img, face)
        except BiasampError:
            raise
        except Exception as e:  # a model failing on one odd image is that image's error
            f.status, f.reason = "error", f"{type(e).__name__}: {e}"
        return f

    # -------------------------------------------------------------- per batch

    def _back(self, fronts: list[_Front], source: str | None) -> tuple[pl.DataFrame, np.ndarray | None]:
        n = len(fronts)
        p = np.full(n, np.nan)
        emb = None
        if not self.needs_pixels:
            return self._human_rows(fronts, source), None
        if self.embedder is not None:
            idx = [i for i, f in enumerate(fronts) if f.emb_input is not None]
            e = self.embedder.embed([fronts[i].emb_input for i in idx])
            emb = np.full((n, e.shape[1] if e.ndim == 2 and e.shape[0] else self._emb_dim()), np.nan, np.float32)
            if len(idx):
                emb[idx] = e
        ok = [i for i, f in enumerate(fronts) if f.status is None]
        if self.nsfw is not None and ok:
            flags = self.nsfw.flags([fronts[i].nsfw_input for i in ok])
            for i, fl in zip(ok, flags):
                if fl:
                    fronts[i].status, fronts[i].reason = "nsfw", "flagged by the Stable Diffusion safety checker"
            ok = [i for i in ok if fronts[i].status is None]
        if ok:
            if self.shared_embeddings and hasattr(self.classifier, "predict_embeddings"):
                p[ok] = self.classifier.predict_embeddings(emb[ok])
            else:
                p[ok] = self.classifier.predict([fronts[i].cls_input for i in ok])[0]
        labels = abstain(np.nan_to_num(p, nan=0.5), self.low, self.high)
        rows = []
        for i, f in enumerate(fronts):
            status = f.status or "ok"
            face = f.face
            rel = face.relative(*f.size) if face is not None and f.size else (None,) * 4
            rows.append({
                "item_id": f.item.item_id, "source": source, "face_status": status, "n_faces": f.n_faces,
                "p_female": float(p[i]) if status == "ok" else None,
                "label": labels[i] if status == "ok" else status,
                "backend": self.backend, "model": self.classifier.model, "reason": f.reason,
                "detector": self.detector.model, "face_x0": rel[0], "face_y0": rel[1], "face_x1": rel[2],
                "face_y1": rel[3], "face_score": face.score if face is not None else None,
                "width": f.width, "height": f.height, **f.item.meta,
            })
        return _frame(rows), emb

    def _emb_dim(self) -> int:
        return int(self.embedder.clip.config.projection_dim)

    def _human_rows(self, fronts: list[_Front], source: str | None) -> pl.DataFrame:
        votes = self.classifier.votes
        ids = [f.item.item_id for f in fronts]
        v = pl.DataFrame({"item_id": ids}).join(votes, on="item_id", how="left", maintain_order="left")
        rows = []
        for f, r in zip(fronts, v.iter_rows(named=True)):
            if r["label"] is None:
                status, label, reason = None, "excluded", "no human annotation for this item"
            else:
                status, label, reason = r["face_status"], r["label"], None
            rows.append({
                "item_id": f.item.item_id, "source": source, "face_status": status, "n_faces": None,
                "p_female": r["p_female"], "label": label, "backend": "human", "model": self.classifier.model,
                "reason": reason, "n_annotators": r["n_annotators"], "agreement": r["agreement"], **f.item.meta,
            })
        return _frame(rows)

    # -------------------------------------------------------------- public

    def label_items(self, items: list[Item], source: str | None = None) -> tuple[pl.DataFrame, np.ndarray | None]:
        """Label one batch: a labels frame (one row per item, same order) and embeddings."""
        if self._pool is None or not self.needs_pixels:
            fronts = [self._front(it) for it in items]
        else:
            fronts = list(self._pool.map(self._front, items))
        return self._back(fronts, source)

    def label_stream(self, batches: Iterable[list[Item]], source: str | None = None) -> Iterator[tuple[pl.DataFrame, np.ndarray | None]]:
        """Label batches, preparing batch k+1 in the thread pool while batch k is classified."""
        if self._pool is None or not self.needs_pixels:
            for b in batches:
                yield self.label_items(b, source)
            return
        pending = None
        for batch in batches:
            futs = [self._pool.submit(self._front, it) for it in batch]
            if pending is not None:
                yield self._back([x.result() for x in pending], source)
            pending = futs
        if pending is not None:
            yield self._back([x.result() for x in pending], source)

    def label_images(self, item_ids: list[str], images: list[np.ndarray], source: str | None = None
                     ) -> tuple[pl.DataFrame, np.ndarray | None]:
        """Label already decoded RGB uint8 arrays (the heavy part alone, e.g. in a Ray actor)."""
        return self.label_items([Item(str(i), array=a) for i, a in zip(item_ids, images)], source)

    def __call__(self, batch):
        """Label a batch with `item_id` and `image` (bytes) or `path` columns (other columns are
        passed through). Accepts a Polars frame, an Arrow table, a pandas frame or a dict of
        columns — what Ray Data's `map_batches` hands an actor — and returns the same kind."""
        kind = "polars"
        if not isinstance(batch, pl.DataFrame):
            import pyarrow as pa

            if isinstance(batch, pa.Table):
                kind, batch = "arrow", pl.from_arrow(batch)
            elif isinstance(batch, dict):
                kind, batch = "dict", pl.DataFrame({k: list(v) for k, v in batch.items()})
            else:
                kind, batch = "pandas", pl.from_pandas(batch)
        if "item_id" not in batch.columns or not ({"image", "path"} & set(batch.columns)):
            raise BiasampError(f"a batch to label needs item_id and image or path columns; found {batch.columns}")
        items = []
        meta_cols = [c for c in batch.columns if c not in ("item_id", "image", "path")]
        for r in batch.iter_rows(named=True):
            items.append(Item(str(r["item_id"]), data=r.get("image"), path=r.get("path"),
                              meta={c: r[c] for c in meta_cols}))
        out = self.label_items(items)[0]
        if kind == "arrow":
            return out.to_arrow()
        if kind == "dict":
            return {c: out[c].to_numpy() for c in out.columns}
        if kind == "pandas":
            return out.to_pandas()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _check_numbers(*, min_face: float, workers: int | None, max_pixels: int) -> None:
    if not 0.0 <= min_face <= 1.0:
        raise BiasampError(f"min_face must be between 0 and 1, got {min_face}")
    if workers is not None and workers < 0:  # not "inline" by accident
        raise BiasampError(f"workers must be 0 (decode inline) or more, got {workers}",
                           hint="leave it out to use one thread per CPU")
    if max_pixels < 1:
        raise BiasampError(f"max_pixels must be at least 1, got {max_pixels}",
                           hint=f"the default, {DEFAULT_MAX_PIXELS}, refuses only decompression bombs")


#: Settings that change how fast labels are made, not the labels: a run may resume with others.
SPEED_SETTINGS = ("batch_size",)


def check_done_shards(store, shards, out: Path) -> None:
    """Refuse to resume when a finished shard would now hold other images (an input gained,
    lost or renamed images after it was labelled: its chunks moved). Shards not yet done may
    be new (a generate run finished later adds parts); finished ones must be unchanged."""
    extra = sorted(store.done() - {s.shard_id for s in shards})
    if extra:
        raise BiasampError(
            f"{out} holds {len(extra)} finished labels shard(s) that no input makes any more (e.g. {extra[0]}): "
            "an input was removed, emptied or shortened since it was labelled",
            hint=f"label the changed inputs into a new --out folder, or delete {out} to start again",
        )
    for s in shards:
        if not store.is_done(s.shard_id):
            continue
        try:
            had = pl.read_parquet(store.path(s.shard_id), columns=["item_id"])["item_id"].cast(pl.Utf8).to_list()
        except Exception as e:  # an unreadable part: name it
            raise BiasampError(f"{store.path(s.shard_id)} is unreadable: {type(e).__name__}",
                               hint="delete that file and run again: its images are labelled again") from None
        if sorted(had) != sorted(s.ids):
            gone = sorted(set(had) - set(s.ids))[:3]
            new = sorted(set(s.ids) - set(had))[:3]
            raise BiasampError(
                f"the input {s.input or ''} changed since {out} was labelled: its finished shard {s.shard_id} held "
                f"{len(had)} images, and the same part of the input now holds {len(s.ids)}"
                f"{f' (no longer there: {gone})' if gone else ''}{f' (new: {new})' if new else ''}",
                hint=f"label the changed input into a new --out folder, or delete {out} to start again",
            )


@dataclass
class RunPlan:
    """A classify run before its first image: its settings, shards and what is left to do."""

    params: dict
    fingerprint: str
    shards: list
    todo: list
    notes: dict
    store: object


def plan_run(inputs, out: Path, *, source, passthrough, classifier, face_detector, min_face, low, high, nsfw,
             nsfw_model, embeddings, embed_model, batch_size, shard_size, workers, max_pixels, decode_max_side,
             classifier_options, detector_options, **_speed_only) -> RunPlan:
    """Everything a classify run does before its first image, on any engine: the arguments
    checked, the settings checked against a resumed run's, the inputs cut into shards (their
    ids checked), the manifest written (so that a run killed half-way is checked when
    resumed), and the finished shards checked against their part of the inputs."""
    from biasamp.store import ShardedOutput, write_manifest
    from biasamp.tables import SOURCES

    if source is not None and source not in SOURCES:
        raise BiasampError(f"unknown source {source!r}", hint=f"use one of {', '.join(SOURCES)}")
    if batch_size < 1 or shard_size < 1:
        raise BiasampError("batch_size and shard_size must be at least 1")
    _check_numbers(min_face=min_face, workers=workers, max_pixels=max_pixels)
    input_list = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    params = run_params(input_list, source=source, passthrough=passthrough, classifier=classifier, face_detector=face_detector,
                        min_face=min_face, low=low, high=high, nsfw=nsfw, nsfw_model=nsfw_model, embeddings=embeddings,
                        embed_model=embed_model, batch_size=batch_size, shard_size=shard_size, max_pixels=max_pixels,
                        decode_max_side=decode_max_side, classifier_options=classifier_options, detector_options=detector_options)
    fingerprint = check_resume(out, params)
    shards, notes = discover(input_list, shard_size=shard_size, source=source, passthrough=passthrough)
    write_manifest(out, "classify", params, extra={"fingerprint": fingerprint, "shards": len(shards), **notes})
    store = ShardedOutput(out / "labels")
    store.clean_temporaries()
    check_done_shards(store, shards, out)
    todo = [s for s in shards if not store.is_done(s.shard_id)]
    return RunPlan(params, fingerprint, shards, todo, notes, store)


def run_params(input_list, *, source, passthrough, classifier, face_detector, min_face, low, high, nsfw, nsfw_model,
               embeddings, embed_model, batch_size, shard_size, max_pixels, decode_max_side, classifier_options,
               detector_options) -> dict:
    """A classify run's settings as recorded in its manifest: everything that decides which
    rows a shard holds and what is in them (batch_size too, though it is speed only)."""
    return {
        "inputs": [str(Path(p).resolve()) for p in input_list], "source": source, "passthrough": list(passthrough),
        "classifier": classifier, "face_detector": face_detector, "min_face": float(min_face), "low": float(low),
        "high": float(high), "nsfw": nsfw, "nsfw_model": model_reference(nsfw_model) if nsfw else None, "embeddings": embeddings,
        "embed_model": model_reference(embed_model) if embed_model else None, "batch_size": batch_size, "shard_size": shard_size, "max_pixels": max_pixels,
        "decode_max_side": decode_max_side,
        "classifier_options": {k: model_reference(v) if k in ("model", "probe", "annotations") and v else str(v)
                               for k, v in (classifier_options or {}).items()},
        "detector_options": detector_options or {},
    }


def check_resume(out: Path, params: dict) -> str:
    """The run's fingerprint, once `out` is known to hold nothing made with other settings:
    its finished shards would be kept as they are, beside shards labelled the new way, under
    a manifest claiming the new settings."""
    out = Path(out)
    fingerprint = run_fingerprint({k: v for k, v in params.items() if k not in SPEED_SETTINGS})
    done = sorted((out / "labels").glob("part-*.parquet"))
    if not done:  # nothing to mix (or labels committed by an engine's driver before its manifest)
        return fingerprint
    changed = settings_changed(out, "classify", fingerprint, params, ignore=SPEED_SETTINGS)
    if changed is None:
        return fingerprint
    raise BiasampError(
        f"{out} holds {len(done)} labels shard(s) made with other settings; resuming would mix them "
        f"(changed: {'; '.join(changed) or 'settings recorded by an older biasamp'})",
        hint=f"pick a new --out folder, or delete {out} to start again; resuming needs the same inputs and "
             "settings (only --batch-size, --workers and --device may change)",
    )


def _frame(rows: list[dict]) -> pl.DataFrame:
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    casts = [pl.col(c).cast(t) for c, t in LABEL_COLUMNS.items() if c in df.columns]
    return df.with_columns(casts) if casts else df


def _batched(it: Iterable[Item], size: int) -> Iterator[list[Item]]:
    buf: list[Item] = []
    for x in it:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def classify_images(
    inputs,
    out: str | Path,
    *,
    classifier: str = "dlib-onnx",
    face_detector: str = "dlib",
    source: str | None = None,
    min_face: float = 0.1,
    low: float = 0.1,
    high: float = 0.9,
    nsfw: bool = False,
    nsfw_model: str = DEFAULT_NSFW_MODEL,
    embeddings: bool = False,
    embed_model: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    shard_size: int = 1000,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode_max_side: int | None = 2048,
    device: str = "auto",
    classifier_options: dict | None = None,
    detector_options: dict | None = None,
    passthrough: tuple[str, ...] = PASSTHROUGH,
    show_progress: bool = True,
) -> pl.DataFrame:
    """Label every image of `inputs` (folders, .tar shards, tables of images, img2dataset
    folders, `biasamp generate` run folders); write `out/labels/part-*.parquet` (+
    `out/embeddings/`) shard by shard and return the whole labels table. Shards already
    written are skipped (resume) when the inputs and settings are those that wrote them
    (`classify.manifest.json` holds their fingerprint); other settings are refused, since
    the finished shards would be kept as they are. Only batch_size, workers and device may
    change between runs.

    classifier: clip | dlib-onnx | linear-probe | human. face_detector: dlib | mediapipe |
    none. min_face: smallest face box as a share of image height and width. low/high:
    abstention thresholds on P(female). nsfw: run the Stable Diffusion safety checker on
    images that pass the face filter. embeddings / embed_model: save L2-normalised CLIP
    image embeddings (the classifier's CLIP model, or the one named). source: train | gen
    (default: gen for tables of generations, train for img2dataset folders, else empty).
    classifier_options: e.g. {"model": path, "male_texts": [...], "female_texts": [...]} for
    clip, {"probe": file} for linear-probe, {"annotations": file} for human.
    detector_options: e.g. {"min_side": 512, "max_side": 1024, "threshold": 0.0} for dlib.
    """
    from biasamp.store import atomic_write_bytes, atomic_write_parquet, write_manifest
    from biasamp.ui import progress

    out = Path(out)
    plan = plan_run(inputs, out, source=source, passthrough=passthrough, classifier=classifier, face_detector=face_detector,
                    min_face=min_face, low=low, high=high, nsfw=nsfw, nsfw_model=nsfw_model, embeddings=embeddings,
                    embed_model=embed_model, batch_size=batch_size, shard_size=shard_size, workers=workers,
                    max_pixels=max_pixels, decode_max_side=decode_max_side, classifier_options=classifier_options,
                    detector_options=detector_options)
    store, todo = plan.store, plan.todo
    total = sum(s.n for s in todo)
    t0 = time.perf_counter()
    n_done = 0
    if todo:
        labeler = Labeler(
            classifier, face_detector=face_detector, min_face=min_face, low=low, high=high, nsfw=nsfw,
            nsfw_model=nsfw_model, embeddings=embeddings, embed_model=embed_model, workers=workers,
            max_pixels=max_pixels, decode_max_side=decode_max_side, device=device,
            classifier_options=classifier_options, detector_options=detector_options,
        )
        try:
            with progress("classify", total, enabled=show_progress) as advance:
                for shard in todo:
                    frames, embs = [], []
                    for df, emb in labeler.label_stream(_batched(shard.items(), batch_size), shard.source):
                        frames.append(df)
                        if emb is not None:
                            embs.append(emb)
                        advance(len(df))
                        n_done += len(df)
                    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
                        schema={"item_id": pl.Utf8, "label": pl.Utf8})
                    if embs:
                        import io

                        arr = np.concatenate(embs).astype(np.float32)
                        buf = io.BytesIO()
                        np.save(buf, arr)
                        rel = f"embeddings/{shard.shard_id}.npy"
                        atomic_write_bytes(buf.getvalue(), out / rel)
                        atomic_write_parquet(pl.DataFrame({
                            "item_id": df["item_id"], "embedding_row": pl.int_range(0, len(df), dtype=pl.Int64, eager=True),
                        }).with_columns(pl.lit(labeler.embedder.model_name).alias("embedding_model")),
                            out / f"embeddings/{shard.shard_id}.parquet")
                        df = df.with_columns(
                            pl.lit(rel).alias("embedding_file"),
                            pl.lit(labeler.embedder.model_name).alias("embedding_model"),
                            pl.int_range(0, len(df), dtype=pl.Int64).alias("embedding_row"),
                        )
                    if len(df):
                        df = df.with_columns(pl.lit(shard.shard_id).alias("shard"))
                    store.commit(shard.shard_id, df)
        finally:
            labeler.close()
    result = read_labels(out)
    write_manifest(out, "classify", plan.params, extra={
        "fingerprint": plan.fingerprint, "shards": len(plan.shards), "shards_run": len(todo), "images_run": n_done,
        "seconds": round(time.perf_counter() - t0, 3), **plan.notes})
    return result


def read_labels(out: str | Path) -> pl.DataFrame:
    """The labels table of a classify output folder (or a labels file), validated."""
    from biasamp.tables import read_table

    p = Path(out)
    if p.is_dir() and (p / "labels").is_dir():
        p = p / "labels"
    if p.is_dir() and not any(p.glob("*.parquet")):
        return pl.DataFrame(schema={c: t for c, t in LABEL_COLUMNS.items()})
    return read_table(p, "labels")
