"""Shared test fixtures. Tests never reach a model hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
FAIR_DIFFUSION = SHARED / "data" / "fair-diffusion"


@pytest.fixture(scope="session")
def fair_diffusion_dir() -> Path:
    """Published Fair Diffusion counts, read in place from ../shared (never copied)."""
    if not (FAIR_DIFFUSION / "results_fairface_laion.txt").exists():
        pytest.skip("../shared/data/fair-diffusion is not beside the project")
    return FAIR_DIFFUSION


@pytest.fixture
def cli_runner():
    from typer.testing import CliRunner

    return CliRunner()
