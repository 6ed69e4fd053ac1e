"""The commands: thin wrappers over the library functions."""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from biasamp.cli import app


def _store(tmp_path):
    from PIL import Image

    store = tmp_path / "store"
    store.mkdir()
    for i in range(4):
        b = io.BytesIO()
        Image.new("RGB", (80, 80), (i * 60, 0, 0)).save(b, "JPEG")
        (store / f"{i}.jpg").write_bytes(b.getvalue())
    pl.DataFrame({"caption_id": [0, 1, 2, 3], "image": [f"{i}.jpg" for i in range(4)]}).write_parquet(store / "index.parquet")
    return store


def test_fetch_local_then_attrition(cli_runner, tmp_path, make_selection):
    sel = make_selection([("keyword", "nurse", i, f"http://x.invalid/{i}") for i in range(3)] + [("keyword", "pilot", 7, "http://x.invalid/7")])
    sel.write_parquet(tmp_path / "selection.parquet")
    store = _store(tmp_path)
    r = cli_runner.invoke(app, ["fetch", str(tmp_path / "selection.parquet"), "--source", "local", "--store", str(store), "--out", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    assert "ok" in r.output and "missing" in r.output
    d = pl.read_parquet(tmp_path / "out" / "downloads.parquet")
    assert d["status"].to_list() == ["ok", "ok", "ok", "missing"]
    assert (tmp_path / "out" / "fetch.manifest.json").exists()
    r = cli_runner.invoke(app, ["attrition", str(tmp_path / "selection.parquet"), "--downloads", str(tmp_path / "out" / "downloads.parquet")])
    assert r.exit_code == 0, r.output
    a = pl.read_parquet(tmp_path / "out" / "attrition.parquet")
    assert dict(zip(a["occupation"], a["decoded"])) == {"nurse": 3, "pilot": 0}


def test_fetch_embeddings_and_compare(cli_runner, tmp_path, make_selection):
    rng = np.random.default_rng(0)
    (tmp_path / "emb").mkdir()
    np.save(tmp_path / "emb" / "img_emb_0.npy", rng.normal(size=(4, 8)).astype(np.float16))
    pl.DataFrame({"url": [f"http://x.invalid/{i}" for i in range(4)], "caption_id": list(range(4))}).write_parquet(tmp_path / "emb" / "metadata_0.parquet")
    np.save(tmp_path / "text.npy", rng.normal(size=(2, 8)))
    make_selection([("keyword", "nurse", i, f"http://x.invalid/{i}") for i in range(4)]).write_csv(tmp_path / "sel.csv")
    r = cli_runner.invoke(
        app,
        ["fetch", str(tmp_path / "sel.csv"), "--source", "embeddings", "--embeddings", str(tmp_path / "emb"), "--text-embeddings", str(tmp_path / "text.npy"), "--out", str(tmp_path / "o"), "-q"],
    )
    assert r.exit_code == 0, r.output
    emb_labels = pl.read_parquet(tmp_path / "o" / "labels.parquet")
    assert len(emb_labels) == 4
    image_labels = emb_labels.with_columns(pl.lit("ok").alias("face_status"), pl.lit("female").alias("label"))
    image_labels.write_parquet(tmp_path / "img_labels.parquet")
    r = cli_runner.invoke(app, ["compare-embedding-labels", str(tmp_path / "o" / "labels.parquet"), str(tmp_path / "img_labels.parquet"), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    s = pl.read_parquet(tmp_path / "cmp" / "comparison.parquet")
    assert s["n_common"][0] == 4


def test_bad_input_is_a_clean_error(cli_runner, tmp_path, make_selection):
    pl.DataFrame({"occupation": ["nurse"], "caption_id": [1]}).write_parquet(tmp_path / "bad.parquet")
    r = cli_runner.invoke(app, ["fetch", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "missing column(s) condition" in r.output and "Traceback" not in r.output
    make_selection([("keyword", "nurse", 1, "u")]).write_parquet(tmp_path / "s.parquet")
    r = cli_runner.invoke(app, ["fetch", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "o"), "--source", "local"])
    assert r.exit_code == 2 and "needs --store" in r.output
