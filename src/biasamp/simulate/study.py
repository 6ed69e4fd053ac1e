"""Simulated studies with planted truth.

A simulated study draws, per occupation, the share of women among the training images
whose captions carry no gender words (the data *comparable* to a neutral prompt), and a
more balanced (or more skewed) share among captions that do carry gender words. Each
condition samples training captions with its own mix of the two kinds, a model generates
images whose share moves a planted amount towards the majority of the comparable data, and
a classifier with set error rates labels every image (or excludes it, with a reason).

Because the model reproduces the comparable data, a comparison against captions found by
keyword (which over-represent the more balanced gendered captions) shows amplification
the model never added: the bias amplification paradox.

Output: observations in the real schema (`tables.OBSERVATIONS`), a truth table per
condition × occupation, and the settings. Seeded and reproducible: the same arguments give
the same tables, and each (condition, occupation) block draws from its own stream.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from biasamp import tables
from biasamp.errors import BiasampError
from biasamp.store import atomic_write_json, atomic_write_parquet

#: Occupations used when none are given (the first `n_occupations` of them are taken).
DEFAULT_OCCUPATIONS: tuple[str, ...] = (
    "accountant", "architect", "baker", "biologist", "butcher", "chef", "cleaner", "dentist",
    "designer", "doctor", "economist", "editor", "electrician", "engineer", "farmer",
    "firefighter", "flight attendant", "hairdresser", "journalist", "judge", "lawyer",
    "librarian", "mechanic", "nurse", "painter", "pharmacist", "photographer", "pilot",
    "plumber", "police officer", "politician", "professor", "receptionist", "scientist",
    "secretary", "singer", "social worker", "software developer", "surgeon", "tailor",
    "teacher", "translator", "truck driver", "veterinarian", "waiter", "writer",
)  # fmt: skip

#: Face-filter exclusion rates per image when none are given.
DEFAULT_TRAIN_EXCLUSIONS: Mapping[str, float] = {"no_face": 0.10, "many_faces": 0.04, "small_face": 0.03, "error": 0.005}
DEFAULT_GEN_EXCLUSIONS: Mapping[str, float] = {"no_face": 0.03, "many_faces": 0.01, "small_face": 0.01, "nsfw": 0.01}

#: Conditions the simulator knows, with where their training captions come from.
SIMULATED_CONDITIONS = tables.CONDITIONS


@dataclass
class SimulatedStudy:
    """Observations in the real schema, the planted truth, and the settings that made them."""

    observations: pl.DataFrame
    truth: pl.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write `observations.parquet`, `truth.parquet` and `simulation.json` into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "observations": atomic_write_parquet(self.observations, out / "observations.parquet"),
            "truth": atomic_write_parquet(self.truth, out / "truth.parquet"),
            "simulation": atomic_write_json({"simulated": True, **self.settings}, out / "simulation.json"),
        }
        return paths


def _check_rate(name: str, value: float, *, low: float = 0.0, high: float = 1.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BiasampError(f"simulate: {name} must be a number, got {value!r}") from None
    if not (low <= v <= high) or math.isnan(v):
        raise BiasampError(f"simulate: {name} must lie in [{low}, {high}], got {v}")
    return v


def _check_exclusions(name: str, rates: Mapping[str, float] | None, default: Mapping[str, float]) -> dict[str, float]:
    rates = dict(default if rates is None else rates)
    allowed = set(tables.EXCLUSION_REASONS) - {"ambiguous"}
    bad = sorted(set(rates) - allowed)
    if bad:
        raise BiasampError(
            f"simulate: {name} has unknown reason(s) {bad}",
            hint=f"reasons: {', '.join(sorted(allowed))} (ambiguous comes from abstention_rate)",
        )
    out = {k: _check_rate(f"{name}[{k}]", v) for k, v in rates.items()}
    if sum(out.values()) >= 1.0:
        raise BiasampError(f"simulate: {name} rates sum to {sum(out.values()):.3f}; they must sum to less than 1")
    return out


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def model_share(p_comparable: np.ndarray | float, amp_pp: np.ndarray | float) -> np.ndarray:
    """The generated share of a model that moves `amp_pp` points towards the majority of
    the comparable training share (negative: towards balance), kept inside [0.001, 0.999]."""
    p = np.asarray(p_comparable, dtype=float)
    return np.clip(p + np.sign(p - 0.5) * np.asarray(amp_pp, dtype=float) / 100.0, 0.001, 0.999)


def _amp(p_train: np.ndarray, p_gen: np.ndarray) -> np.ndarray:
    return np.sign(p_train - 0.5) * (p_gen - p_train) * 100.0


def _amp_abs(p_train: np.ndarray, p_gen: np.ndarray) -> np.ndarray:
    return (np.abs(p_gen - 0.5) - np.abs(p_train - 0.5)) * 100.0


def _observed(p: np.ndarray, sensitivity: float, specificity: float) -> np.ndarray:
    """Expected share labelled female among confident labels, given classifier errors."""
    return sensitivity * p + (1.0 - specificity) * (1.0 - p)


class _Labeller:
    """Turns true genders into labels: face filter, abstention, then a noisy classifier."""

    def __init__(self, exclusions: dict[str, float], abstention: float, sensitivity: float, specificity: float):
        self.reasons = list(exclusions)
        self.cum = np.cumsum([exclusions[r] for r in self.reasons]) if self.reasons else np.zeros(0)
        self.abstention = abstention
        self.sensitivity = sensitivity
        self.specificity = specificity

    def __call__(self, rng: np.random.Generator, female: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(female)
        u_face = rng.random(n)
        u_abst = rng.random(n)
        u_cls = rng.random(n)
        u_prob = rng.random(n)
        label = np.empty(n, dtype=object)
        p_female = np.full(n, np.nan)
        # face filter: reason k when the uniform falls in its slice of the cumulative rates
        reason_idx = np.searchsorted(self.cum, u_face, side="right") if self.reasons else np.full(n, 0)
        excluded = reason_idx < len(self.reasons)
        for k, r in enumerate(self.reasons):
            label[reason_idx == k] = r
        ok = ~excluded
        ambiguous = ok & (u_abst < self.abstention)
        label[ambiguous] = "ambiguous"
        p_female[ambiguous] = 0.1 + 0.8 * u_prob[ambiguous]
        conf = ok & ~ambiguous
        says_female = np.where(female, u_cls < self.sensitivity, u_cls >= self.specificity)
        lf = conf & says_female
        lm = conf & ~says_female
        label[lf] = "female"
        label[lm] = "male"
        p_female[lf] = 0.9 + 0.1 * u_prob[lf]
        p_female[lm] = 0.1 * u_prob[lm]
        return label, p_female


def simulate_study(
    *,
    occupations: Sequence[str] | None = None,
    n_occupations: int = 30,
    conditions: Sequence[str] = SIMULATED_CONDITIONS,
    templates: Sequence[str] | str = "prior-work",
    n_train: int = 300,
    n_gen: int = 300,
    images_per_caption: int = 2,
    true_amp: float = 0.0,
    amp_sd: float = 0.0,
    share_range: tuple[float, float] = (0.05, 0.95),
    train_shares: Sequence[float] | Mapping[str, float] | None = None,
    indicator_share: float = 0.3,
    nearest_indicator_share: float = 0.1,
    indicator_skew: float = 0.2,
    template_concentration: float | None = None,
    caption_concentration: float | None = None,
    sensitivity: float = 1.0,
    specificity: float = 1.0,
    abstention_rate: float = 0.05,
    train_exclusions: Mapping[str, float] | None = None,
    gen_exclusions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> SimulatedStudy:
    """Simulate a study with planted truth.

    Per occupation `o`:

    - `p_comparable[o]` ~ Uniform(`share_range`), or `train_shares[o]` when given (a list in
      the order of the occupations, or a mapping occupation → share): share of women among
      training images whose captions carry no gender words — what a neutral prompt is
      comparable to.
    - captions with gender words show share `0.5 + indicator_skew · (p_comparable − 0.5)`:
      `indicator_skew < 1` more balanced than the rest (the paradox), `> 1` more skewed
      (clipped to [0.001, 0.999]).
    - training side per condition: a share of captions with gender words of
      `indicator_share` (keyword; captions-as-prompts uses the very same captions),
      `nearest_indicator_share` (nearest), 0 (nearest-no-indicators, no-indicators); each
      caption is its own group with one image.
    - generated side: the model moves each prompt's comparable share `amp[o]` points towards
      its majority (`amp[o] = true_amp + amp_sd · N(0, 1)`; see `model_share`). Template
      conditions split `n_gen` images over the templates (group = template id); a template
      may shift the share (Beta with mean the model's share and concentration
      `template_concentration`, drawn once per template × occupation). captions-as-prompts
      prompts with the training captions themselves (group = caption id),
      `images_per_caption` images each; a caption with gender words prompts its own share.
    - every image then passes a face filter (`*_exclusions`: reason → rate), abstains with
      `abstention_rate` (label ambiguous) or gets a label from a classifier with the given
      `sensitivity` (P(female | woman)) and `specificity` (P(male | man)).

    The truth table holds, per condition × occupation: the true `p_train` and `p_gen`, the
    amplification the study's metric would find with a perfect classifier (`amp`,
    `amp_abs`), the planted model amplification (`model_amp`), and the shares expected among
    confident labels given the classifier's errors (`p_train_observed`, `p_gen_observed`,
    `amp_observed`).
    """
    if occupations is None:
        if n_occupations < 1:
            raise BiasampError(f"simulate: n_occupations must be at least 1, got {n_occupations}")
        occupations = list(DEFAULT_OCCUPATIONS[:n_occupations])
        occupations += [f"occupation {i + 1}" for i in range(len(occupations), n_occupations)]
    occupations = [str(o) for o in occupations]
    if not occupations:
        raise BiasampError("simulate: no occupations given")
    if len(set(occupations)) != len(occupations):
        raise BiasampError("simulate: occupations must be unique")
    conditions = list(dict.fromkeys(conditions))
    unknown = [c for c in conditions if c not in SIMULATED_CONDITIONS]
    if unknown or not conditions:
        raise BiasampError(
            f"simulate: unknown condition(s) {unknown}" if unknown else "simulate: no conditions given",
            hint=f"conditions: {', '.join(SIMULATED_CONDITIONS)}",
        )
    if isinstance(templates, str):
        from biasamp.vocab.prompts import resolve_templates

        template_ids = [t.id for t in resolve_templates(templates)]
    else:
        template_ids = [str(t) for t in templates]
    if not template_ids:
        raise BiasampError("simulate: no templates given")
    for name, v in (("n_train", n_train), ("n_gen", n_gen), ("images_per_caption", images_per_caption)):
        if int(v) < 1:
            raise BiasampError(f"simulate: {name} must be at least 1, got {v}")
    lo, hi = (_check_rate("share_range", v) for v in share_range)
    if lo > hi:
        raise BiasampError(f"simulate: share_range low {lo} is above high {hi}")
    indicator_share = _check_rate("indicator_share", indicator_share)
    nearest_indicator_share = _check_rate("nearest_indicator_share", nearest_indicator_share)
    indicator_skew = _check_rate("indicator_skew", indicator_skew, low=-10, high=10)
    sensitivity = _check_rate("sensitivity", sensitivity)
    specificity = _check_rate("specificity", specificity)
    abstention_rate = _check_rate("abstention_rate", abstention_rate, high=0.999)
    train_ex = _check_exclusions("train_exclusions", train_exclusions, DEFAULT_TRAIN_EXCLUSIONS)
    gen_ex = _check_exclusions("gen_exclusions", gen_exclusions, DEFAULT_GEN_EXCLUSIONS)
    for name, conc in (("template_concentration", template_concentration), ("caption_concentration", caption_concentration)):
        if conc is not None and not conc > 0:
            raise BiasampError(f"simulate: {name} must be positive (or omitted), got {conc}")

    n_occ = len(occupations)
    base = np.random.default_rng([seed, 0])
    p_comp = base.uniform(lo, hi, n_occ)
    if train_shares is not None:
        if isinstance(train_shares, Mapping):
            missing = [o for o in occupations if o not in train_shares]
            if missing:
                raise BiasampError(f"simulate: train_shares has no share for occupation(s) {missing[:5]}")
            given = [train_shares[o] for o in occupations]
        else:
            given = list(train_shares)
            if len(given) != n_occ:
                raise BiasampError(f"simulate: train_shares holds {len(given)} shares for {n_occ} occupations")
        p_comp = np.array([_check_rate("train_shares", v) for v in given], dtype=float)
    p_ind = np.clip(0.5 + indicator_skew * (p_comp - 0.5), 0.001, 0.999)
    amp_o = true_amp + amp_sd * base.standard_normal(n_occ)

    label_train = _Labeller(train_ex, abstention_rate, sensitivity, specificity)
    label_gen = _Labeller(gen_ex, abstention_rate, sensitivity, specificity)
    r_by_cond = {
        "keyword": indicator_share,
        "captions-as-prompts": indicator_share,
        "nearest": nearest_indicator_share,
        "nearest-no-indicators": 0.0,
        "no-indicators": 0.0,
    }
    cond_code = {c: i for i, c in enumerate(SIMULATED_CONDITIONS)}
    short = {"keyword": "kw", "captions-as-prompts": "cap", "nearest": "nn", "nearest-no-indicators": "nnni", "no-indicators": "ni"}

    blocks: list[pl.DataFrame] = []
    truth_rows: list[dict[str, Any]] = []

    def block(source: str, cond: str, occ: str, group: np.ndarray, item: np.ndarray, label: np.ndarray, pf: np.ndarray) -> None:
        n = len(label)
        blocks.append(
            pl.DataFrame(
                {
                    "source": pl.Series([source] * n, dtype=pl.Utf8),
                    "condition": pl.Series([cond] * n, dtype=pl.Utf8),
                    "occupation": pl.Series([occ] * n, dtype=pl.Utf8),
                    "group": pl.Series(group.tolist(), dtype=pl.Utf8),
                    "item_id": pl.Series(item.tolist(), dtype=pl.Utf8),
                    "label": pl.Series(label.tolist(), dtype=pl.Utf8),
                    "p_female": pl.Series(pf, dtype=pl.Float64, nan_to_null=True),
                }
            )
        )

    keyword_pool: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def captions(o: int, r: float, cond: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(caption ids, has-indicator, true female, labels, p_female) for a training sample."""
        pool_cond = "keyword" if cond in ("keyword", "captions-as-prompts") else cond
        if pool_cond == "keyword" and o in keyword_pool:
            return keyword_pool[o]
        rng = np.random.default_rng([seed, 1, cond_code[pool_cond], o])
        ind = rng.random(n_train) < r
        female = rng.random(n_train) < np.where(ind, p_ind[o], p_comp[o])
        lab, pf = label_train(rng, female)
        ids = np.array([f"{short[pool_cond]}-{o:03d}-c{k:05d}" for k in range(n_train)], dtype=object)
        out = (ids, ind, female, lab, pf)
        if pool_cond == "keyword":
            keyword_pool[o] = out
        return out

    for cond in conditions:
        r = r_by_cond[cond]
        for o, occ in enumerate(occupations):
            ids, ind, _female, lab, pf = captions(o, r, cond)
            block("train", cond, occ, ids, np.array([f"train-{i}" for i in ids], dtype=object), lab, pf)
            p_train_true = (1 - r) * p_comp[o] + r * p_ind[o]
            rng = np.random.default_rng([seed, 2, cond_code[cond], o])
            if cond == "captions-as-prompts":
                n_prompts = math.ceil(n_gen / images_per_caption)
                which = np.arange(n_prompts) % n_train
                g_share = model_share(np.where(ind[which], p_ind[o], p_comp[o]), amp_o[o])
                if caption_concentration is not None:
                    g_share = rng.beta(g_share * caption_concentration, (1 - g_share) * caption_concentration)
                per_image = np.repeat(g_share, images_per_caption)[:n_gen]
                groups = np.repeat(ids[which], images_per_caption)[:n_gen]
                # population truth: the caption mix of the training side, each prompting its own kind
                p_gen_true = (1 - r) * float(model_share(p_comp[o], amp_o[o])) + r * float(model_share(p_ind[o], amp_o[o]))
            else:
                t_share = np.full(len(template_ids), float(model_share(p_comp[o], amp_o[o])))
                if template_concentration is not None:
                    trng = np.random.default_rng([seed, 3, o])  # one draw per template × occupation, shared by conditions
                    t_share = trng.beta(t_share * template_concentration, (1 - t_share) * template_concentration)
                t_idx = np.arange(n_gen) % len(template_ids)
                per_image = t_share[t_idx]
                groups = np.array(template_ids, dtype=object)[t_idx]
                # the study's templates are fixed: the truth is the mean of their own shares
                p_gen_true = float(np.mean(per_image)) if template_concentration is not None else float(t_share[0])
            female_g = rng.random(n_gen) < per_image
            lab_g, pf_g = label_gen(rng, female_g)
            items = np.array([f"gen-{short[cond]}-{o:03d}-{k:05d}" for k in range(n_gen)], dtype=object)
            block("gen", cond, occ, groups, items, lab_g, pf_g)
            pt, pg = np.array(p_train_true), np.array(p_gen_true)
            pto, pgo = _observed(pt, sensitivity, specificity), _observed(pg, sensitivity, specificity)
            truth_rows.append(
                {
                    "condition": cond,
                    "occupation": occ,
                    "p_comparable": float(p_comp[o]),
                    "p_indicator": float(p_ind[o]),
                    "indicator_share": r,
                    "model_amp": float(amp_o[o]),
                    "p_train": float(pt),
                    "p_gen": float(pg),
                    "amp": float(_amp(pt, pg)),
                    "amp_abs": float(_amp_abs(pt, pg)),
                    "p_train_observed": float(pto),
                    "p_gen_observed": float(pgo),
                    "amp_observed": float(_amp(pto, pgo)),
                }
            )

    observations = tables.validate(pl.concat(blocks, how="vertical"), tables.OBSERVATIONS)
    truth = pl.DataFrame(truth_rows)
    settings = {
        "simulated": True,
        "seed": seed,
        "occupations": occupations,
        "conditions": conditions,
        "templates": template_ids,
        "n_train": n_train,
        "n_gen": n_gen,
        "images_per_caption": images_per_caption,
        "true_amp": true_amp,
        "amp_sd": amp_sd,
        "share_range": [lo, hi],
        "train_shares": None if train_shares is None else [float(v) for v in p_comp],
        "indicator_share": indicator_share,
        "nearest_indicator_share": nearest_indicator_share,
        "indicator_skew": indicator_skew,
        "template_concentration": template_concentration,
        "caption_concentration": caption_concentration,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "abstention_rate": abstention_rate,
        "train_exclusions": train_ex,
        "gen_exclusions": gen_ex,
    }
    return SimulatedStudy(observations, truth, settings)


def truth_summary(truth: pl.DataFrame) -> pl.DataFrame:
    """Mean planted amplification per condition (over occupations), in display order."""
    order = {c: i for i, c in enumerate(SIMULATED_CONDITIONS)}
    return (
        truth.group_by("condition")
        .agg(
            pl.len().alias("n_occupations"),
            pl.col("amp").mean().alias("mean_amp"),
            pl.col("amp_observed").mean().alias("mean_amp_observed"),
            pl.col("model_amp").mean().alias("mean_model_amp"),
        )
        .sort(pl.col("condition").replace_strict(order, default=len(order)))
    )


def load_simulation(run_dir: str | Path) -> dict[str, Any] | None:
    """The settings of a simulated study written into `run_dir`, or None."""
    p = Path(run_dir) / "simulation.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BiasampError(f"cannot read {p}: {e}") from None
