"""The report stage: gather the study's outputs at the top of the run directory, then
write the report.

The first model's measure outputs become the run's `amplification.parquet`,
`by_group.parquet`, `exclusions.parquet`, `summary.json`; every model's means go into
`models.parquet` (side by side); selection diagnostics, attrition, example images and the
exact config sit beside them for the report's sections.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from biasamp.store import atomic_write_json, atomic_write_parquet, atomic_write_text
from biasamp.study.runner import StageContext

MEASURE_FILES = ("amplification.parquet", "by_group.parquet", "exclusions.parquet", "summary.json", "observations.parquet")


def models_table(summaries: dict[str, dict]) -> pl.DataFrame:
    """One row per (model, condition): mean amplification with its CI and category counts."""
    rows = []
    for model, summ in summaries.items():
        for cond, s in (summ.get("conditions") or {}).items():
            rows.append({"model": model, "condition": cond,
                         **{k: s.get(k) for k in ("mean_amp", "mean_amp_lo", "mean_amp_hi", "mean_amp_abs",
                                                  "n_occupations", "n_flagged", "n_amplified", "n_reflected",
                                                  "n_mitigated", "n_significant")}})
    return pl.DataFrame(rows, schema_overrides={"mean_amp": pl.Float64, "mean_amp_lo": pl.Float64,
                                                "mean_amp_hi": pl.Float64, "mean_amp_abs": pl.Float64})


def _examples(gen_dir: Path, labels: pl.DataFrame | None, model: str, per_occupation: int) -> pl.DataFrame:
    from biasamp.study.pipeline import _generations

    gens = _generations(gen_dir)
    df = gens.sort("item_id").group_by("occupation", "condition", maintain_order=True).head(per_occupation)
    df = df.with_columns(
        pl.lit(model).alias("model"),
        pl.col("image").map_elements(lambda p: str((gen_dir / p).resolve()) if "::" not in p else str(gen_dir / p),
                                     return_dtype=pl.Utf8).alias("image_path"),
    )
    if labels is not None and "item_id" in labels.columns:
        df = df.join(labels.select(pl.col("item_id").cast(pl.Utf8), "label"), on="item_id", how="left")
    return df.select([c for c in ("model", "occupation", "condition", "group", "prompt", "item_id", "image_path", "label")
                      if c in df.columns])


def study_image_similarity(selection: pl.DataFrame, train_dir: Path, gen_dir: Path, gen_tables: pl.DataFrame,
                           conditions: list[str], *, n_boot: int, seed: int) -> pl.DataFrame | None:
    """Per condition × occupation: mean pairwise cosine similarity between the training
    images a condition selected and the images generated for it (the study's check that
    nearer training examples resemble the generated ones more). None without embeddings."""
    import zlib

    import numpy as np

    from biasamp.classify.embeddings import _base_and_labels, load_embeddings
    from biasamp.classify.similarity import pairwise_similarity
    from biasamp.tables import generated_condition_for
    from biasamp.study.runner import train_observations

    vectors = {}
    for side, folder in (("train", train_dir), ("gen", gen_dir)):
        base, labels = _base_and_labels(folder)
        if "embedding_file" not in labels.columns or labels["embedding_file"].drop_nulls().is_empty():
            return None
        emb = load_embeddings(labels, base)
        vectors[side] = {i: emb[k] for k, i in enumerate(labels["item_id"].cast(pl.Utf8).to_list())
                         if np.isfinite(emb[k]).all()}
    train = train_observations(selection, pl.DataFrame({"item_id": list(vectors["train"]), "label": "ok"}), conditions)
    gens = gen_tables.select(pl.col("item_id").cast(pl.Utf8), "occupation", "condition")
    rows = []
    for cond in conditions:
        src = generated_condition_for(cond)
        for occ in sorted(set(train.filter(pl.col("condition") == cond)["occupation"])):
            t_ids = train.filter((pl.col("condition") == cond) & (pl.col("occupation") == occ))["item_id"]
            g_ids = gens.filter((pl.col("condition") == src) & (pl.col("occupation") == occ))["item_id"]
            t = [vectors["train"][i] for i in t_ids if i in vectors["train"]]
            g = [vectors["gen"][i] for i in g_ids if i in vectors["gen"]]
            if not t or not g:
                continue
            rng = np.random.default_rng([seed, zlib.crc32(f"{cond}\x1f{occ}".encode())])
            r = pairwise_similarity(np.stack(t), np.stack(g), n_boot=n_boot, rng=rng)
            rows.append({"condition": cond, "occupation": occ, **r})
    return pl.DataFrame(rows) if rows else None


def run_report(ctx: StageContext) -> None:
    from biasamp.report import build_report

    cfg = ctx.config
    run = ctx.run_dir
    models = [m.name for m in cfg.models]
    primary = ctx.deps[f"measure.{models[0]}"]
    for name in MEASURE_FILES:
        if (primary / name).exists():
            shutil.copyfile(primary / name, run / name)
    summaries = {}
    amps = []
    for m in models:
        mdir = ctx.deps[f"measure.{m}"]
        summaries[m] = json.loads((mdir / "summary.json").read_text())
        amps.append(pl.read_parquet(mdir / "amplification.parquet").with_columns(pl.lit(m).alias("model")))
    atomic_write_parquet(models_table(summaries), run / "models.parquet")
    atomic_write_parquet(pl.concat(amps, how="diagonal_relaxed"), run / "amplification_models.parquet")

    sel_dir = ctx.deps["select"]
    shutil.copyfile(sel_dir / "selection.parquet", run / "selection.parquet")
    diag = sel_dir / "diagnostics"
    if diag.is_dir():
        (run / "diagnostics").mkdir(exist_ok=True)
        for f in diag.glob("*.parquet"):
            shutil.copyfile(f, run / "diagnostics" / f.name)

    from biasamp.classify import read_labels

    if "fetch" in ctx.deps:
        from biasamp.images import attrition_table

        downloads = pl.read_parquet(ctx.deps["fetch"] / "downloads.parquet")
        labels = read_labels(ctx.deps["classify-train"])
        selection = pl.read_parquet(run / "selection.parquet")
        atomic_write_parquet(attrition_table(selection, downloads, labels), run / "attrition.parquet")

    examples = []
    for m in models:
        lab = read_labels(ctx.deps[f"classify-gen.{m}"])
        examples.append(_examples(ctx.deps[f"generate.{m}"], lab, m, per_occupation=4))
    if examples:
        atomic_write_parquet(pl.concat(examples, how="diagonal_relaxed"), run / "examples.parquet")

    if (cfg.classify.embeddings or cfg.classify.embed_model) and not cfg.study.simulated:
        from biasamp.study.pipeline import _generations

        for m in models[:1]:
            sim = study_image_similarity(
                pl.read_parquet(run / "selection.parquet"), ctx.deps["classify-train"], ctx.deps[f"classify-gen.{m}"],
                _generations(ctx.deps[f"generate.{m}"]), list(cfg.selection.conditions),
                n_boot=min(cfg.measure.n_boot, 1000), seed=cfg.study.seed)
            if sim is not None:
                atomic_write_parquet(sim, run / "image_similarity.parquet")

    if cfg.measure.validation:
        # the labelled validation set behind the correction: the report shows its figures
        from biasamp.classify import validate_labels
        from biasamp.tables import read_table

        validate_labels([read_table(cfg.resolve(cfg.measure.validation))], out=run)

    atomic_write_json(cfg.model_dump(mode="json"), run / "config.json")
    if cfg.source_text:
        atomic_write_text(cfg.source_text, run / "config.toml")
    build_report(run, title=f"biasamp study: {cfg.study.name}")
