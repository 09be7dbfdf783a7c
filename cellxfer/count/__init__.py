"""Batch counting of image files and folders (``cellxfer count``): :mod:`.job` runs it; one image held in
memory: :func:`count_array` (:mod:`.array`)."""

from cellxfer.count.array import count_array

__all__ = ["count_array"]
