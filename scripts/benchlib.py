"""What the scripts under ``scripts/`` share (they import this module, never each other).

- Where the data is: :data:`DATA` is ``$CELLXFER_DATA`` if set, else ``../shared/data`` beside the repository;
  :data:`IDCIA`, :data:`ISL` and :data:`CC0_DAPI` are the data sets under it (read in place, never copied).
- The benchmarks' fixed IDCIA split as symlink folders (:func:`make_split`, :mod:`cellxfer.evaluate.split`).
- Syn-HC sets through the ``cellxfer synth`` command (:func:`synhc`).

A script run as ``python scripts/NAME.py`` finds this module because Python puts the script's folder
first on ``sys.path``; tests that load a script by path put ``scripts/`` there themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CELLXFER_DATA") or REPO.parent / "shared" / "data")
IDCIA = DATA / "idcia-dapi-95"
ISL = DATA / "isl-condition-blue"
CC0_DAPI = DATA / "cellprofiler-examplehuman" / "AS_09125_050116030001_D03f00d0.tif"
DSB = DATA / "dsb2018-fluo"


def dsb_table() -> list[dict]:
    """dsb2018-fluo's ``per_image.tsv``, one dict per image: ``id`` (file stem), ``file``, ``width``, ``height``,
    ``count`` and ``diameter`` (the true median nucleus diameter of its masks, px)."""
    import csv

    with open(DSB / "per_image.tsv") as f:
        return [{"id": r["image"].rsplit(".", 1)[0], "file": r["image"], "width": int(r["W"]), "height": int(r["H"]),
                 "count": int(r["count"]), "diameter": float(r["median_diam_px"])}
                for r in csv.DictReader(f, delimiter="\t")]


def make_split(work: Path) -> dict:
    """The fixed split (:mod:`cellxfer.evaluate.split`) as symlink folders ``idcia-{train,val,test,trainval}``
    under ``work``; returns it."""
    from cellxfer.evaluate.split import materialize

    return materialize(IDCIA, work)


def cellxfer_command() -> list[str]:
    """How to run the ``cellxfer`` command of this checkout (its venv's script, else ``python -m cellxfer``)."""
    exe = REPO / ".venv" / "bin" / "cellxfer"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cellxfer"]


def synhc(out: Path, n: int, seed: int) -> float:
    """Write ``n`` Syn-HC images (the paper's settings) to ``out`` with ``cellxfer synth``; returns seconds."""
    t0 = time.perf_counter()
    subprocess.run(cellxfer_command() + ["synth", "--n", str(n), "--out", str(out), "--seed", str(seed)], check=True)
    return time.perf_counter() - t0


#: a pixel is "on signal" when its 5x5 neighbourhood maximum exceeds median + K x (p99.5 - median)
SIGNAL_K = 0.25


def on_signal_mask(image, k: float = SIGNAL_K):
    """bool (H, W): pixels whose 5x5 neighbourhood maximum exceeds median + ``k`` x (p99.5 - median) (model-free:
    on a nucleus, or next to one; ``check_annotations``, ``bench_transfer --invariance``)."""
    import numpy as np
    from scipy.ndimage import maximum_filter

    im = np.asarray(image, dtype=np.float32)
    bg, top = (float(v) for v in np.percentile(im, (50, 99.5)))
    return maximum_filter(im, 5) > bg + k * (top - bg)


def on_signal(mask, points):
    """bool (N,): which of ``points`` ((N, 2) x, y pixels) fall on ``mask``."""
    import numpy as np

    ij = np.clip(np.floor(np.asarray(points).reshape(-1, 2)[:, ::-1]).astype(int), 0, np.array(mask.shape) - 1)
    return mask[ij[:, 0], ij[:, 1]]


def share_on_signal(mask, points) -> float:
    """Share of ``points`` ((N, 2) x, y pixels) that fall on ``mask``."""
    return float(on_signal(mask, points).mean()) if len(points) else float("nan")


def tree_env(tree: Path) -> dict:
    """The environment of a child process that must import the cellxfer of checkout ``tree`` (``--before``:
    ``PYTHONPATH`` first; run it outside any checkout, since ``python -c``/``-m`` put the current folder first)."""
    return {**os.environ, "PYTHONPATH": str(tree)}


def in_turn_ratios(first: list, second: list) -> dict:
    """Runs made in turn (first, second, first, ...): ``first[i] / second[i]`` pair by pair, and their median."""
    import statistics

    pairs = [round(a / b, 3) for a, b in zip(first, second)]
    return {"pairs": pairs, "median": statistics.median(pairs)}


def idle_share(seconds: float = 1.0) -> float:
    """Share of all CPUs' time that was idle over the next ``seconds`` (from ``/proc/stat``; NaN elsewhere): what
    other processes leave to a benchmark now, unlike the load average, which lags by a minute."""
    import math

    def ticks():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    try:
        idle0, all0 = ticks()
        time.sleep(seconds)
        idle1, all1 = ticks()
    except OSError:
        return math.nan
    return (idle1 - idle0) / max(1, all1 - all0)


def wait_idle(share: float, limit_s: float) -> float:
    """Wait up to ``limit_s`` seconds for a second in which at least ``share`` of the CPUs was idle; returns the
    last second's idle share (the machine's state as the benchmark's run starts)."""
    end = time.monotonic() + limit_s
    while True:
        got = idle_share()
        if got >= share or time.monotonic() >= end or got != got:
            return got


def _gradient(f, lo, hi, yy, xx, amount):
    return f + amount * (hi - lo) * (0.7 * xx + 0.3 * yy)


def _vignette(f, lo, hi, yy, xx, amount):
    cy, cx = (n / max(f.shape) / 2 for n in f.shape)  # the centre, in shares of the longer side
    return lo + (f - lo) * (1 - amount * ((yy - cy) ** 2 + (xx - cx) ** 2) / 0.5)


def _haze(f, lo, hi, yy, xx, amount):
    from scipy import ndimage as ndi

    return f + amount * ndi.gaussian_filter(f - lo, 15)


SHADES = {"gradient": _gradient, "vignette": _vignette, "haze": _haze}


def shade(kind: str, amount: float):
    """Uneven illumination added to an image (float32), scaled by its 1st-99.5th percentile range ``r``: a
    left-to-right ``gradient`` rising by ``amount * r``; a ``vignette`` dimming the corners to ``1 - amount`` of the
    centre; out-of-focus ``haze``, ``amount`` times the image blurred over 15 px (a glow round every crowd of
    nuclei). ``kind``: a key of :data:`SHADES`."""
    add = SHADES[kind]

    def go(img):
        import numpy as np

        f = img.astype(np.float32)
        lo, hi = np.percentile(f, (1, 99.5))
        h, w = f.shape
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        return add(f, lo, hi, yy, xx, amount)
    return go


def brighten_some(share: float, factor: float, seed: int = 0):
    """Nuclei of very different brightness, as mitotic or H2B-bright cells beside interphase ones: ``share`` of
    an image's annotated nuclei (drawn with ``seed``: the same ones each run) made ``factor`` times as bright
    above the image's 1st percentile, each over a disk of 0.6 ``diameter`` round its annotated centre. Returns
    ``go(image, points, diameter) -> float32 image``; points are ``(x, y)`` rows."""
    def go(img, points, diameter):
        import numpy as np

        f = img.astype(np.float32)
        lo = np.float32(np.percentile(f, 1))
        pick = np.asarray(points, float).reshape(-1, 2)
        pick = pick[np.random.default_rng(seed).random(len(pick)) < share]
        yy, xx = np.ogrid[0:f.shape[0], 0:f.shape[1]]
        mask = np.zeros(f.shape, bool)
        for x, y in pick:
            mask |= (yy - y) ** 2 + (xx - x) ** 2 <= (0.6 * diameter) ** 2
        f[mask] = lo + (f[mask] - lo) * np.float32(factor)
        return f
    return go


#: the uneven illuminations both benchmarks apply (``bench_transfer.py --shading``, ``scale_check.py --shading``)
SHADINGS = {"gradient 0.5": shade("gradient", 0.5), "gradient 1": shade("gradient", 1.0),
            "vignette 0.5": shade("vignette", 0.5), "haze x2": shade("haze", 2.0)}
