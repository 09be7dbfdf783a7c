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
