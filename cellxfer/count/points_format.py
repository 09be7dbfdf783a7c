"""How ``count --points`` writes one image's cells (``--points-format``): :class:`CsvPoints` (``x,y``, as
cell datasets: ``<name>.csv``) or :class:`GeoJsonPoints` (QuPath's point objects: ``<name>.geojson``).

Coordinates are the original image's pixels, origin at the top-left corner of the top-left pixel: pixel
``(row r, column c)`` covers ``c <= x < c + 1``, ``r <= y < r + 1``, so its centre is ``(c + 0.5, r + 0.5)``
(QuPath's and ImageJ's convention too; napari puts a pixel's centre at its index, see the napari plugin).

A format writes a file as ``head()``, then ``rows(xy, first)`` for each chunk of points in order, then
``tail()``, so a whole slide's points are streamed chunk by chunk (:class:`cellxfer.count.parts.PointsFile`)
and never held as one text. The file's suffix says its format (:func:`for_path`), so every writer of a
points file (streamed, held, on a Dask cluster) picks the same one.
"""

from __future__ import annotations

import json
from pathlib import Path


class PointsFormat:
    """One way to write points; subclasses set ``name``, ``suffix`` and the three pieces."""

    name: str = ""
    suffix: str = ""

    def head(self) -> str:
        return ""

    def rows(self, xy, first: bool) -> str:  # pragma: no cover - abstract
        """The text of the points ``xy`` (N, 2) of (x, y); ``first``: no point was written before them."""
        raise NotImplementedError

    def tail(self) -> str:
        return ""

    def text(self, points) -> str:
        """The whole file of ``points`` (N, 2) of (x, y)."""
        return self.head() + self.rows(points, True) + self.tail()


class CsvPoints(PointsFormat):
    """``x,y`` then one row a cell, floats in shortest round-trip form (the points table of cell datasets,
    :func:`cellxfer.dataset.format_points`): Fiji opens it as a Results table, napari's plugin as points."""

    name, suffix = "csv", ".csv"

    def head(self) -> str:
        return "x,y\n"

    def rows(self, xy, first: bool) -> str:
        return "".join(f"{x!r},{y!r}\n" for x, y in _pairs(xy))


class GeoJsonPoints(PointsFormat):
    """A GeoJSON FeatureCollection of one Point Feature a cell, in pixel coordinates, with the properties
    QuPath reads on File > Import objects: a detection object classified ``Nucleus``."""

    name, suffix = "geojson", ".geojson"
    properties = {"objectType": "detection", "classification": {"name": "Nucleus"}}

    def head(self) -> str:
        return '{"type": "FeatureCollection", "features": [\n'

    def rows(self, xy, first: bool) -> str:
        props = json.dumps(self.properties)
        features = [f'{{"type": "Feature", "geometry": {{"type": "Point", "coordinates": [{x!r}, {y!r}]}}, '
                    f'"properties": {props}}}' for x, y in _pairs(xy)]
        if not features:
            return ""
        return ("" if first else ",\n") + ",\n".join(features)

    def tail(self) -> str:
        return "\n]}\n"


def _pairs(xy) -> list:
    """``xy`` (N, 2) as a list of (x, y) Python floats (numpy only when there are points: this module is
    read at start-up for ``--points-format``'s choices)."""
    import numpy as np

    return np.asarray(xy, dtype=np.float64).reshape(-1, 2).tolist()


#: ``--points-format`` names
FORMATS: dict[str, PointsFormat] = {f.name: f for f in (CsvPoints(), GeoJsonPoints())}


def for_path(path: str | Path) -> "PointsFormat":
    """The format of a points file, by its suffix (``.geojson``; anything else is CSV)."""
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS.values() if f.suffix == suffix), FORMATS["csv"])
