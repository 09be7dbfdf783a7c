"""Classical LoG counter: threshold search is exact, blobs are found, `train-count --arch log` fits in
one pass and writes a normal counter that evaluate, count_image (stitched tiles) and ONNX export use."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellxfer.classical import build_log, fit_log, fit_threshold, log_options  # noqa: E402
from cellxfer.counter.model import CounterMeta, load_counter  # noqa: E402
from cellxfer.dataset import CellDatasetWriter  # noqa: E402
from cellxfer.density.match import match_points  # noqa: E402
from cellxfer.density.targets import density_map  # noqa: E402


def test_fit_threshold_minimises_mae_exactly():
    values = [np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.3, 0.6, 0.8])]
    t, mae = fit_threshold(values, np.array([2.0, 2.0]))  # > t keeps 2 of the first and 2 of the second
    assert mae == 0.0 and 0.1 <= t < 0.5 and 0.3 <= t < 0.6
    t, mae = fit_threshold(values, np.array([0.0, 0.0]))
    assert mae == 0.0 and t >= 0.9


def _blob_image(rng, size=(120, 150), n=30, sigma=2.0):
    pts = np.array([[x, y] for x in range(10, size[1] - 5, 14) for y in range(10, size[0] - 5, 14)], dtype=np.float64)
    pts = pts[rng.permutation(len(pts))[:n]] + rng.uniform(-2, 2, (n, 2))
    img = 10 + rng.normal(0, 1, size) + 600 * density_map(pts, size, sigma=sigma)
    return img.astype(np.float32), pts


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_fit_responses_equal_the_modules(sigma):
    """The fit (scipy, threads) sees exactly the peaks the exported module (torch) finds."""
    from cellxfer.classical import peak_responses

    rng = np.random.default_rng(0)
    images = [_blob_image(rng)[0] / 50 for _ in range(3)]
    model = build_log(CounterMeta(arch="log", arch_options=log_options(sigma, -np.inf))).eval()
    for img, got in zip(images, peak_responses(images, sigma, workers=2)):
        with torch.inference_mode():
            r = model.response(torch.from_numpy(img)[None, None])
            ref = np.sort(r[model.peaks(r)].numpy().astype(np.float64))
        assert len(got) == len(ref) and np.allclose(got, ref, atol=1e-5)


def test_log_finds_blobs_and_points():
    rng = np.random.default_rng(0)
    imgs, pts = zip(*[_blob_image(rng) for _ in range(3)])
    norm = [(im - np.percentile(im, 0.5)) / (np.percentile(im, 99.5) - np.percentile(im, 0.5)) for im in imgs]
    fitted = fit_log(norm, [len(p) for p in pts], sigmas=(1.5, 2.0, 3.0))
    assert fitted["fit_mae"] == 0.0 and fitted["sigma"] in (1.5, 2.0, 3.0)
    model = build_log(CounterMeta(arch="log", output="density", arch_options=fitted)).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(norm[0])[None, None])[0, 0].numpy()
    assert set(np.unique(out)) <= {0.0, 1.0} and out.sum() == len(pts[0])
    ys, xs = np.nonzero(out)
    assert match_points(np.column_stack([xs + 0.5, ys + 0.5]), pts[0], radius=2.0).f1 == 1.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("log-data")
    rng = np.random.default_rng(1)
    for name, n in (("train", 4), ("val", 2)):
        w = CellDatasetWriter(root / name)
        for i in range(n):
            img, pts = _blob_image(rng, size=(130, 170), n=35)
            w.write(f"img{i}", np.clip(img * 4, 0, 255).astype(np.uint8), pts)
        w.finalize({"stage": "test"})
    return root


def test_train_count_arch_log_writes_a_normal_counter(data, tmp_path):
    import json

    from cellxfer.count.parts import count_image
    from cellxfer.counter.model import torch_runner
    from cellxfer.evaluate.run import EvaluateConfig, evaluate
    from cellxfer.train.counter import TrainConfig, train_counter

    run = train_counter(TrainConfig(regime="supervised", out=tmp_path / "run", real=data / "train", val=data / "val",
                                    arch="log", crop=64)).out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["fitted"]["fit_mae"] <= 1.0 and len(manifest["fitted"]["grid"]) >= 5
    model, meta = load_counter(run / "best.safetensors")
    assert meta.arch == "log" and meta.output == "density" and meta.window == 64
    res = evaluate(EvaluateConfig(model=run / "best.safetensors", data=data / "val", out_csv=tmp_path / "p.csv", engine="torch"))
    assert res.metrics.mae <= 1.0 and res.localisation["f1"] > 0.9
    # the run-folder policy: the same settings fit again, other settings are refused
    assert train_counter(TrainConfig(regime="supervised", out=run, real=data / "train", val=data / "val", arch="log", crop=64)).out == run
    from cellxfer.errors import InputError

    with pytest.raises(InputError, match="crop 64 -> 32.*--overwrite"):
        train_counter(TrainConfig(regime="supervised", out=run, real=data / "train", val=data / "val", arch="log", crop=32)).out
    # stitched 64-pixel tiles give exactly the whole-image detections (margin >= kernel radius + peak window)
    from cellxfer.dataset import CellDataset

    s = CellDataset(data / "val")["img0"]
    with torch.no_grad():
        whole = float(model(torch.from_numpy(meta.normalization.apply(s.image))[None, None]).sum())
    assert count_image(torch_runner(model), meta, s.image) == whole


def test_log_onnx_export_with_dynamic_size_parity(data, tmp_path):
    pytest.importorskip("onnxruntime")
    from cellxfer.export.counter import ExportConfig, export_counter
    from cellxfer.train.counter import TrainConfig, train_counter

    run = train_counter(TrainConfig(regime="supervised", out=tmp_path / "run", real=data / "train", arch="log", crop=64)).out
    res = export_counter(ExportConfig(model=run / "best.safetensors", out=tmp_path / "log.onnx", n_random=2), log=lambda s: None)
    assert "onnx/other-size" in res.parity and all(r.ok for r in res.parity.values())
    assert log_options(2.0, 0.1)["margin"] >= 8 + 2


def test_no_detection_along_the_border_of_a_sparse_noisy_image():
    """Mirrored borders: a bright, noisy background reaching the border is not an edge against black."""
    rng = np.random.default_rng(5)
    size = (200, 240)
    pts = np.array([[60.0, 70.0], [150.0, 120.0], [100.0, 150.0]])
    img = 40 + 3 * rng.normal(0, 1, size) + 1500 * density_map(pts, size, sigma=2.5)
    img += np.linspace(0, 8, size[1])[None, :]  # uneven illumination, brightest at the right border
    norm = ((img - np.percentile(img, 0.5)) / (np.percentile(img, 99.5) - np.percentile(img, 0.5))).astype(np.float32)
    model = build_log(CounterMeta(arch="log", output="density", arch_options=log_options(2.5, 0.2))).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(norm)[None, None])[0, 0].numpy()
    ys, xs = np.nonzero(out)
    assert len(ys) == 3 and match_points(np.column_stack([xs + 0.5, ys + 0.5]), pts, radius=2.0).f1 == 1.0
    # the same image through stitched tiles (one tile padded past the image) gives the same detections
    from cellxfer.count.parts import density_normalized
    from cellxfer.counter.model import torch_runner

    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.2), "tile": 256})
    tiled = density_normalized(torch_runner(model), meta, norm)
    assert np.array_equal(tiled, out)
