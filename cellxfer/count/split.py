"""One slide across Dask workers: blocks of its parts counted where they run, merged here exactly once.

``count --scheduler`` gives each ordinary image to a worker whole (:class:`FileItem`,
:func:`cellxfer.count.task.count_file`). An image read lazily (a slide, :func:`cellxfer.lazy.open_lazy`)
is planned here once (nucleus diameter, normalisation levels, boxes and parts:
:func:`cellxfer.count.parts.plan_image`) and its parts are split into spans of ``BLOCK_PARTS`` parts
(:func:`cellxfer.count.parts.spans_of`); each span is one task (:class:`BlockItem`) that reopens the
slide by path on its worker (the plan pickles in a few KB) and returns the
:class:`~cellxfer.count.parts.PartsOutcome` of its parts. :class:`SlideMerge` collects a slide's blocks
as they finish and :func:`cellxfer.count.parts.merge` makes its count, region counts and points, which
are exactly the local run's: each cell is owned by one block, or by the seam between two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

#: parts per Dask task of a slide (a part is about PART_TILES model inputs, at least one row of them)
BLOCK_PARTS = 8


@dataclass(frozen=True)
class FileItem:
    """A whole image for one worker."""

    file: str
    overlay: str | None
    points: bool

    def run(self, task):
        from cellxfer.count.task import count_file

        return count_file(task, Path(self.file), Path(self.overlay) if self.overlay else None, self.points)


@dataclass(frozen=True)
class BlockItem:
    """Parts ``span`` of a planned slide for one worker; returns a ``FileOutcome`` whose ``parts`` is the
    span's :class:`~cellxfer.count.parts.PartsOutcome` (or whose ``error`` says why not)."""

    file: str
    plan: object  # cellxfer.count.parts.ImagePlan
    span: tuple[int, int]
    points: bool

    def run(self, task):
        from cellxfer.count.task import FileOutcome, _error_text, task_runner
        from cellxfer.count.parts import count_parts

        runner = task_runner(task)
        t0 = time.perf_counter()
        try:
            out = count_parts(runner, self.plan, self.span, task.batch_size, self.points)
        except Exception as exc:  # noqa: BLE001 - reported in the CSV like the local run does
            return FileOutcome(None, (time.perf_counter() - t0) * 1e3, runner.label, runner.model_hash,
                               error=_error_text(exc))
        out.density_map = out.density_map.rows(*self.plan.rows(*self.span))  # only its own rows go back
        return FileOutcome(None, (time.perf_counter() - t0) * 1e3, runner.label, runner.model_hash, parts=out)


def run_item(task, item):
    """What a worker runs for any item (the executor maps this over items)."""
    return item.run(task)


@dataclass
class SlideMerge:
    """A slide's blocks as they come back; :meth:`add` returns its ``Counted`` once all are in."""

    plan: object
    blocks: int
    points: bool
    outcomes: list = field(default_factory=list)
    ms: float = 0.0
    failed: bool = False

    def add(self, outcome):
        from cellxfer.count.parts import merge

        self.outcomes.append(outcome.parts)
        self.ms += outcome.ms
        if len(self.outcomes) < self.blocks:
            return None
        return merge(self.plan, self.outcomes, self.points)


def items_for(files: list, task, meta, overlays: dict, point_files: dict, want_points) -> tuple[list, dict, list]:
    """``(items, {slide: SlideMerge}, [(file, exception)])``: a :class:`FileItem` per ordinary image, the
    :class:`BlockItem` of every block of each slide (planned here), and the files that failed planning.
    ``want_points(file) -> bool``: whether that file's points are needed (points CSV or overlay)."""
    from cellxfer.count.parts import plan_image, spans_of
    from cellxfer.lazy import open_lazy

    items, merges, failed = [], {}, []
    for f in files:
        points = want_points(f)
        try:
            image = open_lazy(f, task.channel, task.page, task.level)
            if image is None:
                items.append(FileItem(str(f), str(overlays[f]) if f in overlays else None, points))
                continue
            plan = plan_image(image, meta, task.policy, Path(f), keep_image=f in overlays)
        except Exception as exc:  # noqa: BLE001 - reported per file, like a worker's failure
            failed.append((f, exc))
            continue
        spans = spans_of(plan, BLOCK_PARTS)
        merges[str(f)] = SlideMerge(plan, len(spans), points)
        items.extend(BlockItem(str(f), plan, span, points) for span in spans)
    return items, merges, failed
