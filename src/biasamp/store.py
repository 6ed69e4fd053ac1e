"""Run directories, atomic commits and resume.

A file is written to a temporary name in the same folder and renamed into place, so a
killed run never leaves a half-written file. Work cut into shards is resumable: a shard
is done when its output exists (see `ShardedOutput`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_dir() -> Path | None:
    """Where derived, re-computable data may be kept between runs: `$BIASAMP_CACHE_DIR`,
    else `$XDG_CACHE_HOME/biasamp`, else `~/.cache/biasamp`. None if it cannot be made
    (then nothing is cached). Setting `BIASAMP_CACHE_DIR=off` turns caching off."""
    env = os.environ.get("BIASAMP_CACHE_DIR")
    if env and env.lower() in ("off", "0", "none"):
        return None
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "biasamp"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return base if os.access(base, os.W_OK) else None


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):  # mkstemp makes 0600 files; give outputs the usual umask mode
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(text: str, path: str | Path) -> Path:
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def atomic_write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)



def model_reference(model) -> str:
    """How a model is recorded (generations' and labels' model columns, probes, manifests):
    a local folder by its absolute path, so that the record means the same weights from any
    working directory and a folder of the same name elsewhere is never taken for it; a hub
    id as given."""
    local = Path(str(model)).expanduser()
    return str(local.resolve()) if local.exists() else str(model)

class ShardedOutput:
    """A folder of shard files `part-<id>.parquet`; a shard exists only once committed.

    Resume = skip the shard ids already present. Commits are atomic renames, so a shard
    is either whole or absent, and re-running never duplicates rows.
    """

    def __init__(self, folder: str | Path, prefix: str = "part"):
        self.folder = Path(folder)
        self.prefix = prefix
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, shard_id: str | int) -> Path:
        sid = f"{shard_id:06d}" if isinstance(shard_id, int) else str(shard_id)
        return self.folder / f"{self.prefix}-{sid}.parquet"

    def done(self) -> set[str]:
        n = len(self.prefix) + 1
        return {p.stem[n:] for p in self.folder.glob(f"{self.prefix}-*.parquet")}

    def is_done(self, shard_id: str | int) -> bool:
        return self.path(shard_id).exists()

    def commit(self, shard_id: str | int, df: pl.DataFrame) -> Path:
        return atomic_write_parquet(df, self.path(shard_id))

    def read(self) -> pl.DataFrame:
        files = sorted(self.folder.glob(f"{self.prefix}-*.parquet"))
        if not files:
            return pl.DataFrame()
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")

    def clean_temporaries(self) -> None:
        for p in self.folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)


def write_manifest(run_dir: str | Path, stage: str, params: dict, extra: dict | None = None) -> Path:
    """Record what produced a stage's outputs: versions, parameters, time."""
    import platform

    import biasamp

    manifest = {
        "stage": stage,
        "biasamp": biasamp.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": params,
    }
    if extra:
        manifest.update(extra)
    return atomic_write_json(manifest, Path(run_dir) / f"{stage}.manifest.json")


def fingerprint(obj) -> str:
    """A stable hash of a run's settings (JSON, keys sorted), kept in its manifest."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def settings_changed(run_dir: str | Path, stage: str, fingerprint: str, params: dict, *, ignore=()) -> list[str] | None:
    """What differs between `params` and the settings recorded by the stage's manifest in
    `run_dir`, as `name: before → now` lines; None when there is no manifest or its
    fingerprint is `fingerprint` (a resume may go on). The caller refuses the resume."""
    path = Path(run_dir) / f"{stage}.manifest.json"
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        from biasamp.errors import BiasampError

        raise BiasampError(f"{path} is unreadable", hint=f"pick a new --out folder, or delete {run_dir} to start again") from None
    if old.get("fingerprint") == fingerprint:
        return None
    before = old.get("params", {})

    def short(v) -> str:
        r = repr(v)
        return r if len(r) <= 120 else r[:117] + "..."

    return [f"{k}: {short(before.get(k))} → {short(params.get(k))}" for k in sorted(set(before) | set(params))
            if k not in ignore and before.get(k) != params.get(k)]


def iter_batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
