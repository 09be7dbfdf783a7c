"""User-facing errors.

A :class:`CellxferError` is bad input or a missing resource that the user can fix. The CLI prints its
message as one line (``error: <message>``) and exits with :attr:`exit_code`, never with a traceback
unless ``--debug`` is given. The message names the file and the fix.
"""


class CellxferError(Exception):
    """An error the user can fix; ``str(err)`` is a one-line message naming the file and the fix."""

    exit_code = 2


class InputError(CellxferError):
    """Bad input data: a missing folder, an unreadable image, a malformed points table, ..."""


class PluginError(CellxferError):
    """A plugin, or something it provides, cannot be found or used."""


class TrainingError(CellxferError):
    """Training cannot go on with these data and settings (e.g. the loss became NaN or infinite); the
    run folder keeps what the last finished epoch saved, and nothing later."""
