"""Sliding-window translation of images of any size with seamless blending.

Tiles of ``tile`` x ``tile`` pixels (a multiple of the UNet's ``2**num_downs``) are placed every
``tile - overlap`` pixels, the last row/column flush with the image edge; an image smaller than a
tile is reflect-padded. Each tile's output is weighted by a separable ramp that rises from
``eps`` at the tile border to 1 over ``overlap`` pixels (a tile edge that lies on the image edge gets
full weight), and the weighted sum is divided by the summed weights, so overlapping tiles fade into
each other with no seam and a model that returns a constant gives exactly that constant.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(tile: int, overlap: int, lead: bool, trail: bool, eps: float = 1e-3) -> np.ndarray:
    w = np.ones(tile, np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        r = np.maximum(r, eps)
        if lead:
            w[:overlap] = np.minimum(w[:overlap], r)
        if trail:
            w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def translate_array(x: np.ndarray, run: Callable[[np.ndarray], np.ndarray], tile: int = 256, overlap: int = 32,
                    batch_size: int = 8, multiple: int = 1) -> np.ndarray:
    """``x``: normalised float32 (H, W) -> (H, W) float32 model output, blended over tiles.

    ``run``: float32 (N, 1, tile, tile) -> (N, 1, tile, tile). ``multiple``: tile must divide by it.
    """
    if tile % multiple:
        raise ValueError(f"tile {tile} is not a multiple of {multiple}")
    overlap = min(overlap, tile // 2)
    h0, w0 = x.shape
    ph, pw = max(tile - h0, 0), max(tile - w0, 0)
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw)), mode="reflect" if min(h0, w0) > 1 else "edge")
    h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    acc = np.zeros((h, w), np.float64)
    wsum = np.zeros((h, w), np.float64)
    coords = [(y, xx) for y in ys for xx in xs]
    for i in range(0, len(coords), batch_size):
        chunk = coords[i : i + batch_size]
        batch = np.stack([x[y : y + tile, xx : xx + tile] for y, xx in chunk])[:, None].astype(np.float32)
        out = np.asarray(run(batch), dtype=np.float32).reshape(len(chunk), tile, tile)
        for (y, xx), o in zip(chunk, out):
            wy = _ramp(tile, overlap, y > 0, y + tile < h)
            wx = _ramp(tile, overlap, xx > 0, xx + tile < w)
            wt = wy[:, None] * wx[None, :]
            acc[y : y + tile, xx : xx + tile] += o * wt
            wsum[y : y + tile, xx : xx + tile] += wt
    return (acc / wsum).astype(np.float32)[:h0, :w0]
