"""Splitters: how an image on a counter's grid is cut into model inputs (boxes), and how a block of
normalised rows becomes those inputs. A counter's head picks its splitter (:mod:`cellxfer.counter.head`);
:mod:`cellxfer.count.parts` groups the boxes into parts and merges the outputs.

- :class:`WindowGrid` (count heads): non-overlapping ``window`` tiles from (0, 0), short border windows
  zero-padded after normalisation (:mod:`cellxfer.counter.windows`). Each pixel in exactly one window.
- :class:`OwnedTiles` (density heads): overlapping tiles, each owning the part of the image nearest its
  centre (:mod:`cellxfer.density.stitch`); an image smaller than a tile is mirrored to one tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowGrid:
    """Non-overlapping windows; boxes ``(y0, x0, h, w)``."""

    window: int
    in_chans: int = 1

    def boxes(self, shape) -> list:
        from cellxfer.counter.windows import tile_windows

        return tile_windows(shape, self.window)

    def rows_of(self, box) -> tuple[int, int]:
        """The image rows a box's input reads."""
        return box[0], box[0] + box[2]

    def cut(self, block: np.ndarray, y0: int, boxes: list) -> np.ndarray:
        """float32 (N, C, window, window) of normalised ``block`` (image rows from ``y0``)."""
        from cellxfer.counter.windows import window_batch

        return window_batch(block, self.window, self.in_chans, [(y - y0, x, h, w) for y, x, h, w in boxes])


@dataclass(frozen=True)
class OwnedTiles:
    """Overlapping tiles with owned boxes; boxes ``(y0, x0, oy0, oy1, ox0, ox1)``."""

    tile: int
    margin: int
    in_chans: int = 1

    def boxes(self, shape) -> list:
        from cellxfer.density.stitch import tiles

        return tiles(tuple(shape), self.tile, self.margin)

    def rows_of(self, box) -> tuple[int, int]:
        return box[0], box[0] + self.tile

    def cut(self, block: np.ndarray, y0: int, boxes: list) -> np.ndarray:
        from cellxfer.density.stitch import cut_tiles

        return cut_tiles(block, boxes, self.tile, self.in_chans, y0)
