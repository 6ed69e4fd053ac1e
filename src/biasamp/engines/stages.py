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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.engines import Engine, get_engine
from biasamp.errors import BiasampError
from biasamp.store import atomic_write_json


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


def _query_file(path: str, *, matcher, text_column, url_column, id_column, keep) -> tuple:
    """One input file on a worker: ("ok", format, mentions, info) or ("error", format, message)."""
    from biasamp.corpus.query import _bad_file, process_file
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
    return ("ok", fmt, mentions, info)


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
):
    """`biasamp.corpus.query.query_corpus` on an engine: one task per input file.

    Input files are read by the workers (so on a cluster they must be reachable from every
    node: object storage such as `s3://…` through fsspec, or a shared file system); each
    file's mentions come back to this driver, which commits them. Returns the stage's
    `QueryResult`. `num_cpus`: CPUs a task reserves.
    """
    from biasamp.corpus import query as q
    from biasamp.corpus.readers import resolve_inputs
    from biasamp.store import write_manifest

    kw = dict(occupations=occupations, lexicon=lexicon, names=names, synonyms=synonyms, text_column=text_column,
              url_column=url_column, id_column=id_column, keep=tuple(keep), skip_bad_files=skip_bad_files,
              partition=partition, progress=progress)
    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local:
            return q.query_corpus(corpus, out, overwrite=overwrite, matcher=matcher, workers=workers, **kw)
        if partition not in q.PARTITIONS:
            raise BiasampError(f"unknown partition {partition!r}", hint=f"one of {', '.join(q.PARTITIONS)}")
        out = Path(out)
        files = resolve_inputs(corpus)
        matcher = matcher or q.make_matcher(occupations, lexicon, names, synonyms)
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
        fn = functools.partial(_query_file, matcher=matcher, text_column=text_column, url_column=url_column,
                               id_column=id_column, keep=tuple(keep))
        t0 = time.perf_counter()
        from biasamp import ui

        with ui.progress(f"query captions (files, {eng.name})", total=len(files), enabled=progress) as advance:
            advance(len(files) - len(todo))
            for i, res in eng.map(fn, todo, num_cpus=num_cpus):
                f = todo[i]
                sh = shards[f]
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
        _record(out, "query", eng, files=len(files), files_run=len(todo), seconds=round(time.perf_counter() - t0, 3))
        # every file is committed now: the stage's own function only writes the tables
        return q.query_corpus(corpus, out, matcher=matcher, workers=1, **{**kw, "progress": False})
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
    import inspect

    from biasamp.generate import run as g
    from biasamp.generate.images import FORMATS, ShardWriter, clean_temporaries
    from biasamp.generate.prompts import PROMPT_SCHEMA, build_prompts
    from biasamp.store import ShardedOutput, write_manifest

    eng, owned = _engine(engine, address, engine_options)
    try:
        if eng.is_local:
            return g.generate_images(out, model, **kwargs)
        a = inspect.signature(g.generate_images).bind(out, model, **kwargs)
        a.apply_defaults()
        a = a.arguments
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
        params = dict(
            model=str(model), revision=a["revision"], backend=a["backend"], scheduler=a["scheduler"], dtype=a["dtype"],
            device=a["device"], safety_checker=bool(a["safety_checker"]), images_per_prompt=int(a["images_per_prompt"]),
            seed=int(a["seed"]), steps=int(a["steps"]), guidance=float(a["guidance"]), height=a["height"], width=a["width"],
            negative_prompt=a["negative_prompt"], batch_size=int(a["batch_size"]), shard_size=int(a["shard_size"]),
            image_format=a["image_format"], until_usable=None, max_attempts=None, accept=None,
            backend_options=a["backend_options"] or {},
        )
        fingerprint = g._fingerprint([params, prompts.rows()])
        g._check_manifest(out, fingerprint, params)
        ipp, shard_size, batch_size = int(a["images_per_prompt"]), int(a["shard_size"]), int(a["batch_size"])
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
            pool = eng.pool(GenerateWorker, fn_constructor_args=ctor, num_gpus=gpus, num_cpus=num_cpus,
                            concurrency=min(len(todo), concurrency) if concurrency else None)
            try:
                fitted, info, (dh, dw) = list(pool.map([("prepare", prompts)]))[0]
                _generate_shards(eng, pool, out, a, todo, fitted, info, dh, dw, params, fingerprint, shards, prompts, gens)
            finally:
                pool.close()
        _record(out, "generate", eng, shards=len(shards), shards_run=len(todo), seconds=round(time.perf_counter() - t0, 3))
        return g.generate_images(out, model, **{**kwargs, "show_progress": False})
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
    ctx = dict(
        base_seed=int(a["seed"]), model=str(model), revision=a["revision"], scheduler=info.get("scheduler"),
        steps=int(a["steps"]), guidance=float(a["guidance"]), width=int(width), height=int(height),
        negative_prompt=a["negative_prompt"] or None, dtype=info.get("dtype"), device=info.get("device"),
        backend=info.get("backend"), batch_size=batch_size,
    )
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
