"""Density counter: exact kernel mass at borders, exact stitching, peaks recover centres, point matching,
exact density targets under CutMix, tiny training decreases loss, evaluate reports F1, ONNX dynamic H/W."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellxfer.counter.model import CounterMeta, Levels, load_counter  # noqa: E402
from cellxfer.dataset import CellDatasetWriter  # noqa: E402
from cellxfer.density.match import match_points  # noqa: E402
from cellxfer.density.peaks import find_peaks, peaks_for_count  # noqa: E402
from cellxfer.density.stitch import owned_ranges  # noqa: E402
from cellxfer.density.targets import density_batch, density_map  # noqa: E402


def test_kernel_mass_exact_at_borders():
    shape = (40, 50)
    corners = np.array([[0.1, 0.1], [49.9, 0.2], [0.3, 39.9], [49.99, 39.99], [25.0, 0.0], [0.0, 20.0], [25.3, 19.7]])
    for p in corners:  # every single cell has mass 1, wherever it is
        assert density_map(p[None], shape, sigma=4.0).sum(dtype=np.float64) == pytest.approx(1.0, abs=1e-5)
    d = density_map(corners, shape, sigma=4.0)
    assert d.dtype == np.float32 and d.shape == shape
    assert d.sum(dtype=np.float64) == pytest.approx(len(corners), abs=1e-4)
    outside = np.array([[-1.0, 3.0], [50.0, 3.0], [3.0, 40.0]])
    assert density_map(outside, shape).sum() == 0.0


def test_density_targets_exact_under_cutmix():
    from cellxfer.train.data import Domain, centre_map
    from cellxfer.train.sampler import epoch_batches

    rng = np.random.default_rng(0)

    def dom(name):
        pts = [np.column_stack([rng.uniform(0, 60, 25), rng.uniform(0, 50, 25)]) for _ in range(4)]
        return Domain(name, Path(name), [f"{name}{i}" for i in range(4)],
                      [rng.random((50, 60)).astype(np.float32) for _ in pts], [centre_map(p, (50, 60)) for p in pts])

    real, syn = dom("r"), dom("s")
    n = 0
    for x, y, maps in epoch_batches("dacs", real, syn, batch_size=4, crop=32, rng=np.random.default_rng(1),
                                    mix_prob=1.0, with_maps=True):
        dens = density_batch(maps, sigma=3.0)
        assert dens.shape == x.shape
        np.testing.assert_allclose(dens.reshape(len(x), -1).sum(1, dtype=np.float64), y, atol=1e-4)
        n += 1
    assert n == 2


def test_owned_ranges_partition():
    for n, tile, margin in [(600, 256, 32), (800, 128, 16), (100, 256, 32), (257, 256, 32), (1000, 64, 8)]:
        r = owned_ranges(n, tile, margin)
        assert r[0][1] == 0 and r[-1][2] == n
        for (s, lo, hi), (_, lo2, _) in zip(r, r[1:]):
            assert hi == lo2
        for s, lo, hi in r:
            assert s <= lo < hi <= s + tile
            if lo > 0:
                assert lo - s >= margin
            if hi < n:
                assert s + tile - hi >= margin


def _conv_counter(kernel: int):
    """A density "model" of one random positive ``kernel`` x ``kernel`` convolution (it sees ``kernel // 2``
    pixels each way) as a runner, and its meta: 64-pixel base tiles, 8-pixel margin, no clip."""
    from cellxfer.counter.model import Normalization

    conv = torch.nn.Conv2d(1, 1, kernel, padding=kernel // 2, bias=False)
    torch.nn.init.uniform_(conv.weight)
    conv.eval()

    def runner(b):
        with torch.no_grad():
            return conv(torch.from_numpy(b)).numpy()

    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 64, "margin": 8},
                       normalization=Normalization(clip=None))
    return runner, meta


def test_stitching_exact_on_synthetic_image():
    from cellxfer.count.parts import density_normalized, plan_image

    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(0, 380, 200), rng.uniform(0, 300, 200)])  # longer than 4 tiles each way
    image = density_map(pts, (300, 380), sigma=2.0) * 50 + rng.random((300, 380)).astype(np.float32) * 0.1
    runner, meta = _conv_counter(5)  # receptive field 2 < margin 8
    whole = runner(image[None, None])[0, 0]
    stitched = density_normalized(runner, meta, image)  # count's splitter and merger, the full map kept
    np.testing.assert_allclose(stitched, whole, atol=1e-5)
    assert stitched.sum(dtype=np.float64) == pytest.approx(whole.sum(dtype=np.float64), rel=1e-6)
    plan = plan_image(image, meta, levels=Levels.as_is())
    assert len(plan.boxes) >= 4 and plan.batch(0).shape[1:] == (1, plan.splitter.tile, plan.splitter.cols)


def test_an_ordinary_image_is_computed_whole_whatever_the_models_reach():
    """An image up to 4 base tiles a side is one tile of its own size: its map is the model's output on the
    whole image even for a model that sees far past the stitching margin (a 31-pixel kernel, margin 8),
    where square tiles with seams would differ."""
    from cellxfer.count.parts import density_normalized, plan_image

    image = np.random.default_rng(5).random((150, 230)).astype(np.float32)
    runner, meta = _conv_counter(31)
    plan = plan_image(image, meta, levels=Levels.as_is())
    assert len(plan.boxes) == 1 and plan.batch(0).shape == (1, 1, 150, 230)
    np.testing.assert_array_equal(density_normalized(runner, meta, image), runner(image[None, None])[0, 0])


def test_peak_finding_recovers_synthetic_centres():
    rng = np.random.default_rng(5)
    grid = np.array([[x, y] for x in range(12, 180, 20) for y in range(12, 140, 20)], dtype=np.float64)
    pts = grid + rng.uniform(-3, 3, grid.shape) + 0.0
    pts = np.floor(pts) + 0.5  # pixel centres: peaks land exactly there
    d = density_map(pts, (150, 190), sigma=3.0)
    found = peaks_for_count(d, sigma=3.0, min_distance=3)
    assert len(found) == len(pts)
    m = match_points(found, pts, radius=0.5)
    assert m.tp == len(pts) and m.f1 == 1.0
    assert len(find_peaks(d, sigma=3.0, k=5)) == 5
    # a 2x nearest-upsampled density has 2x2 plateaus: still one point per cell
    up = np.kron(density_map(pts / 2, (75, 95), sigma=1.5), np.ones((2, 2), np.float32)) / 4
    found = peaks_for_count(up, sigma=3.0, min_distance=3)
    assert len(found) == len(pts) and match_points(found, pts, radius=2.0).f1 == 1.0


def test_match_points_one_to_one():
    true = np.array([[10.0, 10.0], [20.0, 10.0], [50.0, 50.0]])
    pred = np.array([[11.0, 10.0], [12.0, 10.0], [20.0, 14.0], [90.0, 90.0]])
    m = match_points(pred, true, radius=5.0)
    assert (m.tp, m.n_pred, m.n_true) == (2, 4, 3)
    assert m.precision == 0.5 and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(4 / 7)
    assert match_points(np.zeros((0, 2)), true).f1 == 0.0
    assert match_points(np.zeros((0, 2)), np.zeros((0, 2))).f1 == 1.0


def _blobs(n, size, seed, max_cells):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(1, max_cells + 1))
        pts = np.column_stack([rng.uniform(3, size - 3, k), rng.uniform(3, size - 3, k)])
        img = rng.normal(10, 2, (size, size)) + 400 * density_map(pts, (size, size), sigma=1.5)
        yield f"img{i:03d}", np.clip(img, 0, 255).astype(np.uint8), pts


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("density-data")
    for name, (n, size, seed) in {"real": (8, 48, 1), "syn": (8, 40, 2), "val": (3, 56, 3)}.items():
        w = CellDatasetWriter(root / name)
        for id_, img, pts in _blobs(n, size, seed, 10):
            w.write(id_, img, pts)
        w.finalize({"stage": "test"})
    return root


def _cfg(data, out, regime="supervised", **kw):
    from cellxfer.train.counter import TrainConfig

    base = dict(regime=regime, out=out, real=None if regime == "synthetic" else data / "real",
                synthetic=None if regime == "supervised" else data / "syn", val=data / "val", arch="density",
                epochs=2, crop=32, batch_size=4, lr=3e-3, sigma=2.0, extra={"arch_options": {"base": 4, "depth": 2}})
    base.update(kw)
    return TrainConfig(**base)


def _losses(run: Path):
    return [float(r["loss"]) for r in csv.DictReader((run / "history.csv").read_text().splitlines())]


def test_tiny_density_training_decreases_loss(data, tmp_path):
    from cellxfer.train.counter import train_counter

    run = train_counter(_cfg(data, tmp_path / "run", epochs=12)).out
    losses = _losses(run)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])
    model, meta = load_counter(run / "best.safetensors")
    assert meta.output == "density" and meta.arch_options["base"] == 4 and meta.arch_options["sigma"] == 2.0
    out = model(torch.zeros(1, 1, 37, 53))  # any input size
    assert out.shape == (1, 1, 37, 53)


@pytest.mark.parametrize("regime", ["synthetic", "dacs"])
def test_density_in_other_regimes(data, tmp_path, regime):
    from cellxfer.train.counter import train_counter

    run = train_counter(_cfg(data, tmp_path / regime, regime=regime, epochs=1)).out
    assert (run / "best.safetensors").is_file() and np.isfinite(_losses(run)).all()


def test_evaluate_reports_localisation(data, tmp_path):
    from cellxfer.evaluate.run import EvaluateConfig, evaluate
    from cellxfer.train.counter import train_counter

    run = train_counter(_cfg(data, tmp_path / "run", epochs=1)).out
    res = evaluate(EvaluateConfig(model=run / "best.safetensors", data=data / "val", out_csv=tmp_path / "p.csv", engine="torch"))
    loc = res.localisation
    assert loc is not None and loc["n_true"] == sum(r[1] for r in res.rows) and 0 <= loc["f1"] <= 1
    assert loc["radius"] == 5.0


@pytest.mark.parametrize("stem", [1, 2])
def test_onnx_export_dynamic_height_width_parity(tmp_path, stem):
    pytest.importorskip("onnxruntime")
    from cellxfer.density.net import build_density_unet
    from cellxfer.export.onnx import export_onnx, import_onnxruntime

    torch.manual_seed(0)
    model = build_density_unet(CounterMeta(arch="density", arch_options={"base": 4, "depth": 3, "stem": stem})).eval()
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
    path = export_onnx(model, (1, 1, 64, 64), tmp_path / "d.onnx", dynamic_axes=axes)
    sess = import_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 64, 64), (2, 1, 75, 101), (1, 1, 600 // 4, 800 // 4)]:
        x = np.random.default_rng(1).random(shape).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"input": x})[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_count_writes_points_and_overlays(data, tmp_path, monkeypatch, engine):
    """`count` on a density model: stitched whole-image counts (as evaluate), a points CSV per image whose
    length agrees with the count, points drawn on the overlays, and a rerun that redoes only what is missing."""
    if engine == "onnx":
        pytest.importorskip("onnxruntime")
    from PIL import Image

    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.count.parts import count_image
    from cellxfer.counter.model import torch_runner
    from cellxfer.dataset import parse_points
    from cellxfer.train.counter import train_counter

    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    run = train_counter(_cfg(data, tmp_path / "run", epochs=3)).out
    ckpt = run / "best.safetensors"
    model, meta = load_counter(ckpt)
    images = data / "val" / "images"
    cfg = CountConfig(paths=(str(images),), model=ckpt, engine=engine, out=tmp_path / "c.csv",
                      points=tmp_path / "pts", overlay=tmp_path / "ov")
    res = run_count(cfg)
    assert len(res.counts) == 3 and not res.failed
    from cellxfer.imageio import read_image

    for file, count in res.counts.items():
        stem = Path(file).stem
        assert count == pytest.approx(count_image(torch_runner(model), meta, read_image(Path(file))), rel=1e-3, abs=1e-3)
        pts = parse_points((tmp_path / "pts" / f"{stem}.csv").read_text(), stem)
        assert len(pts) <= max(round(count), 0) and pts.shape[1] == 2
        arr = np.asarray(Image.open(tmp_path / "ov" / f"{stem}.png"))
        magenta = (arr[..., 0] > 200) & (arr[..., 1] < 80) & (arr[..., 2] > 200)
        assert (magenta.sum() > 0) == (len(pts) > 0)
    (tmp_path / "pts" / "img001.csv").unlink()
    again = run_count(cfg)
    assert again.skipped_done == 2 and list(again.counts) == [str(images / "img001.tif")]
    assert (tmp_path / "pts" / "img001.csv").is_file()


def test_points_need_a_density_model(tmp_path):
    from test_export import tiny_counter

    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.errors import InputError

    ckpt = tiny_counter(tmp_path / "c.safetensors")
    with pytest.raises(InputError, match="--points.*density model"):
        run_count(CountConfig(paths=(str(tmp_path),), model=ckpt, points=tmp_path / "pts", out=tmp_path / "c.csv"))


def test_count_weight_adds_the_crop_count_loss(data, tmp_path):
    """Same seed, same batches: the first epoch's loss grows by the crop-count term; training still
    lowers it; a negative weight is refused."""
    from cellxfer.errors import InputError
    from cellxfer.train.counter import train_counter

    plain = _losses(train_counter(_cfg(data, tmp_path / "plain", epochs=1)).out)
    counted = _losses(train_counter(_cfg(data, tmp_path / "counted", epochs=12, count_weight=0.05)).out)
    assert counted[0] > plain[0] * 1.05
    assert np.mean(counted[-3:]) < 0.7 * np.mean(counted[:2])
    with pytest.raises(InputError, match="count-weight"):
        train_counter(_cfg(data, tmp_path / "neg", count_weight=-1.0)).out


def test_positive_option_clamps_the_density_at_zero():
    from cellxfer.density.net import build_density_unet

    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 40, 52)).astype(np.float32))
    outs = {}
    for positive in (False, True):
        torch.manual_seed(0)
        model = build_density_unet(CounterMeta(arch="density", arch_options={"base": 4, "depth": 2, "positive": positive})).eval()
        with torch.no_grad():
            outs[positive] = model(x)
    assert (outs[False] < 0).any() and (outs[True] >= 0).all()
    torch.testing.assert_close(outs[True], outs[False].clamp(min=0))


def test_density_mass_script_splits_near_and_far():
    """scripts/density_mass.py: a unit kernel at each annotated cell is all 'near'; a faint uniform
    background is all 'far' and 'faint'; negatives are summed apart."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("density_mass", Path(__file__).resolve().parents[1] / "scripts" / "density_mass.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pts = np.array([[20.5, 20.5], [60.5, 40.5]])
    d = density_map(pts, (80, 100), sigma=2.0) + np.float32(1e-4)
    d[0, 0] = -0.5
    m = mod.mass_split(d, pts, radius=12, faint=0.002)
    near_px = 2 * np.pi * 12 ** 2  # about; the background inside the near discs
    assert m["near"] == pytest.approx(2 + 1e-4 * near_px, abs=0.02)
    assert m["far"] == pytest.approx(1e-4 * (80 * 100 - near_px) - 0.5, abs=0.02)
    assert m["far_faint"] == pytest.approx(1e-4 * (80 * 100 - near_px - 1), abs=0.02)
    assert m["negative"] == pytest.approx(-0.5) and m["sum"] == pytest.approx(float(d.sum(dtype=np.float64)))
