"""`biasamp measure` and `biasamp plan`: thin wrappers over biasamp.measure."""

from __future__ import annotations

from pathlib import Path

import typer

from biasamp.errors import BiasampError


def register(app: typer.Typer) -> None:
    @app.command("measure")
    def measure_cmd(
        inputs: list[Path] = typer.Argument(
            None, help="Observations or counts tables (Parquet, CSV, JSONL) holding both sides.", show_default=False
        ),
        train: list[Path] = typer.Option(
            None, "--train", help="Training-side file(s): Fair Diffusion counts or a table without a source column."
        ),
        gen: list[Path] = typer.Option(
            None, "--gen", help="Generated-side file(s): Fair Diffusion counts or a table without a source column."
        ),
        out: Path = typer.Option(None, "--out", "-o", help="Folder for amplification.parquet, summary.json, …"),
        fmt: str = typer.Option("auto", "--format", help="auto | observations | counts | fair-diffusion"),
        condition: list[str] = typer.Option(
            None, "--condition", help="Measure only this condition (repeatable); names the condition of inputs without one."
        ),
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap replicates."),
        seed: int = typer.Option(0, "--seed", help="Seed (one child seed per replicate)."),
        ci: float = typer.Option(0.95, "--ci", help="Confidence level of the intervals."),
        reflected_band: float = typer.Option(0.04, "--reflected-band", help="|p_gen − p_train| below this is 'reflected'."),
        sensitivity: float = typer.Option(None, "--sensitivity", help="P(classified female | female) for the correction."),
        specificity: float = typer.Option(None, "--specificity", help="P(classified male | male) for the correction."),
        n_pos: float = typer.Option(None, "--n-pos", help="Validation images truly female behind --sensitivity."),
        n_neg: float = typer.Option(None, "--n-neg", help="Validation images truly male behind --specificity."),
        validation: Path = typer.Option(
            None, "--validation", help="Labelled validation table (columns label, reference) for the correction."
        ),
        by_group: bool = typer.Option(True, "--by-group/--no-by-group", help="Also break results out per group."),
        max_rows: int = typer.Option(40, "--max-rows", help="Occupations printed on stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    ) -> None:
        """Measure amplification per condition × occupation, with bootstrap CIs, tests and categories."""
        from biasamp.measure import Correction, measure
        from biasamp.measure.io import load_any

        data: list = []
        cond = condition[0] if condition and len(condition) == 1 else (list(condition) if condition else None)
        fill = cond if isinstance(cond, str) else None
        if (train and not gen) or (gen and not train):
            raise BiasampError(
                "--train and --gen go together", hint="give the training-side file(s) and the generated-side file(s)"
            )
        for source, paths in (("train", train or []), ("gen", gen or [])):
            for p in paths:
                _, df = load_any(p, fmt=fmt, source=source, condition=fill)
                data.append(df)
        data.extend(inputs or [])
        if not data:
            raise BiasampError(
                "nothing to measure", hint="give observations tables, or --train FILE --gen FILE (see biasamp measure --help)"
            )
        correction = None
        if validation is not None:
            if sensitivity is not None or specificity is not None:
                raise BiasampError("give --validation or --sensitivity/--specificity, not both")
            correction = Correction.from_validation(validation)
        elif sensitivity is not None or specificity is not None:
            if sensitivity is None or specificity is None:
                raise BiasampError("--sensitivity and --specificity go together")
            correction = Correction.from_values(sensitivity, specificity, n_pos, n_neg)
        result = measure(
            data,
            n_boot=n_boot,
            seed=seed,
            ci=ci,
            reflected_band=reflected_band,
            correction=correction,
            condition=cond,
            format="auto" if fmt == "fair-diffusion" else fmt,
            by_group=by_group,
            progress=not quiet,
        )
        if out is not None:
            result.write(out)
        if not quiet:
            result.print(max_rows=max_rows)
            if out is not None:
                typer.echo(f"wrote {out}/amplification.parquet, by_group.parquet, exclusions.parquet, summary.json")

    @app.command("plan")
    def plan_cmd(
        half_width: float = typer.Option(None, "--half-width", help="Target 95% CI half-width of amp, percentage points."),
        amplification: float = typer.Option(None, "--amplification", help="Amplification to detect, percentage points."),
        power: float = typer.Option(0.8, "--power", help="Power to detect --amplification."),
        alpha: float = typer.Option(0.05, "--alpha", help="Two-sided test level."),
        ci: float = typer.Option(0.95, "--ci", help="Confidence level for --half-width."),
        p_train: float = typer.Option(0.5, "--p-train", help="Expected training share female (0.5 is the worst case)."),
        p_gen: float = typer.Option(None, "--p-gen", help="Expected generated share (default: from p_train and the target)."),
        n_train: int = typer.Option(None, "--n-train", help="Training images per occupation already fixed."),
        design_effect: float = typer.Option(1.0, "--design-effect", help="Variance inflation from clustering (>= 1)."),
        keep_rate: float = typer.Option(1.0, "--keep-rate", help="Share of images that end up confidently labelled."),
        n_occupations: int = typer.Option(1, "--n-occupations", help="Plan for the mean over this many occupations."),
    ) -> None:
        """Images per occupation needed for a CI half-width, or to detect an amplification."""
        from biasamp import ui
        from biasamp.measure import plan_sample_size

        plan = plan_sample_size(
            half_width=half_width,
            amplification=amplification,
            p_train=p_train,
            p_gen=p_gen,
            power=power,
            alpha=alpha,
            ci=ci,
            n_train=n_train,
            design_effect=design_effect,
            keep_rate=keep_rate,
            n_occupations=n_occupations,
        )
        ui.print_table(plan.to_frame().drop("formula"), title="Images per occupation")
        typer.echo(f"formula: {plan.formula}")
