"""Drawing images for prompts: planning, batching, shards, resume, "until N usable".

The plan is a pure function of the prompts and the settings: image `index` of every
prompt, its item id and its seed. Images are cut into shards of `shard_size` (in
until-usable mode: of whole prompts); a shard's images are written under a temporary name
and renamed into place, then its `generations` Parquet part is committed, which marks it
done. Re-running the same command skips the done shards and redoes a half-done one from
its start with the same batches, so a resumed run writes the same bytes as an
uninterrupted one.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.generate.images import FORMATS, ShardWriter, clean_temporaries, encode_png
from biasamp.generate.prompts import (
    CAPTION_CONDITION,
    PROMPT_SCHEMA,
    TEMPLATE_CONDITION,
    build_prompts,
    fit_to_tokens,
    item_ids,
)
from biasamp.generate.seeds import derive_seed
from biasamp.registry import Registry
from biasamp.store import fingerprint as run_fingerprint
from biasamp.store import model_reference, settings_changed

#: Columns of the `generations` table as this stage writes it (the schema's plus extras).
ROW_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.Utf8,
    "occupation": pl.Utf8,
    "condition": pl.Utf8,
    "group": pl.Utf8,
    "prompt": pl.Utf8,
    "seed": pl.Int64,
    "model": pl.Utf8,
    "revision": pl.Utf8,
    "scheduler": pl.Utf8,
    "steps": pl.Int64,
    "guidance": pl.Float64,
    "width": pl.Int64,
    "height": pl.Int64,
    "image": pl.Utf8,
    "index": pl.Int64,
    "base_seed": pl.Int64,
    "template": pl.Utf8,
    "caption_id": pl.Int64,
    "source_text": pl.Utf8,
    "prompt_truncated": pl.Boolean,
    "n_tokens": pl.Int64,
    "negative_prompt": pl.Utf8,
    "dtype": pl.Utf8,
    "device": pl.Utf8,
    "backend": pl.Utf8,
    "nsfw": pl.Boolean,
    "safety_checker": pl.Boolean,
    "shard": pl.Utf8,
    "batch_size": pl.Int64,
}
ATTEMPT_COLUMNS = ["item_id", "occupation", "condition", "group", "prompt", "index", "seed", "accepted", "nsfw", "shard", "filter"]
PARAM_COLUMNS = ("steps", "guidance", "height", "width", "negative_prompt")
#: Text stored in each PNG (chunk `biasamp`, JSON): enough to redo the image.
PNG_FIELDS = ("item_id", "prompt", "negative_prompt", "seed", "model", "revision", "scheduler", "steps", "guidance", "width", "height", "dtype")


# -- filters for "until N usable" ---------------------------------------------------------
ACCEPT_FILTERS: Registry = Registry("image filter")


def _accept_all(image, row) -> bool:
    """every image counts"""
    return True


def _accept_not_blank(image, row, *, min_std: float = 2.0) -> bool:
    """refuse flat images (a safety checker's black image, a failed decode)"""
    return row.get("nsfw") is not True and float(np.asarray(image, dtype=np.float32).std()) >= min_std


class _AcceptOneFace:
    """the study's face filter: not flagged, and exactly one face of at least 0.1 of the image in height and width (dlib)"""

    def __init__(self, detector: str = "dlib", **filter_options):
        self.detector_name, self.filter_options = detector, filter_options  # face_filter's defaults: the study's rule
        self._detector = None
        self._lock = threading.Lock()

    def __call__(self, image, row) -> bool:
        from biasamp.classify.faces import face_filter, make_face_detector

        if row.get("nsfw") is True:
            return False
        with self._lock:  # one detector, built on first use (dlib is an optional dependency)
            if self._detector is None:
                self._detector = make_face_detector(self.detector_name)
        arr = np.asarray(image.convert("RGB"))
        status, _ = face_filter(self._detector.detect(arr), arr.shape[1], arr.shape[0], **self.filter_options)
        return status == "ok"


ACCEPT_FILTERS.register("all", _accept_all)
ACCEPT_FILTERS.register("not-blank", _accept_not_blank)
ACCEPT_FILTERS.register("face", _AcceptOneFace())


def resolve_accept(spec: str | Callable | None) -> tuple[Callable, str]:
    """A filter `accept(image, row) -> bool` from a callable, a registered name or 'module:function'."""
    if spec is None:
        spec = "not-blank"
    if callable(spec):
        return spec, f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"
    if ":" in spec:
        import importlib

        mod, _, attr = spec.partition(":")
        try:
            fn = importlib.import_module(mod)
            for part in attr.split("."):
                fn = getattr(fn, part)
        except (ImportError, AttributeError) as e:
            raise BiasampError(f"cannot import filter {spec!r}: {e}", hint="give 'module:function' importable here, or a registered filter name") from None
        if not callable(fn):
            raise BiasampError(f"filter {spec!r} is not callable")
        return fn, spec
    return ACCEPT_FILTERS.get(spec), spec


# -- the heavy part: a function over a batch of rows ----------------------------------------
def _param_runs(rows: pl.DataFrame) -> list[tuple[int, int]]:
    """(start, stop) of consecutive rows sharing the same drawing parameters."""
    keys = list(zip(*(rows[c].to_list() for c in PARAM_COLUMNS)))
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i))
            start = i
    return runs


def draw(backend, rows: pl.DataFrame) -> tuple[np.ndarray, list]:
    """Draw the images of `rows` (columns prompt, seed, steps, guidance, height, width,
    negative_prompt) in one call per run of equal parameters; uint8 N x H x W x 3 + NSFW flags."""
    images, nsfw = [], []
    for a, b in _param_runs(rows):
        r = rows.row(a, named=True)
        part = rows.slice(a, b - a)
        imgs, flags = backend.generate(
            part["prompt"].to_list(),
            part["seed"].to_list(),
            steps=r["steps"],
            guidance=r["guidance"],
            height=r["height"],
            width=r["width"],
            negative_prompt=r["negative_prompt"],
        )
        images.extend(list(imgs))
        nsfw.extend(flags if flags is not None else [None] * (b - a))
    return images, nsfw


def _png_text(row: dict) -> dict[str, str]:
    return {"biasamp": json.dumps({k: row.get(k) for k in PNG_FIELDS}, sort_keys=True, default=str)}


def encode_rows(rows: pl.DataFrame, images: Sequence[np.ndarray]) -> list[bytes]:
    return [encode_png(img, _png_text(row)) for row, img in zip(rows.iter_rows(named=True), images)]


def generate_batch(backend, rows: pl.DataFrame) -> pl.DataFrame:
    """The heavy step over a batch of planned rows: draws, encodes PNGs, returns `rows`
    with `png` (Binary) and `nsfw` (Boolean). Pure in its inputs, so an engine can map it
    over batches (one backend per GPU worker)."""
    images, nsfw = draw(backend, rows)
    pngs = encode_rows(rows, images)
    return rows.with_columns(pl.Series("png", pngs, dtype=pl.Binary), pl.Series("nsfw", nsfw, dtype=pl.Boolean))


# -- planning ------------------------------------------------------------------------------
def _shard_id(k: int) -> str:
    return f"{k:06d}"


def _prepare_prompts(prompts: pl.DataFrame, backend) -> pl.DataFrame:
    """Cut prompts to the backend's token limit, recording it."""
    limit = getattr(backend, "token_limit", None)
    cache: dict[str, tuple[str, bool, int | None]] = {}
    fitted = []
    for text in prompts["text"].to_list():
        if text not in cache:
            cache[text] = fit_to_tokens(text, backend.count_tokens, limit) if limit else (text, False, None)
        fitted.append(cache[text])
    return prompts.with_columns(
        pl.Series("prompt", [f[0] for f in fitted], dtype=pl.Utf8),
        pl.Series("prompt_truncated", [f[1] for f in fitted], dtype=pl.Boolean),
        pl.Series("n_tokens", [f[2] for f in fitted], dtype=pl.Int64),
    )


def _rows_for(prompts: pl.DataFrame, indices: list[list[int]], ctx: dict) -> pl.DataFrame:
    """Planned rows for prompt i and each index in indices[i] (prompts already fitted)."""
    rec: dict[str, list] = {k: [] for k in ("condition", "occupation", "group", "template", "caption_id", "text", "prompt", "prompt_truncated", "n_tokens", "index")}
    for p, idx in zip(prompts.iter_rows(named=True), indices):
        for i in idx:
            for k in rec:
                rec[k].append(i if k == "index" else p[k])
    n = len(rec["index"])
    df = pl.DataFrame(
        {
            "item_id": item_ids(rec["condition"], rec["occupation"], rec["group"], rec["index"]),
            "occupation": rec["occupation"],
            "condition": rec["condition"],
            "group": rec["group"],
            "prompt": rec["prompt"],
            "seed": [derive_seed(ctx["base_seed"], p, i) for p, i in zip(rec["prompt"], rec["index"])],
            "model": [ctx["model"]] * n,
            "revision": [ctx["revision"]] * n,
            "scheduler": [ctx["scheduler"]] * n,
            "steps": [ctx["steps"]] * n,
            "guidance": [ctx["guidance"]] * n,
            "width": [ctx["width"]] * n,
            "height": [ctx["height"]] * n,
            "image": [None] * n,
            "index": rec["index"],
            "base_seed": [ctx["base_seed"]] * n,
            "template": rec["template"],
            "caption_id": rec["caption_id"],
            "source_text": rec["text"],
            "prompt_truncated": rec["prompt_truncated"],
            "n_tokens": rec["n_tokens"],
            "negative_prompt": [ctx["negative_prompt"]] * n,
            "dtype": [ctx["dtype"]] * n,
            "device": [ctx["device"]] * n,
            "backend": [ctx["backend"]] * n,
            "nsfw": [None] * n,
            "safety_checker": [ctx["safety_checker"]] * n,
            "shard": [None] * n,
            "batch_size": [ctx["batch_size"]] * n,
        },
        schema=ROW_SCHEMA,
    )
    return df


class _Writer:
    """Encodes and writes PNGs on a background thread while the next batch is drawn."""

    def __init__(self, writer: ShardWriter, run_dir: Path, fmt: str):
        self.writer, self.run_dir, self.fmt = writer, run_dir, fmt
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.futures = []

    def submit(self, rows: pl.DataFrame, images) -> None:
        self.futures.append(self.pool.submit(self._write, rows, images))

    def _write(self, rows: pl.DataFrame, images) -> None:
        for row, png in zip(rows.iter_rows(named=True), encode_rows(rows, images)):
            meta = {k: row.get(k) for k in ROW_SCHEMA if k not in ("image", "shard")} if self.fmt == "webdataset" else None
            self.writer.add(row["item_id"], png, meta)

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> None:
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown(wait=True)


def _check_manifest(out: Path, fingerprint: str, params: dict) -> None:
    changed = settings_changed(out, "generate", fingerprint, params, ignore=("out",))
    if changed is not None:
        raise BiasampError(
            f"{out} holds images of a different generation run (changed: {'; '.join(changed) or 'the prompts'})",
            hint="pick a new --out folder, or delete the old outputs to start again; resuming needs exactly the same command",
        )


def generate_images(
    out: str | Path,
    model: str | None = None,
    *,
    occupations=None,
    templates=None,
    captions=None,
    caption_conditions: Sequence[str] | None = (CAPTION_CONDITION,),
    template_condition: str = TEMPLATE_CONDITION,
    prompts: pl.DataFrame | None = None,
    images_per_prompt: int = 10,
    seed: int = 42,
    steps: int = 50,
    guidance: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str | None = None,
    scheduler: str | None = None,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    safety_checker: bool = False,
    backend: str | object = "diffusers",
    backend_options: dict | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    image_format: str = "files",
    until_usable: int | None = None,
    max_attempts: int | None = None,
    accept: str | Callable | None = None,
    show_progress: bool = True,
) -> pl.DataFrame:
    """Draw images for every prompt into `out` and return the `generations` table.

    Prompts come from `prompts` (a `build_prompts` frame) or from `occupations` x
    `templates` and/or `captions` (see `build_prompts`). Each image gets its own seed,
    `derive_seed(seed, prompt, index)`. Resumable: the same call again after a kill
    finishes the missing shards only. With `until_usable=N`, images are drawn for a
    prompt until N pass `accept(image, row)` or `max_attempts` (default 5N) is reached;
    only accepted images enter the table, every attempt goes to `out/attempts/`.

    `backend` is a registered backend name (loaded with `model` and the model options) or
    an already-loaded backend object.
    """
    from biasamp.store import ShardedOutput, write_manifest

    out = Path(out)
    for name, value in (("images_per_prompt", images_per_prompt), ("steps", steps), ("batch_size", batch_size), ("shard_size", shard_size)):
        if int(value) < 1:
            raise BiasampError(f"{name} must be at least 1 (got {value})")
    if image_format not in FORMATS:
        raise BiasampError(f"unknown image format {image_format!r}", hint=f"use one of: {', '.join(FORMATS)}")
    for name, value in (("height", height), ("width", width)):
        if value is not None and (int(value) < 8 or int(value) % 8):
            raise BiasampError(f"{name} must be a positive multiple of 8 (got {value})")
    if prompts is None:
        prompts = build_prompts(occupations, templates, captions, caption_conditions=caption_conditions, template_condition=template_condition)
    else:
        missing = [c for c in PROMPT_SCHEMA if c not in prompts.columns]
        if missing:
            raise BiasampError(f"prompts frame is missing column(s) {', '.join(missing)}", hint="build it with biasamp.generate.build_prompts")
        prompts = prompts.select(list(PROMPT_SCHEMA)).cast(PROMPT_SCHEMA)
    keys = item_ids(prompts["condition"].to_list(), prompts["occupation"].to_list(), prompts["group"].to_list(), [0] * len(prompts))
    clashes = sorted(k for k, c in Counter(keys).items() if c > 1)
    if clashes:
        raise BiasampError(
            f"{len(clashes)} prompt(s) share an item id with another prompt, e.g. {clashes[0].rsplit('__', 1)[0]!r} "
            "(same condition, occupation and group once lower-cased and punctuation removed)",
            hint="remove duplicate occupations (e.g. 'Nurse' and 'nurse') or duplicate prompt rows",
        )
    until = until_usable is not None
    if until:
        if int(until_usable) < 1:
            raise BiasampError(f"until_usable must be at least 1 (got {until_usable})")
        max_attempts = int(max_attempts) if max_attempts is not None else 5 * int(until_usable)
        if max_attempts < until_usable:
            raise BiasampError(f"max_attempts ({max_attempts}) is below until_usable ({until_usable})")
        accept_fn, accept_name = resolve_accept(accept)
    loaded = not isinstance(backend, str)
    if loaded:
        info = backend.describe()
        model = info.get("model", model)
        revision = revision if revision is not None else info.get("revision")
    elif model is None:
        raise BiasampError("no model given", hint="pass --model HUB_ID_OR_FOLDER")
    else:
        model = model_reference(model)

    params = dict(
        model=str(model), revision=revision, backend=info["backend"] if loaded else backend,
        scheduler=info.get("scheduler") if loaded else scheduler,  # a loaded backend's own, so a resume cannot mix them
        dtype=info["dtype"] if loaded else dtype, device=info["device"] if loaded else device,
        safety_checker=bool(info.get("safety_checker", safety_checker)) if loaded else bool(safety_checker), images_per_prompt=int(images_per_prompt), seed=int(seed), steps=int(steps),
        guidance=float(guidance), height=height, width=width, negative_prompt=negative_prompt, batch_size=int(batch_size),
        shard_size=int(shard_size), image_format=image_format, until_usable=until_usable, max_attempts=max_attempts if until else None,
        accept=accept_name if until else None, backend_options=backend_options or {},
    )
    fingerprint = run_fingerprint([params, prompts.rows()])
    _check_manifest(out, fingerprint, params)

    # the shard plan (independent of the backend)
    n_prompts = len(prompts)
    if until:
        per_shard = max(1, int(shard_size) // int(until_usable))
        shards = [(k, list(range(a, min(a + per_shard, n_prompts)))) for k, a in enumerate(range(0, n_prompts, per_shard))]
    else:
        ipp = int(images_per_prompt)
        total = n_prompts * ipp
        shards = [(k, list(range(a, min(a + int(shard_size), total)))) for k, a in enumerate(range(0, total, int(shard_size)))]
    gens = ShardedOutput(out / "generations")
    attempts_out = ShardedOutput(out / "attempts") if until else None
    gens.clean_temporaries()
    if attempts_out is not None:
        attempts_out.clean_temporaries()
    clean_temporaries(out / "images")
    done = gens.done()
    todo = [(k, members) for k, members in shards if _shard_id(k) not in done]
    write_manifest(out, "generate", params, {"fingerprint": fingerprint, "n_prompts": n_prompts, "n_shards": len(shards)})

    if todo:
        if not loaded:
            opts = dict(backend_options or {})
            backend = _load(params["backend"], str(model), revision=revision, dtype=dtype, device=device, scheduler=scheduler, safety_checker=safety_checker, **opts)
        info = backend.describe()
        if height is None or width is None:
            dh, dw = backend.default_size()
            height, width = height or dh, width or dw
        ctx = row_context(info, seed=seed, model=model, revision=revision, steps=steps, guidance=guidance, width=width, height=height,
                          negative_prompt=negative_prompt, batch_size=batch_size, safety_checker=safety_checker)
        fitted = _prepare_prompts(prompts, backend)
        write_manifest(out, "generate", params, {"fingerprint": fingerprint, "n_prompts": n_prompts, "n_shards": len(shards), "resolved": {**info, "height": height, "width": width}})
        from biasamp import ui

        total_images = sum(len(m) for _, m in todo) * (int(until_usable) if until else 1)
        with ui.progress("generating images", total_images, enabled=show_progress) as advance:
            for k, members in todo:
                sid = _shard_id(k)
                if until:
                    _run_until_shard(backend, fitted, members, sid, out, ctx, gens, attempts_out, int(until_usable), max_attempts, accept_fn, accept_name, image_format, int(batch_size), advance)
                else:
                    pairs = [divmod(j, ipp) for j in members]
                    rows = _plan_rows(fitted, pairs, ctx)
                    _run_shard(backend, rows, sid, out, gens, image_format, int(batch_size), advance)
    df = gens.read()
    if df.is_empty():
        df = pl.DataFrame(schema=ROW_SCHEMA)
    from biasamp.tables import validate

    return validate(df, "generations", source=out / "generations")


def row_context(info: dict, *, seed, model, revision, steps, guidance, width, height, negative_prompt, batch_size, safety_checker) -> dict:
    """What every planned row of a run shares: the run's settings and what the loaded backend
    reports (`describe()`), the same on every engine."""
    return dict(
        base_seed=int(seed), model=str(model), revision=info.get("resolved_revision") or revision, scheduler=info.get("scheduler"), steps=int(steps),
        guidance=float(guidance), width=int(width), height=int(height), negative_prompt=negative_prompt or None,
        dtype=info.get("dtype"), device=info.get("device"), backend=info.get("backend"), batch_size=int(batch_size),
        safety_checker=bool(info.get("safety_checker", safety_checker)),  # a loaded backend knows its own
    )


def _load(name: str, model: str, **options):
    from biasamp.generate.backends import load_backend

    return load_backend(name, model, **options)


def _plan_rows(fitted: pl.DataFrame, pairs: list[tuple[int, int]], ctx: dict) -> pl.DataFrame:
    """Rows for (prompt number, index) pairs, in that order."""
    frames, start = [], 0
    for j in range(1, len(pairs) + 1):
        if j == len(pairs) or pairs[j][0] != pairs[start][0]:
            frames.append(_rows_for(fitted.slice(pairs[start][0], 1), [[i for _, i in pairs[start:j]]], ctx))
            start = j
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=ROW_SCHEMA)


def _run_shard(backend, rows: pl.DataFrame, sid: str, out: Path, gens, fmt: str, batch_size: int, advance) -> None:
    writer = ShardWriter(out / "images", sid, fmt)
    bg = _Writer(writer, out, fmt)
    try:
        nsfw_all = []
        for a in range(0, len(rows), batch_size):
            batch = rows.slice(a, batch_size)
            images, nsfw = draw(backend, batch)
            nsfw_all.extend(nsfw)
            bg.submit(batch, images)
            advance(len(batch))
        bg.finish()
        writer.commit()
    except BaseException:
        bg.cancel()
        writer.abort()
        raise
    rows = rows.with_columns(
        pl.Series("image", [writer.ref(i, out) for i in rows["item_id"]], dtype=pl.Utf8),
        pl.Series("nsfw", nsfw_all, dtype=pl.Boolean),
        pl.lit(sid).alias("shard"),
    )
    gens.commit(sid, rows)


def _run_until_shard(backend, fitted, members, sid, out, ctx, gens, attempts_out, n_usable, max_attempts, accept_fn, accept_name, fmt, batch_size, advance) -> None:
    from PIL import Image

    writer = ShardWriter(out / "images", sid, fmt)
    bg = _Writer(writer, out, fmt)
    accepted_rows, attempt_rows = [], []
    state = {p: [0, 0] for p in members}  # prompt -> [next index, accepted]
    try:
        while True:
            wanted: list[tuple[int, int]] = []
            for p in members:
                nxt, ok = state[p]
                need = min(n_usable - ok, max_attempts - nxt)
                take = min(need, batch_size - len(wanted))
                wanted.extend((p, nxt + t) for t in range(max(take, 0)))
                if len(wanted) >= batch_size:
                    break
            if not wanted:
                break
            batch = _plan_rows(fitted, wanted, ctx)
            images, nsfw = draw(backend, batch)
            batch = batch.with_columns(pl.Series("nsfw", nsfw, dtype=pl.Boolean), pl.lit(sid).alias("shard"))
            keep, keep_images, oks = [], [], []
            for (p, _), row, img in zip(wanted, batch.iter_rows(named=True), images):
                state[p][0] += 1
                good = bool(accept_fn(Image.fromarray(img), row))
                oks.append(good)
                if good:
                    state[p][1] += 1
                    keep.append(len(oks) - 1)
                    keep_images.append(img)
                    advance(1)
            attempt_rows.append(batch.with_columns(pl.Series("accepted", oks, dtype=pl.Boolean), pl.lit(accept_name).alias("filter")).select(ATTEMPT_COLUMNS))
            if keep:
                kept = batch[keep]
                accepted_rows.append(kept)
                bg.submit(kept, keep_images)
        for p in members:  # prompts that hit the cap: the bar still reaches its end
            advance(n_usable - state[p][1])
        bg.finish()
        writer.commit()
    except BaseException:
        bg.cancel()
        writer.abort()
        raise
    rows = pl.concat(accepted_rows, how="vertical") if accepted_rows else pl.DataFrame(schema=ROW_SCHEMA)
    rows = rows.with_columns(pl.Series("image", [writer.ref(i, out) for i in rows["item_id"]], dtype=pl.Utf8))
    attempts = pl.concat(attempt_rows, how="vertical") if attempt_rows else pl.DataFrame()
    attempts_out.commit(sid, attempts)
    gens.commit(sid, rows)


def regenerate_image(row: dict, backend=None, **backend_options):
    """Draw the image of one `generations` row again, alone (batch of one); a PIL image.

    Loads the row's model with its revision, scheduler, dtype, device and safety-checker
    setting unless a loaded `backend` is given (a flagged image comes back flagged). Equal
    to the stored image up to the rounding of batched arithmetic (bit-identical when the row
    was drawn in a batch of one on the same device).
    """
    from PIL import Image

    if backend is None:
        opts = dict(revision=row.get("revision"), dtype=row.get("dtype") or "auto", device=row.get("device") or "auto", scheduler=row.get("scheduler"),
                    safety_checker=bool(row.get("safety_checker")))
        opts.update(backend_options)
        backend = _load(row.get("backend") or "diffusers", row["model"], **opts)
    images, _ = backend.generate(
        [row["prompt"]], [int(row["seed"])], steps=int(row["steps"]), guidance=float(row["guidance"]),
        height=int(row["height"]), width=int(row["width"]), negative_prompt=row.get("negative_prompt"),
    )
    return Image.fromarray(images[0])
