"""Running a stylizer over a cell dataset.

A :class:`Stylizer` (provided through the ``cellxfer_stylizers`` hook) maps a batch of content images
to stylized images of the same shapes, looking at a :class:`StyleSet` of real images. Images cross that
boundary as float32 2-D arrays scaled to [0, 1] by their dtype's range (uint8 / 255, uint16 / 65535);
style images stored as integers read at their camera's bit depth instead (:func:`bit_depth`: a 12-bit camera's
images in uint16 divide by 4095, not 65535, else a stylized 8-bit image would hold 16 grey levels);
:func:`run_stylize` converts back to the content image's own dtype. Points and counts are carried over
unchanged: a stylizer never moves pixels.

Each content image gets its own random generator, seeded with ``(seed, index in the sorted content
ids)``, so the output does not depend on the batch size and a stopped run continues where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cellxfer.dataset import COUNTS, IMAGES, MASKS, POINTS, CellDataset, CellDatasetWriter
from cellxfer.errors import DiskFull, InputError
from cellxfer.outputs import DatasetRunResult
from cellxfer.stylize.spec import Stylizer


# -- intensities ------------------------------------------------------------------------------------
def dtype_scale(dtype) -> float:
    """The value that maps to 1.0: the integer dtype's maximum, 1.0 for floats."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0


def to_unit(image: np.ndarray) -> np.ndarray:
    """float32 copy of ``image`` divided by :func:`dtype_scale`."""
    return image.astype(np.float32) / np.float32(dtype_scale(image.dtype))


def from_unit(image: np.ndarray, dtype) -> np.ndarray:
    """Inverse of :func:`to_unit`: clip to [0, 1], scale, round to ``dtype``."""
    dtype = np.dtype(dtype)
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if dtype.kind in "iu":
        return np.rint(x * np.float32(dtype_scale(dtype))).astype(dtype)
    return x.astype(dtype)


def crop_like(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random ``shape`` (H, W) window of ``image``; mirrored at the borders when it is smaller."""
    h, w = shape
    ih, iw = image.shape
    if ih < h or iw < w:
        image = np.pad(image, ((0, max(0, h - ih)), (0, max(0, w - iw))), mode="symmetric")
        ih, iw = image.shape
    y = int(rng.integers(0, ih - h + 1))
    x = int(rng.integers(0, iw - w + 1))
    return image[y:y + h, x:x + w]


#: the bit depths microscope cameras record; an unsigned integer image set is read at the smallest that holds it
CAMERA_BITS = (8, 10, 12, 14, 16)


def bit_depth(images: Sequence[np.ndarray]) -> dict[str, int]:
    """``{dtype name: bits}`` of a set of images: for each unsigned integer dtype wider than the smallest camera
    depth that holds the set's brightest pixel of that dtype (12-bit camera images stored as uint16, 0-4095:
    12), so the whole set keeps its relative brightness and is read at the range its camera gave it. Absent for
    a dtype read by its full range (uint8, a uint16 set reaching past 14 bits, signed and float images)."""
    brightest: dict[str, int] = {}
    for img in images:
        if img.dtype.kind == "u" and img.size:
            brightest[img.dtype.name] = max(brightest.get(img.dtype.name, 0), int(img.max()))
    bits = {}
    for name, top in brightest.items():
        b = next(b for b in CAMERA_BITS + (np.iinfo(name).bits,) if top <= 2 ** b - 1)
        if b < np.iinfo(name).bits:
            bits[name] = b
    return bits


# -- style images -----------------------------------------------------------------------------------
class StyleSet:
    """Real style images, read from folders and/or files (every readable image directly inside a
    folder, sorted by name). ``images``: 2-D arrays in their stored dtype; :meth:`unit` gives float32
    in [0, 1], unsigned integers divided by their camera's range (``bits``: :func:`bit_depth`)."""

    def __init__(self, sources: Sequence[str | os.PathLike]):
        from cellxfer.imageio import image_suffixes, read_image

        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        if not sources:
            raise InputError("no style images given; pass --style DIR (or image files)")
        suffixes = image_suffixes()
        paths: list[Path] = []
        for src in map(Path, sources):
            if src.is_dir():
                found = sorted(p for p in src.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))
                if not found:
                    raise InputError(f"{src}: holds no images ({', '.join(sorted(suffixes))}); give a folder of real style images")
                paths += found
            elif src.is_file():
                paths.append(src)
            else:
                raise InputError(f"{src}: no such file or folder; --style needs real images (a folder or files)")
        self.sources = [Path(s) for s in sources]
        self.paths = paths
        self.images = [read_image(p) for p in paths]
        self.bits = bit_depth(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def unit(self, i: int) -> np.ndarray:
        img = self.images[i]
        bits = self.bits.get(img.dtype.name)
        return to_unit(img) if bits is None else img.astype(np.float32) / np.float32(2 ** bits - 1)

    def pick(self, rng: np.random.Generator) -> int:
        return int(rng.integers(0, len(self.images)))


# -- the job ----------------------------------------------------------------------------------------
def image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _identity(stylizer: Stylizer, config, seed: int, content: Path, style: StyleSet) -> dict:
    from cellxfer.manifest import config_dict

    identity = {
        "method": stylizer.name,
        "config": config_dict(config),
        "seed": seed,
        "content": str(content.resolve()),
        "style": [str(p.resolve()) for p in style.sources],
    }
    return {**identity, "style_bits": style.bits} if style.bits else identity  # absent: as before it was read


def run_stylize(
    stylizer: Stylizer,
    config,
    content: str | os.PathLike,
    style: StyleSet | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    executor=None,
) -> DatasetRunResult:
    """Stylize every image of the labelled cell dataset ``content`` toward ``style`` into ``out``.

    ``out`` is a cell dataset with the content's ids, the content dtype, and its points (hence masks
    and counts) unchanged. ``limit`` keeps the first ``limit`` content ids. Rerunning with the same
    settings skips finished images; other settings are refused unless ``overwrite``. A content image
    that cannot be read or stylized is reported in ``failed`` and the rest goes on. Batches of
    ``config.batch_size`` images are the jobs of ``executor`` (:func:`cellxfer.executors.executor_for`:
    this process by default, a Dask cluster for ``--scheduler``); each process prepares the stylizer
    once. Writes ``counts.csv`` and ``manifest.json`` (stage ``stylize``, stylizer, settings, seed,
    input hashes, seconds per image).
    """
    from cellxfer.runs import RunFolder

    content, out = Path(content), Path(out)
    t0 = time.perf_counter()
    require_extra(stylizer)
    ds = CellDataset(content)
    if not ds.labelled:
        raise InputError(f"{content}: content dataset has no points/ (or ground_truth/) folder; stylize needs labelled images")
    style = style if isinstance(style, StyleSet) else StyleSet(style)
    ids = ds.ids[:limit] if limit is not None else ds.ids
    _check_estimate(stylizer, config, ds, ids)
    identity = _identity(stylizer, config, seed, content, style)
    if out.resolve() == content.resolve():
        raise InputError(f"{out}: --out is the content dataset itself; pick another folder")
    inputs = [content, *style.sources]
    if getattr(config, "token", None):
        from cellxfer.stylize.config import resolve_token

        inputs.append(resolve_token(config.token))
    from cellxfer.stylize.config import model_paths

    with RunFolder(out, "stylize", identity, own=(IMAGES, POINTS, MASKS, COUNTS), inputs=inputs, overwrite=overwrite,
                   protect=model_paths(config)) as run:
        manifest = run.write_manifest(run.manifest(n=len(ids)), complete=False)
        return _stylize_todo(_Job(stylizer, config, content, tuple(style.sources), out, seed), ids, style, manifest,
                             on_progress, executor, t0)


def require_extra(stylizer: Stylizer) -> None:
    """One line naming the pip extra ``stylizer`` needs when it is not installed (InST in the core install:
    the ``stylize`` extra, which brings diffusers *and* torch; torch's own line named only ``train``)."""
    if stylizer.extra:
        from cellxfer.extras import require

        require(stylizer.extra, f"`cellxfer stylize --method {stylizer.name}`")


def _check_estimate(stylizer: Stylizer, config, ds: CellDataset, ids) -> None:
    """Refuse, before any work, settings whose estimated cost on the largest content image (its header)
    cannot fit this machine (:mod:`cellxfer.budget`); nothing for a stylizer without an estimate."""
    if stylizer.estimate is None or not ids:
        return
    from cellxfer.budget import check_estimate
    from cellxfer.imageio import image_shape

    shapes = [s for s in (image_shape(ds.image_path(i)) for i in ids) if s is not None]
    if shapes:
        check_estimate(stylizer.estimate(config, max(shapes, key=lambda s: s[0] * s[1])))


@dataclass(frozen=True)
class _Job:
    """What every batch job shares (it pickles: the stylizer's functions are lazy references)."""

    stylizer: Stylizer
    config: Any
    content: Path
    style: tuple[Path, ...]
    out: Path
    seed: int


#: The stylizer context of this process, ``(key, style set, context)``: prepared once per process and
#: stylizer settings (loading InST's networks takes seconds), whichever executor runs the batches.
_PREPARED: list = []


def _prepared(job: _Job, style: StyleSet | None = None) -> tuple[Any, float]:
    """``(context, seconds spent preparing it now)``; ``style`` the run's style set when this process has it."""
    key = (job.stylizer.name, repr(job.config), job.style)
    if _PREPARED and _PREPARED[0][0] == key:
        return _PREPARED[0][2], 0.0
    _PREPARED.clear()  # one context at a time: another run's networks are let go
    t = time.perf_counter()
    style = style if style is not None else StyleSet(job.style)
    context = job.stylizer.prepare(job.config, style)
    _PREPARED.append((key, style, context))
    return context, time.perf_counter() - t


def _stylize_batch(item: tuple[_Job, list[tuple[int, str]]]) -> tuple[dict[str, str], float, float]:
    """One executor job: stylize the content images ``(index, id)`` of a batch and write them to ``out``.
    Returns ``({id: why} of those that failed, seconds preparing, seconds stylizing)``; a bad setting
    (:class:`InputError`) is raised for the whole run."""
    job, chunk = item
    context, prep = _prepared(job)
    t = time.perf_counter()
    ds, writer = CellDataset(job.content), CellDatasetWriter(job.out, masks=True)
    failed: dict[str, str] = {}
    samples = []
    for index, id_ in chunk:
        try:
            samples.append((index, ds[id_]))
        except Exception as exc:  # noqa: BLE001 - per-file failure, the batch goes on
            failed[id_] = f"{type(exc).__name__}: {exc}"
    if samples:
        try:
            styled = job.stylizer.stylize([to_unit(s.image) for _, s in samples], context, job.config,
                                          [image_rng(job.seed, i) for i, _ in samples])
            if len(styled) != len(samples):
                raise RuntimeError(f"stylizer returned {len(styled)} images for {len(samples)}")
            for (_, s), img in zip(samples, styled):
                img = np.asarray(img)
                if img.shape != s.image.shape:
                    raise RuntimeError(f"stylizer changed the shape {s.image.shape} -> {img.shape}")
                writer.write(s.id, from_unit(img, s.image.dtype), s.points)
        except (InputError, DiskFull):  # a bad setting, or a full disk: the whole run stops
            raise
        except Exception as exc:  # noqa: BLE001
            for _, s in samples:
                if not writer.is_done(s.id):
                    failed[s.id] = f"{type(exc).__name__}: {exc}"
    return failed, prep, time.perf_counter() - t


def _stylize_todo(job: _Job, ids, style: StyleSet, manifest: dict, on_progress, executor, t0: float) -> DatasetRunResult:
    """Stylize the ids that ``job.out`` does not hold yet, a batch per executor job; finalize the dataset."""
    from cellxfer.executors import executor_for

    writer = CellDatasetWriter(job.out, masks=True)
    todo = [(i, id_) for i, id_ in enumerate(ids) if not writer.is_done(id_)]
    skipped = len(ids) - len(todo)
    if on_progress and skipped:
        on_progress(skipped)
    failed: dict[str, str] = {}
    prep = work = 0.0
    try:
        if todo:
            prep = _prepared(job, style)[1]  # checked here first; in-process jobs reuse it
            batch = max(1, int(getattr(job.config, "batch_size", 16)))
            chunks = ((job, todo[k:k + batch]) for k in range(0, len(todo), batch))
            for (_, chunk), result in (executor or executor_for(None)).map(_stylize_batch, chunks, workers=1):
                if isinstance(result, (InputError, DiskFull)):
                    raise result
                if isinstance(result, Exception):
                    result = ({id_: f"{type(result).__name__}: {result}" for _, id_ in chunk}, 0.0, 0.0)
                failed.update(result[0])
                prep, work = prep + result[1], work + result[2]
                if on_progress:
                    on_progress(len(chunk))
    finally:
        _PREPARED.clear()  # the run's networks are let go with it
    written = len(todo) - len(failed)
    seconds = time.perf_counter() - t0
    counts = writer.finalize({
        **manifest, "complete": not failed, "seconds": round(seconds, 3), "seconds_prepare": round(prep, 3),
        "seconds_per_image": round(work / written, 5) if written else None,
    })
    return DatasetRunResult(job.out, counts, written, skipped, failed, seconds, work / written if written else None)
