"""cellxfer's points <-> napari's points.

cellxfer (like QuPath and ImageJ) writes a cell as ``(x, y)`` floats with the origin at the top-left
corner of the top-left pixel: pixel (row r, column c) covers ``c <= x < c + 1``, ``r <= y < r + 1``, its
centre is ``(c + 0.5, r + 0.5)``. napari orders coordinates ``(row, col)`` and puts pixel (r, c)'s centre
at ``(r, c)``. So a cellxfer point ``(x, y)`` is napari's ``(y - 0.5, x - 0.5)`` and back.
"""

from __future__ import annotations

import numpy as np


def to_napari(xy) -> np.ndarray:
    """cellxfer ``(x, y)`` points (N, 2) -> napari ``(row, col)`` data coordinates of the same image."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.column_stack([xy[:, 1] - 0.5, xy[:, 0] - 0.5])


def from_napari(rc) -> np.ndarray:
    """napari ``(row, col)`` data coordinates (N, 2; more columns: the last two) -> cellxfer ``(x, y)``."""
    rc = np.asarray(rc, dtype=np.float64)
    rc = rc.reshape(-1, rc.shape[-1] if rc.ndim > 1 else 2)[:, -2:]
    return np.column_stack([rc[:, 1] + 0.5, rc[:, 0] + 0.5])


def block_transform(block_px: tuple[float, float]) -> dict:
    """``scale``/``translate`` of a napari image whose pixel (i, j) is the block of ``block_px`` (rows,
    cols) original pixels at ``(i * block_px[0], j * block_px[1])`` (a ``count --density-map``): its centre
    ``((i + 0.5) * b - 0.5)`` in napari's convention lands on the block's centre."""
    by, bx = (float(b) for b in block_px)
    return {"scale": (by, bx), "translate": (by / 2 - 0.5, bx / 2 - 0.5)}
