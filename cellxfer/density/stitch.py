"""The geometry of overlapping tiles that own their part of an image (density heads), and the
inference tile and margin a density model records.

Tiles of ``tile`` x ``tile`` start every ``tile - 2 * margin`` pixels (the last one flush with the
bottom/right border; an image smaller than a tile is one tile, mirrored). Every image pixel is *owned*
by exactly one tile: the boundary between consecutive tiles lies in the middle of their overlap, so
each tile contributes only its owned part and the stitched map is a partition of the image. With a
receptive field below ``margin`` the stitched map equals the whole-image map. Cutting, stitching and
peaks are :mod:`cellxfer.count.parts` (its ``DensityBands`` merger), the one path of every command.
"""

from __future__ import annotations

import numpy as np


def tile_starts(n: int, tile: int, margin: int = 0, step: int | None = None) -> list[int]:
    """Starts of ``tile``-long tiles every ``step`` (default ``tile - 2 * margin``) pixels along ``n``,
    the last flush with the end; ``[0]`` when ``n <= tile`` (one tile, padded)."""
    if n <= tile:
        return [0]
    step = max(tile - 2 * margin if step is None else step, 1)
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


def owned_ranges(n: int, tile: int, margin: int) -> list[tuple[int, int, int]]:
    """``(start, own_lo, own_hi)`` per tile along one axis; the owned ranges partition ``[0, n)``."""
    starts = tile_starts(n, tile, margin)
    bounds = [0] + [(starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [n]
    return [(s, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


def tiles(shape: tuple[int, int], tile: int, margin: int, width: int | None = None
          ) -> list[tuple[int, int, int, int, int, int]]:
    """``(y0, x0, oy0, oy1, ox0, ox1)`` per tile of ``tile`` rows and ``width`` (default ``tile``) columns,
    row-major: tile origin and owned image box."""
    h, w = shape
    return [(y, x, oy0, oy1, ox0, ox1) for y, oy0, oy1 in owned_ranges(h, tile, margin)
            for x, ox0, ox1 in owned_ranges(w, width or tile, margin)]


def cut_tiles(block: np.ndarray, boxes: list, tile: int, in_chans: int = 1, y0: int = 0, x0: int = 0,
              width: int | None = None) -> np.ndarray:
    """float32 (N, in_chans, tile, width) inputs of ``boxes`` from ``block``, the image's rows from ``y0``
    and columns from ``x0`` (``width``: default ``tile``). An image shorter or narrower than a tile is padded
    bottom/right by mirroring (numpy ``reflect``), so the padding looks like more of the image rather than an
    edge against black; only owned (image) pixels are ever stitched."""
    width = width or tile
    h, w = block.shape
    if h < tile or w < width:
        block = np.pad(block, ((0, max(tile - h, 0)), (0, max(width - w, 0))), mode="reflect" if min(h, w) > 1 else "edge")
    batch = np.zeros((len(boxes), in_chans, tile, width), dtype=np.float32)
    for i, (y, x, *_) in enumerate(boxes):
        batch[i, :] = block[y - y0:y - y0 + tile, x - x0:x - x0 + width]
    return batch


def tile_of(meta) -> int:
    """Inference tile side of a density model: ``arch_options['tile']`` or ``max(window, 256)``. The
    network is fully convolutional, so tiles larger than the training crop cost fewer overlaps."""
    return int((meta.arch_options or {}).get("tile", max(meta.window, 256)))


def margin_of(meta) -> int:
    """Stitching margin of a density model: ``arch_options['margin']`` or window // 8."""
    return int((meta.arch_options or {}).get("margin", max(meta.window // 8, 0)))


def _sums_along(a: np.ndarray, o: int, b: int) -> np.ndarray:
    """float64 sums of ``a`` along its last axis over the blocks of ``b`` of a grid whose index ``o`` is
    ``a``'s first (the first and last blocks may be cut), each added left to right in float64: exactly
    ``np.add.reduceat(a, edges, axis=-1, dtype=np.float64)``, in a few whole-array adds instead of a
    strided reduction per block (4x faster on a density tile)."""
    n = a.shape[-1]
    edges = np.r_[0, np.arange(-(-(o + 1) // b) * b, o + n, b) - o]  # the first index, then each block edge
    index = edges[:, None] + np.arange(b)
    inside = index < np.r_[edges[1:], n][:, None]
    acc = a[..., edges].astype(np.float64)
    for j in range(1, b):
        if inside[:, j].all():
            acc += a[..., index[:, j]]
        else:
            some = np.flatnonzero(inside[:, j])
            acc[..., some] += a[..., index[some, j]]
    return acc


def block_sums(a: np.ndarray, y0: int, x0: int, b: int) -> np.ndarray:
    """float64 sums of a 2-D crop over the ``b`` x ``b`` blocks of the image grid, the crop's top-left pixel
    being ``(y0, x0)`` (blocks cut by the crop's edges summed as far as it goes): what a map of ``b``-pixel
    blocks holds of it (``DensityMap.add``, ``BlobRule.tile_count``)."""
    return np.ascontiguousarray(_sums_along(_sums_along(a, x0, b).T, y0, b).T)
