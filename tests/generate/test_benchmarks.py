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
