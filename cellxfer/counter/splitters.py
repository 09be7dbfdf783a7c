"""Splitters: how an image on a counter's grid is cut into model inputs (boxes), and how a block of
normalised rows becomes those inputs. A counter's head picks its splitter (:mod:`cellxfer.counter.head`);
:mod:`cellxfer.count.parts` groups the boxes into parts and merges the outputs.

- :class:`WindowGrid` (count heads): non-overlapping ``window`` tiles from (0, 0), short border windows
  zero-padded after normalisation (:mod:`cellxfer.counter.windows`). Each pixel in exactly one window.
- :class:`OwnedTiles` (density heads): overlapping tiles, each owning the part of the image nearest its
  centre (:mod:`cellxfer.density.stitch`); an image smaller than a tile is mirrored to one tile.
- :class:`RampTiles` (translators): overlapping tiles whose outputs are blended by separable ramps
  (:class:`cellxfer.count.parts.RampBlend`), so neighbouring tiles fade into each other with no seam.

Every splitter has ``boxes(shape)`` and ``cut(block, y0, boxes, x0=0)`` (``block``: normalised image rows
from ``y0`` and columns from ``x0``, covering the boxes' inputs); the counters' two, which
:class:`cellxfer.count.parts.ImagePlan` groups into parts, also ``rows_of(box)``, ``cols_of(box)``,
``for_shape(shape)`` and ``weight`` (base-size model inputs per box). The mergers of
:mod:`cellxfer.count.parts` follow the splitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowGrid:
    """Non-overlapping windows; boxes ``(y0, x0, h, w)``."""

    window: int
    in_chans: int = 1
    weight = 1  # a window is one model input (see :attr:`OwnedTiles.weight`)

    def for_shape(self, shape) -> "WindowGrid":
        return self

    def boxes(self, shape) -> list:
        from cellxfer.counter.windows import tile_windows

        return tile_windows(shape, self.window)

    def rows_of(self, box) -> tuple[int, int]:
        """The image rows a box's input reads."""
        return box[0], box[0] + box[2]

    def cols_of(self, box) -> tuple[int, int]:
        """The image columns a box's input reads."""
        return box[1], box[1] + box[3]

    def cut(self, block: np.ndarray, y0: int, boxes: list, x0: int = 0) -> np.ndarray:
        """float32 (N, C, window, window) of normalised ``block`` (image rows from ``y0``, columns from
        ``x0``)."""
        from cellxfer.counter.windows import window_batch

        return window_batch(block, self.window, self.in_chans, [(y - y0, x - x0, h, w) for y, x, h, w in boxes])


@dataclass(frozen=True)
class OwnedTiles:
    """Overlapping tiles of ``tile`` rows and ``width`` columns (0: square) with owned boxes; boxes
    ``(y0, x0, oy0, oy1, ox0, ox1)``.

    ``base`` is the model's own tile side (:func:`cellxfer.density.stitch.tile_of`; 0: ``tile``). A fully
    convolutional model takes other tile sizes as well, and every tile repeats ``2 * margin`` pixels of its
    neighbours, so :meth:`for_shape` picks, per image and per axis, the side that covers the axis with the
    fewest model-input pixels: one tile as long as the axis (from ``base``, to which a shorter axis is
    mirrored, to ``MAX_FACTOR * base``), or tiles from ``base`` to ``MAX_FACTOR * base`` in steps of ``STEP``
    pixels no longer than the axis. With the default counter's 256-pixel tiles and 16-pixel margin, an IDCIA
    field counted at 481 x 642 pixels is one tile of its own size (square tiles of 352 would repeat 60% of
    it); a 32,000-pixel slide takes tiles of 896 (1.07 input pixels per image pixel). Invariant: an image of
    ``base`` to ``MAX_FACTOR * base`` a side is computed whole (its map is the model's output on the whole
    image, whatever the model's reach; a shorter side is mirrored); tiles along a longer axis equal the whole image's output wherever
    the model's reach is within the margin. Batches and parts are sized in base tiles (:attr:`weight`).
    """

    tile: int
    margin: int
    in_chans: int = 1
    base: int = 0
    width: int = 0

    MAX_FACTOR = 4  # the largest tile side: 4 x the base
    STEP = 32  # tiles of several along an axis are base + a multiple of this (a UNet's pooling grid at depth 5)

    @property
    def cols(self) -> int:
        """A tile's columns (``width``, or ``tile`` for a square one)."""
        return self.width or self.tile

    @property
    def weight(self) -> int:
        """How many base tiles one box's input is, rounded up (batch sizes and parts count these)."""
        base = self.base or self.tile
        return -(-self.tile * self.cols // (base * base))

    def for_shape(self, shape) -> "OwnedTiles":
        """This splitter with the tile sides that cover an image of ``shape`` with the fewest input pixels,
        each axis on its own (ties: the smaller side)."""
        from dataclasses import replace

        base = self.base or self.tile
        h, w = shape[:2]
        return replace(self, tile=self._side(h, base), width=self._side(w, base), base=base)

    def _side(self, n: int, base: int) -> int:
        """The tile side along an axis of ``n`` pixels that covers it with the fewest input pixels."""
        from cellxfer.density.stitch import tile_starts

        largest = self.MAX_FACTOR * base
        if n <= largest:  # one tile covers it with n pixels (a shorter axis than the base tile: mirrored to it)
            return max(n, base)
        return min(range(base, largest + 1, self.STEP), key=lambda t: (len(tile_starts(n, t, self.margin)) * t, t))

    def boxes(self, shape) -> list:
        from cellxfer.density.stitch import tiles

        return tiles(tuple(shape), self.tile, self.margin, self.cols)

    def rows_of(self, box) -> tuple[int, int]:
        return box[0], box[0] + self.tile

    def cols_of(self, box) -> tuple[int, int]:
        return box[1], box[1] + self.cols

    def cut(self, block: np.ndarray, y0: int, boxes: list, x0: int = 0) -> np.ndarray:
        from cellxfer.density.stitch import cut_tiles

        return cut_tiles(block, boxes, self.tile, self.in_chans, y0, x0, self.cols)


@dataclass(frozen=True)
class RampTiles:
    """Tiles of ``tile`` x ``tile`` every ``tile - overlap`` pixels (the last row/column flush with the
    image edge; the caller checks that a UNet takes ``tile``: :meth:`cellxfer.translate.infer.Translator.translate`);
    boxes ``(y0, x0)``. An
    image smaller than a tile is mirrored (numpy ``reflect``) to one tile and cropped back by the merger.
    :meth:`ramp` weights each output by a separable ramp that rises from ``eps`` at a tile border to 1 over
    ``overlap`` pixels (a border on the image edge gets full weight)."""

    tile: int
    overlap: int
    in_chans: int = 1

    def __post_init__(self):
        object.__setattr__(self, "overlap", min(self.overlap, self.tile // 2))

    def padded(self, shape) -> tuple[int, int]:
        return max(shape[0], self.tile), max(shape[1], self.tile)

    def boxes(self, shape) -> list:
        from cellxfer.density.stitch import tile_starts

        h, w = self.padded(shape)
        step = self.tile - self.overlap
        return [(y, x) for y in tile_starts(h, self.tile, step=step) for x in tile_starts(w, self.tile, step=step)]

    def cut(self, block: np.ndarray, y0: int, boxes: list, x0: int = 0) -> np.ndarray:
        from cellxfer.density.stitch import cut_tiles

        return cut_tiles(block, boxes, self.tile, self.in_chans, y0, x0)

    def ramp(self, box, shape, eps: float = 1e-3) -> np.ndarray:
        """float32 (tile, tile) blending weight of the box at ``(y, x)`` in an image of ``shape``."""
        h, w = self.padded(shape)
        y, x = box
        return self._ramp(y > 0, y + self.tile < h, eps)[:, None] * self._ramp(x > 0, x + self.tile < w, eps)[None, :]

    def _ramp(self, lead: bool, trail: bool, eps: float) -> np.ndarray:
        w = np.ones(self.tile, np.float32)
        if self.overlap > 0:
            r = np.maximum((np.arange(self.overlap, dtype=np.float32) + 0.5) / self.overlap, eps)
            if lead:
                w[:self.overlap] = np.minimum(w[:self.overlap], r)
            if trail:
                w[-self.overlap:] = np.minimum(w[-self.overlap:], r[::-1])
        return w
