"""Nucleus scale: estimate an image's typical nucleus diameter and rescale it to a counter's.

A counter records the nucleus diameter it counts at (:attr:`cellxfer.counter.model.CounterMeta.diameter`: the
median of :func:`estimate_diameter` over its training images, or a value chosen on validation images) and
the range of diameters it was trained on (``diameter_range``). ``count`` and ``evaluate`` take ``--diameter
auto|PIXELS|off``: every image is resized before normalisation by ``model diameter / image diameter``, so
its nuclei are of the one size the model counts at whatever the microscope's magnification
(:meth:`DiameterPolicy.scale`: the same nuclei at 0.5x or 2x are counted at the same size), and cell
locations are mapped back to the original pixel grid (:meth:`Scaled.to_original`).

Estimator (foreground objects; chosen against the scale-space LoG blob search it replaced on the
dsb2018-fluo training + validation images, ``scripts/scale_check.py``): the image is normalised by its
0.5th and ``HIGH``-th percentiles (clipped to [0, 1]), smoothed by a Gaussian of ``SMOOTH`` px and taken
less its smooth background (:func:`_flatten`: uneven illumination, vignetting and haze would otherwise lift
part of a field above the threshold); foreground is what lies above Otsu's threshold and above the
background mode plus ``NOISE_K`` SDs of the background's dark
side (so camera noise in a sparse field is never foreground), holes filled (dark nucleoli and chromatin
gaps stay inside their nucleus: texture cannot split a nucleus into blobs). Each connected object of at
least ``MIN_AREA`` pixels is a nucleus of its equivalent diameter ``sqrt(4 area / pi)`` (what annotation
masks measure) when it is round enough to be one (``area <= CLUMP * pi r^2``, ``r`` its largest inscribed
radius from the distance transform); otherwise it is a clump of touching nuclei, each of diameter
``CLUMP_DIAMETER * 2 r``, counted ``area / (pi (d/2)^2)`` times. The estimate is the median over nuclei,
each weighted by its contrast above the threshold (faint specks that barely cross it do not outvote the
nuclei), less the rim the blur adds (:func:`unblurred`). Large images (a side over ``MAX_SIDE``) are measured on up to ``MAX_TILES`` tiles of ``TILE`` px
spread over the whole image with the whole image's percentile levels and each tile's own threshold (a
slide is never held whole; uneven illumination is followed), ``GROUP`` at a time on as many threads,
until ``ENOUGH_BLOBS`` objects are pooled. :class:`Estimate` also reports how far its nuclei agree
(``spread``: the ratio of the weighted 75th to 25th percentile diameter), the share in clumps and how bright
a typical nucleus is beside those measured (``dim``: every object above the background's noise, not just those
above Otsu's threshold, which in a field of a few far brighter nuclei are those few), which ``count``'s ``qc``
column reads.

Invariants: ``Scaled.factor == 1`` exactly (no resampling at all) when the ratio lies within
``TOLERANCE`` of 1; factors are clipped to ``[MIN_FACTOR, MAX_FACTOR]``; the count of a density map is
the same number whatever grid it is summed on, so only the image is resized, never the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cellxfer.errors import InputError

SMOOTH = 1.0  # px: Gaussian denoising before thresholding
NOISE_K = 5.0  # foreground lies this many SDs of the background's dark side above its mode
MIN_AREA = 9  # px: smaller objects are specks, not nuclei
MESH, MIN_CELL = 8, 64  # the background surface: a mesh of cells of max(MIN_CELL, shorter side / MESH) px
BACKGROUND_Q = 10.0  # percentile of a mesh cell that is its background level
RIM = 3.5  # px: the blur an object's measured diameter is corrected for (:func:`unblurred`)
CLUMP = 1.6  # an object larger than this many inscribed disks is a clump of touching nuclei
CLUMP_DIAMETER = 1.0  # a clumped nucleus's diameter over twice the clump's largest inscribed radius
HIDDEN = 2.0  # pixels between noise floor and threshold over those above it: dim nuclei may hide there
PEAK_RISE = 2.0  # a typical nucleus peak (:func:`_typical_peak`) rises this many times the noise floor above the mode
MIN_BLOBS = 3  # fewer objects than this: no estimate (the image is counted as it is)
MAX_SIDE = 2048
TILE, MAX_TILES = 1024, 16
ENOUGH_BLOBS = 1000  # a large image's tiles are measured until their objects number this many (or all are)
GROUP = 2  # ... GROUP tiles at a time, side by side (the same tiles on any machine)
HIGH = 99.9  # percentile that normalises to 1 (above the background noise of a sparse field)
TOLERANCE = 0.1  # |factor - 1| below this: the image is used as it is
MIN_FACTOR, MAX_FACTOR = 1.0 / 16.0, 4.0


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


def _histogram(a: np.ndarray) -> np.ndarray:
    """The 256-bin histogram of a normalised image in [0, 1] (values outside counted in the end bins)."""
    # the 256-bin index of each value, min(floor(256 a), 255), as uint8 (a >= 0): bincount's cheapest input
    scaled = np.multiply(a, 256, dtype=np.float32)
    np.clip(scaled, 0, 255, out=scaled)
    return np.bincount(scaled.astype(np.uint8).ravel(), minlength=256).astype(np.float64)


_CENTRES = (np.arange(256) + 0.5) / 256  # of the bins of :func:`_histogram`


def _background(h: np.ndarray, below: int = 256) -> tuple[float, float]:
    """``(mode, floor)`` of the background of :func:`_histogram` ``h``: its mode (the most common of the first
    ``below`` bins), and that plus ``NOISE_K`` SDs of the values below the mode (the background's noise,
    unmoved by nuclei)."""
    m = int(np.argmax(h[:below]))
    dark = h[:m]
    sd = float(np.sqrt((dark * (_CENTRES[:m] - _CENTRES[m]) ** 2).sum() / dark.sum())) if dark.sum() > 100 else 0.0
    return float(_CENTRES[m]), float(_CENTRES[m]) + NOISE_K * sd


def _split(h: np.ndarray) -> tuple[float, float]:
    """``(threshold, floor)`` of a normalised, smoothed image in [0, 1] from its :func:`_histogram` ``h``: the
    foreground threshold, Otsu's raised to the noise floor (:func:`_background`) of the levels below it (a
    saturated plateau is no background), and that floor."""
    c = _CENTRES
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    s0 = np.cumsum(h * c)
    between = w0 * w1 * (s0 / np.maximum(w0, 1) - (s0[-1] - s0) / np.maximum(w1, 1)) ** 2
    k = int(np.argmax(between))
    floor = _background(h, k + 1)[1]
    return max(float(c[k]), floor), floor


def _typical_peak(a: np.ndarray, area: float) -> float | None:
    """The median peak of the objects that stand above the background's noise floor (:func:`_background`) in
    a normalised, smoothed, flattened tile, of at least a quarter of ``area`` (the thresholded objects' median
    area, so that noise and texture specks do not count) and ``MIN_AREA`` px, whose peak rises above the mode
    ``PEAK_RISE`` times as far as the floor does (so that a smooth unevenness that barely crosses the floor
    does not count): the brightness of a typical nucleus, dim or bright. Read on every 2nd pixel of every 2nd row
    (``a`` is smooth). None when fewer than ``MIN_BLOBS`` such objects."""
    from scipy import ndimage as ndi

    s = a[::2, ::2]
    mode, floor = _background(_histogram(s))
    lab, n = ndi.label(s > floor)
    if not n:
        return None
    fg = np.flatnonzero(lab)
    flat = lab.ravel()[fg]
    size = 4.0 * np.bincount(flat, minlength=n + 1)[1:]  # in the tile's pixels
    peaks = _label_max(s.ravel()[fg], flat, n)[size >= max(area / 4.0, MIN_AREA)]
    peaks = peaks[peaks >= mode + PEAK_RISE * (floor - mode)]
    return float(np.median(peaks)) if len(peaks) >= MIN_BLOBS else None


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the border made foreground (as
    ``scipy.ndimage.binary_fill_holes``, by one labelling of the background instead of erosions)."""
    from scipy import ndimage as ndi

    bg, n = ndi.label(~mask)
    if not n:
        return mask
    edge = np.zeros(n + 1, bool)
    for line in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        edge[line] = True
    edge[0] = True  # label 0 is the foreground itself
    return mask | ~edge[bg]


def _cell_edges(n: int, cell: int) -> np.ndarray:
    """Edges of ``round(n / cell)`` (at least 1) near-equal cells over ``n`` pixels."""
    return np.linspace(0, n, max(1, round(n / cell)) + 1).round().astype(int)


def _interpolation(n: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``n`` pixels, the first of the two cell centres it is interpolated between and its weight
    ``t`` on the second (linear; beyond the first and last centre extrapolated, so a ramp stays a ramp to the
    image's edge; one cell: every pixel on it). The caller gathers ``v[i] * (1 - t) + v[i + 1] * t`` from
    the cells' values padded by one. Not a matrix product: with one, ``count`` of the IDCIA 95 took 6.3 s
    instead of 4.6 and 50% more CPU (docs/data/flat/bench_count_idcia95_matmul.json), most likely BLAS threads
    spinning beside ONNX Runtime's; the gathers measured 4.6 s."""
    centres = (edges[:-1] + edges[1:] - 1) / 2.0
    y = np.arange(n)
    if len(centres) == 1:
        return np.zeros(n, np.intp), np.zeros(n, np.float32)
    i = np.clip(np.searchsorted(centres, y) - 1, 0, len(centres) - 2)  # the pair each pixel lies on or beyond
    return i, ((y - centres[i]) / (centres[i + 1] - centres[i])).astype(np.float32)


def _flatten(a: np.ndarray) -> np.ndarray:
    """``a`` less its smooth background, plus that background's median (so a field that is evenly lit is
    left as it is, up to the mesh's noise): uneven illumination, vignetting and out-of-focus haze would
    otherwise put one part of a field above the threshold and the nuclei of another below it. The
    background is estimated as astronomy's source extractors do (SExtractor's mesh): the
    ``BACKGROUND_Q``-th percentile of each cell of a mesh (:data:`MESH`, :data:`MIN_CELL`), the median of
    each 3x3 cells (a cell inside a large nucleus or a clump does not raise it), linear between the cells'
    centres."""
    from scipy import ndimage as ndi

    cell = max(MIN_CELL, min(a.shape) // MESH)
    ey, ex = _cell_edges(a.shape[0], cell), _cell_edges(a.shape[1], cell)
    if len(ey) == 2 and len(ex) == 2:  # one cell: nothing to flatten
        return a
    k = max(1, cell // 32)  # a cell's level from about 32x32 of its pixels (``a`` is smooth), all cells at once:
    ry = ey[:-1, None] + np.arange(0, np.diff(ey).min(), k)  # the first rows (columns) of every cell, as many
    rx = ex[:-1, None] + np.arange(0, np.diff(ex).min(), k)  # in each (cells differ by a pixel at most)
    cells = a[ry[:, None, :, None], rx[None, :, None, :]].reshape(len(ry), len(rx), -1)
    mesh = np.percentile(cells, BACKGROUND_Q, axis=-1).astype(np.float32)
    mesh = ndi.median_filter(mesh, size=3, mode="nearest")
    level = np.float32(np.median(mesh))
    mesh = np.pad(mesh, ((0, 1), (0, 1)), mode="edge")
    (iy, ty), (ix, tx) = _interpolation(a.shape[0], ey), _interpolation(a.shape[1], ex)
    rows = mesh[iy] * (1 - ty)[:, None] + mesh[iy + 1] * ty[:, None] - level  # (height, cells across), less the level
    part = np.take(rows, ix, axis=1)  # the same sums as ``a - rows[:, ix] * (1 - tx) - rows[:, ix + 1] * tx``,
    part *= 1 - tx  # in two image-sized buffers instead of six
    out = np.subtract(a, part, dtype=np.float32)
    np.take(rows, ix + 1, axis=1, out=part)
    part *= tx
    out -= part
    return out


def _tile_objects(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(diameters, weights, clumped, nuclei, areas, dim)`` of the objects in one normalised tile (module
    docs): one entry per object of at least ``MIN_AREA`` px, ``nuclei`` the number of nuclei it stands for (1,
    or a clump's area over one nucleus's), ``weights`` that times its contrast above the threshold; ``dim`` the
    tile's :func:`_dim` (one entry, or none), looked for only where the pixels between the noise floor and the
    threshold outnumber those above it ``HIDDEN`` times (where dim nuclei could hide beside brighter ones: fewer
    than a third of the ordinary validation images, nine in ten of those with a tenth of the nuclei made 5x
    brighter; elsewhere it costs nothing)."""
    from scipy import ndimage as ndi

    a = _flatten(ndi.gaussian_filter(np.maximum(a, 0), SMOOTH, truncate=3.0))
    h = _histogram(a)
    t, floor = _split(h)
    hidden = h[(_CENTRES > floor) & (_CENTRES <= t)].sum() > HIDDEN * h[_CENTRES > t].sum()
    lab, n = ndi.label(_fill_holes(a > t))
    if not n:
        return np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0), np.zeros(0), np.zeros(0)
    fg = np.flatnonzero(lab)  # the objects' pixels, in raster order (so each sum adds as over the whole tile)
    flat = lab.ravel()[fg]
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    contrast = np.maximum(np.bincount(flat, weights=a.ravel()[fg], minlength=n + 1)[1:] / area - t, 0.0)
    keep = np.flatnonzero(area >= MIN_AREA)
    radius = np.zeros(len(keep))
    slices = ndi.find_objects(lab)
    for j, i in enumerate(keep):  # the largest inscribed radius, object by object (only its box)
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in slices[i])
        radius[j] = ndi.distance_transform_edt(lab[sl] == i + 1).max() + 0.5  # to the pixel's edge
    dim = _dim(a, area[keep], _label_max(a.ravel()[fg], flat, n)[keep]) if hidden and len(keep) else None
    area, contrast = area[keep], contrast[keep]
    single = area <= CLUMP * np.pi * radius ** 2
    diam = np.where(single, np.sqrt(4.0 * area / np.pi), CLUMP_DIAMETER * 2.0 * radius)
    nuclei = np.where(single, 1.0, area / (np.pi * (diam / 2.0) ** 2))
    return diam, nuclei * contrast, ~single, nuclei, area, np.array([] if dim is None else [dim])


def _label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The largest of ``values`` of each label 1..n (``labels`` as many, each in 1..n; -inf for a label none has):
    one unbuffered ufunc pass, no loop over objects (``ndi.maximum`` with labels is over 10x slower)."""
    out = np.full(n + 1, -np.inf, np.float32)
    np.maximum.at(out, labels, values)
    return out[1:]


def _dim(a: np.ndarray, area: np.ndarray, peaks: np.ndarray) -> float | None:
    """A tile's :attr:`Estimate.dim`: its :func:`_typical_peak` over the median of ``peaks`` (those of the
    objects above the threshold, of ``area``); None without a typical peak."""
    typical = _typical_peak(a, float(np.median(area)))
    return None if typical is None else typical / float(np.median(peaks.astype(np.float64)))


def objects(image) -> tuple[np.ndarray, ...]:
    """``(diameters, weights, clumped, nuclei, areas, dims)`` of the objects of a 2-D image (numpy or lazy),
    pooled over the tiles of a large one (:func:`_tiles`; ``dims``: one per tile that measured it); see the
    module docs and :func:`_tile_objects`."""
    from concurrent.futures import ThreadPoolExecutor

    from cellxfer.counter.model import Normalization

    norm = Normalization(high=HIGH, clip=1.0)  # levels of the whole image, applied per tile: a slide is never held whole
    levels = norm.levels(image)
    big = max(image.shape) > MAX_SIDE

    def measure(corner):
        y, x = corner
        return _tile_objects(norm.apply_levels(image[y:y + TILE, x:x + TILE] if big else image, levels))

    corners = _tiles(image.shape)
    if not big:  # one tile: measured in this thread
        return measure(corners[0])
    parts: list = []
    with ThreadPoolExecutor(max_workers=GROUP) as pool:  # scipy's filters release the GIL
        for i in range(0, len(corners), GROUP):
            parts.extend(pool.map(measure, corners[i:i + GROUP]))
            if sum(len(p[0]) for p in parts) >= ENOUGH_BLOBS:
                break
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(6))


@dataclass(frozen=True)
class Estimate:
    """``diameter`` in pixels (None when no nucleus stands out), ``blobs`` the number of objects it rests
    on, ``spread`` the weighted 75th / 25th percentile ratio of their diameters (1: all alike),
    ``clumped`` the weighted share of nuclei measured inside clumps, ``nuclei`` how many nuclei the
    objects stand for (a count independent of any model; None when only some tiles of a large image were
    measured) and ``saturated`` the share of foreground pixels at the image's maximum value, when that
    maximum is shared by many pixels (None for a lazy slide), ``dim`` the typical nucleus's peak
    (:func:`_typical_peak`: every object above the background's noise, dim or bright) over the median peak of
    the objects measured (:func:`_dim`; the median over the tiles of a large image): about 1 when the nuclei are alike in brightness, low when a few far brighter nuclei
    (mitotic, H2B-bright) put the threshold above the rest (the estimate then rests on those few, and a
    percentile-normalised count misses the rest; None when not measured: also where few pixels lie between
    the background's noise and the threshold, so no dim nuclei can hide). All but ``blobs`` None without an
    estimate."""

    diameter: float | None
    blobs: int
    spread: float | None = None
    clumped: float | None = None
    nuclei: float | None = None
    saturated: float | None = None
    dim: float | None = None


def estimate_diameter(image: np.ndarray) -> Estimate:
    """Typical nucleus diameter of a 2-D image (raw or normalised, any dtype); see module docs."""
    img = _as_image(image)
    if img.ndim != 2 or min(img.shape) < 8:
        return Estimate(None, 0)
    diam, weight, clumped, nuclei, area, dims = objects(img)
    if len(diam) < MIN_BLOBS or weight.sum() <= 0:
        return Estimate(None, len(diam))
    q25, q50, q75 = (_weighted_quantile(diam, weight, q) for q in (0.25, 0.5, 0.75))
    from cellxfer.lazy import is_lazy

    whole = len(_tiles(img.shape)) == 1
    return Estimate(unblurred(q50), int(len(diam)), q75 / q25, float(weight[clumped].sum() / weight.sum()),
                    float(nuclei.sum()) if whole else None,
                    _saturated(img, area.sum()) if whole and not is_lazy(img) else None,
                    float(np.median(dims)) if len(dims) else None)


def unblurred(d: float) -> float:
    """A measured diameter less the rim that blur adds to every object: ``sqrt(d**2 - RIM**2)`` (the widths of
    two Gaussians add so), at least ``d / 2``. The smoothing and the threshold widen small objects most, so
    without it an image halved in size measured 8.2% more than half its diameter, 2.8% with it (median over
    the 427 dsb2018-fluo training and validation images with an estimate at both sizes:
    ``scripts/scale_check.py --dsb trainval --resize``, docs/data/scale_cov_trainval.json and
    docs/data/rim/scale_cov_trainval.json)."""
    return math.sqrt(max(d * d - RIM * RIM, d * d / 4))


def _saturated(image: np.ndarray, foreground: float) -> float:
    """Share of ``foreground`` pixels (their number) at the image's maximum value: a clipped camera or an
    8-bit conversion that burnt the brightest nuclei flat. 0 when the maximum is a few pixels' alone."""
    top = image.max()
    n = float(np.count_nonzero(image == top))
    return 0.0 if n < MIN_AREA or foreground <= 0 else min(1.0, n / foreground)


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][min(np.searchsorted(cw, q * cw[-1]), len(x) - 1)])


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
    def parse(cls, text: str | None, model_diameter: float | None, model_name: str = "the model") -> "DiameterPolicy":
        """A fixed diameter whose image would be resized by more than ``[MIN_FACTOR, MAX_FACTOR]`` to reach
        ``model_diameter`` (the one size the model counts at) is refused: the resize would be clipped and
        the count wrong."""
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
        d = model_diameter
        if policy.pixels is not None and not d / MAX_FACTOR <= policy.pixels <= d / MIN_FACTOR:
            raise InputError(f"--diameter {text}: {model_name} counts nuclei of {d:g} px and images are resized "
                             f"at most {1 / MIN_FACTOR:g}x down or {MAX_FACTOR:g}x up, so a fixed diameter must lie in "
                             f"[{d / MAX_FACTOR:.3g}, {d / MIN_FACTOR:.3g}] px; give the nuclei's diameter in pixels, or auto")
        return policy

    @property
    def label(self) -> str:
        """What the counts CSV records as the requested policy (``auto``, ``off`` or the pixels)."""
        return self.mode if self.mode != "fixed" else f"{self.pixels:g}"

    def scale(self, image: np.ndarray, meta) -> "Scaled":
        """Resize ``image`` (2-D) for a counter whose :class:`CounterMeta` is ``meta``: its nuclei are matched
        to ``meta.diameter``, the size the model counts at (a learnt counter's count depends on the size
        it sees nuclei at even inside its training range, so one size for every image is what makes a
        count independent of magnification; measured in docs/benchmarks/accuracy-log.md). :func:`resize_to`
        leaves factors within ``TOLERANCE`` of 1 alone."""
        model_diameter = getattr(meta, "diameter", None)
        if self.mode == "off" or not model_diameter:
            return Scaled(_as_image(image), 1.0, 1.0, None)
        est = estimate_diameter(image) if self.mode == "auto" else None
        d = self.pixels if self.mode == "fixed" else est.diameter
        if d is None:  # nothing blob-like (e.g. an empty field): count it as it is
            return Scaled(_as_image(image), 1.0, 1.0, None, est)
        factor = model_diameter / d
        return replace(resize_to(image, factor, d), estimate=est, clipped=not MIN_FACTOR <= factor <= MAX_FACTOR)


@dataclass(frozen=True)
class Scaled:
    """An image resized for a model: ``sy``/``sx`` original pixels per resized pixel, ``diameter`` the
    image's nucleus diameter that decided it (None: not rescaled, no estimate)."""

    image: np.ndarray
    sy: float
    sx: float
    diameter: float | None
    estimate: Estimate | None = None  # the measurement that decided it (``--diameter auto``)
    clipped: bool = False  # the factor wanted lay outside [MIN_FACTOR, MAX_FACTOR]: nuclei stay outside the range

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
