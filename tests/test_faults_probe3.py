"""Third fault hunt (session s9d): whole slides, the light core install, parallel and concurrent runs, the
viewers' outputs. Each test is an input that once gave a traceback, a flood of library output, a lost result
or a silently wrong number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellxfer import lazy
from cellxfer.errors import InputError


@pytest.fixture
def small_lazy(monkeypatch):
    monkeypatch.setattr(lazy, "LAZY_PIXELS", 1000)


def _slide(path: Path, shape=(512, 512), tile=(32, 32), **kwargs) -> np.ndarray:
    img = np.random.default_rng(0).integers(0, 60000, shape, dtype=np.uint16)
    tifffile.imwrite(path, img, tile=tile, **kwargs)
    return img


def test_a_corrupt_tile_of_a_slide_leaves_no_reads_running_on_zarrs_loop(tmp_path, small_lazy):
    """A slide with one tile that does not decode: zarr raised at once and left the region's other chunk reads
    running on its event loop; at exit ``count`` printed hundreds of lines after its one-line error ("Task was
    destroyed but it is pending!", "RuntimeError: Event loop is closed" tracebacks)."""
    import asyncio

    import zarr.core.sync

    path = tmp_path / "slide.tif"
    _slide(path, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[3]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"garbage!" * 4)
    image = lazy.open_image(path)
    assert lazy.is_lazy(image)
    with pytest.raises(InputError, match="not a readable TIFF"):
        image[0:512, 0:512]
    assert not asyncio.all_tasks(zarr.core.sync.loop[0])
