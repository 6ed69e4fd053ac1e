"""Resuming a classify run: only with the settings that made its finished shards."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from biasamp.classify import Labeler, classify_images, read_labels
from biasamp.errors import BiasampError


@pytest.fixture
def images(tmp_path, astronaut):
    d = tmp_path / "img"
    d.mkdir()
    Image.fromarray(astronaut).save(d / "astronaut.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(d / "black.png")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(d / "grey.png")
    return d


def _manifest(out):
    return json.loads((out / "classify.manifest.json").read_text())


def test_rerun_with_other_settings_is_refused(images, tmp_path, cli_runner):
    from biasamp.cli import app

    out = tmp_path / "cr"
    r = cli_runner.invoke(app, ["classify", str(images), "--out", str(out), "--face-detector", "none", "-q"])
    assert r.exit_code == 0, r.output
    before = read_labels(out)
    manifest = (out / "classify.manifest.json").read_text()
    r = cli_runner.invoke(app, ["classify", str(images), "--out", str(out), "--face-detector", "dlib",
                                "--low", "0.45", "--high", "0.55", "-q"])
    assert r.exit_code == 2, r.output
    for what in ("face_detector: 'none' → 'dlib'", "low: 0.1 → 0.45", "high: 0.9 → 0.55", "detector_options", "--out"):
        assert what in r.output, what
    assert "Traceback" not in r.output
    assert read_labels(out).equals(before) and (out / "classify.manifest.json").read_text() == manifest
    assert (read_labels(out)["detector"] == "none").all()


def test_rerun_with_the_same_settings_resumes(images, tmp_path):
    """Speed settings (batch size, threads, device) may change between runs; results do not."""
    out = tmp_path / "o"
    first = classify_images([images], out, face_detector="none", shard_size=2, show_progress=False)
    parts = sorted((out / "labels").glob("part-*.parquet"))
    assert len(parts) == 2
    parts[1].unlink()  # as if killed before the second shard was committed
    again = classify_images([images], out, face_detector="none", shard_size=2, batch_size=1, workers=0,
                            show_progress=False)
    assert sorted(again["item_id"]) == sorted(first["item_id"])
    m = _manifest(out)
    assert m["shards_run"] == 1 and m["params"]["batch_size"] == 1 and m["fingerprint"]
    with pytest.raises(BiasampError, match="shard_size: 2 → 1000"):
        classify_images([images], out, face_detector="none", show_progress=False)


def test_a_killed_first_run_is_checked_too(images, tmp_path):
    """The manifest is written before the first shard, so a run killed half-way is checked."""
    out = tmp_path / "o"
    classify_images([images], out, face_detector="none", shard_size=2, show_progress=False)
    m = _manifest(out)
    m.pop("images_run")
    m.pop("seconds")
    (out / "classify.manifest.json").write_text(json.dumps(m))  # what a killed run leaves
    with pytest.raises(BiasampError, match="min_face: 0.1 → 0.3"):
        classify_images([images], out, face_detector="none", shard_size=2, min_face=0.3, show_progress=False)
    # labels without a manifest (an engine's driver commits shards, then lets the stage finish): taken as they are
    (out / "classify.manifest.json").unlink()
    classify_images([images], out, face_detector="none", shard_size=2, show_progress=False)
    assert _manifest(out)["shards_run"] == 0
    with pytest.raises(BiasampError, match="min_face"):
        classify_images([images], out, face_detector="none", shard_size=2, min_face=0.3, show_progress=False)


def test_other_inputs_are_refused(images, tmp_path):
    out = tmp_path / "o"
    classify_images([images], out, face_detector="none", show_progress=False)
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other / "x.png")
    with pytest.raises(BiasampError, match="inputs"):
        classify_images([images, other], out, face_detector="none", show_progress=False)
    assert set(read_labels(out)["item_id"]) == {"astronaut.png", "black.png", "grey.png"}


@pytest.mark.slow
def test_adding_embeddings_on_a_rerun_is_refused(images, tmp_path, tiny_clip):
    out = tmp_path / "o"
    opts = {"model": str(tiny_clip)}
    classify_images([images], out, classifier="clip", classifier_options=opts, face_detector="none", device="cpu",
                    show_progress=False)
    with pytest.raises(BiasampError, match="embeddings: False → True"):
        classify_images([images], out, classifier="clip", classifier_options=opts, face_detector="none",
                        device="cpu", embeddings=True, show_progress=False)
    assert "embedding_file" not in read_labels(out).columns and not (out / "embeddings").exists()


def test_workers_must_not_be_negative(images, tmp_path, cli_runner):
    from biasamp.cli import app

    with pytest.raises(BiasampError, match="workers"):
        Labeler(workers=-1)
    with pytest.raises(BiasampError, match="workers"):
        classify_images([images], tmp_path / "o", workers=-1, show_progress=False)
    r = cli_runner.invoke(app, ["classify", str(images), "--out", str(tmp_path / "o"), "--workers", "-1"])
    assert r.exit_code == 2 and "workers" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_max_pixels_on_the_cli(images, tmp_path, cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["classify", str(images), "--out", str(tmp_path / "o"), "--face-detector", "none",
                                "--max-pixels", "10000", "-q"])
    assert r.exit_code == 0, r.output
    df = read_labels(tmp_path / "o")
    a = df.filter(pl.col("item_id") == "astronaut.png").row(0, named=True)
    assert a["label"] == "error" and "decompression bomb" in a["reason"] and "10000" in a["reason"]
    assert df.filter(pl.col("item_id") == "black.png")["face_status"][0] == "ok"  # 64 x 64 = 4096 pixels
    assert _manifest(tmp_path / "o")["params"]["max_pixels"] == 10000
    r = cli_runner.invoke(app, ["classify", str(images), "--out", str(tmp_path / "o2"), "--max-pixels", "0"])
    assert r.exit_code == 2 and "max_pixels" in r.output


def test_an_input_that_changed_under_finished_shards_is_refused(images, tmp_path):
    """Images added to a folder after it was labelled move its chunks: the finished shards
    would no longer match their part of the folder, so resuming is refused, naming it."""
    out = tmp_path / "o"
    classify_images([images], out, face_detector="none", shard_size=2, show_progress=False)
    before = read_labels(out)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(images / "a-first.png")  # sorts first
    with pytest.raises(BiasampError, match=r"changed since .* held 2 images") as e:
        classify_images([images], out, face_detector="none", shard_size=2, show_progress=False)
    assert "a-first.png" in str(e.value) and "new --out" in str(e.value)
    assert read_labels(out).equals(before)
    # images appended after the last full shard leave the finished ones as they were
    out2 = tmp_path / "o2"
    (images / "a-first.png").unlink()
    classify_images([images], out2, face_detector="none", shard_size=3, show_progress=False)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(images / "zz-last.png")
    again = classify_images([images], out2, face_detector="none", shard_size=3, show_progress=False)
    assert len(again) == 4 and again["item_id"].is_unique().all()


def test_finished_shards_that_no_input_makes_any_more_are_refused(tmp_path):
    """A tar removed from a folder, or a table shortened, leaves finished shards behind that
    would still be read as labels: resuming is refused, naming one."""
    from biasamp.testing import write_tar

    def png(v):
        import io

        buf = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), v, np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    d = tmp_path / "tars"
    d.mkdir()
    write_tar(d / "a.tar", {"k1.png": png(1), "k2.png": png(2)})
    write_tar(d / "b.tar", {"k3.png": png(3)})
    classify_images([d], tmp_path / "o", face_detector="none", show_progress=False)
    (d / "b.tar").unlink()
    with pytest.raises(BiasampError, match="no input makes any more"):
        classify_images([d], tmp_path / "o", face_detector="none", show_progress=False)
    write_tar(d / "b.tar", {})  # emptied rather than removed: no images in it now
    with pytest.raises(BiasampError):
        classify_images([d], tmp_path / "o", face_detector="none", show_progress=False)
    # a table shortened at a shard boundary
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), i * 40, np.uint8)).save(imgs / f"{i}.png")
    table = tmp_path / "t.parquet"
    pl.DataFrame({"item_id": [str(i) for i in range(4)], "image": [f"imgs/{i}.png" for i in range(4)]}).write_parquet(table)
    classify_images([table], tmp_path / "t", face_detector="none", shard_size=2, show_progress=False)
    pl.DataFrame({"item_id": ["0", "1"], "image": ["imgs/0.png", "imgs/1.png"]}).write_parquet(table)
    with pytest.raises(BiasampError, match="no input makes any more"):
        classify_images([table], tmp_path / "t", face_detector="none", shard_size=2, show_progress=False)
