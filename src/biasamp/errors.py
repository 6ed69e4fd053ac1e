"""User-facing errors.

`BiasampError` is what bad input raises: its message names the file, row or column and
says what to do. The CLI prints it without a traceback (it is the ClickException of the click that typer runs on).
"""

from __future__ import annotations

try:  # typer >= 0.20 ships its own copy of click; its commands catch that copy's exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses the click package
    from click import ClickException


class BiasampError(ClickException):
    """An error the user can fix; the message says how."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        if hint:
            message = f"{message}\n  hint: {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # keep str() equal to the message for tests and logs
        return self.message
