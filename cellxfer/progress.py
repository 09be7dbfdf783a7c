"""Progress bars: a rich bar on an interactive terminal, silence in pipes and logs."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


class _Quiet:
    def advance(self, n: int = 1, **fields) -> None:
        pass

    def update(self, **fields) -> None:
        pass


class _Bar:
    def __init__(self, progress, task):
        self._p, self._t = progress, task

    def advance(self, n: int = 1, **fields) -> None:
        self._p.update(self._t, advance=n, **fields)

    def update(self, **fields) -> None:
        self._p.update(self._t, **fields)


@contextlib.contextmanager
def progress(description: str, total: int | None, unit: str = "it", fields: str = "") -> Iterator[_Bar | _Quiet]:
    """Yield an object with ``advance(n, **fields)``; ``fields`` is a rich format string for extra
    columns, e.g. ``"loss {task.fields[loss]:.3f}"`` (then pass ``loss=`` to ``advance``)."""
    from cellxfer.console import err, stderr_is_terminal

    if not stderr_is_terminal() or os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 shows progress
        yield _Quiet()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:6.1f} {unit}/s" if task.speed else f"     - {unit}/s")

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn()]
    if fields:
        columns.append(TextColumn(fields))
    with Progress(*columns, console=err, transient=False) as p:
        yield _Bar(p, p.add_task(description, total=total))
