"""One image, any size, through a counter in bounded memory: splitters, parts and mergers.

An :class:`ImagePlan` is what is decided about one image before inference: the image on the model's
grid (numpy, or a :class:`cellxfer.lazy.LazyImage` read by region, resized lazily for ``--diameter``),
its normalisation levels (:meth:`cellxfer.counter.model.Normalization.levels`: the percentiles of the
whole image, or of a strided sample of a large one), the model inputs' boxes and how they are grouped
into *parts* (:class:`Part`). A part is a run of whole rows of boxes weighing at least ``part_tiles`` base
tiles (one part for any image of up to ``part_tiles``), or, where one row of boxes alone weighs that much
(a wide slide), a run of boxes of one row: each row is cut across its width into ``row weight //
part_tiles`` runs, so a part's input is bounded whatever the slide's width. :meth:`ImagePlan.batch` reads
just the region a part needs, normalises it and cuts the model inputs, so at most a few parts of an image
exist at once.

Splitters (which boxes; :mod:`cellxfer.counter.splitters`, picked by the counter's head, :mod:`cellxfer.counter.head`):

- :class:`WindowGrid` (count models): non-overlapping ``window`` tiles from (0, 0), short border windows
  zero-padded after normalisation (:mod:`cellxfer.counter.windows`). Each pixel in exactly one window.
- :class:`OwnedTiles` (density models): overlapping tiles, each owning the part of the image nearest
  its centre (:mod:`cellxfer.density.stitch`); an image smaller than a tile is mirrored to one tile.

Mergers (model outputs of each part, in order -> :class:`Counted`; translators: -> an image):

- :class:`WindowSums`: each window's count is the sum of its output; the image's is their sum.
- :class:`DensityBands`: each tile's owned crop of the density map is summed into the map's total and the
  low-resolution :class:`DensityMap`; the count is that total, or, for a model that carries a blob rule
  (:class:`cellxfer.density.blobs.BlobRule`), the :class:`DensityMap` read blob by blob by it (maps of
  blocks up to :data:`cellxfer.density.blobs.MAX_BLOCK` pixels; a coarser one is read tile by tile as the
  tiles come, :meth:`~cellxfer.density.blobs.BlobRule.tile_count`, per box like the sums); when points are wanted, the crops of the parts of a row are also
  stitched into its owned rows of the map (a *band*, full width) and handed, once the row is complete, to the model's
  :class:`cellxfer.density.infer.PointFinder`, which sees each band with ``halo`` rows of its neighbours,
  so every cell is found once, by the band that owns its centre; only those rows are held, never the
  whole map. The points of an image of one part are exactly those of the whole-image map.
- :class:`RampBlend` (translators, :class:`RampTiles`): ramp-weighted tile outputs over the summed
  weights (:func:`blend_image`).

Mergers work on a *span* of consecutive parts (all of them, or a block of them on a Dask worker:
:mod:`cellxfer.count.split`) and hand a :class:`PartsOutcome` to :func:`merge`, which puts the outcomes
of the spans covering an image together in span order: window sums concatenated, band totals added in
part order, point candidates in row order. A span of density bands owns the points whose centre lies in
its rows; where two spans meet (row ``b``) each finds only those at least ``halo`` rows from the seam and
hands over ``2 * halo`` rows of map on its side, and :func:`merge` finds the points of rows
``[b - halo, b + halo)`` on those ``4 * halo`` rows. So a slide counted in spans gives exactly the count,
region counts and points of one merger over all its parts.

Invariants: counts, region counts and points do not depend on ``part_tiles`` (counts up to float64
summation order) nor on how the parts are split into spans (exactly); an image of one part gives
exactly the numbers the whole-image computation gives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cellxfer.density.blobs import readable
from cellxfer.density.stitch import block_sums

@dataclass
class Counted:
    """One image's result: ``count``; ``regions`` (y0, x0, h, w) partitioning the image with their
    ``region_counts`` (drawn on overlays); ``points`` float64 (N, 2) of (x, y) for density models when asked."""

    count: float
    regions: list
    region_counts: np.ndarray
    points: np.ndarray | None = None
    density_map: "DensityMap | None" = None  # density models: counts per block (see :class:`DensityMap`)


#: the longest side of a density map (``count --density-map``): blocks of ceil(side / MAP_SIDE) pixels
MAP_SIDE = 512


@dataclass
class DensityMap:
    """A low-resolution map of where the cells are: ``counts[i, j]`` is the density summed over the block
    of ``block`` x ``block`` pixels of the model's grid at (i * block, j * block) (edge blocks are cut by
    the image border), so ``counts.sum()`` is the image's density total (up to float summation order): its
    count, unless the model reads its map blob by blob (:func:`_read_blobs`).
    ``sy``/``sx``: original pixels per model-grid pixel (``--diameter`` resizing; 1.0 when none). Built
    band by band as the map is stitched (:class:`DensityBands`): at most MAP_SIDE x MAP_SIDE float64."""

    counts: np.ndarray
    block: int
    sy: float = 1.0
    sx: float = 1.0
    row0: int = 0  # the map row ``counts[0]`` is (a span's rows of the map: :meth:`rows`)
    _blobs: dict = field(default_factory=dict, repr=False, compare=False)  # blobs by level

    def blobs(self, level: float):
        """:func:`cellxfer.density.blobs.find_blobs` of the map at ``level``, labelled once per level (the
        count's blob rule, its region counts and the trust flag read the same blobs); :meth:`add` forgets them."""
        if level not in self._blobs:
            from cellxfer.density.blobs import find_blobs

            self._blobs[level] = find_blobs(self.counts, self.block, level)
        return self._blobs[level]

    @classmethod
    def for_shape(cls, shape, block: int | None = None) -> "DensityMap":
        """An empty map of an image of ``shape``; ``block`` None: the smallest keeping sides <= MAP_SIDE
        (1: the whole map at full resolution)."""
        block = block or max(1, -(-max(shape[:2]) // MAP_SIDE))
        return cls(np.zeros((-(-shape[0] // block), -(-shape[1] // block)), np.float64), block)

    def add(self, crop: np.ndarray, y0: int, x0: int) -> float:
        """Add the map pixels ``crop`` whose top-left pixel is ``(y0, x0)``; returns their float64 sum
        (the sum of the block sums it added)."""
        b = self.block
        self._blobs.clear()
        blocks = block_sums(crop, y0, x0, b)
        r, c = y0 // b - self.row0, x0 // b
        self.counts[r:r + blocks.shape[0], c:c + blocks.shape[1]] += blocks
        return float(blocks.sum())

    def rows(self, lo: int, hi: int) -> "DensityMap":
        """The map rows holding image rows ``[lo, hi)`` (what a span's bands filled; a Dask block sends
        back only these)."""
        r0, r1 = lo // self.block, -(-hi // self.block)
        return DensityMap(self.counts[r0 - self.row0:r1 - self.row0].copy(), self.block, self.sy, self.sx, r0)

    @classmethod
    def combined(cls, shape, maps: list) -> "DensityMap":
        """One map of an image of ``shape`` from its spans' maps (added in span order; one whole map: an
        exact copy)."""
        out = cls.for_shape(shape, maps[0].block)
        for m in maps:
            out.counts[m.row0:m.row0 + len(m.counts)] += m.counts
        return out


from cellxfer.counter.splitters import OwnedTiles, RampTiles, WindowGrid  # noqa: E402,F401  (the splitters)

#: base tiles per part: with the default counter (256-pixel tiles) about 16 MiB of float32 input per part
PART_TILES = 64


class Part(NamedTuple):
    """Boxes ``[first, end)`` of an :class:`ImagePlan` and the region ``[y0, y1) x [x0, x1)`` their inputs
    read (it may reach past the image where an image smaller than a tile is mirrored)."""

    first: int
    end: int
    y0: int
    y1: int
    x0: int
    x1: int


def group_parts(boxes: list, splitter, part_tiles: int) -> list[Part]:
    """The :class:`Part` s of ``boxes`` (rows of boxes: boxes with the same top, in order), each at least
    ``part_tiles`` base tiles (``splitter.weight`` a box; to within a box) but the last: runs of whole rows,
    or, when one row weighs ``part_tiles`` or more, ``row weight // part_tiles`` runs of near-equal box
    counts per row (at most one run a box)."""
    row_starts = [i for i in range(len(boxes)) if i == 0 or boxes[i][0] != boxes[i - 1][0]]
    runs, pending = [], None
    for a, b in zip(row_starts, row_starts[1:] + [len(boxes)]):
        k = min(b - a, (b - a) * splitter.weight // part_tiles)
        if k >= 1:
            edges = np.linspace(a, b, k + 1).round().astype(int).tolist()
            runs += [(pending[0], a)] if pending else []
            runs += list(zip(edges[:-1], edges[1:]))
            pending = None
            continue
        pending = (pending[0] if pending else a, b)
        if (b - pending[0]) * splitter.weight >= part_tiles:
            runs.append(pending)
            pending = None
    runs += [pending] if pending else []
    parts = []
    for a, b in runs:
        rows, cols = [splitter.rows_of(x) for x in boxes[a:b]], [splitter.cols_of(x) for x in boxes[a:b]]
        parts.append(Part(a, b, min(r[0] for r in rows), max(r[1] for r in rows),
                          min(c[0] for c in cols), max(c[1] for c in cols)))
    return parts


@dataclass
class ImagePlan:
    """One image made ready for a counter; see module docs. ``image``/``image_step``: the original image
    (or, for a lazy one, its strided sample every ``image_step`` pixels) when kept for an overlay."""

    file: Path | None
    source: object  # the image on the model's grid: numpy 2-D, or LazyImage
    meta: object
    levels: object  # cellxfer.counter.model.Levels
    splitter: object
    boxes: list
    parts: list
    scaled: object = None  # cellxfer.scale.Scaled, or None
    ms: float = 0.0
    image: np.ndarray | None = None
    image_step: int = 1
    part_tiles: int = PART_TILES

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.source.shape[:2])

    def __getstate__(self) -> dict:
        """Pickled for a Dask worker without the boxes, parts and preview (recomputed or not needed
        there): a slide's plan is a few KB whatever its size; a lazy source reopens its file by path."""
        return {**self.__dict__, "boxes": None, "parts": None, "image": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.boxes is None:
            self.boxes = self.splitter.boxes(self.shape)
            self.parts = group_parts(self.boxes, self.splitter, self.part_tiles)

    def rows(self, first: int, end: int) -> tuple[int, int]:
        """The image rows ``[lo, hi)`` that parts ``[first, end)`` own (density tiles: their owned boxes;
        windows: their boxes); consecutive spans own consecutive rows, all spans the whole image."""
        boxes = self.boxes[self.parts[first][0]:self.parts[end - 1][1]]
        if isinstance(self.splitter, OwnedTiles):
            return min(b[2] for b in boxes), max(b[3] for b in boxes)
        return min(b[0] for b in boxes), max(b[0] + b[2] for b in boxes)

    def ends_row(self, i: int) -> bool:
        """Whether part ``i`` holds the last box of its row of boxes (a row cut across its width is
        complete only then)."""
        return i == len(self.parts) - 1 or self.parts[i + 1].y0 != self.parts[i].y0

    def batch(self, i: int) -> np.ndarray:
        """float32 model inputs of part ``i`` (reads, normalises and cuts just its region)."""
        p = self.parts[i]
        block = self.source[p.y0:min(p.y1, self.shape[0]), p.x0:min(p.x1, self.shape[1])]
        block = self.meta.normalization.apply_levels(block, self.levels)
        return self.splitter.cut(block, p.y0, self.boxes[p.first:p.end], p.x0)

    def merger(self, points: bool = False, points_file: Path | None = None, span: tuple[int, int] | None = None,
               map_block: int | None = None):
        """A fresh merger for this plan's outputs (:class:`WindowSums` or :class:`DensityBands`) of parts
        ``span`` = ``[first, end)`` (None: all); with ``points_file`` (density models) the points stream
        into that CSV (:class:`PointsFile`); ``map_block``: the :class:`DensityMap`'s block (None: a map of
        at most MAP_SIDE a side; 1: the full-resolution map)."""
        span = span or (0, len(self.parts))
        if isinstance(self.splitter, OwnedTiles):
            return DensityBands(self, points, sink=PointsFile(points_file) if points_file is not None else None,
                                span=span, map_block=map_block)
        return WindowSums(self, span)


#: the longest side of the image kept for an overlay of a slide
PREVIEW_SIDE = 4096


def plan_image(image, meta, policy=None, file: Path | None = None, keep_image: bool = False,
               part_tiles: int | None = None, t0: float | None = None, levels=None) -> ImagePlan:
    """The :class:`ImagePlan` of a 2-D image (numpy or lazy): resized to the model's nucleus diameter by
    ``policy`` (:class:`cellxfer.scale.DiameterPolicy`; None: as it is), levels (``levels``, a
    :class:`cellxfer.counter.model.Levels`: given, not measured), boxes and parts."""
    from cellxfer.counter.head import head_of
    from cellxfer.lazy import is_lazy, strided_sample

    t0 = time.perf_counter() if t0 is None else t0
    part_tiles = part_tiles or PART_TILES
    scaled = policy.scale(image, meta) if policy is not None else None
    work = scaled.image if scaled is not None else image
    splitter = head_of(meta).splitter(meta).for_shape(work.shape)
    boxes = splitter.boxes(work.shape)
    kept, step = None, 1
    if keep_image:
        step = max(1, -(-max(image.shape) // PREVIEW_SIDE)) if is_lazy(image) else 1
        kept = strided_sample(image, step)
    if levels is None:
        levels = meta.normalization.levels(work, image if scaled is not None and scaled.resized else None,
                                           scaled.estimate if scaled is not None else None)
    return ImagePlan(file, work, meta, levels, splitter, boxes,
                     group_parts(boxes, splitter, part_tiles), scaled, (time.perf_counter() - t0) * 1e3, kept, step,
                     part_tiles)


def count_plan(runner, plan: ImagePlan, batch_size: int = 16, points: bool = False, map_block: int | None = None):
    """Count one planned image part by part, ``batch_size`` inputs per ``runner`` call (``map_block``:
    :meth:`ImagePlan.merger`)."""
    return merge(plan, [count_parts(runner, plan, (0, len(plan.parts)), batch_size, points, map_block)], points)


def density_normalized(runner, meta, image: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """float32 (H, W) density map of an image already normalised by ``meta.normalization``, split and
    merged exactly as ``count`` does (levels as they are, as :func:`count_normalized`), kept whole at full
    resolution (a :class:`DensityMap` of block 1): the pseudo-labels of ``adapt-count``."""
    from cellxfer.counter.model import Levels

    plan = plan_image(image, meta, levels=Levels.as_is())
    return count_plan(runner, plan, batch_size, map_block=1).density_map.counts.astype(np.float32)


def count_normalized(runner, meta, image: np.ndarray, batch_size: int = 16) -> float:
    """The count ``count`` makes of an image already normalised by ``meta.normalization`` (validation
    during training, :func:`cellxfer.train.counter.predict_normalized`): the same splitter and merger,
    with :meth:`Levels.as_is`, so the image is taken as it is (a ``clip`` applied again changes nothing)."""
    from cellxfer.counter.model import Levels

    return count_plan(runner, plan_image(image, meta, levels=Levels.as_is()), batch_size).count


def count_parts(runner, plan: ImagePlan, span: tuple[int, int], batch_size: int = 16,
                points: bool = False, map_block: int | None = None) -> "PartsOutcome":
    """The :class:`PartsOutcome` of parts ``span`` = ``[first, end)`` of a planned image (what a Dask
    worker computes for its block of a slide; :func:`merge` puts blocks together)."""
    merger = plan.merger(points, span=span, map_block=map_block)
    step = max(1, batch_size // plan.splitter.weight)  # batch_size counts base tiles
    for i in range(*span):
        batch = plan.batch(i)
        merger.add(i, [np.asarray(runner(batch[j:j + step])) for j in range(0, len(batch), step)])
    return merger.outcome()


def spans_of(plan: ImagePlan, parts_per_span: int) -> list[tuple[int, int]]:
    """Consecutive spans ``[first, end)`` of at least ``parts_per_span`` parts covering the image, each
    ending with a row of boxes (:meth:`ImagePlan.ends_row`) and each but the last owning at least
    ``2 * halo`` rows (what :func:`merge` needs at a seam)."""
    halo = _halo(plan)
    spans, first = [], 0
    for end in range(1, len(plan.parts) + 1):
        lo, hi = plan.rows(first, end)
        if end == len(plan.parts) or (end - first >= parts_per_span and hi - lo >= 2 * halo
                                      and plan.ends_row(end - 1)):
            spans.append((first, end))
            first = end
    return spans


def _halo(plan: ImagePlan) -> int:
    """Rows of map a band's point finder needs of its neighbours (0: windows, or a head without points)."""
    from cellxfer.counter.head import head_of

    finder = head_of(plan.meta).point_finder(plan.meta)
    return finder.halo if finder is not None and isinstance(plan.splitter, OwnedTiles) else 0


@dataclass
class PartsOutcome:
    """What a merger of parts ``[first, end)`` of one image hands to :func:`merge` (pickles: a Dask worker
    returns it). ``sums``: per box of these parts (float64). Density models also: ``totals``, the band
    total of each part (float64 sums, added in part order by :func:`merge`); with points, ``xy``/``vals``
    the candidates whose centre lies in rows ``[lo + halo, hi - halo)`` of the span's rows ``[lo, hi)``
    (without the ``halo`` on the image's own border; None when streamed to a :class:`PointsFile`),
    ``top``/``bottom`` the span's first/last ``2 * halo`` map rows where another span adjoins (else
    None); ``density_map`` the span's :class:`DensityMap` (local runs); ``rule_sums`` per box, what the
    model's blob rule reads from its tile (:meth:`cellxfer.density.blobs.BlobRule.tile_count`) when the map is
    too coarse to be read whole (else None)."""

    first: int
    end: int
    sums: np.ndarray
    totals: list = field(default_factory=list)
    xy: np.ndarray | None = None
    vals: np.ndarray | None = None
    top: np.ndarray | None = None
    bottom: np.ndarray | None = None
    density_map: "DensityMap | None" = None
    rule_sums: np.ndarray | None = None  # per box, its tiles' blob counts when the map is too coarse for the rule


def merge(plan: ImagePlan, outcomes: list, points: bool = False, sink: "PointsFile | None" = None) -> Counted:
    """The :class:`Counted` of an image from the :class:`PartsOutcome` of spans covering all its parts
    (any order; see module docs). ``sink``: the points go to that :class:`PointsFile` (written here)."""
    outcomes = sorted(outcomes, key=lambda o: o.first)
    if [o.first for o in outcomes] != [0] + [o.end for o in outcomes[:-1]] or outcomes[-1].end != len(plan.parts):
        raise ValueError(f"spans {[(o.first, o.end) for o in outcomes]} do not cover parts 0..{len(plan.parts)}")
    sums = np.concatenate([o.sums for o in outcomes])
    if not isinstance(plan.splitter, OwnedTiles):
        return _in_original(plan, float(sums.sum()), list(plan.boxes), sums, None)
    from cellxfer.counter.head import head_of

    finder = head_of(plan.meta).point_finder(plan.meta)
    total = 0.0
    for o in outcomes:
        for t in o.totals:
            total += t
    maps = [o.density_map for o in outcomes if o.density_map is not None]
    dmap = DensityMap.combined(plan.shape, maps) if maps else None
    regions = [(oy0, ox0, oy1 - oy0, ox1 - ox0) for _, _, oy0, oy1, ox0, ox1 in plan.boxes]
    rule_sums = [o.rule_sums for o in outcomes]
    tiles = np.concatenate(rule_sums) if all(r is not None for r in rule_sums) else None
    total, sums = _read_blobs(plan.meta, dmap, regions, total, sums, tiles)
    found = []
    for o, nxt in zip(outcomes, outcomes[1:] + [None]):
        if o.xy is not None:
            found.append((o.xy, o.vals))
        if points and finder.halo and nxt is not None and o.bottom is not None:
            found.append(_seam(finder, o.bottom, nxt.top, plan.rows(nxt.first, nxt.end)[0]))
    pts = None
    if sink is not None:
        for xy, vals in found:
            sink.add(xy, vals)
        sink.write(lambda vals: finder.order(vals, total), plan.scaled)
    elif points:
        xy = np.concatenate([f[0] for f in found]) if found else np.zeros((0, 2))
        vals = np.concatenate([f[1] for f in found]) if found else np.zeros(0, np.float32)
        pts = finder.choose(xy, vals, total)
    return _in_original(plan, total, regions, sums, pts, dmap)


def _read_blobs(meta, dmap: DensityMap | None, regions: list, total: float, sums: np.ndarray,
                tiles: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """The count and region counts of a density model's image: its map read by the model's blob rule
    (:class:`cellxfer.density.blobs.BlobRule`, ``meta.blobs``; each blob in the region holding its centre),
    whole when the map's blocks are fine enough, else tile by tile (``tiles``: per box, what its tile read);
    the map's sums ``total`` and ``sums`` when the model has no rule."""
    rule = getattr(meta, "blobs", None)
    counted = rule.count(dmap) if rule is not None else None
    if counted is not None:
        return counted, rule.region_counts(dmap, regions)
    if rule is not None and tiles is not None:
        return float(tiles.sum()), tiles
    return total, sums


def _seam(finder, bottom: np.ndarray, top: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidates centred in rows ``[b - halo, b + halo)`` of the map rows ``bottom`` (ending at row
    ``b``) and ``top`` (starting there): each has ``halo`` rows of map on both sides, or the image border."""
    xy, vals = finder.candidates(np.concatenate([bottom, top]))
    xy[:, 1] += b - len(bottom)
    mine = (xy[:, 1] - 0.5 >= b - finder.halo) & (xy[:, 1] - 0.5 < b + finder.halo)
    return xy[mine], vals[mine]


# -- mergers ---------------------------------------------------------------------------------------------
def _planes(outputs: list):
    """The 2-D output planes of a list of ``(N, [1,] h, w)`` arrays, in order."""
    for chunk in outputs:
        chunk = np.asarray(chunk)
        yield from chunk.reshape(-1, *chunk.shape[-2:])


class WindowSums:
    """Count models: a window's count is the sum of its output (:mod:`cellxfer.counter.windows`)."""

    def __init__(self, plan: ImagePlan, span: tuple[int, int] | None = None):
        self.plan, self.sums, self.span = plan, [], span or (0, len(plan.parts))

    def add(self, part: int, outputs: list) -> None:
        """Part ``part``'s outputs: the list of its batches' outputs, in box order."""
        for out in outputs:
            out = np.asarray(out, dtype=np.float64)
            self.sums.append(out.reshape(len(out), -1).sum(axis=1))

    def outcome(self) -> PartsOutcome:
        return PartsOutcome(*self.span, np.concatenate(self.sums) if self.sums else np.zeros(0))

    def result(self):
        return merge(self.plan, [self.outcome()])


@dataclass
class DensityBands:
    """Density models: owned crops summed as they come; with ``points``, bands of the stitched map searched
    for points."""

    plan: ImagePlan
    points: bool = False
    total: float = 0.0
    sums: list = field(default_factory=list)
    found: list = field(default_factory=list)  # (xy, values) per finished stretch of rows
    buf: np.ndarray | None = None  # rows [buf_y0, ...) of the map not yet needed no more
    buf_y0: int = 0
    done_y: int = 0  # points of rows above this are found
    row: tuple | None = None  # (first row, band) of the row of boxes being stitched, with points
    sink: PointsFile | None = None  # --points streamed to this file (then ``Counted.points`` is None)
    span: tuple[int, int] | None = None  # the parts [first, end) merged here (None: all)
    map_block: int | None = None  # the DensityMap's block (None: at most MAP_SIDE a side)

    def __post_init__(self):
        from cellxfer.counter.head import head_of

        self.finder = head_of(self.plan.meta).point_finder(self.plan.meta)
        self.map = DensityMap.for_shape(self.plan.shape, self.map_block)
        self.span = self.span or (0, len(self.plan.parts))
        first, end = self.span
        if not (first == 0 or self.plan.ends_row(first - 1)) or not self.plan.ends_row(end - 1):
            raise ValueError(f"parts {self.span} do not start and end with whole rows of boxes (spans_of's spans do)")
        self.lo, self.hi = self.plan.rows(*self.span)
        # rows within ``halo`` of another span are left to :func:`merge` (it gets ``top``/``bottom``)
        self.seam_above, self.seam_below = self.lo > 0, self.hi < self.plan.shape[0]
        self.done_y = self.lo + (self.finder.halo if self.seam_above else 0)
        self.totals: list[float] = []
        self.top: np.ndarray | None = None
        # a map too coarse for the model's blob rule: read tile by tile instead (BlobRule.tile_count), per box
        rule = getattr(self.plan.meta, "blobs", None)
        self.tile_rule = rule if rule is not None and not readable(self.map) else None
        self.rule_sums: list[float] = []

    def add(self, part: int, outputs: list) -> None:
        """Sum the owned crops of part ``part``'s outputs (the list of its batches' outputs, in box order)
        into the map; with ``points``, stitch them into a band of full rows, searched once its row of
        boxes is complete."""
        p = self.plan.parts[part]
        boxes = self.plan.boxes[p.first:p.end]
        if self.points and self.row is None:
            a, b = min(bx[2] for bx in boxes), max(bx[3] for bx in boxes)
            self.row = (a, np.zeros((b - a, self.plan.shape[1]), dtype=np.float32))
        a, band = self.row if self.points else (0, None)
        total = 0.0
        for o, (y, x, oy0, oy1, ox0, ox1) in zip(_planes(outputs), boxes, strict=True):
            if self.tile_rule is not None:
                self.rule_sums.append(self.tile_rule.tile_count(o, (y, x, oy0, oy1, ox0, ox1), self.plan.shape))
            crop = o[oy0 - y:oy1 - y, ox0 - x:ox1 - x]
            self.sums.append(self.map.add(crop, oy0, ox0))
            total += self.sums[-1]
            if band is not None:
                band[oy0 - a:oy1 - a, ox0:ox1] = crop
        self.totals.append(total)
        self.total += total
        if self.points and self.plan.ends_row(part):
            self.row = None
            if self.seam_above and (self.top is None or len(self.top) < 2 * self.finder.halo):
                top = band[:2 * self.finder.halo - (0 if self.top is None else len(self.top))]
                self.top = top.copy() if self.top is None else np.concatenate([self.top, top])
            self._search(band, a, last=part == self.span[1] - 1)

    def _search(self, band: np.ndarray, a: int, last: bool) -> None:
        """Find the points of the rows that now have ``halo`` rows of map below them (all, if ``last``)."""
        halo = self.finder.halo
        buf = band if self.buf is None else np.concatenate([self.buf, band])
        y0, end = (a if self.buf is None else self.buf_y0), a + len(band)
        upto = end - halo if not last or self.seam_below else end
        if upto > self.done_y:
            w0 = max(y0, self.done_y - halo)
            xy, vals = self.finder.candidates(buf[w0 - y0:end - y0])
            xy[:, 1] += w0
            mine = (xy[:, 1] - 0.5 >= self.done_y) & (xy[:, 1] - 0.5 < upto)  # the band owning the centre
            if self.sink is not None:
                self.sink.add(xy[mine], vals[mine])
            else:
                self.found.append((xy[mine], vals[mine]))
            self.done_y = upto
        keep = max(self.done_y - halo, y0)
        self.buf, self.buf_y0 = buf[keep - y0:], keep

    def outcome(self) -> PartsOutcome:
        """This span's :class:`PartsOutcome` (after its last part)."""
        xy = vals = bottom = None
        if self.points and self.sink is None:
            xy = np.concatenate([f[0] for f in self.found]) if self.found else np.zeros((0, 2))
            vals = np.concatenate([f[1] for f in self.found]) if self.found else np.zeros(0, np.float32)
        if self.points and self.seam_below:
            bottom = self.buf[len(self.buf) - 2 * self.finder.halo:].copy()
        return PartsOutcome(*self.span, np.asarray(self.sums, dtype=np.float64), self.totals, xy, vals,
                            self.top if self.points and self.seam_above else None, bottom, self.map,
                            None if self.tile_rule is None else np.asarray(self.rule_sums, dtype=np.float64))

    def result(self):
        return merge(self.plan, [self.outcome()], self.points, self.sink)


class PointsFile:
    """``--points`` of one image streamed to disk: point candidates are appended to a temporary file
    beside ``path`` as each band finds them (x, y, value as float64 rows); only their values stay in
    memory (4 bytes a candidate). Which candidates are cells depends on the image's total count
    (:meth:`cellxfer.density.infer.DensityPeaks.order`), so :meth:`write` then copies the chosen rows,
    in the same order and format as a points file written whole (:func:`cellxfer.count.job.write_points`),
    chunk by chunk into ``path`` (atomically); the temporary file is removed either way."""

    CHUNK = 65536

    def __init__(self, path: Path):
        from cellxfer.atomic import held_temporary

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.spill = held_temporary(self.path, "spill")  # a worker ended by SIGTERM removes it
        self._f = open(fd, "wb")  # noqa: SIM115 - closed by write/close
        self.values: list[np.ndarray] = []

    def add(self, xy: np.ndarray, vals: np.ndarray) -> None:
        rows = np.column_stack([np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(vals, np.float64)])
        self._f.write(np.ascontiguousarray(rows).tobytes())
        self.values.append(np.asarray(vals, np.float32))

    def write(self, order_of, scaled=None) -> int:
        """Write the chosen rows (``order_of(values) -> indices``), in original pixels when ``scaled``, in
        the format of the file's suffix (:mod:`cellxfer.count.points_format`)."""
        from cellxfer.atomic import atomic_path
        from cellxfer.count.points_format import for_path

        try:
            self._f.close()
            vals = np.concatenate(self.values) if self.values else np.zeros(0, np.float32)
            order = order_of(vals)
            rows = np.memmap(self.spill, np.float64, "r", shape=(len(vals), 3)) if len(vals) else np.zeros((0, 3))
            fmt = for_path(self.path)
            with atomic_path(self.path) as tmp, open(tmp, "w") as out:
                out.write(fmt.head())
                for i in range(0, len(order), self.CHUNK):
                    xy = np.asarray(rows[order[i:i + self.CHUNK], :2])
                    if scaled is not None and scaled.resized:
                        xy = scaled.to_original(xy)
                    out.write(fmt.rows(xy, first=i == 0))
                out.write(fmt.tail())
            del rows
            return len(order)
        finally:
            self.close()

    def close(self) -> None:
        from cellxfer.atomic import drop_temporary

        self._f.close()
        drop_temporary(self.spill)


class RampBlend:
    """Image-to-image models (translators): each tile's output weighted by its ramp
    (:meth:`cellxfer.counter.splitters.RampTiles.ramp`), summed, divided by the summed weights, cropped to
    the image. Overlapping tiles fade into each other with no seam, and a model that returns a constant
    gives exactly that constant."""

    def __init__(self, splitter, shape):
        self.splitter, self.shape = splitter, tuple(shape[:2])
        self.acc = np.zeros(splitter.padded(self.shape), np.float64)
        self.wsum = np.zeros_like(self.acc)

    def add(self, boxes: list, outputs: np.ndarray) -> None:
        t = self.splitter.tile
        for (y, x), o in zip(boxes, np.asarray(outputs, np.float32).reshape(len(boxes), t, t)):
            weight = self.splitter.ramp((y, x), self.shape)
            self.acc[y:y + t, x:x + t] += o * weight
            self.wsum[y:y + t, x:x + t] += weight

    def result(self) -> np.ndarray:
        return (self.acc / self.wsum).astype(np.float32)[:self.shape[0], :self.shape[1]]


def blend_image(run, image: np.ndarray, splitter, batch_size: int = 8) -> np.ndarray:
    """float32 (H, W) output of an image-to-image model ``run`` ((N, 1, t, t) -> (N, 1, t, t)) over a
    normalised 2-D ``image``, cut by ``splitter`` (:class:`RampTiles`) and merged by :class:`RampBlend`."""
    image = np.asarray(image, np.float32)
    boxes = splitter.boxes(image.shape)
    merger = RampBlend(splitter, image.shape)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        merger.add(chunk, run(splitter.cut(image, 0, chunk)))
    return merger.result()


def _in_original(plan: ImagePlan, count: float, regions: list, region_counts: np.ndarray, points,
                 density_map: DensityMap | None = None):
    """A :class:`Counted` whose regions and points are in the original image's pixels."""
    s = plan.scaled
    if s is None or not s.resized:
        return Counted(count, regions, region_counts, points, density_map)
    if density_map is not None:
        density_map.sy, density_map.sx = s.sy, s.sx
    return Counted(count, [s.box_to_original(*r) for r in regions], region_counts,
                   None if points is None else s.to_original(points), density_map)


def count_image(runner, meta, image: np.ndarray, batch_size: int = 16, diameter: str | None = None) -> float:
    """Whole-image count exactly as ``cellxfer count`` makes it (``--diameter`` policy, resizing, windows
    or stitched density tiles, this module). ``runner``: numpy batch -> numpy outputs (a torch module:
    :func:`cellxfer.counter.model.torch_runner`)."""
    from cellxfer.scale import DiameterPolicy

    policy = DiameterPolicy.parse(diameter, getattr(meta, "diameter", None))
    return count_plan(runner, plan_image(image, meta, policy), batch_size).count
