"""Memory budgets: what a run would need, checked before the memory is spent (issue 27).

One place for every estimate check: an image whose header claims more pixels than cellxfer reads into
memory (:data:`MAX_IMAGE_PIXELS`, or more than is free), and settings of ``synth``, ``learn-style``,
``train-count`` whose memory would be absurd on this machine, are refused up front with one line giving
the estimate and the fix (:class:`cellxfer.errors.InputError`, exit 2), never left to the kernel's
out-of-memory killer. Estimates are deliberately round (within a factor of about 2): they separate
"fits" from "cannot fit", not 5 GB from 6 GB. The *ranges* of options (positive, integer, ...) are
the typed configs' business; this module only says whether valid values fit.

Free memory is the kernel's ``MemAvailable`` (and a cgroup's ``memory.max`` when lower), read when
asked; ``CELLXFER_MEMORY_BYTES`` overrides it (tests, or a user who knows better).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cellxfer.errors import InputError, fmt_bytes  # noqa: F401 - fmt_bytes: part of this module's API

#: the most pixels of one image plane read whole into memory (a 32768 x 32768 plane; 1 GiB at 8 bits):
#: a larger single-page TIFF (integer or float, grey or RGB) or OME-Zarr is read by region
#: (:mod:`cellxfer.lazy`); anything else larger is refused from its header, before any pixel is decoded
MAX_IMAGE_PIXELS = 2**30


def _cgroup_free() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _gpu_free(device: str) -> int | None:
    """Free memory of the CUDA device ``device`` names (``auto`` included, when there is one), else None."""
    if not (device == "auto" or device.startswith("cuda")):
        return None
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    try:
        return int(torch.cuda.mem_get_info(index)[0])
    except (RuntimeError, AssertionError, ValueError):
        return None


MEMORY_ENV = "CELLXFER_MEMORY_BYTES"


def forced_bytes() -> int | None:
    """``$CELLXFER_MEMORY_BYTES`` in bytes (``8e9`` or ``8000000000``), None when unset or empty; anything but
    a finite number of at least one byte is an :class:`InputError` naming the variable, not a failure of
    whatever file was being checked."""
    import math

    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise InputError(f"{MEMORY_ENV}={text!r} is not a number of bytes; unset it, or give the memory cellxfer "
                         f"may use, e.g. {MEMORY_ENV}=8e9")
    return int(value)


def available_bytes(device: str = "cpu") -> int | None:
    """Memory this process can still take (bytes) on ``device`` (a torch device name, ``auto`` too: a
    GPU's free memory when it trains there), or None when the system does not say."""
    forced = forced_bytes()
    if forced is not None:
        return forced
    gpu = _gpu_free(str(device))
    if gpu is not None:
        return gpu
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = None
    group = _cgroup_free()
    if group is not None:
        free = group if free is None else min(free, group)
    return free


def check_memory(need: float, what: str, fix: str, device: str = "cpu") -> None:
    """Raise :class:`InputError` ``"<what> needs about N GB of memory, M GB is free; <fix>"`` when ``need``
    bytes would not fit in the free memory of ``device``."""
    free = available_bytes(device)
    if free is not None and need > free:
        raise InputError(f"{what} needs about {fmt_bytes(need)} of memory, {fmt_bytes(free)} is free; {fix}")


def check_image_header(path, height: int, width: int, nbytes: int, lazy_ok: bool = True) -> None:
    """Refuse an image whose header claims more than can be read into memory, before it is decoded:
    a plane of more than :data:`MAX_IMAGE_PIXELS` pixels, or (``nbytes``: all its planes decoded) more
    than is free. ``lazy_ok``: the fix may say that a single-page tiled TIFF would be read by region."""
    pixels = int(height) * int(width)
    slide = "save it as a single-page tiled TIFF, grey or RGB (read by region)" if lazy_ok else "crop or downsample it"
    if pixels > MAX_IMAGE_PIXELS:
        raise InputError(f"{path}: its header claims {width} x {height} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                         f"pixels cellxfer reads into memory; if the file is right, {slide}, else export it again")
    # decoding takes the plane(s), and counting a float32 copy of one plane
    check_memory(int(nbytes) + 4 * pixels, f"{path}: its {width} x {height} pixels",
                 f"free some memory or, if the file is right, {slide}")


#: operations (pixel operations, roughly) one item may cost before a run is refused as one that would
#: run for minutes per item with no sign of progress; :data:`OPS_PER_S` turns them into seconds
MAX_WORK = 6e9
#: operations per second of one core, as measured on Syn-HC (cell size 300: 2.2e9 in 18 s)
OPS_PER_S = 1e8


@dataclass(frozen=True)
class Estimate:
    """What one item (an image, a training step) of a run would cost: ``bytes`` of memory per worker and
    ``work`` in pixel operations (0: not estimated); ``what`` describes the settings ("synth: cells of
    5000 px ..."), ``fix`` says which options to change."""

    what: str
    fix: str
    bytes: float = 0.0
    work: float = 0.0
    device: str = "cpu"  # where ``bytes`` are spent: a torch device name (``auto``: a GPU when there is one)


def check_estimate(estimate: Estimate | None, workers: int = 1) -> None:
    """Refuse (one line, :class:`InputError`) a run whose ``estimate`` would not fit the free memory with
    ``workers`` workers at once, or would cost more than :data:`MAX_WORK` per item; see module docs."""
    if estimate is None:
        return
    workers = max(int(workers), 1)
    if estimate.bytes:
        check_memory(estimate.bytes * workers, estimate.what + (f" (x{workers} workers)" if workers > 1 else ""),
                     estimate.fix, estimate.device)
    if estimate.work > MAX_WORK:
        raise InputError(f"{estimate.what} would take about {estimate.work / OPS_PER_S / 60:.0f} minutes per item "
                         f"(estimated {estimate.work:.1e} operations; the bound is {MAX_WORK / OPS_PER_S:.0f} s); "
                         f"{estimate.fix}")
