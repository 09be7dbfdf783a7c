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
whole (coarser ones, a large slide's, merge neighbouring nuclei into one blob), so :meth:`BlobRule.count` is
None there; such an image is read tile by tile instead (:meth:`BlobRule.tile_count`, on blocks of
``MAX_BLOCK``), each blob by the tile that owns its centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: the metadata class is read by `cellxfer --help`'s imports
    import numpy as np

MAX_BLOCK = 3  # coarser maps (a slide's) do not separate nuclei
LEVEL = 0.0015  # density per pixel a map's blobs are cut at (the trust flag's; a rule may say another)


def readable(density_map) -> bool:
    """Whether a :class:`cellxfer.count.parts.DensityMap` separates nuclei well enough to be read blob by blob
    whole (blocks of at most :data:`MAX_BLOCK` pixels); a coarser one, a large slide's, is read tile by tile
    (:meth:`BlobRule.tile_count`) and the trust flag reads none of it."""
    return density_map is not None and density_map.block <= MAX_BLOCK


@dataclass(frozen=True)
class Blobs:
    """The blobs of a map: ``mass`` of each (in nuclei), its mass-weighted centre ``y``, ``x`` in pixels of the
    model's grid (a map of ``block``-pixel blocks: block centres), in label order; ``owned``: the mass of each
    in an owned box (:func:`find_blobs`), else None."""

    mass: np.ndarray
    y: np.ndarray
    x: np.ndarray
    owned: np.ndarray | None = None


def find_blobs(counts: np.ndarray, block: int, level: float = LEVEL, owned: tuple | None = None) -> Blobs:
    """The connected regions (4-connected) of ``counts`` (block sums of ``block`` x ``block`` pixels) above
    ``level`` per pixel; none (empty arrays) when nothing is above it. ``owned`` ``(y0, y1, x0, x1)``, in
    pixels: also each blob's mass in the blocks whose centre lies in that box."""
    import numpy as np
    from scipy import ndimage as ndi

    lab, n = ndi.label(counts > level * block ** 2)
    if not n:
        return Blobs(np.zeros(0), np.zeros(0), np.zeros(0), None if owned is None else np.zeros(0))
    at = np.flatnonzero(lab)  # the blobs' pixels only (a small share of the map)
    label, w = lab.ravel()[at] - 1, counts.ravel()[at]
    mass = np.bincount(label, weights=w, minlength=n)
    y, x = np.divmod(at, counts.shape[1])
    centre = lambda c: (np.bincount(label, weights=w * c, minlength=n) / mass + 0.5) * block  # noqa: E731
    mine = None
    if owned is not None:
        cy, cx = (y + 0.5) * block, (x + 0.5) * block
        inside = (cy >= owned[0]) & (cy < owned[1]) & (cx >= owned[2]) & (cx < owned[3])
        mine = np.bincount(label[inside], weights=w[inside], minlength=n)
    return Blobs(mass, centre(y), centre(x), mine)


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
        if not readable(density_map):
            return None
        return self.of_masses(density_map.blobs(self.level).mass)

    def region_counts(self, density_map, boxes: list) -> np.ndarray | None:
        """The count of each region ``(y0, x0, h, w)`` (model-grid pixels; regions partitioning the map, as
        a count's owned tiles do): what its blobs count, each blob in the region holding its centre, so they
        add up to :meth:`count`; None where :meth:`count` is."""
        import numpy as np

        if not readable(density_map):
            return None
        b = density_map.blobs(self.level)
        out = np.zeros(len(boxes))
        if len(boxes) and len(b.mass):
            box = np.asarray(boxes, dtype=np.float64)
            inside = ((b.y[:, None] >= box[:, 0]) & (b.y[:, None] < box[:, 0] + box[:, 2])
                      & (b.x[:, None] >= box[:, 1]) & (b.x[:, None] < box[:, 1] + box[:, 3]))
            np.add.at(out, inside.argmax(axis=1), self.weights(b.mass) * inside.any(axis=1))
        return out

    def tile_count(self, output: np.ndarray, box: tuple, shape: tuple) -> float:
        """What the blobs whose centre lies in a tile's owned crop count, read from that tile's own output
        (how a map too coarse for :meth:`count`, a large slide's, is read: tile by tile, so in bounded memory
        and the same whatever the parts and spans). ``output``: the tile's 2-D map, its top-left pixel at
        ``box[:2]``; ``box`` ``(y, x, oy0, oy1, ox0, ox1)`` as :func:`cellxfer.density.stitch.tiles` gives it;
        ``shape``: the image's. The output is summed into blocks of :data:`MAX_BLOCK` pixels on the image's
        grid (as a whole map of that block would be), and the blobs are those of the blocks the output covers:
        a nucleus whose centre is owned lies within the tile's margin, so each is read once, whole."""
        import numpy as np

        from cellxfer.density.stitch import block_sums

        y, x, oy0, oy1, ox0, ox1 = box
        b, (h, w) = MAX_BLOCK, output.shape[-2:]
        # blocks of the image's grid covered by the output (a block cut by the image border counts as whole)
        r0, c0 = -(-max(y, 0) // b) * b, -(-max(x, 0) // b) * b
        r1 = shape[0] if y + h >= shape[0] else (y + h) // b * b
        c1 = shape[1] if x + w >= shape[1] else (x + w) // b * b
        if r1 <= r0 or c1 <= c0:
            return 0.0
        cells = block_sums(np.asarray(output)[r0 - y:r1 - y, c0 - x:c1 - x], r0, c0, b)
        found = find_blobs(cells, b, self.level, owned=(oy0 - r0, oy1 - r0, ox0 - c0, ox1 - c0))
        cy, cx = found.y + r0, found.x + c0
        mine = (cy >= oy0) & (cy < oy1) & (cx >= ox0) & (cx < ox1)
        # a nucleus by its centre's tile; touching nuclei (counted by their mass) by each tile's share of them,
        # since a large clump may reach past a tile's margin and be seen whole by no tile
        whole = found.mass >= self.hi
        return float(np.count_nonzero(mine & ~whole & (found.mass >= self.lo)) + found.owned[whole].sum())

    @classmethod
    def parse(cls, text: str) -> "BlobRule":
        """``LEVEL:LO:HI`` (e.g. ``0.002:0.25:1``), as scripts take it on the command line."""
        try:
            level, lo, hi = (float(v) for v in text.split(":"))
            return cls(level, lo, hi)
        except ValueError as exc:
            raise ValueError(f"blob rule {text!r}: {exc}; write LEVEL:LO:HI, e.g. 0.002:0.25:1") from None
