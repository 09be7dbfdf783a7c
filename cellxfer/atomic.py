"""Atomic file writes: write to a temporary file beside the target, then ``os.replace`` it in.

An interrupted run therefore never leaves a half-written output under its final name; leftover
temporaries carry the ``.cellxfer-tmp`` marker and are removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

TMP_MARK = ".cellxfer-tmp"
_LIVE: set[Path] = set()  # the temporaries this process is writing now (see remove_live_temporaries)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask can only be read by setting it, and setting it while other threads
# create files (decode pools, overlay writers) would give their files the wrong permissions
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed.
    The result gets the permissions of a normally created file (``0o666`` less the umask), not
    ``mkstemp``'s private ``0o600``. A ``target`` that is a symlink is written through (the file it names is
    replaced, the link kept), as ``open(target, "w")`` would. A full disk, however the writer reports it
    (:func:`cellxfer.errors.is_disk_full`), becomes :class:`cellxfer.errors.DiskFull` naming ``target``
    (``need``: its size where the caller knows it), with nothing partial left."""
    from cellxfer.errors import DiskFull, free_bytes, is_disk_full

    shown = Path(target)
    target = shown.resolve()
    if target.is_dir():  # os.replace would fail naming the temporary, not the file the user gave
        import errno

        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(shown))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(target)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(shown, need, 0, free_bytes(target.parent)) from None
        raise
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except DiskFull:
        tmp.unlink(missing_ok=True)
        raise
    except BaseException as exc:
        full = isinstance(exc, Exception) and is_disk_full(exc, target.parent)
        written = tmp.stat().st_size if full and tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if full:
            raise DiskFull(shown, need, written, free_bytes(target.parent)) from None
        raise
    finally:
        _LIVE.discard(tmp)


def held_temporary(target: str | os.PathLike, tag: str) -> tuple[int, Path]:
    """``(fd, path)`` of a new private scratch file beside ``target`` (``.<name>.<hex>.<tag>.cellxfer-tmp``) that
    its caller keeps open while it works and removes with :func:`drop_temporary`; until then a worker ended by
    SIGTERM removes it (:func:`remove_live_temporaries`), as it does the temporaries of :func:`atomic_path`. It is
    ``flock``-ed while open, so :func:`remove_dead_temporaries` tells one a killed run left from a live one."""
    fd, tmp = _create_temporary(Path(target), f".{tag}")
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and private: never held by another
    return fd, tmp


def remove_dead_temporaries(folder: str | os.PathLike | None, tag: str) -> int:
    """Delete the :func:`held_temporary` files of ``tag`` at the top of ``folder`` that no process holds open
    any longer (a run killed with SIGKILL left them; a live run's, of this or another command, are kept);
    return how many. Nothing where ``flock`` is missing (it cannot tell)."""
    n = 0
    if fcntl is None or folder is None or not Path(folder).is_dir():
        return 0
    for tmp in Path(folder).glob(f".*.{tag}{TMP_MARK}"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its run is alive
        else:
            tmp.unlink(missing_ok=True)
            n += 1
        finally:
            os.close(fd)
    return n


def drop_temporary(tmp: Path) -> None:
    """Remove a :func:`held_temporary` (idempotent)."""
    _LIVE.discard(tmp)
    tmp.unlink(missing_ok=True)


def _create_temporary(target: Path, tag: str = "") -> tuple[int, Path]:
    """``(fd, path)`` of a new private file beside ``target``, as ``tempfile.mkstemp`` makes one, except that
    the path is in ``_LIVE`` *before* the file exists: a worker ended by SIGTERM at any moment leaves no
    temporary that :func:`remove_live_temporaries` does not know (blocking the signal around ``mkstemp`` is
    not enough: a signal to the process may land on another thread, and the main thread then runs the handler
    at once; a fresh-clone CI run found one left by synth with 2 workers on a full disk)."""
    import secrets

    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}{tag}{TMP_MARK}"
        _LIVE.add(tmp)
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600), tmp
        except FileExistsError:
            _LIVE.discard(tmp)
        except BaseException:
            _LIVE.discard(tmp)
            raise


def remove_live_temporaries() -> None:
    """Delete the temporaries this process is writing now: a pool worker ended by SIGTERM mid-write
    (:func:`cellxfer.executors.die_with_parent`) leaves none behind (on a full disk, one would hold space)."""
    for tmp in list(_LIVE):
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(target: str | os.PathLike, text: str) -> None:
    data = text.encode()
    with atomic_path(target, need=len(data)) as tmp:
        tmp.write_bytes(data)


def write_json(target: str | os.PathLike, obj) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporaries left by an interrupted run below ``folder``; return how many."""
    n = 0
    for p in Path(folder).rglob(f"*{TMP_MARK}"):
        p.unlink(missing_ok=True)
        n += 1
    return n
