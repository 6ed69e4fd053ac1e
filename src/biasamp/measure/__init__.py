"""Measurement core: shares, amplification, uncertainty, tests, correction and planning.

Imports no deep-learning library. See docs/measure.md and docs/metrics.md. Names are
imported on first use, so `biasamp --help` does not pay for numpy/scipy/polars here.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MeasureResult": "biasamp.measure.core",
    "measure": "biasamp.measure.core",
    "Correction": "biasamp.measure.correction",
    "load_counts": "biasamp.measure.io",
    "load_observations": "biasamp.measure.io",
    "parse_fair_diffusion": "biasamp.measure.io",
    "read_fair_diffusion": "biasamp.measure.io",
    "METRICS": "biasamp.measure.metrics",
    "Metric": "biasamp.measure.metrics",
    "Plan": "biasamp.measure.plan",
    "plan_sample_size": "biasamp.measure.plan",
    "benjamini_hochberg": "biasamp.measure.stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'biasamp.measure' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
