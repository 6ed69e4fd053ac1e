import json
import re

import polars as pl
import pytest

from biasamp.errors import BiasampError
from biasamp.report import Fragment, build_report, md_esc, order_conditions, remove_section, section, sections

EVIL = "<script>alert(1)</script>"


def test_writes_html_markdown_and_figures(built_report):
    paths = built_report
    assert paths.out_dir == paths.html.parent and paths.out_dir.name == "report"
    html = paths.html.read_text()
    md = paths.markdown.read_text()
    for sid in ("conditions", "scatter", "forest", "exclusions", "occupations", "flags", "settings"):
        assert f'<section id="{sid}">' in html
        assert sid in paths.sections
    assert "corrected" not in paths.sections  # no corrected columns in this run
    assert "truth" not in paths.sections
    # conditions in display order, unknown ones last
    first = [html.index(f"<td>{c}</td>") for c in ("keyword", "nearest", "nearest-no-indicators", "custom-condition")]
    assert first == sorted(first)
    # figures: inline base64 PNG in HTML, PNG files referenced by markdown
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == len(paths.figures) >= 5
    for f in paths.figures:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({f.name})" in md
    # the per-template table comes from summary.json's by_group
    assert "Per template" in html and "### Per template" in md


def test_self_contained_no_network_no_script(built_report):
    html = built_report.html.read_text()
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "Content-Security-Policy" in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_text_from_data_is_escaped(built_report):
    paths = built_report
    html = paths.html.read_text()
    md = paths.markdown.read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "R&amp;D engineer" in html and "R&D engineer" not in html
    assert "<b>" not in html  # a flag text from data
    assert EVIL not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "R&amp;D engineer" in md
    # markdown table cells cannot be split by a | in data
    assert r"price $5 \| \*bold\*" in md
    for line in md.splitlines():
        if line.startswith("| ") and "price" in line:
            assert line.count(" | ") + 2 == len(re.findall(r"(?<!\\)\|", line))


def test_md_escape_neutralises_links_and_html():
    assert md_esc("[x](http://e)") == r"\[x\](http://e)"
    assert md_esc("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md_esc("a\nb") == "a b"


def test_simulated_notice(tmp_path, run_factory):
    make_run = run_factory
    real = build_report(make_run(tmp_path / "real"), only=["conditions"]).html.read_text()
    assert "Simulated data" not in real
    sim_paths = build_report(make_run(tmp_path / "sim", simulated=True), only=["conditions"])
    assert "Simulated data" in sim_paths.html.read_text() and "These data are simulated" in sim_paths.html.read_text()
    assert "**Simulated data.**" in sim_paths.markdown.read_text()
    # also when summary.json names an input that sits beside a simulation.json
    sim_dir = tmp_path / "simdata"
    sim_dir.mkdir()
    (sim_dir / "simulation.json").write_text('{"simulated": true}')
    run = make_run(tmp_path / "measured")
    s = json.loads((run / "summary.json").read_text())
    s["settings"]["inputs"] = [str(sim_dir / "observations.parquet")]
    (run / "summary.json").write_text(json.dumps(s))
    assert "Simulated data" in build_report(run, only=["conditions"]).html.read_text()


def test_corrected_section_when_present(tmp_path, run_factory):
    make_run = run_factory
    paths = build_report(make_run(tmp_path / "c", corrected=True, conditions=["keyword", "nearest"]))
    assert "corrected" in paths.sections
    html = paths.html.read_text()
    assert "Rogan" in html and "corrected-vs-uncorrected.png" in paths.markdown.read_text()


def test_sections_left_out_when_inputs_absent(tmp_path, run_factory):
    make_run = run_factory
    run = make_run(tmp_path / "r")
    (run / "amplification.parquet").unlink()
    (run / "exclusions.parquet").unlink()
    paths = build_report(run, tmp_path / "out")
    assert paths.sections == ["conditions", "settings"]
    assert paths.figures == [] and paths.html.parent == tmp_path / "out"
    (tmp_path / "empty").mkdir()
    with pytest.raises(BiasampError, match="neither amplification.parquet nor summary.json"):
        build_report(tmp_path / "empty")
    with pytest.raises(BiasampError, match="run directory not found"):
        build_report(tmp_path / "nope")


def test_unreadable_table_names_the_file(fake_run):
    (fake_run / "amplification.parquet").write_bytes(b"not parquet")
    with pytest.raises(BiasampError, match="amplification.parquet"):
        build_report(fake_run)


def test_registry_adds_sections_without_touching_others(fake_run):
    calls = []

    @section("zz-extra", "Extra diagnostics", order=35)
    def extra(run, figures):
        calls.append(run.run_dir)
        n = len(run.amplification)
        return Fragment(f"<p>{n} rows</p>", f"{n} rows")

    @section("zz-absent", "Needs a table that is not there", order=36)
    def absent(run, figures):
        return None if run.parquet("attrition") is None else Fragment("x", "x")

    try:
        ids = [s.id for s in sections()]
        assert ids.index("scatter") < ids.index("zz-extra") < ids.index("forest")
        with pytest.raises(ValueError, match="registered twice"):
            section("zz-extra", "again", order=1)(lambda r, f: None)
        paths = build_report(fake_run, only=["conditions", "scatter", "zz-extra", "zz-absent", "forest"])
        assert calls == [fake_run]
        assert paths.sections.index("zz-extra") == paths.sections.index("scatter") + 1
        assert "zz-absent" not in paths.sections
        assert "<p>24 rows</p>" in paths.html.read_text() and "## Extra diagnostics\n\n24 rows" in paths.markdown.read_text()
        only = build_report(fake_run, fake_run / "only", only=["zz-extra"])
        assert only.sections == ["zz-extra"]
        with pytest.raises(BiasampError, match="unknown report section"):
            build_report(fake_run, only=["nope"])
    finally:
        remove_section("zz-extra")
        remove_section("zz-absent")
    assert "zz-extra" not in [s.id for s in sections()]


def test_order_conditions():
    assert order_conditions(["x", "no-indicators", "keyword", "a", "nearest"]) == ["keyword", "nearest", "no-indicators", "x", "a"]


def test_dollar_and_odd_names_do_not_break_figures(tmp_path, run_factory):
    make_run = run_factory
    run = make_run(tmp_path / "r", occupations=["$x^2$", "a $ b", "\\frac", "é ü 中文", "x" * 80], conditions=["keyword"])
    paths = build_report(run)
    assert len(paths.figures) == 2


def test_cli(fake_run, cli_runner, tmp_path):
    from biasamp.cli import app

    res = cli_runner.invoke(app, ["report", str(fake_run), "--out", str(tmp_path / "o"), "--only", "conditions,exclusions"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "index.html").exists() and "report:" in res.output
    bad = cli_runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "run directory not found" in bad.output


def test_frames_with_nulls_and_flags(tmp_path, run_factory):
    make_run = run_factory
    run = make_run(tmp_path / "r", conditions=["keyword"])
    amp = pl.read_parquet(run / "amplification.parquet")
    amp = amp.with_columns(
        pl.when(pl.col("occupation") == "nurse").then(None).otherwise(pl.col("amp")).alias("amp"),
        pl.when(pl.col("occupation") == "nurse").then(pl.lit("no confident training image")).otherwise(pl.col("flag")).alias("flag"),
        pl.when(pl.col("occupation") == "nurse").then(None).otherwise(pl.col("p_train")).alias("p_train"),
    )
    amp.write_parquet(run / "amplification.parquet")
    html = build_report(run, only=["flags", "occupations", "scatter"]).html.read_text()
    assert "no confident training image" in html


def test_docs_example_section_works(fake_run):
    """The 'Adding a section' example in docs/report.md runs as written."""
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "report.md"
    code = re.search(r"```python\n# src/biasamp/fetch/report_sections.py\n(.*?)```", doc.read_text(), re.S).group(1)
    try:
        exec(compile(code, str(doc), "exec"), {})
        pl.DataFrame({"status": ["success", "failed_to_download", "success"]}).write_parquet(fake_run / "downloads.parquet")
        only = ["exclusions", "attrition", "flags"]
        paths = build_report(fake_run, only=only)
        assert paths.sections == only
        assert "failed\\_to\\_download | 1 |" in paths.markdown.read_text()
        (fake_run / "downloads.parquet").unlink()
        assert "attrition" not in build_report(fake_run, only=only).sections
    finally:
        remove_section("attrition")
