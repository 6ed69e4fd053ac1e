import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biasamp import tables
from biasamp.errors import BiasampError
from biasamp.simulate import model_share, simulate_study, truth_summary


def _shares(obs: pl.DataFrame) -> pl.DataFrame:
    """Reference: share female among confident labels per (source, condition, occupation)."""
    conf = obs.filter(pl.col("label").is_in(["female", "male"]))
    return conf.group_by("source", "condition", "occupation").agg(
        (pl.col("label") == "female").mean().alias("p"), pl.len().alias("n")
    )


def test_observations_follow_the_real_schema():
    s = simulate_study(n_occupations=4, n_train=50, n_gen=40, seed=3)
    obs = tables.validate(s.observations, tables.OBSERVATIONS)
    assert set(obs["source"].unique()) == {"train", "gen"}
    assert set(obs["condition"].unique()) == set(tables.CONDITIONS)
    assert obs["group"].null_count() == 0 and obs["item_id"].null_count() == 0
    assert set(obs["label"].unique()) <= set(tables.LABELS)
    # 4 occupations x 5 conditions x (50 + 40) images
    assert len(obs) == 4 * 5 * 90
    gen = obs.filter(pl.col("source") == "gen")
    assert gen["item_id"].n_unique() == len(gen)
    # generated groups: template ids for template conditions, training captions for captions-as-prompts
    tmpl = gen.filter(pl.col("condition") == "keyword")["group"].unique().sort().to_list()
    assert tmpl == sorted(["face", "works-as", "portrait"])
    cap = gen.filter(pl.col("condition") == "captions-as-prompts")["group"].unique()
    train_kw = obs.filter((pl.col("source") == "train") & (pl.col("condition") == "keyword"))
    assert set(cap.to_list()) <= set(train_kw["group"].to_list())
    # captions-as-prompts is measured against the very same training captions as keyword
    train_cap = obs.filter((pl.col("source") == "train") & (pl.col("condition") == "captions-as-prompts"))
    assert train_cap["item_id"].to_list() == train_kw["item_id"].to_list()
    # p_female agrees with the label: confident labels beyond 0.9 / below 0.1, exclusions by the face filter have none
    f = obs.filter(pl.col("label") == "female")["p_female"]
    m = obs.filter(pl.col("label") == "male")["p_female"]
    assert f.min() >= 0.9 and m.max() <= 0.1
    assert obs.filter(pl.col("label") == "no_face")["p_female"].null_count() == obs.filter(pl.col("label") == "no_face").height


def test_seeded_and_reproducible():
    a = simulate_study(n_occupations=3, n_train=30, n_gen=30, seed=7)
    b = simulate_study(n_occupations=3, n_train=30, n_gen=30, seed=7)
    c = simulate_study(n_occupations=3, n_train=30, n_gen=30, seed=8)
    assert a.observations.equals(b.observations) and a.truth.equals(b.truth)
    assert not a.observations.equals(c.observations)
    # a block's draws do not depend on which other conditions are simulated
    d = simulate_study(n_occupations=3, n_train=30, n_gen=30, seed=7, conditions=["nearest"])
    sel = a.observations.filter(pl.col("condition") == "nearest")
    assert sel.equals(d.observations)


def test_truth_shows_the_paradox_when_the_model_amplifies_nothing():
    s = simulate_study(n_occupations=20, n_train=10, n_gen=10, true_amp=0.0, indicator_share=0.3, indicator_skew=0.2)
    t = s.truth
    by = {r["condition"]: r["mean_amp"] for r in truth_summary(t).iter_rows(named=True)}
    assert by["nearest-no-indicators"] == pytest.approx(0, abs=1e-9)
    assert by["no-indicators"] == pytest.approx(0, abs=1e-9)
    assert by["captions-as-prompts"] == pytest.approx(0, abs=1e-9)
    assert by["keyword"] > by["nearest"] > 1.0
    # closed form: keyword amp = r (1 - skew) |p - 0.5| · 100 for each occupation
    kw = t.filter(pl.col("condition") == "keyword")
    expect = 0.3 * 0.8 * (kw["p_comparable"] - 0.5).abs() * 100
    assert np.allclose(kw["amp"].to_numpy(), expect.to_numpy())
    # the truth table's amp is the study's formula applied to its own shares
    assert np.allclose(t["amp"].to_numpy(), (np.sign(t["p_train"] - 0.5) * (t["p_gen"] - t["p_train"]) * 100).to_numpy())


def test_planted_amplification_is_reproduced_on_comparable_data():
    s = simulate_study(n_occupations=10, n_train=10, n_gen=10, true_amp=6.0, share_range=(0.1, 0.3))
    nni = s.truth.filter(pl.col("condition") == "nearest-no-indicators")
    assert np.allclose(nni["amp"].to_numpy(), 6.0)
    assert np.allclose(nni["model_amp"].to_numpy(), 6.0)
    assert model_share(0.2, 6.0) == pytest.approx(0.14) and model_share(0.8, 6.0) == pytest.approx(0.86)
    assert model_share(0.8, -6.0) == pytest.approx(0.74)


def test_empirical_shares_match_truth_with_classifier_error():
    s = simulate_study(
        n_occupations=3, n_train=6000, n_gen=6000, sensitivity=0.9, specificity=0.8, abstention_rate=0.1,
        conditions=["keyword", "nearest-no-indicators"], seed=1,
    )  # fmt: skip
    emp = _shares(s.observations)
    for r in s.truth.iter_rows(named=True):
        for src, col in (("train", "p_train_observed"), ("gen", "p_gen_observed")):
            row = emp.filter((pl.col("source") == src) & (pl.col("condition") == r["condition"]) & (pl.col("occupation") == r["occupation"]))
            p, n = row["p"][0], row["n"][0]
            se = math.sqrt(r[col] * (1 - r[col]) / n)
            assert abs(p - r[col]) < 4.5 * se, (src, r["condition"], r["occupation"], p, r[col])
    # the observed truth follows the misclassification formula
    t = s.truth
    assert np.allclose(t["p_train_observed"].to_numpy(), (0.9 * t["p_train"] + 0.2 * (1 - t["p_train"])).to_numpy())


def test_exclusion_and_abstention_rates():
    s = simulate_study(
        n_occupations=2, n_train=20000, n_gen=20000, abstention_rate=0.2,
        train_exclusions={"no_face": 0.1, "small_face": 0.05}, gen_exclusions={"nsfw": 0.02},
        conditions=["no-indicators"],
    )  # fmt: skip
    obs = s.observations
    tr = obs.filter(pl.col("source") == "train")["label"].value_counts(normalize=True)
    share = dict(zip(tr["label"], tr["proportion"]))
    assert share["no_face"] == pytest.approx(0.10, abs=0.01)
    assert share["small_face"] == pytest.approx(0.05, abs=0.01)
    assert share["ambiguous"] == pytest.approx(0.85 * 0.2, abs=0.01)
    assert "nsfw" not in share
    gen = obs.filter(pl.col("source") == "gen")["label"].value_counts(normalize=True)
    gshare = dict(zip(gen["label"], gen["proportion"]))
    assert gshare["nsfw"] == pytest.approx(0.02, abs=0.005) and "no_face" not in gshare


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"conditions": ["keyword", "bogus"]}, "unknown condition"),
        ({"sensitivity": 1.5}, "sensitivity"),
        ({"train_exclusions": {"no_face": 0.7, "many_faces": 0.4}}, "sum to"),
        ({"gen_exclusions": {"bogus": 0.1}}, "unknown reason"),
        ({"n_train": 0}, "n_train"),
        ({"occupations": ["a", "a"]}, "unique"),
        ({"templates": "no-such-set"}, "unknown template"),
        ({"share_range": (0.9, 0.1)}, "share_range"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, match):
    with pytest.raises(BiasampError, match=match):
        simulate_study(**{"n_occupations": 2, "n_train": 5, "n_gen": 5, **kwargs})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    true_amp=st.floats(-20, 20),
    skew=st.floats(-1, 2),
    r=st.floats(0, 1),
    sens=st.floats(0.5, 1),
    spec=st.floats(0.5, 1),
    conc=st.one_of(st.none(), st.floats(2, 200)),
    seed=st.integers(0, 2**31),
)
def test_any_settings_give_valid_observations_and_consistent_truth(true_amp, skew, r, sens, spec, conc, seed):
    s = simulate_study(
        n_occupations=3, n_train=12, n_gen=9, true_amp=true_amp, indicator_skew=skew, indicator_share=r,
        sensitivity=sens, specificity=spec, template_concentration=conc, caption_concentration=conc, seed=seed,
    )  # fmt: skip
    tables.validate(s.observations, tables.OBSERVATIONS)
    t = s.truth
    assert t.height == 3 * 5
    for c in ("p_train", "p_gen", "p_train_observed", "p_gen_observed"):
        assert t[c].is_between(0, 1).all()
    amp = np.sign(t["p_train_observed"] - 0.5) * (t["p_gen_observed"] - t["p_train_observed"]) * 100
    assert np.allclose(t["amp_observed"].to_numpy(), amp.to_numpy())


def test_write_and_cli(tmp_path, cli_runner):
    from biasamp.cli import app

    out = tmp_path / "sim"
    res = cli_runner.invoke(app, ["simulate", "--out", str(out), "--n-occupations", "3", "--n-train", "20", "--n-gen", "20", "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert "simulated" in res.output
    obs = tables.read_table(out / "observations.parquet", "observations")
    assert len(obs) == 3 * 5 * 40
    sim = json.loads((out / "simulation.json").read_text())
    assert sim["simulated"] is True and sim["seed"] == 5
    again = simulate_study(n_occupations=3, n_train=20, n_gen=20, seed=5)
    assert again.observations.equals(obs)
    bad = cli_runner.invoke(app, ["simulate", "--out", str(out), "--conditions", "keyword,nope"])
    assert bad.exit_code == 2 and "unknown condition" in bad.output and "Traceback" not in bad.output


def test_explicit_training_shares():
    s = simulate_study(occupations=["a", "b"], train_shares={"a": 0.2, "b": 0.7}, n_train=5, n_gen=5, conditions=["no-indicators"])
    assert s.truth["p_train"].to_list() == pytest.approx([0.2, 0.7])
    s2 = simulate_study(occupations=["a", "b"], train_shares=[0.3, 0.6], n_train=5, n_gen=5, conditions=["no-indicators"])
    assert s2.truth["p_comparable"].to_list() == pytest.approx([0.3, 0.6])
    with pytest.raises(BiasampError, match="2 occupations"):
        simulate_study(occupations=["a", "b"], train_shares=[0.3], n_train=5, n_gen=5)
    with pytest.raises(BiasampError, match="no share for"):
        simulate_study(occupations=["a", "b"], train_shares={"a": 0.3}, n_train=5, n_gen=5)


def test_no_exclusions_and_no_abstention():
    s = simulate_study(n_occupations=2, n_train=200, n_gen=200, train_exclusions={}, gen_exclusions={}, abstention_rate=0.0)
    assert set(s.observations["label"].unique()) == {"female", "male"}
    assert s.observations["p_female"].null_count() == 0
