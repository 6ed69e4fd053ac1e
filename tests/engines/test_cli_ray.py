"""`biasamp scale`: a stage command, unchanged, on the Ray engine; the engine registry."""

from __future__ import annotations

import json

import pytest

from biasamp.cli import app

pytestmark = pytest.mark.ray


def test_scale_runs_the_query_command_on_ray(cli_runner, two_nodes, ray_cluster, tmp_path):
    from biasamp.corpus.query import read_mentions
    from biasamp.corpus.synthetic import make_corpus

    make_corpus(6_000, seed=9, out=tmp_path / "corpus", rows_per_file=2_000)
    args = ["captions", "query", str(tmp_path / "corpus"), "--no-names"]
    r_local = cli_runner.invoke(app, [*args, "--out", str(tmp_path / "local")])
    assert r_local.exit_code == 0, r_local.output
    r_ray = cli_runner.invoke(app, ["scale", "--engine", "ray", "--address", ray_cluster.address,
                                    "--engine-option", f"node_ip_address={ray_cluster.head_ip}",
                                    *args, "--out", str(tmp_path / "ray")])
    assert r_ray.exit_code == 0, r_ray.output
    rec = json.loads((tmp_path / "ray" / "query.engine.json").read_text())
    assert rec["engine"] == "ray" and rec["files_run"] == 3
    a = read_mentions(tmp_path / "ray").sort("caption_id", "occupation")
    b = read_mentions(tmp_path / "local").sort("caption_id", "occupation")
    assert a.equals(b) and a.height > 0
    # the stage functions are restored afterwards
    import biasamp.corpus.query as q
    from biasamp.engines import stages

    assert q.query_corpus.__module__ == "biasamp.corpus.query" and not stages.ORIGINALS


def test_scale_rejects_other_commands(cli_runner):
    r = cli_runner.invoke(app, ["scale", "--engine", "local", "measure", "x"])
    assert r.exit_code == 2 and "captions query" in r.output


def test_engine_registry_and_errors():
    from biasamp.engines import ENGINES, LocalEngine, get_engine
    from biasamp.errors import BiasampError

    assert ENGINES.names() == ["local", "ray"]
    assert isinstance(get_engine("local"), LocalEngine)
    with pytest.raises(BiasampError, match="unknown engine 'spark'"):
        get_engine("spark")
    with pytest.raises(BiasampError, match="address"):
        get_engine("local", "1.2.3.4:6379")
    eng = get_engine("ray", "127.0.0.2:1", max_retries=2)
    assert eng.name == "ray" and eng.max_retries == 2 and not eng.is_local


def test_local_engine_maps_functions_and_classes():
    from biasamp.engines import LocalEngine

    class Times:
        def __init__(self, k):
            self.k = k
            self.closed = False

        def __call__(self, b):
            return [x * self.k for x in b]

    eng = LocalEngine()
    assert list(eng.map(lambda x: x + 1, [1, 2])) == [(0, 2), (1, 3)]
    assert list(eng.map_batches(Times, [[1], [2, 3]], fn_constructor_args=(10,))) == [[10], [20, 30]]
    assert list(eng.map_batches(len, [[1], [2, 3]])) == [1, 2]


def test_ray_engine_map_batches_ordered_and_user_errors(two_nodes):
    from biasamp.errors import BiasampError

    class Times:
        def __init__(self, k):
            self.k = k

        def __call__(self, b):
            if b == ["bad"]:
                raise BiasampError("batch holds 'bad'", hint="remove it")
            return [x * self.k for x in b]

    batches = [[i, i + 1] for i in range(6)]
    assert list(two_nodes.map_batches(Times, batches, fn_constructor_args=(3,), concurrency=2)) == [
        [3 * i, 3 * i + 3] for i in range(6)]
    with pytest.raises(BiasampError, match="batch holds 'bad'"):
        list(two_nodes.map_batches(Times, [[1], ["bad"]], fn_constructor_args=(1,), concurrency=1))
    assert sorted(two_nodes.map(abs, [-1, -2, 3])) == [(0, 1), (1, 2), (2, 3)]
