"""Cell locations from a density map: local maxima.

:func:`find_peaks` keeps the local maxima (``min_distance`` neighbourhood) above ``rel_threshold`` x the
peak height of one isolated kernel (``1 / (2 pi sigma^2)``); with ``k`` given it keeps the ``k``
strongest (``k = round(density.sum())`` makes the points agree with the count).
"""

from __future__ import annotations

import math

import numpy as np


def find_peaks(density: np.ndarray, sigma: float = 3.0, min_distance: int = 3, rel_threshold: float = 0.25,
               k: int | None = None) -> np.ndarray:
    """float64 (N, 2) of (x, y) pixel-centre coordinates of the peaks of a 2-D density, strongest first."""
    xy, vals = peak_candidates(density, sigma, min_distance, rel_threshold)
    return strongest(xy, vals, k)


def peak_candidates(density: np.ndarray, sigma: float = 3.0, min_distance: int = 3,
                    rel_threshold: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """``(xy, values)``: every peak of :func:`find_peaks` (float64 (N, 2) of (x, y)) with its density value,
    unranked, in raster order of their centres (row, then column); a map cut into bands of rows gives the
    same peaks band by band, in the same order, when each band is looked at with ``min_distance`` rows of
    its neighbours (:mod:`cellxfer.count.parts`), so equal values rank the same whatever the bands."""
    from scipy.ndimage import label, maximum_filter

    d = np.asarray(density, dtype=np.float32)
    thr = rel_threshold / (2 * math.pi * sigma ** 2)
    is_max = (d == maximum_filter(d, size=2 * min_distance + 1, mode="constant", cval=-np.inf)) & (d > thr)
    # a plateau (e.g. a density upsampled by nearest neighbour) is one peak: one point per connected
    # group of maximal pixels, at its centre (the mean of its pixels' coordinates, summed over the few
    # maximal pixels only, not over the map)
    labels, n = label(is_max, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros((0, 2), dtype=np.float64), np.zeros(0, dtype=np.float32)
    ys, xs = np.nonzero(is_max)
    lab = labels[ys, xs]
    size = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    cy = np.bincount(lab, weights=ys.astype(np.float64), minlength=n + 1)[1:] / size
    cx = np.bincount(lab, weights=xs.astype(np.float64), minlength=n + 1)[1:] / size
    # a group's pixels are each the maximum of the other's neighbourhood, so they share one value: the
    # peak's (its rounded centre may lie off a diagonal group, on a pixel that depends on the band's offset)
    peak = np.zeros(n + 1, dtype=np.float32)
    peak[lab] = d[ys, xs]
    raster = np.lexsort((cx, cy))  # label order follows each group's first pixel, not its centre
    return np.stack([cx[raster] + 0.5, cy[raster] + 0.5], axis=1).astype(np.float64), peak[1:][raster]


def strongest(xy: np.ndarray, vals: np.ndarray, k: int | None = None) -> np.ndarray:
    """The ``k`` (None: all) points of highest value, strongest first (ties keep their order)."""
    order = np.argsort(-np.asarray(vals), kind="stable")
    if k is not None:
        order = order[:max(int(k), 0)]
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)[order]


def peaks_for_count(density: np.ndarray, sigma: float = 3.0, min_distance: int = 3) -> np.ndarray:
    """Peaks limited to ``round(density.sum())`` points (at most)."""
    return find_peaks(density, sigma=sigma, min_distance=min_distance, k=int(round(float(density.sum()))))
