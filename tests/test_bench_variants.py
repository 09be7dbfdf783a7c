"""The named image changes ``scripts/bench_transfer.py --variants`` counts (``VARIANTS``): one signature for all,
and the nuclei-brightening one changes what it says and nothing else."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest

from conftest import REPO


@functools.cache  # loaded once for all the cases below
def _bench_transfer():
    spec = importlib.util.spec_from_file_location("bench_transfer", REPO / "scripts" / "bench_transfer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _field():
    rng = np.random.default_rng(1)
    img = rng.poisson(10, (96, 128)).astype(np.uint16)
    points = np.array([[x, y] for y in (20, 48, 76) for x in (20, 44, 68, 92, 116)], float)
    yy, xx = np.mgrid[0:96, 0:128]
    for x, y in points:
        img[(yy - y) ** 2 + (xx - x) ** 2 <= 25] += 100
    return img, points


@pytest.mark.parametrize("name", sorted(_bench_transfer().VARIANTS))
def test_every_variant_takes_an_image_its_nuclei_and_their_diameter(name):
    img, points = _field()
    out = _bench_transfer().VARIANTS[name](img, points, 10.0)
    assert out.ndim == 2 and out.size > 0 and np.isfinite(np.asarray(out, float)).all()


def test_brightening_some_nuclei_scales_just_their_disks_and_is_the_same_each_run():
    from benchlib import brighten_some

    img, points = _field()
    go = brighten_some(0.3, 5.0, seed=3)
    a, b = go(img, points, 10.0), go(img, points, 10.0)
    assert np.array_equal(a, b)
    lo = np.percentile(img.astype(np.float32), 1)
    changed = ~np.isclose(a, img.astype(np.float32))
    centres = [(int(y), int(x)) for x, y in points]
    bright = [c for c in centres if changed[c]]
    assert 1 <= len(bright) < len(centres)  # some nuclei, not all
    for y, x in bright:
        assert a[y, x] == pytest.approx(lo + (float(img[y, x]) - lo) * 5.0)
    yy, xx = np.nonzero(changed)  # every changed pixel lies within 0.6 diameters of a brightened centre
    near = np.zeros(len(yy), bool)
    for y, x in bright:
        near |= (yy - y) ** 2 + (xx - x) ** 2 <= 6.0 ** 2
    assert near.all()
