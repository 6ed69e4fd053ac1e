"""`biasamp annotate sample|serve|export`: thin wrappers over biasamp.annotate."""

from __future__ import annotations

from pathlib import Path

import typer

annotate_app = typer.Typer(
    help="Human validation: sample labelled images, label them in the browser, export the answers.",
    no_args_is_help=True,
)


def _floats(text: str) -> list[float]:
    from biasamp.errors import BiasampError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BiasampError(f"--bands {text!r} is not a comma-separated list of numbers", hint="e.g. 0.1,0.5,0.9") from None


@annotate_app.command("sample")
def sample_cmd(
    labels: list[Path] = typer.Argument(..., help="labels tables (Parquet, CSV, JSONL) with an image column"),
    out: Path = typer.Option(..., "--out", "-o", help="new task folder to write"),
    n: int = typer.Option(200, "--n", help="number of images to sample"),
    seed: int = typer.Option(0, "--seed", help="random seed (same inputs + seed = same task)"),
    bands: str = typer.Option("0.1,0.5,0.9", "--bands", help="p_female edges of the confidence bands"),
    by: str = typer.Option("source,occupation,label,band", "--by", help="stratum columns (comma-separated)"),
    allocation: str = typer.Option("equal", "--allocation", help="equal (same number per stratum) or proportional"),
    image_column: str = typer.Option("image", "--image-column", help="column holding the image path or tar::member"),
    image_root: Path | None = typer.Option(None, "--image-root", help="folder image paths are relative to"),
    missing: str = typer.Option("error", "--missing", help="error or skip when a sampled image is not found"),
    title: str | None = typer.Option(None, "--title", help="title shown to annotators"),
) -> None:
    """Draw a stratified, seeded sample of labelled images into an annotation task folder."""
    from biasamp import ui
    from biasamp.annotate.task import describe_sample, sample_task

    items = sample_task(
        labels,
        out,
        n=n,
        seed=seed,
        bands=_floats(bands),
        strata=[s.strip() for s in by.split(",") if s.strip()],
        allocation=allocation,
        image_column=image_column,
        image_root=image_root,
        missing=missing,
        title=title,
    )
    ui.print_table(describe_sample(items), title=f"{len(items)} images sampled into {out}")
    typer.echo(f"next: biasamp annotate serve {out}")


@annotate_app.command("serve")
def serve_cmd(
    folder: Path = typer.Argument(..., help="annotation task folder"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (loopback by default)"),
    port: int = typer.Option(8765, "--port", help="port (0 picks a free one)"),
    open_browser: bool = typer.Option(False, "--open", help="open the page in a browser"),
    verbose: bool = typer.Option(False, "--verbose", help="log every request"),
) -> None:
    """Serve the labelling page for a task folder until interrupted (Ctrl-C)."""
    from biasamp.annotate.server import serve_task

    serve_task(folder, host=host, port=port, open_browser=open_browser, verbose=verbose, announce=typer.echo)


@annotate_app.command("export")
def export_cmd(
    folder: Path = typer.Argument(..., help="annotation task folder"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output folder (default FOLDER/export)"),
    fmt: str = typer.Option("csv", "--format", help="annotations file format: csv or jsonl"),
) -> None:
    """Write the annotations file, the validation table and inter-annotator agreement."""
    from biasamp import ui
    from biasamp.annotate.export import export_annotations

    res = export_annotations(folder, out, fmt=fmt)
    typer.echo(f"{len(res.annotations)} answers by {len(res.progress)} annotator(s): "
               + ", ".join(f"{k} {v}" for k, v in res.progress.items()))
    typer.echo(f"validation: {len(res.validation)} items with a female/male majority; dropped "
               + ", ".join(f"{k} {v}" for k, v in res.dropped.items()))
    if len(res.agreement):
        ui.print_table(res.agreement, title="inter-annotator agreement")
    else:
        typer.echo("agreement: no item was labelled by two annotators")
    for name, path in res.files.items():
        typer.echo(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")
