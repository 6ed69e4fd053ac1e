"""`biasamp report`: HTML page and markdown file from a run directory."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run_dir: Path = typer.Argument(..., help="Run directory holding measure's outputs (amplification.parquet, summary.json, …)."),
        out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: RUN_DIR/report)."),
        title: str = typer.Option(None, help="Page title (default: from the run directory's name)."),
        only: str = typer.Option(None, help="Comma-separated section ids to include (default: all)."),
    ) -> None:
        """Write a self-contained HTML report (index.html) and a markdown report (report.md)."""
        from biasamp.report import build_report

        sel = [s.strip() for s in only.split(",") if s.strip()] if only else None
        paths = build_report(run_dir, out, title=title, only=sel)
        typer.echo(f"report: {paths.html}")
        typer.echo(f"markdown: {paths.markdown} ({len(paths.figures)} figure(s) beside it)")
