"""Counting one image held in memory (a numpy array, a region of a viewer's layer): :func:`count_array`.
(numpy is imported inside: ``cellxfer --help`` imports this package and stays numpy-free.)

The same pipeline as ``cellxfer count`` on a file (:mod:`cellxfer.count.parts`: the ``--diameter``
policy, the model's splitter and merger, points from the stitched density map), with the engine loaded
once per process (:func:`cellxfer.count.job.task_runner`), so a viewer's widget can count again and again.
"""

from __future__ import annotations

import os
from pathlib import Path

from cellxfer.errors import InputError


def count_array(image, model: str | os.PathLike | None = None, engine: str = "auto", device: str = "auto",
                diameter: str | None = None, batch_size: int = 16, points: bool = True, name: str = "image"):
    """Count the cells of a 2-D ``image`` (numpy, array-like, or a slide opened by region with
    :func:`cellxfer.lazy.open_image`, which stays lazy) exactly as ``cellxfer count`` counts a file
    of it; returns a :class:`cellxfer.count.parts.Counted`: ``count`` (float), ``points`` float64 (N, 2)
    of (x, y) pixels, pixel (r, c) covering ``c <= x < c + 1`` (None for a count-per-window model or
    ``points=False``), ``regions``/``region_counts`` and, for density models, ``density_map``.

    ``model``: a counter file (.safetensors or .onnx; None: the shipped default counter); ``engine``,
    ``device``, ``diameter``, ``batch_size``: as ``count``'s options. ``name`` names the image in errors.
    Raises :class:`cellxfer.errors.InputError` for an image that is not one finite 2-D plane.
    """
    from cellxfer.count.job import FileTask, task_runner
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.counter.head import head_of
    from cellxfer.engines.base import default_model
    from cellxfer.imageio import check_pixels
    from cellxfer.lazy import is_lazy
    from cellxfer.scale import DiameterPolicy

    if not is_lazy(image):  # a slide read by region stays so: the parts read what they need
        image = check_pixels(name, _plane(image, name))
    path = Path(model).resolve() if model is not None else default_model()
    if not path.is_file():
        raise InputError(f"{path}: no such model file; choose a counter file (.safetensors or .onnx)")
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}: must be at least 1")
    runner = task_runner(FileTask(str(path), engine, device, batch_size, None, None))
    policy = DiameterPolicy.parse(diameter, runner.meta.diameter, str(path))
    plan = plan_image(image, runner.meta, policy, file=None)
    return count_plan(runner, plan, batch_size, points=points and head_of(runner.meta).makes_points)


def _plane(image, name: str):
    """``image`` as a 2-D numeric numpy array (one plane: a colour or multi-plane image is refused)."""
    import numpy as np

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and all(np.array_equal(arr[..., 0], arr[..., i]) for i in (1, 2)):
        arr = arr[..., 0]  # grey stored as RGB(A)
    if arr.ndim != 2:
        raise InputError(f"{name}: has shape {'x'.join(map(str, arr.shape))}; cellxfer counts one 2-D plane: "
                         f"choose one channel or plane first")
    if arr.dtype.kind not in "uif" and arr.dtype != bool:
        raise InputError(f"{name}: pixels of type {arr.dtype} are not numbers; convert the image to integers or floats")
    return arr.astype(np.float32) if arr.dtype == bool else arr
