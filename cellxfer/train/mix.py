"""CutMix for counting (DACS+CutMix): paste a box of one image into another, images and centre maps
together, so the mixed target count is the exact number of centres in the mixed map."""

from __future__ import annotations

import math

import numpy as np

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open


def cutmix_box(shape: tuple[int, int], lam: float, cy: int, cx: int) -> Box:
    """CutMix box (Yun et al. 2019): side ratio ``sqrt(1 - lam)`` of the image, centred at (cy, cx),
    clipped to the image. ``lam`` ~ Beta(alpha, alpha) is the share of the image that stays unmixed
    (before clipping)."""
    h, w = shape
    r = math.sqrt(max(0.0, 1.0 - lam))
    bh, bw = int(h * r), int(w * r)
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2 + bh % 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2 + bw % 2, w)
    return y0, x0, max(y1, y0), max(x1, x0)


def paste(dst_img: np.ndarray, dst_map: np.ndarray, src_img: np.ndarray, src_map: np.ndarray,
          box: Box) -> tuple[np.ndarray, np.ndarray, int]:
    """Copies of ``dst`` with ``box`` taken from ``src`` (same shapes); returns (image, map, count)."""
    y0, x0, y1, x1 = box
    img, cmap = dst_img.copy(), dst_map.copy()
    img[y0:y1, x0:x1] = src_img[y0:y1, x0:x1]
    cmap[y0:y1, x0:x1] = src_map[y0:y1, x0:x1]
    return img, cmap, cmap.sum().item()


def random_cutmix(a_img, a_map, b_img, b_map, rng: np.random.Generator, alpha: float = 1.0, prob: float = 0.5):
    """With probability ``prob`` mix the pair (a box of ``b`` into ``a``, or of ``a`` into ``b``, each half
    the time); else return ``a`` unchanged. Returns (image, map, count, box or None). The number of random
    draws is fixed, so the stream does not depend on the outcome."""
    u, direction = rng.random(), rng.random()
    lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 0.5
    h, w = a_img.shape
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    if u >= prob:
        return a_img, a_map, a_map.sum().item(), None
    box = cutmix_box((h, w), lam, cy, cx)
    if direction < 0.5:
        img, cmap, n = paste(a_img, a_map, b_img, b_map, box)
    else:
        img, cmap, n = paste(b_img, b_map, a_img, a_map, box)
    return img, cmap, n, box
