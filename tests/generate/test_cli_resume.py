"""The `biasamp generate` command: a run killed with SIGKILL resumes to the same result."""

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from biasamp.errors import BiasampError

pytest.importorskip("torch")

ARGS = ["--occupations", "nurse,chef,baker,pilot,judge,tailor,miner,poet", "--templates", "face,photo", "-n", "2",
        "--steps", "2", "--height", "32", "--width", "32", "--batch-size", "2", "--shard-size", "4", "--seed", "7", "-q"]


def _cmd(model, out, fmt="files"):
    return [sys.executable, "-m", "biasamp.cli", "generate", "--model", str(model), "--out", str(out), "--format", fmt, "--device", "cpu", *ARGS]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _table(out):
    return pl.read_parquet(out / "generations" / "*.parquet").sort("item_id")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["files", "webdataset"])
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, tiny_model, cli_runner, fmt):
    """A real `biasamp generate` process is killed mid-way; the same command, run again,
    finishes it; the result equals an uninterrupted run, image bytes included."""
    from biasamp.cli import app
    from biasamp.generate import read_image_bytes

    out = tmp_path / "killed"
    parts = out / "generations"
    proc = subprocess.Popen(_cmd(tiny_model, out, fmt), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if parts.is_dir() and len(list(parts.glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done_at_kill = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert 2 <= len(done_at_kill) < 8, done_at_kill  # 8 shards of 4 images planned: killed mid-way
    mtimes = {n: (parts / n).stat().st_mtime_ns for n in done_at_kill}

    resumed = cli_runner.invoke(app, _cmd(tiny_model, out, fmt)[3:])
    assert resumed.exit_code == 0, resumed.output
    assert {n: (parts / n).stat().st_mtime_ns for n in done_at_kill} == mtimes  # finished shards were not redone

    ref = tmp_path / "uninterrupted"  # the same command, in this process, never killed
    r = cli_runner.invoke(app, _cmd(tiny_model, ref, fmt)[3:])
    assert r.exit_code == 0, r.output
    a, b = _table(out), _table(ref)
    assert len(a) == 32 and a["item_id"].is_unique().all()
    assert a.equals(b)
    for ref_path in a["image"]:
        assert read_image_bytes(ref_path, out) == read_image_bytes(ref_path, ref), ref_path
    assert not list(out.rglob("*.tmp"))
    if fmt == "files":
        assert len(list((out / "images").rglob("*.png"))) == 32
    else:  # every image once, in the shards' tars, none left over from the killed shard
        import tarfile

        members = [m for t in sorted((out / "images").glob("*.tar")) for m in tarfile.open(t).getnames() if m.endswith(".png")]
        assert len(members) == 32 and len(set(members)) == 32


def test_cli_errors_are_clear(tmp_path, tiny_model, cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["generate", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--occupations", "nurse", "--templates", "A {job}"])
    assert r.exit_code != 0
    assert isinstance(r.exception, BiasampError) or "unknown placeholder" in r.output
    r = cli_runner.invoke(app, ["generate", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--occupations", "nurse", "--format", "zip"])
    assert r.exit_code != 0 and (isinstance(r.exception, BiasampError) or "unknown image format" in r.output)


def test_cli_captions_and_templates_file(tmp_path, tiny_model, cli_runner):
    from biasamp.cli import app

    sel = tmp_path / "sel.parquet"
    pl.DataFrame({"condition": ["captions-as-prompts", "keyword"], "occupation": ["nurse", "nurse"], "caption_id": [3, 4], "text": ["a nurse", "x"]}).write_parquet(sel)
    tf = tmp_path / "t.txt"
    tf.write_text("A sketch of {a} {occupation}\n")
    out = tmp_path / "o"
    r = cli_runner.invoke(app, ["generate", "--model", str(tiny_model), "--out", str(out), "--captions", str(sel), "--templates-file", str(tf),
                                "--occupations", "nurse", "-n", "1", "--steps", "1", "--height", "32", "--width", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    g = _table(out)
    assert sorted(zip(g["condition"], g["group"], g["prompt"])) == [("captions-as-prompts", "3", "a nurse"), ("templates", "file-1", "A sketch of a nurse")]
    assert "2 images" in r.output


def test_cli_templates_repeated_and_mixed(tmp_path, tiny_model, cli_runner):
    """--templates takes names (comma-separated) or one text per value; a value mixing both is refused."""
    from biasamp.cli import app

    base = ["generate", "--model", str(tiny_model), "--occupations", "nurse", "-n", "1", "--steps", "1", "--height", "32", "--width", "32",
            "--device", "cpu", "-q"]
    out = tmp_path / "o"
    r = cli_runner.invoke(app, [*base, "--out", str(out), "--templates", "study", "--templates", "A drawing of {a} {occupation}, in pencil"])
    assert r.exit_code == 0, r.output
    assert sorted(_table(out)["prompt"]) == ["A drawing of a nurse, in pencil", "A photo of the face of a nurse"]
    r = cli_runner.invoke(app, [*base, "--out", str(tmp_path / "m"), "--templates", "study,A drawing of {a} {occupation}"])
    assert r.exit_code == 2 and "mixes a template name" in r.output
    r = cli_runner.invoke(app, [*base, "--out", str(tmp_path / "f"), "--templates", "A photo of {a} {occupation!r}"])
    assert r.exit_code == 2 and "formats a placeholder" in r.output


def test_cli_missing_input_files_name_their_option(tmp_path, tiny_model, cli_runner):
    from biasamp.cli import app

    base = ["generate", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--occupations", "nurse", "--device", "cpu"]
    r = cli_runner.invoke(app, [*base, "--templates-file", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2 and "--templates-file" in r.output and "nope.txt" in r.output
    r = cli_runner.invoke(app, [*base, "--captions", str(tmp_path / "nope.parquet")])
    assert r.exit_code == 2 and "--captions" in r.output and "nope.parquet" in r.output
