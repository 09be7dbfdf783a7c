"""Density targets from cell centres: one Gaussian kernel of mass exactly 1 per centre.

Contract: :func:`density_map` returns float32 (H, W) whose sum equals the number of centres inside the
image (up to float rounding). Each kernel is the outer product of two 1-D Gaussians sampled at pixel
centres, truncated at ``truncate * sigma`` *and at the image border*, each renormalised to sum 1: a
cell at a border keeps its whole mass inside the image. Applied to a crop's centre map, the crop's
density sums to the crop's count, so CutMix-mixed centre maps give exact mixed density maps.
"""

from __future__ import annotations

import numpy as np


def _kernel_1d(c: float, n: int, sigma: float, truncate: float) -> tuple[int, np.ndarray]:
    r = max(int(np.ceil(truncate * sigma)), 1)
    lo, hi = max(int(np.floor(c)) - r, 0), min(int(np.floor(c)) + r + 1, n)
    xs = np.arange(lo, hi, dtype=np.float64) + 0.5
    k = np.exp(-0.5 * ((xs - c) / sigma) ** 2)
    return lo, k / k.sum()


def density_map(points: np.ndarray, shape: tuple[int, int], sigma: float = 3.0, truncate: float = 4.0) -> np.ndarray:
    """float32 (H, W) density of ``points`` (float (N, 2) of x, y; pixel convention of
    :mod:`cellxfer.dataset`). Points outside the image are ignored."""
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=np.float64)
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        if not (0 <= x < w and 0 <= y < h):
            continue
        x0, kx = _kernel_1d(x, w, sigma, truncate)
        y0, ky = _kernel_1d(y, h, sigma, truncate)
        out[y0:y0 + len(ky), x0:x0 + len(kx)] += np.outer(ky, kx)
    return out.astype(np.float32)


def centre_map_points(cmap: np.ndarray) -> np.ndarray:
    """Points (x, y) at the pixel centres of an int centre map (repeated where a pixel holds several)."""
    ys, xs = np.nonzero(cmap)
    reps = cmap[ys, xs].astype(np.intp)
    return np.stack([np.repeat(xs + 0.5, reps), np.repeat(ys + 0.5, reps)], axis=1).astype(np.float64)


def density_from_centre_map(cmap: np.ndarray, sigma: float = 3.0, truncate: float = 4.0) -> np.ndarray:
    """Density map (float32, same shape) of an int32 centre map; sums to ``cmap.sum()``."""
    return density_map(centre_map_points(cmap), cmap.shape, sigma, truncate)


def density_batch(maps: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """float32 (B, 1, H, W) densities of int centre maps (B, H, W); float maps are densities already
    (adapt-count's pseudo-density) and are returned as they are."""
    if np.issubdtype(np.asarray(maps).dtype, np.floating):
        return np.asarray(maps, dtype=np.float32)[:, None]
    return np.stack([density_from_centre_map(m, sigma) for m in maps])[:, None]
