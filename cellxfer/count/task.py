"""One image counted in one process: what a worker of ``cellxfer count`` runs, locally or on a Dask
worker (:mod:`cellxfer.count.split`), shared by the job (:mod:`cellxfer.count.job`).

:class:`FileTask` is everything a worker needs (it pickles); :func:`task_runner` loads its model once per
process; :func:`prepare` opens and plans one image; :func:`count_file` counts it into a
:class:`FileOutcome`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cellxfer.count.qc import ScaleInfo
from cellxfer.counter.head import head_of

if TYPE_CHECKING:
    from cellxfer.count.parts import ImagePlan  # noqa: F401
    from cellxfer.scale import DiameterPolicy


def prepare(file: Path, meta, channel: int | None, page: int | None, keep_image: bool,
            policy: "DiameterPolicy | None" = None, part_tiles: int | None = None, level: int = 0) -> "ImagePlan":
    """Open one image (a large TIFF lazily: :func:`cellxfer.lazy.open_image`) and plan it for the model
    (:func:`cellxfer.count.parts.plan_image`: nucleus diameter, normalisation levels, boxes, parts)."""
    from cellxfer.count.parts import PART_TILES, plan_image
    from cellxfer.lazy import open_image

    t0 = time.perf_counter()
    return plan_image(open_image(file, channel=channel, page=page, level=level), meta, policy, file, keep_image,
                      part_tiles or PART_TILES, t0)


def _error_text(exc: BaseException) -> str:
    from cellxfer.errors import CellxferError

    text = str(exc) if isinstance(exc, CellxferError) or type(exc) is RuntimeError else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


_RUNNERS: dict = {}


@dataclass(frozen=True)
class FileTask:
    """Everything a worker needs to count one file (pickles)."""

    model: str
    engine: str
    device: str
    batch_size: int
    channel: int | None
    page: int | None
    fp16: bool = True
    threads: int | None = None
    policy: "DiameterPolicy | None" = None
    level: int = 0


@dataclass
class FileOutcome:
    count: float | None
    ms: float
    engine: str
    model_hash: str
    points: list | None = None  # [[x, y], ...] when asked (density models)
    error: str = ""  # set when this file failed (the worker and its engine are fine)
    scaled: ScaleInfo | None = None  # how the image was measured and rescaled
    parts: object = None  # a block of a slide: its cellxfer.count.parts.PartsOutcome (cellxfer.count.split)
    density_map: object = None  # cellxfer.count.parts.DensityMap (density models; at most MAP_SIDE a side)


def task_runner(task: FileTask):
    """The runner of ``task``'s model in this process (loaded once per process and reused)."""
    from cellxfer.engines.base import load_runner

    key = (task.model, task.engine, task.device, task.fp16, task.batch_size)
    if key not in _RUNNERS:
        _RUNNERS[key] = load_runner(task.model, task.engine, device=task.device, fp16=task.fp16,
                                    batch_size=task.batch_size, threads=task.threads)
    return _RUNNERS[key]


def count_file(task: FileTask, file: Path, overlay: Path | None = None, points: bool = False) -> FileOutcome:
    """Count one image in this process (the runner is loaded once per process and reused)."""
    from cellxfer.count.parts import count_plan

    runner = task_runner(task)
    t0 = time.perf_counter()
    try:
        prep = prepare(Path(file), runner.meta, task.channel, task.page, keep_image=overlay is not None,
                       policy=task.policy, level=task.level)
        res = count_plan(runner, prep, task.batch_size,
                         points=points or (overlay is not None and head_of(runner.meta).makes_points))
    except Exception as exc:  # noqa: BLE001 - reported in the CSV like the local run does
        return FileOutcome(None, (time.perf_counter() - t0) * 1e3, runner.label, runner.model_hash, error=_error_text(exc))
    if overlay is not None:
        from cellxfer.count.overlay import write_overlay

        write_overlay(overlay, prep.image, res, prep.image_step)
    return FileOutcome(res.count, (time.perf_counter() - t0) * 1e3, runner.label, runner.model_hash,
                       None if res.points is None else res.points.tolist(), scaled=ScaleInfo.of(prep.scaled),
                       density_map=res.density_map)

