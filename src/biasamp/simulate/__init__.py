"""Simulated studies with planted truth: observations in the real schema plus the truth
they were drawn from, for testing the measurement, checking CI coverage, and the demo."""

from biasamp.simulate.study import (
    DEFAULT_OCCUPATIONS,
    SimulatedStudy,
    load_simulation,
    model_share,
    simulate_study,
    truth_summary,
)

__all__ = ["DEFAULT_OCCUPATIONS", "SimulatedStudy", "load_simulation", "model_share", "simulate_study", "truth_summary"]
