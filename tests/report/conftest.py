"""A run directory in measure's output schema, built directly (no measurement), with
occupation names that try to break out of HTML and markdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

EVIL = "<script>alert(1)</script>"
AMP_NAME = "R&D engineer"
CONDS = ["nearest-no-indicators", "keyword", "custom-condition", "nearest"]


def make_run(run_dir: Path, *, occupations=None, conditions=CONDS, corrected=False, simulated=False, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    occupations = occupations or [EVIL, AMP_NAME, "nurse", "pilot", "price $5 | *bold*", "data_scientist"]
    rows, ex, bg = [], [], []
    summary = {"conditions": {}, "by_group": {}, "settings": {"n_boot": 200, "seed": 1, "reflected_band": 0.04, "train": "x/y.parquet"}}
    for ci, c in enumerate(conditions):
        amps = []
        for o in occupations:
            pt = float(rng.uniform(0.05, 0.95))
            pg = float(np.clip(pt + rng.normal(0, 0.08), 0, 1))
            amp = float(np.sign(pt - 0.5) * (pg - pt) * 100)
            cat = "reflected" if abs(pg - pt) < 0.04 else ("amplified" if abs(pt - 0.5) < abs(pg - 0.5) else "mitigated")
            r = {
                "condition": c, "occupation": o, "n_train": 200, "n_train_female": int(pt * 200), "n_train_excluded": 20,
                "n_gen": 180, "n_gen_female": int(pg * 180), "n_gen_excluded": 9,
                "p_train": pt, "p_train_lo": pt - 0.05, "p_train_hi": pt + 0.05,
                "p_gen": pg, "p_gen_lo": pg - 0.05, "p_gen_hi": pg + 0.05,
                "amp": amp, "amp_lo": amp - 6, "amp_hi": amp + 6,
                "amp_abs": amp, "amp_abs_lo": amp - 6, "amp_abs_hi": amp + 6,
                "p_value": 0.2, "q_value": 0.4, "category": cat, "flag": None,
            }  # fmt: skip
            if corrected:
                r.update(p_train_corrected=pt, p_gen_corrected=pg, amp_corrected=amp * 1.1, amp_corrected_lo=amp * 1.1 - 7, amp_corrected_hi=amp * 1.1 + 7)
            rows.append(r)
            amps.append(amp)
            for src, reason, n in (("train", "no_face", 12), ("train", "ambiguous", 8), ("gen", "nsfw", 2), ("gen", "no_face", 7)):
                ex.append({"source": src, "condition": c, "occupation": o, "reason": reason, "n": n})
            for g in ("face", "portrait"):
                bg.append({"condition": c, "group": g, "occupation": o, "p_gen": pg, "amp": amp})
        m = float(np.mean(amps))
        summary["conditions"][c] = {
            "n_occupations": len(occupations), "n_flagged": 0, "mean_amp": m, "mean_amp_lo": m - 2, "mean_amp_hi": m + 2,
            "mean_amp_abs": m, "mean_amp_abs_lo": m - 2, "mean_amp_abs_hi": m + 2,
            "n_amplified": sum(r["category"] == "amplified" for r in rows if r["condition"] == c),
            "n_reflected": sum(r["category"] == "reflected" for r in rows if r["condition"] == c),
            "n_mitigated": sum(r["category"] == "mitigated" for r in rows if r["condition"] == c),
            "n_significant": 1, "directional_t2a": 0.01, "directional_t2a_lo": 0.0, "directional_t2a_hi": 0.02,
            "zhao_biasamp": 0.02, "zhao_biasamp_lo": 0.01, "zhao_biasamp_hi": 0.03,
        }  # fmt: skip
        if corrected:
            summary["conditions"][c].update(mean_amp_corrected=m * 1.1, mean_amp_corrected_lo=m * 1.1 - 3, mean_amp_corrected_hi=m * 1.1 + 3)
        summary["by_group"][c] = {g: {"mean_amp": m, "mean_amp_lo": m - 3, "mean_amp_hi": m + 3, "n_occupations": len(occupations)} for g in ("face", EVIL)}
    rows[1]["flag"] = "no confident generated image <b>"
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(run_dir / "amplification.parquet")
    pl.DataFrame(ex).write_parquet(run_dir / "exclusions.parquet")
    pl.DataFrame(bg).write_parquet(run_dir / "by_group.parquet")
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if simulated:
        (run_dir / "simulation.json").write_text(json.dumps({"simulated": True, "seed": 0}))
    return run_dir


@pytest.fixture
def fake_run(tmp_path) -> Path:
    return make_run(tmp_path / "run")


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    """The full report of a fake run, built once per test module."""
    from biasamp.report import build_report

    return build_report(make_run(tmp_path_factory.mktemp("built") / "run"))


@pytest.fixture
def run_factory():
    """`make_run(run_dir, occupations=…, conditions=…, corrected=…, simulated=…)`."""
    return make_run
