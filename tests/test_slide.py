"""Whole slides in bounded memory: lazy region reads, normalisation levels and resizing by region, parts
and mergers (:mod:`cellxfer.count.parts`) that give the same counts and points whatever the tile or
part size, cells on seams counted once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellxfer import lazy
from cellxfer.counter.model import CounterMeta, Normalization


def _ramp(h=300, w=420, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 3000, (h, w)) + np.arange(w)[None, :] * 5).astype(np.uint16)


@pytest.fixture
def small_lazy(monkeypatch):
    monkeypatch.setattr(lazy, "LAZY_PIXELS", 1000)


@pytest.mark.parametrize("layout", ["tiled", "pyramid", "strips", "contiguous", "bigendian"])
def test_lazy_reader_reads_regions_of_each_layout(tmp_path, small_lazy, layout):
    import tifffile

    img, path = _ramp(), tmp_path / f"{layout}.tif"
    if layout == "pyramid":  # OME-TIFF with a sub-resolution level: level 0 is read
        with tifffile.TiffWriter(path, ome=True) as tw:
            tw.write(img, tile=(64, 64), subifds=1, compression="zlib")
            tw.write(img[::2, ::2].copy(), tile=(64, 64), subfiletype=1, compression="zlib")
    elif layout == "tiled":
        tifffile.imwrite(path, img, tile=(64, 64), compression="zlib")
    elif layout == "strips":
        tifffile.imwrite(path, img, rowsperstrip=16, compression="zlib")
    elif layout == "bigendian":
        tifffile.imwrite(path, img, byteorder=">")
    else:
        tifffile.imwrite(path, img)
    im = lazy.open_image(path)
    assert lazy.is_lazy(im) and im.shape == img.shape and im.dtype == img.dtype
    assert np.array_equal(im[37:201, 50:333], img[37:201, 50:333])
    assert np.array_equal(im[250:999, 400:], img[250:, 400:])  # clipped at the border like numpy
    assert np.array_equal(lazy.strided_sample(im, 3), img[::3, ::3])
    assert np.array_equal(np.asarray(im), img)


def test_what_is_not_read_lazily_is_read_as_before(tmp_path, small_lazy):
    import tifffile

    from cellxfer.errors import InputError

    tifffile.imwrite(tmp_path / "stack.tif", np.stack([_ramp(), _ramp(seed=1)]))  # several pages: read whole
    with pytest.raises(InputError, match="--page"):
        lazy.open_image(tmp_path / "stack.tif")
    assert np.array_equal(lazy.open_image(tmp_path / "stack.tif", page=1), _ramp(seed=1))


def test_levels_of_a_lazy_image_equal_the_arrays(tmp_path, small_lazy, monkeypatch):
    import tifffile

    monkeypatch.setattr(Normalization, "SAMPLE", 5000)  # sampled, as a slide is
    monkeypatch.setattr(lazy, "BAND_BYTES", 4096)  # many bands
    img = _ramp()
    tifffile.imwrite(tmp_path / "t.tif", img, tile=(32, 32))
    for norm in (Normalization(clip=3.0), Normalization(min_snr=1e4)):  # min_snr: the noise floor decides
        lv = norm.levels(lazy.open_image(tmp_path / "t.tif"))
        assert lv == norm.levels(img)
        assert np.array_equal(norm.apply_levels(img[10:50, 20:90], lv), norm.apply(img)[10:50, 20:90])
    assert Normalization(min_snr=1e4).levels(img)[1] > Normalization().levels(img)[1]


def test_samples_of_a_lazy_image_hold_one_band_at_a_time(monkeypatch):
    """The strided samples behind the levels read a slide band by band and keep only each band's sample
    (a view would keep every band read, i.e. the whole slide: that was the 32k slide's 1.5 GB), and the
    noise floor's sample of whole rows stays about ``SAMPLE`` pixels however large the image."""
    import weakref

    img = _ramp(600, 400)
    live, most, seen = [0], [0], []

    class Counting(lazy.LazyImage):
        shape, dtype, path = img.shape, img.dtype, None

        def _read(self, y0, y1, x0, x1):
            out = img[y0:y1, x0:x1].copy()
            live[0] += 1
            most[0] = max(most[0], live[0])
            weakref.finalize(out, lambda: live.__setitem__(0, live[0] - 1))
            seen.append((y1 - y0) * (x1 - x0))
            return out

    monkeypatch.setattr(lazy, "BAND_BYTES", 40 * 400 * 2)  # 39 rows a band (a multiple of the step): 16 bands
    image = Counting()
    assert np.array_equal(lazy.strided_sample(image, 3), img[::3, ::3])
    assert len(seen) >= 15 and most[0] == 1
    reads = len(seen)  # asked again (the plan's levels after the diameter estimate's): not read again
    assert np.array_equal(lazy.strided_sample(image, 3), img[::3, ::3]) and len(seen) == reads
    monkeypatch.setattr(Normalization, "SAMPLE", 6000)
    sampled = []
    monkeypatch.setattr("cellxfer.counter.model.noise_sd", lambda a: sampled.append(a.size) or 1.0)
    Normalization(min_snr=8.0).levels(Counting())
    assert sampled and sampled[0] <= 6000 + 400  # ~SAMPLE pixels of whole rows, not h / step rows


@pytest.mark.parametrize("factor", [0.37, 0.5, 1.7])
def test_lazy_resize_equals_the_whole_image_resized(tmp_path, small_lazy, factor):
    import tifffile

    from cellxfer.scale import resize_to

    img = _ramp(200, 260)
    tifffile.imwrite(tmp_path / "t.tif", img, tile=(32, 32))
    whole = resize_to(img, factor)
    part = resize_to(lazy.open_image(tmp_path / "t.tif"), factor)
    assert lazy.is_lazy(part.image) and part.image.shape == whole.image.shape and (part.sy, part.sx) == (whole.sy, whole.sx)
    h, w = whole.image.shape
    for y0, y1, x0, x1 in [(0, h, 0, w), (3, h // 2, w // 3, w - 1), (h // 2, h, 0, 17)]:
        assert np.allclose(part.image[y0:y1, x0:x1], whole.image[y0:y1, x0:x1], rtol=1e-5, atol=1e-2)


# -- parts and mergers -----------------------------------------------------------------------------------
def _blur_runner(batch):
    """A density "model" of small receptive field (Gaussian, radius 6 < margin): stitched tiles equal
    the whole image's map exactly."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(t[:1], (0, 2.0, 2.0), truncate=3.0) for t in batch]) * 0.02


def test_density_points_do_not_depend_on_parts(small_lazy):
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.counter.head import points_from_density

    rng = np.random.default_rng(3)
    img = np.zeros((700, 900), np.float32)
    ys, xs = rng.integers(5, 695, 400), rng.integers(5, 895, 400)
    img[ys, xs] = rng.uniform(50, 100, 400)
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16})
    one = count_plan(_blur_runner, plan_image(img, meta), points=True)
    assert len(plan_image(img, meta).parts) == 1
    whole = _blur_runner(meta.normalization.apply(img)[None, None])[0, 0]
    assert one.count == pytest.approx(float(whole.sum(dtype=np.float64)), rel=1e-6)
    assert np.array_equal(one.points, points_from_density(whole, meta))
    for part_tiles in (1, 9, 20):
        plan = plan_image(img, meta, part_tiles=part_tiles)
        assert len(plan.parts) > 1
        got = count_plan(_blur_runner, plan, batch_size=7, points=True)
        assert got.count == pytest.approx(one.count, rel=1e-9)
        assert np.array_equal(got.region_counts, one.region_counts)
        assert np.array_equal(got.points, one.points)


def test_density_points_and_their_order_do_not_depend_on_parts_when_values_tie():
    """Equal peaks (identical spikes) rank by position, not by which band found them first: the points,
    in order, are the same for one part, rows of parts, and rows cut across into parts of one tile."""
    from cellxfer.count.parts import count_plan, plan_image

    rng = np.random.default_rng(1)
    img = np.zeros((130, 3000), np.float32)
    img[rng.integers(0, 130, 780), rng.integers(0, 3000, 780)] = 80
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16})
    one = count_plan(_blur_runner, plan_image(img, meta, part_tiles=10**6), points=True)
    for part_tiles in (1, 3):
        got = count_plan(_blur_runner, plan_image(img, meta, part_tiles=part_tiles), points=True)
        assert got.count == pytest.approx(one.count, rel=1e-9)
        assert np.array_equal(got.points, one.points)


def test_a_wide_slide_is_cut_across_its_width_into_parts_of_bounded_input():
    """A row of boxes that alone weighs ``part_tiles`` is cut across its width: the parts of a strip
    weigh about ``part_tiles`` base tiles however wide it is, cover the boxes once and in order, end
    rows where the next part starts a row, and read only their own columns."""
    from cellxfer.count.parts import OwnedTiles, group_parts

    splitter = OwnedTiles(tile=256, margin=16)
    for width in (8000, 64000):
        boxes = splitter.boxes((600, width))
        parts = group_parts(boxes, splitter, 16)
        assert [p.first for p in parts] == [0] + [p.end for p in parts[:-1]] and parts[-1].end == len(boxes)
        assert all(16 <= p.end - p.first < 32 for p in parts)
        for p in parts:
            got = boxes[p.first:p.end]
            assert len({b[0] for b in got}) == 1
            assert p.x0 == got[0][1] and p.x1 == got[-1][1] + 256 and p.y1 - p.y0 == 256
    narrow = group_parts(splitter.boxes((2000, 600)), splitter, 16)  # rows of 3 boxes: runs of 6 rows
    assert [(p.end - p.first, p.x0) for p in narrow] == [(18, 0)] * (len(narrow) - 1) + [(narrow[-1].end - narrow[-1].first, 0)]


def test_density_tiles_cover_each_axis_with_the_fewest_input_pixels():
    """An axis up to 4 base tiles long is one tile of its own length (an ordinary image is computed whole,
    without seams or padding; a shorter axis than the base tile is mirrored to it); a longer one is cut into
    tiles of base + 32 k pixels, whichever repeats fewer pixels."""
    from cellxfer.count.parts import OwnedTiles

    base = OwnedTiles(tile=256, margin=16)
    for shape, sides in [((481, 642), (481, 642)), ((200, 300), (256, 300)), ((1024, 1025), (1024, 544)),
                         ((32768, 600), (1024, 600))]:
        got = base.for_shape(shape)
        assert (got.tile, got.width) == sides, (shape, got)
        boxes = got.boxes(shape)
        assert got.cut(np.zeros(shape, np.float32), 0, boxes).shape == (len(boxes), 1) + sides
        assert got.weight == -(-sides[0] * sides[1] // 256 ** 2)
    assert len(base.for_shape((481, 642)).boxes((481, 642))) == 1


@pytest.mark.parametrize("splitter", ["windows", "tiles"])
def test_every_counter_splitter_cuts_a_part_from_its_region_as_from_the_whole_image(splitter):
    """Contract of the counters' splitters: the inputs of a part cut from just its region (rows from ``y0``,
    columns from ``x0``) are those cut from the whole image, for parts of one box (rows cut across)."""
    from cellxfer.count.parts import OwnedTiles, WindowGrid, group_parts

    img = np.random.default_rng(0).random((300, 700), dtype=np.float32)
    split = WindowGrid(window=64) if splitter == "windows" else OwnedTiles(tile=128, margin=16).for_shape(img.shape)
    boxes = split.boxes(img.shape)
    whole = split.cut(img, 0, boxes)
    parts = group_parts(boxes, split, 1)
    assert len(parts) == len(boxes) and any(p.x0 > 0 for p in parts)
    got = np.concatenate([split.cut(img[p.y0:p.y1, p.x0:p.x1], p.y0, boxes[p.first:p.end], p.x0) for p in parts])
    assert np.array_equal(got, whole)


def _slide(tmp_path: Path, reps: int = 10, size: int = 300):
    """A tiled uint16 slide of reps x reps copies of a field of disks, and its cell centres."""
    import tifffile

    from test_scale import disks

    field, pts = disks(7.0, size=size, seed=5)
    img = np.tile(field, (reps, reps)).astype(np.uint16)
    centres = np.concatenate([pts + [size * i, size * j] for j in range(reps) for i in range(reps)])
    tifffile.imwrite(tmp_path / "slide.tif", img, tile=(256, 256), compression="zlib")
    return tmp_path / "slide.tif", centres


def test_a_slide_counts_the_same_in_tiles_and_parts_of_any_size(tmp_path, monkeypatch):
    """Seams: a 3000 x 3000 tiled slide counted lazily in 256- and 384-pixel tiles, in parts of one tile
    row or many, gives the same points, each true cell once (cells on tile borders included)."""
    pytest.importorskip("torch")
    from cellxfer.classical import build_log, log_options
    from cellxfer.count import parts
    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.model import save_counter

    monkeypatch.setattr(lazy, "LAZY_PIXELS", 2_000_000)
    path, centres = _slide(tmp_path)
    found = {}
    for tile, part_tiles in ((256, 256), (256, 14), (384, 3)):
        meta = CounterMeta(arch="log", window=128, output="density",
                           arch_options={**log_options(2.5, 0.15), "tile": tile})
        model = save_counter(tmp_path / f"log{tile}.safetensors", build_log(meta), meta)
        monkeypatch.setattr(parts, "PART_TILES", part_tiles)
        out = tmp_path / f"{tile}-{part_tiles}"
        res = run_count(CountConfig(paths=(str(path),), model=model, engine="torch", out=out / "c.csv",
                                    points=out, batch_size=8))
        assert not res.failed, res.failed
        pts = np.loadtxt(out / "slide.csv", delimiter=",", skiprows=1).reshape(-1, 2)
        assert list(res.counts.values())[0] == len(pts)
        found[(tile, part_tiles)] = pts[np.lexsort(pts.T)]
    ref = found[(256, 256)]
    for key, pts in found.items():
        assert np.array_equal(pts, ref), key
    from scipy.spatial import cKDTree  # (match_points builds a 35k x 35k matrix: too big here)

    dist, nearest = cKDTree(ref).query(centres)
    hit = dist <= 3.0
    assert hit.mean() >= 0.97 and len(ref) <= 1.03 * len(centres), (hit.mean(), len(ref), len(centres))
    assert len(np.unique(nearest[hit])) == hit.sum()  # no point stands for two cells
    assert not cKDTree(ref).query_pairs(3.0)  # and no cell has two points (a seam counted twice)


def test_batching_parts_of_several_images_equals_one_by_one(tmp_path):
    """count_batched mixes parts of consecutive images in batches (never inputs of two tile sides in one
    call); every image's regions and count are those of counting it alone in one part."""
    from cellxfer.count.job import count_batched
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.engines.base import Runner

    import tifffile

    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 96, "margin": 16})
    runner = Runner(_blur_runner, meta, "numpy", "cpu", Path("x"), "0")
    files = []
    for i, (h, w) in enumerate([(300, 410), (90, 700), (900, 1000), (500, 120)]):
        files.append(tmp_path / f"{i}.tif")
        tifffile.imwrite(files[-1], _ramp(h, w, seed=i))
    alone = {f: count_plan(_blur_runner, plan_image(tifffile.imread(f), meta), points=True) for f in files}
    splitters = [plan_image(tifffile.imread(f), meta).splitter for f in files]
    sides = [(s.tile, s.width) for s in splitters]
    # an axis up to 4 base tiles long is one tile of its length; a longer one is cut into tiles of base + 32 k
    assert sides[0][0] == 300 and sides[1][0] == 96 and sides[3][1] == 120, sides  # (90 rows: mirrored to 96)
    assert all(t >= 96 and (t - 96) % 32 == 0 for t in (sides[0][1], sides[1][1], *sides[2], sides[3][0])), sides
    calls = []

    def recording(x):
        calls.append(x.shape)
        return _blur_runner(x)

    runner = Runner(recording, meta, "numpy", "cpu", Path("x"), "0")
    got = list(count_batched(files, runner, batch_size=5, workers=2, points=True, part_tiles=2))
    assert all(n <= max(1, 5 // -(-h * w // 96 ** 2)) for n, _, h, w in calls), calls  # 5 base tiles a call
    assert {(h, w) for _, _, h, w in calls} == set(sides)
    assert [f for f, *_ in got] == files
    for f, plan, res, _ in got:
        assert len(plan.parts) > 1 or f == files[1]
        assert np.array_equal(res.region_counts, alone[f].region_counts)
        assert res.count == pytest.approx(alone[f].count, rel=1e-9)
        assert np.array_equal(res.points, alone[f].points)


def test_a_slide_truncated_midway_fails_with_one_line(tmp_path, monkeypatch, small_lazy):
    pytest.importorskip("torch")
    import tifffile

    from cellxfer.classical import build_log, log_options
    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.model import save_counter

    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _ramp(600, 600), tile=(64, 64), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    meta = CounterMeta(arch="log", window=128, output="density", arch_options=log_options(2.5, 0.15))
    model = save_counter(tmp_path / "log.safetensors", build_log(meta), meta)
    res = run_count(CountConfig(paths=(str(path),), model=model, engine="torch", out=tmp_path / "c.csv"))
    assert str(path) in res.failed and "not a readable TIFF" in res.failed[str(path)]
    assert "\n" not in res.failed[str(path)]


def test_a_slide_overlay_is_drawn_on_its_sample(tmp_path, monkeypatch, small_lazy):
    """--overlay of a slide: the picture is the strided sample (at most PREVIEW_SIDE a side), points
    and tiles scaled down onto it."""
    pytest.importorskip("torch")
    import tifffile
    from PIL import Image

    from cellxfer.classical import build_log, log_options
    from cellxfer.count import parts
    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.model import save_counter
    from test_scale import disks

    monkeypatch.setattr(parts, "PREVIEW_SIDE", 200)
    img, _ = disks(7.0, size=600, seed=2)
    tifffile.imwrite(tmp_path / "s.tif", img.astype(np.uint16), tile=(64, 64))
    meta = CounterMeta(arch="log", window=128, output="density", arch_options=log_options(2.5, 0.15))
    model = save_counter(tmp_path / "log.safetensors", build_log(meta), meta)
    res = run_count(CountConfig(paths=(str(tmp_path / "s.tif"),), model=model, engine="torch", out=tmp_path / "c.csv",
                                overlay=tmp_path / "ov", points=tmp_path / "pts"))
    assert not res.failed, res.failed
    ov = np.asarray(Image.open(tmp_path / "ov" / "s.png").convert("RGB"))
    assert ov.shape == (200, 200, 3)
    pts = np.loadtxt(tmp_path / "pts" / "s.csv", delimiter=",", skiprows=1).reshape(-1, 2) / 3
    magenta = (ov[..., 0] > 200) & (ov[..., 1] < 80) & (ov[..., 2] > 200)
    near = [magenta[max(int(y) - 3, 0):int(y) + 4, max(int(x) - 3, 0):int(x) + 4].any() for x, y in pts]
    assert len(pts) > 20 and np.mean(near) > 0.9  # a circle around (almost) every point, on the sample's grid


def test_density_map_is_the_block_sums_of_the_map_whatever_the_parts(monkeypatch):
    from cellxfer.count import parts

    monkeypatch.setattr(parts, "MAP_SIDE", 64)
    rng = np.random.default_rng(4)
    img = np.zeros((700, 900), np.float32)
    img[rng.integers(5, 695, 300), rng.integers(5, 895, 300)] = 80
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16})
    whole = _blur_runner(meta.normalization.apply(img)[None, None])[0, 0].astype(np.float64)
    b = -(-900 // 64)  # 15-pixel blocks
    want = np.zeros((-(-700 // b), -(-900 // b)))
    for i in range(want.shape[0]):
        for j in range(want.shape[1]):
            want[i, j] = whole[i * b:(i + 1) * b, j * b:(j + 1) * b].sum()
    for part_tiles in (1, 7, 100):
        got = parts.count_plan(_blur_runner, parts.plan_image(img, meta, part_tiles=part_tiles)).density_map
        assert got.block == b and got.counts.shape == want.shape == (47, 60)
        assert np.allclose(got.counts, want, rtol=1e-5, atol=1e-7)


def test_count_writes_a_density_map_of_one_image(tmp_path, capsys):
    """`count --density-map OUT.tif|png`: counts per block summing to the image's count, the block in
    the TIFF description; refused (one line, nothing written) for several images or another suffix."""
    pytest.importorskip("torch")
    import json

    import tifffile

    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import save_counter
    from cli_inproc import run_cli

    path, centres = _slide(tmp_path, reps=2)
    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.15), "tile": 256})
    model = save_counter(tmp_path / "log.safetensors", build_log(meta), meta)
    args = ["count", path, "-m", model, "--engine", "torch", "--diameter", "off"]
    r = run_cli([*args, "-o", tmp_path / "c.csv", "--density-map", tmp_path / "map.tif"], capsys)
    assert r.returncode == 0, r.stderr
    count = float(open(tmp_path / "c.csv").read().splitlines()[1].split(",")[1])
    with tifffile.TiffFile(tmp_path / "map.tif") as tf:
        counts, desc = tf.asarray(), json.loads(tf.pages[0].description)
    assert counts.dtype == np.float32 and counts.shape == (600 // 2, 600 // 2) and desc["block"] == 2
    assert counts.sum() == pytest.approx(count, abs=0.5) and desc["count"] == pytest.approx(count, abs=0.5)
    ys, xs = np.nonzero(counts > 0.5)  # every mark lies on a true cell
    assert np.all(np.min(np.hypot(*(np.stack([xs, ys], 1)[:, None, :] * 2 + 1 - centres[None]).transpose(2, 0, 1)),
                         axis=1) <= 4)
    r = run_cli([*args, "-o", tmp_path / "c2.csv", "--density-map", tmp_path / "map.png"], capsys)
    assert r.returncode == 0 and (tmp_path / "map.png").is_file(), r.stderr
    for bad, why in ((["--density-map", tmp_path / "m.jpg"], "must end in .tif"),
                     (["--density-map", tmp_path / "m2.tif", tmp_path / "map.tif"], "writes the map of one image")):
        r = run_cli([*args, *bad, "-o", tmp_path / "c3.csv"], capsys)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "m.jpg").exists() and not (tmp_path / "m2.tif").exists()


def _pyramid(tmp_path: Path):
    """A 3-level pyramid of a field of disks: as a tiled pyramidal OME-TIFF (sub-IFDs) and an OME-Zarr
    folder (zarr v3, NGFF 0.5 ``multiscales``; axes c, y, x)."""
    import tifffile
    import zarr

    from test_scale import disks

    field = disks(7.0, size=600, seed=5)[0].astype(np.uint16)
    levels = [field, field[::2, ::2].copy(), field[::4, ::4].copy()]
    tif = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(tif, ome=True) as tw:
        tw.write(levels[0], tile=(64, 64), subifds=2, compression="zlib")
        for lv in levels[1:]:
            tw.write(lv, tile=(64, 64), subfiletype=1, compression="zlib")
    root = tmp_path / "pyr.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    for i, lv in enumerate(levels):
        group.create_array(str(i), data=lv[None], chunks=(1, 128, 128))
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1, 2 ** i, 2 ** i]}]}
        for i in range(3)]}]}
    return levels, tif, root


@pytest.mark.parametrize("lazy_pixels", [10**9, 1000])  # read whole / read by region
def test_level_of_a_pyramidal_ome_tiff_and_an_ome_zarr(tmp_path, monkeypatch, lazy_pixels):
    monkeypatch.setattr(lazy, "LAZY_PIXELS", lazy_pixels)
    levels, tif, root = _pyramid(tmp_path)
    for path in (tif, root):
        for i, want in enumerate(levels):
            im = lazy.open_image(path, level=i)
            assert lazy.is_lazy(im) == (lazy_pixels == 1000), (path, i)  # every level is over 1000 px
            assert im.shape == want.shape and np.array_equal(np.asarray(im), want), (path, i)
            if lazy.is_lazy(im):
                assert np.array_equal(im[10:77, 33:140], want[10:77, 33:140])
    from cellxfer.errors import InputError

    for path in (tif, root):
        with pytest.raises(InputError, match=r"--level 3: the image has levels 0 to 2"):
            lazy.open_image(path, level=3)
    import tifffile

    tifffile.imwrite(tmp_path / "flat.tif", levels[0])
    with pytest.raises(InputError, match="levels 0 to 0"):
        lazy.open_image(tmp_path / "flat.tif", level=1)


def test_count_level_of_a_pyramid_equals_counting_that_level(tmp_path, capsys):
    """`count --level 1` of a pyramidal OME-TIFF and of an OME-Zarr folder (found in a folder too, its
    chunks not listed as skipped files) gives the count of that level saved as a plain TIFF."""
    pytest.importorskip("torch")
    import tifffile

    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import save_counter
    from cli_inproc import run_cli

    levels, tif, root = _pyramid(tmp_path)
    tifffile.imwrite(tmp_path / "level1.tif", levels[1])
    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.15), "tile": 256})
    model = save_counter(tmp_path / "m" / "log.safetensors", build_log(meta), meta)
    args = ["-m", model, "--engine", "torch", "--diameter", "off"]
    r = run_cli(["count", tmp_path / "level1.tif", *args, "-o", tmp_path / "ref.csv"], capsys)
    assert r.returncode == 0, r.stderr
    ref = float((tmp_path / "ref.csv").read_text().splitlines()[1].split(",")[1])
    assert ref > 5
    for path in (tif, root):
        r = run_cli(["count", path, *args, "--level", 1, "-o", tmp_path / f"{path.name}.csv"], capsys)
        assert r.returncode == 0, r.stderr
        assert float((tmp_path / f"{path.name}.csv").read_text().splitlines()[1].split(",")[1]) == ref
    from cellxfer.inputs import expand_inputs

    files, skipped = expand_inputs([tmp_path], recursive=True)
    assert root.resolve() in files and not any(root in p.parents for p, _ in skipped)
    r = run_cli(["count", root, *args, "--level", 5, "-o", tmp_path / "bad.csv"], capsys)
    assert r.returncode == 1 and "--level 5: the image has levels 0 to 2" in r.stderr, r.stderr


def test_points_streamed_to_the_csv_equal_the_points_held(tmp_path, small_lazy):
    """A density model's points written band by band through a disk spill (``PointsFile``) are the
    points table of the points held in memory, byte for byte, whatever the parts, resized or not; the
    spill file is gone afterwards."""
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.dataset import format_points
    from cellxfer.scale import DiameterPolicy

    rng = np.random.default_rng(7)
    img = np.zeros((700, 900), np.float32)
    img[rng.integers(5, 695, 400), rng.integers(5, 895, 400)] = rng.uniform(50, 100, 400)
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16},
                       diameter=10.0)
    for policy in (None, DiameterPolicy.parse("13", 10.0)):  # as it is / resized by 10/13
        held = count_plan(_blur_runner, plan_image(img, meta, policy), points=True)
        assert len(held.points) > 100
        for part_tiles in (2, 50):
            plan = plan_image(img, meta, policy, part_tiles=part_tiles)
            out = tmp_path / f"{part_tiles}-{policy is None}.csv"
            merger = plan.merger(True, out)
            for i in range(len(plan.parts)):
                merger.add(i, [_blur_runner(plan.batch(i))])
            res = merger.result()
            assert res.points is None and res.count == pytest.approx(held.count, rel=1e-9)
            assert out.read_text() == format_points(held.points)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{k}-{b}.csv" for k in (2, 50) for b in (True, False))


@pytest.mark.parametrize("part_tiles", [1, 6])
def test_spans_of_parts_merge_to_the_whole_exactly(tmp_path, monkeypatch, small_lazy, part_tiles):
    """Parts counted in spans (a Dask worker's blocks) and merged, in any order, give exactly the
    count, region counts and points of one merger over all parts: each cell owned once, seams included
    (a peak on a span's border is found by the seam, not twice or never); a plan pickles light and its
    lazy source reopens by path."""
    import pickle

    import tifffile

    from cellxfer.count.parts import count_parts, count_plan, merge, plan_image, spans_of
    from cellxfer.counter.splitters import OwnedTiles

    monkeypatch.setattr(OwnedTiles, "MAX_FACTOR", 1)  # the model's own 128-pixel tiles: many rows of parts
    rng = np.random.default_rng(11)
    img = np.zeros((900, 700), np.uint16)
    img[rng.integers(2, 898, 900), rng.integers(2, 698, 900)] = rng.integers(5000, 9000, 900)
    img[::113, 50:650:40] = 9000  # peaks on many rows, some right on span borders
    tifffile.imwrite(tmp_path / "s.tif", img, tile=(64, 64))
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16})
    plan = plan_image(lazy.open_image(tmp_path / "s.tif"), meta, part_tiles=part_tiles)
    whole = count_plan(_blur_runner, plan, batch_size=5, points=True)
    assert len(whole.points) > 500
    light = pickle.dumps(plan)
    assert len(light) < 20_000 and lazy.is_lazy(pickle.loads(light).source)
    for per in (1, 2, 3):
        spans = spans_of(plan, per)
        assert len(spans) > 2 and spans[0][0] == 0 and spans[-1][1] == len(plan.parts)
        outs = [count_parts(_blur_runner, pickle.loads(light), s, 5, points=True) for s in spans]
        got = merge(plan, outs[::-1], points=True)
        assert got.count == whole.count and np.array_equal(got.region_counts, whole.region_counts)
        assert np.array_equal(got.points, whole.points), per
    with pytest.raises(ValueError, match="do not cover"):
        merge(plan, outs[1:], points=True)


# -- RGB and float slides: read by region like grey integer ones ---------------------------------------------
def _colour(h=300, w=420, grey=False):
    """An RGB uint8 image (h, w, 3): channels distinct, or all equal (``grey``: grey saved as RGB)."""
    rgb = np.stack([(_ramp(h, w, seed=s) // 20).astype(np.uint8) for s in range(3)], axis=-1)
    return np.repeat(rgb[..., :1], 3, axis=-1) if grey else rgb


_RGB_LAYOUTS = {  # name: (image, tifffile.imwrite options, --channel)
    "grey-as-rgb": (lambda: _colour(grey=True), dict(tile=(64, 64), compression="zlib"), None),
    "rgb-channel": (_colour, dict(tile=(64, 64), compression="zlib"), 1),
    "rgb-planar": (_colour, dict(tile=(64, 64), planarconfig="separate"), 2),
    "rgb-strips": (_colour, dict(rowsperstrip=16, compression="zlib"), 0),
    "rgb-contiguous": (_colour, dict(), 2),
    "rgb-planar-contiguous": (_colour, dict(planarconfig="separate"), 1),
    "float": (lambda: _ramp().astype(np.float32) / 7.3, dict(tile=(64, 64), compression="zlib"), None),
    "float-contiguous": (lambda: _ramp().astype(np.float32) / 7.3, dict(), None),
}


@pytest.mark.parametrize("layout", list(_RGB_LAYOUTS))
def test_rgb_and_float_slides_are_read_by_region_as_read_whole(tmp_path, small_lazy, layout):
    """A large RGB (colour samples, contiguous or planar) or float TIFF is read by region, each region
    the same region of the plane :func:`read_image` gives (the channel asked for; an RGB whose channels
    are equal as grey), not read whole."""
    import tifffile

    from cellxfer.imageio import read_image

    make, options, channel = _RGB_LAYOUTS[layout]
    path = tmp_path / f"{layout}.tif"
    img = make()
    if options.get("planarconfig") == "separate":  # stored as 3 planes: given as (3, Y, X)
        img = np.moveaxis(img, -1, 0)
    tifffile.imwrite(path, img, photometric="rgb" if "rgb" in layout else "minisblack", **options)
    whole = read_image(path, channel=channel)
    im = lazy.open_image(path, channel=channel)
    assert lazy.is_lazy(im) and im.shape == whole.shape == (300, 420) and im.dtype == whole.dtype
    assert np.array_equal(im[37:201, 50:333], whole[37:201, 50:333])
    assert np.array_equal(im[250:999, 400:], whole[250:, 400:])
    assert np.array_equal(lazy.strided_sample(im, 3), whole[::3, ::3])
    assert np.array_equal(np.asarray(im), whole)
    import pickle  # a Dask worker reopens it by path, the same channel

    assert np.array_equal(pickle.loads(pickle.dumps(im))[10:99, 7:300], whole[10:99, 7:300])


def test_a_colour_or_non_finite_slide_read_by_region_fails_as_read_whole(tmp_path, small_lazy):
    """Read by region, an RGB slide of distinct channels without --channel, or with one it has not, and a
    float slide with a NaN fail with the line the whole read gives (the whole image's shape), not a
    region's plane or a count of NaN."""
    import tifffile

    from cellxfer.errors import InputError
    from cellxfer.imageio import read_image

    tifffile.imwrite(tmp_path / "rgb.tif", _colour(), photometric="rgb", tile=(64, 64))
    bad = _ramp().astype(np.float32)
    bad[200, 17] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad, tile=(64, 64))
    for name, channel in (("rgb.tif", None), ("rgb.tif", 3)):
        with pytest.raises(InputError) as whole:
            read_image(tmp_path / name, channel=channel)
        with pytest.raises(InputError) as by_region:
            im = lazy.open_image(tmp_path / name, channel=channel)
            assert lazy.is_lazy(im)
            im[0:64, 0:64]
        assert str(by_region.value) == str(whole.value)
    assert "3 channels (shape 3x300x420" in str(whole.value) or "out of range" in str(whole.value)
    im = lazy.open_image(tmp_path / "nan.tif")
    assert lazy.is_lazy(im) and np.array_equal(im[0:190, :], bad[0:190, :])  # the rows without it read
    with pytest.raises(InputError, match=r"nan.tif: image has 1 non-finite pixels \(NaN or infinite\)"):
        lazy.strided_sample(im, 2)


def test_rgb_and_float_slides_count_by_region_as_read_whole(tmp_path, monkeypatch):
    """`count` of a small RGB slide (grey saved as RGB; --channel of a colour one) and of a float slide
    gives the same counts read by region as read whole."""
    pytest.importorskip("torch")
    import tifffile

    from cellxfer.classical import build_log, log_options
    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.model import save_counter
    from test_scale import disks

    field = disks(7.0, size=600, seed=3)[0]
    field = field / field.max() * 250
    noise = np.random.default_rng(1).integers(0, 255, field.shape)
    images = {"grey.tif": (np.repeat(field[..., None], 3, -1).astype(np.uint8), None),
              "colour.tif": (np.stack([noise, field, noise[::-1]], -1).astype(np.uint8), 1),
              "float.tif": (field.astype(np.float32) / 255, None)}
    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.15), "tile": 256})
    model = save_counter(tmp_path / "log.safetensors", build_log(meta), meta)
    counts = {}
    for name, (img, channel) in images.items():
        tifffile.imwrite(tmp_path / name, img, photometric="rgb" if img.ndim == 3 else "minisblack", tile=(64, 64))
        for pixels in (10**9, 1000):  # read whole / read by region
            monkeypatch.setattr(lazy, "LAZY_PIXELS", pixels)
            assert lazy.is_lazy(lazy.open_image(tmp_path / name, channel=channel)) == (pixels == 1000)
            res = run_count(CountConfig(paths=(str(tmp_path / name),), model=model, engine="torch", channel=channel,
                                        out=tmp_path / f"{name}-{pixels}.csv"))
            assert not res.failed, res.failed
            counts[name, pixels] = list(res.counts.values())[0]
        assert counts[name, 10**9] > 20 and counts[name, 1000] == counts[name, 10**9], name


def test_a_large_rgb_slide_is_counted_by_region_in_a_fraction_of_its_size(tmp_path):
    """An 8192 x 8192 RGB slide (grey saved as RGB: 192 MB of samples, a 64 MB grey plane; written tile by
    tile) is opened by region, planned and counted part by part: what Python allocates at the peak
    (tracemalloc: numpy's arrays, the decoded tiles; about 1.4 x ``BAND_BYTES``, for the bands of the
    normalisation sample) stays below the grey plane alone, where reading it whole held all 192 MB and a
    grey copy."""
    import tracemalloc

    import tifffile

    from cellxfer.count.parts import count_plan, plan_image

    side, tile = 8192, 256
    rgb = np.repeat((_ramp(tile, tile) // 20).astype(np.uint8)[..., None], 3, axis=-1)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, (rgb for _ in range((side // tile) ** 2)), shape=(side, side, 3), dtype=np.uint8,
                     photometric="rgb", tile=(tile, tile))
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16})

    def cheap(batch):  # a density "model": the first channel, scaled (what is read is what is counted)
        return np.asarray(batch)[:, :1] * 1e-3

    lazy.open_image(path)  # the modules it imports are not the slide's memory
    tracemalloc.start()
    try:
        image = lazy.open_image(path)
        res = count_plan(cheap, plan_image(image, meta), batch_size=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lazy.is_lazy(image) and image.shape == (side, side) and image.pixel_bytes == 3 and res.count > 0
    assert peak < side * side, f"{peak / 2**20:.0f} MB at the peak"
