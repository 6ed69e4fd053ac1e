"""Shared test fixtures. Tests never reach a model hub."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# derived data that biasamp keeps between runs goes to a folder of this test session
os.environ.setdefault("BIASAMP_CACHE_DIR", tempfile.mkdtemp(prefix="biasamp-test-cache-"))

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
FAIR_DIFFUSION = SHARED / "data" / "fair-diffusion"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="session")
def fair_diffusion_dir() -> Path:
    """Published Fair Diffusion counts, read in place from ../shared (never copied)."""
    if not (FAIR_DIFFUSION / "results_fairface_laion.txt").exists():
        pytest.skip("../shared/data/fair-diffusion is not beside the project")
    return FAIR_DIFFUSION


@pytest.fixture
def cli_runner():
    """A CLI runner on a wide terminal: typer prints a BiasampError in a rich panel ("Error"
    title, exit code 2), which would otherwise wrap long messages (paths) at 80 columns."""
    from typer.testing import CliRunner

    return CliRunner(env={"COLUMNS": "500"})


@pytest.fixture(scope="session")
def chromium_browser():
    """Debian's chromium, headless, driven by Playwright: one browser for the whole session.
    Skips when chromium or playwright is not installed, or the browser does not start."""
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not exe:
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    pw = sync_api.sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
    except Exception as e:  # a broken browser install is an environment problem, not a bug under test
        pw.stop()
        pytest.skip(f"chromium does not start: {e}")
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def open_watched_page(chromium_browser):
    """`open(url, width, height) -> (page, seen)`: a new page at `url`, loaded, that records
    `seen["dialogs"]` (dismissed), `seen["requests"]` (URLs) and `seen["errors"]` (script errors)."""

    def open_page(url: str, width: int = 1366, height: int = 768):
        page = chromium_browser.new_page(viewport={"width": width, "height": height})
        seen: dict[str, list] = {"dialogs": [], "requests": [], "errors": []}
        page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
        page.on("request", lambda r: seen["requests"].append(r.url))
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.goto(url)
        page.wait_for_load_state("load")
        return page, seen

    return open_page
