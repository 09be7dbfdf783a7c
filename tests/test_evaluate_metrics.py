"""Evaluation numbers against hand-computed values, and evaluate() end to end with a known counter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellxfer.errors import InputError
from cellxfer.evaluate.metrics import compute_metrics, format_predictions, metrics_from_csv, read_predictions

CSV = """image,true,predicted
a,10,12
b,100,90
c,200,201
d,0,0
"""


def test_metrics_from_small_csv_hand_computed(tmp_path):
    p = tmp_path / "pred.csv"
    p.write_text(CSV)
    m = metrics_from_csv(p)
    # errors: +2, -10, +1, 0
    assert m.n == 4
    assert m.mae == pytest.approx((2 + 10 + 1 + 0) / 4)                    # 3.25
    assert m.rmse == pytest.approx(math.sqrt((4 + 100 + 1 + 0) / 4))        # 5.1235
    # within 5% of true: a (2 > 0.5) no, b (10 > 5) no, c (1 <= 10) yes, d (0 <= 0) yes
    assert m.acp == pytest.approx(0.5)
    assert m.bins["0-50"] == {"n": 2, "mae": pytest.approx(1.0)}            # a, d
    assert m.bins["50-150"] == {"n": 1, "mae": pytest.approx(10.0)}         # b
    assert m.bins["150+"] == {"n": 1, "mae": pytest.approx(1.0)}            # c
    assert m.mean_true == pytest.approx(77.5) and m.mean_pred == pytest.approx(75.75)


def test_bin_edges_and_empty_bins():
    m = compute_metrics([49, 50, 149], [49, 52, 150])
    assert m.bins["0-50"]["n"] == 1 and m.bins["50-150"]["n"] == 2
    assert m.bins["150+"] == {"n": 0, "mae": None}


def test_predictions_csv_round_trip_and_errors(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text(format_predictions([("x", 3, 2.5), ("y", 7, 7.25)]))
    names, t, pr = read_predictions(p)
    assert names == ["x", "y"] and t.tolist() == [3, 7] and pr.tolist() == [2.5, 7.25]
    p.write_text("name,count\nx,1\n")
    with pytest.raises(InputError, match="image,true,predicted"):
        read_predictions(p)
    p.write_text("image,true,predicted\nx,one,2\n")
    with pytest.raises(InputError, match="line 2"):
        read_predictions(p)


def test_evaluate_end_to_end_with_a_known_counter(tmp_path):
    """A registered architecture whose window output is (sum of normalised pixels) / 9: on images where
    each cell is a 3x3 square of value 1 after normalisation, it counts exactly; evaluate() must sum the
    12 windows of an 80x100 image (window 32) without dropping or double-counting the border."""
    torch = pytest.importorskip("torch")
    from cellxfer.counter.model import CounterArch, CounterMeta, Normalization, save_counter
    from cellxfer.dataset import CellDatasetWriter
    from cellxfer.evaluate.run import EvaluateConfig, evaluate
    from cellxfer.hookspecs import hookimpl
    from cellxfer.plugins import get_registry

    class PixelSum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(1.0 / 9.0))

        def forward(self, x):
            return (x.sum(dim=(1, 2, 3)) * self.scale).unsqueeze(1)

    class Plugin:
        @hookimpl
        def cellxfer_counter_architectures(self):
            return [CounterArch("test-pixel-sum", "sum of pixels / 9", lambda meta: PixelSum())]

    reg = get_registry()
    if "test-pixel-sum" not in reg.provided("cellxfer_counter_architectures"):
        reg.register(Plugin(), name="test-pixel-sum-plugin")
    meta = CounterMeta(arch="test-pixel-sum", window=32, normalization=Normalization(low=0.0, high=100.0, eps=1.0))
    ckpt = save_counter(tmp_path / "m.safetensors", PixelSum(), meta)

    rng = np.random.default_rng(0)
    w = CellDatasetWriter(tmp_path / "data")
    truth = {}
    for i, k in enumerate([0, 3, 17]):
        img = np.zeros((80, 100), np.uint8)
        pts = []
        while len(pts) < k:
            r, c = int(rng.integers(1, 79)), int(rng.integers(1, 99))
            if img[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].any():  # keep squares apart
                continue
            img[r - 1:r + 2, c - 1:c + 2] = 255
            pts.append((c + 0.5, r + 0.5))
        w.write(f"im{i}", img, np.array(pts).reshape(-1, 2))
        truth[f"im{i}"] = k
    w.finalize({"stage": "test"})
    # Normalisation percentiles (0, 100) of a 0/255 image map cells to exactly 1 (background 0), so the
    # predicted count of each image is exactly its number of squares.
    res = evaluate(EvaluateConfig(model=ckpt, data=tmp_path / "data", out_csv=tmp_path / "pred.csv", engine="torch"))
    got = {name: p for name, _, p in res.rows}
    for name, k in truth.items():
        assert got[name] == pytest.approx(k if k else 0.0, abs=1e-4)
    assert res.metrics.mae == pytest.approx(0.0, abs=1e-4)
    assert (tmp_path / "pred.csv").read_text().splitlines()[0] == "image,true,predicted"
