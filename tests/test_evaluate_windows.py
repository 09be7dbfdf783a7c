"""Window tiling: every pixel exactly once, padding after normalisation, counts summed."""

from __future__ import annotations

import numpy as np
import pytest

from cellxfer.counter.model import CounterMeta, Normalization
from cellxfer.count.parts import count_image  # noqa: E402
from cellxfer.counter.windows import tile_windows, window_batch


@pytest.mark.parametrize("shape,window", [((600, 800), 256), ((256, 256), 256), ((1, 1), 256), ((513, 257), 256), ((100, 37), 16)])
def test_tiling_covers_every_pixel_exactly_once(shape, window):
    cover = np.zeros(shape, dtype=np.int32)
    wins = tile_windows(shape, window)
    for y, x, h, w in wins:
        assert 0 < h <= window and 0 < w <= window
        cover[y:y + h, x:x + w] += 1
    assert (cover == 1).all()
    assert len(wins) == -(-shape[0] // window) * -(-shape[1] // window)


def test_idcia_size_gives_twelve_windows():
    wins = tile_windows((600, 800), 256)
    assert len(wins) == 12
    assert wins[-1] == (512, 768, 88, 32)


def test_window_batch_pads_with_zero_and_keeps_pixels():
    img = np.arange(1, 5 * 7 + 1, dtype=np.float32).reshape(5, 7)
    batch = window_batch(img, 4, in_chans=3)
    assert batch.shape == (4, 3, 4, 4)
    assert (batch[:, 0] == batch[:, 2]).all()
    # every image value appears exactly once across the batch (values are unique and non-zero)
    vals = batch[:, 0][batch[:, 0] != 0]
    assert sorted(vals.tolist()) == sorted(img.ravel().tolist())
    assert (batch[3, 0, 1:, :] == 0).all() and (batch[3, 0, :, 3:] == 0).all()


def test_count_image_sums_window_outputs():
    # a "runner" that returns the sum of the window pixels: the image total must come back exactly
    meta = CounterMeta(window=8, normalization=Normalization(low=0.0, high=100.0, eps=1.0))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(21, 30)).astype(np.uint8)
    norm = meta.normalization.apply(img)
    runner = lambda b: b.reshape(len(b), -1).sum(axis=1, keepdims=True)  # noqa: E731
    from cellxfer.count.parts import count_plan, plan_image

    per = count_plan(runner, plan_image(img, meta), batch_size=5).region_counts
    assert len(per) == 3 * 4
    assert count_image(runner, meta, img) == pytest.approx(float(norm.astype(np.float64).sum()), rel=1e-5)


def test_count_image_of_a_torch_module_through_its_runner():
    torch = pytest.importorskip("torch")
    from cellxfer.counter.model import torch_runner

    class Sum(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=(1, 2, 3)).unsqueeze(1)

    meta = CounterMeta(window=16, normalization=Normalization(low=0.0, high=100.0, eps=1.0))
    img = np.ones((20, 40), dtype=np.uint8)
    img[0, 0] = 3
    norm = meta.normalization.apply(img)
    assert count_image(torch_runner(Sum()), meta, img) == pytest.approx(float(norm.sum()), rel=1e-5)
