"""``cellxfer count`` as a library function: :func:`run_count` over a :class:`CountConfig`.

Local pipeline: a thread pool (``workers``) opens and plans images ahead (:func:`prepare`: a large TIFF
is read lazily by region, :mod:`cellxfer.lazy`; each image is resized to the model's nucleus diameter,
``diameter``, :mod:`cellxfer.scale`, and its normalisation levels computed) and cuts them into model
inputs part by part (:mod:`cellxfer.count.parts`: rows of windows or of overlapping tiles; one part for
an ordinary image, many for a slide), ``ahead`` plans and parts in flight, in input order; the main
thread packs the inputs of consecutive parts and images into batches of ``batch_size``, runs the
engine and hands each part's outputs to its image's merger (window sums, or stitched density bands
with their peaks as ``points``). Counts, regions and points are reported in the original pixels. A
slide is thus counted in memory bounded by a few parts, never the whole image or density map.

With ``scheduler`` the files are counted one task per image on a Dask cluster
(:class:`cellxfer.count.dask_executor.DaskExecutor`); each worker process loads the model once.

Results go to the counts CSV (:mod:`cellxfer.count.table`) as they arrive; a file already counted
OK with the same model, ``--diameter`` policy and plane is skipped (``overwrite`` recounts all); a file that
fails is recorded with its error and the batch goes on.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from cellxfer.count.parts import Counted  # noqa: F401 - part of this module's API (results of count_batched)
from cellxfer.errors import DiskFull
from cellxfer.imageio import empty_tiles
from cellxfer.counter.head import head_of
from cellxfer.count.table import CountsTable, Row
from cellxfer.count.task import (  # noqa: F401 - one image in one process (also used by count.split)
    FileOutcome, FileTask, _error_text, count_file, prepare, task_runner)
from cellxfer.count.qc import OK, RULES, UNCHECKED, ScaleInfo

if TYPE_CHECKING:
    from cellxfer.count.parts import ImagePlan  # noqa: F401
    from cellxfer.scale import DiameterPolicy


from cellxfer.count.config import CountConfig  # noqa: E402,F401  (numpy-free, for the CLI's defaults)


@dataclass
class CountResult:
    out: Path
    engines: list[str]
    model_hash: str
    counts: dict[str, float] = field(default_factory=dict)  # this run's counts, by file
    skipped_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    flagged: dict[str, str] = field(default_factory=dict)  # this run's counts whose qc is not ok: file -> reasons
    not_images: list[tuple[Path, str]] = field(default_factory=list)
    startup_s: float = 0.0
    seconds: float = 0.0
    picked: str = ""  # how --engine auto chose


class _Part:
    """One part of an image waiting for (or in) inference."""

    __slots__ = ("state", "index", "batch", "next", "outs", "weight")

    def __init__(self, state, index: int, batch: np.ndarray):
        self.state, self.index, self.batch, self.next, self.outs = state, index, batch, 0, []
        self.weight = state.plan.splitter.weight  # base tiles per input (batch sizes count these)

    @property
    def remaining(self) -> int:
        return len(self.batch) - self.next


class _ImageState:
    """An image in flight: its plan, its merger, time spent, whether it failed."""

    def __init__(self, plan, points: bool, points_file: Path | None = None):
        self.plan, self.merger, self.ms = plan, plan.merger(points, points_file), plan.ms
        self.failed = False


def _planned_parts(pool, files, plan, ahead: int, budget: int):
    """Yield ``(file, state | exception, part index, future batch)`` in input order: plans of up to
    ``ahead`` files and batches of up to ``ahead`` parts, and beyond two parts at most ``budget`` model
    inputs, are computed on ``pool`` ahead of the consumer (so a slide of many parts streams through a
    few of them at a time, and a wide slide, whose parts are long rows of tiles, through fewer)."""
    files = iter(files)
    plans: deque = deque()  # (file, future ImagePlan)
    current = None  # [file, _ImageState, next part]
    parts: deque = deque()
    inputs = deque()  # model inputs of each part in ``parts``

    def more_plans():
        while len(plans) < ahead:
            f = next(files, None)
            if f is None:
                return
            plans.append((f, pool.submit(plan, f)))

    while True:
        more_plans()
        while len(parts) < ahead:
            if current is None or current[2] == len(current[1].plan.parts):
                if not plans or (parts and not plans[0][1].done()):  # never wait here while work is ready
                    break
                f, fut = plans.popleft()
                more_plans()
                try:
                    current = [f, fut.result(), 0]
                except Exception as exc:  # noqa: BLE001 - reported per file
                    current = None
                    parts.append((f, exc, None, None))
                    inputs.append(0)
                    continue
            f, state, i = current
            n = (state.plan.parts[i].end - state.plan.parts[i].first) * state.plan.splitter.weight
            if len(parts) >= 2 and sum(inputs) + n > budget:
                break
            parts.append((f, state, i, pool.submit(state.plan.batch, i)))
            inputs.append(n)
            current[2] += 1
        if not parts:
            return
        inputs.popleft()
        yield parts.popleft()


def count_batched(files: list[Path], runner, batch_size: int = 24, workers: int = 0, channel=None, page=None,
                  keep_images: bool = False, ahead: int | None = None, points: bool = False, policy=None,
                  part_tiles: int | None = None, level: int = 0, points_to: dict | None = None):
    """Yield ``(file, ImagePlan | None, Counted | exception, elapsed ms)`` in input order (a file that
    fails may be reported before earlier ones finish), batching the inputs of consecutive parts and
    images together while the pool reads and plans ahead (:mod:`cellxfer.count.parts`). ``points_to``:
    ``{file: points CSV}`` streamed as found (:class:`cellxfer.count.parts.PointsFile`; that file's
    ``Counted.points`` is then None)."""
    from cellxfer.count.parts import PART_TILES
    from cellxfer.executors import default_workers

    workers = workers or default_workers()
    ahead = ahead or max(4, 2 * workers)
    meta = runner.meta

    def plan(f):
        return _ImageState(prepare(f, meta, channel, page, keep_images, policy, part_tiles, level), points,
                           (points_to or {}).get(f))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cellxfer-decode") as pool:
        source = _planned_parts(pool, files, plan, ahead, ahead * (part_tiles or PART_TILES))
        queue: list[_Part] = []
        exhausted = False
        while True:
            while not exhausted and sum(p.remaining * p.weight for p in queue) < batch_size:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                f, state, i, fut = item
                if isinstance(state, BaseException):
                    yield f, None, state, 0.0
                    continue
                if state.failed:
                    continue
                t0 = time.perf_counter()
                try:
                    queue.append(_Part(state, i, fut.result()))
                    state.ms += (time.perf_counter() - t0) * 1e3
                except Exception as exc:  # noqa: BLE001 - a region of this file could not be read
                    state.failed = True
                    if getattr(state.merger, "sink", None) is not None:
                        state.merger.sink.close()  # its spilled candidates go; no points file is written
                    queue[:] = [p for p in queue if p.state is not state]
                    yield f, state.plan, exc, state.ms
            if not queue:
                if exhausted:
                    return
                continue
            yield from _run_batch(runner, queue, batch_size)


def _run_batch(runner, queue: list, batch_size: int):
    """Run the next inputs of ``queue`` (``batch_size`` base tiles' worth, of one input shape); merge
    every part this completes and yield each image it completes (``count_batched``'s items); drop the
    parts of an image whose batch failed."""
    parts, n = [], 0
    first = queue[0]
    per_call = max(1, batch_size // first.weight)
    for p in queue:
        if p.batch.shape[1:] != first.batch.shape[1:]:  # images tiled with another side: the next call
            break
        take = min(per_call - n, p.remaining)
        parts.append((p, p.next, take))
        n += take
        if n == per_call:
            break
    x = parts[0][0].batch[parts[0][1]:parts[0][1] + parts[0][2]] if len(parts) == 1 else \
        np.concatenate([p.batch[s:s + t] for p, s, t in parts])
    t0 = time.perf_counter()
    try:
        y, err = np.asarray(runner(x)), None
    except Exception as exc:  # noqa: BLE001 - fail the images of this batch, go on
        y, err = None, exc
    dt = (time.perf_counter() - t0) * 1e3
    off = 0
    for p, s, t in parts:
        if err is None:
            p.outs.append(y[off:off + t])
        off += t
        p.next += t
        p.state.ms += dt * t / n
    if err is not None:
        for state in dict.fromkeys(p.state for p, _, _ in parts):
            state.failed = True
            yield state.plan.file, state.plan, err, state.ms
        queue[:] = [p for p in queue if not p.state.failed]
        return
    while queue and queue[0].remaining == 0:
        p = queue.pop(0)
        st = p.state
        t1 = time.perf_counter()
        try:
            st.merger.add(p.index, p.outs)
            res = st.merger.result() if p.index == len(st.plan.parts) - 1 else None
        except Exception as exc:  # noqa: BLE001 - reported per file
            st.failed, res = True, exc
            queue[:] = [q for q in queue if q.state is not st]
        st.ms += (time.perf_counter() - t1) * 1e3
        if res is not None:
            yield st.plan.file, st.plan, res, st.ms


# -- one image per task (Dask) ------------------------------------------------------------------------------
def _density_map_files(config: CountConfig, files: list[Path]) -> dict:
    """``{image: --density-map path}``: the option names one file, so it takes exactly one image."""
    from cellxfer.errors import InputError

    if config.density_map is None:
        return {}
    if len(files) != 1:
        raise InputError(f"--density-map {config.density_map}: writes the map of one image, but {len(files)} images "
                         f"were given; count the slide on its own (or use --overlay DIR for one picture per image)")
    return {files[0]: Path(config.density_map)}


def write_points(path: Path, points: np.ndarray) -> Path:
    """One image's cell locations in the format of ``path``'s suffix (:mod:`cellxfer.count.points_format`:
    an ``x,y`` table in pixels, as in cell datasets, or GeoJSON), atomically."""
    from cellxfer.atomic import write_text
    from cellxfer.count.points_format import for_path

    write_text(path, for_path(path).text(points))
    return path


def _count_locally(config: CountConfig, model: Path, todo: list[Path], overlays: dict, want_points: bool, policy,
                   record: Callable, result: "CountResult", log: Callable[[str], None], t_start: float,
                   stream: dict | None = None) -> float:
    """Count ``todo`` in this process (decode threads ahead of batched inference; overlays written by a
    thread), passing each outcome to ``record``; returns the start-up seconds (until the engine is loaded).
    ``stream``: ``{file: points CSV}`` written as the points are found (not held for ``record``)."""
    from cellxfer.count.overlay import write_overlay
    from cellxfer.engines.base import load_runner

    picked: list[str] = []
    runner = load_runner(model, config.engine, log=picked.append, device=config.device, fp16=config.fp16,
                         batch_size=config.batch_size, threads=config.threads)
    auto = [line for line in picked if line.startswith("engine auto ->")]
    for line in picked[:len(picked) - len(auto)]:  # what was built once (ONNX export, TRT engine)
        log(line)
    result.picked = auto[0] if auto else f"engine {runner.label}"
    log(result.picked)
    startup = time.perf_counter() - t_start
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellxfer-overlay") as overlay_pool:
        overlay_jobs = []
        for file, prep, res, ms in count_batched(todo, runner, config.batch_size, config.workers, config.channel,
                                                 config.page, keep_images=bool(overlays), points=want_points,
                                                 policy=policy, level=config.level, points_to=stream):
            if isinstance(res, BaseException):
                record(file, None, None, ms, runner.label, res)
                continue
            record(file, res.count, res.points, ms, runner.label, None, ScaleInfo.of(prep.scaled), res.density_map)
            if file in overlays:
                overlay_jobs.append((file, overlay_pool.submit(write_overlay, overlays[file], prep.image, res,
                                                               prep.image_step)))
        for file, job in overlay_jobs:
            if isinstance(job.exception(), DiskFull):  # the rows are kept; the run stops with one line
                raise job.exception()
            if job.exception() is not None:
                log(f"warning: overlay of {file} failed: {_error_text(job.exception())}")
    return startup


# -- the job -------------------------------------------------------------------------------------------------
def _count_on_dask(config: CountConfig, model: Path, todo: list[Path], overlays: dict, point_files: dict,
                   policy, record: Callable, t_start: float) -> float:
    """Count ``todo`` on the Dask cluster ``config.scheduler``: one task per ordinary image, one per block
    of a slide's parts (:mod:`cellxfer.count.split`), passing each image's outcome to ``record`` (as the
    local loop does); returns the start-up seconds (until the tasks are submitted)."""
    from cellxfer.count import split
    from cellxfer.count.dask_executor import parse_local
    from cellxfer.count.overlay import write_overlay
    from cellxfer.engines.base import model_meta
    from cellxfer.executors import default_workers, executor_for

    threads = config.threads
    n_local = parse_local(config.scheduler)
    if threads is None and n_local:  # N workers on this machine share its cores
        threads = max(1, default_workers() // n_local)
    task = FileTask(str(model), config.engine, config.device, config.batch_size, config.channel, config.page,
                    config.fp16, threads, policy, config.level)
    meta = model_meta(model)
    items, slides, failed = split.items_for(todo, task, meta, overlays, point_files,
                                            lambda f: f in point_files or (f in overlays and head_of(meta).makes_points))
    for file, exc in failed:
        record(Path(file), None, None, 0.0, config.engine, exc)
    startup = time.perf_counter() - t_start
    for item, outcome in executor_for(config.scheduler).map(functools.partial(split.run_item, task), items,
                                                            config.workers):
        file, slide = Path(item.file), slides.get(item.file)
        if slide is not None and slide.failed:
            continue  # an earlier block of this slide failed: reported once
        if isinstance(outcome, BaseException) or outcome.error:  # the task died (engine load, worker lost) or failed
            if slide is not None:
                slide.failed = True
            error = outcome if isinstance(outcome, BaseException) else RuntimeError(outcome.error)
            record(file, None, None, getattr(outcome, "ms", 0.0), getattr(outcome, "engine", config.engine), error)
        elif slide is None:
            record(file, outcome.count, outcome.points, outcome.ms, outcome.engine, None, outcome.scaled,
                   outcome.density_map)
        else:
            try:
                res = slide.add(outcome)
                if res is not None and file in overlays:
                    write_overlay(overlays[file], slide.plan.image, res, slide.plan.image_step)
            except Exception as exc:  # noqa: BLE001 - reported per file
                slide.failed = True
                record(file, None, None, slide.ms, outcome.engine, exc)
                continue
            if res is not None:
                record(file, res.count, res.points, slide.ms, outcome.engine, None, ScaleInfo.of(slide.plan.scaled),
                       res.density_map)
    return startup


def _checked_model(config: CountConfig):
    """``(model path, CounterMeta, DiameterPolicy)`` of a count job, after every check that needs no
    image (batch size, model file, --points on a count model, an explicit engine's availability), so a
    wrong option fails before any work."""
    from cellxfer.engines.base import default_model, engines, model_meta
    from cellxfer.errors import InputError, PluginError
    from cellxfer.scale import DiameterPolicy

    model = Path(config.model).resolve() if config.model is not None else default_model()
    if not model.is_file():
        raise InputError(f"{model}: no such model file; pass --model CKPT (.safetensors or .onnx)")
    meta = model_meta(model)
    policy = DiameterPolicy.parse(config.diameter, meta.diameter, str(model))
    if config.points is None and config.points_format != "csv":
        raise InputError(f"--points-format {config.points_format}: give --points DIR too (the folder it writes to)")
    if config.points is not None and not head_of(meta).makes_points:
        raise InputError(f"--points: {model} predicts one count per window, not cell locations; "
                         f"use a density model (train-count --arch density or --arch log)")
    if config.density_map is not None:
        _check_density_map(config, model, meta)
    if config.engine != "auto" and not config.scheduler:
        known = engines()
        if config.engine not in known:
            raise PluginError(f"--engine {config.engine}: unknown engine (available: auto, {', '.join(sorted(known))})")
        reason = known[config.engine].available(config.device)
        if reason is not None:
            raise PluginError(reason)
    return model, meta, policy


def _check_density_map(config: CountConfig, model: Path, meta) -> None:
    from cellxfer.errors import InputError

    path = Path(config.density_map)
    if path.suffix.lower() not in (".tif", ".tiff", ".png"):
        raise InputError(f"--density-map {path}: must end in .tif (counts per block, float32) or .png (a picture)")
    if not head_of(meta).makes_points:
        raise InputError(f"--density-map: {model} predicts one count per window, not a density map; "
                         f"use a density model (train-count --arch density or --arch log)")


def _refuse_aliases(config: CountConfig, out: Path, inputs: list, overlays: dict, point_files: dict) -> None:
    """Before any work: --out is a file name (not a folder, not an image's name), and no output of the run (the
    CSV, its manifest, overlays, points, the density map) may replace an input or, those the user named, another
    run's records (:mod:`cellxfer.outputs`), whatever --overwrite says."""
    from cellxfer.errors import InputError
    from cellxfer.imageio import image_suffixes
    from cellxfer.manifest import sidecar_manifest
    from cellxfer.outputs import refuse_aliases, refuse_records

    if out.is_dir():
        raise InputError(f"{out}: --out is a folder; give the counts CSV's file name (e.g. {out / 'counts.csv'})")
    if out.suffix.lower() in image_suffixes():  # with --overwrite an image would become a CSV
        raise InputError(f"{out}: --out names an image file; give the counts CSV a .csv name "
                         f"(e.g. {out.with_suffix('.csv')})")
    named = [("--out", out), *(("--overlay", p) for p in overlays.values()),
             *(("--points", p) for p in point_files.values()), ("--density-map", config.density_map)]
    refuse_aliases([named[0], ("--out", sidecar_manifest(out)), *named[1:]], inputs)
    refuse_records(named)


def write_density_map(path: Path, dmap, count: float | None = None) -> Path:
    """``--density-map``: a .tif of float32 counts per block (the block size, the original pixels per
    block, the map's ``total`` and the image's ``count`` (the total, or the map read blob by blob: the
    count's CSV row) in the TIFF description, as JSON), or a .png picture of them (0 -> black, the busiest block ->
    white); atomically."""
    import json

    import tifffile

    from cellxfer.atomic import atomic_path

    counts = np.asarray(dmap.counts, dtype=np.float32)
    with atomic_path(path) as tmp:
        if Path(path).suffix.lower() == ".png":
            from PIL import Image

            top = float(counts.max()) if counts.size and counts.max() > 0 else 1.0
            Image.fromarray(np.clip(np.round(counts / top * 255), 0, 255).astype(np.uint8)).save(tmp, format="PNG")
        else:
            desc = {"cellxfer": "density map", "unit": "cells per block", "block": dmap.block,
                    "block_original_px": [dmap.block * dmap.sy, dmap.block * dmap.sx], "total": float(dmap.counts.sum()),
                    "count": float(dmap.counts.sum() if count is None else count)}
            tifffile.imwrite(tmp, counts, photometric="minisblack", description=json.dumps(desc))
    return Path(path)


def _writable_folder(folder: Path | None, option: str) -> None:
    """Create the output folder ``option`` names now, or raise :class:`InputError` when it cannot be
    written (a file in the way, no permission): an error before counting, not a warning per image."""
    import os

    from cellxfer.errors import InputError
    from cellxfer.outputs import make_parent

    if folder is None:
        return
    make_parent(Path(folder) / "-")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: {option} is a folder you may not write to; choose another or fix its permissions")


def _todo(config: CountConfig, files: list, table: CountsTable, mhash: str, diameter_mode: str,
          outputs: tuple) -> tuple[list, dict]:
    """``(the files this run counts, {file: the plane this run counts of it})``. A file is counted unless its row is
    done (:meth:`CountsTable.done`: counted OK with this model, ``--diameter`` policy and plane) and each of
    ``outputs`` (``{file: path}`` dicts) that names it exists; every file with --overwrite. Its plane is the text its
    row records (:meth:`cellxfer.imageio.Plane.text`, from the file's header): a row counted from another plane of
    an image is not done; a single-plane image's plane is the same whatever was asked."""
    from cellxfer.imageio import Plane
    from cellxfer.lazy import image_planes

    plane = Plane(config.page, config.channel, config.level)
    planes = {f: plane.text(image_planes(f)) for f in files}
    todo = [f for f in files if config.overwrite or not table.done(f, mhash, diameter_mode, planes[f])
            or any(f in names and not names[f].is_file() for names in outputs)]
    return todo, planes


def _ready_outputs(config: CountConfig, todo: list, map_files: dict, table: CountsTable, model_input: dict) -> None:
    """Outputs made ready, after the last refusals: a density map that exists (not a row of this run's CSV: replaced
    only with --overwrite), then the --overlay/--points folders, created only now that nothing else was refused (a
    refused command leaves no empty folder behind).
    Then ``<csv>.manifest.json`` records this run's options before a row is written, so the CSV of a run stopped by
    Ctrl-C is read with them (a viewer's --points, --page...; the run's results replace it at the end).
    ``model_input``: the model's :func:`cellxfer.manifest.hash_input`, made once per run."""
    from cellxfer.atomic import write_json
    from cellxfer.errors import InputError
    from cellxfer.manifest import build_manifest, config_dict, sidecar_manifest

    for f in todo:
        if f in map_files and map_files[f].exists() and not config.overwrite:
            raise InputError(f"{map_files[f]}: exists; pass --overwrite to replace it or choose another --density-map")
    for option, folder in (("--overlay", config.overlay), ("--points", config.points)):
        _writable_folder(folder, option)
    if todo:
        write_json(sidecar_manifest(table.path),
                   build_manifest("count", config_dict(config), seed=None, inputs=[model_input],
                                  csv_folder=str(table.path.resolve().parent)))


def _nothing_to_count(paths, not_images: list) -> str:
    """Why ``count PATHS`` found no image: the one file given is not an image (convert it), or the folders
    hold none (--recursive advised only when they have subfolders it would search)."""
    deeper = [p for p, why in not_images if "subfolder" in why]
    if not deeper and len(not_images) == 1:
        path, why = not_images[0]
        return f"{path}: {why}; save it as a TIFF or PNG"
    from cellxfer.imageio import image_suffixes

    return (f"{', '.join(map(str, paths))}: no image files found (cellxfer reads {', '.join(sorted(image_suffixes()))})"
            + ("; pass --recursive to search subfolders" if deeper else ""))


@contextlib.contextmanager
def _keeping_rows(table: CountsTable):
    """The counting of a run: however it ends, every finished row is kept (the table closed); one stopped before
    its first row (the engine did not load, Ctrl-C at start-up) leaves no sidecar manifest of a CSV that does not
    exist (:func:`_ready_outputs` wrote it)."""
    from cellxfer.manifest import sidecar_manifest

    try:
        yield
    except BaseException:
        if not table.rows and not table.path.exists():
            sidecar_manifest(table.path).unlink(missing_ok=True)
        raise
    finally:
        table.close()


def run_count(config: CountConfig, on_progress: Callable[..., None] = lambda n=1, **kw: None,
              log: Callable[[str], None] = lambda s: None, on_total: Callable[[int], None] = lambda n: None) -> CountResult:
    """Count every image of ``config.paths`` into ``config.out``; see module docs."""
    from cellxfer.atomic import remove_dead_temporaries, write_json
    from cellxfer.inputs import expand_inputs
    from cellxfer.count.overlay import output_names
    from cellxfer.count.points_format import FORMATS
    from cellxfer.engines.base import short_hash
    from cellxfer.errors import InputError
    from cellxfer.manifest import build_manifest, config_dict, hash_input, sidecar_manifest

    t_start = time.perf_counter()
    model, meta, policy = _checked_model(config)
    files, not_images = expand_inputs(config.paths, recursive=config.recursive)
    if not files:
        raise InputError(_nothing_to_count(config.paths, not_images))
    out = Path(config.out)
    overlays = output_names(files, config.overlay, ".png") if config.overlay is not None else {}
    point_files = output_names(files, config.points, FORMATS[config.points_format].suffix) \
        if config.points is not None else {}
    map_files = _density_map_files(config, files)
    _refuse_aliases(config, out, [*files, model], overlays, point_files)
    model_input = hash_input(model)  # the model file read once: the rows' model_hash and both manifests
    mhash = short_hash(model_input["sha256"])
    stream = {f: p for f, p in point_files.items() if f not in overlays}  # an overlay draws the points: kept
    table = CountsTable(out, overwrite=config.overwrite)  # holds <out>.lock until closed: one writer per CSV
    remove_dead_temporaries(config.points, "spill")  # the point candidates a killed run spilled, not a live run's
    todo, planes = _todo(config, files, table, mhash, policy.label, (overlays, point_files, map_files))
    try:
        _ready_outputs(config, todo, map_files, table, model_input)
    except InputError:
        table.close()
        raise
    result = CountResult(out=out, engines=[], model_hash=mhash, skipped_done=len(files) - len(todo),
                         not_images=not_images)
    want_points = bool(point_files) or (bool(overlays) and head_of(meta).makes_points)
    on_total(len(todo))
    labels: set[str] = set()

    def record(file: Path, count, points, ms: float, engine: str, error: BaseException | None,
               scaled=None, density_map=None):
        try:
            if error is None and file in point_files and not (points is None and file in stream):
                write_points(point_files[file], np.asarray(points, dtype=np.float64).reshape(-1, 2))
            if error is None and file in map_files:
                write_density_map(map_files[file], density_map, count)
        except OSError as exc:
            error = exc
        if error is None:
            info = scaled or ScaleInfo()
            qc, _ = RULES.judge(count, info, density_map, empty_tiles(file, config.level))  # the header's tags: cheap
            table.put(Row(str(file), count, engine, mhash, ms, diameter_mode=policy.label,
                          diameter=info.diameter, scale=info.factor, qc=qc, plane=planes[file]))
            result.counts[str(file)] = count
            if qc not in (OK, UNCHECKED):
                result.flagged[str(file)] = qc
            labels.add(engine)
        else:
            table.put(Row(str(file), None, engine, mhash, ms, "failed", _error_text(error), diameter_mode=policy.label,
                          plane=planes[file]))
            result.failed[str(file)] = _error_text(error)
        on_progress(1)

    with _keeping_rows(table):
        if todo and config.scheduler:
            result.startup_s = _count_on_dask(config, model, todo, overlays, point_files, policy, record, t_start)
        elif todo:
            result.startup_s = _count_locally(config, model, todo, overlays, want_points, policy, record, result, log,
                                              t_start, stream)
    result.engines = sorted(labels)
    result.seconds = time.perf_counter() - t_start
    manifest = build_manifest("count", config_dict(config), seed=None, inputs=[model_input], engines=result.engines,
                              model_hash=mhash, counted=len(result.counts), failed=len(result.failed),
                              skipped_done=result.skipped_done, seconds=round(result.seconds, 3),
                              csv_folder=str(out.resolve().parent))  # a viewer rebases the rows' paths on a move
    write_json(sidecar_manifest(out), manifest)
    return result
