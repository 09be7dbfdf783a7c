"""The trust flag of a count: the counts CSV's ``qc`` column.

A count is only as good as the scale it was made at and the kind of image it was made on. Every counted
image is checked against the measurement that rescaled it (:class:`cellxfer.scale.Estimate`, made by
``--diameter auto``) and gets ``ok`` or the reasons not to trust it, joined by ``;``:

- ``no-nuclei``: nothing nucleus-like was found to measure, so the image was counted unscaled;
- ``scale-unsure``: the nuclei found vary in size too much for one diameter to stand for them
  (the weighted 75th / 25th percentile ratio above :attr:`QCRules.spread`);
- ``outside-sizes``: the nuclei are too small or too large for the model even after the largest resize
  (:data:`cellxfer.scale.MIN_FACTOR`, :data:`~cellxfer.scale.MAX_FACTOR`);
- ``crowded``: most nuclei touch (share measured in clumps above :attr:`QCRules.clumped`): counts of
  touching nuclei are the least certain;
- ``saturated``: a share of the nuclei's pixels above :attr:`QCRules.saturated` sits at the image's
  maximum value (clipped camera or conversion);
- ``disagrees``: the model's count and the number of nuclei the segmentation stands for disagree: the
  count is below :attr:`QCRules.fewer` times that number (nuclei the segmentation sees and the model does
  not: dim nuclei beside bright ones are what a counter misses most) or above :attr:`QCRules.more` times it
  (density the model reads unlike nuclei). The bounds are uneven because the segmentation itself
  undercounts crowded fields (a clump stands for its area over one nucleus's), so a count above it is
  normal there and one below it is not.
- ``mixed-brightness``: a few nuclei far brighter than the rest (mitotic, H2B-bright): the typical nucleus's
  peak lies below :attr:`QCRules.dim` times the peak of the nuclei the scale was measured on
  (:attr:`cellxfer.scale.Estimate.dim`). The scale then rests on those few, and the percentile normalisation
  puts the rest too dim: counts of such fields run low (a tenth of the nuclei made 5x brighter: 19-46% error
  per image on the validation part against 8-19% as they are). A counter may lift such a field's mid-tones
  (:meth:`cellxfer.counter.model.Normalization.lift_power`; the default counter does: 18-39%), but the count
  stays less certain (docs' accuracy page).
- ``uncertain``: many of the blobs of the model's own density map are partial, of a mass between
  :data:`PARTIAL` nuclei (the model half-believes them: dim nuclei, debris), more than
  :attr:`QCRules.partial` of them per counted nucleus (:func:`partial_share`).

Whatever the ``--diameter``, a reason about the file itself comes first:

- ``empty-tiles``: some strips or tiles of the TIFF are not in the file (offset or byte count 0: a sparse
  file, or one damaged or not written to the end) and were read as zeros
  (:func:`cellxfer.imageio.empty_tiles`; a warning line says how many): the count misses what they held.

With a fixed ``--diameter`` or ``--diameter off`` nothing is measured and the column says ``unchecked`` (or
only the file's reason).
The thresholds were chosen on the validation part of dsb2018-fluo and the IDCIA 90 (the ``qc_sweep`` that
``scripts/bench_transfer.py --multi-source MODEL --part val`` writes);
how often the flag catches a bad count is in the docs' accuracy page.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellxfer.counter.model import Normalization
from cellxfer.density.blobs import LEVEL, readable

OK, UNCHECKED = "ok", "unchecked"
PARTIAL = (0.15, 0.6)  # the mass (in nuclei) of a blob of the density map the model half-believes


def partial_share(density_map) -> float | None:
    """Blobs of a count's :class:`cellxfer.count.parts.DensityMap` (:func:`cellxfer.density.blobs.find_blobs`
    at :data:`cellxfer.density.blobs.LEVEL`)
    whose mass lies in :data:`PARTIAL`, per nucleus of the map's total; None without a map or with one of
    blocks too coarse to separate nuclei (:func:`cellxfer.density.blobs.readable`; touching nuclei make one
    blob of mass 2 or more, never a partial one)."""
    if not readable(density_map):
        return None
    import numpy as np

    mass = density_map.blobs(LEVEL).mass
    return float(np.count_nonzero((mass >= PARTIAL[0]) & (mass < PARTIAL[1])) / max(float(density_map.counts.sum()), 1.0))


@dataclass(frozen=True)
class ScaleInfo:
    """What the counts CSV and the flag need of an image's rescaling (picklable, for Dask workers):
    ``diameter`` that set it (None: not rescaled), the resize ``factor``, the auto ``estimate``
    (:class:`cellxfer.scale.Estimate`, None unless measured) and whether the factor was ``clipped``."""

    diameter: float | None = None
    factor: float = 1.0
    estimate: object = None
    clipped: bool = False

    @classmethod
    def of(cls, scaled) -> "ScaleInfo":
        """From a :class:`cellxfer.scale.Scaled` (or None: counted as it is, nothing measured)."""
        if scaled is None:
            return cls()
        return cls(scaled.diameter, scaled.factor, scaled.estimate, scaled.clipped)


@dataclass(frozen=True)
class QCRules:
    """Thresholds of the flag (module docs)."""

    spread: float = 2.0
    clumped: float = 0.75
    saturated: float = 0.1
    fewer: float = 0.7
    more: float = 2.5
    partial: float = 0.17
    dim: float = Normalization.LIFT_DIM[-1]  # where a counter's lift of mixed-brightness fields stops (one number)

    def reasons(self, count: float | None, info: ScaleInfo, partial: float | None = None, empty: int = 0) -> list[str]:
        """Why not to trust ``count`` (empty: nothing against it); ``partial``: :func:`partial_share` of its map;
        ``empty``: strips or tiles of the file read as zeros (:func:`cellxfer.imageio.empty_tiles`)."""
        out = ["empty-tiles"] if empty else []
        est = info.estimate
        if est is None:
            return out
        if est.diameter is None:
            return out + ["no-nuclei"]
        if est.spread is not None and est.spread > self.spread:
            out.append("scale-unsure")
        if info.clipped:
            out.append("outside-sizes")
        if est.clumped is not None and est.clumped > self.clumped:
            out.append("crowded")
        if est.saturated is not None and est.saturated > self.saturated:
            out.append("saturated")
        if count is not None and est.nuclei is not None:
            ratio = (count + 1.0) / (est.nuclei + 1.0)
            if not self.fewer <= ratio <= self.more:
                out.append("disagrees")
        if est.dim is not None and est.dim < self.dim:
            out.append("mixed-brightness")
        if partial is not None and partial > self.partial:
            out.append("uncertain")
        return out

    def judge(self, count: float | None, info: ScaleInfo, density_map=None, empty: int = 0) -> tuple[str, float | None]:
        """``(qc column, partial share)`` of a count made with ``density_map`` (its
        :class:`cellxfer.count.parts.DensityMap`, or None) of a file with ``empty`` segments read as zeros: the
        one place a count's flag is composed (``count`` and the benchmarks), :meth:`label` of it with the map's
        :func:`partial_share`."""
        partial = partial_share(density_map)
        return self.label(count, info, partial, empty), partial

    def label(self, count: float | None, info: ScaleInfo, partial: float | None = None, empty: int = 0) -> str:
        """The ``qc`` column: ``ok``, ``unchecked`` (nothing measured, nothing wrong with the file) or the
        reasons joined by ``;``."""
        reasons = self.reasons(count, info, partial, empty)
        if info.estimate is None and not reasons:
            return UNCHECKED
        return ";".join(reasons) or OK


RULES = QCRules()
