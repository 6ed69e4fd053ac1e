"""The study's report sections: models side by side, attrition, similarity diagnostics,
classifier validation, example images and the exact config, built from a fake run
directory whose tables come from the real producers where they are cheap (attrition,
validation, similarity diagnostics, pairwise image similarity) and whose texts try to
break out of HTML and markdown."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from biasamp.report import build_report

EVIL = "<script>alert(1)</script>"
OCCS = [EVIL, "nurse", "pilot", "R&D engineer"]
CONDS = ["keyword", "captions-as-prompts", "nearest", "nearest-no-indicators"]
STUDY = {"keyword": 12.57, "captions-as-prompts": 7.92, "nearest": 7.55, "nearest-no-indicators": 4.35}
MINE = ["models", "training-attrition", "similarity-diagnostics", "classifier-validation", "example-images", "study-config"]
CONFIG_TEXT = '# my study\n[study]\nname = "x </pre><script>alert(1)</script>"\nout = "runs/x"  # ``` fence\n'


def _png(path: Path, size=(64, 64), color=(200, 60, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


def make_study_run(run: Path, *, all_tables: bool = True) -> Path:
    """amplification.parquet + summary.json (measure's outputs), and with `all_tables` every
    table the study's report stage gathers."""
    rng = np.random.default_rng(0)
    run.mkdir(parents=True, exist_ok=True)
    amp_rows, summary = [], {"conditions": {}, "settings": {"ci": 0.95, "reflected_band": 0.04}}
    for c in CONDS:
        for o in OCCS:
            pt = float(rng.uniform(0.1, 0.9))
            pg = float(np.clip(pt + rng.normal(0, 0.1), 0, 1))
            a = float(np.sign(pt - 0.5) * (pg - pt) * 100)
            amp_rows.append({"condition": c, "occupation": o, "n_train": 50, "n_gen": 40, "p_train": pt, "p_gen": pg,
                             "amp": a, "amp_lo": a - 5, "amp_hi": a + 5, "category": "amplified", "flag": None,
                             "q_value": 0.5})
        summary["conditions"][c] = {"n_occupations": len(OCCS), "mean_amp": STUDY[c], "mean_amp_lo": STUDY[c] - 2,
                                    "mean_amp_hi": STUDY[c] + 2}
    pl.DataFrame(amp_rows).write_parquet(run / "amplification.parquet")
    (run / "summary.json").write_text(json.dumps(summary))
    if not all_tables:
        return run

    # models side by side (the report stage's models_table, from two models' summaries)
    from biasamp.study.report_stage import models_table

    s14 = {"conditions": {c: {"mean_amp": v, "mean_amp_lo": v - 1.5, "mean_amp_hi": v + 1.5, "mean_amp_abs": v + 1,
                              "n_occupations": 4, "n_flagged": 0, "n_amplified": 3, "n_reflected": 1, "n_mitigated": 0,
                              "n_significant": 2} for c, v in STUDY.items()}}
    s_evil = {"conditions": {c: {"mean_amp": v / 2, "mean_amp_lo": v / 2 - 1, "mean_amp_hi": v / 2 + 1,
                                 "n_occupations": 4} for c, v in STUDY.items()}}
    models_table({"sd14": s14, EVIL: s_evil}).write_parquet(run / "models.parquet")
    am = pl.DataFrame(amp_rows)
    pl.concat([am.with_columns(pl.lit("sd14").alias("model")), am.with_columns(pl.lit(EVIL).alias("model"))]).write_parquet(
        run / "amplification_models.parquet")

    # selection with similarities; diagnostics from the select stage's own aggregation
    from biasamp.select.core import _similarity_table

    sel_rows, cid = [], 0
    for c in ("keyword", "nearest"):
        for o in OCCS:
            for t in ((None,) if c == "keyword" else ("t1", "pooled")):
                for rank in range(1, 11):
                    cid += 1
                    base = 0.3 if c == "keyword" else 0.7
                    sel_rows.append({"condition": c, "occupation": o, "template": t, "caption_id": cid,
                                     "text": f"caption {cid} {EVIL}", "url": f"http://x/{cid}.jpg", "rank": rank,
                                     "similarity": base + 0.01 * rank, "indicator": "none"})
    sel = pl.DataFrame(sel_rows, schema_overrides={"template": pl.Utf8})
    sel.write_parquet(run / "selection.parquet")
    (run / "diagnostics").mkdir(exist_ok=True)
    _similarity_table(sel, None).write_parquet(run / "diagnostics" / "similarity.parquet")

    # attrition from the real attrition_table: "pilot" loses most of its images
    from biasamp.images.attrition import attrition_table
    from biasamp.images.schema import finish

    big = pl.DataFrame([{"condition": "keyword", "occupation": o, "caption_id": 10_000 + i * 100 + j, "text": "t"}
                        for i, o in enumerate(OCCS) for j in range(40)])
    dl = [{"caption_id": r["caption_id"], "item_id": str(r["caption_id"]),
           "status": "http_error" if (r["occupation"] == "pilot" and r["caption_id"] % 100 < 30) or r["caption_id"] % 100 == 0 else "ok",
           "received": True} for r in big.iter_rows(named=True)]
    dl = finish(pl.DataFrame(dl).with_columns(pl.col("received").cast(pl.Boolean)))
    attrition_table(big, dl).write_parquet(run / "attrition.parquet")

    # image-embedding similarity from the classify stage's pairwise_similarity
    from biasamp.classify.similarity import pairwise_similarity

    rows = []
    for c in ("keyword", "nearest"):
        for o in OCCS:
            t = rng.normal(size=(6, 8)) + (2.0 if c == "nearest" else 0.5)
            g = rng.normal(size=(5, 8)) + 2.0
            rows.append({"occupation": o, "condition": c, **pairwise_similarity(t, g, n_boot=50)})
    pl.DataFrame(rows).write_parquet(run / "image_similarity.parquet")

    # classifier validation from the classify stage's validate_labels
    from biasamp.classify.validate import validate_labels

    ref = ["female"] * 30 + ["male"] * 30
    pred = ["female"] * 26 + ["male"] * 2 + ["ambiguous"] * 2 + ["male"] * 27 + ["female"] * 3
    lab = pl.DataFrame({"item_id": [str(i) for i in range(60)], "label": pred, "reference": ref, "backend": ["clip"] * 60})
    validate_labels(lab, out=run)

    # example images: PNG files, a tar member, a missing file, an undecodable file
    img_dir = run / "stages" / "generate" / "imgs"
    tar_path = img_dir / "shard-0.tar"
    big_png = _png(img_dir / "wide.png", size=(400, 300), color=(20, 120, 200))
    img_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w") as tf:
        data = io.BytesIO()
        Image.new("RGB", (50, 120), (10, 200, 10)).save(data, format="PNG")
        info = tarfile.TarInfo("00001.png")
        info.size = len(data.getvalue())
        tf.addfile(info, io.BytesIO(data.getvalue()))
    bad = img_dir / "bad.png"
    bad.write_bytes(b"not an image")
    ex = []
    for i, o in enumerate(OCCS):
        for j, cond in enumerate(("templates", "captions-as-prompts")):
            p = _png(img_dir / f"{i}-{j}.png", color=(40 * i, 60 * j, 90))
            ex.append({"model": "sd14", "occupation": o, "condition": cond, "group": "face", "prompt": f"a photo of {o}",
                       "item_id": f"{i}-{j}", "image_path": str(p), "label": "female" if j else EVIL})
    ex += [
        {"model": "sd14", "occupation": "nurse", "condition": "templates", "group": "face", "prompt": "wide",
         "item_id": "w", "image_path": str(big_png), "label": "male"},
        {"model": EVIL, "occupation": "pilot", "condition": "templates", "group": "face", "prompt": EVIL,
         "item_id": "t", "image_path": f"{tar_path}::00001.png", "label": "male"},
        {"model": EVIL, "occupation": "pilot", "condition": "templates", "group": "face", "prompt": "gone",
         "item_id": "u", "image_path": str(img_dir / "does-not-exist.png"), "label": "male"},
        {"model": EVIL, "occupation": "pilot", "condition": "templates", "group": "face", "prompt": "bad",
         "item_id": "v", "image_path": str(bad), "label": "male"},
        {"model": EVIL, "occupation": "pilot", "condition": "templates", "group": "face", "prompt": "no member",
         "item_id": "x", "image_path": f"{tar_path}::nope.png", "label": "male"},
    ]
    pl.DataFrame(ex).write_parquet(run / "examples.parquet")

    (run / "config.toml").write_text(CONFIG_TEXT)
    (run / "config.json").write_text(json.dumps({"study": {"name": "x"}}))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_study_run(tmp_path_factory.mktemp("study") / "run")
    paths = build_report(run)
    return paths, paths.html.read_text(), paths.markdown.read_text()


def _section_html(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{re.escape(sid)}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_all_sections_present_in_order(report):
    paths, html, _ = report
    for sid in MINE:
        assert sid in paths.sections
    from biasamp.report.core import sections

    order = {s.id: s.order for s in sections()}
    # the models comparison follows the first model's conditions table; validation sits by the
    # correction that uses it; attrition and similarity by the exclusions; the config closes the page
    assert order["conditions"] < order["models"] < order["scatter"]
    assert order["corrected"] < order["classifier-validation"] < order["exclusions"]
    assert order["exclusions"] < order["training-attrition"] < order["similarity-diagnostics"] < order["flags"]
    assert order["occupations"] < order["example-images"] < order["settings"] < order["study-config"]
    assert paths.sections[-1] == "study-config"
    assert html.index('<section id="models">') < html.index('<section id="study-config">')


def test_sections_absent_without_inputs(tmp_path):
    paths = build_report(make_study_run(tmp_path / "bare", all_tables=False))
    assert not set(MINE) & set(paths.sections)
    assert "conditions" in paths.sections


def test_models_table_shows_each_model_and_the_series(report):
    _, html, md = report
    sec = _section_html(html, "models")
    assert "+12.57 [+11.07, +14.07]" in sec and "+4.35 [+2.85, +5.85]" in sec
    assert "+6.29 [+5.29, +7.29]" in sec  # the second model: 12.57 / 2
    assert "keyword +12.57 → captions-as-prompts +7.92 → nearest +7.55 → nearest-no-indicators +4.35" in sec
    # conditions in the study's order, columns per model
    assert sec.index("<td>keyword</td>") < sec.index("<td>captions-as-prompts</td>") < sec.index("<td>nearest</td>")
    assert "sd14: mean amplification [95% CI]" in sec
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: mean amplification" in sec
    assert sec.count('<img src="data:image/png;base64,') == 1
    assert "Per occupation, keyword: amplification per model" in sec
    assert "| keyword | +12.57 \\[+11.07, +14.07\\]" not in md  # numbers are not escaped
    assert "+12.57 [+11.07, +14.07]" in md


def test_attrition_highlights_the_flagged_occupation(report):
    _, html, md = report
    sec = _section_html(html, "training-attrition")
    flagged = re.findall(r"<tr class='ba-flagged'>(.*?)</tr>", sec, re.S)
    occ_rows = [r for r in flagged if "<td>keyword</td>" not in r]
    assert len(occ_rows) == 1 and "<td>pilot</td>" in occ_rows[0] and "more loss than most occupations" in occ_rows[0]
    # the condition summary: differential loss detected, one occupation flagged
    summary_row = next(r for r in flagged if "<td>keyword</td>" in r)
    assert "<td>yes</td>" in summary_row and "<td class=num>4</td>" in summary_row
    assert "http error" in sec  # loss reasons
    assert "⚑ more loss than most occupations" in md
    att = pl.read_parquet(Path(report[0].html).parents[1] / "attrition.parquet")
    assert att.filter(pl.col("flagged"))["occupation"].to_list() == ["pilot"]


def test_text_similarity_matches_a_reference(report):
    _, html, _ = report
    sec = _section_html(html, "similarity-diagnostics")
    sel = pl.read_parquet(Path(report[0].html).parents[1] / "selection.parquet")
    kw = sel.filter(pl.col("condition") == "keyword")["similarity"].to_numpy()
    near = sel.filter((pl.col("condition") == "nearest") & (pl.col("template") == "pooled"))["similarity"].to_numpy()
    for vals in (kw, near):
        for q in (0.05, 0.5, 0.95):
            assert f"<td class=num>{np.quantile(vals, q):.3f}</td>" in sec
        assert f"<td class=num>{len(vals)}</td>" in sec  # pooled rows only: each caption once
    assert "Median similarity per occupation" in sec
    assert "Training ↔ generated images" in sec
    sim = pl.read_parquet(Path(report[0].html).parents[1] / "image_similarity.parquet")
    for c in ("keyword", "nearest"):
        assert f"<td class=num>{sim.filter(pl.col('condition') == c)['similarity'].mean():.3f}</td>" in sec
    assert sec.count('<img src="data:image/png;base64,') == 2


def test_similarity_falls_back_to_diagnostics(tmp_path):
    run = make_study_run(tmp_path / "r")
    (run / "selection.parquet").unlink()
    (run / "image_similarity.parquet").unlink()
    paths = build_report(run, only=["similarity-diagnostics"])
    sec = _section_html(paths.html.read_text(), "similarity-diagnostics")
    assert "keyword ≈" in sec and "Training ↔ generated" not in sec


def test_validation_confusion_and_intervals(report):
    _, html, _ = report
    sec = _section_html(html, "classifier-validation")
    from biasamp.classify.validate import wilson

    assert "<td>female</td><td class=num>26</td><td class=num>2</td><td class=num>2</td><td class=num>30</td>" in sec
    lo, hi = wilson(26, 28)
    assert f"{100 * 26 / 28:.1f}% [{100 * lo:.1f}%, {100 * hi:.1f}%]" in sec  # female sensitivity
    assert "<td class=num>26/28</td>" in sec
    assert sec.count('<img src="data:image/png;base64,') == 2  # confusion matrix, intervals


def _thumbs(sec: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'class="ba-thumb"[^>]*><img src="data:image/png;base64,([^"]+)"', sec)]


def test_example_thumbnails_embedded_and_beside_markdown(report):
    paths, html, md = report
    sec = _section_html(html, "example-images")
    thumbs = _thumbs(sec)
    assert len(thumbs) == 10  # 8 + the wide one + the tar member
    sizes = [Image.open(io.BytesIO(t)).size for t in thumbs]
    assert all(max(s) <= 96 for s in sizes)
    assert (96, 72) in sizes and (40, 96) in sizes  # aspect kept: 400×300 and the tar member's 50×120
    assert sec.count('class="ba-missing"') == 3  # missing file, undecodable bytes, absent tar member
    assert "3 image(s) could not be read" in sec
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sec and EVIL not in sec
    files = sorted((paths.out_dir / "thumbnails").glob("*.png"))
    assert len(files) == 10
    linked = re.findall(r"\]\((thumbnails/[^)]+\.png)\)", md)
    assert sorted(linked) == sorted(f"thumbnails/{f.name}" for f in files)
    assert {open(f, "rb").read() for f in files} == set(thumbs)


def test_config_shown_exactly_and_escaped(report):
    _, html, md = report
    sec = _section_html(html, "study-config")
    import html as h

    pre = re.search(r"<pre[^>]*><code>(.*?)</code></pre>", sec, re.S).group(1)
    assert h.unescape(pre) == CONFIG_TEXT
    assert "<script>" not in pre
    assert "````toml\n" + CONFIG_TEXT.rstrip("\n") + "\n````" in md  # fence longer than the ``` inside


def test_no_raw_markup_from_data_anywhere(report):
    _, html, md = report
    assert EVIL not in html and "<script" not in html.lower()
    # in markdown, only inside the config's code block (which renderers show verbatim)
    outside = re.sub(r"````toml\n.*?\n````", "", md, flags=re.S)
    assert EVIL not in outside and "&lt;script&gt;" in outside


def test_config_json_used_without_toml(tmp_path):
    run = make_study_run(tmp_path / "r")
    (run / "config.toml").unlink()
    paths = build_report(run, only=["study-config"])
    assert "&quot;name&quot;: &quot;x&quot;" in paths.html.read_text()
    assert "```json" in paths.markdown.read_text()


@settings(max_examples=25, deadline=None)
@given(w=st.integers(1, 400), h=st.integers(1, 400), mode=st.sampled_from(["RGB", "RGBA", "L", "P", "CMYK", "I;16"]),
       palette=st.booleans())
def test_thumbnail_bounds_and_aspect(w, h, mode, palette):
    from biasamp.study.report_sections import thumbnail_png

    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    out = thumbnail_png(buf.getvalue(), 96, palette=palette)
    assert out is not None
    png, tw, th = out
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size == (tw, th)
    assert max(tw, th) <= 96 and min(tw, th) >= 1
    if max(w, h) <= 96:
        assert (tw, th) == (w, h)
    else:
        assert abs(tw / th - w / h) <= max(w / h, h / w) * 2 / min(tw, th) + 0.02


def test_thumbnail_of_garbage_is_none():
    from biasamp.study.report_sections import thumbnail_png

    assert thumbnail_png(b"") is None
    assert thumbnail_png(b"\x89PNG\r\n\x1a\n garbage") is None


def test_validation_from_summary_alone_and_minimal_models(tmp_path):
    run = make_study_run(tmp_path / "r")
    (run / "validation.parquet").unlink()
    (run / "amplification_models.parquet").unlink()
    pl.DataFrame({"model": ["only"], "condition": ["keyword"], "mean_amp": [3.0]}).write_parquet(run / "models.parquet")
    paths = build_report(run, only=["classifier-validation", "models"])
    html = paths.html.read_text()
    val = _section_html(html, "classifier-validation")
    assert "92.9% [77.4%, 98.0%]" in val and "26/28" not in val  # no k/n without the metrics table
    assert "0.828 [0.683, 0.972]" in val
    mod = _section_html(html, "models")
    assert "<td class=num>+3.00</td>" in mod and "<li><strong>only</strong>: keyword +3.00</li>" in mod
    assert "Per occupation" not in mod


def test_relative_image_paths_and_markdown_without_files(tmp_path):
    run = make_study_run(tmp_path / "r", all_tables=False)
    _png(run / "imgs" / "a.png", size=(30, 10))
    pl.DataFrame({"occupation": ["nurse"], "image_path": ["imgs/a.png"]}).write_parquet(run / "examples.parquet")
    paths = build_report(run, only=["example-images"])
    sec = _section_html(paths.html.read_text(), "example-images")
    assert [Image.open(io.BytesIO(t)).size for t in _thumbs(sec)] == [(30, 10)]
    assert "](thumbnails/m0-0001.png)" in paths.markdown.read_text()


def test_unreadable_examples_only_still_render(tmp_path):
    run = make_study_run(tmp_path / "r", all_tables=False)
    pl.DataFrame({"occupation": [EVIL], "image_path": ["/nonexistent/x.png"], "label": ["female"]}).write_parquet(
        run / "examples.parquet")
    paths = build_report(run, only=["example-images"])
    sec = _section_html(paths.html.read_text(), "example-images")
    assert sec.count('class="ba-missing"') == 1 and "&lt;script&gt;" in sec
    assert "[image missing: &lt;script&gt;alert(1)&lt;/script&gt; — female]" in paths.markdown.read_text()


def test_rebuild_leaves_no_stale_thumbnails(tmp_path):
    run = make_study_run(tmp_path / "r")
    build_report(run, only=["example-images"])
    assert len(list((run / "report" / "thumbnails").glob("*.png"))) == 10
    ex = pl.read_parquet(run / "examples.parquet")
    ex.head(3).write_parquet(run / "examples.parquet")
    paths = build_report(run, only=["example-images"])
    files = sorted(f.name for f in (run / "report" / "thumbnails").glob("*.png"))
    assert files == sorted(re.findall(r"thumbnails/([^)]+\.png)", paths.markdown.read_text())) and len(files) == 3
