"""A density map read blob by blob (:mod:`cellxfer.density.blobs`): the rule, where it travels (the
counter's metadata) and where it applies (every count of a model that carries it, maps of fine blocks)."""

from __future__ import annotations

import numpy as np
import pytest

from cellxfer.count.parts import DensityMap
from cellxfer.counter.model import CounterMeta
from cellxfer.density.blobs import BlobRule, find_blobs


def _map() -> np.ndarray:
    m = np.zeros((40, 40))
    m[5:8, 5:8] = 0.9 / 9  # a nucleus the model nearly fully believes: one
    m[5:8, 20:23] = 2.2 / 9  # touching nuclei, one blob: by its mass
    m[25:28, 25:28] = 0.4 / 9  # a dim nucleus the model half-believes: one
    m[30:32, 5:7] = 0.1 / 4  # a faint speck: nothing
    m[35:, 30:] += 0.001  # thin mass below the blob level: nothing
    return m


def test_the_rule_counts_each_blob_once_and_touching_ones_by_mass():
    m = _map()
    assert np.sort(find_blobs(m, 1).mass) == pytest.approx([0.1, 0.4, 0.9, 2.2])
    rule = BlobRule(level=0.0015, lo=0.25, hi=1.0)
    assert rule.count(DensityMap(m, 1)) == pytest.approx(1 + 2.2 + 1)
    assert m.sum() == pytest.approx(3.6 + 50 * 0.001)  # the sum says 3.65
    assert rule.of_masses([0.1, 0.25, 0.99, 1.0, 3.5]) == pytest.approx(2 + 1.0 + 3.5)


def test_a_coarse_map_is_not_read_by_blobs():
    """A slide's map (blocks over MAX_BLOCK pixels) merges neighbouring nuclei: its count is its sum."""
    assert BlobRule().count(DensityMap(_map(), 4)) is None
    assert BlobRule().count(None) is None
    # a map of 2x2 blocks is cut at level * 4 per block: the same blobs as at full resolution
    full = _map()
    coarse = full.reshape(20, 2, 20, 2).sum(axis=(1, 3))
    assert BlobRule().count(DensityMap(coarse, 2)) == pytest.approx(BlobRule().count(DensityMap(full, 1)))


@pytest.mark.parametrize("text,why", [("0.002:0.3", "LEVEL:LO:HI"), ("a:b:c", "LEVEL:LO:HI"),
                                      ("0.002:1:0.5", "lo < hi"), ("0:0.2:1", "level > 0")])
def test_a_bad_rule_is_refused_with_its_fix(text, why):
    with pytest.raises(ValueError, match=why):
        BlobRule.parse(text)


def test_the_rule_travels_in_the_counter_metadata():
    meta = CounterMeta(arch="density", output="density", blobs=BlobRule(0.003, 0.3, 1.2))
    back = CounterMeta.from_json(meta.to_json())
    assert back == meta and isinstance(back.blobs, BlobRule)
    old = CounterMeta.from_dict({"arch": "density", "output": "density"})  # written before the rule existed
    assert old.blobs is None


def _blur_runner(batch):
    """A density "model": each spot of the field becomes a blob of mass 0.02-0.97 (its brightness)."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(t[:1], (0, 2.0, 2.0), truncate=3.0) for t in batch]) * 0.01


def _field():
    rng = np.random.default_rng(5)
    img = np.zeros((600, 700), np.float32)
    ys, xs = np.mgrid[10:600:40, 10:700:40].reshape(2, -1)
    img[ys, xs] = rng.uniform(5, 100, len(ys))  # bright and dim spots apart: blobs of mass over and under 1
    return img


def test_a_model_with_a_rule_counts_by_it_in_parts_of_any_size():
    from cellxfer.count.parts import count_plan, plan_image

    img, opts = _field(), {"tile": 128, "margin": 16}
    plain = CounterMeta(arch="density", window=64, output="density", arch_options=opts)
    ruled = CounterMeta(arch="density", window=64, output="density", arch_options=opts, blobs=BlobRule())
    summed = count_plan(_blur_runner, plan_image(img, plain), points=True)
    assert summed.count == pytest.approx(float(summed.density_map.counts.sum()), rel=1e-9)
    one = count_plan(_blur_runner, plan_image(img, ruled), points=True)
    assert one.count == pytest.approx(BlobRule().count(one.density_map))
    assert one.count > summed.count + 5  # the dim spots' blobs count one each, not by their small mass
    assert len(one.points) == round(one.count) and len(summed.points) == round(summed.count)  # points follow
    assert len(one.regions) > 4 and one.region_counts.sum() == pytest.approx(one.count)  # the overlay's numbers add up
    assert not np.allclose(one.region_counts, summed.region_counts)
    for part_tiles in (1, 9):
        got = count_plan(_blur_runner, plan_image(img, ruled, part_tiles=part_tiles), batch_size=5, points=True)
        assert got.count == pytest.approx(one.count, rel=1e-9)
        assert np.array_equal(got.points, one.points)
        assert np.allclose(got.region_counts, one.region_counts)


def test_each_blob_counts_in_the_region_holding_its_centre():
    m = np.zeros((20, 30))
    m[2:5, 2:5] = 0.5 / 9  # centre (3.5, 3.5): region 0
    m[2:5, 14:17] = 2.0 / 9  # centre (3.5, 15.5): region 1, by its mass
    m[12:14, 8:12] = 0.8 / 8  # straddles regions 2 and 3; centre (13, 10): region 3
    regions = [(0, 0, 10, 15), (0, 15, 10, 15), (10, 0, 10, 10), (10, 10, 10, 20)]
    rule = BlobRule(level=0.002)
    got = rule.region_counts(DensityMap(m, 1), regions)
    assert got == pytest.approx([1, 2.0, 0, 1]) and got.sum() == pytest.approx(rule.count(DensityMap(m, 1)))
    coarse = DensityMap(m.reshape(10, 2, 15, 2).sum(axis=(1, 3)), 2)  # centres in model-grid pixels at any block
    assert rule.region_counts(coarse, regions) == pytest.approx([1, 2.0, 0, 1])
    assert rule.region_counts(DensityMap(m, 4), regions) is None


def test_count_and_its_density_map_file_say_the_rule_count(tmp_path, capsys):
    """`count --density-map X.tif` of a model with a rule: the CSV's count is the rule's, the TIFF holds the
    map (summing to its total) and says both."""
    pytest.importorskip("torch")
    import json

    import tifffile

    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import save_counter
    from cli_inproc import run_cli

    img = _field()
    tifffile.imwrite(tmp_path / "field.tif", (img * 100).astype(np.uint16))
    # the LoG counter gives every spot a blob of mass 1; a rule whose single nuclei weigh 1.5-3 counts none of them
    rule = BlobRule(lo=1.5, hi=3.0)
    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.0, 0.05), "tile": 256},
                       blobs=rule)
    model = save_counter(tmp_path / "log.safetensors", build_log(meta), meta)
    args = ["count", tmp_path / "field.tif", "-m", model, "--engine", "torch", "--diameter", "off"]
    r = run_cli([*args, "-o", tmp_path / "c.csv", "--density-map", tmp_path / "map.tif"], capsys)
    assert r.returncode == 0, r.stderr
    count = float(open(tmp_path / "c.csv").read().splitlines()[1].split(",")[1])
    with tifffile.TiffFile(tmp_path / "map.tif") as tf:
        counts, desc = tf.asarray(), json.loads(tf.pages[0].description)
    assert desc["count"] == pytest.approx(count, abs=1e-3)
    assert desc["total"] == pytest.approx(float(counts.sum()), rel=1e-5)
    assert desc["total"] == pytest.approx(270, abs=1) and count == 0  # the rule's count, not the map's sum
    assert count == pytest.approx(rule.count(DensityMap(counts.astype(np.float64), desc["block"])), abs=1e-3)


def test_the_map_labels_its_blobs_once_per_level_and_forgets_them_when_it_grows(monkeypatch):
    """The count's rule and the trust flag read the same blobs: one labelling per map (it is ~5% of a count)."""
    from cellxfer.count.qc import partial_share
    from cellxfer.density import blobs

    calls = []
    real = blobs.find_blobs
    monkeypatch.setattr(blobs, "find_blobs", lambda *a, **k: calls.append(a[2:]) or real(*a, **k))
    dmap = DensityMap(_map(), 1)
    BlobRule().count(dmap)
    partial_share(dmap)
    assert len(calls) == 1
    BlobRule(level=0.003).count(dmap)
    assert len(calls) == 2
    before = BlobRule().count(dmap)
    dmap.add(np.full((3, 3), 0.6 / 9), 12, 12)  # a new blob: the labels are made again
    assert BlobRule().count(dmap) == pytest.approx(before + 1) and len(calls) == 3


def test_a_model_from_a_newer_cellxfer_is_refused_with_one_line(tmp_path, capsys):
    """A field this version does not know (as `blobs` was to the version before it) would be dropped and the
    model would count otherwise: one line naming the file and the fix, exit 2."""
    pytest.importorskip("torch")
    import json

    import tifffile
    from safetensors.torch import load_file, save_file

    from cellxfer.classical import build_log, log_options
    from cellxfer.counter.model import save_counter
    from cli_inproc import run_cli

    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.0, 0.05), "tile": 256})
    model = save_counter(tmp_path / "log.safetensors", build_log(meta), meta)
    fields = json.loads(CounterMeta.to_json(meta)) | {"version": "9.0.0", "read_rule": {"x": 1}}
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(model), newer, metadata={"cellxfer": json.dumps(fields)})
    tifffile.imwrite(tmp_path / "a.tif", (_field() * 100).astype(np.uint16))
    r = run_cli(["count", tmp_path / "a.tif", "-m", newer, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(newer) in r.stderr and "read_rule" in r.stderr and "upgrade cellxfer" in r.stderr
    assert not (tmp_path / "c.csv").exists()


def test_a_map_too_coarse_is_read_tile_by_tile_as_the_whole_map_would_be():
    """A slide's map (blocks over 3 px) is read by the rule tile by tile: with a model whose receptive field
    lies within the tiles' margin, exactly what the whole map at blocks of 3 px reads; the same in parts and
    spans of any size; region counts add up (the sum would say otherwise)."""
    from cellxfer.count.parts import count_parts, count_plan, merge, plan_image, spans_of

    rng = np.random.default_rng(7)
    img = np.zeros((1700, 1650), np.float32)  # a map of blocks of 4 px: too coarse to be read whole
    ys, xs = np.mgrid[12:1690:34, 12:1640:34].reshape(2, -1)
    ys, xs = ys + rng.integers(-5, 6, len(ys)), xs + rng.integers(-5, 6, len(xs))
    img[ys, xs] = rng.uniform(5, 100, len(ys))
    rule = BlobRule()
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"tile": 128, "margin": 16}, blobs=rule)
    plan = plan_image(img, meta)
    got = count_plan(_blur_runner, plan, points=True)
    assert got.density_map.block == 4 and rule.count(got.density_map) is None
    fine = count_plan(_blur_runner, plan, map_block=3)  # the whole map at blocks of 3 px, read whole
    assert got.count == pytest.approx(rule.count(fine.density_map), rel=1e-9)
    assert abs(got.count - float(got.density_map.counts.sum())) > 20
    assert got.region_counts.sum() == pytest.approx(got.count) and len(got.points) == round(got.count)
    for part_tiles in (1, 7):
        again = count_plan(_blur_runner, plan_image(img, meta, part_tiles=part_tiles), batch_size=5)
        assert again.count == pytest.approx(got.count, rel=1e-12)
    spans = spans_of(plan, 1)
    assert len(spans) > 1
    outs = [count_parts(_blur_runner, plan, s, 5) for s in spans]
    assert merge(plan, outs[::-1]).count == pytest.approx(got.count, rel=1e-12)
