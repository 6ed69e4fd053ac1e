"""Classify reads what `biasamp generate` writes: a run folder, its generations/ folder or a
part file, in both image formats; item ids stay unique; an input without images is an error."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import polars as pl
import pytest
from PIL import Image

from biasamp.classify import classify_images, read_labels
from biasamp.classify.sources import discover, tar_items
from biasamp.errors import BiasampError
from biasamp.testing import write_tar

GEN_ARGS = ["--occupations", "chef,nurse", "--templates", "face", "-n", "2", "--steps", "2", "--height", "32",
            "--width", "32", "--device", "cpu", "--shard-size", "3", "-q"]


_tar = write_tar


def _png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pytest.importorskip("diffusers")
    import torch

    from biasamp.generate.testing import build_tiny_pipeline

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CPU: two spinning threads slow the tiny pipeline down many times
    yield build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)
    torch.set_num_threads(before)


def _generate(out, model, *args):
    from typer.testing import CliRunner

    from biasamp.cli import app

    r = CliRunner(env={"COLUMNS": "500"}).invoke(app, ["generate", "--model", str(model), "--out", str(out), *args])
    assert r.exit_code == 0, r.output
    return pl.read_parquet(out / "generations" / "*.parquet")


@pytest.fixture(scope="module")
def runs(tiny_sd, tmp_path_factory):
    """Two generate runs of the same prompts, one per image format (two shards each)."""
    d = tmp_path_factory.mktemp("gen")
    return {fmt: (d / fmt, _generate(d / fmt, tiny_sd, *GEN_ARGS, "--format", fmt)) for fmt in ("files", "webdataset")}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["files", "webdataset"])
def test_generate_run_folder_end_to_end(runs, fmt, tmp_path, cli_runner):
    """tiny pipeline → generate → classify the run folder: one row per generated image, joined
    on item_id, with occupation, condition and source = gen."""
    from biasamp.cli import app

    run, gens = runs[fmt]
    r = cli_runner.invoke(app, ["classify", str(run), "--out", str(tmp_path / "c"), "--face-detector", "none", "-q"])
    assert r.exit_code == 0, r.output
    labels = read_labels(tmp_path / "c")
    assert len(gens) == 4 and set(labels["item_id"]) == set(gens["item_id"]) and labels["item_id"].is_unique().all()
    assert labels["reason"].null_count() == 4 and labels["face_status"].to_list() == ["ok"] * 4  # every image read
    assert labels["source"].to_list() == ["gen"] * 4  # nulls would pass an == test
    joined = gens.select("item_id", "occupation", "condition", "group").join(
        labels.select("item_id", "occupation", "condition", "group"), on="item_id", suffix="_l")
    assert len(joined) == 4
    for c in ("occupation", "condition", "group"):
        assert joined[c].to_list() == joined[f"{c}_l"].to_list() and joined[c].null_count() == 0


@pytest.mark.slow
def test_generations_folder_and_part_files_resolve_against_the_run(runs, tmp_path):
    run, gens = runs["files"]
    a = classify_images([run / "generations"], tmp_path / "a", face_detector="none", show_progress=False)
    assert set(a["item_id"]) == set(gens["item_id"]) and a["source"].to_list() == ["gen"] * len(a)
    part = sorted((run / "generations").glob("part-*.parquet"))[0]
    b = classify_images([part], tmp_path / "b", face_detector="none", show_progress=False)
    assert set(b["item_id"]) == set(pl.read_parquet(part)["item_id"])
    assert b["reason"].null_count() == len(b) and b["source"].to_list() == ["gen"] * len(b)
    with pytest.raises(BiasampError, match="same input"):  # the run and its generations/ folder are one input
        discover([run, run / "generations"])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["files", "webdataset"])
def test_a_runs_images_folder_and_tars_read_as_generated(runs, fmt, tmp_path):
    """A run's images/ folder is the run (ids, occupation, condition from its table); a tar
    taken from it keeps its images' ids and counts as generated."""
    run, gens = runs[fmt]
    df = classify_images([run / "images"], tmp_path / "i", face_detector="none", show_progress=False)
    assert sorted(df["item_id"]) == sorted(gens["item_id"]) and df["source"].to_list() == ["gen"] * len(df)
    assert df["occupation"].null_count() == 0
    if fmt == "webdataset":
        tar = sorted((run / "images").glob("*.tar"))[0]
        t = classify_images([tar], tmp_path / "t", face_detector="none", show_progress=False)
        assert set(t["item_id"]) <= set(gens["item_id"]) and t["source"].to_list() == ["gen"] * len(t)


@pytest.mark.slow
def test_a_folder_holding_generate_runs_reads_each_run(runs, tmp_path):
    holder = tmp_path / "stage"
    holder.mkdir()
    shutil.copytree(runs["files"][0], holder / "templates")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(holder / "extra.png")
    df = classify_images([holder], tmp_path / "c", face_detector="none", show_progress=False)
    rows = {r["item_id"]: r for r in df.iter_rows(named=True)}
    assert set(rows) == set(runs["files"][1]["item_id"]) | {"extra.png"}
    assert rows["extra.png"]["source"] is None
    assert all(r["source"] == "gen" and r["occupation"] for k, r in rows.items() if k != "extra.png")


@pytest.mark.slow
def test_webdataset_caption_run_gets_one_id_per_image(tiny_sd, tmp_path):
    """Three images of each caption: the tar's .json names each image's item_id; the caption
    id alone would give three rows the same id."""
    sel = pl.DataFrame({"condition": ["captions-as-prompts"] * 2, "occupation": ["nurse", "chef"],
                        "caption_id": [5, 6], "text": ["a nurse smiling", "a chef cooking"]})
    sel.write_parquet(tmp_path / "sel.parquet")
    run = tmp_path / "gen"
    gens = _generate(run, tiny_sd, "--captions", str(tmp_path / "sel.parquet"), "-n", "3", "--format", "webdataset",
                     "--steps", "2", "--height", "32", "--width", "32", "--device", "cpu", "-q")
    assert len(gens) == 6
    for inp in (run, *sorted((run / "images").glob("*.tar"))):
        df = classify_images([inp], tmp_path / f"c-{inp.name}", face_detector="none", show_progress=False)
        assert sorted(df["item_id"]) == sorted(gens["item_id"]), inp
        assert sorted(df["caption_id"]) == [5, 5, 5, 6, 6, 6]


def test_tar_id_is_item_id_then_caption_id_then_key(tmp_path):
    _tar(tmp_path / "s.tar", {
        "a.png": _png(0), "a.json": json.dumps({"item_id": "x__1", "caption_id": 5}).encode(),
        "b.png": _png(1), "b.json": json.dumps({"caption_id": 7, "url": "http://u"}).encode(),
        "c.png": _png(2),
    })
    items = list(tar_items(tmp_path / "s.tar"))
    assert [it.item_id for it in items] == ["x__1", "7", "c"]
    assert items[0].meta["caption_id"] == 5 and items[1].meta["url"] == "http://u"
    shards, _ = discover([tmp_path / "s.tar"])
    assert shards[0].n == 3


def test_duplicate_item_ids_are_an_error_naming_the_inputs(tmp_path):
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / d / "a.png")
    with pytest.raises(BiasampError, match="duplicate item_id") as e:
        classify_images([tmp_path / "one", tmp_path / "two"], tmp_path / "o", show_progress=False)
    assert "'a.png'" in str(e.value) and str(tmp_path / "one") in str(e.value) and str(tmp_path / "two") in str(e.value)
    assert not (tmp_path / "o" / "labels").exists()  # refused before any work
    _tar(tmp_path / "dup.tar", {"k1.png": _png(0), "k1.json": b'{"caption_id": 3}',
                                "k2.png": _png(1), "k2.json": b'{"caption_id": 3}'})
    with pytest.raises(BiasampError, match=r"duplicate item_id.*'3'.*dup\.tar"):
        classify_images([tmp_path / "dup.tar"], tmp_path / "o2", show_progress=False)


def test_an_input_without_images_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BiasampError, match=r"no images found in .*empty \(0 non-image files skipped\)"):
        classify_images([empty], tmp_path / "o", show_progress=False)
    (empty / "notes.txt").write_text("x")
    (empty / "part-000000.parquet").write_bytes(b"")
    with pytest.raises(BiasampError, match=r"\(2 non-image files skipped\)") as e:
        classify_images([empty], tmp_path / "o", show_progress=False)
    assert "part-000000.parquet" in str(e.value)  # a table inside a folder: name the table itself
    # a generate run killed before its first shard was committed
    run = tmp_path / "gen"
    (run / "generations").mkdir(parents=True)
    (run / "generate.manifest.json").write_text("{}")
    with pytest.raises(BiasampError, match="no images found") as e:
        classify_images([run], tmp_path / "o", show_progress=False)
    assert "biasamp generate" in str(e.value)
    with pytest.raises(BiasampError, match="no images found") as e:
        classify_images([run / "generations"], tmp_path / "o", show_progress=False)
    assert "biasamp generate" in str(e.value)
    # its images/ folder stands for the run
    (run / "images").mkdir()
    with pytest.raises(BiasampError, match="no images found") as e:
        classify_images([run / "images"], tmp_path / "o", show_progress=False)
    assert "biasamp generate" in str(e.value)
    # a run that lost its generations/ folder: its images/ folder points at the run
    shutil.rmtree(run / "generations")
    with pytest.raises(BiasampError, match="no images found") as e:
        classify_images([run / "images"], tmp_path / "o", show_progress=False)
    assert f"pass the run folder {run}" in str(e.value)
    assert not (tmp_path / "o").exists()


def test_an_input_without_images_is_an_error_on_the_cli(tmp_path, cli_runner):
    from biasamp.cli import app

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.md").write_text("x")
    r = cli_runner.invoke(app, ["classify", str(tmp_path / "d"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no images found" in r.output and "1 non-image files skipped" in r.output
