"""End to end: the published Fair Diffusion counts, observations with templates, outputs
and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.measure import measure, read_fair_diffusion

PROJECT_ROOT = Path(__file__).resolve().parents[2]

CONTRACT = [
    "condition", "occupation", "n_train", "n_train_female", "n_train_excluded", "n_gen", "n_gen_female",
    "n_gen_excluded", "p_train", "p_train_lo", "p_train_hi", "p_gen", "p_gen_lo", "p_gen_hi", "amp", "amp_lo",
    "amp_hi", "amp_abs", "amp_abs_lo", "amp_abs_hi", "p_value", "q_value", "category", "flag",
]  # fmt: skip
SUMMARY_KEYS = [
    "n_occupations", "n_flagged", "mean_amp", "mean_amp_lo", "mean_amp_hi", "mean_amp_abs", "mean_amp_abs_lo",
    "mean_amp_abs_hi", "n_amplified", "n_reflected", "n_mitigated", "n_significant", "directional_t2a",
    "directional_t2a_lo", "directional_t2a_hi", "zhao_biasamp", "zhao_biasamp_lo", "zhao_biasamp_hi",
]  # fmt: skip


def _fd(fair_diffusion_dir, gen="results_fairface_generated_1-5.txt", condition="keyword"):
    return read_fair_diffusion(fair_diffusion_dir / "results_fairface_laion.txt", fair_diffusion_dir / gen, condition)


def _pandas_reference(fair_diffusion_dir):
    """Independent computation with pandas, straight from the text files."""

    def read(name):
        lines = [ln.strip() for ln in (fair_diffusion_dir / name).read_text().splitlines() if ln.strip()]
        rows = []
        for occ, counts in zip(lines[0::2], lines[1::2]):
            d = {k.strip(): int(v) for k, v in (p.split(":") for p in counts.split(","))}
            rows.append({"occupation": occ, "man": d["man"], "woman": d["woman"]})
        return pd.DataFrame(rows).set_index("occupation")

    t, g = read("results_fairface_laion.txt"), read("results_fairface_generated_1-5.txt")
    df = pd.DataFrame({"p_train": t.woman / (t.man + t.woman), "p_gen": g.woman / (g.man + g.woman)})
    df["amp"] = 100 * np.sign(df.p_train - 0.5) * (df.p_gen - df.p_train)
    df["amp_abs"] = 100 * ((df.p_gen - 0.5).abs() - (df.p_train - 0.5).abs())
    df["category"] = np.where(
        (df.p_gen - df.p_train).abs() < 0.04,
        "reflected",
        np.where((df.p_train - 0.5).abs() < (df.p_gen - 0.5).abs(), "amplified", "mitigated"),
    )
    return df


def test_fair_diffusion_matches_pandas_reference(fair_diffusion_dir):
    r = measure(_fd(fair_diffusion_dir), n_boot=400, seed=0)
    ref = _pandas_reference(fair_diffusion_dir)
    a = r.amplification.to_pandas().set_index("occupation").loc[ref.index]
    for col in ("p_train", "p_gen", "amp", "amp_abs"):
        np.testing.assert_allclose(a[col], ref[col], atol=1e-12)
    assert (a["category"] == ref["category"]).all()
    s = r.summary["conditions"]["keyword"]
    assert s["n_occupations"] == 153 and s["n_flagged"] == 0
    assert s["mean_amp"] == pytest.approx(ref["amp"].mean())
    assert s["mean_amp_abs"] == pytest.approx(ref["amp_abs"].mean())
    counts = ref["category"].value_counts()
    assert (s["n_amplified"], s["n_reflected"], s["n_mitigated"]) == tuple(
        int(counts.get(c, 0)) for c in ("amplified", "reflected", "mitigated")
    )
    assert s["mean_amp_lo"] < s["mean_amp"] < s["mean_amp_hi"]
    assert (a["amp_lo"] <= a["amp"] + 1e-4).all() and (a["amp"] <= a["amp_hi"] + 1e-4).all()
    assert ((a["q_value"] >= a["p_value"] - 1e-12) & (a["q_value"] <= 1)).all()
    assert s["n_significant"] == int((a["q_value"] < 0.05).sum())


def test_fair_diffusion_guidance_lowers_amplification(fair_diffusion_dir):
    both = pl.concat([_fd(fair_diffusion_dir), _fd(fair_diffusion_dir, "results_fairface_edited_1-5.txt", "fair-diffusion")])
    s = measure(both, n_boot=300).summary["conditions"]
    assert set(s) == {"keyword", "fair-diffusion"}
    assert s["fair-diffusion"]["mean_amp_abs"] < s["keyword"]["mean_amp_abs"]


def test_outputs_follow_the_contract(fair_diffusion_dir, tmp_path):
    r = measure(_fd(fair_diffusion_dir), n_boot=200)
    paths = r.write(tmp_path)
    assert {p.name for p in paths} >= {"amplification.parquet", "by_group.parquet", "exclusions.parquet", "summary.json"}
    a = pl.read_parquet(tmp_path / "amplification.parquet")
    assert all(c in a.columns for c in CONTRACT)
    assert set(pl.read_parquet(tmp_path / "exclusions.parquet").columns) == {"source", "condition", "occupation", "reason", "n"}
    bg = pl.read_parquet(tmp_path / "by_group.parquet")
    assert {"condition", "group", "occupation", "p_gen", "amp", "amp_lo", "amp_hi"} <= set(bg.columns)

    def no_nan(x):
        raise AssertionError(f"non-finite number {x} in summary.json")

    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=no_nan)
    assert all(k in summary["conditions"]["keyword"] for k in SUMMARY_KEYS)
    assert summary["settings"]["n_boot"] == 200 and summary["settings"]["seed"] == 0
    assert summary["settings"]["ci"] == 0.95 and summary["settings"]["reflected_band"] == 0.04


def _observations(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(8):
        pt = rng.uniform(0.2, 0.8)
        for i in range(120):
            lab = "female" if rng.random() < pt else "male"
            rows.append(("train", "keyword", f"occ{o}", f"cap{o}-{i}", lab if rng.random() > 0.05 else "no_face"))
        for t in range(3):
            for i in range(40):
                lab = "female" if rng.random() < np.clip(pt + 0.1 * np.sign(pt - 0.5), 0, 1) else "male"
                rows.append(("gen", "keyword", f"occ{o}", f"template{t}", lab if rng.random() > 0.1 else "ambiguous"))
    return pl.DataFrame(rows, schema=["source", "condition", "occupation", "group", "label"], orient="row")


def test_observations_by_group():
    obs = _observations()
    r = measure(obs, n_boot=300)
    bg = r.by_group
    assert len(bg) == 8 * 3 and bg["flag"].null_count() == len(bg)
    # each group's share is its own images' share
    sub = obs.filter((pl.col("source") == "gen") & (pl.col("group") == "template1") & (pl.col("occupation") == "occ2"))
    conf = sub.filter(pl.col("label").is_in(["female", "male"]))
    row = bg.filter((pl.col("group") == "template1") & (pl.col("occupation") == "occ2")).row(0, named=True)
    assert row["n_gen"] == len(conf)
    assert row["p_gen"] == pytest.approx((conf["label"] == "female").mean())
    assert row["p_gen_lo"] <= row["p_gen"] <= row["p_gen_hi"]
    g = r.summary["by_group"]["keyword"]
    assert set(g) == {"template0", "template1", "template2"}
    assert g["template1"]["n_occupations"] == 8
    assert g["template1"]["mean_amp"] == pytest.approx(bg.filter(pl.col("group") == "template1")["amp"].mean())
    # captions (one image each) are not broken out; the occupation counts all images
    a = r.amplification.filter(pl.col("occupation") == "occ2").row(0, named=True)
    assert a["n_gen_groups"] == 3 and a["n_train_groups"] > 100
    assert a["n_gen_excluded"] == a["n_gen_excl_ambiguous"] > 0


def test_print_is_readable(capsys, fair_diffusion_dir):
    measure(_fd(fair_diffusion_dir), n_boot=50).print(max_rows=5)
    out = capsys.readouterr().out
    assert "Amplification per condition" in out and "more rows" in out


def test_cli_fair_diffusion_from_project_root(fair_diffusion_dir, tmp_path):
    rel = os.path.relpath(fair_diffusion_dir, PROJECT_ROOT)
    cmd = [sys.executable, "-m", "biasamp.cli", "measure",
           "--train", f"{rel}/results_fairface_laion.txt", "--gen", f"{rel}/results_fairface_generated_1-5.txt",
           "--out", str(tmp_path / "out"), "--n-boot", "200", "--max-rows", "3"]  # fmt: skip
    p = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "keyword" in p.stdout
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["conditions"]["keyword"]["n_occupations"] == 153


def test_cli_observations_and_errors(cli_runner, tmp_path, fair_diffusion_dir):
    from biasamp.cli import app

    obs = tmp_path / "obs.parquet"
    _observations().write_parquet(obs)
    r = cli_runner.invoke(app, ["measure", str(obs), "--out", str(tmp_path / "o"), "--n-boot", "100", "-q"])
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(tmp_path / "o" / "amplification.parquet").height == 8
    # a Fair Diffusion file without a side: a clear error, no traceback
    r = cli_runner.invoke(app, ["measure", str(fair_diffusion_dir / "results_fairface_laion.txt")])
    assert r.exit_code == 2 and "--train FILE or --gen FILE" in r.output and "Traceback" not in r.output
    r = cli_runner.invoke(app, ["measure", "--train", str(fair_diffusion_dir / "results_fairface_laion.txt")])
    assert r.exit_code == 2 and "go together" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("source,condition,label\ntrain,k,female\n")
    r = cli_runner.invoke(app, ["measure", str(bad)])
    assert r.exit_code == 2 and "occupation" in r.output and "bad.csv" in r.output
    r = cli_runner.invoke(app, ["measure", "--train", str(fair_diffusion_dir / "results_fairface_laion.txt"),
                                "--gen", str(fair_diffusion_dir / "results_fairface_generated_1-5.txt"),
                                "--format", "fair-diffusion", "--condition", "sd15", "--n-boot", "50", "-q",
                                "--out", str(tmp_path / "fd")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "fd" / "summary.json").read_text())["conditions"].keys() == {"sd15"}


_counts = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)).filter(
        lambda t: t[0] + t[1] > 0 and t[2] + t[3] > 0
    ),
    min_size=1,
    max_size=6,
)


def _frame(rows, swap=False):
    out = []
    for i, (tf, tm, gf, gm) in enumerate(rows):
        if swap:
            tf, tm, gf, gm = tm, tf, gm, gf
        out += [("train", "k", f"o{i}", tf, tm), ("gen", "k", f"o{i}", gf, gm)]
    return pl.DataFrame(out, schema=["source", "condition", "occupation", "n_female", "n_male"], orient="row")


@given(_counts)
@settings(max_examples=15, deadline=None)
def test_swapping_labels_in_the_data_leaves_amplification_unchanged(rows):
    a = measure(_frame(rows), n_boot=30, by_group=False)
    b = measure(_frame(rows, swap=True), n_boot=30, by_group=False)
    for col in ("amp", "amp_abs"):
        np.testing.assert_allclose(a.amplification[col].to_numpy(), b.amplification[col].to_numpy(), atol=1e-9)
    assert a.amplification["category"].to_list() == b.amplification["category"].to_list()
    assert a.summary["conditions"]["k"]["mean_amp"] == pytest.approx(b.summary["conditions"]["k"]["mean_amp"], abs=1e-9)
    np.testing.assert_allclose(a.amplification["p_train"], 1 - b.amplification["p_train"].to_numpy(), atol=1e-12)


@given(_counts)
@settings(max_examples=15, deadline=None)
def test_same_data_both_sides_is_no_amplification(rows):
    same = [(tf, tm, tf, tm) for tf, tm, _, _ in rows]
    r = measure(_frame(same), n_boot=60, by_group=False)
    a = r.amplification
    assert (a["amp"] == 0).all() and (a["category"] == "reflected").all()
    assert (a["amp_lo"] <= 0).all() and (a["amp_hi"] >= 0).all()
    assert (a["p_value"] > 0.3).all()
    s = r.summary["conditions"]["k"]
    assert s["mean_amp"] == 0 and s["n_significant"] == 0
    assert all(v is None or np.isfinite(v) for v in s.values())


def test_measure_imports_no_deep_learning_library():
    code = (
        "import sys, biasamp.measure, biasamp.measure.commands\n"
        "bad = [m for m in ('torch', 'transformers', 'diffusers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_by_group_off_and_caption_groups_not_summarised():
    r = measure(_observations(), n_boot=50, by_group=False)
    assert r.by_group.is_empty() and r.by_group.schema["amp"] == pl.Float64 and r.summary["by_group"] == {}
    # generated side grouped by caption-as-prompt (2 images each, unique to an occupation)
    rows = []
    for o in range(3):
        rows += [("train", "captions", f"occ{o}", f"cap{o}-{i}", "female" if i % 3 else "male") for i in range(30)]
        rows += [("gen", "captions", f"occ{o}", f"cap{o}-{i}", "female" if i % 2 else "male") for i in range(20) for _ in range(2)]
    obs = pl.DataFrame(rows, schema=["source", "condition", "occupation", "group", "label"], orient="row")
    r = measure(obs, n_boot=50)
    assert len(r.by_group) == 60 and r.summary["by_group"] == {}


def test_cli_train_gen_tables_without_source(cli_runner, tmp_path):
    from biasamp.cli import app

    obs = _observations()
    obs.filter(pl.col("source") == "train").drop("source").write_parquet(tmp_path / "train.parquet")
    obs.filter(pl.col("source") == "gen").drop("source").write_csv(tmp_path / "gen.csv")
    r = cli_runner.invoke(app, ["measure", "--train", str(tmp_path / "train.parquet"), "--gen", str(tmp_path / "gen.csv"),
                                "--n-boot", "100", "--seed", "4", "-q", "--out", str(tmp_path / "o")])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = pl.read_parquet(tmp_path / "o" / "amplification.parquet")
    want = measure(obs, n_boot=100, seed=4).amplification
    assert got.select("occupation", "amp", "amp_lo", "q_value").equals(want.select("occupation", "amp", "amp_lo", "q_value"))
