import os

import polars as pl
import pytest

from biasamp.errors import BiasampError
from biasamp.registry import Registry
from biasamp.store import ShardedOutput, atomic_write_text
from biasamp.tables import read_table, validate


def test_registry_unknown_name_lists_known():
    reg: Registry = Registry("embedder")
    reg.register("a", lambda: 1, doc="first")
    with pytest.raises(BiasampError, match="unknown embedder 'b'; known: a"):
        reg.get("b")
    assert reg.get("a")() == 1 and "a" in reg and reg.describe() == {"a": "first"}


def test_validate_missing_column_names_it_and_file():
    df = pl.DataFrame({"source": ["train"], "occupation": ["nurse"]})
    with pytest.raises(BiasampError) as e:
        validate(df, "observations", source="obs.csv")
    msg = str(e.value)
    assert "condition" in msg and "label" in msg and "obs.csv" in msg


def test_validate_unknown_label_names_row():
    df = pl.DataFrame(
        {"source": ["train", "gen"], "condition": ["k", "k"], "occupation": ["a", "a"], "label": ["female", "woman"]}
    )
    with pytest.raises(BiasampError, match=r"unknown value\(s\) \['woman'\] \(first at data row 2, counted from 1\)"):
        validate(df, "observations")


def test_validate_bad_type_names_rows():
    df = pl.DataFrame({"source": ["gen"], "condition": ["k"], "occupation": ["a"], "label": ["male"], "p_female": ["x"]})
    with pytest.raises(BiasampError, match="p_female"):
        validate(df, "observations")


def test_read_table_missing_and_corrupt(tmp_path):
    with pytest.raises(BiasampError, match="file not found"):
        read_table(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(BiasampError, match="bad.parquet"):
        read_table(bad)


def test_sharded_output_commit_is_atomic_and_resumable(tmp_path):
    out = ShardedOutput(tmp_path / "shards")
    out.commit(0, pl.DataFrame({"a": [1, 2]}))
    out.commit(1, pl.DataFrame({"a": [3]}))
    out.commit(1, pl.DataFrame({"a": [3]}))  # re-commit replaces, never duplicates
    assert out.done() == {"000000", "000001"}
    assert out.read()["a"].to_list() == [1, 2, 3]
    assert not [p for p in os.listdir(out.folder) if p.endswith(".tmp")]


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path):
    from biasamp.store import atomic_path

    target = tmp_path / "x.txt"
    atomic_write_text("old", target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_cli_version(cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and "biasamp" in r.stdout


def test_cli_prints_biasamp_error_without_traceback(cli_runner, tmp_path):
    import typer

    from biasamp.cli import app as real_app

    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise BiasampError("file x.csv: column 'label' is missing", hint="add it")

    @app.command()
    def other() -> None:
        pass

    r = cli_runner.invoke(app, ["boom"])
    assert r.exit_code == 2
    assert "column 'label' is missing" in r.output and "hint: add it" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert real_app is not None


def test_atomic_outputs_get_normal_permissions(tmp_path):
    p = atomic_write_text("x", tmp_path / "f.txt")
    assert (p.stat().st_mode & 0o777) == (0o666 & ~_current_umask())


def _current_umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_read_table_names_a_damaged_file_and_says_what_to_do(tmp_path):
    from biasamp.tables import read_table

    bad = tmp_path / "labels.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(BiasampError, match=r"cannot read .*labels\.parquet") as e:
        read_table(bad)
    assert "hint: the file is damaged or not in the format its extension says" in str(e.value)
