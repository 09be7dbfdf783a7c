"""The count pipeline's fast paths give exactly the numbers of the plain numpy calls they replace: the
normalisation percentiles from a histogram, the density map's block sums, the estimate's threshold
histogram, and ONNX Runtime run a few inputs at a time."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_percentiles_of_an_unsigned_image_equal_numpys(dtype):
    from cellxfer.counter.model import percentiles

    rng = np.random.default_rng(0)
    qs = [(0.5, 99.5), (0.5, 99.9), (0.0, 100.0), (50.0,), (1e-9, 99.99999)]
    top = np.iinfo(dtype).max
    for size in (1, 2, 3, 7, 100, 4099, 60_000):
        for high in (1, 200, top):
            a = rng.integers(0, high + 1, size).astype(dtype)
            for arr in (a, np.sort(a), a.reshape(1, -1)):
                for q in qs:
                    want = np.percentile(np.asarray(arr, dtype=np.float32), q)
                    got = percentiles(arr, q)
                    assert got.dtype == want.dtype and np.array_equal(got, want), (dtype, size, high, q, got, want)


def test_percentiles_of_other_images_are_numpys():
    from cellxfer.counter.model import percentiles

    a = np.random.default_rng(1).normal(size=(40, 50)).astype(np.float32)
    assert np.array_equal(percentiles(a, (0.5, 99.5)), np.percentile(a, (0.5, 99.5)))
    b = np.arange(-50, 50, dtype=np.int16)
    assert np.array_equal(percentiles(b, (0.5, 99.5)), np.percentile(b.astype(np.float32), (0.5, 99.5)))


def test_density_map_block_sums_equal_reduceat():
    """Blocks of 1-8 pixels, crops at any offset and size (cut blocks at both ends): the map and the returned
    sum are bit for bit those of np.add.reduceat along x, then y."""
    from cellxfer.count.parts import DensityMap

    rng = np.random.default_rng(2)
    for trial in range(200):
        h_img, w_img = (int(v) for v in rng.integers(1, 1500, 2))
        block = int(rng.integers(1, 9))
        got, want = DensityMap.for_shape((h_img, w_img), block), DensityMap.for_shape((h_img, w_img), block)
        for _ in range(3):
            y0, x0 = int(rng.integers(0, h_img)), int(rng.integers(0, w_img))
            h, w = min(int(rng.integers(1, h_img - y0 + 1)), 300), min(int(rng.integers(1, w_img - x0 + 1)), 300)
            crop = rng.random((h, w), dtype=np.float32) * np.float32(0.03)
            edges = [np.r_[0, np.arange(-(-(o + 1) // block) * block, o + n, block) - o]
                     for o, n in ((x0, w), (y0, h))]
            sums = np.add.reduceat(np.add.reduceat(crop, edges[0], axis=1, dtype=np.float64), edges[1], axis=0)
            want.counts[y0 // block:y0 // block + sums.shape[0], x0 // block:x0 // block + sums.shape[1]] += sums
            assert got.add(crop, y0, x0) == float(sums.sum()), (trial, block, y0, x0, h, w)
        assert np.array_equal(got.counts, want.counts)


def test_threshold_histogram_bins_as_before():
    """The estimate's 256-bin histogram (bin min(floor(256 a), 255)) on values at the bin edges, at 1 and
    just above it (Gaussian smoothing may overshoot 1 by a rounding error), and at 0."""
    from cellxfer.scale import _histogram, _split

    def threshold_intp(a):  # the threshold as first written: the bins through an intp array
        h = np.bincount(np.minimum((a * 256).astype(np.intp), 255).ravel(), minlength=256).astype(np.float64)
        c = (np.arange(256) + 0.5) / 256
        w0 = np.cumsum(h)
        w1 = w0[-1] - w0
        s0 = np.cumsum(h * c)
        k = int(np.argmax(w0 * w1 * (s0 / np.maximum(w0, 1) - (s0[-1] - s0) / np.maximum(w1, 1)) ** 2))
        m = int(np.argmax(h[:k + 1]))
        dark = h[:m]
        sd = float(np.sqrt((dark * (c[:m] - c[m]) ** 2).sum() / dark.sum())) if dark.sum() > 100 else 0.0
        return max(float(c[m]) + (float(c[k]) - float(c[m])), float(c[m]) + 5.0 * sd)

    rng = np.random.default_rng(3)
    edges = np.arange(257, dtype=np.float32) / 256
    special = np.concatenate([edges, np.nextafter(edges, np.float32(0)), np.nextafter(edges, np.float32(2)),
                              np.float32([0, 1, 1.0000001, 1.5])]).astype(np.float32)
    for _ in range(20):
        a = np.concatenate([rng.beta(0.5, 3, 4000).astype(np.float32), rng.choice(special, 500)])
        a = a.reshape(50, -1)
        assert _split(_histogram(a))[0] == threshold_intp(a)


def test_onnx_cpu_runs_a_batch_in_chunks_with_the_outputs_of_one_run(monkeypatch):
    """The onnx engine runs a CPU batch a few inputs at a time (cache-sized), on one thread or several side by
    side; each input's output is the one a single run of the whole batch gives, in order."""
    pytest.importorskip("onnxruntime")
    from cellxfer.engines import onnx_engine
    from cellxfer.engines.base import default_model, load_runner

    model = default_model().with_suffix(".onnx")
    x = np.random.default_rng(4).random((5, 1, 64, 64), dtype=np.float32)
    whole = load_runner(model, "onnx", device="cpu", threads=1)(x)
    runs = []

    class Recorded:  # the session, recording the inputs of each run
        def __init__(self, sess):
            self.sess = sess

        def __getattr__(self, name):
            return getattr(self.sess, name)

        def run(self, outputs, feed):
            runs.append(len(next(iter(feed.values()))))
            return self.sess.run(outputs, feed)

    session = onnx_engine.session
    monkeypatch.setattr(onnx_engine, "session", lambda *a, **k: Recorded(session(*a, **k)))
    monkeypatch.setattr(onnx_engine, "CPU_CHUNK_VALUES", 2 * 64 * 64)  # 2 inputs a run
    for threads in (1, 2):  # one after the other, or side by side on two threads
        runs.clear()
        chunked = load_runner(model, "onnx", device="cpu", threads=threads)(x)
        assert sorted(runs) == [1, 2, 2]
        assert chunked.shape == whole.shape and np.array_equal(chunked, whole)


def test_estimate_objects_equal_ndimage_label_statistics():
    """The estimate's objects (areas, contrasts) on a tile with touching nuclei, holes and objects cut by the
    border are ndimage's per-label sums and means over the smoothed tile less its background, to the last bit,
    and each object's radius is its own distance transform's maximum; with dim nuclei beside them, the tile's
    ``dim`` is the median of ndimage's maxima of the objects above the noise floor that
    :func:`cellxfer.scale._typical_peak` keeps over the median of ndimage's maxima of the thresholded ones."""
    from scipy import ndimage as ndi

    from cellxfer.scale import (CLUMP, MIN_AREA, PEAK_RISE, SMOOTH, _background, _fill_holes, _flatten, _histogram,
                                _split, _tile_objects)

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:160, :200]
    img = 0.05 * rng.random((160, 200))
    for cy, cx, r in [(20, 20, 9), (20, 36, 9), (0, 100, 12), (80, 199, 10), (100, 60, 14), (140, 150, 6)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.6 + 0.3 * rng.random()
    img[98:102, 58:62] = 0.0  # a hole
    img[60:63, 120:123] = 0.8  # 9 pixels: just kept (MIN_AREA)
    img[70:72, 130:133] = 0.9  # a speck
    a = img.astype(np.float32)
    diam, weights, clumped, nuclei, area, dims = _tile_objects(a)

    def thresholded(s):
        t = _split(_histogram(s))[0]
        lab, n = ndi.label(_fill_holes(s > t))
        index = np.arange(1, n + 1)
        all_area = ndi.sum_labels(np.ones_like(s, dtype=np.float64), lab, index)
        return t, lab, n, index, all_area, all_area >= MIN_AREA

    s = _flatten(ndi.gaussian_filter(np.maximum(a, 0), SMOOTH, truncate=3.0))
    t, lab, n, index, all_area, keep = thresholded(s)
    contrast = np.maximum(ndi.sum_labels(s, lab, index)[keep] / all_area[keep] - t, 0.0)
    radius = np.array([ndi.distance_transform_edt(lab == i).max() + 0.5 for i in index[keep]])
    single = all_area[keep] <= CLUMP * np.pi * radius ** 2
    assert 3 <= keep.sum() < n and 0 < (~single).sum()  # a clump, border-cut and holed objects; the speck dropped
    assert np.array_equal(area, all_area[keep]) and np.array_equal(clumped, ~single)
    assert np.array_equal(weights, nuclei * contrast)
    assert len(dims) == 0  # nuclei alike: few pixels between the noise floor and the threshold, not looked for
    for k, (cy, cx) in enumerate([(40, 100), (45, 150), (120, 20), (125, 100), (150, 60), (60, 170), (140, 190),
                                  (100, 130), (30, 60), (60, 20)]):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 11 * 11] = 0.12 + 0.01 * k  # dim nuclei beside the bright ones
    a = img.astype(np.float32)
    *_, area, dims = _tile_objects(a)
    s = _flatten(ndi.gaussian_filter(np.maximum(a, 0), SMOOTH, truncate=3.0))
    _, lab, _, index, _, keep = thresholded(s)
    half = s[::2, ::2]
    mode, floor = _background(_histogram(half))
    lab2, n2 = ndi.label(half > floor)
    index2 = np.arange(1, n2 + 1)
    size = 4.0 * ndi.sum_labels(np.ones_like(half, dtype=np.float64), lab2, index2)
    top = ndi.maximum(half, lab2, index2)
    kept = top[(size >= max(np.median(area) / 4.0, MIN_AREA)) & (top >= mode + PEAK_RISE * (floor - mode))]
    assert len(kept) >= 3
    peaks = np.asarray(ndi.maximum(s, lab, index[keep]), np.float64)  # the thresholded objects, in float64
    assert dims.tolist() == [float(np.median(kept)) / float(np.median(peaks))]


def _run_in_child(runner, x, want, queue):
    queue.put(bool(np.array_equal(runner(x), want)))


def test_onnx_runner_works_in_a_forked_child():
    """A runner whose threads started in the parent runs in a forked child (its own threads, not the parent's)."""
    import multiprocessing

    pytest.importorskip("onnxruntime")
    from cellxfer.engines.base import default_model, load_runner

    runner = load_runner(default_model().with_suffix(".onnx"), "onnx", device="cpu", threads=2)
    x = np.random.default_rng(6).random((4, 1, 320, 320), dtype=np.float32)
    want = runner(x)  # the parent's threads exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_run_in_child, args=(runner, x, want, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child's run hung")
    assert child.exitcode == 0 and queue.get(timeout=5)
