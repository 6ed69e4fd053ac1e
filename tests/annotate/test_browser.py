"""The labelling page driven in a real headless browser (Debian chromium + Playwright)."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from biasamp.annotate import load_task, serve_task

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LABEL_KEYS = {"female": "f", "male": "m", "unsure": "u", "no_person": "n", "several_people": "s"}


@pytest.fixture
def expect():
    return pytest.importorskip("playwright.sync_api").expect


class Page:
    """A page of the annotation app with the steps a person takes."""

    def __init__(self, context, url, expect):
        self.page = context.new_page()
        self.page.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.expect = expect

    def login(self, name):
        self.page.fill("#name", name)
        self.page.click("#start-button")

    def key(self) -> int:
        self.page.wait_for_selector("#image.loaded")
        return int(self.page.get_attribute("#image", "data-key"))

    def progress(self, done, total):
        self.expect(self.page.locator("#progress")).to_have_text(f"{done} / {total}")

    def click(self, label):
        self.page.click(f"#buttons button[data-label={label}]")

    def press(self, key):
        self.page.keyboard.press(key)


def plan(annotator: str, key: int, p_female: float) -> str:
    """What each test annotator answers for an item: mostly by p_female, with disagreements."""
    base = "female" if p_female > 0.5 else "male"
    if annotator == "bob" and key % 4 == 0:
        return "male" if base == "female" else "female"
    if annotator == "bob" and key % 5 == 1:
        return "unsure"
    if annotator == "ana" and key == 2:
        return "no_person"
    return base


@pytest.fixture
def served(task_dir):
    srv = serve_task(task_dir, port=0, block=False, announce=None)
    yield srv, load_task(task_dir)
    srv.stop()


def answers(task_dir) -> dict[tuple[str, int], str]:
    from biasamp.annotate import AnnotationLog

    task = load_task(task_dir)
    log = AnnotationLog(task.log_path, task.items["item_id"].to_list(), writable=False)
    return {(e["annotator"], e["key"]): e["label"] for e in log.current_answers()}


def test_clicks_keys_and_undo(chromium_browser, served, task_dir, expect):
    srv, task = served
    ctx = chromium_browser.new_context()
    pg = Page(ctx, srv.url, expect)
    expect(pg.page.locator("#start")).to_be_visible()
    pg.login("ana")
    n = task.n_items
    pg.progress(0, n)
    # three answers with clicks, three with keys
    for step, how in enumerate(["click"] * 3 + ["key"] * 3):
        k = pg.key()
        assert k == step
        lab = ["female", "male", "unsure", "no_person", "several_people", "female"][step]
        pg.click(lab) if how == "click" else pg.press(LABEL_KEYS[lab])
        pg.progress(step + 1, n)
    assert pg.key() == 6
    # z undoes the last answer: the same image comes back
    pg.press("z")
    pg.progress(5, n)
    assert pg.key() == 5
    expect(pg.page.locator("#status")).to_contain_text("Took back")
    pg.press("m")  # a different answer this time
    pg.progress(6, n)
    # Backspace undoes too; then answer with a digit key (2 = male)
    pg.press("Backspace")
    pg.progress(5, n)
    assert pg.key() == 5
    pg.press("2")
    pg.progress(6, n)
    # typing in no input and a modifier key do nothing
    pg.press("Control+f")
    pg.progress(6, n)
    got = answers(task_dir)
    assert got == {("ana", 0): "female", ("ana", 1): "male", ("ana", 2): "unsure", ("ana", 3): "no_person",
                   ("ana", 4): "several_people", ("ana", 5): "male"}
    # the page holds nothing that tells the item or its occupation
    html = pg.page.content()
    leaks = [s for s in set(task.items["item_id"]) | set(task.items["occupation"]) if s in html]
    assert not leaks and not pg.errors
    ctx.close()


def test_reload_mid_task_and_come_back_later(chromium_browser, served, task_dir, expect):
    srv, task = served
    n = task.n_items
    ctx = chromium_browser.new_context()
    pg = Page(ctx, srv.url, expect)
    pg.login("carla")
    for i in range(3):
        assert pg.key() == i
        pg.press("f")
        pg.progress(i + 1, n)
    pg.page.reload()
    pg.progress(3, n)  # no name asked again: the page remembers who is labelling
    expect(pg.page.locator("#annotator-name")).to_have_text("carla")
    assert pg.key() == 3
    pg.click("male")
    pg.progress(4, n)
    ctx.close()
    # another browser (no stored name): pick the name from the list and continue
    ctx2 = chromium_browser.new_context()
    pg2 = Page(ctx2, srv.url, expect)
    known = pg2.page.locator("#known button")
    expect(known).to_have_text([f"carla (4/{n})"])
    known.click()
    pg2.progress(4, n)
    assert pg2.key() == 4
    # switching annotator asks for a name again
    pg2.page.click("#switch")
    expect(pg2.page.locator("#start")).to_be_visible()
    pg2.login("dan")
    pg2.progress(0, n)
    assert pg2.key() == 0 and not pg2.errors
    ctx2.close()
    assert Counter(a for a, _ in answers(task_dir)) == {"carla": 4}


@pytest.fixture
def served_by_label(tmp_path, labels_path):
    """A task stratified by predicted label only: female, male and ambiguous predictions alike."""
    from biasamp.annotate import sample_task

    sample_task(labels_path, tmp_path / "by-label", n=12, seed=3, strata=["label"])
    srv = serve_task(tmp_path / "by-label", port=0, block=False, announce=None)
    yield srv, load_task(tmp_path / "by-label")
    srv.stop()


def test_two_annotators_then_export_and_validate(chromium_browser, served_by_label, labels_path, expect, cli_runner, tmp_path):
    srv, task = served_by_label
    task_dir = task.folder
    n = task.n_items
    p_female = dict(zip(task.items["key"], task.items["p_female"]))
    ctx_a, ctx_b = chromium_browser.new_context(), chromium_browser.new_context()
    ana, bob = Page(ctx_a, srv.url, expect), Page(ctx_b, srv.url, expect)
    ana.login("ana")
    bob.login("bob")
    for i in range(n):
        for name, pg in (("ana", ana), ("bob", bob)):
            k = pg.key()
            assert k == i
            lab = plan(name, k, p_female[k])
            pg.click(lab) if i % 2 else pg.press(LABEL_KEYS[lab])
            pg.progress(i + 1, n)
        if i == 3:  # each sees their own progress while the other works
            bob.page.reload()
            bob.progress(4, n)
    expect(ana.page.locator("#finished")).to_be_visible()
    expect(bob.page.locator("#finished")).to_be_visible()
    assert not ana.errors and not bob.errors
    ctx_a.close()
    ctx_b.close()

    from biasamp.cli import app

    res = cli_runner.invoke(app, ["annotate", "export", str(task_dir), "--out", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    ann = pl.read_csv(tmp_path / "export" / "annotations.csv")
    assert ann.columns == ["item_id", "label", "annotator", "time"] and len(ann) == 2 * n
    key_of = dict(zip(task.items["item_id"], task.items["key"]))
    for iid, lab, who in ann.select("item_id", "label", "annotator").iter_rows():
        assert lab == plan(who, key_of[iid], p_female[key_of[iid]])
    # agreement: Cohen's kappa from the 2x2-or-larger table, computed here by hand
    a = [plan("ana", k, p_female[k]) for k in range(n)]
    b = [plan("bob", k, p_female[k]) for k in range(n)]
    p_o = sum(x == y for x, y in zip(a, b)) / n
    p_e = sum(a.count(c) * b.count(c) for c in set(a) | set(b)) / n**2
    agreement = pl.read_csv(tmp_path / "export" / "agreement.csv")
    assert agreement["statistic"].to_list() == ["cohen_kappa"]
    assert agreement["kappa"][0] == pytest.approx((p_o - p_e) / (1 - p_e))
    # the validation table: the human majority where it is female/male, the rest counted
    val = pl.read_parquet(tmp_path / "export" / "labelled.parquet")
    expected_ref = {task.items["item_id"][k]: a[k] for k in range(n) if a[k] == b[k] and a[k] in ("female", "male")}
    assert dict(zip(val["item_id"], val["reference"])) == expected_ref
    pred = dict(zip(task.items["item_id"], task.items["label"]))
    assert all(pred[i] == lab for i, lab in zip(val["item_id"], val["label"]))
    import json

    dropped = json.loads((tmp_path / "export" / "summary.json").read_text())["dropped"]
    assert dropped["tie"] == sum(x != y for x, y in zip(a, b)) > 0
    assert dropped["not_annotated"] == 0
    assert len(val) + sum(dropped.values()) == n
    assert f"tie {dropped['tie']}" in res.output

    # the tables are what the classify and measure stages read
    validate = pytest.importorskip("biasamp.classify.validate")
    out = validate.validate_labels([labels_path], annotations=[tmp_path / "export" / "annotations.csv"])
    assert out["summary"]["backends"]
    correction = pytest.importorskip("biasamp.measure.correction")
    conf = val.filter(pl.col("label").is_in(["female", "male"]))
    assert conf["reference"].n_unique() == 2  # the seeded sample has truly female and male items
    c = correction.Correction.from_validation(val)
    tp = len(conf.filter((pl.col("label") == "female") & (pl.col("reference") == "female")))
    assert c.sensitivity == pytest.approx(tp / len(conf.filter(pl.col("reference") == "female")))
