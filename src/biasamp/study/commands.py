"""`biasamp run`, `biasamp init`: a whole study from one config."""

from __future__ import annotations

from pathlib import Path

import typer

from biasamp.errors import BiasampError


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_cmd(
        path: Path = typer.Argument(Path("study.toml"), help="Where to write the example config."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    ) -> None:
        """Write a commented example study config."""
        from biasamp.study.config import example_text

        if path.exists() and not force:
            raise BiasampError(f"{path} exists", hint="pass --force to overwrite, or choose another path")
        path.write_text(example_text())
        typer.echo(f"wrote {path}; edit it, then: biasamp run {path} --dry-run")

    @app.command("run")
    def run_cmd(
        config: Path = typer.Argument(..., help="Study config (TOML); `biasamp init` writes an example."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate the config and print the plan; run nothing."),
        force: list[str] = typer.Option([], "--force", help="Re-run this stage even if cached (repeatable)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        """Run a whole study: query, select, fetch, generate, classify, measure, report.

        Each stage is cached by a hash of its inputs and settings; an interrupted run resumes.
        """
        from biasamp.study import load_config
        from biasamp.study.pipeline import build_stages
        from biasamp.study.runner import Runner
        from biasamp.ui import print_table

        cfg = load_config(config)
        runner = Runner(cfg, build_stages(cfg), show_progress=not quiet)
        if dry_run:
            print_table(runner.plan(), title=f"plan for {config} → {cfg.out_dir}")
            return
        result = runner.run(force=tuple(force))
        print_table(_summary_rows(result), title=f"stages ({result.seconds:.1f} s)")
        _print_paradox(cfg.out_dir)


def _summary_rows(result):
    import polars as pl

    return pl.DataFrame({"stage": [s["name"] for s in result.stages], "status": [s["status"] for s in result.stages],
                         "seconds": [float(s.get("seconds") or 0.0) for s in result.stages]})


def _print_paradox(run_dir: Path) -> None:
    import polars as pl

    from biasamp.ui import console, print_table

    p = run_dir / "models.parquet"
    if p.exists():
        df = pl.read_parquet(p).select("model", "condition", "mean_amp", "mean_amp_lo", "mean_amp_hi", "n_occupations")
        print_table(df, title="mean amplification (percentage points, 95% CI)", floats=2)
    rep = run_dir / "report" / "index.html"
    if rep.exists():
        console.print(f"report: {rep}")
