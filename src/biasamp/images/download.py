"""The `download` source: fetch the selected captions' URLs with img2dataset.

Work is cut into *batches*: each run that finds captions not yet attempted writes their URL
list to `_fetch/batch-NNNN.urls.parquet` and downloads it into `images/batch-NNNN/` with
img2dataset (webdataset or files output, `caption_id` passed through
`save_additional_columns`, since img2dataset's `key` is positional). A batch is resumed by
img2dataset's own shard-level incremental mode if a run was killed, and a finished batch is
decoded once with Pillow and its per-caption outcome stored in
`_fetch/batch-NNNN.checked.parquet`. Re-running after completion therefore sends no request.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError
from biasamp.images import schema
from biasamp.images.verify import check_refs
from biasamp.store import atomic_write_json, atomic_write_parquet

STATE = "_fetch"
IMAGES = "images"
_SHARD_DIGITS = 5  # img2dataset's oom_shard_count default


def unique_captions(selection: pl.DataFrame) -> pl.DataFrame:
    """One row per caption_id with its URL; a caption listed with two URLs is an error."""
    if "url" not in selection.columns:
        raise BiasampError(
            "the selection has no 'url' column, so there is nothing to download",
            hint="select from a corpus that has URLs, or use --source local / --source embeddings",
        )
    nulls = selection.filter(pl.col("caption_id").is_null())
    if len(nulls):
        raise BiasampError(
            f"selection: {len(nulls)} row(s) have an empty caption_id",
            hint="every selected caption needs its caption_id",
        )
    caps = selection.select("caption_id", "url").unique(maintain_order=True)
    dup = caps.filter(pl.col("caption_id").is_duplicated())
    if len(dup):
        cid = dup["caption_id"][0]
        urls = dup.filter(pl.col("caption_id") == cid)["url"].to_list()
        raise BiasampError(
            f"selection: caption_id {cid} appears with different URLs {urls}",
            hint="a caption_id must name one caption (url + text); rebuild the selection",
        )
    return caps.sort("caption_id")


def _batches(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / STATE).glob("batch-*.json") if re.fullmatch(r"batch-\d+", p.stem))


def _shard_name(i: int) -> str:
    return f"{i:0{_SHARD_DIGITS}d}"


def _done_shards(folder: Path) -> dict[str, int]:
    """Shard name -> count, for shards img2dataset finished (their _stats.json exists)."""
    done = {}
    for p in folder.glob("*_stats.json"):
        try:
            done[p.name.split("_")[0]] = int(json.loads(p.read_text()).get("count", 0))
        except (ValueError, OSError):
            continue
    return done


def _i2d_config(urls: Path, folder: Path, o: dict) -> dict:
    reencode = o["image_size"] is not None
    cfg = dict(
        url_list=str(urls),
        output_folder=str(folder),
        input_format="parquet",
        url_col="url",
        save_additional_columns=["caption_id"],
        output_format=o["output_format"],
        timeout=o["timeout"],
        retries=o["retries"],
        processes_count=o["processes"],
        thread_count=o["threads"],
        number_sample_per_shard=o["samples_per_shard"],
        incremental_mode="incremental",
        compute_hash="sha256",
        extract_exif=False,
        enable_wandb=False,
        encode_format=o["encode_format"],
        user_agent_token=o["user_agent_token"],
        disallowed_header_directives=o["disallowed_header_directives"],
        disable_all_reencoding=not reencode,
    )
    if reencode:
        cfg.update(
            image_size=o["image_size"],
            resize_mode=o["resize_mode"],
            resize_only_if_bigger=o["resize_only_if_bigger"],
            encode_quality=o["encode_quality"],
            min_image_size=o["min_image_size"],
        )
    return cfg


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop img2dataset and the workers it started: SIGINT (its own clean-up), then SIGKILL."""
    import signal

    if os.name != "posix":
        proc.terminate()
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
    except ProcessLookupError:
        pass
    proc.wait()


def _run_img2dataset(meta: dict, out: Path, advance, log: Path) -> None:
    batch = meta["batch"]
    folder = out / IMAGES / batch
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = out / STATE / f"{batch}.config.json"
    atomic_write_json(meta["img2dataset"], cfg_path)
    env = dict(os.environ)
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    env["BIASAMP_FETCH_DEADLINE"] = str(meta["deadline"] or 0)
    env["BIASAMP_FETCH_MAX_BYTES"] = str(meta.get("max_bytes") or 0)
    before = _done_shards(folder)
    seen = set(before)
    cmd = [sys.executable, "-m", "biasamp.images._img2dataset_entry", str(cfg_path)]
    with open(log, "ab") as logf:
        # its own process group, so an interrupt can stop img2dataset's workers with it
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(out), start_new_session=os.name == "posix"
        )
        try:
            while True:
                rc = proc.poll()
                now = _done_shards(folder)
                for s in set(now) - seen:
                    advance(now[s])
                seen |= set(now)
                if rc is not None:
                    break
                time.sleep(0.1)
        except BaseException:
            _stop(proc)
            raise
    n_shards = math.ceil(meta["n"] / meta["samples_per_shard"])
    missing = [s for s in (_shard_name(i) for i in range(n_shards)) if s not in _done_shards(folder)]
    if rc != 0 or missing:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise BiasampError(
            f"img2dataset stopped before finishing {batch} (exit code {rc}, "
            f"{len(missing)} of {n_shards} shard(s) unfinished); its log is {log}\n{tail}",
            hint="fix the cause shown above and run the same command again: finished shards are kept",
        )


def _check_batch(meta: dict, out: Path, *, min_image_size: int, threads: int) -> pl.DataFrame:
    batch = meta["batch"]
    folder = out / IMAGES / batch
    fmt, ext = meta["output_format"], meta["encode_format"]
    parts = []
    for shard in sorted(_done_shards(folder)):
        p = folder / f"{shard}.parquet"
        df = pl.read_parquet(p, columns=["caption_id", "url", "key", "status", "error_message"])
        df = df.with_columns(pl.lit(shard).alias("_shard"))
        parts.append(df)
    if not parts:
        return schema.empty_downloads()
    df = pl.concat(parts, how="vertical_relaxed")
    prefix = f"{IMAGES}/{batch}"
    if fmt == "webdataset":
        ref = pl.format(prefix + "/{}.tar::{}." + ext, pl.col("_shard"), pl.col("key"))
    else:
        ref = pl.format(prefix + "/{}/{}." + ext, pl.col("_shard"), pl.col("key"))
    df = df.with_columns(
        pl.when(pl.col("status") == "success").then(ref).otherwise(None).alias("image"),
    )
    statuses = [
        schema.status_from_img2dataset(s, m) for s, m in zip(df["status"].to_list(), df["error_message"].to_list())
    ]
    received = [s == "success" or s == "failed_to_resize" for s in df["status"].to_list()]
    images = df["image"].to_list()
    ok_idx = [i for i, s in enumerate(statuses) if s == "ok"]
    # img2dataset checked the size itself when it re-encoded; otherwise check the original here
    checks = check_refs(
        [images[i] for i in ok_idx],
        out,
        min_image_size=0 if meta["img2dataset"].get("disable_all_reencoding") is False else min_image_size,
        threads=threads,
    )
    messages = df["error_message"].to_list()
    n = len(df)
    width: list = [None] * n
    height: list = [None] * n
    fmts: list = [None] * n
    shas: list = [None] * n
    for i, c in zip(ok_idx, checks):
        statuses[i] = c.status
        messages[i] = c.error_message
        width[i], height[i], fmts[i], shas[i] = c.width, c.height, c.format, c.sha256
        if c.status == "missing":  # the stored file vanished: not an image we can use
            statuses[i], received[i] = "error", True
    images = [img if s == "ok" else None for img, s in zip(images, statuses)]
    res = pl.DataFrame(
        {
            "caption_id": df["caption_id"].cast(pl.Int64),
            "item_id": df["caption_id"].cast(pl.Utf8),
            "url": df["url"],
            "status": statuses,
            "received": received,
            "error_message": messages,
            "image": images,
            "width": pl.Series(width, dtype=pl.Int64),
            "height": pl.Series(height, dtype=pl.Int64),
            "format": pl.Series(fmts, dtype=pl.Utf8),
            "sha256": pl.Series(shas, dtype=pl.Utf8),
            "source": "download",
            "batch": batch,
            "key": df["key"],
        },
        schema_overrides={"error_message": pl.Utf8, "image": pl.Utf8},
    )
    return schema.finish(res)


def fetch_download(
    selection: pl.DataFrame,
    out: str | Path,
    *,
    timeout: float = 10,
    deadline: float | None = None,
    retries: int = 0,
    processes: int = 1,
    threads: int = 64,
    output_format: str = "webdataset",
    encode_format: str = "jpg",
    image_size: int | None = None,
    resize_mode: str = "keep_ratio",
    resize_only_if_bigger: bool = True,
    encode_quality: int = 95,
    min_image_size: int = 64,
    samples_per_shard: int = 1000,
    retry_failed: bool = False,
    user_agent_token: str | None = None,
    disallowed_header_directives: list[str] | None = None,
    max_bytes: int | None = None,
    check_threads: int = 4,
    show_progress: bool = True,
) -> tuple[pl.DataFrame, dict]:
    """Download the selection's images; return (downloads table, run statistics)."""
    from biasamp.ui import progress

    if output_format not in ("webdataset", "files"):
        raise BiasampError(
            f"output format {output_format!r} is not supported for downloads",
            hint="use webdataset (tar shards) or files (one file per image)",
        )
    if timeout <= 0:
        raise BiasampError(f"timeout must be positive, got {timeout}")
    import importlib.util

    if importlib.util.find_spec("img2dataset") is None:
        raise BiasampError(
            "the download source needs img2dataset, which is not installed",
            hint="pip install 'biasamp[fetch]' (or use --source local / --source embeddings)",
        )
    out = Path(out)
    (out / STATE).mkdir(parents=True, exist_ok=True)
    caps = unique_captions(selection)
    no_url = caps.filter(pl.col("url").is_null() | (pl.col("url").str.strip_chars() == ""))
    caps = caps.filter(~pl.col("caption_id").is_in(no_url["caption_id"].implode()))
    if deadline is None:
        deadline = 3 * timeout
    opts = dict(
        timeout=timeout,
        retries=retries,
        processes=processes,
        threads=threads,
        output_format=output_format,
        encode_format=encode_format,
        image_size=image_size,
        resize_mode=resize_mode,
        resize_only_if_bigger=resize_only_if_bigger,
        encode_quality=encode_quality,
        min_image_size=min_image_size,
        samples_per_shard=samples_per_shard,
        user_agent_token=user_agent_token,
        disallowed_header_directives=disallowed_header_directives,
    )

    metas = [json.loads((out / STATE / f"{b}.json").read_text()) for b in _batches(out)]
    pending = [m for m in metas if not m.get("complete")]
    attempted: set[int] = set()
    for m in metas:
        attempted |= set(pl.read_parquet(out / STATE / f"{m['batch']}.urls.parquet", columns=["caption_id"])["caption_id"].to_list())

    def _latest(tables: list[pl.DataFrame]) -> pl.DataFrame:
        if not tables:
            return schema.empty_downloads()
        both = pl.concat(tables, how="diagonal_relaxed").sort("batch", maintain_order=True, nulls_last=False)
        return both.unique("caption_id", keep="last", maintain_order=True)  # the latest batch wins

    def _checked(m: dict) -> pl.DataFrame:
        return pl.read_parquet(out / STATE / f"{m['batch']}.checked.parquet")

    done_tables = [_checked(m) for m in metas if m.get("complete")]
    todo = caps.filter(~pl.col("caption_id").is_in(list(attempted)))
    if retry_failed and done_tables:
        prev = _latest(done_tables)
        again = prev.filter(pl.col("status").is_in(list(schema.RETRYABLE)))["caption_id"]
        todo = pl.concat([todo, caps.filter(pl.col("caption_id").is_in(again.implode()))]).unique(
            "caption_id", maintain_order=True
        )
    if len(todo):
        name = f"batch-{len(metas):04d}"
        urls = out / STATE / f"{name}.urls.parquet"
        atomic_write_parquet(todo.select("url", "caption_id"), urls)
        meta = {
            "batch": name,
            "n": len(todo),
            "samples_per_shard": samples_per_shard,
            "output_format": output_format,
            "encode_format": encode_format,
            "deadline": deadline,
            "max_bytes": max_bytes,
            "min_image_size": min_image_size,
            "complete": False,
            "img2dataset": _i2d_config(urls, out / IMAGES / name, opts),
        }
        atomic_write_json(meta, out / STATE / f"{name}.json")
        pending.append(meta)

    total = sum(m["n"] for m in pending)
    stats = {"attempted": 0, "resumed_batches": 0, "new_batches": 0, "batches": len(metas)}
    if pending:
        with progress("fetch (download)", total, enabled=show_progress) as advance:
            for m in pending:
                folder = out / IMAGES / m["batch"]
                already = sum(_done_shards(folder).values())
                if already:
                    advance(already)
                stats["attempted"] += m["n"] - already
                stats["resumed_batches" if m in metas else "new_batches"] += 1
                _run_img2dataset(m, out, advance, out / STATE / f"{m['batch']}.log")
                checked = _check_batch(m, out, min_image_size=m.get("min_image_size", min_image_size), threads=check_threads)
                atomic_write_parquet(checked, out / STATE / f"{m['batch']}.checked.parquet")
                m["complete"] = True
                atomic_write_json(m, out / STATE / f"{m['batch']}.json")
                done_tables.append(checked)
    latest = _latest(done_tables).filter(pl.col("caption_id").is_in(caps["caption_id"].implode()))
    missing_url = schema.finish(
        no_url.with_columns(
            pl.col("caption_id").cast(pl.Utf8).alias("item_id"),
            pl.lit("error").alias("status"),
            pl.lit(False).alias("received"),
            pl.lit("no url in the selection").alias("error_message"),
            pl.lit("download").alias("source"),
        )
    )
    downloads = schema.finish(pl.concat([schema.finish(latest), missing_url], how="diagonal_relaxed")).sort("caption_id")
    stats["batches"] = len(_batches(out))
    return downloads, stats
