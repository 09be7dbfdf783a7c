"""Single output files and the result of dataset-writing stages.

Run folders (identity check, resume, ``--overwrite``, lock) are :class:`cellxfer.runs.RunFolder`.

:func:`refuse_existing` guards single output files (CSV, JSON, PNG, checkpoints): an existing file is
never replaced without ``--overwrite``, and a file that is one of the command's inputs never at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellxfer.errors import InputError


@dataclass(frozen=True)
class DatasetRunResult:
    """What a dataset-writing run did: ``counts`` per id of the whole output folder, how many samples
    it wrote now, skipped as already done, and failed (id -> one-line reason); seconds in all, and per
    written image after set-up (model loading) where the stage measures it."""

    out: Path
    counts: dict[str, int]
    written: int
    skipped: int
    failed: dict[str, str]
    seconds: float
    seconds_per_image: float | None = None


def make_parent(path: Path) -> None:
    """Create the folder ``path`` goes in now, before any long work (loading weights, training), or
    raise :class:`InputError` naming what is in the way and the fix."""
    from cellxfer.errors import os_error_message

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(os_error_message(exc)) from None


def refuse_existing(path: Path | None, option: str, overwrite: bool, inputs=()) -> None:
    """Raise :class:`InputError` (one line naming ``path`` and the fix) when writing ``path`` would destroy
    something: always when it is one of ``inputs`` (the same file, by any name), and when it exists and
    ``overwrite`` is false. ``option`` is the flag that names the file (e.g. ``--csv``); None: no output."""
    if path is None:
        return
    path = Path(path)
    for item in inputs:
        if path.resolve() == Path(item).resolve() or (path.exists() and Path(item).exists() and path.samefile(item)):
            raise InputError(f"{path}: {option} names one of the inputs, which writing would destroy; choose another {option}")
    if path.is_dir():
        raise InputError(f"{path}: {option} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; pass --overwrite to replace it or choose another {option}")
