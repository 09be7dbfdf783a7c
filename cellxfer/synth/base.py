"""Running a synthesizer into a cell dataset folder.

A :class:`Synthesizer` (provided through the ``cellxfer_synthesizers`` hook) renders image ``index``
from a per-image random generator seeded with ``(seed, index)``, so the output does not depend on how
many workers run or in which order, and a stopped run can continue where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy as np

from cellxfer.errors import DiskFull, InputError
from cellxfer.outputs import DatasetRunResult


@dataclass(frozen=True)
class Synthesizer:
    """A named image generator.

    ``config_cls``: a frozen dataclass whose fields (all with defaults) are the generator's parameters.
    ``prepare(config) -> context``: run once per job (load layouts, ...); the context must pickle.
    ``render(config, context, rng) -> (image, points)``: ``image`` a 2-D uint8/uint16 array,
    ``points`` float64 (N, 2) of (x, y) cell centres inside the image (see :mod:`cellxfer.dataset`).
    ``estimate(config) -> cellxfer.budget.Estimate``: optional, what one image costs (memory, work), so
    settings that cannot finish on this machine are refused before the run starts.
    """

    name: str
    description: str
    config_cls: type
    render: Callable[[Any, Any, "np.random.Generator"], tuple["np.ndarray", "np.ndarray"]]
    prepare: Callable[[Any], Any] = lambda config: None
    estimate: Callable[[Any], Any] | None = None


def image_rng(seed: int, index: int) -> "np.random.Generator":
    """The generator for image ``index`` of a run seeded with ``seed`` (independent streams)."""
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def image_id(index: int) -> str:
    return f"{index:06d}"


# -- the job ------------------------------------------------------------------------------------------
def _render_one(job):
    from cellxfer.dataset import CellDatasetWriter

    synth, config, context, seed, index, out = job
    image, points = synth.render(config, context, image_rng(seed, index))
    CellDatasetWriter(out, masks=True).write(image_id(index), image, points)
    return len(points)


def _job_identity(synth: Synthesizer, config, seed: int) -> dict:
    from cellxfer.manifest import config_dict

    return {"method": synth.name, "config": config_dict(config), "seed": seed}


def run_synth(
    synth: Synthesizer,
    config,
    n: int,
    out: str | Path,
    seed: int = 0,
    workers: int = 0,
    overwrite: bool = False,
    executor=None,
    on_progress: Callable[[int], None] | None = None,
) -> DatasetRunResult:
    """Write ``n`` images of ``synth`` into the cell dataset ``out`` (ids ``000000``...).

    Rerunning with the same method, config and seed skips finished images; other settings are
    refused unless ``overwrite``. Writes ``counts.csv`` and ``manifest.json`` at the end; a manifest
    with ``"complete": false`` marks a run still going or stopped.
    """
    from cellxfer.dataset import COUNTS, IMAGES, MASKS, POINTS, CellDatasetWriter
    from cellxfer.executors import default_workers, executor_for
    from cellxfer.manifest import config_dict
    from cellxfer.runs import RunFolder

    if n < 0:
        raise InputError(f"--n {n}: the number of images must be 0 or more")
    out = Path(out)
    t0 = time.perf_counter()
    if synth.estimate is not None:  # before the folder is touched: settings that cannot finish here
        from cellxfer.budget import check_estimate

        check_estimate(synth.estimate(config), workers or (default_workers() if n >= 16 else 1))
    inputs = [config.layout_from] if getattr(config, "layout_from", None) else []
    with RunFolder(out, "synth", _job_identity(synth, config, seed), own=(IMAGES, POINTS, MASKS, COUNTS),
                   inputs=inputs, overwrite=overwrite, defaults=config_dict(type(config)())) as run:
        existing = len(list((out / IMAGES).glob("*.tif"))) if out.is_dir() else 0
        if existing > n:
            raise InputError(f"{out}: already holds {existing} images, more than --n {n}; pass --overwrite to start again")
        context = synth.prepare(config)
        writer = CellDatasetWriter(out, masks=True)
        manifest = run.write_manifest(run.manifest(n=n), complete=False)
        todo = [i for i in range(n) if not writer.is_done(image_id(i))]
        skipped = n - len(todo)
        if on_progress and skipped:
            on_progress(skipped)
        executor = executor or executor_for(None)
        jobs = ((synth, config, context, seed, i, out) for i in todo)
        failed: dict[str, str] = {}
        workers = workers or (default_workers() if len(todo) >= 16 else 1)
        for job, result in executor.map(_render_one, jobs, workers=workers):
            if isinstance(result, DiskFull):  # every later image would fail the same way: stop here
                raise result
            if isinstance(result, Exception):
                failed[image_id(job[4])] = f"{type(result).__name__}: {result}"
            if on_progress:
                on_progress(1)
        counts = writer.finalize({**manifest, "complete": not failed, "seconds": round(time.perf_counter() - t0, 3)})
    return DatasetRunResult(out, counts, len(todo) - len(failed), skipped, failed, time.perf_counter() - t0)
