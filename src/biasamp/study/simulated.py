"""The demo's simulated labels: what cannot be real offline, drawn from a stated model.

Offline there are no training images to download, and a random diffusion model draws no
faces. So, when `[study] simulated = true`, the training images' labels and the generated
images' labels are drawn from the model in `SimulationSection` (config.py), keyed to the
real captions the query and selection chose and to the real images the generator drew
(which the real face filter still inspects; its verdicts are kept as `real_face_status`).
Every label row says `backend = "simulated"`, and the report says the data are simulated.
"""

from __future__ import annotations

import mmh3
import numpy as np
import polars as pl

from biasamp.store import atomic_write_parquet
from biasamp.study.config import StudyConfig
from biasamp.study.runner import StageContext


def params(cfg: StudyConfig) -> dict:
    return {"simulation": cfg.simulation.model_dump(mode="json"), "seed": cfg.study.seed}


def occupation_shares(cfg: StudyConfig, occupations: list[str]) -> dict[str, float]:
    """Each occupation's share of women among images whose captions carry no gender word."""
    s = cfg.simulation
    out = {}
    for occ in occupations:
        rng = np.random.default_rng([cfg.study.seed, mmh3.hash(occ, signed=False)])
        a, b = (s.skew_a, s.skew_b) if rng.random() < 0.5 else (s.skew_b, s.skew_a)
        out[occ] = float(rng.beta(a, b))
    return out


def _share_given_indicator(cfg: StudyConfig, indicator: str, base: float) -> float:
    s = cfg.simulation
    return {"female": s.female_word_share, "male": s.male_word_share, "both": 0.5}.get(indicator, base)


def _classify(cfg: StudyConfig, truth_female: np.ndarray, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    s = cfg.simulation
    n = len(truth_female)
    says_female = np.where(truth_female, rng.random(n) < s.sensitivity, rng.random(n) >= s.specificity)
    abstain = rng.random(n) < s.abstain_rate
    p = np.where(says_female, rng.uniform(cfg.classify.female_threshold, 1.0, n),
                 rng.uniform(0.0, cfg.classify.male_threshold, n))
    p = np.where(abstain, rng.uniform(cfg.classify.male_threshold + 1e-6, cfg.classify.female_threshold - 1e-6, n), p)
    labels = np.where(abstain, "ambiguous", np.where(says_female, "female", "male"))
    return labels.tolist(), p


def _labels_frame(item_ids, source, labels, p, extra: dict | None = None) -> pl.DataFrame:
    df = pl.DataFrame({
        "item_id": [str(i) for i in item_ids],
        "source": [source] * len(item_ids),
        "face_status": ["ok"] * len(item_ids),
        "n_faces": [1] * len(item_ids),
        "p_female": p.astype(float),
        "label": labels,
        "backend": ["simulated"] * len(item_ids),
        "model": ["simulation"] * len(item_ids),
        "reason": ["simulated: no real image offline"] * len(item_ids),
    }, schema_overrides={"n_faces": pl.Int64})
    if extra:
        df = df.with_columns(**{k: pl.Series(v) for k, v in extra.items()})
    return df


def _caption_indicators(ctx: StageContext) -> pl.DataFrame:
    from biasamp.corpus.query import read_mentions

    m = read_mentions(ctx.deps["query"])
    return m.select("caption_id", "occupation", "indicator").unique("caption_id", keep="first")


def run_train_labels(ctx: StageContext) -> None:
    """Training images: one simulated perceived gender per selected caption."""
    from biasamp.tables import read_table

    cfg = ctx.config
    sel = read_table(ctx.deps["select"] / "selection.parquet", "selection")
    caps = sel.select("caption_id").unique().join(_caption_indicators(ctx), on="caption_id", how="left").sort("caption_id")
    shares = occupation_shares(cfg, sorted(caps["occupation"].drop_nulls().unique().to_list()))
    p_true = np.array([_share_given_indicator(cfg, ind or "none", shares.get(occ, 0.5))
                       for occ, ind in zip(caps["occupation"], caps["indicator"])])
    rng = np.random.default_rng([cfg.study.seed, 1])
    truth = rng.random(len(caps)) < p_true
    labels, p = _classify(cfg, truth, rng)
    atomic_write_parquet(_labels_frame(caps["caption_id"].to_list(), "train", labels, p,
                                       {"simulated": [True] * len(caps)}), ctx.out / "labels" / "part-000000.parquet")


def run_gen_labels(ctx: StageContext, model: str) -> None:
    """Generated images: the real face filter runs on the real images; the perceived
    gender is drawn from the simulation (a random model draws no faces)."""
    from biasamp.classify import classify_images

    cfg = ctx.config
    gen_dir = ctx.deps[f"generate.{model}"]
    real_dir = ctx.out / "real"
    from biasamp.study.pipeline import _generations, generation_tables

    real = classify_images([str(p) for p in generation_tables(gen_dir)], real_dir, classifier="dlib-onnx",
                           face_detector=cfg.classify.face_detector, source="gen",
                           min_face=cfg.classify.min_face_fraction, show_progress=ctx.show_progress)
    gens = _generations(gen_dir).sort("item_id")
    caps = _caption_indicators(ctx)
    occs = sorted(gens["occupation"].unique().to_list())
    shares = occupation_shares(cfg, occs)
    amp = cfg.simulation.model_amplification

    def model_share(occ: str) -> float:
        base = shares[occ]
        return float(np.clip(base + (amp if base > 0.5 else -amp), 0, 1))

    ind = dict(zip(caps["caption_id"].cast(pl.Utf8).to_list(), caps["indicator"].to_list()))
    from biasamp.generate import CAPTION_CONDITION

    p_true = np.array([
        _share_given_indicator(cfg, ind.get(str(g), "none") or "none", model_share(o)) if c == CAPTION_CONDITION
        else model_share(o)
        for o, c, g in zip(gens["occupation"], gens["condition"], gens["group"])
    ])
    rng = np.random.default_rng([cfg.study.seed, 2, mmh3.hash(model, signed=False)])
    truth = rng.random(len(gens)) < p_true
    labels, p = _classify(cfg, truth, rng)
    real_status = dict(zip(real["item_id"].cast(pl.Utf8).to_list(), real["face_status"].to_list()))
    extra = {"simulated": [True] * len(gens),
             "real_face_status": [real_status.get(str(i)) for i in gens["item_id"]]}
    atomic_write_parquet(_labels_frame(gens["item_id"].to_list(), "gen", labels, p, extra), ctx.out / "labels" / "part-000000.parquet")
