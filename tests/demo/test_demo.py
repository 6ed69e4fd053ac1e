import json

import polars as pl
import pytest

from biasamp.demo import run_demo
from biasamp.demo.run import format_conditions

pytest.importorskip("biasamp.measure")

ORDER = ["keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators"]


def test_small_demo_writes_everything(tmp_path):
    res = run_demo(tmp_path / "demo", n_occupations=8, n_train=150, n_gen=150, n_boot=150)
    out = tmp_path / "demo"
    for name in ("observations.parquet", "truth.parquet", "simulation.json", "amplification.parquet",
                 "by_group.parquet", "exclusions.parquet", "summary.json"):  # fmt: skip
        assert (out / name).exists(), name
    assert res.report.html == out / "report" / "index.html" and res.report.markdown.exists()
    html = res.report.html.read_text()
    assert "Simulated data." in html and "These data are simulated" in html
    assert html.index("Simulated data.") < html.index('<section id="conditions">')
    assert "> **Simulated data.**" in res.report.markdown.read_text()
    assert {"conditions", "truth", "scatter", "forest", "corrected", "exclusions"} <= set(res.report.sections)
    assert res.conditions["condition"].to_list() == ORDER
    assert res.conditions["planted_model_amp"].to_list() == [0.0] * 5
    summary = json.loads((out / "summary.json").read_text())
    assert "mean_amp_corrected" in summary["conditions"]["keyword"]
    text = format_conditions(res.conditions)
    assert text.startswith("SIMULATED DATA") and "keyword" in text
    assert res.seconds > 0


@pytest.mark.slow
def test_default_demo_shows_the_paradox(tmp_path, cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert "SIMULATED DATA" in r.output and "report:" in r.output
    amp = pl.read_parquet(tmp_path / "d" / "amplification.parquet")
    assert amp["flag"].null_count() == amp.height
    s = json.loads((tmp_path / "d" / "summary.json").read_text())["conditions"]
    # the model amplifies nothing, yet keyword selection shows amplification
    assert s["keyword"]["mean_amp_lo"] > 0
    for c in ("captions-as-prompts", "nearest-no-indicators", "no-indicators"):
        assert s[c]["mean_amp_lo"] < 0 < s[c]["mean_amp_hi"], c
    assert s["keyword"]["mean_amp"] > s["nearest"]["mean_amp"] > s["nearest-no-indicators"]["mean_amp"]
