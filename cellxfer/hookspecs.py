"""The hooks through which cellxfer is extended.

Built-in stages and third-party packages implement the same hooks. A third-party package declares an
entry point in the ``cellxfer`` group that names a module (or object) with ``@hookimpl`` functions::

    [project.entry-points.cellxfer]
    blobs = "cellxfer_blobs"

Hooks that *provide* things return a list; the registry (:mod:`cellxfer.plugins`) merges the lists of
all plugins and rejects duplicate names, and ignores (with a warning) a result that is not a list and an
object that lacks an attribute :data:`PROVIDES` names for its hook. Plugin modules must stay cheap to import: import torch and
friends inside the functions that need them, so ``cellxfer --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import pluggy

PROJECT = "cellxfer"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


#: Provider hook -> the attributes every object it returns must have: the fields without a default of the
#: class that documents it (Engine, CounterArch, Synthesizer, Stylizer, ImageReader, CommandSpec; executors
#: are duck-typed like LocalExecutor); tests/test_plugins.py keeps the two in step.
PROVIDES: dict[str, tuple[str, ...]] = {
    "cellxfer_commands": ("name", "interrupted"),
    "cellxfer_synthesizers": ("name", "description", "config_cls", "render"),
    "cellxfer_stylizers": ("name", "description", "config_cls", "prepare", "stylize"),
    "cellxfer_image_readers": ("name", "suffixes", "read"),
    "cellxfer_executors": ("name", "description", "available", "map"),
    "cellxfer_engines": ("name", "description", "available", "load"),
    "cellxfer_counter_architectures": ("name", "description", "build"),
}


@dataclass(frozen=True)
class lazy:  # noqa: N801 - used like a function: lazy("pkg.mod", "render")
    """``module.name(*args)``, imported on the first call: what a provider's callables should be, so
    that importing a plugin module stays cheap (``cellxfer --help`` imports no numpy). It pickles, so
    jobs holding it can run in worker processes."""

    module: str
    name: str

    def __call__(self, *args, **kwargs):
        import importlib

        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


@hookspec
def cellxfer_register_commands(app):
    """Add typer commands to the ``cellxfer`` CLI: ``@app.command("name")`` on ``app`` (a ``typer.Typer``).

    Command bodies should parse options, call a library function and print; nothing more.
    """


@hookspec
def cellxfer_commands():
    """Return a list of :class:`cellxfer.commands.CommandSpec` objects, one per command the plugin
    registers: what Ctrl-C leaves, what the command reads and writes, how to invoke it (the contract
    tests and the fault-injection suite run over every one)."""


@hookspec
def cellxfer_synthesizers():
    """Return a list of :class:`cellxfer.synth.base.Synthesizer` objects (``cellxfer synth --method``)."""


@hookspec
def cellxfer_stylizers():
    """Return a list of :class:`cellxfer.stylize.spec.Stylizer` objects (``cellxfer stylize --method``):
    ``name``, ``description``, a dataclass ``config_cls``, ``prepare(config, style_set) -> context`` and
    ``stylize(images, context, config, rngs)`` over float32 [0, 1] 2-D images (see its docstring)."""


@hookspec
def cellxfer_image_readers():
    """Return a list of :class:`cellxfer.imageio.ImageReader` objects, keyed by file suffix."""


@hookspec
def cellxfer_executors():
    """Return a list of :class:`cellxfer.executors.Executor` objects that run per-item jobs
    (``local`` process pool built in; a Dask executor comes from the ``dask`` extra)."""


@hookspec
def cellxfer_counter_architectures():
    """Return a list of :class:`cellxfer.counter.model.CounterArch` objects: named builders of
    counting networks (``train-count --arch NAME``). Names not registered are looked up in timm."""


@hookspec
def cellxfer_engines():
    """Return a list of inference engines (``count --engine NAME``): each has ``name``,
    ``available() -> str | None`` (None when usable, else a one-line reason with the fix) and
    ``load(model_path, **options)`` returning a runner that maps float32 (N, C, H, W) to (N, ...) outputs."""
