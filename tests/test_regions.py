"""Spatial split of one field: parts never overlap (margin included), the margin is the generator's
receptive field, the pairs folders hold exact crops, and translate -> count runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_inproc import run_cli as cli
from scipy import ndimage as ndi

from cellxfer.translate.regions import Rect, SpatialSplit, corner_split, receptive_field, write_split_pairs


def _masks(split: SpatialSplit) -> dict[str, np.ndarray]:
    out = {}
    for name, rects in split.parts.items():
        m = np.zeros(split.shape, bool)
        for r in rects:
            m[r.y0 : r.y1, r.x0 : r.x1] = True
        out[name] = m
    return out


@pytest.mark.parametrize("shape,margin,side", [((1024, 1024), 126, 480), ((1024, 1024), 254, 320), ((300, 500), 7, 100),
                                               ((64, 64), 0, 20), ((1024, 768), 126, 400)])
def test_corner_split_parts_never_overlap_including_the_margin(shape, margin, side):
    split = corner_split(shape, margin, side)
    masks = _masks(split)
    names = list(masks)
    assert all(m.any() for m in masks.values())
    # chessboard distance of every pixel to the nearest pixel of each part
    dist = {a: ndi.distance_transform_cdt(~masks[a], metric="chessboard") for a in names}
    for a in names:
        for b in names:
            if a != b:
                assert dist[a][masks[b]].min() > margin, (a, b)  # more than `margin` pixels from a
    if margin:  # and the margin is tight: some two parts are exactly `margin` pixels apart
        assert min(dist[a][masks[b]].min() for a in names for b in names if a != b) == margin + 1


def test_split_refuses_parts_closer_than_the_margin():
    with pytest.raises(ValueError, match="px apart"):
        SpatialSplit((100, 100), 10, {"train": (Rect(0, 0, 100, 50),), "test": (Rect(0, 59, 100, 100),)})
    SpatialSplit((100, 100), 10, {"train": (Rect(0, 0, 100, 50),), "test": (Rect(0, 60, 100, 100),)})
    with pytest.raises(ValueError, match="outside"):
        SpatialSplit((100, 100), 0, {"train": (Rect(0, 0, 101, 50),)})


@pytest.mark.parametrize("num_downs", [5, 6])
def test_receptive_field_is_what_autograd_finds(num_downs):
    torch = pytest.importorskip("torch")
    from cellxfer.translator.model import TranslatorMeta, build_generator

    torch.manual_seed(0)
    g = build_generator(TranslatorMeta(ngf=2, num_downs=num_downs, norm="batch", dropout=False)).eval()
    for m in g.modules():  # positive weights and inputs: no ReLU hides a dependence
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.uniform_(m.weight, 0.001, 0.01)
    n = 2 ** num_downs * 12
    x = (torch.rand(1, 1, n, n) + 1).requires_grad_(True)
    g(x)[0, 0, n // 2, n // 2].backward()
    ys, xs = np.nonzero(x.grad[0, 0].numpy())
    assert ys.max() - ys.min() + 1 == receptive_field(num_downs) == xs.max() - xs.min() + 1
    assert receptive_field(5) == 126 and receptive_field(8) == 1022


def test_split_field_writes_exact_crops(tmp_path, capsys):
    import tifffile

    from cellxfer.imageio import read_image

    rng = np.random.default_rng(0)
    a, b, t = (rng.integers(0, 60000, (200, 240), dtype=np.uint16) for _ in range(3))
    for name, img in (("z0", a), ("z1", b), ("dapi", t)):
        tifffile.imwrite(tmp_path / f"{name}.tif", img)
    r = cli(["split-field", tmp_path / "z0.tif", tmp_path / "z1.tif", "--target", tmp_path / "dapi.tif", "--out", tmp_path / "s",
             "--test-side", "80", "--margin", "10"], capsys)
    assert r.returncode == 0, r.stderr
    split = corner_split((200, 240), 10, 80)
    for part, (rect,) in split.parts.items():
        assert np.array_equal(read_image(tmp_path / "s" / "z1" / part / "source" / "field_0.tif"), rect.crop(b))
        assert np.array_equal(read_image(tmp_path / "s" / "z0" / part / "target" / "field_0.tif"), rect.crop(t))
    tifffile.imwrite(tmp_path / "small.tif", t[:100])
    r = cli(["split-field", tmp_path / "z0.tif", "--target", tmp_path / "small.tif", "--out", tmp_path / "s2",
             "--test-side", "80", "--margin", "10"], capsys)
    assert r.returncode != 0 and "small.tif" in r.stderr and "Traceback" not in r.stderr
    r = cli(["split-field", tmp_path / "z0.tif", "--out", tmp_path / "s3", "--test-side", "190"], capsys)
    assert r.returncode != 0 and "--test-side" in r.stderr
    with pytest.raises(Exception):
        write_split_pairs(split, [tmp_path / "missing.tif"], None, tmp_path / "s4")
    # a run folder like every other: the same split again is fine, another one refused unless --overwrite
    base = ["split-field", tmp_path / "z0.tif", "--target", tmp_path / "dapi.tif", "--out", tmp_path / "one", "--margin", "10"]
    assert cli(base + ["--test-side", "80"], capsys).returncode == 0
    assert cli(base + ["--test-side", "80"], capsys).returncode == 0
    r = cli(base + ["--test-side", "60"], capsys)
    assert r.returncode == 2 and "test_side 80 -> 60" in r.stderr and "--overwrite" in r.stderr
    assert cli(base + ["--test-side", "60", "--overwrite"], capsys).returncode == 0
    m = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert m["stage"] == "split-field" and m["complete"] and m["config"] == {"test_side": 60, "margin": 10}
    assert read_image(tmp_path / "one" / "test" / "source" / "field_0.tif").shape == (60, 60)


def test_translate_then_count_on_a_tiny_random_translator(tmp_path, capsys):
    """Counting nuclei in phase images = ``translate`` (phase -> DAPI folder) then ``count`` on that folder."""
    torch = pytest.importorskip("torch")
    import csv

    import tifffile

    from cellxfer.dataset import parse_points
    from cellxfer.imageio import read_image
    from cellxfer.translator.model import TranslatorMeta, build_generator, save_translator

    torch.manual_seed(0)
    save_translator(tmp_path / "t" / "translator.safetensors", build_generator(TranslatorMeta(ngf=4, num_downs=5, size=32)).eval(),
                    TranslatorMeta(ngf=4, num_downs=5, size=32))
    rng = np.random.default_rng(0)
    (tmp_path / "phase").mkdir()
    for i, shape in enumerate([(96, 128), (70, 50)]):
        tifffile.imwrite(tmp_path / "phase" / f"p{i}.tif", rng.integers(0, 60000, shape, dtype=np.uint16))
    r = cli(["translate", tmp_path / "phase", "-m", tmp_path / "t", "-o", tmp_path / "dapi"], capsys)
    assert r.returncode == 0, r.stderr
    r = cli(["count", tmp_path / "dapi", "--out", tmp_path / "c.csv", "--points", tmp_path / "pts", "--engine", "torch"], capsys)
    assert r.returncode == 0, r.stderr
    rows = {row["file"]: row for row in csv.DictReader(open(tmp_path / "c.csv"))}
    for i, shape in enumerate([(96, 128), (70, 50)]):
        pred = tmp_path / "dapi" / f"p{i}.tif"
        assert read_image(pred).shape == shape and read_image(pred).dtype == np.uint16
        row = rows[str(pred)]
        assert row["status"] == "ok" and np.isfinite(float(row["count"]))
        pts = parse_points((tmp_path / "pts" / f"p{i}.csv").read_text(), "pts")
        assert ((pts >= 0) & (pts <= [shape[1], shape[0]])).all()


def test_dihedral_augmentation_draws_all_8_symmetries_and_flip_draws_are_unchanged():
    from cellxfer.translate.data import random_crops

    a = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)  # crop = the whole array: only the symmetry varies
    sym = [np.rot90(b, k, axes=(1, 2)) for b in (a, a[:, :, ::-1]) for k in range(4)]
    got = random_crops([a], 4, 200, np.random.default_rng(0), augment="dihedral")
    seen = {next(i for i, s in enumerate(sym) if np.array_equal(c, s)) for c in got}  # StopIteration if not a symmetry
    assert seen == set(range(8))
    flip = random_crops([a], 4, 50, np.random.default_rng(1))
    assert all(np.array_equal(c, a) or np.array_equal(c, a[:, :, ::-1]) for c in flip)
    assert np.array_equal(flip, random_crops([a], 4, 50, np.random.default_rng(1), augment="flip"))
