"""Syn-HC parameters (numpy-free, so the CLI can show defaults without importing numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cellxfer.bounds import OutOfRange, check_fields, ranged


@dataclass(frozen=True)
class SynHCConfig:
    """Syn-HC parameters. Pixel units; ranges are ``(low, high)`` of a uniform draw."""

    size: int = ranged(256, ge=8, le=8192, multiple_of=1)
    cell_size: float = ranged(15.0, gt=0, le=4096)  # and at most size
    count_mean: float = ranged(101.3, ge=0, le=1e6)
    count_std: float = ranged(76.4, ge=0, le=1e6)
    max_cells: int = ranged(600, ge=0, le=100_000, multiple_of=1)
    clusters: tuple[int, int] = ranged((3, 7), ge=1, le=1000, multiple_of=1, pair=True, equal_ok=True)
    spread: float = ranged(0.15, gt=0, le=10)
    overlap: float = ranged(0.1, ge=0, le=1)
    axes: tuple[float, float] = ranged((0.4, 0.6), gt=0, le=10, pair=True, equal_ok=True)
    # levels of the 8-bit image Syn-HC writes: above 255 every cell (or the whole field) would clip to white
    intensity: tuple[float, float] = ranged((100.0, 255.0), ge=0, le=255, pair=True, equal_ok=True)
    background: tuple[float, float] = ranged((10.0, 30.0), ge=0, le=255, pair=True, equal_ok=True)
    noise: float = ranged(5.0, ge=0, le=65535)  # 0: no noise
    contrast: tuple[float, float] = ranged((0.8, 1.2), gt=0, le=100, pair=True, equal_ok=True)
    brightness: tuple[float, float] = ranged((-20.0, 20.0), ge=-255, le=255, pair=True, equal_ok=True)
    layout_from: str | None = None

    def __post_init__(self):
        check_fields(self)
        if self.cell_size > self.size:
            raise OutOfRange(f"--cell-size {self.cell_size:g}: larger than the image (--size {self.size}); "
                             f"give a cell size below the image side")

    def semi_axis_range(self) -> tuple[int, int]:
        """Integer semi-axes are drawn from ``[lo, hi)`` (numpy's ``integers``); at least 1 pixel."""
        lo = max(1, int(self.axes[0] * self.cell_size))
        hi = max(lo + 1, int(math.ceil(self.axes[1] * self.cell_size)))
        return lo, hi
