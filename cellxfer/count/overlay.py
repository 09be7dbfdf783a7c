"""Overlay PNGs for a person to check a count: the image, its window (or tile) grid with each region's
count, and the cell locations of density models as small circles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def display_uint8(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """2-D image of any dtype -> uint8 stretched between its ``low``/``high`` percentiles."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, (low, high))
    return (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def render_overlay(image: np.ndarray, counted, step: int = 1):
    """An RGB image: the grayscale ``image``; yellow rectangles ``counted.regions`` (y0, x0, h, w) with
    ``counted.region_counts`` at their top-left; magenta circles at ``counted.points`` (x, y) if any; the
    total at the bottom-left. ``counted``: a :class:`cellxfer.count.parts.Counted`. ``image`` may be the
    original's sample every ``step`` pixels (a slide): regions and points are scaled down to it, and
    labels are sized to the regions (none when that is under 8 pixels) and circles to the nuclei."""
    from PIL import Image, ImageDraw

    gray = display_uint8(image)
    im = Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")
    draw = ImageDraw.Draw(im)
    size = max(12, min(im.size) // 40)
    font = _font(size)
    # a slide's sample (step > 1): labels sized to the regions, circles to the nuclei, not to the picture
    widths = [w / step for _, _, _, w in counted.regions] or [im.size[0]]
    label = font if step == 1 else _font(int(min(size, np.median(widths) / 5)))
    if counted.points is not None:
        r = max(2, min(im.size) // 200) if step == 1 else max(1.5, 4.0 / step)
        for x, y in np.asarray(counted.points, dtype=np.float64).reshape(-1, 2) / step:
            draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 0, 255), width=1)
    for (y, x, h, w), c in zip(counted.regions, counted.region_counts):
        if step != 1:
            y, x, h, w = y / step, x / step, max(h / step, 1), max(w / step, 1)
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(255, 220, 0), width=1)
        if label is not None:
            draw.text((x + 3, y + 2), f"{c:.1f}", fill=(255, 220, 0), font=label, stroke_width=1 if step != 1 else 2,
                      stroke_fill=(0, 0, 0))
    draw.text((4, im.size[1] - size - 6), f"total {counted.count:.1f}", fill=(0, 255, 255), font=font,
              stroke_width=2, stroke_fill=(0, 0, 0))
    return im


def _font(size: int):
    """Pillow's default font at ``size`` pixels (None below 8: too small to read)."""
    from PIL import ImageFont

    if size < 8:
        return None
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def write_overlay(path: str | os.PathLike, image, counted, step: int = 1) -> Path:
    from cellxfer.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        render_overlay(image, counted, step).save(tmp, format="PNG")
    return path


def output_names(files: list[Path], folder: Path, suffix: str) -> dict[Path, Path]:
    """``{image file: folder/<name><suffix>}`` (overlays ``.png``, points ``.csv``): the path relative to the files' common folder with ``/`` -> ``__``,
    so images of the same name in different subfolders do not collide."""
    if not files:
        return {}
    parents = [str(f.parent) for f in files]
    root = Path(os.path.commonpath(parents))
    names = {f: "__".join(f.relative_to(root).with_suffix("").parts) for f in files}
    from collections import Counter

    clash = {n for n, k in Counter(names.values()).items() if k > 1}  # a.tif and a.png side by side: keep the suffix
    return {f: Path(folder) / ((n + f.suffix.replace(".", "_") if n in clash else n) + suffix) for f, n in names.items()}
