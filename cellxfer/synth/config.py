"""Syn-HC parameters (numpy-free, so the CLI can show defaults without importing numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SynHCConfig:
    """Syn-HC parameters. Pixel units; ranges are ``(low, high)`` of a uniform draw."""

    size: int = 256
    cell_size: float = 15.0
    count_mean: float = 101.3
    count_std: float = 76.4
    max_cells: int = 600
    clusters: tuple[int, int] = (3, 7)
    spread: float = 0.15
    overlap: float = 0.1
    axes: tuple[float, float] = (0.4, 0.6)
    intensity: tuple[float, float] = (100.0, 255.0)
    background: tuple[float, float] = (10.0, 30.0)
    noise: float = 5.0
    contrast: tuple[float, float] = (0.8, 1.2)
    brightness: tuple[float, float] = (-20.0, 20.0)
    layout_from: str | None = None

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"size {self.size} is too small (at least 8)")
        if self.cell_size <= 0 or self.count_std < 0 or self.max_cells < 0:
            raise ValueError("cell_size must be > 0, count_std and max_cells >= 0")
        if not 1 <= self.clusters[0] <= self.clusters[1]:
            raise ValueError(f"clusters {self.clusters[0]}:{self.clusters[1]} must satisfy 1 <= low <= high")
        if not 0 <= self.overlap <= 1:
            raise ValueError(f"overlap {self.overlap} must lie in [0, 1]")
        if not 0 < self.axes[0] <= self.axes[1]:
            raise ValueError(f"axes {self.axes} must satisfy 0 < low <= high")

    def semi_axis_range(self) -> tuple[int, int]:
        """Integer semi-axes are drawn from ``[lo, hi)`` (numpy's ``integers``); at least 1 pixel."""
        lo = max(1, int(self.axes[0] * self.cell_size))
        hi = max(lo + 1, int(math.ceil(self.axes[1] * self.cell_size)))
        return lo, hi
