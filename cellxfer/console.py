"""Where cellxfer talks to the user: results on stdout, warnings/errors/progress on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    err.print(f"[yellow]warning:[/] {message}", markup=True)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
