"""Density models on whole images: stitched density map, cell locations, localisation score."""

from __future__ import annotations

from typing import Callable

import numpy as np


def density_of_normalized(runner: Callable[[np.ndarray], np.ndarray], meta, normalized: np.ndarray,
                          batch_size: int = 16) -> np.ndarray:
    """float32 (H, W) density of an already normalised 2-D image: overlapping tiles of
    :func:`cellxfer.density.stitch.tile_of` stitched without double counting."""
    from cellxfer.density.stitch import density_image, margin_of, tile_of

    return density_image(runner, normalized, tile_of(meta), margin_of(meta), meta.in_chans, batch_size)


def density_of_image(runner: Callable[[np.ndarray], np.ndarray], meta, image: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """float32 (H, W) density of a raw 2-D ``image`` (normalised as ``meta`` says, tiles stitched)."""
    return density_of_normalized(runner, meta, meta.normalization.apply(image), batch_size)


def points_from_density(density: np.ndarray, meta) -> np.ndarray:
    """float64 (N, 2) of (x, y) cell locations. A detector map (``--arch log``: 1.0 at each detection)
    gives its marked pixels; a density map gives its ``round(sum)`` strongest local maxima."""
    from cellxfer.density.peaks import peaks_for_count

    if meta.arch == "log":
        ys, xs = np.nonzero(density > 0.5)
        return np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float64)
    sigma = float((meta.arch_options or {}).get("sigma", 3.0))
    return peaks_for_count(density, sigma=sigma, min_distance=max(1, int(round(sigma))))
