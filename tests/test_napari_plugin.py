"""The napari plugin (plugins/cellxfer-napari), headless: the reader opens a ``cellxfer count`` output as
layers with every cell on its pixel (cellxfer's (x, y) with pixel centres at +0.5 vs napari's (row, col)
with centres at the index), the widget counts an image layer or the part in view with the pipeline of
``count`` and saves edited points back.

Qt runs offscreen (``QT_QPA_PLATFORM=offscreen``); napari's canvas needs an OpenGL display, which Xvfb
gives (apt package ``xvfb``; started here when there is no ``DISPLAY``). Where napari is not installed or
no OpenGL context can be made the tests that need it are skipped, saying why; under CI (``CI=true``) a
missing napari fails instead, since CI installs the plugin (scripts/_venv.sh).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# npe2 (napari's plugin manifests) still uses pydantic's V1-style API: its deprecation warnings are not ours
pytestmark = [pytest.mark.filterwarnings(f"ignore::DeprecationWarning:{m}.*") for m in ("npe2", "pydantic")]


def _need(module: str, why: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed in CI ({exc}); scripts/_venv.sh installs plugins/cellxfer-napari",
                        pytrace=False)
        pytest.skip(f"{why}: pip install -e plugins/cellxfer-napari[test] ({exc})", allow_module_level=True)


napari = _need("napari", "napari is not installed")
_need("pytestqt", "pytest-qt is not installed")
from cellxfer_napari import from_napari, to_napari  # noqa: E402
from cellxfer_napari._coords import block_transform  # noqa: E402
from cellxfer_napari._reader import get_reader  # noqa: E402

from test_scale import disks  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _die_with_parent():
    """In the child: SIGTERM when the test process exits (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


@pytest.fixture(scope="session")
def gl_display():
    """An X display for OpenGL: Xvfb started for this session when there is no ``DISPLAY``. It ends when
    the test process does, after Qt let go of it (ending it earlier makes Qt exit the process with 1)."""
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb"):
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        os.environ["DISPLAY"] = ":" + xvfb.stdout.readline().decode().strip()


@pytest.fixture
def viewer(gl_display, qtbot):
    """A napari viewer, not shown, closed after the test (napari's own ``make_napari_viewer`` comes with
    its pytest plugin, whose autouse fixtures import Qt into every test of the suite: it is off, see
    pyproject.toml)."""
    from qtpy.QtGui import QOffscreenSurface, QOpenGLContext

    from cellxfer_napari import _work

    # Mesa's software OpenGL (llvmpipe) loads its LLVM with global symbols; triton (which torchvision
    # imports) loaded after that crashes the process, in this test or any later one: load it first
    # (the widget itself counts in a worker process, cellxfer_napari._work)
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    ctx, surface = QOpenGLContext(), QOffscreenSurface()
    surface.create()
    if not (ctx.create() and ctx.makeCurrent(surface)):
        pytest.skip("no OpenGL context for napari's canvas: install Xvfb (apt-get install xvfb) or run with a DISPLAY")
    ctx.doneCurrent()
    v = napari.Viewer(show=False)
    yield v
    v.close()
    _work.shutdown()


def _log_model(tmp_path):
    """A tiny classical density counter (LoG blobs; fast, deterministic)."""
    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import CounterMeta, save_counter

    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.15), "tile": 256})
    return save_counter(tmp_path / "log.safetensors", build_log(meta), meta)


def test_points_land_on_their_pixels_in_napari_convention():
    """cellxfer's point at the centre of pixel (row 3, col 7) is (7.5, 3.5); napari's is (3, 7)."""
    assert np.array_equal(to_napari([[7.5, 3.5], [0.5, 0.5], [0.0, 0.0]]), [[3, 7], [0, 0], [-0.5, -0.5]])
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (20, 2))
    assert np.allclose(from_napari(to_napari(xy)), xy)
    assert np.allclose(from_napari(np.column_stack([np.full(20, 4.0), to_napari(xy)])), xy)  # a plane of a stack
    # a density-map block of 4 original pixels: block (0, 0)'s centre is the middle of pixels 0..3 (1.5)
    t = block_transform((4, 4))
    assert t["scale"] == (4, 4) and t["translate"] == (1.5, 1.5)


def _count_output(tmp_path, capsys, fmt="csv", density=True):
    """A synthetic image of disks counted by ``cellxfer count`` with --points (and --density-map)."""
    import tifffile

    from cli_inproc import run_cli

    field, centres = disks(7.0, size=200, seed=3)
    img = field.astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", img)
    args = ["count", tmp_path / "img.tif", "-m", _log_model(tmp_path), "--engine", "torch", "--diameter", "off",
            "-o", tmp_path / f"c-{fmt}.csv", "--points", tmp_path / f"pts-{fmt}", "--points-format", fmt]
    r = run_cli([*args, *(["--density-map", tmp_path / "map.tif"] if density else [])], capsys)
    assert r.returncode == 0, r.stderr
    return tmp_path / f"c-{fmt}.csv", img, centres


def test_reader_opens_image_points_and_density_with_cells_on_their_nuclei(tmp_path, capsys):
    csv, img, centres = _count_output(tmp_path, capsys)
    layers = get_reader(str(csv))(str(csv))
    assert [t for _, _, t in layers] == ["image", "points", "image"]
    (image, _, _), (rc, pmeta, _), (dmap, dmeta, _) = layers
    assert np.array_equal(image, img)
    xy = np.loadtxt(tmp_path / "pts-csv" / "img.csv", delimiter=",", skiprows=1).reshape(-1, 2)
    assert np.array_equal(rc, to_napari(xy)) and len(rc) >= 0.9 * len(centres)
    assert pmeta["metadata"]["cellxfer"]["points_file"] == str(tmp_path / "pts-csv" / "img.csv")
    # each napari point, rounded to its pixel (napari: pixel centre at the index), lies on a nucleus
    r, c = np.round(rc).astype(int).T
    assert (img[r, c] > img.max() * 0.5).mean() >= 0.95
    # and the point is within a pixel of the true centre (x, y): no swap, no half-pixel shift
    true_rc = to_napari(centres)
    d = np.hypot(*(rc[:, None, :] - true_rc[None]).transpose(2, 0, 1)).min(axis=1)
    assert np.median(d) < 0.75, np.median(d)
    count = float(csv.read_text().splitlines()[1].split(",")[1])
    assert dmap.sum() == pytest.approx(count, abs=0.5) and dmeta["colormap"] == "magma"
    # the density map's blocks sit over the image: its extent is the image's
    by, bx = dmeta["scale"]
    ty, tx = dmeta["translate"]
    assert (dmap.shape[0] - 0.5) * by + ty == pytest.approx(img.shape[0] - 0.5, abs=by)


def test_reader_opens_a_count_whose_project_folder_moved(tmp_path, capsys):
    """A folder of images counted with absolute paths (as `count DIR` writes them), then the whole project moved or
    copied elsewhere: the reader finds the image and its cells where they lie now relative to the CSV (the
    manifest's ``csv_folder``), not a warning per image."""
    import shutil

    proj = tmp_path / "proj"
    proj.mkdir()
    csv, img, _ = _count_output(proj, capsys, density=False)
    assert str(proj) in csv.read_text()  # the rows name absolute paths
    moved = tmp_path / "elsewhere" / "proj2"
    shutil.move(str(proj), str(moved))
    layers = get_reader(str(moved / csv.name))(str(moved / csv.name))
    assert [t for _, _, t in layers] == ["image", "points"]
    assert np.array_equal(layers[0][0], img) and len(layers[1][0]) > 10
    assert layers[1][1]["metadata"]["cellxfer"]["points_file"] == str(moved / "pts-csv" / "img.csv")


def test_reader_opens_geojson_points_and_a_slide_by_region(tmp_path, capsys, monkeypatch):
    """... of a run given relative paths, opened from elsewhere (the manifest names them as given)."""
    from cellxfer import lazy

    monkeypatch.chdir(tmp_path)
    csv, img, _ = _count_output(Path("."), capsys, "geojson", density=False)
    assert json.loads(Path(f"{csv}.manifest.json").read_text())["config"]["points"] == "pts-geojson"
    monkeypatch.chdir(tmp_path.parent)
    csv = tmp_path / csv
    gj = tmp_path / "pts-geojson" / "img.geojson"
    [(rc, _, kind)] = get_reader(str(gj))(str(gj))
    layers = get_reader(str(csv))(str(csv))
    assert kind == "points" and np.array_equal(layers[1][0], rc) and len(rc) > 10
    monkeypatch.setattr(lazy, "LAZY_PIXELS", 1000)  # as a slide: level 0 read by region, plus a preview
    (levels, kw, _), _ = get_reader(str(csv))(str(csv))
    assert kw["multiscale"] and lazy.is_lazy(levels[0]) and levels[1].shape == img[::2, ::2].shape
    assert np.array_equal(levels[0][50:60, 70:90], img[50:60, 70:90])
    # counted as it is (read by parts; the widget sends it so to its worker) it gives the numpy image's cells
    from cellxfer.count import count_array

    model = tmp_path / "log.safetensors"
    want = count_array(img, model, engine="torch", diameter="off")
    got = count_array(levels[0], model, engine="torch", diameter="off")
    assert np.array_equal(got.points, want.points) and got.count == pytest.approx(want.count) and want.count > 10
    assert get_reader(str(tmp_path / "img.tif")) is None  # not ours: napari's own reader opens it


def test_reader_opens_an_ome_zarr_slide_with_its_cells(tmp_path, capsys):
    """An OME-Zarr image (a folder) counted OK was skipped as "not shown (missing)": nothing opened."""
    import zarr

    from cli_inproc import run_cli

    img = disks(7.0, size=200, seed=3)[0].astype(np.uint16)
    group = zarr.open_group(str(tmp_path / "slide.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=img, chunks=(64, 64))
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                                   "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}]
    csv = tmp_path / "c.csv"
    r = run_cli(["count", tmp_path / "slide.ome.zarr", "-m", _log_model(tmp_path), "--engine", "torch", "--diameter", "off",
                 "-o", csv, "--points", tmp_path / "pts"], capsys)
    assert r.returncode == 0, r.stderr
    (image, _, kind), (rc, meta, kind2) = get_reader(str(csv))(str(csv))
    assert kind == "image" and np.array_equal(np.asarray(image), img)
    assert kind2 == "points" and len(rc) > 10 and "cells" in meta["name"]


def test_reader_opens_points_tables_saved_by_excel_or_imagej(tmp_path):
    """A points CSV edited in Excel ("CSV UTF-8": a byte-order mark; "Unicode text": UTF-16) or saved by ImageJ
    (``X,Y``) opens as cellxfer itself reads it; a binary file named .csv is not ours."""
    rows = "x,y\n10.5,20.5\n30,40\n"
    for name, data in (("bom.csv", rows.encode("utf-8-sig")), ("utf16.csv", rows.encode("utf-16")),
                       ("imagej.csv", rows.upper().encode("cp1252"))):
        (tmp_path / name).write_bytes(data)
        [(xy, _, kind)] = get_reader(str(tmp_path / name))(str(tmp_path / name))
        assert kind == "points" and len(xy) == 2, name
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)))
    assert get_reader(str(tmp_path / "binary.csv")) is None


def test_widget_counts_the_layer_and_the_part_in_view_and_saves_edits(viewer, qtbot, tmp_path, capsys):
    from cellxfer_napari._widget import VISIBLE, CountWidget

    from cellxfer.count import count_array

    field, _ = disks(7.0, size=240, seed=4)
    img = field.astype(np.uint16)
    model = _log_model(tmp_path)
    layer = viewer.add_image(img, name="nuclei")
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reset_choices()
    widget.image.value, widget.model.value, widget.engine.value, widget.diameter.value = layer, model, "torch", "off"
    points = widget.count()
    want = count_array(img, model, engine="torch", diameter="off").points
    assert points is not None and np.array_equal(points.data, to_napari(want)), widget.result.value
    assert widget.result.value.startswith(f"{len(want)} cells") and len(want) > 20
    # the Count button: the same count in the background, the button off until it is shown
    viewer.layers.remove(points)
    widget.count_button.native.click()
    assert not widget.count_button.enabled and widget.result.value == "counting nuclei..."
    qtbot.waitUntil(lambda: widget.count_button.enabled, timeout=120_000)
    assert widget.result.value.startswith(f"{len(want)} cells")
    assert np.array_equal(viewer.layers["nuclei cells"].data, to_napari(want))
    # the part in view: zoom on the lower right quarter; the cells found there are those of that region
    viewer.scene.camera.center = (180, 180)
    viewer.scene.camera.zoom = min(viewer.canvas.size) / 100
    widget.region.value = VISIBLE
    points = widget.count()
    (r0, r1), (c0, c1) = widget._bounds(layer, img.shape)
    assert 0 < r0 < 180 < r1 <= 240 and 0 < c0 < 180 < c1 <= 240 and r1 - r0 < 200, (r0, r1, c0, c1)
    part = count_array(img[r0:r1, c0:c1], model, engine="torch", diameter="off").points + [c0, r0]
    assert np.array_equal(points.data, to_napari(part)) and "in rows" in widget.result.value
    # edit (drop one cell, add one), save as CSV and GeoJSON, read back through napari and the reader
    points.data = np.vstack([points.data[1:], [[200.0, 210.0]]])
    viewer.layers.selection.active = points
    out = widget.save(tmp_path / "edited.csv")
    expect = from_napari(points.data)
    assert np.allclose(np.loadtxt(out, delimiter=",", skiprows=1).reshape(-1, 2), expect)
    assert expect[-1].tolist() == [210.5, 200.5]
    gj = widget.save(tmp_path / "edited.geojson")
    xy = [f["geometry"]["coordinates"] for f in json.loads(gj.read_text())["features"]]
    assert np.allclose(xy, expect)
    [reopened] = viewer.open(out, plugin="cellxfer-napari")
    assert np.allclose(reopened.data, points.data)
    # a points layer opened from a file saves back to it when no file is chosen
    viewer.layers.selection.active = reopened
    reopened.data = reopened.data[:-1]
    assert widget.save() == out and len(np.loadtxt(out, delimiter=",", skiprows=1)) == len(points.data) - 1


def test_widget_says_why_it_cannot_count(viewer, tmp_path):
    from cellxfer_napari._widget import CountWidget

    # the widget as napari's Plugins menu opens it (the npe2 manifest's contribution)
    _, widget = viewer.window.add_plugin_dock_widget("cellxfer-napari", "Count cells")
    assert isinstance(widget, CountWidget)
    assert widget.count() is None and "open an image" in widget.result.value
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), name="colour", rgb=True)
    widget.reset_choices()
    widget.image.value = viewer.layers["colour"]
    assert widget.count() is None and "one 2-D plane" in widget.result.value
    viewer.add_image(np.zeros((64, 64), np.float32), name="blank")
    widget.reset_choices()
    widget.image.value = viewer.layers["blank"]
    widget.model.value = tmp_path / "missing.safetensors"
    assert widget.count() is None and "no such model file" in widget.result.value
    assert widget.save() is None and "no points to save" in widget.result.value


def test_reader_opens_each_image_at_the_plane_its_row_was_counted_from(tmp_path, capsys):
    """A stack counted at --page 1, then a single-plane image added to the same CSV by a run without --page: the
    manifest holds the last run's options only, so the reader opened the stack with none and could not show it
    (it has 3 pages). Each row's ``plane`` cell now says which plane to open."""
    import tifffile

    from cli_inproc import run_cli

    pages = np.stack([disks(7.0, size=96, seed=s)[0].astype(np.uint16) for s in (1, 2, 3)])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    tifffile.imwrite(tmp_path / "one.tif", pages[2])
    base = ["-m", _log_model(tmp_path), "--engine", "torch", "--diameter", "off", "-o", tmp_path / "c.csv"]
    r = run_cli(["count", tmp_path / "stack.tif", "--page", "1", *base], capsys)
    assert r.returncode == 0, r.stderr
    assert run_cli(["count", tmp_path / "one.tif", *base], capsys).returncode == 0
    csv = tmp_path / "c.csv"
    layers = get_reader(str(csv))(str(csv))
    shown = {meta["name"]: data for data, meta, kind in layers if kind == "image"}
    assert set(shown) == {"stack", "one"}
    assert np.array_equal(shown["stack"], pages[1]) and np.array_equal(shown["one"], pages[2])
