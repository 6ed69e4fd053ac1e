"""The heavy stages with an engine choice: the same functions as the stages' own, plus
`engine=` (`"local"`, `"ray"` or an `Engine`), `address=` and `engine_options=`.

With the local engine each function simply calls the stage's own function. With another
engine, the stage's pure per-item function runs on the engine's workers, and this driver
commits each result the way the stage does locally (same shard names, same atomic
commits, same manifests), then lets the stage's own function finish the run (tables,
statistics, validation) over the committed shards. So:

- the outputs are those of the local engine (same rows, same image bytes, same labels);
- a run can be resumed with either engine, since a shard is done when its file exists;
- a task that runs twice (a retry after a worker node died) cannot duplicate a row: its
  result is committed once, by the driver, atomically.

Each engine run also writes `<stage>.engine.json` beside the stage's manifest: the engine,
the cluster's resources and how many shards it ran.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.engines import Engine, get_engine
from biasamp.errors import BiasampError
from biasamp.store import atomic_write_json


#: The stages' own functions, by (module, name); `biasamp.engines.routing` fills it while it
#: routes those names to the functions here (so these can still call the originals).
ORIGINALS: dict[tuple[str, str], Callable] = {}


def _arguments(fn: Callable, *args, **kwargs) -> dict:
    """Every argument of a call to `fn` by name, defaults filled in (what a stage's own
    function would see)."""
    import inspect

    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _own(module: str, name: str) -> Callable:
    if (module, name) in ORIGINALS:
        return ORIGINALS[(module, name)]
    import importlib

    return getattr(importlib.import_module(module), name)


def _engine(engine: str | Engine | None, address: str | None, options: dict | None) -> tuple[Engine, bool]:
    """(engine, owned): an engine built here is closed here."""
    if isinstance(engine, Engine):
        if address or options:
            raise BiasampError("pass either an Engine object or an engine name with address/options, not both")
        return engine, False
    return get_engine(engine or "local", address, **(options or {})), True


def _record(out: Path, stage: str, engine: Engine, **extra) -> None:
    atomic_write_json({"stage": stage, **engine.describe(), **extra}, Path(out) / f"{stage}.engine.json")


# ================================================================== caption query


def _query_file(path: str, *, matcher, text_column, url_column, id_column, keep, commit=None) -> tuple:
    """One input file on a worker: ("ok", format, mentions, info) or ("error", format, message).

    With `commit=(out, shard, partition)` the worker commits the file itself (atomic parts,
    then the file's marker, as the local engine does) and returns ("committed", format, None, info).
    """
    from biasamp.corpus.query import _bad_file, _commit, _parts_of, process_file
    from biasamp.corpus.readers import CorpusFile

    fmt = None
    try:
        cf = CorpusFile(path, text_column, url_column, id_column, tuple(keep))
        fmt = cf.format
        mentions, info = process_file(cf, matcher, tuple(keep))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - every reading error is reported with the file
        return ("error", fmt, str(_bad_file(path, e)))
    if commit is None:
        return ("ok", fmt, mentions, info)
    out, shard, partition = commit
    out = Path(out)
    for p in _parts_of(out / "mentions", shard):  # leftovers of a killed attempt
        p.unlink(missing_ok=True)
    _commit(out, shard, mentions, {"source": path, "shard": shard, "format": fmt, "status": "ok", **info}, partition)
    return ("committed", fmt, None, info)


def _query_file_commit(fn, task):
    path, commit = task
    return fn(path, commit=commit)


def query_corpus(
    corpus: list[str] | str,
    out: str | Path,
    *,
    engine: str | Engine | None = "local",
    address: str | None = None,
    engine_options: dict | None = None,
    occupations=None,
    lexicon: str | Path = "paper",
    names: str | None = "auto",
    synonyms: bool = False,
    text_column: str | None = None,
    url_column: str | None = None,
    id_column: str | None = None,
    keep: tuple[str, ...] | list[str] = (),
    skip_bad_files: bool = False,
    partition: str = "occupation",
    overwrite: bool = False,
    progress: bool = True,
    matcher=None,
    workers: int | None = None,
    num_cpus: float = 1,
    commit: str = "worker",
    prefilter: str = "auto",
    exact: str = "auto",
):
    """`biasamp.corpus.query.query_corpus` on an engine: one task per input file.

    Input files are read by the workers, so on a cluster they must be reachable from every
    node (object storage such as `s3://…` through fsspec, or a shared file system).
    `commit="worker"` (default): each worker writes its file's mentions parts and marker
    into `out` itself (atomically, marker last), so `out` must be on a file system every
    node sees; `commit="driver"`: the mentions come back to this driver, which writes
    them (for clusters without shared storage; the driver's writing then bounds the
    speed). Returns the stage's `QueryResult`. `num_cpus`: CPUs a task reserves.
    """
    from biasamp.corpus import query as q
    from biasamp.corpus.readers import resolve_inputs
    from biasamp.store import write_manifest

    kw = dict(occupations=occupations, lexicon=lexicon, names=names, synonyms=synonyms, text_column=text_column,
              url_column=url_column, id_column=id_column, keep=tuple(keep), skip_bad_files=skip_bad_files,
              partition=partition, progress=progress, prefilter=prefilter, exact=exact)
    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local:
            return _own("biasamp.corpus.query", "query_corpus")(corpus, out, overwrite=overwrite, matcher=matcher, workers=workers, **kw)
        if partition not in q.PARTITIONS:
            raise BiasampError(f"unknown partition {partition!r}", hint=f"one of {', '.join(q.PARTITIONS)}")
        out = Path(out)
        files = resolve_inputs(corpus)
        matcher = matcher or q.make_matcher(occupations, lexicon, names, synonyms, prefilter, exact)
        params = {
            "corpus": [str(c) for c in ([corpus] if isinstance(corpus, (str, Path)) else corpus)],
            "occupations": str(occupations) if occupations is not None and not isinstance(occupations, list) else occupations,
            "lexicon": str(lexicon),
            "names": matcher.names_backend,
            "synonyms": synonyms,
            "text_column": text_column, "url_column": url_column, "id_column": id_column,
            "keep": list(keep), "partition": partition, "skip_bad_files": skip_bad_files,
        }
        manifest = out / "query.manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            same = (old.get("matcher", {}).get("fingerprint") == matcher.fingerprint()
                    and old.get("params", {}).get("partition") == partition
                    and old.get("params", {}).get("keep", []) == list(keep))
            if not same and not overwrite:
                raise BiasampError(
                    f"{out} holds a query run with other settings (occupations, lexicon, names, keep or partition)",
                    hint="use another --out folder, or --overwrite to replace it",
                )
        if overwrite:
            for sub in ("mentions", "_progress"):
                shutil.rmtree(out / sub, ignore_errors=True)
            for f in ("files.parquet", "stats.parquet"):
                (out / f).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, "query", params, extra={"matcher": matcher.describe(), "inputs": len(files)})
        mdir = out / "mentions"
        mdir.mkdir(exist_ok=True)
        for tmp in list(mdir.rglob(".*.tmp")):
            tmp.unlink(missing_ok=True)
        done = q._markers(out)
        shards = {f: q.shard_id(f) for f in files}
        todo = [f for f in files if shards[f] not in done or done[shards[f]].get("status") != "ok"]
        if commit not in ("worker", "driver"):
            raise BiasampError(f"unknown commit mode {commit!r}", hint="worker (out on shared storage) or driver")
        fn = functools.partial(_query_file, matcher=matcher, text_column=text_column, url_column=url_column,
                               id_column=id_column, keep=tuple(keep))
        tasks = todo if commit == "driver" else [(f, (str(out.resolve()), shards[f], partition)) for f in todo]
        if commit == "worker":
            fn = functools.partial(_query_file_commit, fn)
        t0 = time.perf_counter()
        from biasamp import ui

        with ui.progress(f"query captions (files, {eng.name})", total=len(files), enabled=progress) as advance:
            advance(len(files) - len(todo))
            for i, res in eng.map(fn, tasks, num_cpus=num_cpus):
                f = todo[i]
                sh = shards[f]
                if res[0] == "committed":
                    advance()
                    continue
                for p in q._parts_of(mdir, sh):  # leftovers of a killed run
                    p.unlink()
                (out / "_progress" / f"{sh}.json").unlink(missing_ok=True)
                base = {"source": f, "shard": sh, "format": res[1]}
                if res[0] == "error":
                    if not skip_bad_files:
                        raise BiasampError(res[2])
                    q._commit(out, sh, pl.DataFrame(), {**base, "status": "skipped", "error": res[2]}, "skip")
                else:
                    q._commit(out, sh, res[2], {**base, "status": "ok", **res[3]}, partition)
                advance()
        _record(out, "query", eng, files=len(files), files_run=len(todo), commit=commit,
                seconds=round(time.perf_counter() - t0, 3))
        # every file is committed now: the stage's own function only writes the tables
        return _own("biasamp.corpus.query", "query_corpus")(corpus, out, matcher=matcher, workers=1, **{**kw, "progress": False})
    finally:
        if owned:
            eng.close()


# ================================================================== generation


class GenerateWorker:
    """One loaded generator backend per worker (one pipeline per GPU). Jobs:
    `("prepare", prompts)` -> (fitted prompts, backend description, default size);
    `("shard", shard_id, rows, batch_size)` -> (shard_id, rows + `png`, `nsfw`), drawn in the
    same batches as the local engine draws them (so the same bytes come out)."""

    def __init__(self, backend: str, model: str, options: dict, torch_threads: int | None = None):
        from biasamp.generate.backends import load_backend

        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        self.backend = load_backend(backend, model, **options)

    def __call__(self, job):
        from biasamp.generate.run import _prepare_prompts, generate_batch

        if job[0] == "prepare":
            return _prepare_prompts(job[1], self.backend), self.backend.describe(), tuple(self.backend.default_size())
        _, sid, rows, batch_size = job
        parts = [generate_batch(self.backend, rows.slice(a, batch_size)) for a in range(0, len(rows), batch_size)]
        return sid, pl.concat(parts, how="vertical")


def _gpus(eng: Engine, num_gpus: float | None) -> float:
    if num_gpus is not None:
        return float(num_gpus)
    res = eng.resources() if hasattr(eng, "resources") else {}
    return 1.0 if res.get("GPU", 0) >= 1 else 0.0


def generate_images(
    out: str | Path,
    model: str | None = None,
    *,
    engine: str | Engine | None = "local",
    address: str | None = None,
    engine_options: dict | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1,
    torch_threads: int | None = None,
    **kwargs,
) -> pl.DataFrame:
    """`biasamp.generate.generate_images` on an engine: one pipeline per worker (per GPU
    when the cluster has GPUs: `num_gpus` per worker, default 1 there, else 0), one task per
    shard, shards already written skipped (resume by shard, with either engine).

    The workers send each shard's PNG bytes back; this driver writes the images and
    commits the shard's `generations` part, as the local engine does. Keyword arguments are
    those of `generate_images` (`backend` must be a registered name, so each worker can
    load it; the "until N usable" mode runs on the local engine only). `torch_threads`:
    CPU threads of each worker's PyTorch (by default Ray's, one per reserved CPU); on CPUs,
    images are bit-identical to another run's only with the same thread count.
    """
    from biasamp.generate import run as g
    from biasamp.generate.images import FORMATS, clean_temporaries
    from biasamp.generate.prompts import PROMPT_SCHEMA, build_prompts
    from biasamp.store import ShardedOutput, write_manifest

    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local:
            return _own("biasamp.generate.run", "generate_images")(out, model, **kwargs)
        a = _arguments(g.generate_images, out, model, **kwargs)
        out = Path(out)
        if a["until_usable"] is not None:
            raise BiasampError("the 'until N usable' mode runs on the local engine only",
                               hint="drop --until-usable, or use --engine local")
        if not isinstance(a["backend"], str):
            raise BiasampError("on the ray engine the backend must be a registered name (each worker loads it)",
                               hint="pass backend='diffusers' (the default) and the model id or folder")
        if model is None:
            raise BiasampError("no model given", hint="pass --model HUB_ID_OR_FOLDER")
        for name in ("images_per_prompt", "steps", "batch_size", "shard_size"):
            if int(a[name]) < 1:
                raise BiasampError(f"{name} must be at least 1 (got {a[name]})")
        if a["image_format"] not in FORMATS:
            raise BiasampError(f"unknown image format {a['image_format']!r}", hint=f"use one of: {', '.join(FORMATS)}")
        for name in ("height", "width"):
            if a[name] is not None and (int(a[name]) < 8 or int(a[name]) % 8):
                raise BiasampError(f"{name} must be a positive multiple of 8 (got {a[name]})")
        prompts = a["prompts"]
        if prompts is None:
            prompts = build_prompts(a["occupations"], a["templates"], a["captions"], caption_conditions=a["caption_conditions"],
                                    template_condition=a["template_condition"])
        else:
            missing = [c for c in PROMPT_SCHEMA if c not in prompts.columns]
            if missing:
                raise BiasampError(f"prompts frame is missing column(s) {', '.join(missing)}", hint="build it with biasamp.generate.build_prompts")
            prompts = prompts.select(list(PROMPT_SCHEMA)).cast(PROMPT_SCHEMA)
        model = a["model"] = g.model_reference(model)  # biasamp.store's, as generate_images records it
        params = dict(
            model=str(model), revision=a["revision"], backend=a["backend"], scheduler=a["scheduler"], dtype=a["dtype"],
            device=a["device"], safety_checker=bool(a["safety_checker"]), images_per_prompt=int(a["images_per_prompt"]),
            seed=int(a["seed"]), steps=int(a["steps"]), guidance=float(a["guidance"]), height=a["height"], width=a["width"],
            negative_prompt=a["negative_prompt"], batch_size=int(a["batch_size"]), shard_size=int(a["shard_size"]),
            image_format=a["image_format"], until_usable=None, max_attempts=None, accept=None,
            backend_options=a["backend_options"] or {},
        )
        fingerprint = g.run_fingerprint([params, prompts.rows()])
        g._check_manifest(out, fingerprint, params)
        ipp, shard_size = int(a["images_per_prompt"]), int(a["shard_size"])
        total = len(prompts) * ipp
        shards = [(k, list(range(s, min(s + shard_size, total)))) for k, s in enumerate(range(0, total, shard_size))]
        gens = ShardedOutput(out / "generations")
        gens.clean_temporaries()
        clean_temporaries(out / "images")
        done = gens.done()
        todo = [(k, m) for k, m in shards if g._shard_id(k) not in done]
        write_manifest(out, "generate", params, {"fingerprint": fingerprint, "n_prompts": len(prompts), "n_shards": len(shards)})
        t0 = time.perf_counter()
        if todo:
            gpus = _gpus(eng, num_gpus)
            opts = dict(a["backend_options"] or {})
            load = dict(revision=a["revision"], dtype=a["dtype"], device=a["device"], scheduler=a["scheduler"],
                        safety_checker=a["safety_checker"], **opts)
            ctor = (a["backend"], str(model), load, torch_threads)
            size = min(len(todo), concurrency or eng.slots(num_cpus, gpus))
            pool = eng.pool(GenerateWorker, fn_constructor_args=ctor, num_gpus=gpus, num_cpus=num_cpus, concurrency=size)
            try:
                fitted, info, (dh, dw) = list(pool.map([("prepare", prompts)]))[0]
                _generate_shards(eng, pool, out, a, todo, fitted, info, dh, dw, params, fingerprint, shards, prompts, gens)
            finally:
                pool.close()
        _record(out, "generate", eng, shards=len(shards), shards_run=len(todo), seconds=round(time.perf_counter() - t0, 3))
        return _own("biasamp.generate.run", "generate_images")(out, model, **{**kwargs, "show_progress": False})
    finally:
        if owned:
            eng.close()


def _generate_shards(eng, pool, out, a, todo, fitted, info, dh, dw, params, fingerprint, shards, prompts, gens) -> None:
    """Plan the rows of the shards to do (as the local engine plans them), draw them on the
    pool, write each shard's images and commit its `generations` part."""
    from biasamp import ui
    from biasamp.generate import run as g
    from biasamp.generate.images import ShardWriter
    from biasamp.store import write_manifest

    model = str(a["model"])
    ipp, batch_size = int(a["images_per_prompt"]), int(a["batch_size"])
    height, width = a["height"] or dh, a["width"] or dw
    ctx = g.row_context(info, seed=a["seed"], model=model, revision=a["revision"], steps=a["steps"], guidance=a["guidance"],
                        width=width, height=height, negative_prompt=a["negative_prompt"], batch_size=batch_size,
                        safety_checker=a["safety_checker"])
    write_manifest(out, "generate", params, {"fingerprint": fingerprint, "n_prompts": len(prompts), "n_shards": len(shards),
                                             "resolved": {**info, "height": height, "width": width}})
    jobs = [("shard", g._shard_id(k), g._plan_rows(fitted, [divmod(j, ipp) for j in m], ctx), batch_size) for k, m in todo]
    planned = {job[1]: job[2] for job in jobs}
    fmt = a["image_format"]
    with ui.progress(f"generating images ({eng.name})", sum(len(m) for _, m in todo), enabled=a["show_progress"]) as advance:
        for _, (sid, drawn) in pool.map(jobs, ordered=False):
            rows = planned.pop(sid)
            writer = ShardWriter(out / "images", sid, fmt)
            try:
                for row, png in zip(rows.iter_rows(named=True), drawn["png"].to_list()):
                    meta = {k: row.get(k) for k in g.ROW_SCHEMA if k not in ("image", "shard")} if fmt == "webdataset" else None
                    writer.add(row["item_id"], png, meta)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            rows = rows.with_columns(
                pl.Series("image", [writer.ref(i, out) for i in rows["item_id"]], dtype=pl.Utf8),
                pl.Series("nsfw", drawn["nsfw"].to_list(), dtype=pl.Boolean),
                pl.lit(sid).alias("shard"),
            )
            gens.commit(sid, rows)
            advance(len(rows))


# ================================================================== classification


class ClassifyWorker:
    """One `Labeler` (face detector + classifier, loaded once) per worker; a job is one shard
    of `biasamp.classify.sources.discover`, labelled in batches as the local engine does."""

    def __init__(self, labeler_kwargs: dict, batch_size: int):
        from biasamp.classify.pipeline import Labeler

        self.labeler = Labeler(**labeler_kwargs)
        self.batch_size = batch_size

    def __call__(self, shard):
        from biasamp.classify.pipeline import _batched

        frames, embs = [], []
        for df, emb in self.labeler.label_stream(_batched(shard.items(), self.batch_size), shard.source):
            frames.append(df)
            if emb is not None:
                embs.append(emb)
        model = self.labeler.embedder.model_name if embs else None
        return shard.shard_id, frames, (np.concatenate(embs).astype(np.float32) if embs else None), model

    def close(self) -> None:
        self.labeler.close()


def classify_images(
    inputs,
    out: str | Path,
    *,
    engine: str | Engine | None = "local",
    address: str | None = None,
    engine_options: dict | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1,
    **kwargs,
) -> pl.DataFrame:
    """`biasamp.classify.classify_images` on an engine: an actor pool of labelers (on GPUs
    when the cluster has them and the classifier uses one), one task per input shard.

    Workers read the images themselves, so on a cluster the inputs must be on storage every
    node sees (a shared file system); labels (and embeddings) come back to this driver,
    which commits each shard as the local engine does. Keyword arguments are those of
    `classify_images`.
    """
    import io

    from biasamp.classify import pipeline as cp
    from biasamp.store import atomic_write_bytes

    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local:
            return _own("biasamp.classify.pipeline", "classify_images")(inputs, out, **kwargs)
        a = _arguments(cp.classify_images, inputs, out, **kwargs)
        out = Path(out)
        # as the local engine plans it: arguments, resume and inputs checked here, not in each actor
        plan = cp.plan_run(**{**a, "out": out})
        shards, todo, store = plan.shards, plan.todo, plan.store
        t0 = time.perf_counter()
        if todo:
            labeler_kwargs = dict(
                classifier=a["classifier"], face_detector=a["face_detector"], min_face=a["min_face"], low=a["low"],
                high=a["high"], nsfw=a["nsfw"], nsfw_model=a["nsfw_model"], embeddings=a["embeddings"],
                embed_model=a["embed_model"], workers=a["workers"], max_pixels=a["max_pixels"],
                decode_max_side=a["decode_max_side"], device=a["device"], classifier_options=a["classifier_options"],
                detector_options=a["detector_options"],
            )
            cls_gpu = a["classifier"] in ("clip", "linear-probe") or a["nsfw"] or a["embeddings"] or a["embed_model"]
            gpus = _gpus(eng, num_gpus) if cls_gpu or num_gpus else 0.0
            from biasamp import ui

            with ui.progress(f"classify ({eng.name})", sum(s.n for s in todo), enabled=a["show_progress"]) as advance:
                it = eng.map_batches(ClassifyWorker, todo, fn_constructor_args=(labeler_kwargs, int(a["batch_size"])),
                                     concurrency=concurrency, num_cpus=num_cpus, num_gpus=gpus, ordered=False)
                for _, (sid, frames, emb, emb_model) in it:
                    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
                        schema={"item_id": pl.Utf8, "label": pl.Utf8})
                    if emb is not None:
                        buf = io.BytesIO()
                        np.save(buf, emb)
                        rel = f"embeddings/{sid}.npy"
                        atomic_write_bytes(buf.getvalue(), out / rel)
                        df = df.with_columns(
                            pl.lit(rel).alias("embedding_file"),
                            pl.lit(emb_model).alias("embedding_model"),
                            pl.int_range(0, len(df), dtype=pl.Int64).alias("embedding_row"),
                        )
                    if len(df):
                        df = df.with_columns(pl.lit(sid).alias("shard"))
                    store.commit(sid, df)
                    advance(len(df))
        _record(out, "classify", eng, shards=len(shards), shards_run=len(todo), seconds=round(time.perf_counter() - t0, 3))
        return _own("biasamp.classify.pipeline", "classify_images")(inputs, out, **{**kwargs, "show_progress": False})
    finally:
        if owned:
            eng.close()


# ================================================================== text embeddings (selection)


class EmbedWorker:
    """One text embedder per worker (on a GPU when it has one); a job is one shard of texts,
    embedded as `biasamp.select.embedders.embed_to_shards` embeds it locally."""

    def __init__(self, embedder: str, model: str | None, options: dict, torch_threads: int | None = None):
        from biasamp.select.cache import CachedEmbedder
        from biasamp.select.embedders import make_embedder

        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        self.embedder = CachedEmbedder(make_embedder(embedder, model, **options), None)

    def __call__(self, job):
        shard, texts = job
        return shard, np.asarray(self.embedder.encode(texts), dtype=np.float32)


def embed_to_shards(
    texts,
    out_dir: str | Path,
    embedder: str = "minilm",
    model: str | None = None,
    *,
    engine: str | Engine | None = "local",
    address: str | None = None,
    engine_options: dict | None = None,
    ids=None,
    shard_rows: int = 100_000,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1,
    torch_threads: int | None = None,
    **kwargs,
) -> pl.DataFrame:
    """`biasamp.select.embedders.embed_to_shards` on an engine: the distinct texts cut into
    shards of `shard_rows`, each embedded by an actor pool (one model per worker, one GPU
    each when the cluster has GPUs) and written here as a LAION-style pair
    `emb_N.npy` + `emb_N.parquet`; shards already written are skipped (resume). Selection
    then reads them with the `precomputed` embedder (`--embedder precomputed --embed-model
    DIR`). `cache_dir` (the text-embedding cache) is used by the local engine only.
    """
    from biasamp.select import embedders as se

    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local:
            return _own("biasamp.select.embedders", "embed_to_shards")(texts, out_dir, embedder, model, ids=ids, shard_rows=shard_rows,
                                      cache_dir=cache_dir, show_progress=show_progress, **kwargs)
        texts, ids, keep = se.distinct_texts(texts, ids)
        out = Path(out_dir)
        parts = {shard: keep[start:start + shard_rows] for shard, start in enumerate(range(0, len(keep), shard_rows))}
        todo = [s for s in parts if not ((out / f"emb_{s}.npy").exists() and (out / f"emb_{s}.parquet").exists())]
        t0 = time.perf_counter()
        if todo:
            gpus = _gpus(eng, num_gpus)
            jobs = [(s, [texts[i] for i in parts[s]]) for s in todo]
            from biasamp import ui

            with ui.progress(f"embedding texts ({eng.name})", sum(len(parts[s]) for s in todo), enabled=show_progress) as advance:
                it = eng.map_batches(EmbedWorker, jobs, fn_constructor_args=(embedder, model, dict(kwargs), torch_threads),
                                     concurrency=concurrency, num_cpus=num_cpus, num_gpus=gpus, ordered=False)
                for _, (s, vecs) in it:
                    part = parts[s]
                    extra = {"caption_id": pl.Series([ids[i] for i in part], dtype=pl.Int64)} if ids is not None else None
                    se.save_precomputed([texts[i] for i in part], vecs, out, shard=s, extra=extra)
                    advance(len(part))
        _record(out, "embed", eng, shards=len(parts), shards_run=len(todo), seconds=round(time.perf_counter() - t0, 3))
        return pl.DataFrame([{"shard": s, "rows": len(p), "path": str(out / f"emb_{s}.npy")} for s, p in parts.items()],
                            schema={"shard": pl.Int64, "rows": pl.Int64, "path": pl.Utf8})
    finally:
        if owned:
            eng.close()


def embed_frame(
    frame: pl.DataFrame,
    *,
    engine: str | Engine | None = "local",
    address: str | None = None,
    engine_options: dict | None = None,
    embedder: str = "minilm",
    model: str | None = None,
    text_column: str = "text",
    batch_rows: int = 4096,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1,
    **kwargs,
) -> pl.DataFrame:
    """The rows of `frame` plus a `vector` column, embedded in batches of `batch_rows` by the
    stage's own batch callable (`biasamp.select.embedders.EmbedBatch`) on the engine."""
    from biasamp.select.embedders import EmbedBatch

    eng, owned = _engine(engine, address, engine_options)
    try:
        batches = [frame.slice(a, batch_rows) for a in range(0, len(frame), batch_rows)]
        if not batches:
            return EmbedBatch(embedder, model, text_column=text_column, **kwargs)(frame)
        gpus = 0.0 if eng.is_local else _gpus(eng, num_gpus)
        outs = list(eng.map_batches(EmbedBatch, batches, fn_constructor_args=(embedder, model),
                                    fn_constructor_kwargs={"text_column": text_column, **kwargs},
                                    concurrency=concurrency, num_cpus=num_cpus, num_gpus=gpus))
        return pl.concat(outs, how="vertical")
    finally:
        if owned:
            eng.close()


# ================================================================== training-image download


def _img2dataset_on_ray(address: str):
    """While active, the download source runs img2dataset with `distributor="ray"` against
    the cluster at `address` (its own process joins the cluster through RAY_ADDRESS)."""
    import contextlib
    import os

    from biasamp.images import download as dl

    @contextlib.contextmanager
    def cm():
        original = dl._i2d_config
        before = os.environ.get("RAY_ADDRESS")

        def config(urls, folder, o):
            cfg = original(urls, folder, o)
            cfg["distributor"] = "ray"
            return cfg

        dl._i2d_config = config
        os.environ["RAY_ADDRESS"] = address
        try:
            yield
        finally:
            dl._i2d_config = original
            if before is None:
                os.environ.pop("RAY_ADDRESS", None)
            else:
                os.environ["RAY_ADDRESS"] = before

    return cm()


def fetch_training_images(
    selection,
    out: str | Path,
    *,
    engine: str | Engine | None = "local",
    address: str | None = None,
    engine_options: dict | None = None,
    source: str = "download",
    **kwargs,
):
    """`biasamp.images.fetch_training_images` on an engine. With the ray engine the
    `download` source hands img2dataset's shards to the cluster (img2dataset's own
    `distributor="ray"`): each shard is one Ray task, retried by img2dataset when it fails,
    and img2dataset's incremental mode skips shards already written (resume). Workers write
    the shards themselves, so `out` must be on storage every node sees. Other sources run
    as they do locally."""
    fetch = _own("biasamp.images.fetch", "fetch_training_images")
    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local or source != "download":
            return fetch(selection, out, source=source, **kwargs)
        ray = eng._ray()
        gcs = ray.get_runtime_context().gcs_address
        t0 = time.perf_counter()
        with _img2dataset_on_ray(gcs):
            res = fetch(selection, out, source=source, **kwargs)
        _record(Path(out), "fetch", eng, seconds=round(time.perf_counter() - t0, 3), distributor="ray")
        return res
    finally:
        if owned:
            eng.close()
