"""Atomic file writes: write to a temporary file beside the target, then ``os.replace`` it in.

An interrupted run therefore never leaves a half-written output under its final name; leftover
temporaries carry the ``.cellxfer-tmp`` marker and are removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

TMP_MARK = ".cellxfer-tmp"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask can only be read by setting it, and setting it while other threads
# create files (decode pools, overlay writers) would give their files the wrong permissions
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed.
    The result gets the permissions of a normally created file (``0o666`` less the umask), not
    ``mkstemp``'s private ``0o600``. A ``target`` that is a symlink is written through (the file it names is
    replaced, the link kept), as ``open(target, "w")`` would."""
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_MARK, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike, obj) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporaries left by an interrupted run below ``folder``; return how many."""
    n = 0
    for p in Path(folder).rglob(f"*{TMP_MARK}"):
        p.unlink(missing_ok=True)
        n += 1
    return n
