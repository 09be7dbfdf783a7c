"""The widget counts in a worker process of its own (spawned once, the engine loaded once in it).

napari's process holds Qt and an OpenGL driver; with software OpenGL (Mesa's llvmpipe: virtual machines,
remote desktops) that driver loads its LLVM with global symbols, and a library that brings its own LLVM
loaded after it (triton, which torch imports with torchvision) crashes the process. Counting in a fresh
process keeps torch, ONNX Runtime and TensorRT away from Qt and OpenGL whatever the machine. This module
imports neither Qt nor napari (the worker imports it).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

_POOL: ProcessPoolExecutor | None = None


def count_in_worker(region, model, engine: str, diameter, name: str):
    """``(count, points or None, None)`` of :func:`cellxfer.count.count_array` run in the worker, or
    ``(None, None, message)`` when it refused the input or the worker died."""
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return _POOL.submit(_count, region, model, engine, diameter, name).result()
    except BrokenProcessPool:
        _POOL = None
        return None, None, "the counting process ended unexpectedly; count again to start a new one"


def shutdown() -> None:
    """End the worker (napari closing; tests)."""
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(cancel_futures=True)
        _POOL = None


def _count(region, model, engine, diameter, name):
    """In the worker: one count; a bad input or an engine's refusal comes back as its one-line message."""
    from cellxfer.count import count_array
    from cellxfer.errors import CellxferError

    try:
        res = count_array(region, model=model, engine=engine, diameter=diameter, name=name)
    except (CellxferError, OSError) as exc:
        return None, None, str(exc)
    return res.count, res.points, None
