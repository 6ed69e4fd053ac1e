"""Sample-size planning checked against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from biasamp.errors import BiasampError
from biasamp.measure import plan_sample_size


def test_half_width_closed_form():
    p = plan_sample_size(half_width=3, p_train=0.5)
    z = norm.ppf(0.975)
    assert p.n_gen == p.n_train == math.ceil(z**2 * (0.25 + 0.25) / 0.03**2)
    assert p.achieved <= 3.0
    assert plan_sample_size(half_width=3, p_train=0.5, keep_rate=0.5).images_gen == 2 * p.n_gen


def test_half_width_by_simulation():
    p = plan_sample_size(half_width=4, p_train=0.3)
    rng = np.random.default_rng(0)
    d = rng.binomial(p.n_gen, 0.3, 200_000) / p.n_gen - rng.binomial(p.n_train, 0.3, 200_000) / p.n_train
    assert 100 * 1.959964 * d.std() == pytest.approx(4.0, rel=0.02)


@pytest.mark.parametrize("p_train, amp", [(0.3, 5.0), (0.8, 8.0), (0.5, 6.0)])
def test_power_by_simulation(p_train, amp):
    plan = plan_sample_size(amplification=amp, p_train=p_train, power=0.8)
    s = math.copysign(1, p_train - 0.5) if p_train != 0.5 else 1
    assert plan.p_gen == pytest.approx(p_train + s * amp / 100)
    rng = np.random.default_rng(1)
    sims = 40_000
    x = rng.binomial(plan.n_train, p_train, sims) / plan.n_train
    y = rng.binomial(plan.n_gen, plan.p_gen, sims) / plan.n_gen
    se = np.sqrt(x * (1 - x) / plan.n_train + y * (1 - y) / plan.n_gen)
    power = np.mean(np.abs(y - x) / se > norm.ppf(0.975))
    assert power == pytest.approx(0.8, abs=0.02)


def test_fixed_training_sample_and_infeasible():
    p = plan_sample_size(half_width=5, p_train=0.4, n_train=5000)
    assert p.n_train == 5000 and p.n_gen < plan_sample_size(half_width=5, p_train=0.4).n_gen * 1.0 + 1
    assert p.achieved <= 5.0
    with pytest.raises(BiasampError, match="cannot be reached"):
        plan_sample_size(half_width=1, p_train=0.5, n_train=100)


def test_design_effect_and_occupations_scale():
    base = plan_sample_size(amplification=5, p_train=0.3).n_gen
    assert plan_sample_size(amplification=5, p_train=0.3, design_effect=2).n_gen == pytest.approx(2 * base, abs=2)
    assert plan_sample_size(amplification=5, p_train=0.3, n_occupations=10).n_gen == pytest.approx(base / 10, abs=2)


def test_plan_errors():
    with pytest.raises(BiasampError, match="exactly one target"):
        plan_sample_size()
    with pytest.raises(BiasampError, match="outside"):
        plan_sample_size(amplification=30, p_train=0.9)
    with pytest.raises(BiasampError, match="non-zero"):
        plan_sample_size(amplification=0)


def test_cli_plan(cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["plan", "--amplification", "5", "--p-train", "0.3"])
    assert r.exit_code == 0, r.output
    assert str(plan_sample_size(amplification=5, p_train=0.3).n_gen) in r.output
    r = cli_runner.invoke(app, ["plan"])
    assert r.exit_code == 2 and "exactly one target" in r.output
