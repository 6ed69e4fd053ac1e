"""Console helpers shared by the CLI commands: progress bars and table printing."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=False)
err_console = Console(stderr=True)


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool = True):
    """A rich progress bar on stderr; yields `advance(n=1)`."""
    if not enabled or not sys.stderr.isatty() and total is None:
        yield lambda n=1: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def print_table(df: pl.DataFrame, title: str | None = None, *, max_rows: int = 40, floats: int = 3) -> None:
    """Print a Polars frame as a rich table (numbers rounded, long frames cut)."""
    table = Table(title=title, show_lines=False)
    for c in df.columns:
        # short columns (names, numbers, intervals) never wrap; long text may
        width = max([len(str(c))] + [len(str(v)) for v in df[c].head(max_rows).to_list()])
        table.add_column(str(c), justify="right" if df.schema[c].is_numeric() else "left", no_wrap=width <= 24,
                         min_width=min(width, 18))
    for row in df.head(max_rows).iter_rows():
        table.add_row(*[(f"{v:.{floats}f}" if isinstance(v, float) else "" if v is None else str(v)) for v in row])
    console.print(table)
    if len(df) > max_rows:
        console.print(f"… {len(df) - max_rows} more rows")
