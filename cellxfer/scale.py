"""Nucleus scale: estimate an image's typical nucleus diameter and rescale it to a counter's.

A counter records the typical nucleus diameter of the images it was trained on
(:attr:`cellxfer.counter.model.CounterMeta.diameter`, measured with :func:`estimate_diameter` on its
training images) and the range of them (``diameter_range``). ``count`` and ``evaluate`` take ``--diameter
auto|PIXELS|off``: an image whose nuclei lie outside that range is resized before normalisation to its
nearest edge (a model with no range, or a fixed-scale LoG, to ``model diameter / image diameter``), so its
nuclei are of a size the model knows (:meth:`DiameterPolicy.scale`), and cell locations are mapped back to
the original pixel grid (:meth:`Scaled.to_original`).

Estimator (scale-space blob response, Lindeberg): the image is normalised by its 0.5/99.5 percentiles;
for 4 scales per octave, ``sigma = 2^(k/4)``, ``k = 0..KMAX`` (diameters about 3 to 90 px), the
scale-normalised response ``-sigma^2 * LoG`` is computed on a 2x block-averaged pyramid (each octave on
the level where sigma lies in [1, 2) pixels); every pixel takes its strongest scale. Local maxima of
that response are blobs; those above ``RELATIVE`` times the ``TOP``-th strongest response (so a few
bright nuclei set the bar) and above ``NOISE_K`` robust SDs of their scale's response map (so camera
noise never does; a pure-noise image, Gaussian or Poisson, has no estimate: fewer than ``MIN_BLOBS``) are kept, their scales are refined by a parabola
in log-sigma, blobs centred inside a stronger one are dropped (the rim answers of large nuclei), and the
diameter-weighted median of ``DISK * sigma`` is the diameter (a flat disk of diameter ``d`` answers at
``sigma = d / (2 sqrt 2)``; weighting by diameter keeps chromatin texture and nucleoli, many small
blobs inside each nucleus, from outvoting the nuclei). Heavily textured nuclei are still measured up to
about 20% small (cellxfer's ``nuclei`` synthesizer at 16-32 px: 0.80-0.89 of the nominal diameter,
``scripts/scale_check.py``). The estimator is scale-covariant by
construction (resizing an image by ``f`` multiplies its estimate by ``f``, within the pyramid's
discretisation), and it is the same function at training and at counting time, so its bias on a given
kind of nucleus cancels. Images larger than ``MAX_SIDE`` on a side are normalised by the percentiles of
a strided sample and measured on up to ``MAX_TILES`` tiles of ``TILE`` pixels spread evenly over the
whole image, their blobs pooled (so a sparse slide whose centre is empty still has its nuclei counted in);
tiles are taken in an order whose every prefix is spread too, ``GROUP`` at a time on as many threads,
until ``ENOUGH_BLOBS`` blobs are pooled (a dense slide is measured on two tiles, a sparse one on up to
all of them).

Invariants: ``Scaled.factor == 1`` exactly (no resampling at all) when the ratio lies within
``TOLERANCE`` of 1; factors are clipped to ``[MIN_FACTOR, MAX_FACTOR]``; the count of a density map is
the same number whatever grid it is summed on, so only the image is resized, never the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cellxfer.errors import InputError

KMAX = 22  # sigma up to 2^(22/4) = 45 px: diameters up to about 127 px
DISK = 2.0 * math.sqrt(2.0)
TOP = 5
RELATIVE = 0.3
NOISE_K = 7.0  # a blob's response must exceed this many robust SDs of its scale's response map
MIN_BLOBS = 5  # fewer blobs than this: no estimate (the image is counted as it is)
MAX_SIDE = 2048
TILE, MAX_TILES = 1024, 16
ENOUGH_BLOBS = 1000  # a large image's tiles are measured until their blobs number this many (or all are)
GROUP = 2  # ... GROUP tiles at a time, side by side (the same tiles on any machine)
CLIP = 3.0
TOLERANCE = 0.1  # |factor - 1| below this: the image is used as it is
MIN_FACTOR, MAX_FACTOR = 1.0 / 8.0, 4.0


def _tiles(shape) -> list[tuple[int, int]]:
    """Top-left corners of the tiles the estimate may look at, in the order it looks: the whole image
    when no side exceeds ``MAX_SIDE``, else up to ``MAX_TILES`` tiles of ``TILE`` spread evenly
    (overlapping if need be), ordered so that every prefix is spread over the image too (the tile
    nearest the centre first, then each time the tile farthest from those before it)."""
    h, w = shape
    if max(h, w) <= MAX_SIDE:
        return [(0, 0)]
    ny, nx = -(-h // TILE), -(-w // TILE)
    while ny * nx > MAX_TILES:
        ny, nx = max(1, ny - (ny >= nx)), max(1, nx - (nx > ny))
    ys = np.linspace(0, max(h - TILE, 0), ny).round().astype(int)
    xs = np.linspace(0, max(w - TILE, 0), nx).round().astype(int)
    grid = np.array([(y, x) for y in ys for x in xs], dtype=np.float64)
    centre = np.array([(h - TILE) / 2, (w - TILE) / 2])
    order = [int(np.argmin(((grid - centre) ** 2).sum(axis=1)))]
    dist = ((grid - grid[order[0]]) ** 2).sum(axis=1)
    while len(order) < len(grid):  # farthest point next (ties: the first in raster order)
        order.append(int(np.argmax(dist)))
        dist = np.minimum(dist, ((grid - grid[order[-1]]) ** 2).sum(axis=1))
    return [(int(grid[i, 0]), int(grid[i, 1])) for i in order]


def _block_mean(img: np.ndarray) -> np.ndarray:
    h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3), dtype=np.float32)


def _octaves():
    """Scale indices per pyramid level: level L holds k with 2^(k/4) / 2^L in [1, 2), plus one
    neighbouring scale on each side (so maxima over scale are found on one grid)."""
    levels = []
    for level in range(KMAX // 4 + 1):
        core = [k for k in range(4 * level, min(4 * level + 4, KMAX + 1))]
        if core:
            levels.append((level, core, list(range(max(core[0] - 1, 0), min(core[-1] + 2, KMAX + 1)))))
    return levels


def _level_stacks(image: np.ndarray):
    """Yield ``(level, core, ks, padded)`` per pyramid level: ``padded[j, 1:-1, 1:-1]`` is the scale-normalised
    ``-sigma^2 LoG`` at ``sigma = 2^(ks[j]/4)`` on that level's grid (``2^level`` pixels a side), framed by one
    pixel of ``-inf`` (what :func:`_maxima` compares the border against): the image smoothed incrementally
    (Gaussian of ``sqrt(s_k^2 - s_(k-1)^2)``, mirrored borders), then the 5-point discrete Laplacian."""
    from scipy.ndimage import gaussian_filter

    img = np.asarray(image, dtype=np.float32)
    for level, core, ks in _octaves():
        if level:
            if min(img.shape) < 16:
                return
            img = _block_mean(img)
        sig = [2.0 ** (k / 4.0) / 2 ** level for k in ks]
        padded = np.full((len(sig), img.shape[0] + 2, img.shape[1] + 2), -np.inf, dtype=np.float32)
        g, prev = img, 0.0
        for i, s in enumerate(sig):
            g = gaussian_filter(g, float(np.sqrt(s * s - prev * prev)), mode="mirror", truncate=3.0)
            prev = s
            out = padded[i, 1:-1, 1:-1]
            _laplacian(g, out)
            out *= np.float32(-(s * s))
        yield level, core, ks, padded


def _laplacian(g: np.ndarray, out: np.ndarray) -> None:
    """``out`` = the 5-point Laplacian of 2-D ``g`` (at least 2 x 2) with mirrored borders (numpy's ``reflect``:
    the neighbour beyond row 0 is row 1), summed up + down + left + right - 4 g in that order."""
    out[1:-1] = g[:-2] + g[2:]
    out[0] = g[1] + g[1]
    out[-1] = g[-2] + g[-2]
    out[:, 1:] += g[:, :-1]
    out[:, 0] += g[:, 1]
    out[:, :-1] += g[:, 1:]
    out[:, -1] += g[:, -2]
    out -= 4.0 * g


def _maxima(padded: np.ndarray, j: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) where plane ``j`` of a level (``padded`` as :func:`_level_stacks` yields it) is above ``floor``
    and not below any of its 26 neighbours (3x3x3, missing ones at the borders ignored); checked only at the
    candidates above ``floor``."""
    ys, xs = np.nonzero(padded[j, 1:-1, 1:-1] > floor)
    if not len(ys):
        return ys, xs
    lo = max(j - 1, 0)
    part = padded[lo:j + 2]
    v = padded[j, ys + 1, xs + 1]
    ok = np.ones(len(ys), dtype=bool)
    wp = part.shape[2]
    base = ys * wp + xs  # top-left neighbour in the padded planes
    for jj in range(len(part)):
        flat = part[jj].ravel()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if jj == j - lo and dy == dx == 1:
                    continue
                ok &= flat[base + (dy * wp + dx)] <= v
    return ys[ok], xs[ok]


def _robust_sd(r: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of a response map (every third pixel): its noise level
    where most of the image is background."""
    from cellxfer.counter.model import robust_sd

    return robust_sd(r[::3, ::3])


def blobs(image: np.ndarray, floor: float = 0.03) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(diameters, responses, (y, x) centres)`` of the scale-space maxima of a 2-D image (normalised as
    the counters' percentile normalisation with values capped at ``CLIP`` like ``--norm-clip`` (so a few
    hot pixels or saturated specks in a sparse field, normalised to tens, do not outshine every nucleus),
    tiles of large images pooled: :func:`_tiles`): a pixel and scale whose
    scale-normalised ``-sigma^2 LoG`` is not below its 26 neighbours in space and scale and exceeds
    ``floor`` times the tile's strongest response and ``NOISE_K`` robust SDs of its scale. Diameters are
    ``DISK * sigma`` with sigma refined by a parabola in log-sigma; centres in image pixels."""
    from concurrent.futures import ThreadPoolExecutor

    from cellxfer.counter.model import Normalization

    norm = Normalization(clip=CLIP)  # levels of the whole image, applied per tile: a slide is never held whole
    levels = norm.levels(image)
    big = max(image.shape) > MAX_SIDE

    def measure(corner):
        y, x = corner
        return _tile_blobs(norm.apply_levels(image[y:y + TILE, x:x + TILE] if big else image, levels), floor, (y, x))

    corners = _tiles(image.shape)
    parts, found = [], 0
    with ThreadPoolExecutor(max_workers=GROUP) as pool:  # scipy's filters release the GIL
        for i in range(0, len(corners), GROUP):
            parts.extend(pool.map(measure, corners[i:i + GROUP]))
            found = sum(len(p[1]) for p in parts)
            if found >= ENOUGH_BLOBS:
                break
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def _tile_blobs(img: np.ndarray, floor: float, origin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    levels = list(_level_stacks(img))
    if not levels:
        return np.zeros(0), np.zeros(0), np.zeros((0, 2))
    top = max(float(p.max()) for *_, p in levels)  # the -inf frame never wins
    ds, vs, ps = [], [], []
    for level, core, ks, padded in levels:
        stack = padded[:, 1:-1, 1:-1]
        for j, k in enumerate(ks):
            if k not in core:
                continue
            ys, xs = _maxima(padded, j, max(floor * top, NOISE_K * _robust_sd(stack[j])))
            if not len(ys):
                continue
            b = stack[j, ys, xs].astype(np.float64)
            logk = np.full(len(ys), float(k))
            if 0 < j < len(ks) - 1:
                a, c = stack[j - 1, ys, xs].astype(np.float64), stack[j + 1, ys, xs].astype(np.float64)
                den = a - 2 * b + c
                safe = np.where(den < 0, den, -1.0)
                logk += np.where(den < 0, np.clip(0.5 * (a - c) / safe, -0.5, 0.5), 0.0)
            ds.append(DISK * 2.0 ** (logk / 4.0))
            vs.append(b)
            ps.append(np.stack([ys, xs], axis=1) * 2 ** level + (2 ** level - 1) / 2 + np.asarray(origin))
    if not ds:
        return np.zeros(0), np.zeros(0), np.zeros((0, 2))
    return np.concatenate(ds), np.concatenate(vs), np.concatenate(ps)


def _suppress(diam: np.ndarray, values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Indices of blobs kept by greedy suppression: strongest first, a blob whose centre lies inside a
    stronger kept blob (within its radius) is dropped (the rim responses of large nuclei)."""
    from scipy.spatial import cKDTree

    order = np.argsort(-values, kind="stable")
    tree = cKDTree(pos)
    alive = np.ones(len(values), dtype=bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive[tree.query_ball_point(pos[i], 0.5 * diam[i])] = False
    return np.asarray(keep, dtype=np.intp)


@dataclass(frozen=True)
class Estimate:
    """``diameter`` in pixels (None when no blob stands out), ``blobs`` the number of blobs it rests on."""

    diameter: float | None
    blobs: int


def estimate_diameter(image: np.ndarray) -> Estimate:
    """Typical nucleus diameter of a 2-D image (raw or normalised, any dtype); see module docs."""
    img = _as_image(image)
    if img.ndim != 2 or min(img.shape) < 8:
        return Estimate(None, 0)
    diam, values, pos = blobs(img)
    if len(values) < MIN_BLOBS:
        return Estimate(None, len(values))
    bar = RELATIVE * np.sort(values)[::-1][min(TOP, len(values)) - 1]
    strong = values >= bar
    diam, values, pos = diam[strong], values[strong], pos[strong]
    keep = _suppress(diam, values, pos)
    d = diam[keep]
    return Estimate(_weighted_median(d, d), int(len(d)))


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, 0.5 * cw[-1])])


def training_scale(images) -> dict:
    """What a counter records of its training images' nuclei (:class:`CounterMeta` fields): ``diameter``,
    the median of :func:`estimate_diameter` over the images that have an estimate, and ``diameter_range``,
    their 10th and 90th percentiles (the sizes the model has seen). None for both if no image has one."""
    ds = [e.diameter for e in map(estimate_diameter, images) if e.diameter is not None]
    if not ds:
        return {"diameter": None, "diameter_range": None}
    lo, mid, hi = np.percentile(ds, (10, 50, 90))
    return {"diameter": round(float(mid), 3), "diameter_range": (round(float(lo), 3), round(float(hi), 3))}


# -- the --diameter policy ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiameterPolicy:
    """``--diameter``: ``auto`` (estimate each image), a fixed diameter in pixels, or ``off`` (no
    rescaling). ``None`` as the option value means: ``auto`` when the model records a diameter, else off."""

    mode: str  # "auto" | "fixed" | "off"
    pixels: float | None = None

    @classmethod
    def parse(cls, text: str | None, model_diameter: float | None, model_name: str = "the model",
              reach: tuple[float, float] | None = None) -> "DiameterPolicy":
        """``reach``: the diameters the model takes as they are (``CounterMeta.diameter_range``; None: its
        ``diameter``); a fixed diameter whose image would be resized by more than ``[MIN_FACTOR,
        MAX_FACTOR]`` to reach them is refused (the resize would be clipped and the count wrong)."""
        if text is None:
            return cls("auto") if model_diameter else cls("off")
        t = str(text).strip().lower()
        if t in ("off", "none"):
            return cls("off")
        if t == "auto":
            policy = cls("auto")
        else:
            try:
                px = float(t)
            except ValueError:
                raise InputError(f"--diameter {text!r}: expected auto, off or a diameter in pixels (e.g. 12)") from None
            if not math.isfinite(px) or px <= 0:
                raise InputError(f"--diameter {text!r}: a diameter must be a positive number of pixels (off: no resizing)")
            policy = cls("fixed", px)
        if not model_diameter:
            raise InputError(f"--diameter {text}: {model_name} records no training nucleus diameter (trained before "
                             f"cellxfer 0.9, or an ensemble of such models); retrain it, or pass --diameter off")
        lo, hi = reach or (model_diameter, model_diameter)
        if policy.pixels is not None and not lo / MAX_FACTOR <= policy.pixels <= hi / MIN_FACTOR:
            raise InputError(f"--diameter {text}: {model_name} counts nuclei of {lo:g}-{hi:g} px and images are resized "
                             f"at most {1 / MIN_FACTOR:g}x down or {MAX_FACTOR:g}x up, so a fixed diameter must lie in "
                             f"[{lo / MAX_FACTOR:.3g}, {hi / MIN_FACTOR:.3g}] px; give the nuclei's diameter in pixels, or auto")
        return policy

    @property
    def label(self) -> str:
        """What the counts CSV records as the requested policy (``auto``, ``off`` or the pixels)."""
        return self.mode if self.mode != "fixed" else f"{self.pixels:g}"

    def scale(self, image: np.ndarray, meta) -> "Scaled":
        """Resize ``image`` (2-D) for a counter whose :class:`CounterMeta` is ``meta``. A learnt counter that
        records the range of diameters it was trained on (``meta.diameter_range``) takes an image whose
        nucleus diameter lies within it as it is, and one outside it resized to the nearest edge of the
        range (the least resampling that brings it to sizes the model knows); a fixed-scale head
        (:attr:`cellxfer.counter.head.Head.fixed_scale`, a LoG) or a model with no range gets its nuclei
        matched to ``meta.diameter`` (the training median). :func:`resize_to` leaves factors within
        ``TOLERANCE`` of 1 alone."""
        from cellxfer.counter.head import head_of

        model_diameter = getattr(meta, "diameter", None)
        if self.mode == "off" or not model_diameter:
            return Scaled(_as_image(image), 1.0, 1.0, None)
        d = self.pixels if self.mode == "fixed" else estimate_diameter(image).diameter
        if d is None:  # nothing blob-like (e.g. an empty field): count it as it is
            return Scaled(_as_image(image), 1.0, 1.0, None)
        seen = None if head_of(meta).fixed_scale else getattr(meta, "diameter_range", None)
        target = min(max(d, seen[0]), seen[1]) if seen else model_diameter
        return resize_to(image, target / d, d)


@dataclass(frozen=True)
class Scaled:
    """An image resized for a model: ``sy``/``sx`` original pixels per resized pixel, ``diameter`` the
    image's nucleus diameter that decided it (None: not rescaled, no estimate)."""

    image: np.ndarray
    sy: float
    sx: float
    diameter: float | None

    @property
    def factor(self) -> float:
        return 1.0 / self.sx

    @property
    def resized(self) -> bool:
        return self.sx != 1.0 or self.sy != 1.0

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """(x, y) points on the resized grid -> the original image's pixel coordinates."""
        return np.asarray(points, dtype=np.float64).reshape(-1, 2) * np.array([self.sx, self.sy])

    def box_to_original(self, y: int, x: int, h: int, w: int) -> tuple[int, int, int, int]:
        """A (y0, x0, h, w) box on the resized grid -> the original grid (rounded, for overlays)."""
        y0, x0 = round(y * self.sy), round(x * self.sx)
        return y0, x0, round((y + h) * self.sy) - y0, round((x + w) * self.sx) - x0


def _as_image(image):
    """``image`` as a 2-D array: numpy as it is, a :class:`cellxfer.lazy.LazyImage` kept lazy."""
    from cellxfer.lazy import is_lazy

    return image if is_lazy(image) else np.asarray(image)


def resize_to(image: np.ndarray, factor: float, diameter: float | None = None) -> Scaled:
    """Resize a 2-D image by ``factor`` (clipped to [MIN_FACTOR, MAX_FACTOR]; no-op within TOLERANCE of 1)
    with antialiased bilinear resampling (Pillow, float32). Returns float32 unless no resampling was done."""
    img = _as_image(image)
    factor = float(min(max(factor, MIN_FACTOR), MAX_FACTOR))
    if abs(factor - 1.0) < TOLERANCE:
        return Scaled(img, 1.0, 1.0, diameter)
    from PIL import Image

    from cellxfer.lazy import Resized, is_lazy

    h, w = img.shape
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    if is_lazy(img):  # a slide: resized region by region as it is read
        return Scaled(Resized(img, (nh, nw)), h / nh, w / nw, diameter)
    out = np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
                     .resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    return Scaled(out, h / nh, w / nw, diameter)
