"""Nucleus scale: the diameter estimate, the --diameter policy, and counting rescaled images with points
returned in the original image's pixels."""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import pytest

from cellxfer.errors import InputError
from cellxfer.scale import DiameterPolicy, estimate_diameter, resize_to


def disks(d: float, size: int = 384, cover: float = 0.15, seed: int = 0, blur: float = 1.0, noise: float = 0.03):
    """A float32 image of non-touching bright disks of diameter ``d`` (+-10%) and their centres (x, y)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size), np.float32)
    n, placed = int(cover * size * size / (np.pi * d * d / 4)), []
    for _ in range(50 * n):
        if len(placed) >= n:
            break
        cx, cy = rng.uniform(d, size - d, 2)
        if any((cx - a) ** 2 + (cy - b) ** 2 < (1.1 * d) ** 2 for a, b in placed):
            continue
        placed.append((cx, cy))
        r = 0.5 * d * rng.uniform(0.9, 1.1)
        img[(xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r] = rng.uniform(0.5, 1.0)
    img = gaussian_filter(img, blur) + noise * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(100 + 1000 * img, 0, None).astype(np.float32), np.array(placed, dtype=np.float64)


@pytest.mark.parametrize("d", [6.0, 14.0, 32.0])
def test_estimate_is_within_25_percent_at_three_scales(d):
    est = estimate_diameter(disks(d)[0])
    assert est.diameter == pytest.approx(d, rel=0.25) and est.blobs >= 10
    assert est.spread < 1.5 and est.clumped < 0.3  # alike, separate disks


@pytest.mark.parametrize("d", [10.0, 14.0])
def test_estimate_follows_a_resize(d):
    """Scale-covariant down to 5 px nuclei: the blur rim is taken off (:func:`cellxfer.scale.unblurred`), so the
    estimate of 10 px disks halved (5 px, blurred by the resampling) is half theirs within 5% (it read 15%
    large before), and so is 2x within 5%."""
    img, _ = disks(d, size=320)
    base = estimate_diameter(img).diameter
    assert base == pytest.approx(d, rel=0.05)
    for f in (0.5, 2.0):
        assert estimate_diameter(resize_to(img, f).image).diameter == pytest.approx(base * f, rel=0.05)


CLEAN = dict(dim_fraction=(0.0, 0.0), defocus_fraction=(0.0, 0.0))
MODERATE = dict(texture=(0.3, 0.3), grain=(0.3, 0.3), nucleoli=0.5, rim=(0.0, 0.0), **CLEAN)


@pytest.mark.parametrize("d", [8, 30, 80])
@pytest.mark.parametrize("textured", [False, True])
def test_estimate_is_within_25_percent_on_rendered_smooth_and_textured_nuclei(d, textured):
    """The issue's bar on rendered nuclei (cellxfer.synth.nuclei.sample, no dim or defocused ones): smooth, and
    with chromatin texture, grain and nucleoli as strong as the synthesizer's defaults reach (texture up to 0.4);
    the median over four fields (each field's own shapes, mitoses and crowding move a single one by up to 40%,
    as the jitter of the rendered diameters does). The old scale-space estimate read textured 30 px nuclei as
    4-10 px (their chromatin spots)."""
    from cellxfer.synth.nuclei import sample

    got = [estimate_diameter(sample(d, textured, seed=seed, **(MODERATE if textured else CLEAN))[0]).diameter
           for seed in range(4)]
    assert float(np.median(got)) == pytest.approx(d, rel=0.25), (d, textured, got)


def test_heavily_textured_large_nuclei_are_read_at_more_than_a_quarter_of_their_size():
    """A known limit, measured: nuclei of 80 px with the strongest texture, grain, nucleoli and bright rims of
    the synthesizer split at the foreground threshold and read 0.21-0.65 of their diameter in three fields
    (seeds 0-2; moderate texture: 0.63-0.87; docs/benchmarks/accuracy-log.md). This field must not read as chromatin
    spots (the old estimate: ~0.15), which is what made the counter count each nucleus many times."""
    from cellxfer.synth.nuclei import sample

    image, _ = sample(80, True, seed=0)
    assert estimate_diameter(image).diameter > 0.25 * 80


def _shaded(img: np.ndarray, kind: str, amount: float) -> np.ndarray:
    """``img`` unevenly lit: a ramp rising by ``amount`` times its range, or a vignette dimming its corners by
    ``amount``."""
    h, w = img.shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    lo, hi = np.percentile(img, (1, 99.5))
    if kind == "gradient":
        return img + amount * (hi - lo) * (0.7 * xx + 0.3 * yy)
    return lo + (img - lo) * (1 - amount * 2 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2))


@pytest.mark.parametrize("kind,amount", [("gradient", 1.0), ("gradient", 2.0), ("vignette", 0.5)])
@pytest.mark.parametrize("d", [8.0, 14.0, 32.0])
def test_estimate_ignores_uneven_illumination(d, kind, amount):
    """A sparse field lit unevenly reads the diameter of the same field evenly lit, within 10%. Before the
    background mesh (:func:`cellxfer.scale._flatten`) a ramp as bright as the brightest disks put part of the
    background above the threshold and read 8 and 14 px disks as 4.6 and 10.9 px, and under a ramp twice as bright
    it found no nuclei at all (a sparse IDCIA field under a ramp measured 4.3 px and counted 7,653 for 21 nuclei:
    ``bench_transfer.py --shading``)."""
    img, _ = disks(d, cover=0.05, seed=2)
    flat = estimate_diameter(img).diameter
    assert flat == pytest.approx(d, rel=0.15)
    assert estimate_diameter(_shaded(img, kind, amount)).diameter == pytest.approx(flat, rel=0.10)


def test_an_evenly_lit_field_is_left_alone_by_the_background_mesh():
    """The mesh takes off what varies across the field, nothing else: a flat noisy field moves by less than 2%
    of its range, a ramp under it is gone to within 2%."""
    from cellxfer.scale import _flatten

    rng = np.random.default_rng(0)
    flat = (0.2 + 0.02 * rng.standard_normal((300, 500))).astype(np.float32)
    assert np.abs(_flatten(flat) - flat).max() < 0.02
    ramp = flat + np.linspace(0, 0.5, 500, dtype=np.float32)[None, :]
    out = _flatten(ramp)
    inner = out[:, 64:-64]  # beyond the outer cells' centres the surface is held constant
    assert abs(float(np.median(inner[:, :50])) - float(np.median(inner[:, -50:]))) < 0.02


def test_estimate_ignores_intensity_encoding():
    img, _ = disks(12.0, size=256)
    a = estimate_diameter(img).diameter
    assert estimate_diameter(np.clip(img / 8, 0, 255).astype(np.uint8)).diameter == pytest.approx(a, rel=0.05)
    assert estimate_diameter(img * 40).diameter == pytest.approx(a, rel=1e-6)


def test_flat_and_tiny_images_give_no_estimate():
    assert estimate_diameter(np.zeros((64, 64), np.uint8)).diameter is None
    assert estimate_diameter(np.zeros((4, 400), np.uint8)).diameter is None


def test_policy_parsing():
    assert DiameterPolicy.parse(None, 10.0) == DiameterPolicy("auto")
    assert DiameterPolicy.parse(None, None) == DiameterPolicy("off")
    assert DiameterPolicy.parse("off", None) == DiameterPolicy("off")
    assert DiameterPolicy.parse("12.5", 10.0) == DiameterPolicy("fixed", 12.5)
    assert DiameterPolicy.parse("12.5", 10.0).label == "12.5"
    for bad in ("big", "-3", "nan"):
        with pytest.raises(InputError, match="--diameter"):
            DiameterPolicy.parse(bad, 10.0)
    with pytest.raises(InputError, match="records no training nucleus diameter"):
        DiameterPolicy.parse("auto", None, "m.safetensors")


def test_policy_resizes_to_the_model_diameter_and_maps_points_back():
    from cellxfer.counter.model import CounterMeta

    img, _ = disks(20.0, size=200)
    meta = CounterMeta(diameter=10.0)
    s = DiameterPolicy("fixed", 20.0).scale(img, meta)
    assert s.image.shape == (100, 100) and s.factor == pytest.approx(0.5)
    assert np.allclose(s.to_original(np.array([[10.0, 30.0]])), [[20.0, 60.0]])
    same = DiameterPolicy("fixed", 10.5).scale(img, meta)  # within the tolerance: untouched
    assert same.image is img or np.shares_memory(same.image, img)
    assert DiameterPolicy("off").scale(img, meta).factor == 1.0


def test_every_image_is_matched_to_the_model_diameter_whatever_its_range():
    """One size for every image (not 'inside the training range: as it is'): the same nuclei at another
    magnification are then counted at the same size, learnt counter or LoG alike."""
    from cellxfer.counter.model import CounterMeta

    img, _ = disks(20.0, size=200)
    for meta in (CounterMeta(diameter=10.0, diameter_range=(6.0, 16.0)),
                 CounterMeta(arch="log", output="density", diameter=10.0, diameter_range=(6.0, 16.0))):
        assert DiameterPolicy("fixed", 14.0).scale(img, meta).factor == pytest.approx(10 / 14, rel=0.02)
        assert DiameterPolicy("fixed", 14.0).scale(img, meta).diameter == 14.0
        assert DiameterPolicy("fixed", 32.0).scale(img, meta).factor == pytest.approx(10 / 32, rel=0.02)
        assert DiameterPolicy("fixed", 3.0).scale(img, meta).factor == pytest.approx(10 / 3, rel=0.02)
        assert DiameterPolicy("fixed", 10.5).scale(img, meta).factor == 1.0  # within TOLERANCE: as it is
    big = disks(40.0, size=320)[0]  # 40 px nuclei, and the same at 0.5x: both counted at 10 px
    meta = CounterMeta(diameter=10.0, diameter_range=(6.0, 16.0))
    for image in (big, big[::2, ::2]):
        s = DiameterPolicy("auto").scale(image, meta)
        assert s.diameter * s.factor == pytest.approx(10.0, rel=0.01)


def _log_model(tmp_path: Path, diameter: float, sigma: float = 2.5) -> Path:
    pytest.importorskip("torch")
    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import CounterMeta, save_counter

    meta = CounterMeta(arch="log", window=128, output="density", arch_options=log_options(sigma, 0.15), diameter=diameter)
    return save_counter(tmp_path / "log.safetensors", build_log(meta), meta)


def test_count_rescales_and_returns_points_in_original_pixels(tmp_path):
    """Nuclei twice the model's size: `count --diameter auto` finds them and reports original coordinates."""
    import csv

    import tifffile

    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.density.match import match_points

    model_d = estimate_diameter(disks(7.0, size=256, seed=3)[0]).diameter
    model = _log_model(tmp_path, model_d)
    img, pts = disks(14.0, size=300, seed=1)
    tifffile.imwrite(tmp_path / "big.tif", img)
    res = run_count(CountConfig(paths=(str(tmp_path / "big.tif"),), model=model, engine="torch", out=tmp_path / "c.csv",
                                points=tmp_path / "pts", diameter="auto"))
    assert not res.failed
    found = np.loadtxt(tmp_path / "pts" / "big.csv", delimiter=",", skiprows=1).reshape(-1, 2)
    m = match_points(found, pts, radius=3.0)
    assert m.f1 >= 0.9, (m.precision, m.recall)
    row = next(csv.DictReader(open(tmp_path / "c.csv")))
    assert row["diameter_mode"] == "auto" and float(row["scale"]) == pytest.approx(0.5, rel=0.15)
    assert float(row["diameter"]) == pytest.approx(2 * model_d, rel=0.15)
    # without rescaling, the same detector misses or splits the large nuclei
    off = run_count(CountConfig(paths=(str(tmp_path / "big.tif"),), model=model, engine="torch",
                                out=tmp_path / "off.csv", diameter="off"))
    assert abs(list(off.counts.values())[0] - len(pts)) > abs(list(res.counts.values())[0] - len(pts))


def test_a_changed_diameter_policy_recounts(tmp_path):
    import tifffile

    from cellxfer.count.job import CountConfig, run_count

    model = _log_model(tmp_path, 7.0)
    tifffile.imwrite(tmp_path / "a.tif", disks(7.0, size=128)[0])
    cfg = CountConfig(paths=(str(tmp_path / "a.tif"),), model=model, engine="torch", out=tmp_path / "c.csv")
    assert len(run_count(cfg).counts) == 1
    assert run_count(cfg).skipped_done == 1
    from dataclasses import replace

    assert len(run_count(replace(cfg, diameter="14")).counts) == 1


def test_evaluate_uses_the_same_rescaling(tmp_path):
    from cellxfer.dataset import CellDatasetWriter
    from cellxfer.evaluate.run import EvaluateConfig, evaluate

    model = _log_model(tmp_path, estimate_diameter(disks(7.0, size=256, seed=3)[0]).diameter)
    w = CellDatasetWriter(tmp_path / "data")
    for i in range(2):
        img, pts = disks(14.0, size=200, seed=10 + i)
        w.write(f"{i:02d}", img.astype(np.uint16), pts)
    w.finalize({"stage": "test"})
    auto = evaluate(EvaluateConfig(model=model, data=tmp_path / "data", out_csv=tmp_path / "e.csv", engine="torch"))
    off = evaluate(EvaluateConfig(model=model, data=tmp_path / "data", out_csv=tmp_path / "o.csv", diameter="off", engine="torch"))
    assert auto.localisation["f1"] >= 0.9 and auto.metrics.mae < off.metrics.mae


def test_normalisation_ignores_gain_offset_and_encoding():
    """A float image in 0..1 (Fiji/napari export) normalises like the same image as uint8 or uint16."""
    from cellxfer.counter.model import Normalization

    img, _ = disks(10.0, size=128)
    u8 = np.clip(img / 6, 0, 255).astype(np.uint8)
    ref = Normalization().apply(u8)
    for variant in (u8 / 255.0, u8.astype(np.uint16) * 257, u8 * 0.25 + 3.0, u8.astype(np.float32) * 1e-4):
        assert np.allclose(Normalization().apply(variant), ref, atol=1e-5)
    assert not Normalization().apply(np.full((8, 8), 0.5)).any()  # flat: zeros, not NaN


def test_normalisation_clip_bounds_sparse_fields():
    from cellxfer.counter.model import Normalization

    img = np.zeros((100, 100), np.float32)
    img[50, 50] = 1000.0  # one bright nucleus pixel in an empty field: the 99.5th percentile is background
    img += np.random.default_rng(0).normal(0, 1, img.shape).astype(np.float32)
    assert Normalization().apply(img).max() > 100
    clipped = Normalization(clip=3.0).apply(img)
    assert clipped.max() == 3.0 and np.allclose(clipped[clipped < 3], Normalization().apply(img)[clipped < 3])


def test_normalisation_noise_floor_keeps_pure_noise_faint_and_leaves_nuclei_alone():
    """min_snr: pure noise (percentile span ~5 noise SDs) is divided by min_snr SDs instead, so it keeps
    ~5/8 of the contrast at 8; an image with nuclei (span >> 8 SDs) normalises exactly as without it.
    The floor travels with the checkpoint; checkpoints that predate it load with no floor."""
    from cellxfer.counter.model import CounterMeta, Normalization, noise_sd

    rng = np.random.default_rng(0)
    noise = rng.normal(100, 10, (300, 400)).astype(np.float32)
    assert noise_sd(noise) == pytest.approx(10, rel=0.05)
    plain, floored = Normalization().apply(noise), Normalization(min_snr=8).apply(noise)
    assert np.ptp(floored) == pytest.approx(np.ptp(plain) * np.ptp(np.percentile(noise, (0.5, 99.5))) / 80, rel=0.05)
    cells = disks(10.0, size=192, seed=0)[0]
    assert np.array_equal(Normalization(min_snr=8).apply(cells), Normalization().apply(cells))
    meta = CounterMeta(normalization=Normalization(clip=3.0, min_snr=8.0))
    assert CounterMeta.from_json(meta.to_json()).normalization.min_snr == 8.0
    old = json.loads(meta.to_json())
    del old["normalization"]["min_snr"]
    assert CounterMeta.from_dict(old).normalization.min_snr is None


def test_training_scale_records_the_median_and_the_range_seen():
    from cellxfer.scale import training_scale

    got = training_scale([disks(d, size=192, seed=i)[0] for i, d in enumerate((6.0, 8.0, 10.0, 12.0, 16.0))])
    lo, hi = got["diameter_range"]
    assert lo < got["diameter"] < hi and lo == pytest.approx(6.8, rel=0.2) and hi == pytest.approx(14.5, rel=0.2)
    assert training_scale([np.zeros((32, 32))]) == {"diameter": None, "diameter_range": None}


def test_a_large_sparse_slide_with_hot_pixels_is_measured_from_its_nuclei():
    """Larger than MAX_SIDE, nuclei only in one corner, a few saturated specks: tiles cover the whole slide
    and the normalised values are capped, so the specks do not set the bar."""
    rng = np.random.default_rng(0)
    big = (100 + rng.normal(0, 3, (2600, 2600))).astype(np.float32)
    img, _ = disks(12.0, size=384, seed=2)
    big[2100:2484, 100:484] = img
    for y, x in rng.integers(0, 2600, (8, 2)):
        big[y:y + 3, x:x + 3] = 60000.0
    assert estimate_diameter(big).diameter == pytest.approx(12.0, rel=0.15)


def test_a_log_is_fitted_on_images_resized_as_count_resizes_them(tmp_path, monkeypatch):
    """train-count --arch log fits on each training image resized to the training median diameter, raw then
    normalised, as count resizes it (train.data.load_domain's ``scale``): disks of 8 and 16 px both reach the
    fit at about the median size."""
    pytest.importorskip("torch")
    from cellxfer import classical
    from cellxfer.dataset import CellDatasetWriter
    from cellxfer.train.counter import TrainConfig

    w = CellDatasetWriter(tmp_path / "real")
    for i, d in enumerate((8.0, 8.0, 16.0, 16.0, 16.0)):
        img, pts = disks(d, size=192, seed=i)
        w.write(f"img{i}", np.clip(img / img.max() * 250, 0, 255).astype(np.uint8), pts)
    w.finalize({"stage": "test"})
    seen = []
    fit = classical.fit_log
    monkeypatch.setattr(classical, "fit_log", lambda images, counts: seen.extend(images) or fit(images, counts, sigmas=(2.0,)))
    classical.train_log(TrainConfig(regime="supervised", out=tmp_path / "run", real=tmp_path / "real", arch="log", crop=64))
    sizes = [estimate_diameter(im).diameter for im in seen]
    assert len(sizes) == 5 and max(sizes) / min(sizes) < 1.25, sizes  # 2x apart before the resize


def test_the_grey_level_floor_keeps_a_dim_sparse_background_faint_whatever_the_encoding():
    """min_levels: a background spanning a handful of 8-bit levels is divided by that many steps instead of
    being stretched to the contrast of nuclei; the same image stored as 16-bit x257 or as float / 255
    normalises the same (its step is 257, 1/255); an image spanning more steps, and one of continuous values
    (no step), are unchanged. It travels
    with the checkpoint; a checkpoint that predates it loads with no floor, and a newer cellxfer's
    normalisation field is refused by name."""
    from cellxfer.counter.model import CounterMeta, Normalization, grey_step
    from cellxfer.errors import InputError

    rng = np.random.default_rng(0)
    dim = rng.integers(0, 5, (200, 300)).astype(np.uint8)  # a background of 5 grey levels
    dim[50:60, 50:60] = 40  # one small nucleus: under 0.5% of the pixels
    assert grey_step(dim) == 1 and grey_step(dim.astype(np.uint16) * 257) == 257
    assert grey_step(dim.astype(np.float32)) == 1 and grey_step(np.zeros((4, 4), np.uint8)) is None
    assert grey_step(rng.normal(0, 1, (200, 300)).astype(np.float32)) is None  # continuous values: no step
    plain, floored = Normalization(clip=3.0), Normalization(clip=3.0, min_levels=16)
    assert plain.levels(dim)[1] == pytest.approx(4.0) and floored.levels(dim)[1] == pytest.approx(16.0)
    assert float(np.median(floored.apply(dim))) < 0.2 < float(np.median(plain.apply(dim)))
    assert np.allclose(floored.apply(dim.astype(np.uint16) * 257), floored.apply(dim), atol=1e-6)
    bright = (disks(10.0, size=192, seed=0)[0] / 8).astype(np.uint8)  # spans far more than 16 levels
    assert np.array_equal(floored.apply(bright), plain.apply(bright))
    assert np.allclose(floored.apply(dim.astype(np.float32) / 255), floored.apply(dim), atol=1e-6)  # 8-bit as float
    noisy = rng.normal(2, 1, (200, 300)).astype(np.float32)
    assert np.array_equal(floored.apply(noisy), plain.apply(noisy))
    meta = CounterMeta(normalization=Normalization(clip=3.0, min_levels=16.0))
    assert CounterMeta.from_json(meta.to_json()).normalization.min_levels == 16.0
    old = json.loads(meta.to_json())
    del old["normalization"]["min_levels"]
    assert CounterMeta.from_dict(old).normalization.min_levels is None
    newer = json.loads(meta.to_json())
    newer["normalization"]["gamma"] = 0.5
    with pytest.raises(InputError, match=r"normalization\.gamma.*upgrade cellxfer"):
        CounterMeta.from_dict(newer, "m.safetensors")


def test_the_top_bound_keeps_a_sparse_background_faint_in_any_encoding():
    """max_top: a dim sparse field smoothed to float (no grey-level steps for ``min_levels`` to read) has its
    0.5-99.5th percentiles in the background, which percentile scaling stretched to the contrast of nuclei; with
    the bound its 99.9th percentile (a nucleus) normalises to at most ``max_top`` and the background stays faint,
    whatever the encoding or gain. A field whose nuclei fill more than 0.5% of the pixels is unchanged. It travels
    with the checkpoint; a checkpoint that predates it loads without it."""
    from scipy.ndimage import gaussian_filter

    from cellxfer.counter.model import CounterMeta, Normalization

    rng = np.random.default_rng(0)
    dim = rng.integers(0, 5, (200, 300)).astype(np.float32)
    for y, x in ((40, 40), (150, 80)):
        dim[y:y + 7, x:x + 7] = 40  # two small nuclei: 0.3% of the pixels once blurred
    smooth = gaussian_filter(dim, 2.0)
    plain, bounded = Normalization(clip=3.0), Normalization(clip=3.0, max_top=2.0)
    assert float(np.percentile(plain.apply(smooth), 99)) > 0.4  # the background stretched to nuclei's contrast
    assert float(np.percentile(bounded.apply(smooth), 99)) < 0.12  # ... kept faint
    assert float(np.percentile(bounded.apply(smooth), 99.9)) == pytest.approx(2.0)  # a nucleus: max_top
    assert np.allclose(bounded.apply(smooth * 37 + 1000), bounded.apply(smooth), atol=1e-4)
    dense = disks(10.0, size=192, seed=0)[0]  # disks over 15% of the pixels
    assert np.array_equal(bounded.apply(dense), plain.apply(dense))
    meta = CounterMeta(normalization=bounded)
    assert CounterMeta.from_json(meta.to_json()).normalization.max_top == 2.0
    old = json.loads(meta.to_json())
    del old["normalization"]["max_top"]
    assert CounterMeta.from_dict(old).normalization.max_top is None


def test_mid_tones_are_lifted_only_where_the_estimate_finds_mixed_brightness():
    """lift: a normalised value v between ``LIFT_FLOOR`` and 1 becomes f + (1 - f)((v - f)/(1 - f))**p, the
    background below the floor and the bright nuclei above 1 stay as they are, and only where the image's scale
    estimate has a typical nucleus far dimmer than the measured ones: p is ``lift`` for ``Estimate.dim`` from
    ``LIFT_DIM[0]`` to ``LIFT_DIM[1]``, rising linearly to 1 (nothing lifted) at ``LIFT_DIM[2]``, so a field near
    the edge counts about alike on either side. :meth:`Levels.as_is` (already normalised images) and a
    normalisation without ``lift`` never lift. It travels with the checkpoint; a checkpoint that predates it
    loads without it."""
    from cellxfer.counter.model import CounterMeta, Levels, Normalization
    from cellxfer.scale import Estimate

    norm = Normalization(lift=0.5)
    lo, full, hi = Normalization.LIFT_DIM
    values = np.array([[-0.2, 0.05, 0.1, 0.25, 0.5, 0.99, 1.0, 2.5]], np.float32)
    lifted = norm.apply_levels(values, Levels(np.float32(0), np.float32(1), 0.5))
    f = Normalization.LIFT_FLOOR
    want = np.where((values > f) & (values < 1), f + (1 - f) * np.sqrt(np.clip(values - f, 0, None) / (1 - f)), values)
    assert np.allclose(lifted, want, atol=1e-6)
    assert lifted[0, 3] == pytest.approx(0.467, abs=1e-3)  # a nucleus at a quarter of the bright ones' level
    for plain in (Levels.as_is(), Levels(np.float32(0), np.float32(1), 1.0)):
        assert np.array_equal(norm.apply_levels(values, plain), values)
    at = lambda dim: norm.lift_power(Estimate(12.0, 40, dim=dim))  # noqa: E731
    assert at(lo) == at(0.1) == at(full) == 0.5
    assert at((full + hi) / 2) == pytest.approx(0.75) and at(hi - 1e-9) == pytest.approx(1.0)
    for dim in (None, lo / 2, hi, 1.0):
        assert at(dim) == 1.0, dim
    assert norm.lift_power(None) == Normalization().lift_power(Estimate(12.0, 40, dim=0.1)) == 1.0
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    mixed = Estimate(12.0, 40, dim=0.1)
    assert norm.levels(img, estimate=mixed).lift == 0.5 and norm.levels(img).lift == 1.0
    assert not np.array_equal(norm.apply(img, estimate=mixed), norm.apply(img))
    meta = CounterMeta(normalization=norm)
    assert CounterMeta.from_json(meta.to_json()).normalization.lift == 0.5
    old = json.loads(meta.to_json())
    del old["normalization"]["lift"]
    assert CounterMeta.from_dict(old).normalization.lift is None


@pytest.mark.parametrize("d", [8.0, 14.0, 32.0])
def test_a_few_far_brighter_nuclei_show_in_the_estimate_and_leave_alike_fields_alone(d):
    """``Estimate.dim`` (what the qc column's mixed-brightness reads): not looked for on disks alike in
    brightness (few pixels between the noise floor and the threshold: nothing dim can hide); well below 0.5 when
    every 8th disk is 6x as bright (Otsu's threshold then keeps those few), with the same diameter either way."""
    img, pts = disks(d)
    alike = estimate_diameter(img)
    assert alike.dim is None
    bright = img.copy()
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    for x, y in pts[::8]:
        near = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= (0.6 * d) ** 2
        bright[near] = 100 + (bright[near] - 100) * 6.0
    mixed = estimate_diameter(bright)
    assert mixed.dim is not None and mixed.dim < 0.5
    assert mixed.diameter == pytest.approx(alike.diameter, rel=0.25)
