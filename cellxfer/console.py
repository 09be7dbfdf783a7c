"""Where cellxfer talks to the user: results on stdout, warnings/errors/progress on stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape

# markup off by default: messages carry file names and pip extras ("cellxfer[trt]") that rich would
# take for style tags; the few styled prefixes escape what they embed. Emoji codes off: a file named
# "well:x:1.tif" must be printed as it is, not as "well❌1.tif"
# under torchrun only rank 0 prints results (every rank computes the same ones)
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, quiet=os.environ.get("RANK", "0") != "0")
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
