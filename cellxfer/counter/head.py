"""What a counter outputs, and everything that follows from it: one typed head per output kind.

A counter's ``CounterMeta.output`` (and, for the classical detector, its architecture) names its head;
:func:`head_of` is the only place that reads them. The head owns what would otherwise be ``if output ==
"density"`` / ``if arch == "log"`` checks across the packages:

- :meth:`Head.splitter`: how an image on the model's grid is cut into model inputs
  (:mod:`cellxfer.counter.splitters`; the merger of :mod:`cellxfer.count.parts` follows the splitter);
- :meth:`Head.point_finder`: how the output map becomes cell locations (None: the head makes no points);
- ``trained``: the counter was trained (not fitted), so counters of this head can be averaged (``ensemble``);
- ``learnt_density``: the output is a trained density, so counters can be adapted (``adapt-count``)
  and trained with the pixel-density loss;
- ``fully_convolutional``: inputs of any height and width (ONNX dynamic axes, TensorRT profile sides);
- :meth:`Head.train_options`: the architecture options training records in the checkpoint;

Invariant: ``count``, ``evaluate``, training validation, ``export`` and ``adapt-count`` all take these
from :func:`head_of`, so a counter is split, merged, exported and scored one way everywhere.
"""

from __future__ import annotations

from typing import ClassVar


class Head:
    """Base of the heads; see the module docstring for what each member means."""

    name: ClassVar[str]
    makes_points: ClassVar[bool] = False
    trained: ClassVar[bool] = True
    fully_convolutional: ClassVar[bool] = False

    @property
    def learnt_density(self) -> bool:
        """A trained map whose sum is the count and whose peaks are cells (adaptable, pixel-density loss)."""
        return self.trained and self.makes_points

    def splitter(self, meta):
        raise NotImplementedError

    def point_finder(self, meta):
        return None

    def train_options(self, sigma: float, crop: int) -> dict:
        return {}

    def dynamic_axes(self) -> dict:
        """ONNX dynamic axes of input and output."""
        axes = {0: "batch", 2: "height", 3: "width"} if self.fully_convolutional else {0: "batch"}
        return {"input": dict(axes), "output": dict(axes)}

    def trt_sides(self, meta) -> tuple[int, int, int]:
        """TensorRT profile sides ``(min, opt, max)``."""
        return (meta.window,) * 3

    def __repr__(self) -> str:
        return f"<{self.name} head>"


class CountHead(Head):
    """The model maps a ``window`` to its count; an image's count is the sum over a grid of windows."""

    name = "count"

    def splitter(self, meta):
        from cellxfer.counter.splitters import WindowGrid

        return WindowGrid(meta.window, meta.in_chans)


class DensityHead(Head):
    """The model maps an image to a density map whose sum is the count; points are its strongest local
    maxima (:class:`cellxfer.density.infer.DensityPeaks`); images are cut into overlapping owned tiles."""

    name = "density"
    makes_points = True
    fully_convolutional = True

    def splitter(self, meta):
        from cellxfer.counter.splitters import OwnedTiles
        from cellxfer.density.stitch import margin_of, tile_of

        return OwnedTiles(tile_of(meta), margin_of(meta), meta.in_chans)

    def point_finder(self, meta):
        from cellxfer.density.infer import DensityPeaks

        sigma = float((meta.arch_options or {}).get("sigma", 3.0))
        return DensityPeaks(sigma, max(1, int(round(sigma))))

    def train_options(self, sigma, crop):
        return {"sigma": sigma, "margin": crop // 8}

    def trt_sides(self, meta):
        """From the smaller of training crop and inference tile to the larger (up to the largest tile
        ``count`` sends a slide: :meth:`cellxfer.counter.splitters.OwnedTiles.for_shape`), optimised for the
        model's own tile."""
        from cellxfer.counter.splitters import OwnedTiles
        from cellxfer.density.stitch import tile_of

        tile = tile_of(meta)
        return min(meta.window, tile), tile, max(meta.window, tile * OwnedTiles.MAX_FACTOR)


class DetectionHead(DensityHead):
    """The classical LoG detector (:mod:`cellxfer.classical`): a map with 1.0 at each detected centre,
    split and merged like a density; its points are the marked pixels. Not a learnt density: it is fitted,
    not trained, and is neither averaged nor adapted."""

    name = "detections"
    trained = False

    def point_finder(self, meta):
        from cellxfer.density.infer import MarkedPixels

        return MarkedPixels()


COUNT, DENSITY, DETECTIONS = CountHead(), DensityHead(), DetectionHead()


def head_for(output: str, arch: str = "") -> Head:
    """The head of a counter with this ``output`` kind (``count`` or ``density``) and architecture."""
    if output == "count":
        return COUNT
    if output == "density":
        return DETECTIONS if arch == "log" else DENSITY
    raise ValueError(f"unknown counter output {output!r} (count or density)")


def head_of(meta) -> Head:
    """The head of a counter, from its :class:`cellxfer.counter.model.CounterMeta`."""
    return head_for(getattr(meta, "output", "count"), getattr(meta, "arch", ""))


def points_from_density(density, meta):
    """float64 (N, 2) of (x, y) cell locations of a whole density map (its head's point finder,
    :meth:`Head.point_finder`)."""
    import numpy as np

    finder = head_of(meta).point_finder(meta)
    xy, vals = finder.candidates(density)
    return finder.choose(xy, vals, float(np.asarray(density).sum(dtype=np.float64)))
