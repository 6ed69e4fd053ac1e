"""The study's stages, built from its config.

query → select → fetch → classify-train ┐
            └──→ generate.<model> → classify-gen.<model> → measure.<model> → report

Each stage function calls the stage's public library function; nothing here re-implements
a stage. `[study] simulated = true` (the demo) replaces the training-image labels and the
generated images' labels with draws from a stated model of the data (see `simulated.py`);
every stage that ran for real still ran, and the report says which parts are simulated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError
from biasamp.store import atomic_write_json, atomic_write_parquet
from biasamp.study.config import ModelSection, StudyConfig
from biasamp.study.runner import Stage, StageContext, _file_fingerprint, gen_observations, train_observations

SIMULATED_NOTE = (
    "Part of this study is simulated. Real: the caption corpus it was given, the caption query, the "
    "selection, image generation and the face filter. Simulated: the perceived gender of the training "
    "images and of the generated images, drawn from the model stated in the config's [simulation] section "
    "(labels with backend 'simulated'). The numbers illustrate the method; they describe no real model."
)
TEMPLATE_PROMPTED = ("keyword", "nearest", "nearest-no-indicators", "no-indicators")


def _occupations_arg(cfg: StudyConfig):
    return None if cfg.corpus.occupations == "default" else cfg.resolve(cfg.corpus.occupations)


# ---------------------------------------------------------------------------- stages


def run_query(ctx: StageContext) -> None:
    from biasamp.corpus.query import query_corpus

    c = ctx.config.corpus
    query_corpus(
        [ctx.config.resolve(p) for p in c.paths], ctx.out,
        occupations=_occupations_arg(ctx.config), lexicon=c.lexicon,
        names="auto" if c.names else None, skip_bad_files=c.skip_bad_files, progress=ctx.show_progress,
    )


def run_select(ctx: StageContext) -> None:
    from biasamp.corpus.query import read_mentions
    from biasamp.select import select_training_examples

    s = ctx.config.selection
    mentions = read_mentions(ctx.deps["query"])
    if mentions.is_empty():
        raise BiasampError(
            f"the caption query found no caption that mentions any occupation ({ctx.deps['query']})",
            hint="check [corpus] paths and occupations",
        )
    kwargs = {}
    if s.pooling:
        kwargs["pool_by"] = s.pooling
    sel = select_training_examples(
        mentions, strategies=list(s.conditions), n=s.n, k=s.k, templates=list(s.templates),
        embedder=s.embedder, model=s.embedder_model, cache_dir=ctx.run_dir / "cache" / "embeddings",
        seed=ctx.config.study.seed, show_progress=ctx.show_progress, **kwargs,
    )
    sel.write(ctx.out)


def _selection(path: Path) -> pl.DataFrame:
    from biasamp.tables import read_table

    return read_table(path / "selection.parquet", "selection")


def run_fetch(ctx: StageContext) -> None:
    from biasamp.images import fetch_training_images

    ti = ctx.config.training_images
    fetch_training_images(_selection(ctx.deps["select"]), ctx.out, source=ti.source,
                          show_progress=ctx.show_progress, **ctx.config.resolve_options(ti.options))


def _classify(ctx: StageContext, inputs, source: str) -> None:
    from biasamp.classify import classify_images

    c = ctx.config.classify
    opts = ctx.config.resolve_options(dict(c.options))
    if c.model:
        opts.setdefault("model", ctx.config.resolve_options({"model": c.model})["model"])
    classify_images(
        inputs, ctx.out, classifier=c.classifier, face_detector=c.face_detector, source=source,
        min_face=c.min_face_fraction, low=c.male_threshold, high=c.female_threshold, nsfw=c.nsfw_filter,
        embeddings=c.embeddings or c.embed_model is not None,
        embed_model=ctx.config.resolve_options({"m": c.embed_model})["m"] if c.embed_model else None,
        batch_size=c.batch_size, classifier_options=opts or None,
        show_progress=ctx.show_progress,
    )


def run_classify_train(ctx: StageContext) -> None:
    fetched = ctx.deps["fetch"]
    if (fetched / "labels.parquet").exists():  # the embeddings source labels without images
        shutil.copyfile(fetched / "labels.parquet", ctx.out / "labels" / "part-000000.parquet")
        return
    _classify(ctx, [str(fetched / "downloads.parquet")], "train")


GENERATION_PARTS = ("templates", "captions")


def _generate(ctx: StageContext, m: ModelSection) -> None:
    """Template prompts into `templates/`, training captions as prompts into `captions/`
    (each its own resumable generate run: their images-per-prompt differ); each part's
    whole table is written as `<part>/generations.parquet` (image paths relative to it)."""
    from biasamp.generate import generate_images

    cfg = ctx.config
    sel = _selection(ctx.deps["select"])
    occupations = sorted(sel["occupation"].unique().to_list())
    model = cfg.resolve(m.id) if Path(cfg.resolve(m.id)).is_dir() else m.id
    common = dict(seed=cfg.study.seed, steps=m.steps, guidance=m.guidance, height=m.height, width=m.width,
                  negative_prompt=m.negative_prompt, scheduler=m.scheduler, revision=m.revision, dtype=m.dtype,
                  device=m.device, safety_checker=m.safety_checker, backend=m.backend, batch_size=m.batch_size,
                  show_progress=ctx.show_progress)
    if any(c != "captions-as-prompts" for c in cfg.selection.conditions):
        gens = generate_images(ctx.out / "templates", model, occupations=occupations,
                               templates=list(cfg.selection.templates), images_per_prompt=m.images_per_prompt, **common)
        atomic_write_parquet(gens, ctx.out / "templates" / "generations.parquet")
    if "captions-as-prompts" in cfg.selection.conditions:
        captions = sel.filter(pl.col("condition") == "captions-as-prompts")
        gens = generate_images(ctx.out / "captions", model, captions=captions, caption_conditions=("captions-as-prompts",),
                               images_per_prompt=m.images_per_caption, **common)
        atomic_write_parquet(gens, ctx.out / "captions" / "generations.parquet")


def generation_tables(gen_dir: Path) -> list[Path]:
    """The generations tables a generate stage wrote."""
    return [gen_dir / part / "generations.parquet" for part in GENERATION_PARTS
            if (gen_dir / part / "generations.parquet").exists()]


def _generations(gen_dir: Path) -> pl.DataFrame:
    """All generated images of a stage; `image` paths made relative to `gen_dir`."""
    from biasamp.tables import read_table

    tables = generation_tables(gen_dir)
    if not tables:
        raise BiasampError(f"no generations table under {gen_dir}", hint="re-run the generate stage")
    parts = []
    for t in tables:
        df = read_table(t, "generations")
        prefix = t.parent.name + "/"
        parts.append(df.with_columns((pl.lit(prefix) + pl.col("image")).alias("image")))
    return pl.concat(parts, how="diagonal_relaxed")


def _labels(path: Path) -> pl.DataFrame:
    from biasamp.classify import read_labels

    return read_labels(path)


def _measure(ctx: StageContext, model: str) -> None:
    from biasamp.measure import Correction, measure
    from biasamp.tables import read_table

    cfg = ctx.config
    conds = list(cfg.selection.conditions)
    from biasamp.generate import CAPTION_CONDITION, TEMPLATE_CONDITION

    train = train_observations(_selection(ctx.deps["select"]), _labels(ctx.deps["classify-train"]), conds)
    gen = gen_observations(_generations(ctx.deps[f"generate.{model}"]), _labels(ctx.deps[f"classify-gen.{model}"]),
                           conds, TEMPLATE_CONDITION, CAPTION_CONDITION)
    obs = pl.concat([train, gen])
    if cfg.study.simulated:
        obs = obs.with_columns(pl.lit(True).alias("simulated"))
    atomic_write_parquet(obs, ctx.out / "observations.parquet")
    correction = None
    m = cfg.measure
    if m.validation:
        correction = Correction.from_validation(read_table(cfg.resolve(m.validation)))
    elif m.sensitivity is not None:
        correction = Correction.from_values(m.sensitivity, m.specificity)
    result = measure(obs, n_boot=m.n_boot, seed=cfg.study.seed, ci=m.ci, reflected_band=m.reflected_band,
                     correction=correction)
    result.write(ctx.out)
    if cfg.study.simulated:
        summ = json.loads((ctx.out / "summary.json").read_text())
        summ["simulated"] = True
        summ["simulated_note"] = SIMULATED_NOTE
        atomic_write_json(summ, ctx.out / "summary.json")


def build_stages(cfg: StudyConfig) -> list[Stage]:
    """The plan for `cfg`; each stage's params are exactly the settings it reads."""
    from biasamp.study import report_stage, simulated

    d = cfg.model_dump(mode="json")
    stages = [
        Stage("query", {"corpus": d["corpus"], "inputs": [_file_fingerprint(cfg.resolve(p)) for p in cfg.corpus.paths],
                        "occupations_file": (_file_fingerprint(cfg.resolve(cfg.corpus.occupations))
                                             if cfg.corpus.occupations != "default" else "default")},
              [], run_query, description="find captions that mention each occupation"),
        Stage("select", {"selection": d["selection"], "seed": cfg.study.seed}, ["query"], run_select,
              description="choose training captions per condition"),
    ]
    if cfg.study.simulated or cfg.training_images.source == "simulated":
        stages.append(Stage("classify-train", {"simulated": simulated.params(cfg)}, ["query", "select"],
                            simulated.run_train_labels, description="training-image labels (SIMULATED)"))
    else:
        stages += [
            Stage("fetch", {"training_images": d["training_images"]}, ["select"], run_fetch,
                  description=f"training images ({cfg.training_images.source})"),
            Stage("classify-train", {"classify": d["classify"]}, ["fetch"], run_classify_train,
                  description="label training images"),
        ]
    measures = []
    for m in cfg.models:
        md = m.model_dump(mode="json")
        md["id_fingerprint"] = _file_fingerprint(cfg.resolve(m.id)) if Path(cfg.resolve(m.id)).is_dir() else m.id
        stages.append(Stage(f"generate.{m.name}", {"model": md, "templates": d["selection"]["templates"],
                                                   "seed": cfg.study.seed}, ["select"],
                            lambda ctx, m=m: _generate(ctx, m), description=f"generate images with {m.name}"))
        cls_deps = [f"generate.{m.name}"]
        if cfg.study.simulated:
            stages.append(Stage(f"classify-gen.{m.name}", {"classify": d["classify"], "simulated": simulated.params(cfg)},
                                ["query", "select", f"generate.{m.name}"],
                                lambda ctx, m=m: simulated.run_gen_labels(ctx, m.name),
                                description=f"label {m.name}'s images (face filter real, labels SIMULATED)"))
        else:
            stages.append(Stage(f"classify-gen.{m.name}", {"classify": d["classify"]}, cls_deps,
                                lambda ctx, m=m: _classify(ctx, [str(p) for p in generation_tables(ctx.deps[f"generate.{m.name}"])], "gen"),
                                description=f"label {m.name}'s images"))
        deps = ["select", "classify-train", f"generate.{m.name}", f"classify-gen.{m.name}"]
        stages.append(Stage(f"measure.{m.name}", {"measure": d["measure"], "conditions": d["selection"]["conditions"],
                                                   "seed": cfg.study.seed, "simulated": cfg.study.simulated}, deps,
                            lambda ctx, m=m: _measure(ctx, m.name), description=f"amplification for {m.name}"))
        measures.append(f"measure.{m.name}")
    report_deps = [s.name for s in stages if s.name not in ("query",)]
    stages.append(Stage("report", {"models": [m.name for m in cfg.models], "config": d}, report_deps,
                        report_stage.run_report, description="tables, figures, report/index.html"))
    return stages
