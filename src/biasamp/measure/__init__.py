"""Measurement core: shares, amplification, uncertainty, tests, correction and planning.

Imports no deep-learning library. See docs/measure.md and docs/metrics.md.
"""

from biasamp.measure.core import MeasureResult, measure
from biasamp.measure.correction import Correction
from biasamp.measure.io import load_counts, load_observations, parse_fair_diffusion, read_fair_diffusion
from biasamp.measure.metrics import METRICS, Metric
from biasamp.measure.plan import Plan, plan_sample_size
from biasamp.measure.stats import benjamini_hochberg

__all__ = [
    "METRICS",
    "Correction",
    "MeasureResult",
    "Metric",
    "Plan",
    "benjamini_hochberg",
    "load_counts",
    "load_observations",
    "measure",
    "parse_fair_diffusion",
    "plan_sample_size",
    "read_fair_diffusion",
]
