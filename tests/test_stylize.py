"""Weight-free stylizers (fda, histogram), the stylize runner and CLI, and the domain-gap figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellxfer.dataset import CellDataset, CellDatasetWriter
from cellxfer.errors import InputError
from cellxfer.stylize import fda, histogram, metrics
from cellxfer.options import make_config
from cellxfer.stylize.base import StyleSet, from_unit, run_stylize, to_unit
from cellxfer.stylize.config import FDAConfig, HistogramConfig

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cellxfer"]


def stylizer(name):
    from cellxfer.plugins import get_registry

    return get_registry().get("cellxfer_stylizers", name)


@pytest.fixture
def content(tmp_path) -> Path:
    """A labelled dataset: 5 uint8 images (one 40x56) and one uint16 image, cells as bright squares."""
    rng = np.random.default_rng(1)
    root = tmp_path / "content"
    w = CellDatasetWriter(root)
    for i in range(6):
        shape = (40, 56) if i == 2 else (64, 64)
        dtype = np.uint16 if i == 5 else np.uint8
        top = 60000 if dtype == np.uint16 else 230
        img = rng.normal(20 if dtype == np.uint8 else 5000, 4, shape).clip(0, top)
        # 3 decimals, as points tables store them (the writer's mask uses the unrounded values)
        pts = np.round(rng.uniform(4, min(shape) - 4, (7 + i, 2)), 3)
        for x, y in pts:
            img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = top
        w.write(f"img{i}", img.astype(dtype), pts)
    w.finalize({"stage": "test"})
    return root


@pytest.fixture
def style(tmp_path) -> Path:
    """Three dim, blurry uint8 'real' images of 80x100 with a brightness gradient."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    root = tmp_path / "style"
    root.mkdir()
    yy, xx = np.mgrid[0:80, 0:100]
    for i in range(3):
        img = 4 + 0.05 * xx + gaussian_filter(rng.normal(0, 20, (80, 100)), 2) + rng.normal(0, 1.5, (80, 100))
        tifffile.imwrite(root / f"s{i}.tif", img.clip(0, 255).astype(np.uint8))
    return root


# -- FDA ----------------------------------------------------------------------------------------------
def fda_full_fft(content, style, beta):
    """Independent reference: two-sided FFT, centred symmetric window on the shifted spectrum."""
    h, w = content.shape
    b = int(np.floor(beta * min(h, w)))
    fc, fs = np.fft.fftshift(np.fft.fft2(content)), np.fft.fftshift(np.fft.fft2(style))
    amp = np.abs(fc).copy()
    cy, cx = h // 2, w // 2
    amp[cy - b:cy + b + 1, cx - b:cx + b + 1] = np.abs(fs)[cy - b:cy + b + 1, cx - b:cx + b + 1]
    return np.fft.ifft2(np.fft.ifftshift(amp * np.exp(1j * np.angle(fc))))


@pytest.mark.parametrize("shape", [(64, 64), (48, 70), (33, 41)])
@pytest.mark.parametrize("beta", [0.0, 0.05, 0.2])
def test_fda_matches_two_sided_reference_and_is_real(shape, beta):
    rng = np.random.default_rng(0)
    c, s = rng.random(shape), rng.random(shape) * 0.3
    ref = fda_full_fft(c, s, beta)
    # the symmetric window keeps Hermitian symmetry: the two-sided result is real
    assert np.abs(ref.imag).max() < 1e-9
    np.testing.assert_allclose(fda.fda(c, s, beta), ref.real, atol=2e-5)


def test_fda_swaps_low_frequency_amplitude_only():
    rng = np.random.default_rng(3)
    c, s = rng.random((64, 64)), rng.random((64, 64)) * 0.2 + 0.01
    out = fda.fda(c, s, 0.05).astype(np.float64)
    win = fda.low_frequency_window((64, 64), 0.05)
    b = 3
    assert win.sum() == (2 * b + 1) * (b + 1)
    fo, fc, fs = (np.fft.rfft2(x) for x in (out, c, s))
    np.testing.assert_allclose(np.abs(fo)[win], np.abs(fs)[win], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.abs(fo)[~win], np.abs(fc)[~win], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.angle(fo)[~win], np.angle(fc)[~win], atol=1e-3)
    # beta = 0: only the mean moves
    np.testing.assert_allclose(fda.fda(c, s, 0.0), c - c.mean() + s.mean(), atol=1e-5)


# -- histogram -----------------------------------------------------------------------------------------
def test_histogram_matching_gives_the_style_distribution_and_keeps_order():
    rng = np.random.default_rng(4)
    style = rng.integers(0, 60, (50, 40)).astype(np.uint8)
    content = rng.random((40, 50)).astype(np.float32)  # distinct values, same pixel count
    values, cdf = histogram.quantiles(to_unit(style))
    out = histogram.match(content, values, cdf)
    np.testing.assert_array_equal(np.sort(from_unit(out, np.uint8).ravel()), np.sort(style.ravel()))
    order = np.argsort(content.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # brighter stays brighter (or equal)


def test_a_12_bit_camera_style_set_is_read_at_its_bit_depth(content, style, tmp_path):
    """Style images of a 12-bit camera stored as uint16 (0-4095) style 8-bit content as the same images stored as
    uint8 do (not as a sixteenth of the range: 16 grey levels); uint8 and full-range uint16 sets are read as before;
    the bit depth is part of the run's identity only where it applies."""
    from cellxfer.stylize.base import StyleSet, bit_depth

    scenes = [tifffile.imread(f).astype(np.float64) for f in sorted(style.glob("*.tif"))]
    top = max(x.max() for x in scenes)
    flat, deep = tmp_path / "style8", tmp_path / "style12"
    for folder, levels, dtype in ((flat, 255, np.uint8), (deep, 4095, np.uint16)):  # the same scenes, two cameras
        folder.mkdir()
        for i, x in enumerate(scenes):
            tifffile.imwrite(folder / f"s{i}.tif", (x / top * levels).round().astype(dtype))
    assert bit_depth(StyleSet([deep]).images) == {"uint16": 12} and StyleSet([flat]).bits == {}
    assert bit_depth([np.array([[0, 40000]], np.uint16)]) == {} and bit_depth([np.array([[0, 900]], np.uint16)]) == {"uint16": 10}
    st = stylizer("histogram")
    a = run_stylize(st, st.config_cls(), content, [flat], tmp_path / "a8", seed=3)
    b = run_stylize(st, st.config_cls(), content, [deep], tmp_path / "a12", seed=3)
    assert a.written == b.written == 6
    for id_ in ("img0", "img1"):
        x8 = CellDataset(tmp_path / "a8")[id_].image.astype(int)
        x12 = CellDataset(tmp_path / "a12")[id_].image.astype(int)
        assert np.abs(x8 - x12).max() <= 1 and x12.max() > 128  # read by 65535, it stayed under 16
    m = json.loads((tmp_path / "a12" / "manifest.json").read_text())
    assert m["style_bits"] == {"uint16": 12} and "style_bits" not in json.loads((tmp_path / "a8" / "manifest.json").read_text())


# -- the runner ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fda", "histogram"])
def test_run_stylize_keeps_labels_dtype_shape_and_is_seeded(method, content, style, tmp_path):
    st = stylizer(method)
    cfg = st.config_cls()
    a = run_stylize(st, cfg, content, [style], tmp_path / "a", seed=7)
    assert a.written == 6 and not a.failed
    src, out = CellDataset(content), CellDataset(tmp_path / "a")
    assert out.ids == src.ids
    for id_ in src.ids:
        s, o = src[id_], out[id_]
        assert o.image.dtype == s.image.dtype and o.image.shape == s.image.shape
        assert (content / "points" / f"{id_}.csv").read_text() == (tmp_path / "a" / "points" / f"{id_}.csv").read_text()
        np.testing.assert_array_equal(tifffile.imread(content / "masks" / f"{id_}.tif"), tifffile.imread(tmp_path / "a" / "masks" / f"{id_}.tif"))
        assert not np.array_equal(o.image, s.image)
    assert (content / "counts.csv").read_text() == (tmp_path / "a" / "counts.csv").read_text()
    # the stylized images look like the style set: dim (style mean ~ 6-8 grey levels)
    assert out["img0"].image.mean() < 0.5 * src["img0"].image.mean()
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["stage"] == "stylize" and m["method"] == method and m["complete"] and m["seed"] == 7
    assert m["config"] == {f: getattr(cfg, f) for f in m["config"]}
    assert len(m["inputs"]) == 2 and m["seconds_per_image"] > 0
    # same seed -> same bytes; another seed -> other images
    run_stylize(st, cfg, content, [style], tmp_path / "b", seed=7)
    run_stylize(st, cfg, content, [style], tmp_path / "c", seed=8)
    same = [(tmp_path / "a" / "images" / f"{i}.tif").read_bytes() == (tmp_path / "b" / "images" / f"{i}.tif").read_bytes() for i in src.ids]
    other = [(tmp_path / "a" / "images" / f"{i}.tif").read_bytes() == (tmp_path / "c" / "images" / f"{i}.tif").read_bytes() for i in src.ids]
    assert all(same) and not all(other)


def test_run_stylize_resumes_refuses_other_settings_and_reports_bad_files(content, style, tmp_path):
    st = stylizer("fda")
    out = tmp_path / "out"
    first = run_stylize(st, FDAConfig(batch_size=4), content, [style], out, seed=1)
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    (out / "images" / "img3.tif").unlink()
    (out / "images" / ".img4.tif.x.cellxfer-tmp").write_bytes(b"half")
    again = run_stylize(st, FDAConfig(batch_size=4), content, [style], out, seed=1)
    assert (again.written, again.skipped) == (1, 5) and first.written == 6
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before  # batch size does not matter
    with pytest.raises(InputError, match="other settings.*beta"):
        run_stylize(st, FDAConfig(beta=0.1), content, [style], out, seed=1)
    assert run_stylize(st, FDAConfig(beta=0.1), content, [style], out, seed=1, overwrite=True).written == 6
    # a corrupt content image fails alone
    (content / "images" / "img1.tif").write_bytes(b"not a tiff")
    bad = run_stylize(st, FDAConfig(), content, [style], tmp_path / "bad", seed=1)
    assert set(bad.failed) == {"img1"} and bad.written == 5 and "not a readable TIFF" in bad.failed["img1"]
    assert json.loads((tmp_path / "bad" / "manifest.json").read_text())["complete"] is False


def test_style_set_and_config_errors(tmp_path, style):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        StyleSet([tmp_path / "empty"])
    with pytest.raises(InputError, match="no such file or folder"):
        StyleSet([tmp_path / "nope"])
    assert len(StyleSet([style, style / "s0.tif"])) == 4
    with pytest.raises(InputError, match="not a parameter of stylizer 'fda'"):
        make_config(FDAConfig, {"reference": "pooled"}, "stylizer 'fda'")
    with pytest.raises(InputError, match="beta"):
        make_config(FDAConfig, {"beta": "0.7"}, "stylizer 'fda'")
    assert make_config(HistogramConfig, {"reference": "pooled"}, "stylizer 'histogram'").reference == "pooled"


def test_histogram_pooled_uses_all_style_images(content, style, tmp_path):
    st = stylizer("histogram")
    run_stylize(st, HistogramConfig(reference="pooled"), content, [style], tmp_path / "p", seed=0)
    ref = np.concatenate([tifffile.imread(p).ravel() for p in sorted(style.iterdir())])
    out = CellDataset(tmp_path / "p")["img0"].image
    assert abs(np.median(out) - np.median(ref)) <= 1


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_plugins_lists_stylizers_and_stylize_runs(content, style, tmp_path):
    r = subprocess.run(CLI + ["plugins"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    line = next(l for l in r.stdout.splitlines() if l.startswith("stylize"))
    assert "stylizer: fda, histogram, inst" in line
    r = subprocess.run(CLI + ["stylize", "--method", "histogram", "--content", str(content), "--style", str(style),
                              "--out", str(tmp_path / "h"), "--limit", "3"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "3 images (3 written" in r.stdout and len(CellDataset(tmp_path / "h")) == 3
    r = subprocess.run(CLI + ["stylize", "--content", str(content), "--style", str(tmp_path / "missing"),
                              "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and "missing" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(CLI + ["stylize", "--method", "inst", "--content", str(content), "--style", str(style),
                              "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--token is required" in r.stderr


# -- metrics and real data --------------------------------------------------------------------------------
def test_metrics_are_zero_on_identical_sets_and_grow_with_shift():
    rng = np.random.default_rng(5)
    a = [rng.random((64, 64)) * 0.5 for _ in range(3)]
    assert metrics.intensity_gap(a, a) == 0 and metrics.spectrum_gap(a, a) == 0
    shifted = [x + 10 / 255 for x in a]
    assert metrics.intensity_gap(a, shifted) == pytest.approx(10, abs=0.2)
    assert metrics.spectrum_gap(a, shifted) < 1e-9  # a shift is DC only
    from scipy.ndimage import gaussian_filter

    assert metrics.spectrum_gap(a, [gaussian_filter(x, 2) for x in a]) > 0.5
    spec = metrics.radial_power_spectrum(a[0], 16)
    assert spec.shape == (16,) and np.isfinite(spec).all()
    assert len(metrics.tiles(np.zeros((600, 800)), 256)) == 6


def test_stylizing_toward_real_idcia_images_narrows_the_gap(idcia_dir, tmp_path):
    from cellxfer.stylize.base import image_rng

    real = sorted((idcia_dir / "images").glob("*.tiff"))
    style, held_out = real[0:20:2], real[1:20:2]
    synth = tmp_path / "syn"
    subprocess.run(CLI + ["synth", "--n", "6", "--out", str(synth), "--workers", "1"], check=True, capture_output=True, cwd=REPO)
    ref = [t for p in held_out for t in metrics.tiles(to_unit(tifffile.imread(p)), 256)]
    base = [to_unit(s.image) for s in CellDataset(synth)]
    gaps = {"none": (metrics.intensity_gap(base, ref), metrics.spectrum_gap(base, ref))}
    for method in ("histogram", "fda"):
        run_stylize(stylizer(method), stylizer(method).config_cls(), synth, style, tmp_path / method, seed=0)
        imgs = [to_unit(s.image) for s in CellDataset(tmp_path / method)]
        gaps[method] = (metrics.intensity_gap(imgs, ref), metrics.spectrum_gap(imgs, ref))
    assert gaps["histogram"][0] < 0.2 * gaps["none"][0], gaps
    assert gaps["fda"][0] < gaps["none"][0] and gaps["fda"][1] < gaps["none"][1], gaps
    assert image_rng(0, 1).random() == image_rng(0, 1).random()


def test_loading_weights_leaves_the_libraries_errors_only_even_if_they_were_imported_before(monkeypatch):
    """A process that imported diffusers/transformers before loading weights (a plugin, a notebook) would
    print their warnings, e.g. diffusers' wrong "attempting to download" one: loading weights sets both to
    errors only, unless the user asked for a level with ``DIFFUSERS_VERBOSITY``/``TRANSFORMERS_VERBOSITY``."""
    import logging

    pytest.importorskip("diffusers")
    import transformers.utils.logging as tlog
    from diffusers.utils import logging as dlog

    from cellxfer.stylize.models import _quiet

    monkeypatch.delenv("DIFFUSERS_VERBOSITY", raising=False)
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    dlog.set_verbosity_warning()
    tlog.set_verbosity_warning()
    _quiet()
    assert dlog.get_verbosity() == logging.ERROR and tlog.get_verbosity() == logging.ERROR
    monkeypatch.setenv("DIFFUSERS_VERBOSITY", "info")
    dlog.set_verbosity_info()
    _quiet()
    assert dlog.get_verbosity() == logging.INFO and tlog.get_verbosity() == logging.ERROR
    dlog.set_verbosity_error()
