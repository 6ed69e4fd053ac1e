"""The generation benchmarks' logic, on the CPU with the tiny pipeline (not their speed)."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_benchmark_fails_clearly_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert _load("gpu_generate").main([]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_gpu_benchmark_logic_with_tiny_model(tmp_path, capsys):
    out = tmp_path / "figures.json"
    rc = _load("gpu_generate").main(["--tiny", "--prompts", "1", "--images-per-prompt", "2", "--batch-size", "2", "--steps", "1",
                                     "--report-only", "--json", str(out), "--workdir", str(tmp_path / "w")])
    assert rc == 0
    figures = json.loads(out.read_text())
    assert figures["images"] == 2 and figures["study_images_per_s"] > 0 and figures["biasamp_images_per_s"] > 0
    assert len(list((tmp_path / "w" / "study").glob("*.png"))) == 2
    assert len(list((tmp_path / "w" / "biasamp" / "images").rglob("*.png"))) == 2
    assert "speed-up" in capsys.readouterr().out


def test_cpu_benchmark_runs(capsys):
    rc = _load("bench_generate_cpu").main(["--occupations", "nurse", "--templates", "face", "--images-per-prompt", "2", "--batch-size", "2",
                                           "--steps", "1", "--size", "32", "--repeats", "1", "--report-only"])
    assert rc == 0
    assert "overhead" in capsys.readouterr().out


SUITE = BENCH / "gpu_suite.sh"


def _probe_wheel(folder: Path) -> Path:
    """A minimal wheel of a one-module package, to check that --wheels installs offline."""
    import zipfile

    folder.mkdir()
    wheel = folder / "biasamp_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("biasamp_probe.py", "VALUE = 42\n")
        z.writestr("biasamp_probe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: biasamp-probe\nVersion: 1.0\n")
        z.writestr("biasamp_probe-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("biasamp_probe-1.0.dist-info/RECORD", "")
    return folder


def _suite(*args, env=None):
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(["bash", str(SUITE), *args], capture_output=True, text=True, env=full_env, timeout=600)


@pytest.mark.slow
def test_gpu_suite_runs_both_benchmarks_with_offline_wheels(tmp_path):
    """The one-command GPU suite, in its --tiny CPU mode: wheels installed without an index,
    both benchmarks run, their figures and a judged summary written to --out."""
    wheels = _probe_wheel(tmp_path / "wheels")
    out = tmp_path / "figures"
    res = _suite("--out", str(out), "--wheels", str(wheels), "--tiny")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "installed the 1 wheel files of" in res.stdout
    gen = json.loads((out / "generate.json").read_text())
    clip = json.loads((out / "clip.json").read_text())
    assert gen["images"] == 2 and gen["speedup"] > 0
    assert clip["target"] == 1000 and clip["end_to_end_images_per_s"] > 0 and set(clip["model_images_per_s"]) == {"4", "8"}
    summary = (out / "summary.txt").read_text()
    assert summary.count("not judged with --tiny") == 2
    assert {p.name for p in out.iterdir()} == {"env.txt", "generate.json", "generate.log", "clip.json", "clip.log", "summary.txt"}
    assert "torch:" in (out / "env.txt").read_text()


def test_gpu_suite_input_errors(tmp_path):
    res = _suite("--tiny")
    assert res.returncode == 64 and "--out DIR is required" in res.stderr
    res = _suite("--out", str(tmp_path / "o"), "--bogus")
    assert res.returncode == 64 and "unknown option '--bogus'" in res.stderr
    (tmp_path / "empty").mkdir()
    res = _suite("--out", str(tmp_path / "o"), "--wheels", str(tmp_path / "empty"))
    assert res.returncode == 3 and "no .whl files" in res.stderr and "fetch_wheels.sh" in res.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    res = _suite("--out", str(tmp_path / "o"), "--wheels", str(bad))
    assert res.returncode == 3 and "wheels.log" in res.stderr


def test_gpu_suite_reports_a_missing_library(tmp_path):
    """Without a library the benchmarks need, the suite stops before running anything and says
    which import failed and how to bring it."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "diffusers.py").write_text("raise ImportError('No module named diffusers (blocked by the test)')\n")
    import os

    res = _suite("--out", str(tmp_path / "o"), env={"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert res.returncode == 3
    assert "No module named diffusers" in res.stderr and "fetch_wheels.sh" in res.stderr
    assert not (tmp_path / "o" / "generate.json").exists()
