"""The report in a real browser (Debian's chromium, headless): tables and figures render,
text from data stays text, and nothing is fetched from outside the file."""

import pytest

from biasamp.report import build_report

pytestmark = pytest.mark.browser


def test_report_renders_inert_and_offline(open_watched_page, built_report):
    paths = built_report
    page, seen = open_watched_page(paths.html.resolve().as_uri())
    dialogs, requests, errors = seen["dialogs"], seen["requests"], seen["errors"]
    page.wait_for_timeout(300)

    # tables and figures are there, and every figure decoded
    assert page.locator("table").count() >= 5
    n_img = page.locator("figure img").count()
    assert n_img == len(paths.figures)
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    # the <script> in an occupation name is shown as text, never run
    assert dialogs == [] and errors == []
    assert page.locator("script").count() == 0
    body = page.inner_text("body")
    assert "<script>alert(1)</script>" in body and "R&D engineer" in body
    # nothing leaves the file
    assert requests, "the page itself should be a request"
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    # readable on a laptop screen: the page itself does not scroll sideways (tables scroll in their box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    assert page.evaluate("document.querySelector('main').getBoundingClientRect().width") <= 1100
    # the section links resolve
    for href in page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))"):
        assert page.locator(href).count() == 1
    page.close()


def test_simulated_notice_is_visible_at_the_top(chromium_browser, tmp_path, run_factory):
    paths = build_report(run_factory(tmp_path / "sim", simulated=True), only=["conditions", "exclusions"])
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(paths.html.resolve().as_uri())
    notice = page.locator(".notice")
    assert notice.is_visible() and "simulated" in notice.inner_text().lower()
    assert notice.bounding_box()["y"] < 300
    page.close()
