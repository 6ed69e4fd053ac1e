"""User-facing errors.

`BiasampError` is what bad input raises: its message names the file, row or column and
says what to do. The CLI prints it without a traceback (it is a `click.ClickException`).
"""

from __future__ import annotations

import click


class BiasampError(click.ClickException):
    """An error the user can fix; the message says how."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        if hint:
            message = f"{message}\n  hint: {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # keep str() equal to the message for tests and logs
        return self.message
