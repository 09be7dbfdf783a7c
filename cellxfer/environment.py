"""What a command checks of the environment it runs in before its body runs: the environment variables cellxfer
reads, and the pip extra the command needs.

Every registered command, third-party ones too, is :func:`guarded` (:class:`cellxfer.plugins.Registry`): a
malformed variable or a missing extra is one line naming it and the fix (exit 2) before any input is read or
any output written, never a failure blamed on each input of a batch; ``--help`` works regardless, since it
exits before the body. A variable is checked here when it bears on any command's run (the free memory every image
and run is checked against); one that only some paths read (``CELLXFER_CACHE``, ``CELLXFER_SCHEDULER``,
torchrun's) is checked, naming it, where it is read.
"""

from __future__ import annotations

import functools


def check_environment() -> None:
    """Raise :class:`cellxfer.errors.InputError` (one line naming the variable and the fix) when a variable every
    command may read is malformed: ``CELLXFER_MEMORY_BYTES`` (:func:`cellxfer.budget.forced_bytes`), read by the
    memory checks of every image and run."""
    from cellxfer.budget import forced_bytes

    forced_bytes()


def guarded(command: str, extra: str, callback):
    """``callback`` (the body of ``cellxfer command``) that first checks the environment (:func:`check_environment`)
    and, when ``extra`` is not empty, that the extra is installed (:func:`cellxfer.extras.require`)."""
    from cellxfer.extras import require

    @functools.wraps(callback)
    def run(*args, **kwargs):
        check_environment()
        if extra:
            require(extra, f"`cellxfer {command}`")
        return callback(*args, **kwargs)

    return run
