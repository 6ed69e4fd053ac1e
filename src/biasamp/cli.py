"""The `biasamp` command: one thin command per stage, nothing else.

Each stage package may hold a `commands` module with `register(app)`; it is found here
by discovery, so stages stay independent of one another.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import typer

import biasamp

app = typer.Typer(
    name="biasamp",
    help="Measure bias amplification in text-to-image models, and how much of it is an "
    "artefact of comparing unlike things.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"biasamp {biasamp.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """biasamp: stage commands over tables in a run directory."""


#: Stages in the order a study runs them (help lists commands in this order); others follow.
STAGE_ORDER = ("study", "demo", "corpus", "select", "generate", "images", "classify", "measure", "report",
               "annotate", "simulate", "engines")


def _order(name: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER), name)


def _register_stages() -> None:
    for mod in sorted(pkgutil.iter_modules(biasamp.__path__), key=lambda m: _order(m.name)):
        if not mod.ispkg:
            continue
        name = f"biasamp.{mod.name}.commands"
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(app)


_register_stages()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
