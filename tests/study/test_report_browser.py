"""The study report in a real browser (Debian's chromium, headless): the side-by-side table,
attrition, similarity, validation figures, example thumbnails and the config render; text
from data stays text; nothing is fetched from outside the file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from biasamp.report import build_report

EVIL = "<script>alert(1)</script>"

pytestmark = pytest.mark.browser


def _fake_run_module():
    spec = importlib.util.spec_from_file_location("_study_report_fake_run", Path(__file__).with_name("test_report_sections.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def study_report(tmp_path_factory):
    run = _fake_run_module().make_study_run(tmp_path_factory.mktemp("browser") / "run")
    return build_report(run)


def test_study_report_renders_inert_and_offline(open_watched_page, study_report):
    paths = study_report
    page, seen = open_watched_page(paths.html.resolve().as_uri())
    dialogs, requests, errors = seen["dialogs"], seen["requests"], seen["errors"]
    # open every folded block so that the thumbnails and tables lay out
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.wait_for_timeout(200)

    for sid in ("models", "training-attrition", "similarity-diagnostics", "classifier-validation", "example-images", "study-config"):
        assert page.locator(f"section#{sid}").count() == 1, sid
    assert page.locator("section#models table").count() >= 1
    assert page.locator("section#training-attrition table").count() >= 2
    assert page.locator("section#classifier-validation table").count() >= 2
    # every matplotlib figure is an inline PNG that decoded
    assert page.locator("figure img").count() == len(paths.figures)
    assert page.evaluate("Array.from(document.querySelectorAll('figure img')).every(i => i.src.startsWith('data:image/png;base64,'))")
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    # the thumbnails: inline, decoded, at most 96 px, shown as laid out boxes; placeholders for the unreadable
    thumbs = page.locator("section#example-images .ba-thumb img")
    assert thumbs.count() == 10
    dims = page.eval_on_selector_all(
        "section#example-images .ba-thumb img",
        "els => els.map(i => [i.src.slice(0, 22), i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
    assert all(src == "data:image/png;base64," and 0 < w <= 96 and 0 < h <= 96 and 0 < shown <= 97 for src, w, h, shown in dims)
    assert page.locator("section#example-images .ba-missing").count() == 3
    # attrition: the flagged occupation's row is highlighted
    flagged = page.locator("section#training-attrition tr.ba-flagged", has_text="pilot")
    assert flagged.count() == 1
    bg = flagged.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert bg not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
    # the config is shown exactly as text
    pre = page.locator("section#study-config pre").inner_text()
    assert 'name = "x </pre><script>alert(1)</script>"' in pre
    # the <script> in names, labels, prompts and the config is shown as text, never run
    assert dialogs == [] and errors == []
    assert page.locator("script").count() == 0
    body = page.inner_text("body")
    assert EVIL in page.locator("section#models").inner_text()
    assert EVIL in page.locator("section#example-images").inner_text()
    assert body.count(EVIL) >= 4
    assert page.locator("section#example-images .ba-thumb[title='<script>alert(1)</script>']").count() == 1
    # nothing leaves the file
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    # readable on a laptop screen: the page does not scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    for href in page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))"):
        assert page.locator(href).count() == 1
    page.close()
