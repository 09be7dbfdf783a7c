"""Density models: how a density map becomes cell locations (the point finders a head picks,
:meth:`cellxfer.counter.head.Head.point_finder`; a whole map's points: :func:`cellxfer.counter.head.points_from_density`);
whole-image maps are :func:`cellxfer.count.parts.density_normalized` (the one splitter/merger path)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MarkedPixels:
    """A detector map (``--arch log``: 1.0 at each detection): its marked pixels, in raster order."""

    halo: int = 0  # rows of neighbours a band of the map needs to find its own points

    def candidates(self, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = np.nonzero(np.asarray(density) > 0.5)
        return np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float64), np.ones(len(ys), np.float32)

    def choose(self, xy: np.ndarray, vals: np.ndarray, total: float) -> np.ndarray:
        return np.asarray(xy, dtype=np.float64).reshape(-1, 2)[self.order(vals, total)]

    def order(self, vals: np.ndarray, total: float) -> np.ndarray:
        """Indices of the candidates that are points, in output order: all, as found."""
        return np.arange(len(vals))


@dataclass(frozen=True)
class DensityPeaks:
    """A density map: its ``round(sum)`` strongest local maxima (:mod:`cellxfer.density.peaks`)."""

    sigma: float = 3.0
    min_distance: int = 3

    @property
    def halo(self) -> int:
        return 2 * self.min_distance + 2

    def candidates(self, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from cellxfer.density.peaks import peak_candidates

        return peak_candidates(density, sigma=self.sigma, min_distance=self.min_distance)

    def choose(self, xy: np.ndarray, vals: np.ndarray, total: float) -> np.ndarray:
        return np.asarray(xy, dtype=np.float64).reshape(-1, 2)[self.order(vals, total)]

    def order(self, vals: np.ndarray, total: float) -> np.ndarray:
        """Indices of the ``round(total)`` strongest candidates, strongest first (ties keep their order),
        as :func:`cellxfer.density.peaks.strongest` picks them."""
        return np.argsort(-np.asarray(vals), kind="stable")[:max(int(round(total)), 0)]
