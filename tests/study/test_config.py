import tomllib

import pytest

from biasamp.errors import BiasampError
from biasamp.study.config import example_text, load_config, parse_config


def _write(tmp_path, text):
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


MINIMAL = """
[corpus]
paths = ["captions.parquet"]
[[models]]
name = "m"
id = "some/hub-id"
"""


def test_example_config_is_valid():
    cfg = parse_config(tomllib.loads(example_text()), check_files=False)
    assert cfg.models[0].name == "sd15" and cfg.classify.female_threshold == 0.9
    assert cfg.selection.conditions[0] == "keyword"


def test_minimal_config_resolves_paths_relative_to_file(tmp_path):
    (tmp_path / "captions.parquet").write_bytes(b"")
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.resolve("captions.parquet") == str(tmp_path / "captions.parquet")
    assert cfg.out_dir == tmp_path / "runs" / "study"
    assert cfg.source_text.startswith("\n[corpus]")


@pytest.mark.parametrize(
    "text,expected",
    [
        (MINIMAL + "[selection]\nkk = 3\n", "[selection] kk: unknown key"),
        (MINIMAL.replace('id = "some/hub-id"', 'id = "x"\nsteps = "fifty"'), "[models.0] steps"),
        (MINIMAL + "[selection]\nconditions = ['keyword', 'nearestt']\n", "unknown condition(s) ['nearestt']"),
        (MINIMAL + "[classify]\nmale_threshold = 0.95\n", "must be below female_threshold"),
        (MINIMAL + "[selection]\nk = 0\n", "[selection] k"),
        ("[corpus]\npaths=['captions.parquet']\n", "[models]: required key is missing"),
        (MINIMAL + "[engine]\nname = 'spark'\n", "[engine] name"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, expected):
    (tmp_path / "captions.parquet").write_bytes(b"")
    with pytest.raises(BiasampError) as e:
        load_config(_write(tmp_path, text))
    assert expected in str(e.value)
    assert str(tmp_path / "study.toml") in str(e.value)


def test_missing_files_are_named(tmp_path):
    text = MINIMAL.replace('id = "some/hub-id"', 'id = "./no-such-model"') + '[measure]\nvalidation = "val.csv"\n'
    with pytest.raises(BiasampError) as e:
        load_config(_write(tmp_path, text))
    msg = str(e.value)
    assert "[corpus] paths.0: no file matches 'captions.parquet'" in msg
    assert "[models.0] id: local model folder './no-such-model' not found" in msg
    assert "[measure] validation" in msg


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(BiasampError, match="not valid TOML"):
        load_config(_write(tmp_path, "[corpus\n"))
    with pytest.raises(BiasampError, match="biasamp init"):
        load_config(tmp_path / "absent.toml")


def test_init_writes_example_and_refuses_overwrite(cli_runner, tmp_path):
    from biasamp.cli import app

    target = tmp_path / "s.toml"
    r = cli_runner.invoke(app, ["init", str(target)])
    assert r.exit_code == 0 and target.read_text() == example_text()
    r = cli_runner.invoke(app, ["init", str(target)])
    assert r.exit_code == 2 and "exists" in r.output


@pytest.mark.parametrize("name", ["study-sd-laion.toml", "cpu-small.toml"])
def test_bundled_examples_are_valid_configs(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / name
    cfg = parse_config(tomllib.loads(path.read_text()), path=str(path), check_files=False)
    assert cfg.models and cfg.selection.conditions
