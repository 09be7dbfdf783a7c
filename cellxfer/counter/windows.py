"""Whole-image counting with non-overlapping windows (the paper's evaluation), shared by every engine.

Edge remainder: the image is normalised first (:class:`cellxfer.counter.model.Normalization`, on the
whole image), then cut into a grid of non-overlapping ``window`` x ``window`` tiles starting at (0, 0).
The last row/column of tiles is cut short by the image border; each short tile is zero-padded on its
bottom/right to the full window *after* normalisation (0 = the image's low percentile, i.e. background).
So every image pixel lies in exactly one window, no area is dropped and none is counted twice; the
padding holds no cells. A 600 x 800 image with window 256 gives 3 x 4 = 12 windows.

Contract of a *runner* (torch module or any engine): float32 array/tensor (N, in_chans, window, window)
-> (N, 1) counts per window (or (N, ...) summed over the trailing axes, e.g. a density map).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Window = tuple[int, int, int, int]  # (y0, x0, h, w): top-left corner and size of the valid image area


def tile_windows(shape: Sequence[int], window: int) -> list[Window]:
    """Grid of non-overlapping windows covering an image of ``shape`` (H, W) exactly once, row-major.

    Each entry is ``(y0, x0, h, w)`` with ``h = min(window, H - y0)``, ``w = min(window, W - x0)``:
    the part of the image the window holds (short at the bottom/right border).
    """
    h, w = int(shape[0]), int(shape[1])
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if h <= 0 or w <= 0:
        raise ValueError(f"image shape must be positive, got {tuple(shape)}")
    return [(y, x, min(window, h - y), min(window, w - x)) for y in range(0, h, window) for x in range(0, w, window)]


def window_batch(normalized: np.ndarray, window: int, in_chans: int = 1,
                 windows: list[Window] | None = None) -> np.ndarray:
    """Cut a normalised float32 image (H, W) into a float32 batch (N, in_chans, window, window).

    Short border windows are zero-padded bottom/right; a grayscale plane is repeated ``in_chans`` times.
    """
    img = np.asarray(normalized, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"window_batch expects a 2-D image, got shape {img.shape}")
    windows = tile_windows(img.shape, window) if windows is None else windows
    batch = np.zeros((len(windows), in_chans, window, window), dtype=np.float32)
    for i, (y, x, h, w) in enumerate(windows):
        batch[i, :, :h, :w] = img[y:y + h, x:x + w]
    return batch
