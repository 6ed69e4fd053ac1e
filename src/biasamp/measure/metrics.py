"""Bias-amplification metrics, vectorised over numpy arrays, in a registry keyed by name.

Occupation-level metrics take `p_train, p_gen` (shares perceived female among confident
images, any broadcastable shape) and return percentage points. Condition-level metrics
take arrays whose axis 0 runs over the occupations of one condition (further axes, e.g.
bootstrap replicates, are carried through) and reduce over axis 0.

docs/metrics.md gives each formula, its reference and the question it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from biasamp.registry import Registry

CATEGORIES = ("amplified", "reflected", "mitigated")


@dataclass(frozen=True)
class Metric:
    """A named metric: what it computes, at which level, and where it comes from."""

    name: str
    level: str  # "occupation" (per condition × occupation) or "condition" (over occupations)
    func: Callable
    formula: str
    reference: str
    question: str
    unit: str = "percentage points"

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)


METRICS: Registry[Metric] = Registry("metric")


def _register(metric: Metric) -> Metric:
    METRICS.register(metric.name, metric, doc=metric.question)
    return metric


# --------------------------------------------------------------------------- per occupation


def share(n_female, n_confident):
    """Share perceived female among confident images (NaN-free: callers pass n > 0)."""
    return np.asarray(n_female, dtype=float) / np.asarray(n_confident, dtype=float)


def direction(p_train, fixed=None):
    """sign(p_train − 0.5); where `fixed` (broadcastable) is non-zero, that sign instead.

    Bootstrap replicates pass the observed direction as `fixed`, so that the training
    majority is the one observed (see docs/metrics.md, "Intervals")."""
    s = np.sign(np.asarray(p_train) - 0.5)
    if fixed is None:
        return s
    fixed = np.asarray(fixed)
    return np.where(fixed != 0, fixed, s)


def amplification(p_train, p_gen, fixed_direction=None):
    """The study's amplification: 100 · sign(p_train − 0.5) · (p_gen − p_train)."""
    p_train = np.asarray(p_train)
    p_gen = np.asarray(p_gen)
    return 100.0 * direction(p_train, fixed_direction) * (p_gen - p_train)


def amplification_abs(p_train, p_gen):
    """Absolute form: 100 · (|p_gen − 0.5| − |p_train − 0.5|)."""
    p_train = np.asarray(p_train)
    p_gen = np.asarray(p_gen)
    return 100.0 * (np.abs(p_gen - 0.5) - np.abs(p_train - 0.5))


def category(p_train, p_gen, band: float = 0.04):
    """Fair Diffusion's categories: reflected if |p_gen − p_train| < band, else amplified if
    |p_train − 0.5| < |p_gen − 0.5|, else mitigated."""
    p_train = np.asarray(p_train, dtype=float)
    p_gen = np.asarray(p_gen, dtype=float)
    out = np.where(
        np.abs(p_gen - p_train) < band,
        "reflected",
        np.where(np.abs(p_train - 0.5) < np.abs(p_gen - 0.5), "amplified", "mitigated"),
    )
    return out.astype(object)


def difference(p_train, p_gen):
    """p_gen − p_train in percentage points (the quantity the per-occupation test is about)."""
    return 100.0 * (np.asarray(p_gen) - np.asarray(p_train))


# --------------------------------------------------------------------------- per condition


def mean_amplification(p_train, p_gen, fixed_direction=None):
    """Mean of the study's amplification over occupations (axis 0)."""
    return amplification(p_train, p_gen, fixed_direction).mean(axis=0)


def mean_amplification_abs(p_train, p_gen):
    return amplification_abs(p_train, p_gen).mean(axis=0)


def directional_t2a_terms(n_train_female, n_train, p_gen, fixed_direction=None):
    """Per-occupation terms of Wang & Russakovsky's BiasAmp_{T→A} (percentage points).

    With the attribute binary (female/male), the two attribute terms of an occupation t are
    equal, and the metric reduces to mean_t s_t · (p_gen,t − p_train,t), with
    s_t = sign(p_train,t − P_train(female)) and P_train(female) the pooled training share
    over all occupations of the condition (ties give 0).
    """
    n_train_female = np.asarray(n_train_female, dtype=float)
    n_train = np.asarray(n_train, dtype=float)
    base = n_train_female.sum(axis=0) / n_train.sum(axis=0)
    return t2a_terms_from_base(n_train_female / n_train, p_gen, base, fixed_direction)


def t2a_terms_from_base(p_train, p_gen, base, fixed_direction=None):
    """`directional_t2a_terms` given the pooled training share `base` (broadcastable)."""
    p_train = np.asarray(p_train)
    s = np.sign(p_train - base)
    if fixed_direction is not None:
        fixed_direction = np.asarray(fixed_direction)
        s = np.where(fixed_direction != 0, fixed_direction, s)
    return 100.0 * s * (np.asarray(p_gen) - p_train)


def t2a_direction(n_train_female, n_train):
    """sign(p_train,t − P_train(female)) per occupation (axis 0)."""
    n_train_female = np.asarray(n_train_female, dtype=float)
    n_train = np.asarray(n_train, dtype=float)
    return np.sign(n_train_female / n_train - n_train_female.sum(axis=0) / n_train.sum(axis=0))


def directional_t2a(n_train_female, n_train, p_gen, fixed_direction=None):
    """Wang & Russakovsky (2021) directional bias amplification, task → attribute, in
    percentage points (mean over occupations of `directional_t2a_terms`)."""
    return directional_t2a_terms(n_train_female, n_train, p_gen, fixed_direction).mean(axis=0)


def zhao_terms(p_train, p_gen, fixed_direction=None):
    """Per-occupation terms of Zhao et al.'s BiasAmp (percentage points): the sum over
    g ∈ {female, male} of 1[b*(o,g) > 1/2] · (b̃(o,g) − b*(o,g))."""
    p_train = np.asarray(p_train, dtype=float)
    p_gen = np.asarray(p_gen, dtype=float)
    is_f = p_train > 0.5
    is_m = (1 - p_train) > 0.5
    if fixed_direction is not None:
        fixed_direction = np.asarray(fixed_direction)
        is_f = np.where(fixed_direction != 0, fixed_direction > 0, is_f)
        is_m = np.where(fixed_direction != 0, fixed_direction < 0, is_m)
    female = is_f * (p_gen - p_train)
    male = is_m * ((1 - p_gen) - (1 - p_train))
    return 100.0 * (female + male)


def zhao_biasamp(p_train, p_gen, fixed_direction=None):
    """Zhao et al. (2017) BiasAmp in percentage points:
    (1/|O|) Σ_g Σ_o 1[b*(o,g) > 1/|G|] · (b̃(o,g) − b*(o,g)), g ∈ {female, male}."""
    p_train = np.asarray(p_train, dtype=float)
    return zhao_terms(p_train, p_gen, fixed_direction).sum(axis=0) / p_train.shape[0]


_register(
    Metric(
        "amp",
        "occupation",
        amplification,
        "100 · sign(p_train − 0.5) · (p_gen − p_train)",
        "Seshadri, Singh & Elazar 2024, The Bias Amplification Paradox in Text-to-Image Generation",
        "How far do generated images move towards the training majority gender?",
    )
)
_register(
    Metric(
        "amp_abs",
        "occupation",
        amplification_abs,
        "100 · (|p_gen − 0.5| − |p_train − 0.5|)",
        "absolute form of the study's measure",
        "Are generated images further from parity than training images, whichever side?",
    )
)
_register(
    Metric(
        "category",
        "occupation",
        category,
        "reflected if |p_gen − p_train| < band; amplified if |p_train − .5| < |p_gen − .5|; else mitigated",
        "Friedrich et al. 2023, Fair Diffusion",
        "Is the training bias reflected, amplified or mitigated?",
        unit="category",
    )
)
_register(
    Metric(
        "mean_amp",
        "condition",
        mean_amplification,
        "mean over occupations of amp",
        "Seshadri, Singh & Elazar 2024",
        "On average over occupations, how much is the training majority amplified?",
    )
)
_register(
    Metric(
        "mean_amp_abs",
        "condition",
        mean_amplification_abs,
        "mean over occupations of amp_abs",
        "absolute form of the study's measure",
        "On average, how much further from parity are generated images?",
    )
)
_register(
    Metric(
        "directional_t2a",
        "condition",
        directional_t2a,
        "1/(|A||T|) Σ_a Σ_t [y_at Δ_at + (1 − y_at)(−Δ_at)], "
        "y_at = 1[P(a,t) > P(a)P(t)], Δ_at = P_gen(a|t) − P_train(a|t)",
        "Wang & Russakovsky 2021, Directional Bias Amplification (ICML)",
        "Does the task (occupation) push the attribute (gender) further than training data do, "
        "relative to the training data's overall gender balance?",
    )
)
_register(
    Metric(
        "zhao_biasamp",
        "condition",
        zhao_biasamp,
        "1/|O| Σ_g Σ_o 1[b*(o,g) > 1/|G|] (b̃(o,g) − b*(o,g))",
        "Zhao et al. 2017, Men Also Like Shopping (EMNLP)",
        "How much more does the output associate each occupation with its training-majority gender?",
    )
)
