"""Syn-HC: the InST-Microscopy paper's hard-coded synthetic nuclei (Algorithm 1), fast.

Per image (numbers are :class:`SynHCConfig` defaults; the paper's lost values come from the
authors' code and data, see docs/guide/synth.md "Syn-HC"):

1. background level ``U(10, 30)`` plus Gaussian noise (sd 5);
2. target count ``round(N(101.3, 76.4))`` clamped to ``[0, max_cells]``;
3. 3-7 cluster centres uniform in the image; each cell picks a cluster and lands at
   ``centre + N(0, spread * size)`` (redrawn until inside the image);
4. each cell a filled ellipse, semi-axes integers in ``[0.4, 0.6) x cell_size``, angle ``U(0, 360)``,
   flat intensity ``U(100, 255)``; a cell is rejected (and a new one drawn) when more than
   ``overlap`` (10%) of its area covers cells already placed; after ``50 x count + 100`` candidates the
   image keeps what it has, so the count is always exact;
5. global contrast ``x U(0.8, 1.2)`` then brightness ``+ U(-20, 20)``, clipped to 0..255, uint8.

With ``layout_from`` the centres are instead copied from a random ``size x size`` window of a real
annotated dataset (the authors' variant): every annotated centre is drawn, with no overlap rejection.

Speed: ellipse stencils for a whole batch of candidates are computed in one vectorised step; only the
accept/reject test against the occupancy map is sequential, on windows of at most (2R+1)^2 pixels.
"""

from __future__ import annotations

import math
import numpy as np

from cellxfer.errors import InputError
from cellxfer.synth.config import SynHCConfig


# -- stencils -----------------------------------------------------------------------------------------
def ellipse_stencils(cx, cy, a, b, theta, radius: int) -> np.ndarray:
    """Boolean (M, 2R+1, 2R+1) masks of filled ellipses in windows whose top-left pixel is
    ``(floor(cy) - R, floor(cx) - R)``. Pixel (r, c) is inside when its centre (c + 0.5, r + 0.5)
    satisfies the ellipse equation."""
    off = np.arange(-radius, radius + 1, dtype=np.float32) + np.float32(0.5)
    dx = ((np.floor(cx) - cx).astype(np.float32)[:, None] + off[None, :])[:, None, :]  # (M, 1, S)
    dy = ((np.floor(cy) - cy).astype(np.float32)[:, None] + off[None, :])[:, :, None]  # (M, S, 1)
    # (u/a)^2 + (v/b)^2 with u = dx cos + dy sin, v = dy cos - dx sin, as a quadratic form in dx, dy
    c, s = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    ia, ib = (1.0 / np.asarray(a, np.float32)) ** 2, (1.0 / np.asarray(b, np.float32)) ** 2
    qxx = (c * c * ia + s * s * ib)[:, None, None]
    qyy = (s * s * ia + c * c * ib)[:, None, None]
    qxy = (2.0 * c * s * (ia - ib))[:, None, None]
    return (qxx * dx * dx + qyy * dy * dy) + qxy * dx * dy <= 1.0


def _draw_count(cfg: SynHCConfig, rng: np.random.Generator) -> int:
    return int(min(max(round(rng.normal(cfg.count_mean, cfg.count_std)), 0), cfg.max_cells))


def _cluster_positions(cfg: SynHCConfig, rng, centres: np.ndarray, m: int) -> np.ndarray:
    """``m`` positions around random cluster centres, all inside [0, size), on a 1/1000 pixel grid."""
    size, sd = cfg.size, cfg.spread * cfg.size
    out = np.empty((0, 2))
    while len(out) < m:
        k = rng.integers(0, len(centres), m)
        p = centres[k] + rng.normal(0.0, sd, (m, 2))
        p = np.floor(p * 1000.0) / 1000.0
        p = p[(p >= 0).all(axis=1) & (p < size).all(axis=1)]
        out = np.concatenate([out, p])
    return out[:m]


def render(cfg: SynHCConfig, layouts, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One Syn-HC image (uint8, size x size) and its exact centres (N, 2) of (x, y)."""
    image, cells = render_cells(cfg, layouts, rng)
    return image, cells[:, :2].copy()


def render_cells(cfg: SynHCConfig, layouts, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`render`, but returns every placed cell, in painting order, as float64 (N, 6):
    ``x, y, a, b, theta, level`` (centre, semi-axes in pixels, angle in radians, intensity before the
    global contrast/brightness)."""
    size = cfg.size
    lo, hi = cfg.semi_axis_range()
    radius = hi  # largest semi-axis is hi - 1, plus one pixel for the sub-pixel centre
    pad = radius + 1
    background = rng.uniform(*cfg.background)
    canvas = np.empty((size + 2 * pad, size + 2 * pad), dtype=np.float32)
    canvas[pad:-pad, pad:-pad] = background + cfg.noise * rng.standard_normal((size, size), dtype=np.float32)
    occupied = np.zeros(canvas.shape, dtype=bool)

    if layouts:
        pos = _layout_positions(layouts, size, rng)
        target, check_overlap = len(pos), False
    else:
        target, check_overlap = _draw_count(cfg, rng), True
        centres = rng.uniform(0, size, (int(rng.integers(cfg.clusters[0], cfg.clusters[1] + 1)), 2))
    max_candidates = 50 * target + 100
    width = 2 * radius + 1
    windows = np.lib.stride_tricks.sliding_window_view(occupied, (width, width))
    placed: list[tuple[float, ...]] = []
    tried = 0
    while len(placed) < target and tried < max_candidates:
        need = target - len(placed)
        if check_overlap:  # size the batch by the acceptance rate so far
            rate = max(len(placed) / tried, 0.05) if tried else 1.0
            m = int(min(max(math.ceil(1.3 * need / rate), 32), max_candidates - tried))
            xy = _cluster_positions(cfg, rng, centres, m)
        else:
            xy = pos
        m = len(xy)
        a = rng.integers(lo, hi, m).astype(np.float32)
        b = rng.integers(lo, hi, m).astype(np.float32)
        theta = rng.uniform(0.0, 2.0 * np.pi, m)
        level = rng.uniform(*cfg.intensity, m).astype(np.float32)
        stencils = ellipse_stencils(xy[:, 0], xy[:, 1], a, b, theta, radius)
        limit = cfg.overlap * stencils.sum(axis=(1, 2))
        rows = np.floor(xy[:, 1]).astype(np.intp) + pad - radius
        cols = np.floor(xy[:, 0]).astype(np.intp) + pad - radius
        tried_before = tried
        tried += m
        if check_overlap:
            # Overlap only grows as cells are added: a candidate already over the limit against the
            # cells placed before this batch is rejected here, in one vectorised step.
            over = np.count_nonzero(windows[rows, cols] & stencils, axis=(1, 2))
            keep = np.flatnonzero(over <= limit)
        else:
            keep = np.arange(m)
        for j in keep:
            r, c, st = rows[j], cols[j], stencils[j]
            occ = occupied[r : r + width, c : c + width]
            if check_overlap and np.count_nonzero(occ & st) > limit[j]:
                continue
            occ |= st
            canvas[r : r + width, c : c + width][st] = level[j]
            placed.append((xy[j, 0], xy[j, 1], a[j], b[j], theta[j], level[j]))
            if len(placed) == target:
                tried = tried_before + j + 1
                break
    image = canvas[pad:-pad, pad:-pad] * np.float32(rng.uniform(*cfg.contrast)) + np.float32(rng.uniform(*cfg.brightness))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, np.asarray(placed, dtype=np.float64).reshape(-1, 6)


def _layout_positions(layouts, size: int, rng) -> np.ndarray:
    """Centres of a random ``size x size`` window of a random real layout, shifted to the window."""
    points, (h, w) = layouts[int(rng.integers(0, len(layouts)))]
    y0 = int(rng.integers(0, max(h - size, 0) + 1))
    x0 = int(rng.integers(0, max(w - size, 0) + 1))
    p = points - np.array([x0, y0], dtype=np.float64)
    return p[(p >= 0).all(axis=1) & (p < size).all(axis=1)]


def estimate(cfg: SynHCConfig):
    """What one image of :func:`render_cells` costs at most (:class:`cellxfer.budget.Estimate`): memory
    for the padded canvas and the first batch of ellipse stencils (float32 work arrays and masks, about 13
    bytes per stencil pixel), and work for every candidate the count allows (``50 x count + 100``) tested
    on its stencil. With ``layout_from`` the count comes from the layouts: only the memory is estimated."""
    from cellxfer.budget import Estimate

    lo, hi = cfg.semi_axis_range()
    side = 2 * hi + 1
    target = 0 if cfg.layout_from else min(cfg.count_mean + 3 * cfg.count_std, cfg.max_cells)
    candidates = 50 * target + 100
    batch = max(32, min(math.ceil(1.3 * target), candidates))
    canvas = (cfg.size + 2 * (hi + 1)) ** 2 * 5
    fits = int(0.6 * cfg.size ** 2 / (math.pi * (cfg.cell_size / 2) ** 2))  # random packing: about 60% covered
    room = f"about {fits} fit" if fits >= 1 else "hardly one fits"
    return Estimate(
        what=f"synth: cells of {cfg.cell_size:g} px (stencils {side} x {side} px, {batch} at a time), up to "
             f"{target:.0f} per {cfg.size} px image ({room})",
        fix="lower --cell-size or --count-mean/--max-cells, or raise --size",
        # work: each candidate's stencil, plus the Python bookkeeping of a candidate (~2000 operations)
        bytes=canvas + batch * side * side * 13, work=0 if cfg.layout_from else candidates * (side * side + 2000))


def prepare(cfg: SynHCConfig):
    """Load real layouts for ``layout_from`` (list of ``(points, (H, W))``), else None."""
    if not cfg.layout_from:
        return None
    from cellxfer.dataset import CellDataset

    ds = CellDataset(cfg.layout_from)
    if not ds.labelled:
        raise InputError(f"{cfg.layout_from}: --layout-from needs an annotated dataset (points/ or ground_truth/)")
    layouts = []
    for id_ in ds.ids:
        shape = _image_shape(ds.image_path(id_))
        pts = ds.read_points(id_, shape)
        if len(pts):
            layouts.append((pts, shape))
    if not layouts:
        raise InputError(f"{cfg.layout_from}: every points table is empty; --layout-from needs annotated cells")
    return layouts


def _image_shape(path) -> tuple[int, int]:
    from cellxfer.imageio import read_image

    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            if len(shape) == 2:
                return tuple(shape)
        except Exception:  # noqa: BLE001 - fall back to the full reader's error message
            pass
    return read_image(path).shape
