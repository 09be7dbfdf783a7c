"""User-facing errors and the exit-code contract of every ``cellxfer`` command.

A :class:`CellxferError` is bad input or a missing resource that the user can fix. The CLI prints its
message as one line (``error: <message>``) on stderr and exits with :attr:`exit_code`, never with a
traceback unless ``--debug`` is given. The message names the file and the fix.

:class:`ExitCode` is the whole contract (docs/reruns.md "Exit status"): results go to stdout and files, every
failure the user should read goes to stderr.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Mapping


class ExitCode(IntEnum):
    """What a ``cellxfer`` process's exit status means, for every command."""

    OK = 0
    #: a batch (count, translate, stylize, synth) finished, but some inputs failed; each is one stderr
    #: line ``failed <input>: <why>`` (and, for count, a ``failed`` row in the CSV)
    SOME_INPUTS_FAILED = 1
    #: a usage error (unknown option, missing argument) or bad input: one line naming the file and the fix
    BAD_INPUT = 2
    #: a bug in cellxfer or a library: one line ``unexpected ...`` that says to rerun with --debug
    #: (sysexits' EX_SOFTWARE)
    INTERNAL = 70
    #: Ctrl-C: one line saying what was saved and how to resume
    INTERRUPTED = 130


class CellxferError(Exception):
    """An error the user can fix; ``str(err)`` is a one-line message naming the file and the fix."""

    exit_code = ExitCode.BAD_INPUT

    def lines(self) -> list[str]:
        """The lines the CLI prints on stderr."""
        return ["error: " + " ".join(str(self).split())]


class InputError(CellxferError):
    """Bad input data: a missing folder, an unreadable image, a malformed points table, ..."""


class PluginError(CellxferError):
    """A plugin, or something it provides, cannot be found or used."""


class TrainingError(CellxferError):
    """Training cannot go on with these data and settings (e.g. the loss became NaN or infinite); the
    run folder keeps what the last finished epoch saved, and nothing later."""


#: errno name -> what the user can do about an OSError on a path they gave
_OS_FIXES = {
    "ENOSPC": "free some space or write somewhere else",
    "EDQUOT": "free some space or write somewhere else",
    "EACCES": "choose a place you may write to, or fix its permissions",
    "EPERM": "choose a place you may write to, or fix its permissions",
    "EROFS": "the file system is read-only; write somewhere else",
    "ENOTDIR": "a file stands where a folder is needed; choose another path",
    "EEXIST": "a file stands where a folder is needed; choose another path",
    "EISDIR": "that is a folder; give a file name",
    "ENOENT": "check the path",
}


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError`` on a file: the file, what the system said, and the fix. The CLI
    reports an OSError that names a file this way (exit 2): a full disk or an output folder that is a
    file is the user's to fix, not a bug."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.filename}: {(exc.strerror or str(exc)).lower()}; {_OS_FIXES.get(name, 'check the path')}"


def fmt_bytes(n: float) -> str:
    """``n`` bytes for a message: ``512 B``, ``66.0 KB``, ``201.5 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class DiskFull(CellxferError):
    """The disk (or quota) filled while writing ``path``: the whole run stops here, never a per-item
    failure of a batch (every later item would fail the same way). One line naming the file, the bytes it
    needs and the space that is free; the partial file is already removed (:mod:`cellxfer.atomic`)."""

    def __init__(self, path, need: int | None, written: int, free: int | None):
        self.path, self.need, self.written, self.free = path, need, written, free
        if need and free is not None:
            size = f"it needs about {fmt_bytes(need)}, {fmt_bytes(free)} is free there"
        elif free is not None:
            size = f"it needs more than the {fmt_bytes(max(free, written))} free there"
        else:
            size = f"it needs about {fmt_bytes(need)}" if need else "the disk is full"
        super().__init__(f"{path}: no space left on the device writing it ({size}); free some space or write "
                         f"somewhere else")

    def __reduce__(self):  # back from a worker process whole
        return DiskFull, (self.path, self.need, self.written, self.free)


_DISK_FULL_TEXT = ("no space left on device", "storagefull", "disk quota exceeded")


def is_disk_full(exc: BaseException, folder=None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full: ``ENOSPC`` or
    ``EDQUOT``, the words of either (Rust and C++ writers: safetensors, torch), or a short write
    ("N requested and M written", tifffile) or failed write of torch while ``folder`` has under 1 MB free."""
    import errno
    import re

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if any(t in text for t in _DISK_FULL_TEXT):
            return True
        if folder is not None and (re.search(r"requested and \d+ written|write failed|failed writing", text)):
            return free_bytes(folder) is not None and free_bytes(folder) < 2**20
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder) -> int | None:
    import shutil

    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class SomeInputsFailed(CellxferError):
    """A batch went through every input, but some failed. Raised by a command *after* it has written its
    results and printed its summary; the CLI prints one ``failed <input>: <why>`` line per input and a
    last line saying how to retry, and exits with :attr:`ExitCode.SOME_INPUTS_FAILED`."""

    exit_code = ExitCode.SOME_INPUTS_FAILED

    def __init__(self, failed: Mapping[str, str], total: int, retry: str):
        self.failed = {str(k): " ".join(str(v).split()) for k, v in failed.items()}
        self.total, self.retry = total, retry
        super().__init__(f"{len(self.failed)} of {total} inputs failed; {retry}")

    def lines(self) -> list[str]:
        return [f"failed {why}" if why.startswith(f"{item}: ") else f"failed {item}: {why}"  # the path once
                for item, why in sorted(self.failed.items())] + [f"error: {self}"]
