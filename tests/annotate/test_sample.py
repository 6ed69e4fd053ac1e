"""Stratified, seeded sampling of labelled images into a task folder."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.annotate import load_task, sample_task
from biasamp.annotate.task import _allocate, band_labels
from biasamp.errors import BiasampError


def test_same_seed_same_task_other_seed_other_task(tmp_path, labels_path):
    a = sample_task(labels_path, tmp_path / "a", n=15, seed=7)
    b = sample_task(labels_path, tmp_path / "b", n=15, seed=7)
    c = sample_task(labels_path, tmp_path / "c", n=15, seed=8)
    assert a["item_id"].to_list() == b["item_id"].to_list()
    assert a["item_id"].to_list() != c["item_id"].to_list()
    # independent of the input row order
    shuffled = tmp_path / "shuffled.parquet"
    df = pl.read_parquet(labels_path)
    df.sample(fraction=1.0, shuffle=True, seed=1).write_parquet(shuffled)
    import shutil

    for p in (labels_path.parent / "img", labels_path.parent / "shard-0000.tar"):
        dest = tmp_path / p.name
        shutil.copytree(p, dest) if p.is_dir() else shutil.copy(p, dest)
    d = sample_task(shuffled, tmp_path / "d", n=15, seed=7)
    assert d["item_id"].to_list() == a["item_id"].to_list()


def test_task_folder_contents_and_images(tmp_path, labels_path):
    items = sample_task(labels_path, tmp_path / "t", n=20, seed=1)
    task = load_task(tmp_path / "t")
    meta = json.loads((tmp_path / "t" / "task.json").read_text())
    assert meta["n_items"] == len(items) == task.n_items == 20
    assert [d["value"] for d in meta["labels"]] == ["female", "male", "unsure", "no_person", "several_people"]
    assert items["key"].to_list() == list(range(20))
    labels = pl.read_parquet(labels_path)
    origin = dict(zip(labels["item_id"], labels["image"]))
    tar = tarfile.open(labels_path.parent / "shard-0000.tar")
    n_tar = 0
    for iid, image in zip(items["item_id"], items["image"]):
        copied = (tmp_path / "t" / image).read_bytes()
        ref = origin[iid]
        if "::" in ref:
            n_tar += 1
            original = tar.extractfile(ref.split("::")[1]).read()
        else:
            original = (labels_path.parent / ref).read_bytes()
        assert copied == original
    assert n_tar > 0  # tar members were extracted too
    # the images inside the task say nothing about the item: names are keys
    assert all(img.startswith("images/") and "item" not in img for img in items["image"])


def test_strata_are_balanced_and_weights_add_up(tmp_path, labels_path):
    labels = pl.read_parquet(labels_path)
    items = sample_task(labels_path, tmp_path / "t", n=40, seed=2, strata=["occupation", "source"])
    per = items.group_by("stratum").len()
    assert len(per) == 6 and per["len"].max() - per["len"].min() <= 1
    # weights are stratum size / number drawn: they add up to the population
    assert items["weight"].sum() == pytest.approx(len(labels))
    # the confidence band follows p_female
    edges = (0.1, 0.5, 0.9)
    names = band_labels(edges)
    for p, band in zip(items["p_female"], items["band"]):
        assert band == names[int(np.searchsorted(edges, p, side="right"))]


def test_presentation_order_is_shuffled(tmp_path, labels_path):
    items = sample_task(labels_path, tmp_path / "t", n=30, seed=4, strata=["occupation"])
    occ = items["occupation"].to_list()
    assert occ != sorted(occ)


def test_proportional_allocation(tmp_path, labels_path):
    items = sample_task(labels_path, tmp_path / "t", n=30, seed=2, strata=["source"], allocation="proportional")
    assert items.group_by("source").len().sort("source")["len"].to_list() == [15, 15]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=12), st.integers(1, 200), st.sampled_from(["equal", "proportional"]))
def test_allocation_invariants(sizes, n, allocation):
    take = _allocate(sizes, n, allocation, np.random.default_rng(0))
    assert sum(take) == min(n, sum(sizes))
    assert all(0 <= t <= s for t, s in zip(take, sizes))
    if allocation == "equal":
        unsaturated = [t for t, s in zip(take, sizes) if t < s]
        if unsaturated:  # strata not exhausted differ by at most one, and none exceeds them
            assert max(unsaturated) - min(unsaturated) <= 1
            assert max(take) <= min(unsaturated) + 1


def test_refuses_to_overwrite_a_task(tmp_path, labels_path):
    sample_task(labels_path, tmp_path / "t", n=5)
    (tmp_path / "t" / "annotations.jsonl").write_text("{}\n")
    with pytest.raises(BiasampError, match="already exists"):
        sample_task(labels_path, tmp_path / "t", n=5)
    assert (tmp_path / "t" / "annotations.jsonl").read_text() == "{}\n"


def test_missing_image_named_or_skipped(tmp_path, labels_path):
    df = pl.read_parquet(labels_path).with_columns(
        pl.when(pl.col("item_id") == "item-00003").then(pl.lit("img/gone.png")).otherwise(pl.col("image")).alias("image")
    )
    p = labels_path.parent / "some.parquet"
    df.write_parquet(p)
    with pytest.raises(BiasampError, match=r"item-00003 \('img/gone.png'\)") as e:
        sample_task(p, tmp_path / "t", n=60)
    assert "--image-root" in str(e.value)
    assert not (tmp_path / "t").exists()  # nothing half-written
    items = sample_task(p, tmp_path / "t", n=60, missing="skip")
    assert len(items) == 59 and "item-00003" not in items["item_id"].to_list()
    assert json.loads((tmp_path / "t" / "task.json").read_text())["n_missing_images_skipped"] == 1


def test_absolute_paths_and_image_root(tmp_path, labels_path):
    root = labels_path.parent
    df = pl.read_parquet(labels_path).filter(~pl.col("image").str.contains("::"))
    df.with_columns((pl.lit(str(root) + "/") + pl.col("image")).alias("image")).write_parquet(tmp_path / "abs.parquet")
    assert len(sample_task(tmp_path / "abs.parquet", tmp_path / "t1", n=5)) == 5
    df.write_parquet(tmp_path / "elsewhere.csv".replace(".csv", ".parquet"))
    with pytest.raises(BiasampError, match="not found"):
        sample_task(tmp_path / "elsewhere.parquet", tmp_path / "t2", n=5)
    assert len(sample_task(tmp_path / "elsewhere.parquet", tmp_path / "t3", n=5, image_root=root)) == 5


def test_item_id_as_path_inside_an_image_folder(tmp_path, labels_path):
    # labels of an image folder: item_id is the file's path inside the folder, no image column
    df = pl.read_parquet(labels_path).filter(~pl.col("image").str.contains("::"))
    df = df.with_columns(pl.col("image").str.strip_prefix("img/").alias("item_id")).drop("image")
    (tmp_path / "out").mkdir()
    df.write_parquet(tmp_path / "out" / "labels.parquet")
    items = sample_task(tmp_path / "out" / "labels.parquet", tmp_path / "t", n=4, image_column="item_id",
                        image_root=labels_path.parent / "img")
    assert all((tmp_path / "t" / img).read_bytes() == (labels_path.parent / "img" / iid).read_bytes()
               for iid, img in zip(items["item_id"], items["image"]))


def test_bad_inputs_are_named(tmp_path, labels_path):
    df = pl.read_parquet(labels_path)
    df.drop("image").write_parquet(tmp_path / "noimg.parquet")
    with pytest.raises(BiasampError, match="no 'image' column"):
        sample_task(tmp_path / "noimg.parquet", tmp_path / "t", n=5)
    df.drop("label").write_parquet(tmp_path / "nolabel.parquet")
    with pytest.raises(BiasampError, match="missing column.*label"):
        sample_task(tmp_path / "nolabel.parquet", tmp_path / "t", n=5)
    with pytest.raises(BiasampError, match="item_id 'item-00000' is in both"):
        sample_task([labels_path, labels_path], tmp_path / "t", n=5)
    with pytest.raises(BiasampError, match="band edges"):
        sample_task(labels_path, tmp_path / "t", n=5, bands=[0.5, 0.2])
    with pytest.raises(BiasampError, match="unknown stratum"):
        sample_task(labels_path, tmp_path / "t", n=5, strata=["colour"])


def test_cli_sample(tmp_path, labels_path, cli_runner):
    from biasamp.cli import app

    res = cli_runner.invoke(app, ["annotate", "sample", str(labels_path), "--n", "9", "--out", str(tmp_path / "t"),
                                  "--seed", "5", "--by", "source,label"])
    assert res.exit_code == 0, res.output
    assert "9 images sampled" in res.output and "annotate serve" in res.output
    assert load_task(tmp_path / "t").n_items == 9
    bad = cli_runner.invoke(app, ["annotate", "sample", str(labels_path), "--out", str(tmp_path / "u"), "--bands", "x"])
    # a user error: its message and hint, no traceback
    assert bad.exit_code == 2 and "--bands 'x'" in bad.output and "hint:" in bad.output
    assert "Traceback" not in bad.output
