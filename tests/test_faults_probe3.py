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


@pytest.mark.parametrize("kind", ["image", "slide"])
def test_a_tiff_whose_compression_needs_imagecodecs_names_the_package(tmp_path, small_lazy, kind):
    """An LZW or JPEG TIFF (Bio-Formats' and slide scanners' usual output) where imagecodecs is not installed
    (the core install) failed with "not a readable TIFF (ValueError: <COMPRESSION.LZW: 5> requires the
    'imagecodecs' package); check the file is complete": a damaged file, as far as the advice went."""
    import importlib.util

    from cellxfer.imageio import read_image

    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs is installed here: LZW decodes")
    path = tmp_path / "lzw.tif"
    if kind == "slide":
        _slide(path)
    else:
        tifffile.imwrite(path, np.zeros((20, 30), np.uint16))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(5)  # LZW
    with pytest.raises(InputError) as err:
        image = lazy.open_image(path) if kind == "slide" else read_image(path)
        assert lazy.is_lazy(image)
        image[0:100, 0:100]
    assert f"{path}: its pixels are LZW-compressed" in str(err.value)
    assert "pip install 'cellxfer[codecs]'" in str(err.value) and "complete" not in str(err.value)


def test_tifffiles_missing_codec_error_becomes_the_extras_line(tmp_path):
    """The mapping itself, wherever imagecodecs is installed or not: tifffile's words for a codec it lacks."""
    from cellxfer.imageio import tiff_error

    err = tiff_error(tmp_path / "a.tif", ValueError("<COMPRESSION.JPEG: 7> requires the 'imagecodecs' package"))
    assert str(err) == (f"{tmp_path / 'a.tif'}: its pixels are JPEG-compressed, which needs the imagecodecs package "
                        f"to decode: pip install 'cellxfer[codecs]' (or save it uncompressed or with zlib/deflate)")
    assert "check the file is complete" in str(tiff_error(tmp_path / "a.tif", ValueError("bad tile")))


@pytest.mark.parametrize("compression", ["lzw", "jpeg"])
def test_lzw_and_jpeg_tiffs_count_as_their_uncompressed_copy_with_the_codecs_extra(tmp_path, compression):
    """With imagecodecs (the codecs extra, in `all`) the TIFFs microscopes and slide scanners write decode:
    LZW losslessly (the same count to the bit); JPEG within its loss."""
    pytest.importorskip("imagecodecs", reason="the codecs extra is not installed here")
    from cellxfer.count import count_array
    from cellxfer.imageio import read_image

    rng = np.random.default_rng(0)
    img = np.zeros((300, 400), np.float32)
    yy, xx = np.mgrid[0:300, 0:400]
    for y, x in rng.uniform(20, 280, (40, 2)) * [1, 400 / 300]:
        img += 180 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 4.0 ** 2))
    img = (img + rng.normal(12, 2, img.shape)).clip(0, 255).astype(np.uint8)
    plain, packed = tmp_path / "plain.tif", tmp_path / f"{compression}.tif"
    tifffile.imwrite(plain, img)
    tifffile.imwrite(packed, img, compression=compression, tile=(256, 256))
    assert read_image(packed).shape == img.shape
    want, got = count_array(read_image(plain)).count, count_array(read_image(packed)).count
    assert got == want if compression == "lzw" else abs(got - want) <= 0.05 * want + 1


@pytest.mark.parametrize("layout", ["tiled", "contiguous"])
def test_a_sampled_slide_pickles_without_its_samples(tmp_path, small_lazy, layout):
    """``count --scheduler`` of a slide resized for its nuclei sent its strided samples (13 MB for a 17 Mpixel
    slide) with every block task, and distributed printed its "Sending large graph of size 12.78 MiB" warning,
    seven lines of it, on stderr. A pickled slide is its path and layout; it reads the same regions."""
    import pickle

    path = tmp_path / "slide.tif"
    img = _slide(path, shape=(400, 300), tile=(64, 64)) if layout == "tiled" else None
    if img is None:
        img = np.random.default_rng(0).integers(0, 60000, (400, 300), dtype=np.uint16)
        tifffile.imwrite(path, img)
    image = lazy.open_image(path)
    resized = lazy.Resized(image, (200, 150))
    for im in (image, resized):
        small = len(pickle.dumps(im))
        lazy.strided_sample(im, 1)  # the whole image as its "sample": cached on it
        again = pickle.loads(pickle.dumps(im))
        assert len(pickle.dumps(im)) < small + 1000
        assert np.array_equal(again[10:90, 20:80], im[10:90, 20:80])
    assert np.array_equal(image[0:400, 0:300], img)


def test_a_slide_deleted_while_it_is_counted_says_so(tmp_path, small_lazy):
    """A folder counted on Dask whose uncompressed slide was deleted after the count began: "not a readable TIFF
    (FileNotFoundError: ...); check the file is complete" (and a worker reopening any slide said it "changed since
    it was planned (now not a slide)")."""
    import pickle

    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((100, 100), np.uint16))  # memory-mapped by region
    _slide(tmp_path / "tiled.tif")  # reopened by path on a worker
    for name in ("raw.tif", "tiled.tif"):
        image = lazy.open_image(tmp_path / name)
        sent = pickle.dumps(image)
        (tmp_path / name).unlink()
        with pytest.raises(InputError, match="no such file now .*moved or deleted since"):
            (image if name == "raw.tif" else pickle.loads(sent))[0:10, 0:10]


def test_a_rerun_removes_the_point_candidates_a_killed_run_spilled_not_a_live_runs(tmp_path, capsys):
    """``count --points`` killed with SIGKILL left its spilled point candidates (``.<name>.csv.*.spill.cellxfer-tmp``,
    one per image in flight; a slide's are many MB) in the points folder, and reruns never removed them. A rerun
    removes those no process holds; another run's live one stays."""
    import os

    from cli_inproc import run_cli
    from cellxfer.atomic import drop_temporary, held_temporary

    image = tmp_path / "a.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 4000, (64, 64), dtype=np.uint16))
    pts = tmp_path / "pts"
    pts.mkdir()
    dead = pts / ".a.csv.0123abcd.spill.cellxfer-tmp"  # what a killed run leaves
    dead.write_bytes(b"\0" * 240)
    fd, live = held_temporary(pts / "b.csv", "spill")  # another run, counting now
    try:
        r = run_cli(["count", image, "-o", tmp_path / "c.csv", "--points", pts], capsys)
        assert r.returncode == 0, r.stderr
        assert not dead.exists() and live.exists() and (pts / "a.csv").is_file()
    finally:
        os.close(fd)
        drop_temporary(live)
