"""CutMix count arithmetic (golden, hand-computed) and centre maps."""

from __future__ import annotations

import numpy as np
import pytest

from cellxfer.train.data import centre_map
from cellxfer.train.mix import cutmix_box, paste, random_cutmix


def _map(shape, rc):
    m = np.zeros(shape, dtype=np.int32)
    for r, c in rc:
        m[r, c] += 1
    return m


def test_cutmix_box_golden():
    # lam 0.75 -> side ratio sqrt(0.25) = 0.5 -> 5 x 5 box centred at (5, 5): rows/cols 3..7
    assert cutmix_box((10, 10), 0.75, 5, 5) == (3, 3, 8, 8)
    # lam 0 -> full-size box centred at the top-right corner, clipped: rows 0..4, cols 4..9
    assert cutmix_box((10, 10), 0.0, 0, 9) == (0, 4, 5, 10)
    # lam 1 -> empty box
    y0, x0, y1, x1 = cutmix_box((10, 10), 1.0, 5, 5)
    assert (y1 - y0) * (x1 - x0) == 0
    # non-square image: 0.5 x (8, 20) = (4, 10)
    assert cutmix_box((8, 20), 0.75, 4, 10) == (2, 5, 6, 15)


def test_paste_count_golden():
    a = _map((10, 10), [(1, 1), (4, 4), (9, 9)])          # (4, 4) lies inside the box, the others outside
    b = _map((10, 10), [(5, 5), (6, 6), (7, 3), (0, 0)])  # three inside the box, (0, 0) outside
    ai, bi = np.zeros((10, 10), np.float32), np.ones((10, 10), np.float32)
    img, cmap, n = paste(ai, a, bi, b, (3, 3, 8, 8))
    assert n == 2 + 3 == int(cmap.sum())
    assert img[3:8, 3:8].min() == 1 and img.sum() == 25
    # reverse direction: b outside the box (only (0, 0)) + a inside (only (4, 4))
    _, _, n2 = paste(bi, b, ai, a, (3, 3, 8, 8))
    assert n2 == 1 + 1
    # clipped corner box (0, 4, 5, 10): a's (4, 4) is inside, so a keeps (1, 1) and (9, 9); no b centre
    # lies inside ((0, 0) is left of it, the others below) -> 2
    assert paste(ai, a, bi, b, (0, 4, 5, 10))[2] == 2


def test_duplicate_centres_count_twice():
    pts = np.array([[2.2, 3.7], [2.9, 3.1], [0.0, 0.0], [4.999, 5.999]])
    m = centre_map(pts, (6, 5))
    assert m[3, 2] == 2 and m[0, 0] == 1 and m[5, 4] == 1 and m.sum() == 4


def test_random_cutmix_probability_edges_and_exact_counts():
    rng = np.random.default_rng(0)
    a_img, b_img = rng.random((32, 32)).astype(np.float32), rng.random((32, 32)).astype(np.float32)
    a = (rng.random((32, 32)) < 0.05).astype(np.int32)
    b = (rng.random((32, 32)) < 0.2).astype(np.int32) * 2
    img, m, n, box = random_cutmix(a_img, a, b_img, b, np.random.default_rng(1), prob=0.0)
    assert box is None and n == a.sum() and img is a_img
    seen_dirs = set()
    for seed in range(40):
        img, m, n, box = random_cutmix(a_img, a, b_img, b, np.random.default_rng(seed), alpha=1.0, prob=1.0)
        assert box is not None
        y0, x0, y1, x1 = box
        inside = np.zeros((32, 32), bool)
        inside[y0:y1, x0:x1] = True
        if (y1 - y0) * (x1 - x0) and np.array_equal(img[inside], b_img[inside]) and np.array_equal(img[~inside], a_img[~inside]):
            seen_dirs.add("b into a")
            expected = a[~inside].sum() + b[inside].sum()
        elif (y1 - y0) * (x1 - x0) and np.array_equal(img[inside], a_img[inside]):
            seen_dirs.add("a into b")
            expected = b[~inside].sum() + a[inside].sum()
        else:
            continue
        assert n == expected == m.sum()
    assert seen_dirs == {"b into a", "a into b"}


def test_mix_rate_close_to_prob():
    a = np.zeros((16, 16), np.float32)
    m = np.zeros((16, 16), np.int32)
    rng = np.random.default_rng(3)
    mixed = sum(random_cutmix(a, m, a, m, rng, prob=0.5)[3] is not None for _ in range(2000))
    assert mixed / 2000 == pytest.approx(0.5, abs=0.05)
