"""``count --points-format geojson``: the cells as GeoJSON point objects QuPath imports, read back with a
GeoJSON library and checked against the CSV points of the same count, for an ordinary image and for a
slide whose points are streamed band by band (:class:`cellxfer.count.parts.PointsFile`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellxfer import lazy

geojson = pytest.importorskip("geojson", reason="the dev extra's geojson package reads the files back")


def _features_xy(path) -> np.ndarray:
    """(x, y) of every Point Feature of a QuPath-style detection FeatureCollection, checked as it goes
    (the geojson library rounds coordinates to 6 decimals: the exact floats are read with json)."""
    text = path.read_text()
    fc = geojson.loads(text)
    assert isinstance(fc, geojson.FeatureCollection) and fc.is_valid, fc.errors()
    for f in fc["features"]:
        assert isinstance(f, geojson.Feature) and isinstance(f["geometry"], geojson.Point)
        assert f["properties"] == {"objectType": "detection", "classification": {"name": "Nucleus"}}
    rounded = np.array([f["geometry"]["coordinates"] for f in fc["features"]], dtype=np.float64).reshape(-1, 2)
    exact = np.array([f["geometry"]["coordinates"] for f in json.loads(text)["features"]]).reshape(-1, 2)
    assert np.allclose(rounded, exact, rtol=0, atol=1e-6)
    return exact


def _log_model(tmp_path):
    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import CounterMeta, save_counter

    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.15), "tile": 256})
    return save_counter(tmp_path / "log.safetensors", build_log(meta), meta)


@pytest.mark.parametrize("slide", [False, True], ids=["image", "slide-streamed"])
def test_geojson_points_equal_the_csv_points(tmp_path, capsys, monkeypatch, slide):
    pytest.importorskip("torch")
    import tifffile

    from cli_inproc import run_cli
    from test_scale import disks

    if slide:  # read by region, points streamed through the spill file in parts of 4 tiles
        from cellxfer.count import parts

        monkeypatch.setattr(lazy, "LAZY_PIXELS", 1000)
        monkeypatch.setattr(parts, "PART_TILES", 4)
    field, centres = disks(7.0, size=300, seed=5)
    img = np.tile(field, (2, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", img, tile=(128, 128))
    model = _log_model(tmp_path)
    base = ["count", tmp_path / "a.tif", "-m", model, "--engine", "torch", "--diameter", "off"]
    r = run_cli([*base, "-o", tmp_path / "c.csv", "--points", tmp_path / "csv"], capsys)
    assert r.returncode == 0, r.stderr
    r = run_cli([*base, "-o", tmp_path / "g.csv", "--points", tmp_path / "gj", "--points-format", "geojson"], capsys)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "gj").iterdir()) == ["a.geojson"]  # one file, no spill left
    csv_xy = np.loadtxt(tmp_path / "csv" / "a.csv", delimiter=",", skiprows=1).reshape(-1, 2)
    gj_xy = _features_xy(tmp_path / "gj" / "a.geojson")
    assert len(csv_xy) > 50 and np.array_equal(gj_xy, csv_xy)  # same cells, same order, same floats
    assert (0 <= gj_xy[:, 0]).all() and (gj_xy[:, 0] < img.shape[1]).all() and (gj_xy[:, 1] < img.shape[0]).all()
    all_centres = np.concatenate([centres + [300 * i, 300 * j] for j in range(2) for i in range(3)])
    d = np.hypot(*(gj_xy[:, None, :] - all_centres[None]).transpose(2, 0, 1)).min(axis=1)
    assert np.median(d) < 1.5  # the image's own pixel coordinates (no offset, no x/y swap)


def test_geojson_text_is_the_same_streamed_in_chunks_or_whole(tmp_path, monkeypatch):
    """The file a slide streams chunk by chunk equals the file written whole; an image without cells
    gives an empty FeatureCollection."""
    from cellxfer.count import parts
    from cellxfer.count.job import write_points
    from cellxfer.count.points_format import GeoJsonPoints

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 500, (7, 2))
    monkeypatch.setattr(parts.PointsFile, "CHUNK", 3)
    sink = parts.PointsFile(tmp_path / "s.geojson")
    sink.add(xy, np.arange(7, dtype=np.float32))
    assert sink.write(lambda vals: np.arange(len(vals))) == 7
    whole = write_points(tmp_path / "w.geojson", xy)
    assert (tmp_path / "s.geojson").read_text() == whole.read_text()
    assert np.array_equal(_features_xy(whole), xy)
    empty = write_points(tmp_path / "e.geojson", np.zeros((0, 2)))
    assert json.loads(empty.read_text()) == {"type": "FeatureCollection", "features": []}
    assert GeoJsonPoints().text(np.zeros((0, 2))) == empty.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.geojson", "s.geojson", "w.geojson"]


@pytest.mark.parametrize("args, why", [(["--points-format", "xml", "--points", "P"], "must be one of csv, geojson"),
                                       (["--points-format", "geojson"], "give --points DIR too")])
def test_bad_points_format_is_one_line(tmp_path, capsys, args, why):
    from cli_inproc import run_cli

    (tmp_path / "a.png").write_bytes(b"")
    args = [a if a != "P" else tmp_path / "p" for a in args]
    r = run_cli(["count", tmp_path / "a.png", "-o", tmp_path / "c.csv", *args], capsys)
    assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "p").exists()
