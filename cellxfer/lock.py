"""Single writer per output file: a lock file ``<output>.lock`` beside it, holding the writer's pid.

Invariants: while a :class:`OutputLock` is held, a second :class:`OutputLock` on the same output (by any
name: the lock sits beside the resolved path), in this
or any other process on the machine, fails with :class:`cellxfer.errors.InputError` naming the output
and the holder's pid. The lock is an advisory ``flock`` on the lock file, so the kernel drops it when its
process dies however it dies (``kill -9`` too): a lock file left behind by a dead process is *stale*
and is taken over with a warning, never refused forever. Where ``fcntl`` is missing (Windows) the lock
file is created exclusively and a stale one is recognised by its pid no longer running.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from cellxfer.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def lock_path(output: str | os.PathLike) -> Path:
    """``<output>.lock`` beside the file ``output`` really is (symlinks followed), so two writers that name
    the same file differently (a symlink, ``..``) take the same lock."""
    output = Path(output).resolve()
    return output.with_name(output.name + ".lock")


def _pid_of(text: str) -> int | None:
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _holder_pid(fd: int, wait_s: float = 1.0) -> int | None:
    """The pid written in the lock file open at ``fd``, waiting up to ``wait_s`` for it: a holder writes
    its pid just after it takes the lock, so a refusal read in between would otherwise find no pid."""
    deadline = time.monotonic() + wait_s
    while True:
        pid = _pid_of(os.pread(fd, 64, 0).decode(errors="replace"))
        if pid is not None or time.monotonic() >= deadline:
            return pid
        time.sleep(0.01)


def _running(pid: int) -> bool:  # pragma: no cover - the fcntl-less fallback only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """Hold ``<output>.lock`` for writing ``output``; see module docs. ``what`` names the writer in the
    refusal ("another <what> (pid N) is writing <output>; ..."); ``warn`` gets the stale-lock warning."""

    def __init__(self, output: str | os.PathLike, what: str = "cellxfer", hint: str = "wait for it",
                 warn: Callable[[str], None] | None = None):
        self.output, self.path = Path(output), lock_path(output)
        self.what, self.hint = what, hint
        self.warn = warn or _default_warn
        self._fd: int | None = None

    def _refuse(self, pid: int | None) -> InputError:
        who = f"another {self.what} (pid {pid})" if pid else f"another {self.what}"
        return InputError(f"{who} is writing {self.output}; {self.hint}")

    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # retried only when the lock file was replaced between open and flock
            if self._try_acquire():
                return self
        raise self._refuse(None)

    def _try_acquire(self) -> bool:
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_exclusive()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot create the lock file of {self.output} ({exc.strerror}); "
                             f"choose a writable location") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: by a live process, since the kernel drops a dead one's lock
            pid = _holder_pid(fd)
            os.close(fd)
            raise self._refuse(pid) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed it on release after our open: lock the new one
            os.close(fd)
            return False
        old = _pid_of(os.read(fd, 64).decode(errors="replace"))
        if old is not None and old != os.getpid():
            self.warn(f"{self.path}: taking over a stale lock of pid {old}, which no longer holds it "
                      f"(a killed run); finished rows of {self.output} are kept")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def _acquire_exclusive(self) -> bool:  # pragma: no cover - Windows
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            pid = _pid_of(self.path.read_text(errors="replace")) if self.path.is_file() else None
            if pid is not None and _running(pid):
                raise self._refuse(pid) from None
            self.warn(f"{self.path}: taking over a stale lock of pid {pid}, which no longer runs")
            self.path.unlink(missing_ok=True)
            return False
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _default_warn(message: str) -> None:
    from cellxfer.console import warn

    warn(message)
