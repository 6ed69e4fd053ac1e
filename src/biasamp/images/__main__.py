"""`python -m biasamp.images fetch|attrition|compare-embedding-labels …`: the same commands
as `biasamp …`, without loading the other stages."""

from __future__ import annotations

import typer

from biasamp.images.commands import register

app = typer.Typer(name="biasamp-images", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
register(app)

if __name__ == "__main__":
    app()
