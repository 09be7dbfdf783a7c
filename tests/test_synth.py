"""Syn-HC: statistics, the overlap rule, masks vs points, determinism, resume/refuse/overwrite."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellxfer.dataset import CellDataset, centre_mask
from cellxfer.errors import InputError
from cellxfer.imageio import read_image
from cellxfer.manifest import read_manifest
from cellxfer.synth import synhc
from cellxfer.options import make_config
from cellxfer.synth.base import image_rng, run_synth
from cellxfer.synth.config import SynHCConfig
from cellxfer.stages.synth import SYNHC


def clamped_normal_mean(mu: float, sd: float, hi: float) -> float:
    """E[clip(round(N(mu, sd)), 0, hi)], summed over the integers (exact up to truncation)."""
    k = np.arange(0, hi + 1)
    cdf = lambda x: 0.5 * (1 + np.vectorize(math.erf)((x - mu) / (sd * math.sqrt(2))))
    p = cdf(k + 0.5) - cdf(k - 0.5)
    p[0] = cdf(0.5)
    p[-1] = 1 - cdf(hi - 0.5)
    return float((k * p).sum())


def test_count_mean_matches_the_clamped_normal_law():
    cfg = SynHCConfig(size=256)
    counts = [len(synhc.render(cfg, None, image_rng(7, i))[1]) for i in range(300)]
    expected = clamped_normal_mean(cfg.count_mean, cfg.count_std, cfg.max_cells)
    se = cfg.count_std / math.sqrt(len(counts))
    assert abs(np.mean(counts) - expected) < 4 * se, (np.mean(counts), expected)
    assert min(counts) >= 0 and max(counts) <= cfg.max_cells


def test_fixed_count_is_exact_when_cells_fit():
    cfg = SynHCConfig(size=128, count_mean=40, count_std=0, spread=0.3)
    assert {len(synhc.render(cfg, None, image_rng(1, i))[1]) for i in range(20)} == {40}


def test_cluster_count_and_semi_axes_follow_the_config():
    cfg = SynHCConfig(cell_size=15)
    assert cfg.semi_axis_range() == (6, 9)  # integers in [0.4, 0.6) x 15
    _, cells = synhc.render_cells(cfg, None, image_rng(0, 3))
    assert set(np.unique(cells[:, 2:4])) <= {6.0, 7.0, 8.0}


def full_image_stencil(cell, size):
    """One cell rasterised on the whole image with the module's own stencil (the definition)."""
    x, y, a, b, t, _ = cell
    r = 9
    st = synhc.ellipse_stencils(np.array([x]), np.array([y]), np.array([a], np.float32), np.array([b], np.float32), np.array([t]), r)[0]
    full = np.zeros((size + 2 * r + 2, size + 2 * r + 2), bool)
    r0, c0 = int(math.floor(y)) + 1, int(math.floor(x)) + 1
    full[r0 : r0 + 2 * r + 1, c0 : c0 + 2 * r + 1] = st
    return full


@pytest.mark.parametrize("index", range(4))
def test_no_cell_overlaps_earlier_cells_by_more_than_the_limit(index):
    cfg = SynHCConfig(size=128, count_mean=150, count_std=0)  # crowded: many rejections
    _, cells = synhc.render_cells(cfg, None, image_rng(11, index))
    union = None
    for cell in cells:
        m = full_image_stencil(cell, cfg.size)
        if union is not None:
            assert np.count_nonzero(m & union) <= cfg.overlap * np.count_nonzero(m)
            union |= m
        else:
            union = m.copy()


def test_stencil_matches_the_ellipse_equation():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(20, 40, 50), rng.uniform(20, 40, 50)
    a, b = rng.integers(6, 9, 50).astype(np.float32), rng.integers(6, 9, 50).astype(np.float32)
    t = rng.uniform(0, 2 * np.pi, 50)
    st = synhc.ellipse_stencils(x, y, a, b, t, 9)
    for k in range(50):
        rr, cc = np.mgrid[-9:10, -9:10]
        px = math.floor(x[k]) + cc + 0.5 - x[k]
        py = math.floor(y[k]) + rr + 0.5 - y[k]
        u = px * math.cos(t[k]) + py * math.sin(t[k])
        v = py * math.cos(t[k]) - px * math.sin(t[k])
        naive = u**2 / a[k] ** 2 + v**2 / b[k] ** 2 <= 1
        assert np.count_nonzero(naive != st[k]) <= 1  # float32 vs float64 on the boundary
        assert abs(st[k].sum() - math.pi * a[k] * b[k]) < 0.15 * math.pi * a[k] * b[k]


def test_run_writes_a_dataset_whose_masks_agree_with_points(tmp_path):
    res = run_synth(SYNHC, SynHCConfig(size=96, count_mean=30, count_std=10), 6, tmp_path / "ds", seed=3, workers=1)
    ds = CellDataset(tmp_path / "ds")
    assert ds.ids == [f"{i:06d}" for i in range(6)] and res.written == 6
    assert ds.stored_counts() == ds.counts() == res.counts
    for sample in ds:
        assert sample.image.dtype == np.uint8 and sample.image.shape == (96, 96)
        mask = read_image(tmp_path / "ds" / "masks" / f"{sample.id}.tif")
        assert np.array_equal(mask, centre_mask(sample.points, (96, 96)))
        assert np.count_nonzero(mask) == sample.count
    man = read_manifest(tmp_path / "ds")
    assert man["stage"] == "synth" and man["seed"] == 3 and man["complete"] is True
    assert man["config"]["size"] == 96 and "numpy" in man["versions"]


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path):
    cfg = SynHCConfig(size=64, count_mean=20)
    run_synth(SYNHC, cfg, 12, tmp_path / "a", seed=5, workers=1)
    run_synth(SYNHC, cfg, 12, tmp_path / "b", seed=5, workers=2)
    run_synth(SYNHC, cfg, 12, tmp_path / "c", seed=6, workers=1)
    for i in range(12):
        name = f"images/{i:06d}.tif"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert any((tmp_path / "a" / f"images/{i:06d}.tif").read_bytes() != (tmp_path / "c" / f"images/{i:06d}.tif").read_bytes() for i in range(12))


def test_rerun_continues_an_interrupted_run(tmp_path):
    cfg = SynHCConfig(size=64, count_mean=20)
    out = tmp_path / "ds"
    run_synth(SYNHC, cfg, 10, tmp_path / "full", seed=1, workers=1)
    run_synth(SYNHC, cfg, 10, out, seed=1, workers=1)
    for i in (2, 7):  # an interrupted run: images missing, a temporary left behind
        (out / "images" / f"{i:06d}.tif").unlink()
    (out / "images" / ".000002.tif.abc.cellxfer-tmp").write_bytes(b"partial")
    res = run_synth(SYNHC, cfg, 10, out, seed=1, workers=1)
    assert (res.written, res.skipped) == (2, 8)
    assert not list(out.rglob("*cellxfer-tmp"))
    for i in range(10):
        name = f"images/{i:06d}.tif"
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes()


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    cfg = SynHCConfig(size=64, count_mean=20)
    out = tmp_path / "ds"
    run_synth(SYNHC, cfg, 4, out, seed=1, workers=1)
    with pytest.raises(InputError, match="other settings.*--overwrite"):
        run_synth(SYNHC, cfg, 4, out, seed=2, workers=1)
    with pytest.raises(InputError, match="cell_size"):
        run_synth(SYNHC, SynHCConfig(size=64, count_mean=20, cell_size=10), 4, out, seed=1, workers=1)
    res = run_synth(SYNHC, cfg, 3, out, seed=2, workers=1, overwrite=True)
    assert res.written == 3 and len(CellDataset(out)) == 3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run_synth(SYNHC, cfg, 2, tmp_path / "other", workers=1)


def test_layout_from_real_annotations(tmp_path, idcia_dir):
    cfg = make_config(SynHCConfig, {"layout_from": str(idcia_dir), "size": "256"}, "synthesizer 'synhc'")
    res = run_synth(SYNHC, cfg, 8, tmp_path / "lay", seed=0, workers=1)
    assert sum(res.counts.values()) > 8 * 10  # real layouts are dense: ~137 cells per 600x800 image
    man = read_manifest(tmp_path / "lay")
    assert man["inputs"][0]["files"] == 95 * 2 + 2  # images + tables + counts.csv + README
    for sample in CellDataset(tmp_path / "lay"):
        assert ((sample.points >= 0) & (sample.points < 256)).all()


def test_make_config_parses_and_rejects():
    cfg = make_config(SynHCConfig, {"clusters": "2:4", "cell-size": "10", "layout_from": "none"}, "synthesizer 'synhc'")
    assert cfg.clusters == (2, 4) and cfg.cell_size == 10.0 and cfg.layout_from is None
    with pytest.raises(InputError, match="not a parameter of synthesizer 'synhc'"):
        make_config(SynHCConfig, {"sigma": "2"}, "synthesizer 'synhc'")
    with pytest.raises(InputError, match="--clusters '3'"):
        make_config(SynHCConfig, {"clusters": "3"}, "synthesizer 'synhc'")
    with pytest.raises(InputError, match="LOW <= HIGH"):
        make_config(SynHCConfig, {"clusters": "5:2"}, "synthesizer 'synhc'")


def test_a_run_written_before_a_new_config_field_resumes_at_its_default(tmp_path):
    """A synth folder whose manifest predates a config field (here: layout_from) resumes when the new
    field is left at its default, and is refused when it is not."""
    import json

    from cellxfer.errors import InputError
    from cellxfer.stages.synth import SYNHC
    from cellxfer.synth.base import run_synth

    out = tmp_path / "syn"
    run_synth(SYNHC, SynHCConfig(size=32), 2, out, workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["config"]["layout_from"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run_synth(SYNHC, SynHCConfig(size=32), 3, out, workers=1).skipped == 2
    with pytest.raises(InputError, match="other settings"):
        run_synth(SYNHC, SynHCConfig(size=32, noise=9.0), 3, out, workers=1)
