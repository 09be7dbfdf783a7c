"""`synth --method nuclei`: config checks, determinism, labels (points = placed nuclei, overlap rule,
debris never labelled, daughter pairs), the diameter and centres of what is rendered (up to 80 px),
texture, saturation, pressed crowded fields, output bit depths, the command."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from cellxfer.dataset import CellDataset
from cellxfer.errors import InputError
from cellxfer.options import make_config
from cellxfer.stages.synth import NUCLEI
from cellxfer.synth import nuclei, synhc
from cellxfer.synth.base import image_rng, run_synth
from cellxfer.synth.nuclei_config import NucleiConfig
from cli_inproc import run_cli

#: the first 16 hex digits of the sha256 of NucleiConfig(size=96)'s render of image_rng(3, 1) (its bytes, then its
#: points' float64 bytes), as rendered before ``bright_fraction`` existed
PINNED_DEFAULT_RENDER = "6d7d510a7379b1b4"

# every source of variation off except the geometry: images whose pixels follow the shapes
QUIET = dict(
    diameter_jitter=0.0, texture=(0.0, 0.0), nucleoli=0.0, brightness_sd=0.0, dim_fraction=(0.0, 0.0),
    defocus_fraction=(0.0, 0.0), bodies=(0.0, 0.0), debris=(0.0, 0.0), illumination=(0.0, 0.0),
    background=(0.0, 0.0), blur=(0.0, 0.0), photons=(1e4, 1e4), read_noise=(0.0, 0.0), offset=(0.0, 0.0),
    gain=(1.0, 1.0), saturation=0.0, dtype="uint16", rim=(0.0, 0.0), irregularity=(0.0, 0.0),
)


# -- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    (dict(size=8), r"--size 8: must be in \[16, 8192\]"),
    (dict(diameter=(12.0, 8.0)), "--diameter 12:8: must be LOW:HIGH"),
    (dict(diameter=(1.0, 8.0)), r"--diameter 1:8: must be LOW:HIGH, each in \[2, 4096\]"),
    (dict(overlap=0.2), "--overlap 0.2: must be LOW:HIGH"),
    (dict(coverage=(0.1, 0.95)), r"--coverage 0.1:0.95: must be LOW:HIGH, each in \[0, 0.9\]"),
    (dict(photons=(0.0, 10.0)), r"--photons 0:10: must be LOW:HIGH, each in \(0, 10000000\]"),
    (dict(clustered=1.5), r"--clustered 1.5: must be in \[0, 1\]"),
    (dict(diameter_jitter=-0.1), "--diameter-jitter -0.1"),
    (dict(dtype="int8"), "--dtype int8: must be one of uint8, uint16, random"),
    (dict(max_cells=-1), "--max-cells -1"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        NucleiConfig(**bad)


def test_make_config_parses_ranges_and_names_the_synthesizer():
    cfg = make_config(NucleiConfig, {"diameter": "8:12", "size": "128", "dtype": "uint8"}, "synthesizer 'nuclei'")
    assert cfg.diameter == (8.0, 12.0) and cfg.size == 128 and cfg.dtype == "uint8"
    with pytest.raises(InputError, match="--cell-size is not a parameter of synthesizer 'nuclei'"):
        make_config(NucleiConfig, {"cell_size": 10.0}, "synthesizer 'nuclei'")
    with pytest.raises(InputError, match="synthesizer 'nuclei': --blur 3:1"):
        make_config(NucleiConfig, {"blur": "3:1"}, "synthesizer 'nuclei'")


# -- determinism --------------------------------------------------------------------------------------
def test_same_generator_state_gives_identical_output():
    cfg = NucleiConfig(size=96, diameter=(5.0, 20.0))
    for i in range(6):
        a, pa = nuclei.render(cfg, None, image_rng(3, i))
        b, pb = nuclei.render(cfg, None, image_rng(3, i))
        assert a.tobytes() == b.tobytes() and a.dtype == b.dtype and np.array_equal(pa, pb)
    c, _ = nuclei.render(cfg, None, image_rng(4, 0))
    assert c.tobytes() != nuclei.render(cfg, None, image_rng(3, 0))[0].tobytes()


def test_run_synth_gives_identical_bytes_whatever_the_workers(tmp_path):
    cfg = NucleiConfig(size=64, diameter=(5.0, 12.0))
    run_synth(NUCLEI, cfg, 6, tmp_path / "a", seed=2, workers=1)
    run_synth(NUCLEI, cfg, 6, tmp_path / "b", seed=2, workers=2)
    for i in range(6):
        for name in (f"images/{i:06d}.tif", f"points/{i:06d}.csv"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert CellDataset(tmp_path / "a").counts() == CellDataset(tmp_path / "b").counts()


# -- labels -------------------------------------------------------------------------------------------
def test_points_are_the_placed_nuclei_inside_the_image():
    cfg = NucleiConfig(size=128, diameter=(4.0, 30.0))
    for i in range(12):
        image, cells, draw = nuclei.render_cells(cfg, None, image_rng(5, i))
        points = nuclei.render(cfg, None, image_rng(5, i))[1]
        assert image.shape == (128, 128) and points.dtype == np.float64
        assert np.array_equal(points, cells.points)
        assert ((points >= 0) & (points < 128)).all()
        assert set(np.unique(cells.kind)) <= {nuclei.NUCLEUS, nuclei.BODY}
        assert len(points) <= draw.n_nuclei + 2 * draw.n_bodies  # a dividing cell: two daughters


def test_without_the_overlap_rule_every_drawn_nucleus_is_placed():
    cfg = NucleiConfig(size=128, overlap=(1.0, 1.0), bodies=(0.0, 0.0))
    for i in range(8):
        _, cells, draw = nuclei.render_cells(cfg, None, image_rng(6, i))
        assert len(cells) == draw.n_nuclei + draw.n_bodies
        expected = round(draw.coverage * 128 * 128 / (math.pi * draw.d**2 / 4))
        assert draw.n_nuclei == min(expected, cfg.max_cells)


def _stencil_in(occupied, cell: nuclei.Cells, pad: int):
    radius = int(math.ceil(cell.reach()[0])) + 1
    rho, m = nuclei.shape_geometry(cell, radius)
    r = math.floor(cell.y[0]) + pad - radius
    c = math.floor(cell.x[0]) + pad - radius
    return occupied[r : r + 2 * radius + 1, c : c + 2 * radius + 1], (rho <= m)[0]


@pytest.mark.parametrize("index", range(3))
def test_no_nucleus_covers_earlier_ones_by_more_than_the_overlap(index):
    cfg = NucleiConfig(size=128, coverage=(0.9, 0.9), clustered=1.0, overlap=(0.1, 0.1), diameter=(8.0, 14.0),
                       bodies=(0.0, 0.0))
    _, cells, draw = nuclei.render_cells(cfg, None, image_rng(7, index))
    assert len(cells) < draw.n_nuclei + draw.n_bodies  # crowded: some were dropped
    pad = int(math.ceil(nuclei.max_reach(cfg, draw.d))) + 2
    occupied = np.zeros((128 + 2 * pad,) * 2, bool)
    for k in range(len(cells)):
        window, stencil = _stencil_in(occupied, cells.take([k]), pad)
        assert np.count_nonzero(window & stencil) <= 0.1 * np.count_nonzero(stencil)
        window |= stencil


def test_plain_ellipses_match_the_synhc_stencil():
    rng = np.random.default_rng(0)
    n = 40
    x, y = rng.uniform(20, 40, n), rng.uniform(20, 40, n)
    a, b, t = rng.uniform(3, 9, n), rng.uniform(3, 9, n), rng.uniform(0, np.pi, n)
    ones = np.ones((n, nuclei.OUTLINE_SAMPLES), np.float32)
    cells = nuclei.Cells(x=x, y=y, a=a, b=b, theta=t, outline=ones, edge=np.ones(n), level=np.ones(n),
                         dome=np.zeros(n), rim=np.zeros(n), kind=np.zeros(n, int), layer=np.zeros(n, int))
    rho, m = nuclei.shape_geometry(cells, 10)
    ref = synhc.ellipse_stencils(x, y, a.astype(np.float32), b.astype(np.float32), t, 10)
    assert np.count_nonzero((rho <= m) != ref) <= n  # float rounding on the boundary only
    values = nuclei.shape_values(cells, rho, m)
    assert np.array_equal(values >= 0.5, rho <= m)  # flat, level 1: the ramp crosses 0.5 on the outline


def test_debris_changes_pixels_but_never_points():
    base = dict(QUIET, size=128, diameter=(8.0, 12.0))
    for i in range(4):
        clean, cells, _ = nuclei.render_cells(NucleiConfig(**base), None, image_rng(8, i))
        dirty, cells2, draw = nuclei.render_cells(NucleiConfig(**{**base, "debris": (2.0, 2.0)}), None, image_rng(8, i))
        assert np.array_equal(cells.points, cells2.points) and draw.debris == 2.0
        far = np.ones(clean.shape, bool)  # pixels no nucleus reaches
        yy, xx = np.mgrid[0:128, 0:128] + 0.5
        for x, y, r in zip(cells.x, cells.y, cells.reach()):
            far &= (xx - x) ** 2 + (yy - y) ** 2 > (r + 1) ** 2
        assert clean[far].max() == 0  # noise-free: nothing but nuclei without debris
        added = dirty.astype(float)[far].sum() / far.sum()
        assert added > 0.005 * 1e4  # debris light (0.05-0.3 x a nucleus) where no nucleus is


# -- what is rendered ---------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [10.0, 30.0])
def test_rendered_nuclei_have_the_configured_diameter(d):
    """Whole nuclei (components touching no border, holding one centre) of noise-free images, cut at
    a quarter of the centre brightness: their equivalent diameter is ``d`` within 15%."""
    cfg = NucleiConfig(**QUIET, diameter=(d, d), coverage=(0.1, 0.1), overlap=(0.0, 0.0))
    areas = []
    for i in range(3 if d < 20 else 10):
        image, cells, _ = nuclei.render_cells(cfg, None, image_rng(9, i))
        labels, n = ndimage.label(image > 0.25 * 1e4)
        border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
        hits = labels[np.floor(cells.y).astype(int), np.floor(cells.x).astype(int)]
        ids, per = np.unique(hits[hits > 0], return_counts=True)
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, ids)
        areas += [s for k, c, s in zip(ids, per, sizes) if c == 1 and k not in border]
    assert len(areas) >= 15
    measured = 2 * math.sqrt(np.mean(areas) / math.pi)
    assert abs(measured - d) < 0.15 * d, (measured, d)


def test_output_bit_depths():
    for dtype, want in (("uint8", np.uint8), ("uint16", np.uint16)):
        image, _ = nuclei.render(NucleiConfig(size=64, dtype=dtype, diameter=(5.0, 10.0)), None, image_rng(1, 0))
        assert image.dtype == want and image.max() > 0
    bright, _ = nuclei.render(NucleiConfig(size=64, dtype="uint16", photons=(5000.0, 5000.0), gain=(2.0, 2.0)), None, image_rng(1, 1))
    assert bright.max() > 255  # camera units, not rescaled
    kinds = {nuclei.render(NucleiConfig(size=32, diameter=(4.0, 8.0)), None, image_rng(2, i))[0].dtype for i in range(12)}
    assert kinds == {np.dtype(np.uint8), np.dtype(np.uint16)}


# -- the command --------------------------------------------------------------------------------------
def test_synth_command_with_method_nuclei(tmp_path, capsys):
    out = tmp_path / "nuc"
    code, stdout, _ = run_cli(["synth", "--method", "nuclei", "--n", "3", "--size", "64", "--workers", "1",
                               "--set", "diameter=6:8", "--set", "dtype=uint8", "--out", out], capsys)
    assert code == 0, stdout
    ds = CellDataset(out)
    assert ds.ids == ["000000", "000001", "000002"]
    assert all(s.image.shape == (64, 64) and s.image.dtype == np.uint8 for s in ds)
    code, stdout, stderr = run_cli(["synth", "--method", "nuclei", "--n", "1", "--cell-size", "9", "--out", tmp_path / "x"], capsys)
    message = (stdout + stderr).strip()
    assert code != 0 and "--cell-size is not a parameter of synthesizer 'nuclei'" in message
    assert len(message.splitlines()) == 1


def test_defocused_nuclei_can_be_drawn_as_negatives():
    """label_defocused=false: the same pixels, fewer points; every dropped point is a blurred nucleus."""
    from cellxfer.synth import nuclei as N
    from cellxfer.synth.base import image_rng
    from cellxfer.synth.nuclei_config import NucleiConfig

    on = NucleiConfig(size=128, diameter=(10.0, 10.0), defocus_fraction=(0.6, 0.6))
    off = NucleiConfig(size=128, diameter=(10.0, 10.0), defocus_fraction=(0.6, 0.6), label_defocused=False)
    img_on, pts_on = N.render(on, None, image_rng(4, 0))
    img_off, pts_off = N.render(off, None, image_rng(4, 0))
    assert np.array_equal(img_on, img_off) and 0 < len(pts_off) < len(pts_on)
    _, cells, _ = N.render_cells(off, None, image_rng(4, 0))
    dropped = ~N.labelled(off, cells)
    assert dropped.sum() == len(pts_on) - len(pts_off)
    assert (cells.layer[dropped] == N.PLAIN).all() and (cells.kind[dropped] == N.NUCLEUS).all()
    with pytest.raises(ValueError, match="--label-defocused .yes.: must be true or false"):
        NucleiConfig(label_defocused="yes")


# -- what microscopes show: large, textured, saturated, dividing, crowded ----------------------------
def _whole_nuclei(image, cells, cut):
    """(labelled centre, component) pairs of the components above ``cut`` that touch no border and
    hold exactly one centre."""
    labels, _ = ndimage.label(image > cut)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    hits = labels[np.floor(cells.y).astype(int), np.floor(cells.x).astype(int)]
    ids, per = np.unique(hits[hits > 0], return_counts=True)
    once = {k for k, c in zip(ids, per) if c == 1 and k not in border}
    return [(k, (x, y)) for k, x, y in zip(hits, cells.x, cells.y) if k in once], labels


def test_large_nuclei_are_drawn_at_their_size_around_their_exact_centres():
    """80 px nuclei (512 px field): each whole nucleus' area matches 80 px within 10% and its
    brightness-weighted centroid lies within half a pixel of its labelled centre."""
    cfg = NucleiConfig(**{**QUIET, "elongation": (1.0, 1.6)}, size=512, diameter=(80.0, 80.0),
                       coverage=(0.15, 0.15), overlap=(0.0, 0.0))
    found = 0
    for i in range(3):
        image, cells, _ = nuclei.render_cells(cfg, None, image_rng(21, i))
        whole, labels = _whole_nuclei(image, cells, 0.25 * 1e4)
        for k, (x, y) in whole:
            mask = labels == k
            assert abs(2 * math.sqrt(mask.sum() / math.pi) - 80) < 8
            cy, cx = ndimage.center_of_mass(image * mask)
            assert math.hypot(cx + 0.5 - x, cy + 0.5 - y) < 0.5, (cx, cy, x, y)
            found += 1
    assert found >= 5


def _interior_roughness(image, cells, d):
    """Median over nuclei of the SD of (image - its Gaussian smoothing at d/8) within 0.3 d of the
    centre (inside any nucleus of axis ratio up to 1.8), over the mean there: the chromatin's fine
    relative variation."""
    image = image.astype(np.float64)
    detail = image - ndimage.gaussian_filter(image, max(d / 8, 1.5))
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    out = []
    for x, y in zip(cells.x, cells.y):
        core = (xx - x) ** 2 + (yy - y) ** 2 <= max(0.3 * d, 2.0) ** 2
        out.append(detail[core].std() / image[core].mean())
    return float(np.median(out))


@pytest.mark.parametrize("d", [8.0, 30.0, 80.0])
def test_texture_shows_inside_the_nuclei_at_every_size(d):
    """Noise-free, defocus-free nuclei: texture 0.5 (with nucleoli and fine grain) varies inside the
    nuclei several times more than texture 0 does."""
    base = {**QUIET, "size": 512 if d > 40 else 256, "diameter": (d, d), "coverage": (0.12, 0.12),
            "overlap": (0.0, 0.0), "blur": (0.7, 0.7)}
    smooth = NucleiConfig(**base)
    rough = NucleiConfig(**{**base, "texture": (0.5, 0.5), "grain": (0.5, 0.5), "nucleoli": 1.0})
    values = []
    for cfg in (smooth, rough):
        image, cells, _ = nuclei.render_cells(cfg, None, image_rng(22, 0))
        values.append(_interior_roughness(image, cells, d))
    assert values[1] > 3 * values[0] and values[1] > 0.05, values


def test_fine_grain_is_finer_than_coarse_texture():
    """At 80 px the grain (~d/20) decorrelates within a few pixels, the coarse texture (~d/6) does not."""
    def corr_at(grain, lag=4):
        field = nuclei.smooth_noise(np.random.default_rng(0), 256, 80 / 12, 80 / 40, grain)
        return float(np.mean(field[:, lag:] * field[:, :-lag]))

    assert corr_at(1.0) < 0.6 < 0.9 < corr_at(0.0)


def test_saturation_clips_the_asked_share_of_the_nucleus_pixels():
    """saturated=0.1: about 10% of the pixels of the nuclei sit at the image maximum (a flat core);
    saturation=0: hardly any."""
    def at_max(saturation):
        cfg = NucleiConfig(**{**QUIET, "photons": (300.0, 300.0), "read_noise": (2.0, 2.0), "saturation": saturation},
                           size=256, diameter=(30.0, 30.0), coverage=(0.2, 0.2), saturated=(0.1, 0.1))
        image, _ = nuclei.render(cfg, None, image_rng(23, 0))
        nucleus = image > 0.25 * 300
        return np.count_nonzero(image[nucleus] == image.max()) / np.count_nonzero(nucleus)

    assert 0.06 < at_max(1.0) < 0.14
    assert at_max(0.0) < 0.002


def test_dividing_cells_are_labelled_as_two_bright_daughters():
    """bodies=0.5: mitotic figures outnumber nothing else; daughter pairs give two BODY points closer
    than a nucleus diameter, brighter than the nuclei, and every point stays inside the image."""
    cfg = NucleiConfig(size=256, diameter=(24.0, 24.0), coverage=(0.1, 0.1), bodies=(0.5, 0.5), overlap=(0.0, 0.0))
    pairs = 0
    for i in range(3):
        _, cells, draw = nuclei.render_cells(cfg, None, image_rng(24, i))
        body = cells.take(np.flatnonzero(cells.kind == nuclei.BODY))
        assert len(body) and body.level.min() >= 1.5 and (cells.points < 256).all() and (cells.points >= 0).all()
        dist = np.hypot(*(body.points[:, None, :] - body.points[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(dist, np.inf)
        pairs += int(np.count_nonzero(dist.min(axis=1) < 24.0 * 0.65 * 1.7 + 1e-9))
        assert len(cells) > draw.n_nuclei  # the daughters add points
    assert pairs >= 4


def test_pressed_nuclei_flatten_against_each_other_instead_of_adding_up():
    """A crowded field (coverage 0.5, overlap up to 0.3): the same nuclei either way; added up, the
    overlaps glow at about twice a nucleus' brightness; pressed, no pixel exceeds one nucleus and a
    dark seam runs between touching nuclei."""
    base = {**QUIET, "size": 192, "diameter": (20.0, 20.0), "coverage": (0.5, 0.5), "overlap": (0.3, 0.3),
            "blur": (0.0, 0.0)}
    added, cells_a, _ = nuclei.render_cells(NucleiConfig(**base, pressed=0.0), None, image_rng(25, 0))
    pressed, cells_p, _ = nuclei.render_cells(NucleiConfig(**base, pressed=1.0), None, image_rng(25, 0))
    assert np.array_equal(cells_a.points, cells_p.points)
    pts = cells_p.points
    dist = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    i, j = np.nonzero(np.triu(dist < 0.85 * 20.0, 1))
    assert len(i) >= 10  # many touching, overlapping neighbours
    assert added.max() > 1.5e4 and pressed.max() <= 1.0e4 * 1.05  # photon noise: SD 1%
    mid = ((pts[i] + pts[j]) / 2).astype(int)
    centres = np.minimum(pressed[pts[i, 1].astype(int), pts[i, 0].astype(int)],
                         pressed[pts[j, 1].astype(int), pts[j, 0].astype(int)])
    assert np.median(pressed[mid[:, 1], mid[:, 0]] / centres) < 0.9


def test_dim_uint8_and_uint16_camera_units():
    """uint8 images without saturation keep their maximum anywhere from ~10% to 100% of 255."""
    tops = [nuclei.render(NucleiConfig(size=64, dtype="uint8", saturation=0.0, diameter=(8.0, 8.0)), None,
                          image_rng(26, i))[0].max() for i in range(40)]
    assert min(tops) < 64 and max(tops) > 200


def test_everything_on_is_still_deterministic():
    cfg = NucleiConfig(size=128, diameter=(10.0, 60.0), bodies=(0.3, 0.3), pressed=1.0, saturation=1.0,
                       texture=(0.5, 0.5), rim=(0.5, 0.5), nucleoli=1.0, debris=(1.0, 1.0), coverage=(0.4, 0.4),
                       rescale=(0.5, 2.0))
    for i in range(3):
        a, pa = nuclei.render(cfg, None, image_rng(27, i))
        b, pb = nuclei.render(cfg, None, image_rng(27, i))
        assert a.tobytes() == b.tobytes() and np.array_equal(pa, pb) and len(pa)


@pytest.mark.parametrize("d", [8, 30, 80])
def test_sample_gives_textured_and_smooth_test_images(d):
    """nuclei.sample: one diameter, textured or smooth, the same centres either way."""
    rough, pts = nuclei.sample(d, textured=True)
    smooth, pts2 = nuclei.sample(d, textured=False)
    assert np.array_equal(pts, pts2) and len(pts) >= 5
    assert rough.shape == smooth.shape and rough.shape[0] >= 6 * d and rough.dtype == np.uint16
    assert not np.array_equal(rough, smooth)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_rescaled_images_keep_exact_centres_and_the_asked_diameter(factor):
    """rescale f: rendered at size / f and resized to size; the nuclei come out at the asked diameter,
    each whole one's brightness-weighted centroid within 0.5 px of its point, and the pixel noise is
    smoothed (averaged when shrinking, interpolated when enlarging) against an image rendered at its size."""
    base = {**QUIET, "photons": (300.0, 300.0), "size": 256, "diameter": (20.0, 20.0), "coverage": (0.12, 0.12),
            "overlap": (0.0, 0.0), "elongation": (1.0, 1.0)}
    image, cells, _ = nuclei.render_cells(NucleiConfig(**base, rescale=(factor, factor)), None, image_rng(28, 0))
    assert image.shape == (256, 256) and ((cells.points >= 0) & (cells.points < 256)).all()
    whole, labels = _whole_nuclei(image, cells, 0.5 * 300)
    assert len(whole) >= 8
    for k, (x, y) in whole:
        mask = labels == k
        assert abs(2 * math.sqrt(mask.sum() / math.pi) - 20) < 2.5
        cy, cx = ndimage.center_of_mass(image * mask)
        assert math.hypot(cx + 0.5 - x, cy + 0.5 - y) < 0.5
    noisy = {**base, "background": (0.3, 0.3), "read_noise": (3.0, 3.0)}

    def noise(f):  # high-pass SD of the background (Poisson at 90 photons + read noise), as resized
        im, c, _ = nuclei.render_cells(NucleiConfig(**noisy, rescale=(f, f)), None, image_rng(28, 0))
        far = ndimage.distance_transform_edt(np.isin(np.arange(256 * 256), np.ravel_multi_index(
            (c.points[:, 1].astype(int), c.points[:, 0].astype(int)), (256, 256)), invert=True).reshape(256, 256)) > 25
        im = im.astype(float)
        return float((im - ndimage.gaussian_filter(im, 3.0))[far].std())

    assert noise(factor) < 0.7 * noise(1.0)


def test_bright_nuclei_are_the_asked_share_at_two_to_eight_times_the_others():
    """bright_fraction=0.3 with every other brightness variation off: about 30% of the nuclei at 2-8x the
    level of the rest, which stay at 1; without it, all at 1 (and nothing extra is drawn)."""
    quiet = {**QUIET, "coverage": (0.2, 0.2), "bodies": (0.0, 0.0)}
    levels = []
    for i in range(4):
        _, cells, draw = nuclei.render_cells(NucleiConfig(size=256, bright_fraction=(0.3, 0.3), **quiet), None, image_rng(5, i))
        assert draw.bright_fraction == 0.3
        levels.append(cells.level)
    level = np.concatenate(levels)
    bright = level > 1.0
    assert 0.2 < bright.mean() < 0.4
    assert np.all(level[~bright] == 1.0) and level[bright].min() >= 2.0 and level[bright].max() <= 8.0
    _, cells, draw = nuclei.render_cells(NucleiConfig(size=256, **quiet), None, image_rng(5, 0))
    assert draw.bright_fraction == 0.0 and np.all(cells.level == 1.0)


def test_configs_without_bright_nuclei_render_what_they_rendered_before_the_option():
    """The option draws nothing unless asked: the default config's render is pinned (a digest of its bytes and
    points), so adding draws for bright nuclei to every config would fail here."""
    import hashlib

    image, cells, _ = nuclei.render_cells(NucleiConfig(size=96), None, image_rng(3, 1))
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + cells.points.tobytes()).hexdigest()[:16]
    assert digest == PINNED_DEFAULT_RENDER
