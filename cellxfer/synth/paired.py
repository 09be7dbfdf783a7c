"""A paired testbed for the translator: one cell layout rendered as a fluorescence target and as
transmitted-light inputs, with exact ground truth in every domain (the LM-ADDA paper's shifts).

Per image (pixel units, ``PairedConfig`` defaults; all intensities are fractions of full scale and
written as uint16):

* layout: ``cells`` cells (uniform count in the range), each an ellipse with mean diameter
  ``cell_size`` x U(0.8, 1.2), aspect U(1, 1.6), random angle, centres at least 0.8 x the summed radii
  apart; the nucleus is a concentric-ish ellipse 0.45 x the cell's axes, offset by up to 15%.
* target ``dapi``: nuclei with per-cell level U(0.45, 0.95) and a smooth chromatin texture, blurred
  (sd 1 px), background 0.04, noise sd 0.01. Target ``cd29``: a perinuclear halo, exp(-(r - 1) / 0.5)
  of the nucleus-normalised radius ``r`` inside the cell and outside the nucleus, per-cell level
  U(0.3, 0.9), blurred (sd 1.5 px).
* input ``pc`` (phase contrast): background 0.35, dark cell body (-0.22 x dome thickness), darker
  nucleus (-0.06), a bright halo just outside every cell edge (+0.9 x (G_4 * m - G_1 * m), ``m`` the
  cell mask, ``G_s`` a Gaussian of sd s px), granular cytoplasm, noise sd 0.01, contrast x U(0.9, 1.1).
* input ``bf`` (bright field): an uneven illumination ramp around 0.55, low contrast (-5% body,
  -4% nucleus), dark refraction edges (-8% x the normalised mask-gradient magnitude), a finer granular
  texture, noise sd 0.015.
* shifts: :func:`overexpose` ``(factor)`` multiplies the *input* and clips at full scale (the
  fluorescence is unchanged); :func:`scale` ``(factor)`` zooms *both* images (centre crop of
  ``size / factor`` resized back to ``size``), as a change of magnification does.

The layout and the target come from the stream ``(seed, index, 0)``, the input's noise from
``(seed, index, 1)``: the same seed gives the same cells and targets in every modality and shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellxfer.errors import InputError
from cellxfer.synth.paired_config import PairedConfig  # noqa: F401 - part of this module's API

FULL = 65535.0


def _rngs(seed: int, index: int):
    return (np.random.default_rng(np.random.SeedSequence([seed, index, 0])),
            np.random.default_rng(np.random.SeedSequence([seed, index, 1])))


def layout(cfg: PairedConfig, rng: np.random.Generator) -> np.ndarray:
    """Cells as rows ``(cx, cy, a, b, theta, nx, ny, level_a, level_b)`` (float64)."""
    n = int(rng.integers(cfg.cells[0], cfg.cells[1] + 1))
    cells = []
    tries = 0
    while len(cells) < n and tries < 50 * n + 50:
        tries += 1
        r = cfg.cell_size / 2 * rng.uniform(0.8, 1.2)
        asp = rng.uniform(1.0, 1.6)
        a, b = r * math.sqrt(asp), r / math.sqrt(asp)
        cx, cy = rng.uniform(0, cfg.size, 2)
        if any((cx - c[0]) ** 2 + (cy - c[1]) ** 2 < (0.8 * (a + c[2])) ** 2 for c in cells):
            continue
        theta = rng.uniform(0, math.pi)
        off = rng.uniform(-0.15, 0.15, 2) * np.array([a, b])
        cells.append((cx, cy, a, b, theta, off[0], off[1], rng.uniform(0.45, 0.95), rng.uniform(0.3, 0.9)))
    return np.asarray(cells, dtype=np.float64).reshape(-1, 9)


def _fields(cfg: PairedConfig, cells: np.ndarray):
    """Per-pixel maps: cell dome thickness, cell mask, nucleus mask, nucleus level, halo, cd29 level."""
    s = cfg.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + np.float32(0.5)
    dome = np.zeros((s, s), np.float32)
    nuc = np.zeros((s, s), np.float32)
    dapi = np.zeros((s, s), np.float32)
    halo = np.zeros((s, s), np.float32)
    for cx, cy, a, b, th, ox, oy, la, lb in cells:
        R = int(math.ceil(max(a, b))) + 2
        r0, r1 = max(0, int(cy) - R), min(s, int(cy) + R + 1)
        c0, c1 = max(0, int(cx) - R), min(s, int(cx) + R + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        X, Y = xx[r0:r1, c0:c1] - cx, yy[r0:r1, c0:c1] - cy
        c, sn = math.cos(th), math.sin(th)
        u, v = X * c + Y * sn, Y * c - X * sn
        rc = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        un, vn = u - ox, v - oy
        rn = np.sqrt((un / (0.45 * a)) ** 2 + (vn / (0.45 * b)) ** 2)
        inside = rc < 1
        d = np.where(inside, np.sqrt(np.clip(1 - rc ** 2, 0, 1)), 0).astype(np.float32)
        np.maximum(dome[r0:r1, c0:c1], d, out=dome[r0:r1, c0:c1])
        n = (rn < 1) & inside
        nuc[r0:r1, c0:c1][n] = 1.0
        dapi[r0:r1, c0:c1][n] = la
        h = np.where(inside & ~n, np.exp(-(rn - 1) / 0.5) * lb, 0).astype(np.float32)
        np.maximum(halo[r0:r1, c0:c1], h, out=halo[r0:r1, c0:c1])
    return dome, (dome > 0).astype(np.float32), nuc, dapi, halo


def _smooth_noise(rng, shape, sigma):
    from scipy.ndimage import gaussian_filter

    z = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return z / max(float(z.std()), 1e-6)


def render_scene(cfg: PairedConfig, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(source, target, points)`` before shifts: float32 images in [0, 1] and nucleus centres (N, 2)."""
    from scipy.ndimage import gaussian_filter, sobel

    rng_scene, rng_input = _rngs(seed, index)
    cells = layout(cfg, rng_scene)
    dome, mask, nuc, dapi, halo = _fields(cfg, cells)
    shape = (cfg.size, cfg.size)
    tex = _smooth_noise(rng_scene, shape, 1.5)
    if cfg.marker == "dapi":
        t = gaussian_filter(dapi * (1 + 0.15 * tex), 1.0) + 0.04
    else:
        t = gaussian_filter(halo * (1 + 0.1 * tex), 1.5) + 0.04
    t = t + 0.01 * rng_scene.standard_normal(shape).astype(np.float32)

    gran = _smooth_noise(rng_input, shape, 0.8 if cfg.modality == "pc" else 0.5)
    if cfg.modality == "pc":
        m1, m4 = gaussian_filter(mask, 1.0), gaussian_filter(mask, 4.0)
        src = 0.35 - 0.22 * gaussian_filter(dome, 1.0) - 0.06 * gaussian_filter(nuc, 1.0) + 0.9 * (m4 - m1)
        src = src + 0.02 * gran * m1
        src = 0.35 + (src - 0.35) * rng_input.uniform(0.9, 1.1) + 0.01 * rng_input.standard_normal(shape)
    else:
        ramp_dir = rng_input.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0 : cfg.size, 0 : cfg.size] / cfg.size - 0.5
        illum = 0.55 * (1 + 0.12 * (np.cos(ramp_dir) * xx + np.sin(ramp_dir) * yy))
        m1 = gaussian_filter(mask, 1.0)
        edge = np.hypot(sobel(m1, 0), sobel(m1, 1))
        edge = edge / max(float(edge.max()), 1e-6)
        rel = 1 - 0.05 * gaussian_filter(dome, 2.0) - 0.04 * gaussian_filter(nuc, 1.5) - 0.08 * edge + 0.03 * gran * m1
        src = illum * rel + 0.015 * rng_input.standard_normal(shape)
    points = cells[:, :2] + np.stack([cells[:, 5] * np.cos(cells[:, 4]) - cells[:, 6] * np.sin(cells[:, 4]),
                                      cells[:, 5] * np.sin(cells[:, 4]) + cells[:, 6] * np.cos(cells[:, 4])], 1)
    keep = ((points >= 0) & (points < cfg.size)).all(axis=1)
    return np.clip(src, 0, 1).astype(np.float32), np.clip(t, 0, 1).astype(np.float32), points[keep]


def overexpose(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply by ``factor`` and clip at full scale (uint8 255 / uint16 65535 / float 1.0); dtype kept."""
    img = np.asarray(image)
    top = float(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 1.0
    out = np.clip(img.astype(np.float64) * factor, 0, top)
    return np.rint(out).astype(img.dtype) if img.dtype.kind in "ui" else out.astype(img.dtype)


def scale(image: np.ndarray, factor: float, points: np.ndarray | None = None):
    """Zoom in by ``factor``: the centre ``H/factor x W/factor`` region resized (linear) back to H x W.
    dtype kept. With ``points`` (N, 2) of (x, y), returns ``(image, points inside, mapped)``."""
    from scipy.ndimage import map_coordinates

    img = np.asarray(image)
    h, w = img.shape
    if factor == 1:
        return (img, points) if points is not None else img
    ch, cw = h / factor, w / factor
    y0, x0 = (h - ch) / 2, (w - cw) / 2
    ys = y0 + (np.arange(h) + 0.5) / factor - 0.5
    xs = x0 + (np.arange(w) + 0.5) / factor - 0.5
    out = map_coordinates(img.astype(np.float32), np.meshgrid(ys, xs, indexing="ij"), order=1, mode="nearest")
    out = np.clip(np.rint(out), 0, np.iinfo(img.dtype).max).astype(img.dtype) if img.dtype.kind in "ui" else out.astype(img.dtype)
    if points is None:
        return out
    p = (np.asarray(points, dtype=np.float64) - [x0, y0]) * factor
    return out, p[((p >= 0) & (p < [w, h])).all(axis=1)]


def render(cfg: PairedConfig, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(source uint16, target uint16, nucleus centres (N, 2) x,y)`` with the config's shifts applied."""
    src, tgt, points = render_scene(cfg, seed, index)
    src = np.rint(src * FULL).astype(np.uint16)
    tgt = np.rint(tgt * FULL).astype(np.uint16)
    if cfg.overexpose != 1:
        src = overexpose(src, cfg.overexpose)
    if cfg.scale != 1:
        src = scale(src, cfg.scale)
        tgt, points = scale(tgt, cfg.scale, points)
    return src, tgt, points


def _seal(points_text: str) -> str:
    import hashlib
    import json

    return json.dumps({"cellxfer": "pair", "points_sha256": hashlib.sha256(points_text.encode()).hexdigest()})


def pair_done(paths: list[Path], shape: tuple[int, int]) -> bool:
    """Whether pair ``paths`` (source, target, points) is finished and whole: both images decode with
    ``shape``, the points table is whole (:func:`cellxfer.dataset.points_damage`) and is the one the target
    was sealed with. A damaged pair is removed with a warning, so the run writes it again."""
    from cellxfer.console import warn
    from cellxfer.dataset import points_damage
    from cellxfer.imageio import read_image, tiff_description

    if not all(p.is_file() for p in paths):
        return False
    why = None
    for p in paths[:2]:
        try:
            got = read_image(p).shape
        except InputError as exc:
            why = f"{p}: does not decode ({str(exc).removeprefix(f'{p}: ')})"
            break
        if got != tuple(shape):
            why = f"{p}: is {got[1]} x {got[0]} pixels, not {shape[1]} x {shape[0]}"
            break
    if why is None:
        _, bad = points_damage(paths[2], shape)
        sealed = tiff_description(paths[1])
        if bad is not None:
            why = f"{paths[2]}: {bad}"
        elif "points_sha256" in sealed and _seal(paths[2].read_text()) != sealed:  # (older runs: not sealed)
            why = f"{paths[2]}: is not the table its target was written with (cut short or changed)"
    if why is None:
        return True
    warn(f"{why}; this run writes the pair again")
    for p in paths:
        p.unlink(missing_ok=True)
    return False


@dataclass(frozen=True)
class PairsResult:
    """What :func:`write_pairs` did: the folder, pairs written now and skipped as done, seconds."""

    out: Path
    written: int
    skipped: int
    seconds: float


def write_pairs(cfg: PairedConfig, n: int, out, seed: int = 0, overwrite: bool = False, on_progress=None) -> PairsResult:
    """Write ``n`` pairs into ``out`` (``source/``, ``target/``, ``points/``, ``manifest.json``), ids
    ``000000``...; a run folder (:class:`cellxfer.runs.RunFolder`): a rerun with the same settings skips
    finished pairs."""
    import time

    from cellxfer.atomic import write_text
    from cellxfer.dataset import format_points
    from cellxfer.imageio import write_tiff
    from cellxfer.manifest import config_dict
    from cellxfer.runs import RunFolder

    t0 = time.perf_counter()
    identity = {"config": config_dict(cfg), "seed": seed}
    with RunFolder(out, "synth-pairs", identity, own=("source", "target", "points"), overwrite=overwrite) as run:
        manifest = run.write_manifest(run.manifest(n=n), complete=False)
        written = skipped = 0
        for i in range(n):
            id_ = f"{i:06d}"
            paths = [run.path("source") / f"{id_}.tif", run.path("target") / f"{id_}.tif", run.path("points") / f"{id_}.csv"]
            if pair_done(paths, (cfg.size, cfg.size)):
                skipped += 1
            else:
                src, tgt, pts = render(cfg, seed, i)
                text = format_points(pts)
                write_text(paths[2], text)  # the target last, sealed with the digest of the points table
                write_tiff(paths[0], src)
                write_tiff(paths[1], tgt, description=_seal(text))
                written += 1
            if on_progress:
                on_progress(1)
        seconds = round(time.perf_counter() - t0, 3)
        run.write_manifest(manifest, complete=True, seconds=seconds)
    return PairsResult(run.out, written, skipped, seconds)
