"""The plane of an image (``--page``, ``--channel``, ``--level``): what a header offers
(:func:`cellxfer.imageio.planes_of`, :func:`cellxfer.lazy.image_planes`) is what the reader picks from, and
:meth:`cellxfer.imageio.Plane.text` names the plane counted (the counts CSV's ``plane`` column)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellxfer import lazy
from cellxfer.errors import InputError
from cellxfer.imageio import Plane, planes_of, read_image


def _noise(*shape) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)


def _files(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """name -> (file, the options that pick something in it)."""
    out = {}

    def add(name, options, write):
        path = tmp_path / name
        write(path)
        out[name] = (path, options)

    add("flat.tif", (), lambda p: tifffile.imwrite(p, _noise(40, 50)))
    add("stack.tif", ("page",), lambda p: tifffile.imwrite(p, _noise(3, 40, 50), photometric="minisblack"))
    add("rgb.tif", ("channel",), lambda p: tifffile.imwrite(p, _noise(40, 50, 3), photometric="rgb"))
    add("zc.ome.tif", ("page", "channel"), lambda p: tifffile.imwrite(p, _noise(2, 3, 40, 50), metadata={"axes": "ZCYX"}))
    add("gray.png", (), lambda p: Image.fromarray(_noise(40, 50)).save(p))
    add("la.png", (), lambda p: Image.fromarray(_noise(40, 50, 2), mode="LA").save(p))
    add("rgb.png", ("channel",), lambda p: Image.fromarray(_noise(40, 50, 3)).save(p))
    add("palette.png", ("channel",), lambda p: Image.fromarray(_noise(40, 50, 3)).convert("P").save(p))
    add("png-named.tif", ("channel",), lambda p: Image.fromarray(_noise(40, 50, 3)).save(p, format="PNG"))
    return out


def test_the_header_offers_what_the_reader_picks_from(tmp_path):
    """Every option the header names is one the reader needs (it refuses the image without), and none other."""
    for name, (path, options) in _files(tmp_path).items():
        assert planes_of(path).options() == options, name
        needed = [o for o in ("page", "channel") if o in options]
        if needed:
            with pytest.raises(InputError, match=f"pass --({'|'.join(needed)}) N"):
                read_image(path)
        assert read_image(path, **{o: 1 for o in needed}).ndim == 2, name


def test_a_pyramid_offers_levels_and_unknown_files_every_option(tmp_path):
    from test_slide import _pyramid

    _, tif, root = _pyramid(tmp_path)
    assert planes_of(tif).options() == ("level",) and lazy.image_planes(tif).options() == ("level",)
    assert lazy.image_planes(root).options() == ("level",)
    (tmp_path / "bad.tif").write_text("not a tiff\n")
    for unknown in (tmp_path / "bad.tif", tmp_path / "missing.tif"):
        assert lazy.image_planes(unknown).options() == ("page", "channel", "level")


def test_the_plane_text_names_the_options_the_image_has_in_one_order(tmp_path):
    files = _files(tmp_path)

    def text(name, **plane):
        return Plane(**plane).text(planes_of(files[name][0]))

    assert text("flat.tif", page=3, channel=1) == "" and text("gray.png") == ""
    assert text("stack.tif", page=2, channel=1) == "page=2"
    assert text("rgb.tif") == "channel=0" == text("rgb.tif", channel=0)  # identical channels: channel 0 is read
    assert text("zc.ome.tif", channel=2, page=1) == "page=1 channel=2"


def test_a_plane_cell_reads_back_as_the_plane_it_names(tmp_path):
    """:meth:`Plane.parse` is :meth:`Plane.text`'s inverse (the napari reader opens each row's plane with it); a
    cell that names no plane is one line saying what is expected."""
    for path, _ in _files(tmp_path).values():
        offered = planes_of(path)
        for plane in (Plane(), Plane(page=1), Plane(channel=2), Plane(page=1, channel=1)):
            text = plane.text(offered)
            assert Plane.parse(text).text(offered) == text
    assert Plane.parse("page=2 channel=1") == Plane(page=2, channel=1)
    assert Plane.parse("level=3") == Plane(level=3) and Plane.parse("") == Plane()
    for bad in ("page", "page=x", "zoom=2", "page=1 colour=2"):
        with pytest.raises(InputError, match="expected option=index pairs"):
            Plane.parse(bad)


def test_a_damaged_tiff_header_is_looked_at_quietly(tmp_path):
    """The plane of every input is read from its header before counting; PIL's look at a TIFF cut short warned
    "Corrupt EXIF data" with its source line (two raw lines on a user's terminal before the image's `failed` line)."""
    import warnings

    from cellxfer.imageio import Planes, image_shape

    cut = tmp_path / "cut.tif"
    cut.write_bytes(b"II*\x00\x08\x00\x00\x00")  # a TIFF header whose first page was never written
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert planes_of(cut) == Planes(None) and image_shape(cut) is None
    assert not seen, [str(w.message) for w in seen]
