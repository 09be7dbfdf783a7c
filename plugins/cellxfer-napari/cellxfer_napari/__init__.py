"""napari plugin for cellxfer (manifest: ``napari.yaml``): a reader for ``cellxfer count`` outputs
(:mod:`._reader`) and the "Count cells" widget (:mod:`._widget`). Coordinates: :mod:`._coords`."""

from cellxfer_napari._coords import from_napari, to_napari

__all__ = ["from_napari", "to_napari"]
__version__ = "0.1.0"
