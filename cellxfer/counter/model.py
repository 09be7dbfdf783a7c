"""Counter networks and their checkpoint format (torch is imported lazily, by the functions).

A counter maps a normalised float32 window (N, in_chans, H, W) to (N, 1) cell counts (or, for a
density architecture, whatever its :class:`CounterMeta` ``output`` says). Everything ``count`` needs
to use a model travels with it in :class:`CounterMeta`: architecture, input channels, window size,
intensity normalisation, output kind, cellxfer version.

Checkpoint file: one ``.safetensors`` file; the weights are the model's ``state_dict`` and the
metadata key ``"cellxfer"`` holds ``CounterMeta`` as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from cellxfer.density.blobs import BlobRule
from cellxfer.errors import InputError
from cellxfer.weights import COUNTER_KEY as META_KEY  # one definition, beside the translator's

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Normalization:
    """Per-image intensity normalisation, applied to the whole image before windowing.

    ``x = (image - p_low) / (p_high - p_low)`` with ``p_low``/``p_high`` the ``low``/``high``
    percentiles of that image, so a model does not depend on one microscope's absolute brightness, gain,
    offset or bit depth (a float image in 0..1 normalises like the same image as uint8 or uint16). An
    image whose percentiles are equal (flat) is divided by ``eps`` instead. The percentiles of an image
    over ``SAMPLE`` pixels are those of an evenly strided sample of at most ``SAMPLE`` pixels (a slide
    costs no full-size sort; images up to that size are normalised exactly as before).
    """

    SAMPLE = 4_000_000

    low: float = 0.5
    high: float = 99.5
    eps: float = 1.0
    #: upper bound of normalised values (None: unbounded). In a sparse field the high percentile lies in
    #: the background, so nuclei normalise to tens; clipping keeps them in the range a model has seen.
    clip: float | None = None
    #: floor of the divisor in robust noise standard deviations (None: no floor). Pure noise (an empty
    #: field) spans only ~5 SDs between the percentiles, so percentile scaling blows it up to the contrast
    #: of nuclei; with a floor of e.g. 8 it stays faint. Images whose span exceeds the floor are unchanged.
    min_snr: float | None = None
    #: floor of the divisor in the image's grey-level steps (:func:`grey_step`; None: no floor). A sparse,
    #: dim 8-bit field's background spans a handful of levels, which percentile scaling stretches to the
    #: contrast of nuclei: the steps then read as faint nuclei, most of all once the image is enlarged to the
    #: model's nucleus size (a halved sparse IDCIA field counted 1,503 for 10 nuclei). Images spanning more
    #: steps than the floor are unchanged; an image of continuous values (no step) has no floor.
    min_levels: float | None = None
    #: upper bound of the normalised value of the image's ``TOP``-th percentile (None: none): the divisor is at
    #: least ``(p_TOP - p_low) / max_top``. In a sparse field the ``high`` percentile lies in the background,
    #: so percentile scaling stretches the background's noise, or its smooth unevenness once blurred or
    #: enlarged, to the contrast of nuclei, which the nuclei (the brightest ``100 - TOP`` percent) then
    #: exceed many times. Bounding how bright they come out bounds that stretch in any encoding (the
    #: ``min_levels`` floor does it for quantised data only): a dim sparse field smoothed to float counted 468
    #: for 10 nuclei. A field whose nuclei fill more than ``100 - high`` percent of the pixels is unchanged
    #: unless its brightest pixels outshine its ``high`` percentile more than ``max_top`` times.
    max_top: float | None = None
    TOP = 99.9
    #: power of the lift of mid-tones in a field of mixed brightness (None: never lifted). Where a few nuclei are
    #: far brighter than the rest (mitotic, H2B-bright), they set the percentiles and the others normalise to a
    #: fifth to a third of a typical nucleus's level, which a counter half-believes or misses. Where the scale
    #: estimate says so (:meth:`lift_power`), normalised values between ``LIFT_FLOOR`` and 1 are raised to this power
    #: within that span, ``v -> f + (1 - f) ((v - f) / (1 - f)) ** lift``: the background (below the floor) and
    #: the bright nuclei (above 1) stay as they are, a nucleus at 0.25 comes out at about 0.47 (``lift`` 0.5).
    lift: float | None = None
    LIFT_FLOOR = 0.1
    #: the scale estimate's :attr:`cellxfer.scale.Estimate.dim` (the typical nucleus's peak over the measured
    #: nuclei's) a field is lifted in: from the first (below it the "nuclei" are mostly not nuclei: outlines,
    #: background structure) to below the last (which the trust flag's ``mixed-brightness`` reads too:
    #: :attr:`cellxfer.count.qc.QCRules.dim`); fully from the middle one
    #: down, less and less above it, so a field near the edge (or the same field resized, its ``dim`` read a
    #: little differently) is counted about alike whichever side it falls
    LIFT_DIM = (0.03, 0.25, 0.5)

    def lift_power(self, estimate) -> float:
        """The power an image whose scale estimate is ``estimate`` (:class:`cellxfer.scale.Estimate`, or None:
        nothing measured) has its mid-tones raised to: :attr:`lift` where its ``dim`` lies in ``LIFT_DIM``'s
        first two, rising linearly to 1 (nothing lifted) at its last; 1 without ``dim`` or ``lift``."""
        dim = getattr(estimate, "dim", None)
        lo, full, hi = self.LIFT_DIM
        if self.lift is None or dim is None or not lo <= dim < hi:
            return 1.0
        return 1.0 - (1.0 - self.lift) * min(1.0, (hi - dim) / (hi - full))

    def levels(self, image, original=None, estimate=None) -> "Levels":
        """:class:`Levels` of a 2-D image (numpy or :class:`cellxfer.lazy.LazyImage`): ``(low level, divisor)``
        as float32 from the percentiles of the image, or of its strided sample over ``SAMPLE`` pixels (a lazy image is
        read in bands for it). The ``min_snr`` noise floor is measured on whole rows, every k-th row with
        k the smallest that keeps it to about ``SAMPLE`` pixels too, so neither sample grows with a
        slide (images up to ``SAMPLE`` pixels: the whole image, as before). The ``min_levels`` floor reads
        the grey step of ``original``, the image as given when ``image`` is a resized (float) copy of it
        (None: ``image`` itself), from a sample of the same size; without the floor nothing of it is read.
        Every block of the image is normalised with the same levels (:meth:`apply_levels`), so normalising
        by blocks equals normalising the whole image. ``estimate``: the image's scale estimate, which decides
        how far its mid-tones are lifted (:meth:`lift_power`)."""
        import numpy as np

        sample = self._sample(image)
        hist = histogram(sample)  # counted once for the percentiles and the grey step
        qs = (self.low, self.high) + ((self.TOP,) if self.max_top is not None else ())
        lo, hi, *top = percentiles(sample, qs, hist)
        span = float(hi - lo)
        if top:
            span = max(span, float(top[0] - lo) / self.max_top)
        if self.min_levels is not None:
            grey = grey_step(sample, hist) if original is None else grey_step(self._sample(original))
            if grey is not None:
                span = max(span, self.min_levels * grey)
        if self.min_snr is not None:  # noise of every k-th whole row (a lazy image: read in bands)
            from cellxfer.lazy import strided_sample

            h, w = image.shape
            rows = max(1, -(-h * w // self.SAMPLE))
            span = max(span, self.min_snr * noise_sd(strided_sample(image, rows, 1)))
        return Levels(np.float32(lo), np.float32(span if span > 0 else self.eps), self.lift_power(estimate))

    def _sample(self, image):
        """An evenly strided sample of a 2-D image of at most about ``SAMPLE`` pixels (the image itself when
        smaller)."""
        import numpy as np

        from cellxfer.lazy import strided_sample

        h, w = image.shape[:2]
        return strided_sample(image, max(1, int(np.ceil(np.sqrt(h * w / self.SAMPLE)))))

    def apply_levels(self, block: np.ndarray, levels: "Levels") -> np.ndarray:
        """2-D block (any dtype) -> float32, normalised with :class:`Levels` from :meth:`levels` (or
        :meth:`Levels.as_is` for an image already normalised). Elementwise, so normalising by blocks equals
        normalising whole."""
        import numpy as np

        out = (np.asarray(block, dtype=np.float32) - levels.low) / levels.span
        if levels.lift < 1:
            f = np.float32(self.LIFT_FLOOR)
            mid = (out > f) & (out < 1)
            out[mid] = f + (1 - f) * ((out[mid] - f) / (1 - f)) ** np.float32(levels.lift)
        return out if self.clip is None else np.minimum(out, np.float32(self.clip), out=out)

    def apply(self, image: np.ndarray, original=None, estimate=None) -> np.ndarray:
        """2-D (H, W) any dtype -> float32 (H, W); ``original``, ``estimate``: as :meth:`levels` takes them."""
        return self.apply_levels(image, self.levels(image, original, estimate))


class Levels(NamedTuple):
    """How an image is normalised (:meth:`Normalization.levels`): ``(value - low) / span``, its mid-tones raised
    to the power ``lift`` (:attr:`Normalization.lift`; 1: as they are)."""

    low: "np.float32"
    span: "np.float32"
    lift: float = 1.0

    @classmethod
    def as_is(cls) -> "Levels":
        """Levels that leave an image already normalised as it is: ``(value - 0) / 1``, nothing lifted."""
        import numpy as np

        return cls(np.float32(0.0), np.float32(1.0))


def histogram(values) -> "np.ndarray | None":
    """The count of each level of an unsigned image of up to 16 bits (``np.bincount``); None for any other
    dtype or an empty one. What :func:`percentiles` and :func:`grey_step` read, counted once by a caller that
    wants both."""
    import numpy as np

    a = np.asarray(values)
    return np.bincount(a.ravel()) if a.dtype in (np.uint8, np.uint16) and a.size else None


def percentiles(values, q, hist=None) -> "np.ndarray":
    """``np.percentile(values as float32, q)`` (float64, the default linear method) for a tuple ``q``; an
    unsigned image of up to 16 bits from its histogram (``hist``: :func:`histogram` of ``values``, if counted
    already): the same numbers, found by counting instead of a partial sort of a float32 copy (an 800 x 600
    uint8 image: about 1 ms instead of 5)."""
    import numpy as np

    a = np.asarray(values)
    hist = histogram(a) if hist is None else hist
    if hist is None:
        return np.percentile(np.asarray(a, dtype=np.float32), q)
    cum = np.cumsum(hist)
    n = a.size
    # numpy's linear method, step by step: virtual index (n - 1) q, its floor and the next order statistic
    # (both the last one at or past it, both the first below 0), their values, and _lerp's two formulas
    virtual = (n - 1) * np.true_divide(q, 100)
    below = np.floor(virtual)
    below[virtual >= n - 1] = -1
    below[virtual < 0] = 0
    below = below.astype(np.intp)
    above = np.where((below == -1) | (virtual < 0), below, below + 1)
    gamma = virtual - below
    lo = np.searchsorted(cum, np.where(below < 0, n - 1, below), side="right").astype(np.float32)
    hi = np.searchsorted(cum, np.where(above < 0, n - 1, above), side="right").astype(np.float32)
    step = hi - lo
    out = lo + step * gamma
    np.subtract(hi, step * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def grey_step(values, hist=None) -> float | None:
    """The smallest difference between two grey levels that occur in an image: for unsigned data of up to 16
    bits from its histogram (``hist``: :func:`histogram` of ``values``, if counted already; 1 for most; 257 for
    an 8-bit image stored as 16-bit x257); for any other dtype
    from an evenly strided sample of at most ``GREY_SAMPLE`` values, when it holds at most ``GREY_LEVELS``
    distinct ones (quantised data stored as float, e.g. 8-bit / 255); else, or for a flat image, None."""
    import numpy as np

    a = np.asarray(values)
    if a.size == 0:
        return None
    hist = histogram(a) if hist is None else hist
    if hist is not None:
        levels = np.flatnonzero(hist)
    else:
        flat = a.ravel()
        levels = np.unique(flat[::max(1, flat.size // GREY_SAMPLE)].astype(np.float64))
        if len(levels) > GREY_LEVELS:
            return None
    return float(np.diff(levels).min()) if len(levels) > 1 else None


GREY_SAMPLE, GREY_LEVELS = 65536, 4096


def robust_sd(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of Gaussian values, unmoved by a
    minority of outliers (nuclei in a background, edges among neighbour differences)."""
    import numpy as np

    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def noise_sd(image: np.ndarray) -> float:
    """Robust standard deviation of an image's pixel noise: :func:`robust_sd` of horizontal neighbour
    differences, / sqrt(2). 0 for images whose noise is below one grey level of their quantisation."""
    import numpy as np

    d = np.diff(np.asarray(image, dtype=np.float32), axis=-1)
    return robust_sd(d) / float(np.sqrt(2)) if d.size else 0.0


@dataclass(frozen=True)
class CounterMeta:
    """What travels with a counter: see module docs."""

    arch: str = "efficientnet_b0"
    in_chans: int = 1
    window: int = 256
    output: str = "count"  # "count": (N, 1) per window; "density": (N, 1, H, W) map summing to counts
    normalization: Normalization = field(default_factory=Normalization)
    arch_options: dict = field(default_factory=dict)
    #: nucleus diameter (pixels, as :func:`cellxfer.scale.estimate_diameter` measures it) the counter counts at:
    #: ``count``/``evaluate --diameter`` resize every image so its nuclei measure this
    #: (:meth:`cellxfer.scale.DiameterPolicy.scale`). Training writes the median over the training images; a
    #: counter may carry a size chosen on validation images instead (``extra["diameter_choice"]`` says how).
    #: None: unknown (no rescaling offered).
    diameter: float | None = None
    #: 10th and 90th percentiles of the training images' estimates: the sizes the model has seen (recorded
    #: with the model; counting reads only ``diameter``).
    diameter_range: tuple[float, float] | None = None
    #: how a density map becomes a count (:class:`cellxfer.density.blobs.BlobRule`, chosen on validation
    #: images: ``extra["blobs_choice"]`` says how); None: the map's sum.
    blobs: BlobRule | None = None
    version: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "the model") -> "CounterMeta":
        """The inverse of ``dataclasses.asdict``. Fields this cellxfer does not know (a model written by a
        newer one) are refused with :class:`InputError`: counting without them would give other numbers; so
        are values no cellxfer writes (damaged metadata: :func:`check_meta`)."""
        from cellxfer.weights import damaged_meta, refuse_unknown

        norm, blobs = d.get("normalization", {}), d.get("blobs")
        if not isinstance(norm, dict) or not isinstance(blobs, (dict, type(None))):
            raise damaged_meta(source, "normalization and blobs must be JSON objects")
        refuse_unknown(d, source, sorted(set(d) - {f.name for f in fields(cls)})
                       + sorted(f"normalization.{k}" for k in set(norm) - {f.name for f in fields(Normalization)}))
        try:
            meta = cls(**{**d, "normalization": Normalization(**norm), "blobs": BlobRule(**blobs) if blobs else None})
        except (TypeError, ValueError) as exc:
            raise damaged_meta(source, str(exc)) from None
        check_meta(meta, source)
        return meta

    @classmethod
    def from_json(cls, text: str, source: str = "the model") -> "CounterMeta":
        from cellxfer.weights import meta_object

        return cls.from_dict(meta_object(text, source), source)


def check_meta(meta: CounterMeta, source: str) -> None:
    """:func:`cellxfer.weights.damaged_meta` when a field of ``meta`` holds a value no cellxfer writes (a
    window of -32, percentiles 99:1, a diameter "abc"): it would stop counting with an internal error or
    count with a normalisation nobody chose."""
    from cellxfer.counter.head import head_for
    from cellxfer.weights import check_number, damaged_meta

    if not isinstance(meta.arch, str) or not meta.arch or not all(isinstance(x, dict) for x in (meta.arch_options, meta.extra)):
        raise damaged_meta(source, "arch must be a name, arch_options and extra JSON objects")
    check_number(source, "in_chans", meta.in_chans, 0, 64, whole=True)
    check_number(source, "window", meta.window, 0, 2 ** 16, whole=True)
    try:
        head_for(meta.output, meta.arch)
    except ValueError as exc:
        raise damaged_meta(source, str(exc)) from None
    n = meta.normalization
    check_number(source, "normalization.low", n.low, 0, 100, low_open=False)
    check_number(source, "normalization.high", n.high, n.low, 100)
    check_number(source, "normalization.eps", n.eps)
    for name in ("clip", "min_snr", "min_levels", "max_top", "lift"):
        if getattr(n, name) is not None:
            check_number(source, f"normalization.{name}", getattr(n, name), 0, 1 if name == "lift" else float("inf"))
    if meta.diameter is not None:
        check_number(source, "diameter", meta.diameter)
    if meta.diameter_range is not None:
        r = meta.diameter_range
        if not isinstance(r, (list, tuple)) or len(r) != 2:
            raise damaged_meta(source, f"diameter_range {r!r}: must be two numbers")
        check_number(source, "diameter_range[0]", r[0])
        check_number(source, "diameter_range[1]", r[1], r[0], low_open=False)


@dataclass(frozen=True)
class CounterArch:
    """A named builder: ``build(meta) -> torch.nn.Module`` (randomly initialised)."""

    name: str
    description: str
    build: Callable[[CounterMeta], Any]


def build_timm(meta: CounterMeta):
    """A timm model with one regression output and ``meta.in_chans`` input channels, no download."""
    import timm

    try:
        return timm.create_model(meta.arch, pretrained=False, num_classes=1, in_chans=meta.in_chans, **meta.arch_options)
    except RuntimeError as exc:  # unknown model name
        raise InputError(f"--arch {meta.arch}: {exc}; use a timm model name (timm.list_models()) or a registered counter architecture") from None


def build_counter(meta: CounterMeta):
    """Registered architecture ``meta.arch`` if a plugin provides it, else the timm model of that name."""
    from cellxfer.plugins import get_registry

    arch = get_registry().provided("cellxfer_counter_architectures").get(meta.arch)
    return arch.build(meta) if arch is not None else build_timm(meta)


def save_counter(path: str | os.PathLike, model, meta: CounterMeta) -> Path:
    """Write ``model``'s weights and ``meta`` to one safetensors file, atomically."""
    from dataclasses import replace

    import cellxfer
    from cellxfer.weights import save_module

    return save_module(path, model, {META_KEY: replace(meta, version=cellxfer.__version__).to_json()})


def read_meta(path: str | os.PathLike) -> CounterMeta:
    from cellxfer.weights import read_metadata

    return CounterMeta.from_json(read_metadata(path, META_KEY, "give a counter checkpoint (.safetensors) from train-count"), str(path))


def load_counter(path: str | os.PathLike):
    """``(model in eval mode on the CPU, CounterMeta)`` from a checkpoint written by :func:`save_counter`."""
    from cellxfer.weights import load_weights

    meta = read_meta(path)
    return load_weights(build_counter(meta), path, f"architecture '{meta.arch}'"), meta


def torch_runner(model, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a torch counter (put in eval mode) as a runner: numpy (N, C, H, W) -> numpy (N, ...)."""
    import torch

    model.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
