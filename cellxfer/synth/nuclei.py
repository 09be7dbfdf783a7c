"""``nuclei``: fluorescence (DAPI-like) nuclei with a camera model, for counting real microscopy.

Pipeline, per image (ranges are :class:`NucleiConfig` fields; brightness in units of the image's
typical nucleus brightness until step 7):

1. draw the image's settings (:func:`draw_image`): typical diameter ``d`` (log-uniform, at most
   size/2), coverage (log-uniform from the larger of its low end and MIN_NUCLEI nuclei' worth) ->
   nucleus count ``round(coverage * area / (pi d^2 / 4))``, at least 1 when the coverage is not 0,
   clamped to ``max_cells``, plus a binomial number of mitotic figures;
   uniform or 1-6 Gaussian clusters; whether touching nuclei are ``pressed``, whether it saturates;
2. place labelled objects (:func:`place_cells`): candidates in vectorised batches, each an ellipse of
   equivalent diameter ``d * (1 + jitter N)`` and axis ratio ``elongation`` whose radius is modulated
   by harmonics k=2..5 (``irregularity``); log-normal brightness, some dim, some 2-8x as bright
   (``bright_fraction``), some defocused (wider soft edge, dimmer); a profile between flat and a projected
   ellipsoid's, plus a bright ``rim``.
   Mitotic figures (:func:`_figures`): condensed bodies, metaphase bars, and daughter pairs placed as
   one ellipse and drawn as two (:func:`split_pairs`). A candidate is rejected when more than
   ``overlap`` of its area covers objects already placed; after ``8 x target + 64`` candidates the
   image keeps what it has;
3. rasterise each object into its own small window (:func:`shape_geometry`, :func:`shape_values`),
   accumulated into padded layers (:class:`Layers`; textured: in-focus nuclei and figures, which in
   a ``pressed`` image blend by depth so touching nuclei meet along a flattened, darker seam; plain:
   defocused nuclei, debris);
4. nucleoli (flat dark spots), chromocentres (small bright spots) and the ragged chromosome edge of
   mitotic figures (:func:`add_nucleoli`); unlabelled debris: dim irregular specks, thin fibres,
   large smooth dim blobs;
5. chromatin texture (smoothed noise, a ``grain`` mix of scales ~d/6 and ~d/20) multiplies the
   textured layer; background level with smooth autofluorescence; optical blur (Gaussian PSF);
   uneven illumination multiplies all;
6. camera: Poisson photon noise (tabulated below 10 photons, Gaussian approximation above), gain, offset,
   read noise, optional saturation (the brightest ``saturated`` share of the nucleus pixels clip);
7. output uint16 (camera units, clipped at 65535) or uint8 (rescaled into 0..255).

Invariants: the same generator state gives byte-identical output; the points are exactly the centres
of the placed labelled objects (nuclei, figures, daughters), every one inside ``[0, size)^2`` (x = column);
specks, fibres, blobs and nucleoli are never labelled, and the labelled objects do not depend on the
``debris`` range (it is drawn whatever its width).

Speed: objects are rasterised in batches of similar window size (one vectorised step per batch), the
layers are summed with one ``bincount``; whole-image work (texture and autofluorescence by FFT, PSF
blur, noise) runs once per image, in float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from cellxfer.synth.base import image_rng
from cellxfer.synth.nuclei_config import NucleiConfig

NUCLEUS, BODY, SPECK, PAIR = 0, 1, 2, 3  # PAIR: a dividing cell while placed, then two BODY daughters
TEXTURED, PLAIN = 0, 1
_HARMONIC_WEIGHTS = np.array([1.0, 0.5, 0.3, 0.2])  # relative amplitude of k = 2, 3, 4, 5
_MAX_HARMONIC_SUM = 0.35  # sum |c_k| <= this keeps the outline star-shaped and positive
_DEFOCUS_MAX = 0.3  # defocus sigma <= 0.3 x the nucleus diameter
_JITTER_CLIP = (0.5, 1.6)  # per-cell diameter factor clipped to this range
# mitotic figures, as (share, diameter / d low, high, axis ratio low, high): condensed (prophase,
# apoptotic), metaphase bars; the rest are daughter pairs (anaphase/telophase) of diameter _PAIR_D x d
# whose centres lie _PAIR_SEP daughter diameters apart
_CONDENSED = (0.4, 0.35, 0.7, 1.0, 1.3)
_BAR = (0.3, 0.35, 0.55, 2.5, 4.0)
_PAIR_D, _PAIR_SEP = (0.4, 0.65), (1.05, 1.7)
_FIGURE_IRREGULARITY = 0.25  # outline harmonics of mitotic figures, added to the image's irregularity
_CONTACT_SHARPNESS = 0.7  # px: pressed nuclei meet where their depths (px inside) agree within ~this
MIN_NUCLEI = 3  # the low end of the coverage range is raised to this many nuclei (never past the high end)
_DIM8 = (0.1, 1.0)  # uint8 without saturation: the maximum lands at this share of 255, log-uniform
OUTLINE_SAMPLES = 256  # angles at which outlines are tabulated (a power of two)
POISSON_EXACT_BELOW = 10.0  # expected photons below which photon noise is drawn as Poisson
_POISSON_Q, _POISSON_G = 1000, 4096  # poisson_table resolution: lam steps, probability steps


# -- per-image settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageDraw:
    """One image's values drawn from the config's ranges (see :class:`NucleiConfig` for units)."""

    d: float
    coverage: float
    n_nuclei: int
    n_bodies: int
    clusters: int  # 0 = uniform placement
    overlap: float
    irregularity: float
    texture: float
    grain: float
    rim: float
    dim_fraction: float
    defocus_fraction: float
    bright_fraction: float
    debris: float
    illumination: float
    background: float
    blur: float
    photons: float
    read_noise: float
    offset: float
    gain: float
    saturate: bool
    saturated: float
    pressed: bool
    seam: float
    chromocentres: bool
    rescale: float
    dtype: str


def draw_image(cfg: NucleiConfig, rng: np.random.Generator) -> ImageDraw:
    """The per-image draws, always the same number of them in the same order (determinism)."""

    def uni(r):
        return float(rng.uniform(r[0], r[1]))

    def log_uni(r):
        return float(math.exp(rng.uniform(math.log(r[0]), math.log(r[1]))))

    d = min(log_uni(cfg.diameter), cfg.size / 2)
    area = math.pi * d * d / 4
    # a field of few, large nuclei is imaged where there are cells: at least MIN_NUCLEI' worth
    low, high = cfg.coverage
    low = min(max(low, MIN_NUCLEI * area / cfg.size**2), high) if low > 0 else low
    coverage = log_uni((low, high)) if low > 0 else uni((low, high))
    n = int(min(max(round(coverage * cfg.size**2 / area), 1 if coverage > 0 else 0), cfg.max_cells))
    n_bodies = int(rng.binomial(n, uni(cfg.bodies)))
    clusters = int(rng.integers(1, 7)) if rng.random() < cfg.clustered else 0
    values = dict(d=d, coverage=coverage, n_nuclei=n, n_bodies=n_bodies, clusters=clusters, overlap=uni(cfg.overlap),
                  irregularity=uni(cfg.irregularity), texture=uni(cfg.texture),
                  dim_fraction=uni(cfg.dim_fraction), defocus_fraction=uni(cfg.defocus_fraction),
                  debris=uni(cfg.debris), illumination=uni(cfg.illumination), background=uni(cfg.background),
                  blur=uni(cfg.blur), photons=log_uni(cfg.photons), read_noise=uni(cfg.read_noise),
                  offset=uni(cfg.offset), gain=uni(cfg.gain), saturate=bool(rng.random() < cfg.saturation))
    dtype = cfg.dtype if cfg.dtype != "random" else ("uint8", "uint16")[int(rng.integers(0, 2))]
    more = dict(grain=uni(cfg.grain), rim=uni(cfg.rim), saturated=log_uni(cfg.saturated),
                pressed=bool(rng.random() < cfg.pressed), seam=float(rng.uniform(0.2, 0.7)),
                chromocentres=bool(rng.random() < 0.3), rescale=log_uni(cfg.rescale))
    # drawn only when the config asks for bright nuclei, so configs without them keep the stream they had
    bright = uni(cfg.bright_fraction) if cfg.bright_fraction[1] > 0 else 0.0
    return ImageDraw(**values, **more, bright_fraction=bright, dtype=dtype)


def max_reach(cfg: NucleiConfig, d: float) -> float:
    """An upper bound (px) of how far any rendered object of an image with typical diameter ``d``
    reaches from its centre: the padding of the layers."""
    big = d * _JITTER_CLIP[1] / 2 * math.sqrt(cfg.elongation[1]) * (1 + _MAX_HARMONIC_SUM)
    edge = 1.0 + 2.5 * _DEFOCUS_MAX * d * _JITTER_CLIP[1]
    fibre = 1.25 * d + 4.0
    figure = 1.6 * d + 2.0  # daughter pairs and the chromosome arms around mitotic figures
    return max(big + edge / 2, fibre, figure) + 2.0


# -- objects ------------------------------------------------------------------------------------------
@dataclass
class Cells:
    """Objects as parallel arrays, one row each.

    ``x, y``: centre (px; x = column); ``a, b``: semi-axes (px) of the ellipse before the outline
    modulation, ``a * b = (diameter / 2)^2``; ``theta``: angle (rad); ``outline``: float32 (M, T) radius
    factor ``m(phi)`` at the angles ``phi_t = 2 pi t / T`` of the ellipse's normalised frame (1 = the
    ellipse; see :func:`outline_table`); ``edge``: width (px) of the linear ramp across the outline (1 =
    anti-aliased, wider = defocused); ``level``: brightness at the centre; ``dome``: weight of the
    projected-ellipsoid profile ``sqrt(1 - (rho / m)^2)`` against a flat top (0 = flat); ``rim``:
    extra brightness at the outline (peripheral chromatin), x ``level``; ``kind``: NUCLEUS, BODY, SPECK
    or PAIR (see :func:`split_pairs`); ``layer``: TEXTURED or PLAIN.
    """

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    outline: np.ndarray
    edge: np.ndarray
    level: np.ndarray
    dome: np.ndarray
    rim: np.ndarray
    kind: np.ndarray
    layer: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx) -> "Cells":
        return Cells(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list["Cells"]) -> "Cells":
        return Cells(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Cells)})

    def scaled(self, k: float) -> "Cells":
        """The same objects in a grid ``k`` times finer (positions, axes and edges times ``k``)."""
        return replace(self, x=self.x * k, y=self.y * k, a=self.a * k, b=self.b * k, edge=self.edge * k)

    def reach(self) -> np.ndarray:
        """How far (px) each object's window must reach from its centre."""
        return np.maximum(self.a, self.b) * self.outline.max(axis=1) + self.edge / 2

    @property
    def points(self) -> np.ndarray:
        return np.column_stack([self.x, self.y]).astype(np.float64)


def outline_table(harm: np.ndarray) -> np.ndarray:
    """float32 (M, T): ``m(phi_t) = 1 + Re(sum_k c_k e^{i k phi_t})`` for the complex coefficients
    ``harm[:, k - 2]`` of k = 2..5, at ``phi_t = 2 pi t / T`` (one inverse real FFT)."""
    spectrum = np.zeros((len(harm), OUTLINE_SAMPLES // 2 + 1), np.complex128)
    spectrum[:, 2:6] = harm * (OUTLINE_SAMPLES / 2)
    return (1.0 + np.fft.irfft(spectrum, n=OUTLINE_SAMPLES, axis=1)).astype(np.float32)


def _window_offsets(cells, radius: int):
    """Pixel-centre offsets from each centre, float32 (M, 1, S) along x and (M, S, 1) along y."""
    f32 = np.float32
    off = np.arange(-radius, radius + 1, dtype=f32) + f32(0.5)
    dx = ((np.floor(cells.x) - cells.x).astype(f32)[:, None] + off)[:, None, :]
    dy = ((np.floor(cells.y) - cells.y).astype(f32)[:, None] + off)[:, :, None]
    return dx, dy


def shape_geometry(cells: Cells, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rho, m)``, float32 (M, 2R+1, 2R+1), in windows whose top-left pixel is ``(floor(y) - R,
    floor(x) - R)`` (like :func:`cellxfer.synth.synhc.ellipse_stencils`): ``rho`` the pixel centre's
    normalised ellipse radius, ``m`` the outline there (nearest of the T tabulated angles). The pixel
    centre is inside the object exactly when ``rho <= m``."""
    f32 = np.float32
    dx, dy = _window_offsets(cells, radius)
    c, s = np.cos(cells.theta).astype(f32), np.sin(cells.theta).astype(f32)
    ia, ib = (1.0 / cells.a).astype(f32), (1.0 / cells.b).astype(f32)
    col = lambda v: v[:, None, None]  # noqa: E731
    u = dx * col(c * ia) + dy * col(s * ia)  # (M,1,S) + (M,S,1): one full-size operation
    v = dy * col(c * ib) - dx * col(s * ib)
    rho = np.sqrt(u * u + v * v)
    if not np.any(cells.outline != 1.0):
        return rho, np.ones_like(rho)
    t = OUTLINE_SAMPLES
    idx = (np.arctan2(v, u) * f32(t / (2 * np.pi)) + f32(t + 0.5)).astype(np.intp) & (t - 1)
    idx += (np.arange(len(cells)) * t)[:, None, None]
    return rho, np.take(cells.outline, idx)


def _col(v) -> np.ndarray:
    return np.asarray(v, np.float32)[:, None, None]


def coverage_alpha(cells: Cells, rho: np.ndarray, m: np.ndarray) -> np.ndarray:
    """float32 share of each pixel inside the object: a linear ramp of width ``edge`` px across the
    outline, 0.5 on it (so ``alpha >= 0.5`` exactly inside)."""
    f32 = np.float32
    return np.clip((m - rho) * _col(np.sqrt(cells.a * cells.b) / cells.edge) + f32(0.5), f32(0.0), f32(1.0))


def shape_values(cells: Cells, rho: np.ndarray, m: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """float32 brightness ``level * alpha * (1 - dome + dome * sqrt(1 - q^2) + rim * q^8)``, ``q =
    min(rho / m, 1)``, of :func:`shape_geometry`'s pixels (a flat top mixed with the thickness of a
    uniform ellipsoid, plus a bright rim); ``alpha``: :func:`coverage_alpha` (computed if not given)."""
    f32 = np.float32
    q2 = np.minimum(rho / m, f32(1.0))
    q2 *= q2
    fall = f32(1.0) - q2
    np.sqrt(fall, out=fall)
    fall *= _col(cells.dome)
    fall += _col(1.0 - cells.dome)
    if np.any(cells.rim):
        q2 *= q2
        q2 *= q2
        q2 *= _col(cells.rim)
        fall += q2
    fall *= coverage_alpha(cells, rho, m) if alpha is None else alpha
    fall *= _col(cells.level)
    return fall


def contact_weights(cells: Cells, rho: np.ndarray, m: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """float32 blending weights of pressed nuclei (:class:`Layers`): ``alpha x exp(depth /
    _CONTACT_SHARPNESS)``, ``depth`` the distance (px, approximately, capped at 28) inside the outline;
    where two nuclei overlap the deeper one shows, so they meet along a flattened contact."""
    f32 = np.float32
    depth = (m - rho) * _col(np.sqrt(cells.a * cells.b) / _CONTACT_SHARPNESS)
    np.minimum(depth, f32(40.0), out=depth)
    np.exp(depth, out=depth)
    depth *= alpha
    return depth


def groups_by_reach(reach: np.ndarray, chunk: int = 48):
    """Index groups of objects with similar reach, each with the window radius that holds them all
    (so one large object does not inflate every window of a batch)."""
    order = np.argsort(reach, kind="stable")
    for group in np.array_split(order, max(1, math.ceil(len(order) / chunk))):
        if len(group):
            yield group, int(math.ceil(float(reach[group].max()))) + 1


_BLEND = 2  # first of the three accumulators of pressed objects: sum w v, sum w, sum w^2


class Layers:
    """Float accumulators over the image padded by ``pad`` on every side: TEXTURED and PLAIN, which
    add up, and (``pressed``) three more that blend the TEXTURED objects given weights (see
    :meth:`total`); windows are recorded by :meth:`add` and summed once (one ``bincount``)."""

    def __init__(self, size: int, pad: int, pressed: bool = False, seam: float = 0.0):
        self.size, self.pad, self.width = size, pad, size + 2 * pad
        self.pressed, self.seam = pressed, seam
        self._idx: list[np.ndarray] = []
        self._val: list[np.ndarray] = []

    def _windows(self, channel, x, y, side: int) -> np.ndarray:
        w, radius = self.width, side // 2
        rows = np.floor(y).astype(np.intp) + self.pad - radius
        cols = np.floor(x).astype(np.intp) + self.pad - radius
        ar = np.arange(side, dtype=np.intp)
        base = (np.asarray(channel, np.intp) * w * w + rows * w + cols)[:, None, None]
        return base + (ar[:, None] * w + ar[None, :])[None]

    def add(self, layer, x, y, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add ``values`` (M, S, S) in windows placed like :func:`shape_geometry` at ``(x, y)``; with
        ``weights`` (and ``pressed``) the TEXTURED ones blend instead of adding up."""
        if not len(values):
            return
        layer = np.broadcast_to(np.asarray(layer, np.intp), (len(values),))
        if weights is None or not self.pressed:
            self._idx.append(self._windows(layer, x, y, values.shape[1]).ravel())
            self._val.append(values.ravel())
            return
        blend = layer == TEXTURED
        if not blend.all():
            keep = ~blend
            self.add(layer[keep], x[keep], y[keep], values[keep])
        x, y, v, wt = x[blend], y[blend], values[blend].ravel(), weights[blend].ravel()
        at = np.flatnonzero(wt)
        idx = self._windows(np.full(len(x), _BLEND), x, y, values.shape[1]).ravel()[at]
        v, wt = v[at], wt[at]
        step = self.width * self.width
        self._idx += [idx, idx + step, idx + 2 * step]
        self._val += [v * wt, wt, wt * wt]

    def total(self) -> np.ndarray:
        """float32 (2, size, size): the TEXTURED and PLAIN layers cropped to the image. Blended objects
        join TEXTURED as ``sum w v / sum w`` (where one dominates, its value), darkened along contacts
        by ``seam x 2 (1 - sum w^2 / (sum w)^2)`` (1 - seam where two meet evenly)."""
        w, p = self.width, self.pad
        ww = w * w
        channels = 5 if self.pressed else 2
        if not self._idx:
            return np.zeros((2, self.size, self.size), np.float32)
        acc = np.bincount(np.concatenate(self._idx), np.concatenate(self._val), minlength=channels * ww)
        if self.pressed:  # only where blended objects reach
            at = np.flatnonzero(acc[(_BLEND + 1) * ww : (_BLEND + 2) * ww])
            s1 = acc[(_BLEND + 1) * ww + at]
            dark = np.clip(1.0 - self.seam * 2.0 * (1.0 - acc[(_BLEND + 2) * ww + at] / s1 / s1), 0.0, 1.0)
            acc[TEXTURED * ww + at] += acc[_BLEND * ww + at] / s1 * dark
        return acc[: 2 * ww].reshape(2, w, w)[:, p : w - p, p : w - p].astype(np.float32)


# -- placing the labelled objects ---------------------------------------------------------------------
def _positions(size: int, rng, m: int, centres: np.ndarray | None, sd: float) -> np.ndarray:
    """``m`` positions in [0, size)^2 on a 1/1000 pixel grid: uniform, or around ``centres``
    (Gaussian, SD ``sd``, redrawn until inside)."""
    if centres is None:
        return np.floor(rng.uniform(0, size, (m, 2)) * 1000.0) / 1000.0
    out = np.empty((0, 2))
    while len(out) < m:
        p = centres[rng.integers(0, len(centres), m)] + rng.normal(0.0, sd, (m, 2))
        p = np.floor(p * 1000.0) / 1000.0
        out = np.concatenate([out, p[(p >= 0).all(axis=1) & (p < size).all(axis=1)]])
    return out[:m]


def _outlines(rng, m: int, amplitude: np.ndarray) -> np.ndarray:
    """float32 (m, T) outline tables (:func:`outline_table`) of random harmonics c_2..c_5 with
    ``|c_k| ~ amplitude x |N(0, 1)| x weight_k`` and sum |c_k| <= _MAX_HARMONIC_SUM."""
    mag = np.abs(rng.normal(0.0, 1.0, (m, 4))) * _HARMONIC_WEIGHTS * np.asarray(amplitude)[:, None]
    phase = rng.uniform(0.0, 2 * np.pi, (m, 4))
    total = mag.sum(axis=1, keepdims=True)
    mag *= np.minimum(1.0, _MAX_HARMONIC_SUM / np.maximum(total, 1e-12))
    return outline_table(mag * np.exp(1j * phase))


def _figures(d: float, rng, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(kind, diameter, axis ratio)`` of ``m`` mitotic figures: condensed bodies and metaphase bars
    (BODY), daughter pairs (PAIR, an ellipse holding both daughters; see :func:`split_pairs`)."""
    u, size, shape, sep = rng.random(m), rng.random(m), rng.random(m), rng.uniform(*_PAIR_SEP, m)
    lerp = lambda r, t: r[0] + (r[1] - r[0]) * t  # noqa: E731
    bar = u >= _CONDENSED[0]
    pair = u >= _CONDENSED[0] + _BAR[0]
    diam = np.where(bar, lerp(_BAR[1:3], size), lerp(_CONDENSED[1:3], size))
    ratio = np.where(bar, lerp(_BAR[3:], shape), lerp(_CONDENSED[3:], shape))
    daughter = lerp(_PAIR_D, size)
    diam = np.where(pair, daughter * np.sqrt(1 + sep), diam)  # a = daughter (1 + sep) / 2, b = daughter / 2
    ratio = np.where(pair, 1 + sep, ratio)
    return np.where(pair, PAIR, BODY), d * diam, ratio


def split_pairs(pairs: Cells) -> Cells:
    """Two BODY daughters for each PAIR: centred ``a - b`` either side along its long axis, each of
    semi-axes ``1.12 b, b / 1.12`` across that axis, sharing its outline (the second turned half a
    turn), level and edge."""
    off = pairs.a - pairs.b
    ux, uy = np.cos(pairs.theta) * off, np.sin(pairs.theta) * off
    two = lambda v: np.concatenate([v, v])  # noqa: E731
    return Cells(x=np.concatenate([pairs.x + ux, pairs.x - ux]), y=np.concatenate([pairs.y + uy, pairs.y - uy]),
                 a=two(pairs.b * 1.12), b=two(pairs.b / 1.12),
                 theta=np.concatenate([pairs.theta + np.pi / 2, pairs.theta - np.pi / 2]),
                 outline=two(pairs.outline), edge=two(pairs.edge), level=two(pairs.level), dome=two(pairs.dome),
                 rim=two(pairs.rim), kind=np.full(2 * len(pairs), BODY), layer=two(pairs.layer))


def _candidates(cfg: NucleiConfig, p: ImageDraw, rng, xy: np.ndarray) -> Cells:
    """Labelled candidates at ``xy``: nuclei, or mitotic figures (:func:`_figures`) with probability
    n_bodies / (n_nuclei + n_bodies). Every draw is made for every candidate (the stream does not
    depend on the values)."""
    m = len(xy)
    body = rng.random(m) < p.n_bodies / max(p.n_nuclei + p.n_bodies, 1)
    diam = p.d * np.clip(1.0 + cfg.diameter_jitter * rng.standard_normal(m), *_JITTER_CLIP)
    ratio = rng.uniform(*cfg.elongation, m)
    fig_kind, fig_diam, fig_ratio = _figures(p.d, rng, m)
    kind = np.where(body, fig_kind, NUCLEUS)
    diam, ratio = np.where(body, fig_diam, diam), np.where(body, fig_ratio, ratio)
    outline = _outlines(rng, m, p.irregularity + np.where(body, _FIGURE_IRREGULARITY, 0.0))
    rim = p.rim * rng.uniform(0.5, 1.5, m) * ~body
    level = np.exp(cfg.brightness_sd * rng.standard_normal(m))
    dim = rng.random(m) < p.dim_fraction
    level = np.where(dim, rng.uniform(0.1, 0.4, m), level)
    if cfg.bright_fraction[1] > 0:  # drawn by the config, not the image's value: the stream stays value-free
        bright = (rng.random(m) < p.bright_fraction) & ~dim
        level = np.where(bright, level * np.exp(rng.uniform(math.log(2.0), math.log(8.0), m)), level)
    level = np.where(body, rng.uniform(1.5, 3.0, m), level)
    defocus = (rng.random(m) < p.defocus_fraction) & ~body
    sigma = np.where(defocus, rng.uniform(0.05, _DEFOCUS_MAX, m) * diam, 0.0)
    # a disk of radius R blurred by sigma keeps 1 - exp(-R^2 / 2 sigma^2) of its centre brightness;
    # the light spread in depth dims it more
    radius = diam / 2
    kept = -np.expm1(-(radius**2) / (2 * np.maximum(sigma, 1e-9) ** 2)) / (1 + sigma / radius)
    level = level * np.where(defocus, kept, 1.0)
    return Cells(
        x=xy[:, 0], y=xy[:, 1], a=radius * np.sqrt(ratio), b=radius / np.sqrt(ratio),
        theta=rng.uniform(0.0, np.pi, m), outline=outline, edge=1.0 + 2.5 * sigma, level=level,
        dome=rng.uniform(0.3, 0.8, m), rim=rim, kind=kind, layer=np.where(defocus, PLAIN, TEXTURED),
    )


def _cluster_layout(cfg: NucleiConfig, p: ImageDraw, rng, target: int) -> tuple[np.ndarray | None, float]:
    """Cluster centres (None = uniform placement) and the cluster SD, wide enough to hold its cells."""
    if not p.clusters:
        return None, 0.0
    centres = rng.uniform(0, cfg.size, (p.clusters, 2))
    sd = max(rng.uniform(0.05, 0.2) * cfg.size, 0.5 * p.d * math.sqrt(max(target, 1) / p.clusters))
    return centres, sd


def _accept(occupied: np.ndarray, stencils: np.ndarray, rows, cols, limit, need: int) -> list[int]:
    """Indices (in order) of the candidates accepted one after the other: a candidate is accepted when
    at most ``limit`` of its stencil pixels are already occupied; accepted stencils are added to
    ``occupied``. Stops after ``need`` acceptances."""
    width = stencils.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(occupied, (width, width))
    # overlap only grows as objects are added: over the limit now means rejected
    over = np.count_nonzero(windows[rows, cols] & stencils, axis=(1, 2))
    keep = []
    for j in np.flatnonzero(over <= limit):
        occ = occupied[rows[j] : rows[j] + width, cols[j] : cols[j] + width]
        st = stencils[j]
        if np.count_nonzero(occ & st) > limit[j]:
            continue
        occ |= st
        keep.append(int(j))
        if len(keep) == need:
            break
    return keep


def place_cells(cfg: NucleiConfig, p: ImageDraw, rng, layers: Layers) -> Cells:
    """Place up to ``n_nuclei + n_bodies`` labelled objects with the overlap rule, adding each accepted
    one to ``layers``; returns them in placement order. Candidates are drawn in batches sized by the
    acceptance rate so far; within a batch, groups of similar size are decided in a random order (so no
    size is favoured when space runs out)."""
    target = p.n_nuclei + p.n_bodies
    centres, sd = _cluster_layout(cfg, p, rng, target)
    occupied = np.zeros((layers.width, layers.width), dtype=bool)
    placed: list[Cells] = []
    n_placed = tried = 0
    max_candidates = 8 * target + 64
    while n_placed < target and tried < max_candidates:
        rate = max(n_placed / tried, 0.05) if tried else 1.0
        m = int(min(max(math.ceil(1.3 * (target - n_placed) / rate), 16), max_candidates - tried))
        tried += m
        cand = _candidates(cfg, p, rng, _positions(cfg.size, rng, m, centres, sd))
        groups = list(groups_by_reach(cand.reach()))
        for k in rng.permutation(len(groups)):
            group, radius = groups[k]
            if n_placed == target:
                break
            cells = cand.take(group)
            rho, m_out = shape_geometry(cells, radius)
            stencils = rho <= m_out
            rows = np.floor(cells.y).astype(np.intp) + layers.pad - radius
            cols = np.floor(cells.x).astype(np.intp) + layers.pad - radius
            limit = p.overlap * stencils.sum(axis=(1, 2))
            keep = _accept(occupied, stencils, rows, cols, limit, target - n_placed)
            if keep:
                kept, pair = cells.take(keep), cells.kind[keep] == PAIR
                if pair.any():
                    single = np.flatnonzero(~pair)
                    draw_objects(layers, kept.take(single), (rho[keep][single], m_out[keep][single]))
                    daughters = split_pairs(kept.take(np.flatnonzero(pair)))
                    draw_objects(layers, daughters)
                    inside = (daughters.x >= 0) & (daughters.x < cfg.size) & (daughters.y >= 0) & (daughters.y < cfg.size)
                    kept = Cells.concat([kept.take(single), daughters.take(inside)])  # a daughter off the image is not labelled
                else:
                    draw_objects(layers, kept, (rho[keep], m_out[keep]))
                placed.append(kept)
                n_placed += len(keep)
    return Cells.concat(placed) if placed else _no_cells()


def draw_objects(layers: Layers, cells: Cells, geometry=None) -> None:
    """Add ``cells`` to ``layers`` (pressed ones with their :func:`contact_weights`); ``geometry``: their
    ``(rho, m)`` when already computed in one window size."""
    parts = [(cells, geometry)] if geometry is not None else [
        (cells.take(g), shape_geometry(cells.take(g), radius)) for g, radius in groups_by_reach(cells.reach())]
    for c, (rho, m) in parts:
        alpha = coverage_alpha(c, rho, m)
        weights = contact_weights(c, rho, m, alpha) if layers.pressed and (c.layer == TEXTURED).any() else None
        layers.add(c.layer, c.x, c.y, shape_values(c, rho, m, alpha), weights)


def _no_cells() -> Cells:
    empty = np.empty(0)
    return Cells(x=empty, y=empty, a=empty, b=empty, theta=empty, outline=np.empty((0, OUTLINE_SAMPLES), np.float32),
                 edge=empty, level=empty, dome=empty, rim=empty, kind=np.empty(0, int), layer=np.empty(0, int))


# -- unlabelled structures ----------------------------------------------------------------------------
def spot_tiles(x, y, sigma, amp, radius: int, flat: bool = False) -> np.ndarray:
    """float32 (M, 2R+1, 2R+1) Gaussian spots ``amp * exp(-r^2 / 2 sigma^2)`` in windows placed like
    :func:`shape_geometry`; ``flat``: flat-topped ``amp * exp(-(r^2 / 2 sigma^2)^2)``."""
    f32 = np.float32
    off = np.arange(-radius, radius + 1, dtype=f32) + f32(0.5)
    dx = ((np.floor(x) - x).astype(f32)[:, None] + off)[:, None, :]
    dy = ((np.floor(y) - y).astype(f32)[:, None] + off)[:, :, None]
    q = (dx * dx + dy * dy) * (0.5 / np.asarray(sigma, f32) ** 2)[:, None, None]
    if flat:
        q *= q
    return np.exp(-q) * np.asarray(amp, f32)[:, None, None]


def fibre_tiles(x, y, theta, half, width, level, radius: int) -> np.ndarray:
    """float32 (M, 2R+1, 2R+1) straight fibres: ``level * exp(-dist^2 / 2 width^2)`` of the distance to
    a segment of half-length ``half`` through (x, y) at angle ``theta``."""
    f32 = np.float32
    off = np.arange(-radius, radius + 1, dtype=f32) + f32(0.5)
    dx = ((np.floor(x) - x).astype(f32)[:, None] + off)[:, None, :]
    dy = ((np.floor(y) - y).astype(f32)[:, None] + off)[:, :, None]
    c = np.cos(theta).astype(f32)[:, None, None]
    s = np.sin(theta).astype(f32)[:, None, None]
    h = np.asarray(half, f32)[:, None, None]
    along = np.clip(dx * c + dy * s, -h, h)
    ex, ey = dx - along * c, dy - along * s
    k = (-0.5 / np.asarray(width, f32) ** 2)[:, None, None]
    return np.exp((ex * ex + ey * ey) * k) * np.asarray(level, f32)[:, None, None]


def _spots_in(h: Cells, rng, reach: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One point per row of ``h``: at a uniform angle, ``reach`` (low, high) of the way to its outline."""
    n = len(h)
    r, phi = rng.uniform(*reach, n), rng.uniform(0.0, 2 * np.pi, n)
    u, v = r * h.a * np.cos(phi), r * h.b * np.sin(phi)
    return h.x + u * np.cos(h.theta) - v * np.sin(h.theta), h.y + u * np.sin(h.theta) + v * np.cos(h.theta)


def _add_spots(layers: Layers, x, y, sigma, amp, flat: bool) -> None:
    for g, radius in groups_by_reach(3 * sigma):
        layers.add(np.full(len(g), TEXTURED), x[g], y[g], spot_tiles(x[g], y[g], sigma[g], amp[g], radius, flat))


def add_nucleoli(cfg: NucleiConfig, p: ImageDraw, cells: Cells, rng, layers: Layers) -> None:
    """Inside in-focus nuclei, with probability ``cfg.nucleoli`` each: 1-3 nucleoli (flat-topped dark
    spots, 0.1-0.25 d across, 15-50% deep; one in four bright instead), and in images with
    ``chromocentres`` 3-8 small bright spots (0.05-0.1 d). Around each mitotic figure: 3-8 bright
    spots out to its outline and past it (the condensed chromosomes' ragged edge). Never labelled."""
    host = cells.take(np.flatnonzero((cells.kind == NUCLEUS) & (cells.layer == TEXTURED)))
    has = rng.random(len(host)) < cfg.nucleoli
    h = host.take(np.repeat(np.arange(len(host)), np.where(has, rng.integers(1, 4, len(host)), 0)))
    x, y = _spots_in(h, rng, (0.0, 0.55))
    size = np.sqrt(h.a * h.b)  # the host's radius
    sign = np.where(rng.random(len(h)) < 0.25, 1.0, -1.0)
    _add_spots(layers, x, y, np.maximum(size * rng.uniform(0.1, 0.25, len(h)) / 1.29, 0.5),
               h.level * rng.uniform(0.15, 0.5, len(h)) * sign, flat=True)
    h = host.take(np.repeat(np.arange(len(host)), np.where(has & p.chromocentres, rng.integers(3, 9, len(host)), 0)))
    x, y = _spots_in(h, rng, (0.0, 0.8))
    _add_spots(layers, x, y, np.maximum(np.sqrt(h.a * h.b) * rng.uniform(0.05, 0.1, len(h)) / 1.2, 0.4),
               h.level * rng.uniform(0.3, 0.8, len(h)), flat=False)
    figures = cells.take(np.flatnonzero(cells.kind == BODY))
    h = figures.take(np.repeat(np.arange(len(figures)), rng.integers(3, 9, len(figures))))
    x, y = _spots_in(h, rng, (0.3, 1.15))
    _add_spots(layers, x, y, np.maximum(np.sqrt(h.a * h.b) * 0.2, 0.5), h.level * rng.uniform(0.3, 0.8, len(h)),
               flat=False)


def add_debris(cfg: NucleiConfig, p: ImageDraw, rng, layers: Layers) -> None:
    """Unlabelled specks (small dim irregular shapes) and fibres (thin lines): ``Poisson(debris x
    max(n_nuclei, 20))`` of them, 30% fibres."""
    size, d = cfg.size, p.d
    n = int(rng.poisson(p.debris * max(p.n_nuclei, 20)))
    fibre = rng.random(n) < 0.3
    ns, nf = int(n - fibre.sum()), int(fibre.sum())
    xy = rng.uniform(0, size, (ns, 2))
    diam = np.maximum(d * rng.uniform(0.12, 0.35, ns), 1.2)
    ratio = rng.uniform(1.0, 2.5, ns)
    specks = Cells(x=xy[:, 0], y=xy[:, 1], a=diam / 2 * np.sqrt(ratio), b=diam / 2 / np.sqrt(ratio),
                   theta=rng.uniform(0, np.pi, ns), outline=_outlines(rng, ns, np.full(ns, 0.25)),
                   edge=rng.uniform(1.0, 2.0, ns), level=rng.uniform(0.05, 0.3, ns), dome=np.zeros(ns),
                   rim=np.zeros(ns), kind=np.full(ns, SPECK), layer=np.full(ns, PLAIN))
    draw_objects(layers, specks)
    fx, fy = rng.uniform(0, size, nf), rng.uniform(0, size, nf)
    theta, half = rng.uniform(0, np.pi, nf), d * rng.uniform(0.5, 1.25, nf)
    width, level = rng.uniform(0.4, 1.0, nf), rng.uniform(0.05, 0.25, nf)
    for g, radius in groups_by_reach(half + 3 * width):
        tiles = fibre_tiles(fx[g], fy[g], theta[g], half[g], width[g], level[g], radius)
        layers.add(np.full(len(g), PLAIN), fx[g], fy[g], tiles)


def blobs(size: int, d: float, debris: float, rng) -> np.ndarray:
    """float32 (size, size): ``Poisson(4 x debris)`` large smooth dim Gaussian blobs (diameter 1.5-4 d,
    peak 0.03-0.15); never labelled."""
    n = int(rng.poisson(4 * debris))
    cx, cy = rng.uniform(0, size, n), rng.uniform(0, size, n)
    sigma, level = d * rng.uniform(1.5, 4.0, n) / 2.5, rng.uniform(0.03, 0.15, n)
    return gaussian_sum(size, cx, cy, sigma, level)


# -- whole-image fields, optics and camera ------------------------------------------------------------
def smooth_noise(rng, size: int, sigma: float, fine: float | None = None, grain: float = 0.0) -> np.ndarray:
    """White noise smoothed (FFT, periodic) by a Gaussian of SD ``sigma`` px; float32, zero mean, unit SD.
    With ``fine``: a mix of that and the noise smoothed by SD ``fine``, each of equal variance
    before weighting ``1 - grain`` and ``grain`` (one FFT pair either way)."""
    spectrum = sfft.rfft2(rng.standard_normal((size, size), dtype=np.float32))

    def gauss(sd):  # transfer function, scaled so each filtered noise has the same variance
        k = np.float32(-2 * np.pi**2 * sd * sd)
        fy = np.exp(k * sfft.fftfreq(size).astype(np.float32) ** 2)
        fx = np.exp(k * sfft.rfftfreq(size).astype(np.float32) ** 2)
        return fy[:, None] * fx[None, :] * np.float32(sd)

    if fine is None or grain <= 0:
        transfer = gauss(sigma)
    elif grain >= 1:
        transfer = gauss(fine)
    else:
        transfer = gauss(sigma) * np.float32(1 - grain) + gauss(fine) * np.float32(grain)
    field = sfft.irfft2(spectrum * transfer, s=(size, size))
    field -= field.mean()
    return field / np.float32(max(float(field.std()), 1e-12))


def gaussian_sum(size: int, cx, cy, sigma, level) -> np.ndarray:
    """float32 (size, size): the sum of isotropic Gaussians ``level * exp(-r^2 / 2 sigma^2)``, computed
    as one sum of outer products of their separable factors (``einsum``: a BLAS matrix product of so
    thin a factor is slower, and threaded)."""
    grid = np.arange(size, dtype=np.float32) + np.float32(0.5)
    sigma = np.asarray(sigma, np.float32)[:, None]
    gx = np.exp(np.float32(-0.5) * ((grid[None, :] - np.asarray(cx, np.float32)[:, None]) / sigma) ** 2)
    gy = np.exp(np.float32(-0.5) * ((grid[None, :] - np.asarray(cy, np.float32)[:, None]) / sigma) ** 2)
    return np.einsum("ky,kx->yx", gy * np.asarray(level, np.float32)[:, None], gx)


def autofluorescence(size: int, rng) -> np.ndarray:
    """float32 (size, size), zero mean, unit SD: a smooth field of 6 broad Gaussians of random sign."""
    n = 6
    field = gaussian_sum(size, rng.uniform(-0.2, 1.2, n) * size, rng.uniform(-0.2, 1.2, n) * size,
                         rng.uniform(0.1, 0.3, n) * size, rng.standard_normal(n))
    field -= field.mean()
    return field / np.float32(max(float(field.std()), 1e-12))


def illumination_field(size: int, depth: float, rng) -> np.ndarray:
    """float32 (size, size) in [1 - depth, 1]: a random mix of vignetting (around an off-centre
    point) and a linear gradient, rescaled so its darkest pixel is ``1 - depth``."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    cx, cy = rng.uniform(0.2, 0.8, 2)
    angle, mix = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 1.0)
    gx = mix * (grid - cx) ** 2 + (1 - mix) * np.cos(angle) * grid
    gy = mix * (grid - cy) ** 2 + (1 - mix) * np.sin(angle) * grid
    shade = gy[:, None] + gx[None, :]
    lo, hi = float(shade.min()), float(shade.max())
    return (1.0 - depth * (shade - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def optics(layers: np.ndarray, p: ImageDraw, size: int, rng, extra: np.ndarray) -> np.ndarray:
    """Expected photons per pixel, float32 (size, size): texture x textured layer + plain layer +
    ``extra`` + background (with autofluorescence), PSF-blurred, times the illumination, times photons."""
    texture = smooth_noise(rng, size, max(p.d / 12, 0.6), max(p.d / 40, 0.6), p.grain)
    # log-normal modulation keeps the mean brightness and stays positive
    signal = layers[0] * np.exp(np.float32(p.texture) * texture - np.float32(p.texture**2 / 2))
    signal += layers[1]
    signal += extra
    # log-normal, so the dimmest background fades smoothly instead of clipping flat at 0
    signal += np.float32(p.background) * np.exp(np.float32(0.5) * autofluorescence(size, rng) - np.float32(0.125))
    np.maximum(signal, 0, out=signal)
    if p.blur > 0:
        signal = ndimage.gaussian_filter(signal, p.blur, truncate=3.0)
    signal *= illumination_field(size, p.illumination, rng)
    signal *= np.float32(p.photons)
    return signal


@functools.cache
def poisson_table() -> np.ndarray:
    """uint8 (Q + 1, G): the inverse CDF of Poisson(lam), lam = i x POISSON_EXACT_BELOW / Q, at the
    probabilities (g + 0.5) / G: ``table[i, floor(u G)]`` for uniform ``u`` is a Poisson draw to within
    lam +- 0.005 and 1/G in probability."""
    q, g = _POISSON_Q, _POISSON_G
    lam = np.arange(q + 1) * (POISSON_EXACT_BELOW / q)
    k = np.arange(64)
    log_lam = np.log(np.maximum(lam, 1e-300))[:, None]
    pmf = np.exp(k * log_lam - lam[:, None] - np.cumsum(np.log(np.maximum(k, 1)))[None, :])
    pmf[0] = (k == 0)  # lam = 0: always 0
    cdf = np.cumsum(pmf, axis=1)
    u = (np.arange(g) + 0.5) / g
    return np.stack([np.searchsorted(row, u, side="right") for row in cdf]).astype(np.uint8)


def photon_counts(expected: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, variance)`` float32: below POISSON_EXACT_BELOW expected photons a Poisson draw
    (:func:`poisson_table`) with variance 0 left; from there on the expectation itself with its Poisson
    variance left for a Gaussian draw (the normal approximation)."""
    counts = expected.copy()
    low = np.flatnonzero(expected.ravel() < POISSON_EXACT_BELOW)
    lam_index = np.rint(expected.ravel()[low] * np.float32(_POISSON_Q / POISSON_EXACT_BELOW)).astype(np.intp)
    u_index = (rng.random(len(low), dtype=np.float32) * np.float32(_POISSON_G)).astype(np.intp)
    np.minimum(u_index, _POISSON_G - 1, out=u_index)
    counts.ravel()[low] = poisson_table()[lam_index, u_index]
    variance = expected.copy()
    variance.ravel()[low] = 0.0
    return counts, variance


def camera(expected: np.ndarray, p: ImageDraw, rng) -> np.ndarray:
    """Camera units, float32: ``gain x photons + offset`` with Poisson photon noise (see
    :func:`photon_counts`) and Gaussian read noise, drawn together as one Gaussian where the photon
    noise is approximated; with ``saturate`` the brightest ``saturated`` share of the nucleus pixels
    (expected at least a quarter of a typical nucleus; the whole image's top 1% when there are none)
    clip to one level."""
    counts, variance = photon_counts(expected, rng)
    gain = np.float32(p.gain)
    variance *= gain * gain
    variance += np.float32(p.read_noise) ** 2
    image = rng.standard_normal(expected.shape, dtype=np.float32)
    image *= np.sqrt(variance)
    image += counts * gain + np.float32(p.offset)
    if p.saturate:
        bright = image[expected >= np.float32(0.25 * p.photons)]
        values, share = (bright, p.saturated) if bright.size >= 20 else (image.ravel(), 0.01)
        k = int((1.0 - share) * (values.size - 1))
        np.minimum(image, np.partition(values, k)[k], out=image)
    return image


def to_dtype(image: np.ndarray, p: ImageDraw, rng) -> np.ndarray:
    """uint16: camera units rounded and clipped to 0..65535. uint8: minus a random share of the
    image minimum, scaled so the maximum lands at 255 when saturated, else at 7-100% of 255
    (log-uniform: dim 8-bit images keep few grey levels)."""
    if p.dtype == "uint16":
        return np.clip(np.rint(image), 0, 65535).astype(np.uint16)
    lo = float(image.min()) * rng.uniform(0.0, 1.0)
    top = 255.0 if p.saturate else 255.0 * math.exp(rng.uniform(math.log(_DIM8[0]), math.log(_DIM8[1])))
    scale = np.float32(top / max(float(image.max()) - lo, 1e-6))
    return np.clip(np.rint((image - np.float32(lo)) * scale), 0, 255).astype(np.uint8)


# -- the synthesizer ----------------------------------------------------------------------------------
def render_cells(cfg: NucleiConfig, context, rng: np.random.Generator) -> tuple[np.ndarray, Cells, ImageDraw]:
    """One image, its labelled objects (:class:`Cells`, placement order, in the image's pixels) and the
    image's draws. With a ``rescale`` factor f the microscope image is rendered at side ``size / f``
    (nuclei ``d / f``) and resized to ``size`` (:func:`resample`), as ``count`` resizes an image before
    counting it."""
    p = draw_image(cfg, rng)
    native = min(max(round(cfg.size / p.rescale), 16), 8192)
    k = cfg.size / native  # image pixels per microscope pixel
    at = replace(cfg, size=native) if native != cfg.size else cfg
    q = replace(p, d=p.d / k) if native != cfg.size else p
    layers = Layers(native, int(math.ceil(max_reach(at, q.d))), q.pressed, q.seam)
    cells = place_cells(at, q, rng, layers)
    add_nucleoli(at, q, cells, rng, layers)
    add_debris(at, q, rng, layers)
    extra = blobs(native, q.d, q.debris, rng)
    image = camera(optics(layers.total(), q, native, rng, extra), q, rng)
    if native != cfg.size:
        image, cells = resample(image, cfg.size), cells.scaled(k)
    return to_dtype(image, p, rng), cells, p


def resample(image: np.ndarray, size: int) -> np.ndarray:
    """float32 ``image`` resized to ``size`` x ``size``: bilinear, antialiased when shrinking (Pillow, as
    ``count`` resizes); pixel ``i`` spans ``[i, i + 1)`` in either grid, so a point ``x`` maps to
    ``x * size / side``."""
    from PIL import Image

    return np.asarray(Image.fromarray(image, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32)


def labelled(cfg: NucleiConfig, cells: Cells) -> np.ndarray:
    """Boolean mask of the drawn objects that are labelled cells: every nucleus and body, except, with
    ``label_defocused=false``, nuclei whose defocus blur sigma exceeds ``defocus_negative`` x their diameter."""
    if cfg.label_defocused:
        return np.ones(len(cells), dtype=bool)
    sigma = (cells.edge - 1.0) / 2.5  # edge = 1 + 2.5 sigma (see _candidates)
    diameter = 2.0 * np.sqrt(cells.a * cells.b)
    return ~((cells.kind == NUCLEUS) & (sigma > cfg.defocus_negative * diameter))


def render(cfg: NucleiConfig, context, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 or uint16, size x size) and the exact centres (N, 2) of (x, y) of its labelled
    nuclei and bodies (:func:`labelled`)."""
    image, cells, _ = render_cells(cfg, context, rng)
    return image, cells.points[labelled(cfg, cells)]


def prepare(cfg) -> None:
    """Nothing to load before rendering (the synthesizer hook's ``prepare``)."""
    return None


def sample(diameter: float, textured: bool = True, size: int | None = None, seed: int = 0,
           **settings) -> tuple[np.ndarray, np.ndarray]:
    """A test image of nuclei of one ``diameter`` (px) and its exact centres, as :func:`render`.

    ``textured``: chromatin texture with fine grain, nucleoli and a bright rim in every nucleus;
    otherwise smooth nuclei (no texture, nucleoli or rim). The field is side ``size`` (default: about
    6 diameters, at least 256), 15% covered, no debris, no saturation, uint16; ``settings`` override
    any :class:`NucleiConfig` field, e.g. ``sample(30, coverage=(0.4, 0.4), pressed=1.0)``.
    """
    look = dict(texture=(0.5, 0.5), grain=(0.5, 0.5), nucleoli=1.0, rim=(0.3, 0.3)) if textured else dict(
        texture=(0.0, 0.0), nucleoli=0.0, rim=(0.0, 0.0))
    side = size or max(256, int(math.ceil(6 * diameter / 64)) * 64)
    fixed = dict(size=side, diameter=(float(diameter), float(diameter)), coverage=(0.15, 0.15),
                 debris=(0.0, 0.0), saturation=0.0, dtype="uint16", **look)
    return render(NucleiConfig(**{**fixed, **settings}), None, image_rng(seed, 0))
