"""The runner's caching and resume, on stages whose work is counted."""

import json

import polars as pl
import pytest

from biasamp.study.config import parse_config
from biasamp.study.runner import Runner, Stage, gen_observations, train_observations


def _cfg(tmp_path, **over):
    d = {"study": {"out": str(tmp_path / "run")}, "corpus": {"paths": ["x"]}, "models": [{"name": "m", "id": "x"}]}
    d.update(over)
    return parse_config(d, check_files=False)


def _stages(calls: list, a_param=1, b_param=1, fail_in=None):
    def make(name):
        def fn(ctx):
            calls.append(name)
            if fail_in == name:
                raise RuntimeError("killed")
            (ctx.out / "out.txt").write_text(name + "".join(sorted(ctx.deps)))
        return fn

    return [
        Stage("a", {"p": a_param}, [], make("a")),
        Stage("b", {"p": b_param}, ["a"], make("b")),
        Stage("c", {}, ["b"], make("c")),
        Stage("d", {}, ["a"], make("d")),
    ]


def test_second_run_is_all_cached(tmp_path):
    calls = []
    cfg = _cfg(tmp_path)
    r1 = Runner(cfg, _stages(calls), show_progress=False).run()
    assert calls == ["a", "b", "c", "d"] and r1.ran == ["a", "b", "c", "d"]
    r2 = Runner(cfg, _stages(calls), show_progress=False).run()
    assert calls == ["a", "b", "c", "d"] and r2.cached == ["a", "b", "c", "d"]
    manifest = json.loads((cfg.out_dir / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["cached"] * 4
    assert "polars" in manifest["versions"] and manifest["config"]["models"][0]["name"] == "m"


def test_changing_a_setting_reruns_only_downstream(tmp_path):
    calls = []
    cfg = _cfg(tmp_path)
    Runner(cfg, _stages(calls), show_progress=False).run()
    calls.clear()
    r = Runner(cfg, _stages(calls, b_param=2), show_progress=False).run()
    assert calls == ["b", "c"] and r.cached == ["a", "d"]
    calls.clear()  # switching back finds the old outputs still cached
    Runner(cfg, _stages(calls, b_param=1), show_progress=False).run()
    assert calls == []


def test_interrupted_run_resumes_at_the_failed_stage(tmp_path):
    calls = []
    cfg = _cfg(tmp_path)
    with pytest.raises(RuntimeError):
        Runner(cfg, _stages(calls, fail_in="c"), show_progress=False).run()
    assert calls == ["a", "b", "c"]
    calls.clear()
    Runner(cfg, _stages(calls), show_progress=False).run()
    assert calls == ["c", "d"]


def test_plan_reports_cache_state(tmp_path):
    calls = []
    cfg = _cfg(tmp_path)
    runner = Runner(cfg, _stages(calls), show_progress=False)
    assert runner.plan()["status"].to_list() == ["to run"] * 4
    runner.run(force=())
    assert Runner(cfg, _stages(calls, a_param=5), show_progress=False).plan()["status"].to_list() == ["to run"] * 4
    assert Runner(cfg, _stages(calls), show_progress=False).plan()["status"].to_list() == ["cached"] * 4


def test_force_reruns_one_stage(tmp_path):
    calls = []
    cfg = _cfg(tmp_path)
    Runner(cfg, _stages(calls), show_progress=False).run()
    calls.clear()
    runner = Runner(cfg, _stages(calls), show_progress=False)
    leftover = runner.stage("d").dir / "labels" / "part-old.parquet"  # e.g. a resumable stage's finished shard
    leftover.parent.mkdir()
    leftover.write_text("made otherwise")
    runner.run(force=("d",))
    assert calls == ["d"]
    assert not leftover.exists()  # --force makes the stage again from nothing, not a resume of its outputs
    assert (runner.stage("d").dir / "out.txt").read_text() == "da"


def test_cached_stages_made_by_another_version_are_marked(tmp_path, monkeypatch, capsys):
    import biasamp

    calls = []
    cfg = _cfg(tmp_path)
    Runner(cfg, _stages(calls), show_progress=False).run()
    runner = Runner(cfg, _stages(calls), show_progress=False)
    assert runner.plan()["made_by"].to_list() == [biasamp.__version__] * 4
    monkeypatch.setattr(biasamp, "__version__", "9.9.9")
    r = Runner(cfg, _stages(calls), show_progress=False).run()
    assert r.cached == ["a", "b", "c", "d"] and calls == ["a", "b", "c", "d"]  # reused, not redone
    assert "made by biasamp" in capsys.readouterr().out
    manifest = json.loads((cfg.out_dir / "manifest.json").read_text())
    assert {s["made_by"] for s in manifest["stages"]} != {"9.9.9"}
    Runner(cfg, _stages(calls), show_progress=False).run(force=("d",))
    plan = Runner(cfg, _stages(calls), show_progress=False).plan()
    assert plan.filter(pl.col("stage") == "d")["made_by"].item() == "9.9.9"
    assert plan.filter(pl.col("stage") == "a")["made_by"].item() != "9.9.9"


def test_train_observations_counts_lost_images_and_prefers_pooled():
    sel = pl.DataFrame({
        "condition": ["keyword", "keyword", "nearest", "nearest", "nearest"],
        "occupation": ["nurse"] * 5,
        "template": [None, None, "face", "pooled", "pooled"],
        "caption_id": [1, 2, 1, 1, 3],
        "text": ["a"] * 5,
    })
    labels = pl.DataFrame({"item_id": ["1", "3"], "label": ["female", "male"], "p_female": [0.95, 0.05]})
    obs = train_observations(sel, labels, ["keyword", "nearest"]).sort("condition", "item_id")
    assert obs.filter(pl.col("condition") == "keyword")["label"].to_list() == ["female", "error"]
    assert obs.filter(pl.col("condition") == "nearest")["item_id"].to_list() == ["1", "3"]
    assert set(obs["source"]) == {"train"}


def test_gen_observations_pair_templates_and_captions():
    gens = pl.DataFrame({"item_id": ["g1", "g2"], "occupation": ["nurse", "nurse"],
                         "condition": ["templates", "captions-as-prompts"], "group": ["face", "17"]})
    labels = pl.DataFrame({"item_id": ["g1", "g2"], "label": ["female", "no_face"], "p_female": [0.99, None]})
    obs = gen_observations(gens, labels, ["keyword", "nearest", "captions-as-prompts"], "templates", "captions-as-prompts")
    got = dict(zip(obs["condition"], obs["item_id"]))
    assert got == {"keyword": "g1", "nearest": "g1", "captions-as-prompts": "g2"}
    assert obs.filter(pl.col("item_id") == "g2")["label"].to_list() == ["no_face"]
