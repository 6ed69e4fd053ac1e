"""train-probe: the file format follows the suffix, the penalty is checked, non-convergence is
reported, references are read as validate reads them, and models are recorded by absolute path
so that a probe works from any directory."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from PIL import Image

from biasamp.classify.probe import fit_logistic, load_probe, save_probe, train_linear_probe
from biasamp.errors import BiasampError

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CPU: tiny models are fastest on one thread
    yield
    torch.set_num_threads(before)


def _images(folder, n=12):
    """Reddish ('female') and bluish ('male') noise images: separable for a probe."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        f = i % 2 == 0
        base = np.array([200, 60, 60]) if f else np.array([60, 60, 200])
        arr = np.clip(base + rng.normal(0, 40, (36, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"im{i:02d}.png")
        rows.append({"item_id": f"im{i:02d}.png", "reference": "female" if f else "male"})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def classified(tmp_path_factory, tiny_clip):
    """A classify output with embeddings of the tiny CLIP, and its reference table."""
    from biasamp.classify import classify_images

    d = tmp_path_factory.mktemp("probe-train")
    truth = _images(d / "imgs")
    classify_images([d / "imgs"], d / "out", classifier="clip", face_detector="none", embeddings=True, workers=0,
                    classifier_options={"model": str(tiny_clip), "device": "cpu"}, device="cpu", show_progress=False)
    truth.write_csv(d / "truth.csv")
    return d


def test_probe_is_written_in_the_format_its_suffix_names(classified, tmp_path, tiny_clip, astronaut):
    from biasamp.classify import make_classifier

    for name in ("probe.json", "probe.safetensors"):
        s = train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / name)
        w, b, meta = load_probe(tmp_path / name)
        assert w.shape == (16,) and np.isfinite(b)
        assert meta["embed_model"] == str(tiny_clip.resolve()) and int(meta["n"]) == s["n"] == 12
    doc = json.loads((tmp_path / "probe.json").read_text())  # real JSON, in the layout a hand-written probe has
    assert set(doc) >= {"weight", "bias", "embed_model", "n", "converged"} and doc["converged"] is True
    w_json, b_json, _ = load_probe(tmp_path / "probe.json")
    w_st, b_st, _ = load_probe(tmp_path / "probe.safetensors")
    np.testing.assert_allclose(w_json, w_st, rtol=1e-6, atol=1e-6)  # safetensors stores float32
    assert abs(b_json - b_st) < 1e-6
    # the JSON probe classifies, through the path users take
    probe = make_classifier("linear-probe", probe=str(tmp_path / "probe.json"), device="cpu")
    p, _ = probe.predict([probe.prepare(astronaut, None)])
    assert 0 < p[0] < 1
    # direct save/load round trip of both formats
    save_probe(tmp_path / "x.JSON", np.arange(3.0), 0.5, {"embed_model": "m", "n": 3})
    w2, b2, meta2 = load_probe(tmp_path / "x.JSON")
    assert w2.tolist() == [0, 1, 2] and b2 == 0.5 and meta2 == {"embed_model": "m", "n": 3}


@pytest.mark.parametrize("name", ["probe.bin", "probe", "probe.pt"])
def test_other_suffixes_are_refused_naming_the_path(classified, tmp_path, name):
    with pytest.raises(BiasampError, match=rf"cannot write a probe to .*{name}.*neither \.safetensors nor \.json"):
        train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / name)
    with pytest.raises(BiasampError, match=r"neither \.safetensors nor \.json"):
        save_probe(tmp_path / name, np.ones(2), 0.0, {})
    assert not (tmp_path / name).exists()


def test_cli_json_probe_round_trips(classified, tmp_path, cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["train-probe", str(classified / "out"), "--reference", str(classified / "truth.csv"),
                                "--out", str(tmp_path / "probe.json")])
    assert r.exit_code == 0, r.output
    json.loads((tmp_path / "probe.json").read_text())
    r = cli_runner.invoke(app, ["classify", str(classified / "imgs"), "--out", str(tmp_path / "o"), "--classifier",
                                "linear-probe", "--probe", str(tmp_path / "probe.json"), "--face-detector", "none",
                                "--workers", "0", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    labels = pl.read_parquet(tmp_path / "o" / "labels")
    assert labels["p_female"].is_not_null().all() and len(labels) == 12


@pytest.mark.parametrize("l2", [-5.0, 0.0, float("nan"), float("inf")])
def test_l2_must_be_positive(classified, tmp_path, l2, cli_runner):
    from biasamp.cli import app

    with pytest.raises(BiasampError, match="L2 penalty must be a positive number"):
        fit_logistic(np.eye(2), np.array([0.0, 1.0]), l2=l2)
    with pytest.raises(BiasampError, match="L2 penalty must be a positive number"):
        train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / "p.safetensors", l2=l2)
    r = cli_runner.invoke(app, ["train-probe", str(classified / "out"), "--reference", str(classified / "truth.csv"),
                                "--out", str(tmp_path / "p.json"), "--l2", str(l2)])
    assert r.exit_code == 2 and "L2 penalty must be a positive number" in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())


def test_non_convergence_is_reported_and_recorded(classified, tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(float)  # separable: with a vanishing penalty the optimum runs off
    info: dict = {}
    fit_logistic(x, y, l2=1e-12, info=info)
    assert info == {"iterations": 100, "converged": False}
    fit_logistic(x, y, l2=1.0, info=info)
    assert info["converged"] and info["iterations"] < 100

    s = train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / "p.json", max_iter=2)
    assert s["converged"] is False and s["iterations"] == 2
    assert "without converging" in capsys.readouterr().err
    assert json.loads((tmp_path / "p.json").read_text())["converged"] is False
    train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / "p.safetensors", max_iter=2)
    assert load_probe(tmp_path / "p.safetensors")[2]["converged"] == "False"
    capsys.readouterr()
    s = train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / "ok.json")
    assert s["converged"] is True and "without converging" not in capsys.readouterr().err


def test_references_are_stripped_and_other_values_warned(classified, tmp_path, capsys):
    truth = pl.read_csv(classified / "truth.csv")
    odd = truth.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("female "))       # kept: spaces do not matter
        .when(pl.int_range(pl.len()) == 1).then(pl.lit(" Male"))             # kept
        .when(pl.int_range(pl.len()) == 2).then(pl.lit("unsure"))            # left out, warned
        .when(pl.int_range(pl.len()) == 3).then(pl.lit(None, pl.Utf8))       # left out, warned
        .otherwise(pl.col("reference")).alias("reference"))
    odd.write_csv(tmp_path / "odd.csv")
    s = train_linear_probe((classified / "out", tmp_path / "odd.csv"), tmp_path / "p.json")
    assert s["n"] == 10 and s["n_female"] == 5 and s["n_male"] == 5 and s["n_reference_ignored"] == 2
    err = capsys.readouterr().err
    assert "odd.csv" in err and "2 of 12 rows" in err and "'unsure'" in err and "empty" in err
    # a clean table: no warning
    train_linear_probe((classified / "out", classified / "truth.csv"), tmp_path / "q.json")
    assert "warning" not in capsys.readouterr().err


def test_model_folders_are_recorded_by_absolute_path(classified, tmp_path, tiny_clip, monkeypatch, cli_runner):
    """Classify with a model folder named relatively; the probe then runs from another
    directory, where a different folder of the same name must not be picked up."""
    from biasamp.cli import app
    from biasamp.testing import build_tiny_clip

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    shutil.copytree(tiny_clip, a / "tiny")
    _images(a / "imgs")
    pl.read_csv(classified / "truth.csv").write_csv(a / "truth.csv")
    monkeypatch.chdir(a)
    r = cli_runner.invoke(app, ["classify", "imgs", "--out", "out", "--classifier", "clip", "--model", "tiny",
                                "--face-detector", "none", "--embeddings", "--workers", "0", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    real = str((a / "tiny").resolve())
    labels = pl.read_parquet(a / "out" / "labels")
    assert set(labels["model"]) == {real} and set(labels["embedding_model"]) == {real}
    assert set(pl.read_parquet(a / "out" / "embeddings" / "*.parquet")["embedding_model"]) == {real}
    manifest = json.loads((a / "out" / "classify.manifest.json").read_text())["params"]
    assert manifest["classifier_options"]["model"] == real
    r = cli_runner.invoke(app, ["train-probe", "out", "--reference", "truth.csv", "--out", "probe.json"])
    assert r.exit_code == 0, r.output
    assert load_probe(a / "probe.json")[2]["embed_model"] == real

    build_tiny_clip(b / "tiny", seed=1, image_size=30, patch_size=6, heads=4)  # same name, other weights
    monkeypatch.chdir(b)
    r = cli_runner.invoke(app, ["classify", str(a / "imgs"), "--out", "o", "--classifier", "linear-probe", "--probe",
                                str(a / "probe.json"), "--face-detector", "none", "--workers", "0", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    got = pl.read_parquet(b / "o" / "labels").sort("item_id")
    assert set(got["model"]) == {f"probe.json@{real}"}
    # the probe ran on the embeddings of the folder it was trained on, not the decoy's
    w, bias, _ = load_probe(a / "probe.json")
    lab = labels.sort("item_id")
    emb = np.load(a / "out" / lab["embedding_file"][0])[lab["embedding_row"].to_numpy()]
    np.testing.assert_allclose(got["p_female"].to_numpy(), 1 / (1 + np.exp(-(emb @ w + bias))), atol=1e-5)
