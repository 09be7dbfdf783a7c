"""Images read by region: whole slides without holding the whole image in memory.

:func:`open_image` returns a ``numpy`` array for ordinary images (exactly :func:`cellxfer.imageio.read_image`)
and a :class:`LazyImage` for a large single-page TIFF (over ``LAZY_PIXELS`` pixels; integer or float, grey
or RGB; level 0 of a pyramid or the ``level`` asked for) or OME-Zarr folder (zarr arrays read by region): a
tiled or striped TIFF is read through tifffile's zarr store (``TiffFile.aszarr()`` opened with ``zarr``), so a
region decodes only the tiles it touches; an uncompressed contiguous TIFF (one strip, which the zarr store
would hand over as a single chunk) is read by memory-mapping it and copying just the region, unmapped again
after each read (so nothing stays resident). Each region of a TIFF is reduced to one plane exactly as the
whole image would be (:class:`_TiffPlane`: the ``--channel`` of an RGB, or an RGB of equal channels as grey)
and its float pixels checked finite, so it equals the same region of :func:`cellxfer.imageio.read_image`.

A :class:`LazyImage` behaves like a read-only 2-D array where cellxfer needs it: ``shape``, ``dtype``,
``ndim``, ``image[y0:y1, x0:x1]`` (a new ``numpy`` array) and ``numpy.asarray(image)`` (the whole image:
only for images that fit). :class:`Resized` is the same for a lazily resized image (``--diameter``):
each region is resampled from the source region plus a margin wider than the filter, so it equals the
same region of the whole image resized at once (Pillow's antialiased bilinear filter, float32) up to
float rounding. :func:`strided_sample` reads ``image[::step, ::step]`` in bands of rows.
"""

from __future__ import annotations

import math
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cellxfer.errors import InputError

if TYPE_CHECKING:
    from cellxfer.imageio import Planes

#: images with more pixels than this (and a layout that allows it) are read by region
LAZY_PIXELS = 4_000_000 * 4
#: a zarr chunk larger than this (e.g. one compressed strip of a whole slide) makes region reads
#: pointless: such a file is read whole, as before
MAX_CHUNK_BYTES = 64 * 2**20
#: bytes of source rows :func:`strided_sample` reads at a time
BAND_BYTES = 32 * 2**20


class LazyImage:
    """A read-only 2-D image read by region; see module docs. Subclasses implement :meth:`_read`."""

    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    ndim = 2

    @property
    def size(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])

    @property
    def pixel_bytes(self) -> int:
        """Bytes a region read holds per pixel of the image (all the samples read for it)."""
        return self.dtype.itemsize

    def __getitem__(self, key) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)):
            raise TypeError(f"{type(self).__name__} supports image[y0:y1, x0:x1] only, got {key!r}")
        (y0, y1, sy), (x0, x1, sx) = (k.indices(n) for k, n in zip(key, self.shape))
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), self.dtype)
        out = self._read(y0, y1, x0, x1)
        return out if sy == sx == 1 else out[::sy, ::sx]

    def __getstate__(self):
        """Pickled (a Dask task) without the samples :func:`strided_sample` keeps: they are MBs (13 MB for a
        17 Mpixel slide resized for its nuclei), and every block task of a slide carried them, in graphs
        that distributed warned about on stderr; a worker reads a sample itself when it needs one."""
        return {k: v for k, v in self.__dict__.items() if k != "_samples"}

    def __array__(self, dtype=None, copy=None):
        out = self[0:self.shape[0], 0:self.shape[1]]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class _TiffPlane(LazyImage):
    """One plane of a TIFF level read by region. A region is read with all of the level's axes (``axes``,
    tifffile's letters of the stored ``full`` shape: Y, X, the colour samples S of an RGB file) and reduced
    exactly as :func:`cellxfer.imageio.read_image` reduces the whole image (:func:`cellxfer.imageio.to_plane`:
    the ``channel`` asked for, an RGB whose channels are equal as grey, else the same one-line error), its
    float pixels checked finite (:func:`cellxfer.imageio.check_pixels`). Invariant: ``image[y0:y1, x0:x1]``
    equals ``read_image(path, channel)[y0:y1, x0:x1]``. Subclasses implement :meth:`_raw`."""

    axes: str
    full: tuple[int, ...]
    channel: int | None = None

    def _read(self, y0, y1, x0, x1):
        from cellxfer.imageio import check_pixels, to_plane

        key = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) for a in self.axes)
        plane = np.ascontiguousarray(to_plane(self.path, self._raw(key), self.axes, self.channel, shape=self.full))
        return check_pixels(self.path, plane, f" in rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1}")  # a copy: not a view of all

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.full)) // self.size  # x3 for the samples of an RGB

    def _raw(self, key: tuple) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class _RawTiff(_TiffPlane):
    """An uncompressed contiguous TIFF plane: memory-mapped per read (only the rows read are touched) and
    unmapped again."""

    def __init__(self, path: Path, offset: int, dtype: np.dtype, full: tuple[int, ...], axes: str, channel=None):
        self.path, self.offset, self.full, self.axes, self.channel = path, int(offset), tuple(full), axes, channel
        self.shape = (full[axes.index("Y")], full[axes.index("X")])
        self.stored, self.dtype = np.dtype(dtype), np.dtype(dtype).newbyteorder("=")  # as in the file / as read

    def _raw(self, key):
        try:
            mm = np.memmap(self.path, dtype=self.stored, mode="r", offset=self.offset, shape=self.full)
        except FileNotFoundError:
            raise _gone(self.path) from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable TIFF ({type(exc).__name__}: {exc}); check the file is complete") from None
        try:
            return np.array(mm[key], dtype=self.dtype)
        finally:
            del mm


class _ZarrTiff(_TiffPlane):
    """A tiled or striped TIFF plane through tifffile's zarr store (only the touched chunks are decoded).
    Pickles as its path, level and channel (:func:`_reopen`), so a Dask worker opens the file itself."""

    def __init__(self, path: Path, tif, array, axes: str, level: int = 0, channel=None):
        self.path, self._array, self.full, self.axes = path, array, tuple(array.shape), axes
        self.shape, self.dtype = (self.full[axes.index("Y")], self.full[axes.index("X")]), np.dtype(array.dtype)
        self.level, self.channel = level, channel
        weakref.finalize(self, tif.close)

    def __reduce__(self):
        return _reopen, (str(self.path), self.level, self.shape, self.channel)

    def _raw(self, key):
        from cellxfer.imageio import reading, tiff_error

        try:
            with reading(self.path):
                return _read_zarr(self._array, key)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt tile: the decoders raise many types
            raise tiff_error(self.path, exc) from None


def _read_zarr(array, key) -> np.ndarray:
    """``array[key]`` of a zarr array as numpy. zarr reads a region's chunks as tasks on its own event loop
    and, when one chunk fails to decode, raises at once and leaves the others running there: at exit they
    were printed as hundreds of lines ("Task was destroyed but it is pending!", "Event loop is closed"
    tracebacks) after the one-line error. Before the error goes on, those reads are let finish and their
    errors collected (:func:`_settle_zarr_loop`)."""
    try:
        return np.asarray(array[key])
    except Exception:
        _settle_zarr_loop()
        raise


def _settle_zarr_loop(timeout_s: float = 30.0) -> None:
    """Wait (up to ``timeout_s``) for the tasks on zarr's event loop to finish, retrieving their errors."""
    import asyncio

    from zarr.core.sync import sync

    async def settle():
        me, deadline = asyncio.current_task(), asyncio.get_running_loop().time() + timeout_s
        while True:
            others = [t for t in asyncio.all_tasks() if t is not me]
            left = deadline - asyncio.get_running_loop().time()
            if not others or left <= 0:
                return
            done, _ = await asyncio.wait(others, timeout=left)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: not "exception was never retrieved" at exit

    try:
        sync(settle())
    except Exception:  # noqa: BLE001 - only tidying up after an error that is reported anyway
        pass


class Resized(LazyImage):
    """``source`` resized to ``shape`` (antialiased bilinear, float32), computed region by region."""

    def __init__(self, source, shape: tuple[int, int]):
        self.source, self.shape, self.dtype = source, (int(shape[0]), int(shape[1])), np.dtype(np.float32)
        self.path = getattr(source, "path", None)
        h, w = source.shape
        self.sy, self.sx = h / self.shape[0], w / self.shape[1]
        self.margin = int(math.ceil(max(self.sy, self.sx, 1.0))) + 2  # the filter's support in source pixels, and some

    def _read(self, y0, y1, x0, x1):
        from PIL import Image

        h, w = self.source.shape
        fy0, fy1, fx0, fx1 = y0 * self.sy, y1 * self.sy, x0 * self.sx, x1 * self.sx
        cy0, cx0 = max(int(fy0) - self.margin, 0), max(int(fx0) - self.margin, 0)
        cy1, cx1 = min(int(math.ceil(fy1)) + self.margin, h), min(int(math.ceil(fx1)) + self.margin, w)
        crop = np.ascontiguousarray(self.source[cy0:cy1, cx0:cx1], dtype=np.float32)
        box = (fx0 - cx0, fy0 - cy0, fx1 - cx0, fy1 - cy0)
        return np.asarray(Image.fromarray(crop, mode="F").resize((x1 - x0, y1 - y0), Image.BILINEAR, box=box),
                          dtype=np.float32)


def is_lazy(image) -> bool:
    return isinstance(image, LazyImage)


def strided_sample(image, step: int, step_x: int | None = None) -> np.ndarray:
    """``image[::step, ::step_x]`` (``step_x`` defaults to ``step``) as a numpy array; a
    :class:`LazyImage` is read in bands of rows (about ``BAND_BYTES`` of source at a time), so only the
    sample and one band are ever held: each band's sample is copied out and the band freed before the
    next is read (a strided view would keep every band, i.e. the whole slide, alive until the end). A
    lazy image keeps its samples (read-only, a few MB each), so a slide is read for them once, not once
    per caller."""
    step_x = step if step_x is None else step_x
    if not is_lazy(image):
        return np.asarray(image)[::step, ::step_x]
    cache = image.__dict__.setdefault("_samples", {})  # the diameter estimate and the plan ask for the same
    if (step, step_x) not in cache:
        h, w = image.shape
        rows = max(step, (BAND_BYTES // max(w * image.pixel_bytes, 1)) // step * step)
        cache[step, step_x] = np.concatenate([image[y:min(y + rows, h), 0:w][::step, ::step_x].copy()
                                              for y in range(0, h, rows)])
        cache[step, step_x].flags.writeable = False
    return cache[step, step_x]


def open_image(path: str | os.PathLike, channel: int | None = None, page: int | None = None, level: int = 0):
    """A :class:`LazyImage` for a large single-page TIFF (see module docs) or an OME-Zarr folder,
    else the whole image as :func:`cellxfer.imageio.read_image` reads it (same checks, same errors).
    ``level``: the pyramid level of a pyramidal TIFF / OME-TIFF or OME-Zarr (0 = full resolution; counts,
    points and maps are then in that level's pixels); a level the file does not have is an InputError."""
    from cellxfer.imageio import read_image, reading

    path = Path(path)
    if is_ome_zarr(path):
        return _open_ome_zarr(path, level)
    lazy = None
    if path.suffix.lower() in (".tif", ".tiff") and not page and path.is_file():
        with reading(path):  # what tifffile logs parsing the file: one warning line naming it
            lazy = _open_lazy_tiff(path, level, channel)
    if level and not isinstance(lazy, (LazyImage, np.ndarray)):
        raise InputError(f"{path}: --level {level} needs a pyramidal TIFF / OME-TIFF (one page a level) or an "
                         f"OME-Zarr folder; this file has no pyramid levels: drop --level")
    return lazy if lazy is not None else read_image(path, channel=channel, page=page)


def open_lazy(path: str | os.PathLike, channel: int | None = None, page: int | None = None,
              level: int = 0) -> LazyImage | None:
    """The :class:`LazyImage` :func:`open_image` gives for ``path``, or None for an image it reads whole
    (of a TIFF only the header is read to tell): how ``count --scheduler`` tells a slide, which it splits
    across workers, from an ordinary image."""
    path = Path(path)
    if is_ome_zarr(path):
        image = _open_ome_zarr(path, level)
    elif path.suffix.lower() in (".tif", ".tiff") and not page and path.is_file():
        from cellxfer.imageio import reading

        with reading(path):
            image = _open_lazy_tiff(path, level, channel)
    else:
        return None
    return image if is_lazy(image) else None


def _gone(path) -> InputError:
    return InputError(f"{path}: no such file now (it was there when the count began: moved or deleted since); "
                      f"put it back and rerun the same command (finished files are skipped)")


def _reopen(path: str, level: int, shape: tuple, channel: int | None = None) -> LazyImage:
    """A lazy image unpickled (e.g. on a Dask worker): the file opened again, checked to be the same size."""
    if not Path(path).exists():
        raise _gone(path)
    image = open_lazy(path, channel, level=level)
    if image is None or tuple(image.shape) != tuple(shape):
        raise InputError(f"{path}: changed since it was planned (now {'not a slide' if image is None else image.shape}, "
                         f"was {tuple(shape)}); count it again")
    return image


def is_ome_zarr(path: Path) -> bool:
    """A zarr folder (``zarr.json``: zarr v3 / OME-NGFF 0.5; ``.zattrs``: v2 / 0.4), taken as one OME-Zarr
    image (:func:`open_image` says in one line when it has no ``multiscales`` metadata)."""
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zattrs").is_file())


def image_planes(path: str | os.PathLike) -> "Planes":
    """What :func:`open_image` can pick from in ``path``, from its header alone: an OME-Zarr folder's levels
    (its other axes hold one plane), else :func:`cellxfer.imageio.planes_of`."""
    from cellxfer.imageio import Planes, planes_of

    path = Path(path)
    if not is_ome_zarr(path):
        return planes_of(path)
    try:
        return Planes("YX", levels=len(_ome_zarr_levels(path)[1]))
    except InputError:  # open_image says what is wrong with it
        return Planes(None)


def _ome_zarr_levels(path: Path):
    """``(zarr group, its levels' array paths)`` of an OME-Zarr folder, from its ``multiscales`` metadata."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        multiscales = (attrs.get("ome") or attrs).get("multiscales")
        return group, [d["path"] for d in multiscales[0]["datasets"]]
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for a foreign folder
        raise InputError(f"{path}: not an OME-Zarr image ({type(exc).__name__}: {exc}); give an OME-Zarr folder "
                         f"with multiscales metadata, or a TIFF/PNG file") from None


def _open_ome_zarr(path: Path, level: int):
    """Level ``level`` of an OME-Zarr image: lazy by region when large, else read whole; its singleton
    axes (t, c, z of one plane) dropped. One line naming the folder and the fix for anything else."""
    group, datasets = _ome_zarr_levels(path)
    if not 0 <= level < len(datasets):
        raise InputError(f"{path}: --level {level}: the image has levels 0 to {len(datasets) - 1}")
    array = group[datasets[level]]
    squeeze = tuple(i for i, n in enumerate(array.shape) if n == 1)
    if array.ndim - len(squeeze) != 2 or np.dtype(array.dtype).kind not in "uif":
        raise InputError(f"{path}: OME-Zarr image of shape {tuple(array.shape)} and type {array.dtype}; cellxfer "
                         f"counts one 2-D plane: save a single channel/plane")
    image = _ZarrArray(path, array, squeeze, level)
    return image if image.size > LAZY_PIXELS else np.asarray(image)


class _ZarrArray(LazyImage):
    """One 2-D plane of a zarr array (singleton axes ``squeeze`` dropped), read by region."""

    def __init__(self, path: Path, array, squeeze: tuple[int, ...], level: int = 0):
        self.path, self._array, self._squeeze, self.level = path, array, squeeze, level
        self.shape = tuple(int(n) for i, n in enumerate(array.shape) if i not in squeeze)
        self.dtype = np.dtype(array.dtype)

    def __reduce__(self):
        return _reopen, (str(self.path), self.level, self.shape)

    def _read(self, y0, y1, x0, x1):
        key, yx = [], iter((slice(y0, y1), slice(x0, x1)))
        for i in range(self._array.ndim):
            key.append(0 if i in self._squeeze else next(yx))
        try:
            return _read_zarr(self._array, tuple(key))
        except Exception as exc:  # noqa: BLE001 - a missing or corrupt chunk
            raise InputError(f"{self.path}: a chunk of the OME-Zarr image does not read ({type(exc).__name__}: "
                             f"{exc}); check the folder is complete") from None


def _check_data_in_file(path: Path, page, full: tuple[int, ...], dtype: np.dtype, size: int) -> None:
    """A slide's header is believed only as far as the file backs it: every strip or tile must lie within
    the file, and uncompressed ones must hold all the pixels claimed (``full``: every sample). Else an
    :class:`InputError` at once (a 300-byte file claiming 4e9 x 3 pixels used to hang ``count``), not a hang
    or a read of nothing."""
    offsets, counts = page.dataoffsets or (), page.databytecounts or ()
    end = max((int(o) + int(c) for o, c in zip(offsets, counts)), default=0)
    need = int(np.prod(full)) * dtype.itemsize
    if end > size or not offsets or (page.compression == 1 and sum(int(c) for c in counts) < need):
        held = sum(int(c) for c in counts)
        h, w = page.imagelength, page.imagewidth
        raise InputError(f"{path}: not a readable TIFF (its header claims {w} x {h} pixels, {need:,} "
                         f"bytes, but the file holds {size:,} bytes, {held:,} of pixel data listed up to byte {end:,}); "
                         f"check the file is complete, or export it again")


def _open_lazy_tiff(path: Path, level_index: int = 0, channel: int | None = None) -> LazyImage | np.ndarray | None:
    """The lazy reader for ``path`` (:class:`_TiffPlane`: one page of Y x X, with colour samples or not, of
    integer or float pixels), or None when it is small, of several pages, or unreadable (then
    :func:`read_image` reads it and reports what is wrong). A ``level_index`` above 0 of a pyramid is read
    whole (numpy) when small; beyond the pyramid it is an InputError."""
    import tifffile

    from cellxfer.imageio import check_pixels, to_plane, warn_empty_tiles

    try:
        tif = tifffile.TiffFile(path)
    except Exception:  # noqa: BLE001 - read_image says what is wrong with the file
        return None
    try:
        series = tif.series[0]
        if level_index >= len(series.levels):
            tif.close()
            raise InputError(f"{path}: --level {level_index}: the image has levels 0 to {len(series.levels) - 1}")
        level = series.levels[level_index]
        axes, full, dtype = level.axes.upper(), tuple(int(n) for n in level.shape), np.dtype(level.dtype)
        if not ("Y" in axes and "X" in axes) or dtype.kind not in "uif" or len(level.pages) != 1:
            tif.close()
            return None
        warn_empty_tiles(path, level.pages)
        if full[axes.index("Y")] * full[axes.index("X")] <= LAZY_PIXELS:
            small = check_pixels(path, to_plane(path, level.asarray(), axes, channel)) if level_index else None
            tif.close()
            return small
        page = level.pages[0]
        _check_data_in_file(path, page, full, dtype, tif.filehandle.size)
        if page.is_contiguous and page.compression == 1 and page.dataoffsets and not level_index:
            offset = page.dataoffsets[0]
            tif.close()
            return _RawTiff(path, offset, dtype.newbyteorder(tif.byteorder), full, axes, channel)
        import zarr

        array = zarr.open(tif.aszarr(level=level_index), mode="r")
        chunk = int(np.prod(array.chunks)) * dtype.itemsize
        if tuple(array.shape) != full or chunk > MAX_CHUNK_BYTES:
            tif.close()
            return None
        return _ZarrTiff(path, tif, array, axes, level_index, channel)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - an odd layout: read whole, as before
        tif.close()
        return None
