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
        from biasamp.study import load_config, plan_study, run_study
        from biasamp.ui import print_table

        cfg = load_config(config)
        if dry_run:
            print_table(plan_study(cfg).select("stage", "status", "key", "made_by", "what"), title=f"plan → {cfg.out_dir}")
            return
        result = run_study(cfg, force=tuple(force), show_progress=not quiet)
        print_table(_summary_rows(result), title=f"stages ({result.seconds:.1f} s)")
        _print_paradox(cfg.out_dir)


def _summary_rows(result):
    import polars as pl

    return pl.DataFrame({"stage": [s["name"] for s in result.stages], "status": [s["status"] for s in result.stages],
                         "seconds": [float(s.get("seconds") or 0.0) for s in result.stages]})


def paradox_table(run_dir: Path):
    """The study's table: mean amplification per condition (and model), CIs as text."""
    import polars as pl

    from biasamp.report.core import order_conditions

    df = pl.read_parquet(run_dir / "models.parquet")
    order = {c: i for i, c in enumerate(order_conditions(df["condition"].unique().to_list()))}
    df = df.with_columns(pl.col("condition").replace_strict(order, return_dtype=pl.Int64).alias("_o")).sort("model", "_o")

    def fmt(v):
        return "–" if v is None else f"{v:+.2f}"

    return pl.DataFrame({
        "model": df["model"],
        "condition": df["condition"],
        "amp": [fmt(v) for v in df["mean_amp"]],
        "95% CI": [f"[{fmt(a)}, {fmt(b)}]" for a, b in zip(df["mean_amp_lo"], df["mean_amp_hi"])],
        "n": df["n_occupations"],
        "amp/refl/mit": [f"{a}/{r}/{m}" for a, r, m in zip(df["n_amplified"], df["n_reflected"], df["n_mitigated"])],
    })


def _print_paradox(run_dir: Path) -> None:
    from biasamp.ui import console, print_table

    if (run_dir / "models.parquet").exists():
        table = paradox_table(run_dir)
        if table["model"].n_unique() == 1:
            table = table.drop("model")
        print_table(table, title="mean amplification over occupations (percentage points)")
    rep = run_dir / "report" / "index.html"
    if rep.exists():
        console.print(f"report: {rep}")
