"""`biasamp simulate`: write a simulated study with planted truth."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        out: Path = typer.Option(Path("runs/simulated"), "--out", "-o", help="Folder for observations.parquet, truth.parquet, simulation.json."),
        seed: int = typer.Option(0, help="Random seed (same seed, same study)."),
        n_occupations: int = typer.Option(30, "--n-occupations", help="Number of occupations."),
        n_train: int = typer.Option(300, "--n-train", help="Training images per occupation and condition."),
        n_gen: int = typer.Option(300, "--n-gen", help="Generated images per occupation and condition."),
        true_amp: float = typer.Option(0.0, "--true-amp", help="Planted amplification (points) of the model over its comparable training data."),
        amp_sd: float = typer.Option(0.0, "--amp-sd", help="Spread of the planted amplification across occupations (points)."),
        indicator_share: float = typer.Option(0.3, "--indicator-share", help="Share of keyword-matched captions that carry gender words."),
        nearest_indicator_share: float = typer.Option(0.1, "--nearest-indicator-share", help="Share of nearest-neighbour captions that carry gender words."),
        indicator_skew: float = typer.Option(0.2, "--indicator-skew", help="Skew of gendered captions relative to the rest (<1: more balanced, >1: more skewed)."),
        sensitivity: float = typer.Option(1.0, help="Classifier P(label female | woman)."),
        specificity: float = typer.Option(1.0, help="Classifier P(label male | man)."),
        abstention_rate: float = typer.Option(0.05, "--abstention-rate", help="Share of faces the classifier labels ambiguous."),
        templates: str = typer.Option("prior-work", help="Template set or ids (comma-separated) for the generated side's groups."),
        conditions: str = typer.Option(",".join(("keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators")), help="Comma-separated conditions."),
        images_per_caption: int = typer.Option(2, "--images-per-caption", help="Images per caption when captions are used as prompts."),
    ) -> None:
        """Simulate a study with planted truth and write its observations (real schema) and truth."""
        from biasamp import ui
        from biasamp.simulate import simulate_study, truth_summary

        study = simulate_study(
            n_occupations=n_occupations,
            conditions=[c.strip() for c in conditions.split(",") if c.strip()],
            templates=templates,
            n_train=n_train,
            n_gen=n_gen,
            images_per_caption=images_per_caption,
            true_amp=true_amp,
            amp_sd=amp_sd,
            indicator_share=indicator_share,
            nearest_indicator_share=nearest_indicator_share,
            indicator_skew=indicator_skew,
            sensitivity=sensitivity,
            specificity=specificity,
            abstention_rate=abstention_rate,
            seed=seed,
        )
        paths = study.write(out)
        ui.print_table(truth_summary(study.truth), title="Planted truth (simulated data): mean amplification, points")
        typer.echo(f"wrote {len(study.observations)} simulated observations to {paths['observations']}")
        typer.echo(f"truth: {paths['truth']}; settings: {paths['simulation']}")
        typer.echo(f"next: biasamp measure {paths['observations']} --out {out}  (see docs/measure.md)")
