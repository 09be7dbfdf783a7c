"""The blobs of a density map: its connected regions above a level, each with its mass (in nuclei).

A density counter spreads a nucleus's unit of mass over a blob of about the nucleus's size. Read blob by
blob, the map says more than its sum: a blob of mass 0.4 is a nucleus the model half-believes (a dim
nucleus beside bright ones, in practice: counted by the sum as 0.4 of one), a blob of 2.1 is two or three
touching nuclei, and the thin mass outside every blob is no nucleus at all.

:class:`BlobRule` is the counting rule that reads a map so. A counter carries it in its metadata
(:attr:`cellxfer.counter.model.CounterMeta.blobs`), chosen on validation images like its counting size;
without one a count is the map's sum. :func:`find_blobs` is also what the trust flag reads
(:func:`cellxfer.count.qc.partial_share`); a map labels its blobs once (``DensityMap.blobs``).

Invariants: labelling uses the map as it is stored, a :class:`cellxfer.count.parts.DensityMap` of
``block`` x ``block`` pixel sums, cut at ``level * block**2``; only maps of ``block <= MAX_BLOCK`` are read
(coarser ones, a large slide's, merge neighbouring nuclei into one blob), so :meth:`BlobRule.count` is None
there and the count stays the map's sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: the metadata class is read by `cellxfer --help`'s imports
    import numpy as np

MAX_BLOCK = 3  # coarser maps (a slide's) do not separate nuclei
LEVEL = 0.0015  # density per pixel a map's blobs are cut at (the trust flag's; a rule may say another)


@dataclass(frozen=True)
class Blobs:
    """The blobs of a map: ``mass`` of each (in nuclei), and its mass-weighted centre ``y``, ``x`` in pixels
    of the model's grid (a map of ``block``-pixel blocks: block centres), in label order."""

    mass: np.ndarray
    y: np.ndarray
    x: np.ndarray


def find_blobs(counts: np.ndarray, block: int, level: float = LEVEL) -> Blobs:
    """The connected regions (4-connected) of ``counts`` (block sums of ``block`` x ``block`` pixels) above
    ``level`` per pixel; none (empty arrays) when nothing is above it."""
    import numpy as np
    from scipy import ndimage as ndi

    lab, n = ndi.label(counts > level * block ** 2)
    if not n:
        return Blobs(np.zeros(0), np.zeros(0), np.zeros(0))
    at = np.flatnonzero(lab)  # the blobs' pixels only (a small share of the map)
    label, w = lab.ravel()[at] - 1, counts.ravel()[at]
    mass = np.bincount(label, weights=w, minlength=n)
    y, x = np.divmod(at, counts.shape[1])
    centre = lambda c: (np.bincount(label, weights=w * c, minlength=n) / mass + 0.5) * block  # noqa: E731
    return Blobs(mass, centre(y), centre(x))


@dataclass(frozen=True)
class BlobRule:
    """A count read blob by blob (module docs): a blob of mass in ``[lo, hi)`` is one nucleus, a blob of
    ``hi`` or more counts by its mass (touching nuclei), lighter blobs and the mass outside every blob
    (cut at ``level`` per pixel) count nothing."""

    level: float = LEVEL
    lo: float = 0.25
    hi: float = 1.0

    def __post_init__(self):
        if not (0 < self.level and 0 <= self.lo < self.hi):
            raise ValueError(f"blob rule {self}: needs level > 0 and 0 <= lo < hi")

    def weights(self, m: np.ndarray) -> np.ndarray:
        """What each blob of masses ``m`` counts: 1 in ``[lo, hi)``, its mass from ``hi`` on, else 0."""
        import numpy as np

        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= self.hi, m, np.where(m >= self.lo, 1.0, 0.0))

    def of_masses(self, m: np.ndarray) -> float:
        """The count of blobs of masses ``m``."""
        return float(self.weights(m).sum())

    def count(self, density_map) -> float | None:
        """The count of a :class:`cellxfer.count.parts.DensityMap`; None for a map coarser than
        :data:`MAX_BLOCK` (its count is its sum)."""
        if density_map is None or density_map.block > MAX_BLOCK:
            return None
        return self.of_masses(density_map.blobs(self.level).mass)

    def region_counts(self, density_map, boxes: list) -> np.ndarray | None:
        """The count of each region ``(y0, x0, h, w)`` (model-grid pixels; regions partitioning the map, as
        a count's owned tiles do): what its blobs count, each blob in the region holding its centre, so they
        add up to :meth:`count`; None where :meth:`count` is."""
        import numpy as np

        if density_map is None or density_map.block > MAX_BLOCK:
            return None
        b = density_map.blobs(self.level)
        out = np.zeros(len(boxes))
        if len(boxes) and len(b.mass):
            box = np.asarray(boxes, dtype=np.float64)
            inside = ((b.y[:, None] >= box[:, 0]) & (b.y[:, None] < box[:, 0] + box[:, 2])
                      & (b.x[:, None] >= box[:, 1]) & (b.x[:, None] < box[:, 1] + box[:, 3]))
            np.add.at(out, inside.argmax(axis=1), self.weights(b.mass) * inside.any(axis=1))
        return out

    @classmethod
    def parse(cls, text: str) -> "BlobRule":
        """``LEVEL:LO:HI`` (e.g. ``0.002:0.25:1``), as scripts take it on the command line."""
        try:
            level, lo, hi = (float(v) for v in text.split(":"))
            return cls(level, lo, hi)
        except ValueError as exc:
            raise ValueError(f"blob rule {text!r}: {exc}; write LEVEL:LO:HI, e.g. 0.002:0.25:1") from None
