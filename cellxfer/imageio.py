"""Reading and writing single 2-D microscopy images.

Contract of :func:`read_image`: returns a 2-D ``numpy`` array (rows, columns) with the file's own dtype
(uint8 and uint16 are kept as they are). A file with more than one plane (multi-page or OME-TIFF, RGB)
needs ``page=`` / ``channel=`` to pick one: the axis is never guessed. An RGB(A) image whose colour
channels are identical is read as grayscale (that is exact, not a guess). The result always has at least
one pixel and, for float images, only finite values within the float32 range counting uses (else an
:class:`InputError` naming the file). What the decoder logs while reading becomes one-line warnings
naming the file, never raw library output.

Readers are plugins (:func:`cellxfer.hookspecs.cellxfer_image_readers`), chosen by the file's first
bytes where a reader declares them (a PNG saved under a ``.tif`` name is read as the PNG it is), else
by file suffix; which files are images at all is decided by suffix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

from cellxfer.errors import InputError
from cellxfer.hookspecs import hookimpl


#: Which of ``--page`` / ``--channel`` the running command has. The CLI sets it from the invoked
#: command's own options (:func:`set_plane_options`), so the advice for a multi-plane image names only an
#: option the user can pass; library callers keep the default (both, as ``page=`` / ``channel=``).
_PLANE_OPTIONS = {"page": True, "channel": True}


def set_plane_options(page: bool, channel: bool) -> None:
    """Declare whether the running command takes ``--page`` and ``--channel`` (see :data:`_PLANE_OPTIONS`)."""
    _PLANE_OPTIONS.update(page=bool(page), channel=bool(channel))


def carry_plane_options(fn: Callable) -> Callable:
    """``fn`` bound to this process's :data:`_PLANE_OPTIONS`, to run in a worker process (Dask, a spawned
    pool) that has not seen the command's options: its advice then names the options the command has
    (stylize under Dask advised "--page N", which stylize has not)."""
    import functools

    return functools.partial(_with_plane_options, fn, dict(_PLANE_OPTIONS))


def _with_plane_options(fn: Callable, options: dict, item):
    outer = dict(_PLANE_OPTIONS)
    _PLANE_OPTIONS.update(options)
    try:
        return fn(item)
    finally:
        _PLANE_OPTIONS.update(outer)


def _plane_advice(option: str, n: int) -> str:
    """How to pick one of ``n`` planes along a ``--page`` or ``--channel`` axis, with what this command has."""
    if _PLANE_OPTIONS[option]:
        return f"pass --{option} N (0..{n - 1}) to pick one"
    if option == "channel":
        return ("this command has no --channel: save the channel you want as a 2-D grayscale TIFF "
                "(e.g. Fiji: Image > Color > Split Channels) and give that instead")
    return ("this command has no --page: save the plane you want as a 2-D grayscale TIFF "
            "(e.g. Fiji: Image > Duplicate, one slice) and give that instead")


@dataclass(frozen=True)
class ImageReader:
    """Reads files with one of ``suffixes`` (lower case, with dot) into an array; see module docs.
    ``magic``: byte strings one of which every file of its format starts with (optional)."""

    name: str
    suffixes: tuple[str, ...]
    read: Callable[..., "np.ndarray"]  # read(path, channel: int | None, page: int | None) -> 2-D array
    magic: tuple[bytes, ...] = ()


#: the options that pick one plane of an image, in the order :meth:`Plane.text` names them
PLANE_OPTIONS = ("page", "channel", "level")


@dataclass(frozen=True)
class Plane:
    """The plane asked for: ``--page`` and ``--channel`` (None: not given) and ``--level`` (0: full resolution)."""

    page: int | None = None
    channel: int | None = None
    level: int = 0

    def text(self, planes: "Planes") -> str:
        """The canonical name of the plane this picks in an image offering ``planes``: ``option=index`` for each
        option that picks something there (:meth:`Planes.options`), space-separated, in :data:`PLANE_OPTIONS`
        order; an option not given is index 0 (what is read then: the first of identical colour channels; an
        image of several pages is refused without ``--page``). Empty for a single-plane image, whatever was
        asked. Two runs read the same plane of an unchanged image exactly when their texts are equal."""
        return " ".join(f"{name}={getattr(self, name) or 0}" for name in planes.options())

    @classmethod
    def parse(cls, text: str) -> "Plane":
        """The plane a counts CSV's ``plane`` cell names (the inverse of :meth:`text`; empty: a single-plane
        image's, read with no option); an :class:`InputError` for anything else."""
        pairs = [part.partition("=") for part in text.split()]
        try:
            if any(name not in PLANE_OPTIONS or not sep for name, sep, _ in pairs):
                raise ValueError(text)
            return cls(**{name: int(index) for name, _, index in pairs})
        except ValueError:
            raise InputError(f"plane {text!r}: expected option=index pairs of {', '.join(PLANE_OPTIONS)} "
                             f"(e.g. 'page=2 channel=0')") from None


def _samples_first(axes: str, ndim: int) -> tuple[str, bool]:
    """``axes`` (tifffile style) upper case, ``Q``s with ``YX`` last when they do not fit ``ndim``, and colour
    samples (``S``, last as TIFF and PNG store them) moved first; True when they were moved."""
    axes = axes.upper()
    if ndim != len(axes):  # pragma: no cover - defensive, tifffile keeps them consistent
        axes = "Q" * (ndim - 2) + "YX"
    if axes.endswith("S") and ndim >= 3:
        return "S" + axes[:-1], True
    return axes, False


@dataclass(frozen=True)
class Planes:
    """What an image offers to pick from beyond one 2-D plane: its ``axes`` letters (tifffile style, colour
    samples first, Y and X last) and ``shape``, as its header gives them (:func:`planes_of`) or as decoded
    (:func:`_pick_plane`), and its pyramid ``levels``. An axis of size 1 is no choice. Channel axes are ``C``
    and ``S`` (colour samples), page axes any other letter (Z, T, I, Q...). ``axes`` None: an image whose
    header does not say (another reader's format, an unreadable file), taken to offer every option."""

    axes: str | None
    shape: tuple[int, ...] = ()
    levels: int = 1

    @classmethod
    def of(cls, axes: str, shape, levels: int = 1) -> "Planes":
        """From a reader's ``axes`` and ``shape`` (colour samples last or first)."""
        shape = tuple(int(n) for n in shape)
        axes, moved = _samples_first(axes, len(shape))
        return cls(axes, (shape[-1], *shape[:-1]) if moved else shape, levels)

    @property
    def channel_axes(self) -> list[int]:
        return [i for i in self._choices() if self.axes[i] in "CS"]

    @property
    def page_axes(self) -> list[int]:
        return [i for i in self._choices() if self.axes[i] not in "CS"]

    def _choices(self) -> list[int]:
        """Positions of the axes before Y and X that hold more than one plane."""
        return [i for i, n in enumerate(self.shape[:len(self.axes or "") - 2]) if n > 1]

    def options(self) -> tuple[str, ...]:
        """Which of :data:`PLANE_OPTIONS` pick something in this image (all of them when unknown)."""
        if self.axes is None:
            return PLANE_OPTIONS
        there = {"page": self.page_axes, "channel": self.channel_axes, "level": self.levels > 1}
        return tuple(name for name in PLANE_OPTIONS if there[name])

    def index(self, path: Path, plane: Plane) -> tuple[int, ...]:
        """The index of ``plane``'s page and channel into an array of this layout: one 2-D plane (YX) of it;
        else an :class:`InputError` naming ``path``: an axis left to pick, an index out of range, more than
        one page or channel axis, or an option given for an axis the image lacks."""
        chan_axes, page_axes = self.channel_axes, self.page_axes
        if plane.channel not in (None, 0) and not chan_axes:
            raise InputError(f"{path}: --channel {plane.channel} given but the image has a single channel; drop --channel for this file")
        if plane.page not in (None, 0) and not page_axes:
            raise InputError(f"{path}: --page {plane.page} given but the image has a single page; drop --page for this file")
        shape, axes = "x".join(map(str, self.shape)), self.axes
        if len(chan_axes) > 1 or len(page_axes) > 1:
            raise InputError(f"{path}: image has shape {shape} (axes {axes}); cellxfer needs a 2-D image: reduce it to one plane first")
        index = [0] * (len(self.shape) - 2)
        if chan_axes:
            n = self.shape[chan_axes[0]]
            index[chan_axes[0]] = _plane_index(path, "channel", "channels", plane.channel, n, f"{n} channels (shape {shape}, axes {axes})")
        if page_axes:
            n = self.shape[page_axes[0]]
            index[page_axes[0]] = _plane_index(path, "page", "planes", plane.page, n,
                                               f"{n} planes along axis {axes[page_axes[0]]} (shape {shape})")
        return tuple(index)


def _plane_index(path: Path, option: str, noun: str, asked: int | None, n: int, what: str) -> int:
    """``asked``, the ``--option`` index into an axis of ``n`` ``noun``, when it lies in ``0..n-1``; else an
    :class:`InputError` naming ``path``: the image's ``what`` and the advice when none was asked, the range when
    it lies outside."""
    if asked is None:
        raise InputError(f"{path}: image has {what}; {_plane_advice(option, n)}")
    if not 0 <= asked < n:
        raise InputError(f"{path}: --{option} {asked} is out of range; the image has {noun} 0..{n - 1}")
    return asked


def to_plane(path: Path, arr: np.ndarray, axes: str, channel: int | None = None, page: int | None = None,
             shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The one 2-D plane of ``arr`` (``axes``: tifffile's letters, YX or YXS last) that every reader
    returns: the ``channel`` / ``page`` asked for, an RGB(A) whose colour channels are equal as grey, else
    an :class:`InputError` asking for ``--channel`` / ``--page``; bool pixels as uint8. A region of an
    image (all of its non-YX axes, :mod:`cellxfer.lazy`) reduces to the same region of the image's plane,
    or fails with the same line, when ``shape`` (the whole image's, in ``axes`` order) is given."""
    return _check_dtype(path, _pick_plane(path, arr, axes, channel, page, shape))


def _pick_plane(path: Path, arr: np.ndarray, axes: str, channel: int | None, page: int | None,
                shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Reduce ``arr`` (with ``axes`` letters, tifffile style, YX last) to the 2-D plane :meth:`Planes.index`
    picks (:func:`to_plane`); an RGB(A) image whose colour channels are identical is grayscale when no channel
    is asked. ``shape``: the whole image's when ``arr`` is a region of it (what the messages name)."""
    import numpy as np

    planes = Planes.of(axes, arr.shape if shape is None else shape)
    if _samples_first(axes, arr.ndim)[1]:
        arr = np.moveaxis(arr, -1, 0)
        if channel is None and arr.shape[0] in (3, 4) and all(np.array_equal(arr[0], arr[i]) for i in range(1, 3)):
            arr, planes = arr[0], Planes(planes.axes[1:], planes.shape[1:])
    return arr[planes.index(path, Plane(page, channel))]


def _yx(series) -> tuple[int, int]:
    """Rows and columns of a tifffile series (its Y and X axes; else its last two of non-sample axes)."""
    axes, shape = series.axes.upper(), series.shape
    if "Y" in axes and "X" in axes:
        return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
    dims = [n for n, a in zip(shape, axes) if a != "S"] or list(shape)
    return (int(dims[-2]), int(dims[-1])) if len(dims) >= 2 else (1, int(dims[-1]) if dims else 0)


def read_tiff(path: Path, channel: int | None = None, page: int | None = None) -> np.ndarray:
    import tifffile

    from cellxfer.budget import check_image_header

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            check_image_header(path, *_yx(series), series.size * series.dtype.itemsize)  # before decoding
            arr = series.asarray()
            axes = series.axes
            warn_empty_tiles(path, series.pages)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for truncated/corrupt files
        raise tiff_error(path, exc) from None
    return to_plane(path, arr, axes, channel, page)


def tiff_error(path, exc: Exception) -> InputError:
    """The one line for a TIFF that tifffile could not decode: a compression it needs the ``imagecodecs``
    package for (JPEG, LZW, JPEG 2000: what slide scanners and Bio-Formats write) names the package and the
    pip command; anything else is a damaged file."""
    import re

    text = str(exc)
    if "imagecodecs" in text:
        codec = re.search(r"COMPRESSION\.(\w+)|PREDICTOR\.(\w+)", text)
        what = f"{codec.group(1) or codec.group(2)}-compressed" if codec else "compressed"
        return InputError(f"{path}: its pixels are {what}, which needs the imagecodecs package to decode: "
                          f"pip install 'cellxfer[codecs]' (or save it uncompressed or with zlib/deflate)")
    return InputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); check the file is complete")


def read_png(path: Path, channel: int | None = None, page: int | None = None) -> np.ndarray:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    # microscopy images are large by nature (TIFFs have no such limit); PIL's decompression-bomb guard
    # would warn from 89 Mpixel and refuse from 179 Mpixel with an exception no caller expects
    Image.MAX_IMAGE_PIXELS = None
    from cellxfer.budget import check_image_header

    try:
        with Image.open(path) as im:
            depth = 2 if im.mode.startswith("I;16") else 4 if im.mode in ("I", "F") else 1
            check_image_header(path, im.height, im.width, im.height * im.width * len(im.getbands()) * depth,
                               lazy_ok=False)  # the header, before a pixel is decoded
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable PNG ({exc}); check the file is complete") from None
    if arr.ndim == 3:
        if arr.shape[2] == 2:  # LA: drop alpha
            arr = arr[..., :1]
        axes = "YXS"
        if arr.shape[2] == 4 and channel is None:
            arr = arr[..., :3]
    else:
        axes = "YX"
    return to_plane(path, arr, axes, channel, page)


def _check_dtype(path: Path, arr: "np.ndarray") -> "np.ndarray":
    import numpy as np

    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype not in (np.uint8, np.uint16):
        if arr.dtype.kind in "iuf":
            return arr
        raise InputError(f"{path}: pixel type {arr.dtype} is not supported; save it as 8- or 16-bit grayscale")
    return arr


BUILTIN_READERS = (
    ImageReader("tiff", (".tif", ".tiff"), read_tiff, magic=(b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),
    ImageReader("png", (".png",), read_png, magic=(b"\x89PNG\r\n\x1a\n",)),
)


@hookimpl
def cellxfer_image_readers():
    return list(BUILTIN_READERS)


def reader_for(path: str | os.PathLike, head: bytes = b"") -> ImageReader | None:
    """The registered reader whose ``magic`` starts ``head`` (the file's first bytes), else the one for
    ``path``'s suffix, or None when no reader takes it."""
    from cellxfer.plugins import get_registry

    readers = list(get_registry().image_readers().values())
    for reader in readers:
        if head and any(head.startswith(m) for m in reader.magic):
            return reader
    suffix = Path(path).suffix.lower()
    for reader in readers:
        if suffix in reader.suffixes:
            return reader
    return None


def image_suffixes() -> set[str]:
    """The suffixes the registered readers take: which files are images, to every command. With no reader registered
    (the built-in ``imageio`` plugin disabled by ``CELLXFER_DISABLE_PLUGINS`` or failed, and no other plugin
    reading images) an :class:`InputError` saying so, naming the variable: no command could read an image, and
    each would otherwise report that the user's folders hold none."""
    from cellxfer.plugins import DISABLE_ENV, get_registry

    registry = get_registry()
    suffixes = {s for r in registry.image_readers().values() for s in r.suffixes}
    if suffixes:
        return suffixes
    info = registry.infos.get("imageio")
    if info is not None and info.status == "disabled":
        why = f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')} disables the built-in TIFF and PNG readers " \
              f"(plugin 'imageio'); remove imageio from {DISABLE_ENV}"
    else:
        why = "the built-in TIFF and PNG readers (plugin 'imageio') did not load; `cellxfer plugins` says why"
    raise InputError(f"no image reader is registered: {why}")


# -- warnings of the libraries that decode files --------------------------------------------------
_reading = threading.local()  # .path: the file this thread is reading, else absent/None
_OBJECT_REPR = re.compile(r"^<tifffile\.[^>]*>\s*")


def empty_segments(pages) -> tuple[int, int]:
    """``(empty, all)`` strips or tiles of tifffile ``pages``: a segment whose offset or byte count is 0
    is not in the file (TIFF allows it: a sparse file; else a writer that stopped) and tifffile reads it
    as zeros, without a word. Reads only the two tags (cheap: 8 bytes a tile)."""
    import numpy as np

    empty = total = 0
    for page in pages:
        if page is None:
            continue
        offsets, counts = np.asarray(page.dataoffsets or ()), np.asarray(page.databytecounts or ())
        total += offsets.size
        empty += int(np.count_nonzero((offsets == 0) | (counts == 0)))
    return empty, total


def warn_empty_tiles(path, pages) -> int:
    """Warn (one line naming ``path``, once per file and process) when some segments of ``pages`` are not
    in the file (:func:`empty_segments`), so an image read with them as zeros is never silently partial;
    returns how many."""
    empty, total = empty_segments(pages)
    if empty:
        kind = "tiles" if any(p is not None and p.keyframe.is_tiled for p in pages) else "strips"  # (a TiffFrame's: its keyframe's)
        _warn_once(path, f"{empty} of {total} {kind} are not in the file (offset or byte count 0) and were read as "
                         f"zeros; if the image should have pixels there, the file is damaged or was not written to "
                         f"the end: export it again (counts are flagged empty-tiles)")
    return empty


def empty_tiles(path: str | os.PathLike, level: int = 0) -> int:
    """How many strips or tiles of the TIFF ``path`` (the pages of its first series' ``level``) are not in
    the file (:func:`empty_segments`), from its header; 0 for any other image or an unreadable one."""
    path = Path(path)
    if not path.is_file():
        return 0
    try:
        import tifffile

        with reading(path), tifffile.TiffFile(path) as tif:  # (what tifffile logs was said when it was read)
            levels = tif.series[0].levels
            return empty_segments(levels[level].pages)[0] if level < len(levels) else 0
    except Exception:  # noqa: BLE001 - not a TIFF, or damaged: its reader says what is wrong
        return 0


def _warn_once(path, message: str) -> None:
    """``warning: PATH: message`` on stderr, once per file and message in this process."""
    if (str(path), message) not in _FILTER.seen:
        from cellxfer.console import warn

        _FILTER.seen.add((str(path), message))
        warn(f"{path}: {message}")


class _FileWarnings(logging.Filter):
    """On tifffile's logger: a record logged while this thread reads a file is printed as one line
    ``warning: FILE: tifffile: message`` (once per file and message) and goes no further; records
    logged outside :func:`read_image` pass unchanged."""

    def __init__(self):
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        path = getattr(_reading, "path", None)
        if path is None:
            return True
        _warn_once(path, "tifffile: " + " ".join(_OBJECT_REPR.sub("", record.getMessage()).split()))
        return False


_FILTER = _FileWarnings()


@contextlib.contextmanager
def reading(path: Path):
    """While this thread reads ``path``: what tifffile logs becomes one-line warnings naming the file."""
    tiff_log = logging.getLogger("tifffile")
    if _FILTER not in tiff_log.filters:
        tiff_log.addFilter(_FILTER)
    outer, _reading.path = getattr(_reading, "path", None), path
    try:
        yield
    finally:
        _reading.path = outer


def read_image(path: str | os.PathLike, channel: int | None = None, page: int | None = None) -> np.ndarray:
    """Read one 2-D image (rows, cols); dtype as stored. Raises :class:`InputError` on bad input.
    What the decoder logs while reading comes out as one-line warnings naming the file."""
    path = Path(path)
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            raise InputError(f"{path}: a broken link (to {os.readlink(path)}, which does not exist); reconnect the "
                             f"drive it points to or fix the link")
        raise InputError(f"{path}: no such file")
    if reader_for(path) is None:  # what is an image is decided by suffix; which reader by content
        raise InputError(f"{path}: not an image cellxfer reads (suffixes: {', '.join(sorted(image_suffixes()))})")
    with open(path, "rb") as f:
        reader = reader_for(path, f.read(16))
    with reading(path):
        arr = reader.read(path, channel=channel, page=page)
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D image, got shape {arr.shape}")
    return check_pixels(path, arr)


def check_pixels(path: str | os.PathLike, arr: "np.ndarray", where: str = "") -> "np.ndarray":
    """``arr`` itself when it has at least one pixel and every pixel is finite; else an
    :class:`InputError` naming ``path``, how many pixels are bad and the fix. Every command reads images
    through :func:`read_image`, and a slide read by region checks each region (``where``: which, for the
    message), so no NaN or infinity ever reaches a count, a loss or a stylizer."""
    import numpy as np

    if arr.size == 0:
        raise InputError(f"{path}: image is empty ({arr.shape[-1]}x{arr.shape[0]} pixels); remove it or export it again")
    if arr.dtype.kind == "f":
        lo, hi = float(arr.min()), float(arr.max())  # NaN propagates: no pixel-sized temporary when all is well
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            raise InputError(f"{path}: image has {bad} non-finite pixels (NaN or infinite) of {arr.size}{where}; "
                             f"replace them (e.g. with 0) or crop them out")
        top = max(abs(lo), abs(hi))
        if top > float(np.finfo(np.float32).max):
            raise InputError(f"{path}: image has values up to {top:.3g}{where}, beyond the 32-bit float range counting "
                             f"uses; rescale it (e.g. divide by {top:.0e}) and save it again")
    return arr


def write_tiff(path: str | os.PathLike, image: np.ndarray, description: str | None = None) -> None:
    """Write a 2-D image as an uncompressed TIFF, atomically. dtype is kept; ``description`` (ASCII) goes
    in the ImageDescription tag (:func:`tiff_description` reads it back)."""
    import tifffile

    from cellxfer.atomic import atomic_path

    if image.ndim != 2:
        raise ValueError(f"write_tiff expects a 2-D image, got shape {image.shape}")
    with atomic_path(path, need=image.nbytes + 512 + len(description or "")) as tmp:
        tifffile.imwrite(tmp, image, photometric="minisblack", description=description)


def tiff_description(path: str | os.PathLike) -> str:
    """The ImageDescription :func:`write_tiff` wrote (empty when none or unreadable)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].description or ""
    except Exception:  # noqa: BLE001 - a damaged file: its other checks say what is wrong
        return ""


@contextlib.contextmanager
def _pil_header(path: Path):
    """``PIL.Image.open(path)`` for a look at the header only, PIL's own warnings silenced: a damaged TIFF's
    "Corrupt EXIF data" ``UserWarning`` printed a source line and a traceback-like second line before the
    image's one ``failed`` line (the reader says what is wrong, once)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            yield im


def planes_of(path: str | os.PathLike) -> Planes:
    """What :func:`read_image` can pick from in ``path`` (its pages and channels, and a TIFF's pyramid levels),
    from its header alone; ``Planes(None)`` when the header does not say (another reader's format, a folder,
    an unreadable file)."""
    path = Path(path)
    if not path.is_file():
        return Planes(None)
    try:
        import tifffile

        with reading(path), tifffile.TiffFile(path) as tif:  # what tifffile logs: one warning line naming the file
            series = tif.series[0]
            return Planes.of(series.axes, series.shape, len(series.levels))  # what read_tiff picks from
    except Exception:  # noqa: BLE001 - not a TIFF: PIL's header, below
        pass
    try:
        with _pil_header(path) as im:  # read_png's bands: a palette as RGB(A), LA as its gray
            bands = {"P": 4 if "transparency" in im.info else 3, "LA": 1}.get(im.mode, len(im.getbands()))
            return Planes.of("YXS", (im.height, im.width, bands)) if bands > 1 else Planes("YX", (im.height, im.width))
    except Exception:  # noqa: BLE001 - unreadable: every option counts (the reader reports what is wrong)
        return Planes(None)


def image_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """(rows, columns) of a 2-D image from its header only (TIFF, PNG), or None when the header does not
    say (the full reader then decides)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _yx(tif.series[0])
        with _pil_header(path) as im:
            return im.height, im.width
    except Exception:  # noqa: BLE001 - unreadable: the full reader reports it
        return None
