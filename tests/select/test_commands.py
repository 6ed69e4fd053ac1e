"""The CLI: `biasamp select` and `biasamp embed`, through the real command line."""

from __future__ import annotations

import json

import polars as pl
import pytest

from biasamp.cli import app
from biasamp.tables import read_table


@pytest.fixture
def mentions_file(tmp_path, mentions):
    p = tmp_path / "mentions.parquet"
    mentions.write_parquet(p)
    return p


def test_select_without_embeddings(cli_runner, mentions_file, tmp_path):
    out = tmp_path / "run"
    res = cli_runner.invoke(app, ["select", str(mentions_file), "--out", str(out), "-s", "keyword,no-indicators",
                                  "-s", "captions-as-prompts", "--n", "3", "--embedder", "none"])
    assert res.exit_code == 0, res.output
    sel = read_table(out / "selection.parquet", "selection")
    assert list(dict.fromkeys(sel["condition"])) == ["keyword", "no-indicators", "captions-as-prompts"]
    assert "warning" in res.output and "fewer than 3 asked" in res.output
    pools = pl.read_parquet(out / "diagnostics" / "pools.parquet")
    assert (pools["flag"] == "short_pool").any()
    manifest = json.loads((out / "select.manifest.json").read_text())
    assert manifest["params"]["strategies"] == ["keyword", "no-indicators", "captions-as-prompts"]


def test_select_errors_are_messages_not_tracebacks(cli_runner, mentions_file, tmp_path):
    res = cli_runner.invoke(app, ["select", str(mentions_file), "--out", str(tmp_path / "r"), "--templates", "A photo of {a} {job}", "--embedder", "none"])
    assert res.exit_code == 2 and "unknown placeholder(s) {job}" in res.output and "Traceback" not in res.output
    res = cli_runner.invoke(app, ["select", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_embed_then_select_with_precomputed_clip_vectors(cli_runner, mentions_file, tmp_path, tiny_clip):
    path, _, _ = tiny_clip
    emb = tmp_path / "emb"
    res = cli_runner.invoke(app, ["embed", str(mentions_file), "--out", str(emb), "-e", "clip-text", "-m", str(path), "--shard-rows", "10"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in emb.glob("*.npy")) == ["emb_0.npy", "emb_1.npy", "emb_2.npy"]
    out = tmp_path / "run"
    res = cli_runner.invoke(app, ["select", str(mentions_file), "--out", str(out), "-s", "nearest", "--k", "2", "--templates", "all",
                                  "-e", "precomputed", "-m", str(emb), "--query-embedder", "clip-text", "--query-model", str(path)])
    assert res.exit_code == 0, res.output
    sel = read_table(out / "selection.parquet", "selection")
    assert set(sel["template"]) == {"face", "works-as", "portrait", "photo", "image", "pooled"}
    # nearest picks only captions that mention the occupation
    m = pl.read_parquet(mentions_file)
    assert sel.join(m, on=["caption_id", "occupation"], how="anti").is_empty()
    nb = pl.read_parquet(out / "diagnostics" / "neighbours.parquet")
    assert not nb.is_empty()
    # the same with clip-text directly (cached under OUT/embedding-cache), identical picks
    out2 = tmp_path / "run2"
    res = cli_runner.invoke(app, ["select", str(mentions_file), "--out", str(out2), "-s", "nearest", "--k", "2", "--templates", "all",
                                  "-e", "clip-text", "-m", str(path)])
    assert res.exit_code == 0, res.output
    sel2 = read_table(out2 / "selection.parquet", "selection")
    assert sel2.select("occupation", "template", "caption_id").equals(sel.select("occupation", "template", "caption_id"))
    assert any((out2 / "embedding-cache").rglob("*.keys.parquet"))


@pytest.mark.slow
def test_select_default_minilm(cli_runner, mentions_file, tmp_path):
    out = tmp_path / "run"
    res = cli_runner.invoke(app, ["select", str(mentions_file), "--out", str(out), "--k", "2", "--n", "2"])
    assert res.exit_code == 0, res.output
    sel = read_table(out / "selection.parquet", "selection")
    assert set(sel["condition"]) == {"keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators"}
    assert json.loads((out / "select.manifest.json").read_text())["params"]["embedder"].startswith("sentence-transformers:")
