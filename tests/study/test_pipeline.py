"""Whole studies from a config: the real path (local training images, dlib, tiny model)
and the simulated demo path; caching across runs; the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from biasamp.study import load_config, plan_study, run_study

pytestmark = pytest.mark.slow

OCCUPATIONS = ["nurse", "engineer"]


def _corpus(folder: Path, n_per_occupation: int = 12) -> pl.DataFrame:
    rows = []
    h = 1000
    for occ in OCCUPATIONS:
        for i in range(n_per_occupation):
            words = ["", "she is a", "a man who is a", ""][i % 4]
            rows.append({"hash": h, "url": f"http://img.example/{h}.jpg", "caption": f"portrait of {words} {occ} number {i}".replace("  ", " ")})
            h += 1
    rows.append({"hash": h, "url": "http://img.example/x.jpg", "caption": "a bowl of fruit"})
    df = pl.DataFrame(rows)
    folder.mkdir(parents=True, exist_ok=True)
    df.write_parquet(folder / "part-0.parquet")
    return df


def _store(folder: Path, corpus: pl.DataFrame) -> Path:
    """A local image store: the real astronaut photo (a woman) and Grace Hopper's portrait,
    plus noise images without faces, indexed by caption id."""
    from matplotlib import cbook
    from skimage import data as skdata

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.jpg")
    Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB").save(folder / "hopper.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(folder / "noise.png")
    files = ["astronaut.jpg", "hopper.jpg", "noise.png"]
    index = corpus.select(pl.col("hash").alias("caption_id"),
                          pl.Series("path", [files[i % 3] for i in range(corpus.height)]))
    index.write_csv(folder / "index.csv")
    return folder / "index.csv"


def _write_config(tmp_path: Path, extra: str = "", simulated: bool = False, classify_extra: str = "") -> Path:
    from biasamp.generate.testing import build_pipeline_folder, tiny_components

    corpus = _corpus(tmp_path / "corpus")
    (tmp_path / "occupations.txt").write_text("\n".join(OCCUPATIONS) + "\n")
    if not (tmp_path / "tiny-sd" / "model_index.json").exists():
        build_pipeline_folder(tmp_path / "tiny-sd", tiny_components(0, sample_size=16))
    source = '"simulated"' if simulated else '"local"\noptions = { store = "store/index.csv" }'
    if not simulated:
        _store(tmp_path / "store", corpus)
    text = f"""
[study]
name = "tiny <study>"
out = "run"
simulated = {str(simulated).lower()}
[corpus]
paths = ["corpus/*.parquet"]
occupations = "occupations.txt"
[selection]
n = 6
k = 4
embedder = "minilm"
[[models]]
name = "tiny"
id = "tiny-sd"
dtype = "float32"
device = "cpu"
steps = 1
width = 32
height = 32
images_per_prompt = 3
batch_size = 8
[training_images]
source = {source}
[classify]
face_detector = "dlib"
classifier = "dlib-onnx"
{classify_extra}
[measure]
n_boot = 100
{extra}
"""
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


def test_real_path_runs_every_stage_and_resumes(tmp_path):
    from biasamp.errors import BiasampError
    from biasamp.study.pipeline import build_stages
    from biasamp.study.runner import Runner

    from biasamp.testing import build_tiny_clip

    build_tiny_clip(tmp_path / "tiny-clip", image_size=32, patch_size=8)
    cfg_path = _write_config(tmp_path, classify_extra='embed_model = "tiny-clip"')
    cfg = load_config(cfg_path)
    plan = plan_study(cfg)
    assert plan["stage"].to_list() == ["query", "select", "fetch", "classify-train", "generate.tiny",
                                       "classify-gen.tiny", "measure.tiny", "report"]
    # A random model draws no faces, so no generated image is confidently labelled and no
    # occupation can be measured: the run stops with a clear message, after every stage
    # before it ran for real.
    with pytest.raises(BiasampError, match="no confident generated images"):
        run_study(cfg, show_progress=False)
    runner = Runner(cfg, build_stages(cfg), show_progress=False)
    assert runner.plan()["status"].to_list() == ["cached"] * 6 + ["to run"] * 2
    obs = pl.read_parquet(runner.stage("measure.tiny").dir / "observations.parquet")
    train = obs.filter(pl.col("source") == "train")
    # training images came from the local store through the real face filter and classifier
    # (the astronaut scores 0.87 female: ambiguous under the 0.9 rule; Grace Hopper is called male)
    assert {"ambiguous", "male", "no_face"} <= set(train["label"])
    gen = obs.filter(pl.col("source") == "gen")
    assert gen.height > 0 and set(gen["label"]) <= {"no_face", "small_face", "many_faces", "error"}
    downloads = pl.read_parquet(runner.stage("fetch").dir / "downloads.parquet")
    assert set(downloads["status"]) == {"ok"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["ran"] * 6

    # training <-> generated image similarity per condition, from the saved CLIP embeddings
    from biasamp.study.pipeline import _generations
    from biasamp.study.report_stage import study_image_similarity

    sim = study_image_similarity(
        pl.read_parquet(runner.stage("select").dir / "selection.parquet"), runner.stage("classify-train").dir,
        runner.stage("classify-gen.tiny").dir, _generations(runner.stage("generate.tiny").dir),
        list(cfg.selection.conditions), n_boot=50, seed=0)
    assert sim is not None and set(sim["occupation"]) == set(OCCUPATIONS)
    assert {"keyword", "captions-as-prompts"} <= set(sim["condition"])
    assert sim["similarity"].is_between(-1, 1).all() and (sim["ci_low"] <= sim["similarity"]).all()
    assert (sim["n_train"] > 0).all() and (sim["n_gen"] > 0).all()

    # resume: nothing before measure runs again
    with pytest.raises(BiasampError):
        run_study(load_config(cfg_path), show_progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["cached"] * 6


def test_simulated_path_shows_the_paradox_machinery(tmp_path, cli_runner):
    from biasamp.cli import app

    rows = [("female", "female")] * 45 + [("male", "female")] * 5 + [("male", "male")] * 47 + [("female", "male")] * 3
    pl.DataFrame({"item_id": [str(i) for i in range(100)], "label": [a for a, _ in rows],
                  "reference": [b for _, b in rows]}).write_csv(tmp_path / "val.csv")
    cfg_path = _write_config(tmp_path, simulated=True, extra='validation = "val.csv"')
    r = cli_runner.invoke(app, ["run", str(cfg_path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "to run" in r.output and "fetch" not in r.output
    r = cli_runner.invoke(app, ["run", str(cfg_path), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "keyword" in r.output and "report:" in r.output
    run = tmp_path / "run"
    labels = pl.read_parquet(run / "observations.parquet")
    assert labels["simulated"].all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["simulated"] is True and "Simulated" in summary["simulated_note"]
    html = (run / "report" / "index.html").read_text()
    assert "Part of this study is simulated" in html
    # the validation set corrects the shares, and the report shows the classifier's figures
    amp = pl.read_parquet(run / "amplification.parquet")
    assert "amp_corrected" in amp.columns
    assert json.loads((run / "validation.json").read_text())
    assert 'id="classifier-validation"' in html and 'id="models"' in html
    r = cli_runner.invoke(app, ["run", str(cfg_path), "--dry-run"])
    assert "to run" not in r.output
    # a measure setting changes only measure and report
    cfg_path.write_text(cfg_path.read_text().replace("n_boot = 100", "n_boot = 120"))
    result = run_study(load_config(cfg_path), show_progress=False)
    assert result.ran == ["measure.tiny", "report"]
    assert (run / "models.parquet").exists() and (run / "examples.parquet").exists()


def test_force_names_unknown_stage(tmp_path):
    from biasamp.errors import BiasampError

    cfg = load_config(_write_config(tmp_path, simulated=True))
    with pytest.raises(BiasampError, match="unknown stage"):
        run_study(cfg, force=("nope",), show_progress=False)


def test_engine_setting_routes_heavy_stages(tmp_path, monkeypatch):
    """`[engine] name = "ray"` sends query, generation and classification through the
    engine layer (here a local engine stands in for the cluster, which tests/engines cover)."""
    from biasamp import engines
    from biasamp.engines import LocalEngine

    monkeypatch.setattr(engines, "engine_from_config", lambda section: LocalEngine())
    cfg_path = _write_config(tmp_path, simulated=True)
    cfg_path.write_text(cfg_path.read_text() + '\n[engine]\nname = "ray"\naddress = "127.0.0.2:6390"\n')
    result = run_study(load_config(cfg_path), show_progress=False)
    assert result.results["engine"] == "ray"
    assert {"query_corpus", "generate_images"} <= set(result.results["engine_stages"])
    assert (tmp_path / "run" / "report" / "index.html").exists()
