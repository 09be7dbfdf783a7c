"""Batch counting of image files and folders (``cellxfer count``): :mod:`.job` runs it."""
