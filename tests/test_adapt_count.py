"""adapt-count: a tiny adaptation lowers the error on shifted target images whose labels it never read,
resume equals an uninterrupted run, the checkpoint is a normal counter (ensemble, export), overlapping label folders and
non-density counters are refused, the photometric view keeps the random stream when off, target images are
normalised as count normalises them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_inproc import run_cli

torch = pytest.importorskip("torch")

from cellxfer.errors import InputError  # noqa: E402
from cellxfer.train.adapt import adapt_config  # noqa: E402
from cellxfer.train.counter import TrainConfig, train_counter  # noqa: E402

# Small `nuclei` images; the target is shifted: blurrier, darker (fewer photons), noisier, on a brighter
# background (what a synthetic-only counter meets on a new microscope).
COMMON = {"size": "64", "diameter": "7:9", "coverage": "0.05:0.2", "dtype": "uint8", "debris": "0:0",
          "bodies": "0:0", "defocus_fraction": "0:0", "dim_fraction": "0:0"}
SOURCE = dict(COMMON, blur="0.5:0.8", read_noise="0.5:1", photons="500:2000", background="0:0.05")
TARGET = dict(COMMON, blur="2:2.5", read_noise="4:6", photons="30:60", background="0.2:0.4")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Source and target sets (``cellxfer synth --method nuclei --set ...``) and a density counter trained
    on the source only. The adaptation target's points tables are garbage: reading one would fail."""
    from cellxfer.options import make_config
    from cellxfer.stages.synth import NUCLEI
    from cellxfer.synth.base import run_synth
    from cellxfer.synth.nuclei_config import NucleiConfig

    root = tmp_path_factory.mktemp("adapt-count")
    for name, settings, n, seed in (("src", SOURCE, 32, 1), ("srcval", SOURCE, 8, 2), ("tgt", TARGET, 16, 3),
                                    ("tgtval", TARGET, 16, 4)):
        run_synth(NUCLEI, make_config(NucleiConfig, settings, "nuclei"), n, root / name, seed=seed, workers=1)
    for table in (root / "tgt" / "points").glob("*.csv"):
        table.write_text("these are not the labels you are looking for\n")
    train_counter(TrainConfig(regime="synthetic", out=root / "source", synthetic=root / "src", val=root / "srcval",
                              arch="density", epochs=15, crop=32, batch_size=8, lr=3e-3, sigma=2.0, count_weight=0.01,
                              norm_clip=3.0, extra={"arch_options": {"base": 4, "depth": 2, "positive": True}})).out
    return root


def _adapt(world, out, **kw):
    base = dict(synthetic=world / "src", epochs=8, batch_size=8, lr=1e-3, ema=0.9, pseudo_peak=0.5, diameter="off")
    return adapt_config(world / "source" / "last.safetensors", world / "tgt", out, **{**base, **kw})


def _target_mae(world, model: Path) -> float:
    from cellxfer.evaluate.run import EvaluateConfig, evaluate

    res = evaluate(EvaluateConfig(model=model, data=world / "tgtval", out_csv=model.parent / "tgtval.csv", diameter="off", engine="torch"))
    return res.metrics.mae


def test_adaptation_lowers_the_target_error_without_its_labels(world, tmp_path, capsys):
    from cellxfer.counter.model import load_counter, read_meta

    before = _target_mae(world, world / "source" / "last.safetensors")
    run = train_counter(_adapt(world, tmp_path / "run")).out
    after = _target_mae(world, run / "last.safetensors")
    print("target MAE", before, after)
    assert before > 20 and after < 0.5 * before, (before, after)  # measured: 49.0 -> 7.8
    # a normal counter checkpoint, self-describing, with the source's scale and normalisation
    model, meta = load_counter(run / "best.safetensors")
    src = read_meta(world / "source" / "last.safetensors")
    assert meta.output == "density" and meta.extra["regime"] == "adapt" and meta.extra["adapted_from"] == "last.safetensors"
    assert (meta.normalization, meta.arch_options, meta.window, meta.diameter) == (src.normalization, src.arch_options, src.window, src.diameter)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage"] == "adapt-count" and manifest["result"]["epochs"] == 8
    assert sorted(manifest["unlabeled"]["files"]) == sorted(p.name for p in (world / "tgt" / "images").iterdir())
    assert all("points" not in i["path"] for i in manifest["inputs"])
    target = [i for i in manifest["inputs"] if i["path"].endswith("/tgt")]  # hashed: its image files, not its labels
    assert len(target) == 1 and target[0]["files"] == len(list((world / "tgt" / "images").iterdir()))
    rows = list(csv.DictReader((run / "history.csv").read_text().splitlines()))
    assert [r["phase"] for r in rows] == ["adapt"] * 8
    for args in (["ensemble", run / "best.safetensors", world / "source" / "last.safetensors", "-o", tmp_path / "ens.safetensors"],
                 ["export", "--model", run / "last.safetensors", "--format", "onnx", "--out", tmp_path / "adapted.onnx"]):
        code, _, err = run_cli(args, capsys)
        assert code == 0, err


def test_the_teacher_starts_as_the_given_counter(world, tmp_path):
    """With a learning rate too small to move the student, the saved teacher is the given counter: the
    moving average starts from its weights, not from the random initialisation they replaced (it did, and
    8 steps at decay 0.99 left 92% of the initial values: IDCIA counts of 40-223 became 657-717)."""
    from safetensors.torch import load_file

    run = train_counter(_adapt(world, tmp_path / "run", epochs=1, lr=1e-12)).out
    given, saved = load_file(world / "source" / "last.safetensors"), load_file(run / "last.safetensors")
    moved = {k: float((given[k].float() - saved[k].float()).abs().max()) for k in given if "num_batches" not in k}
    assert max(moved.values()) < 1e-6, sorted(moved.items(), key=lambda kv: -kv[1])[:3]


def test_resume_equals_uninterrupted(world, tmp_path):
    from safetensors.torch import load_file

    full = train_counter(_adapt(world, tmp_path / "full", epochs=3, photometric=1.0)).out

    class Stop(Exception):
        pass

    def interrupt(rec):
        raise Stop

    with pytest.raises(Stop):
        train_counter(_adapt(world, tmp_path / "part", epochs=3, photometric=1.0), on_epoch=interrupt).out
    resumed = train_counter(_adapt(world, tmp_path / "part", epochs=3, photometric=1.0)).out  # a rerun continues
    a, b = load_file(str(full / "last.safetensors")), load_file(str(resumed / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((full / "history.csv").open())]
    again = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((resumed / "history.csv").open())]
    assert strip == again
    with pytest.raises(InputError, match="other settings.*photometric"):
        train_counter(_adapt(world, tmp_path / "part", epochs=3, photometric=0.5)).out


def test_refuses_labelled_overlap_and_non_density_counters(world, tmp_path, capsys):
    model = world / "source" / "last.safetensors"
    for option, path in (("--val", world / "tgt"), ("--synthetic", world / "tgt"), ("--val", world)):
        code, _, err = run_cli(["adapt-count", "--model", model, "--unlabeled", world / "tgt", option, path,
                                "--out", tmp_path / "x"], capsys)
        assert code == 2 and "overlaps" in err and "Traceback" not in err, err
        assert not (tmp_path / "x").exists()
    from cellxfer.counter.model import CounterMeta, save_counter

    count_model = torch.nn.Linear(1, 1)
    save_counter(tmp_path / "count.safetensors", count_model, CounterMeta(arch="test_efficientnet", output="count"))
    code, _, err = run_cli(["adapt-count", "--model", tmp_path / "count.safetensors", "--unlabeled", world / "tgt",
                            "--out", tmp_path / "y"], capsys)
    assert code == 2 and "adapts density counters" in err
    with pytest.raises(InputError, match="adapt-count"):
        TrainConfig(regime="supervised", real=world / "src", unlabeled=world / "tgt").validate()


def test_photometric_view_keeps_cells_and_the_stream_when_off():
    from cellxfer.train.data import photometric

    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    rng = np.random.default_rng(1)
    assert photometric(img, rng, 0.0) is img and rng.random() == np.random.default_rng(1).random()
    a = photometric(img, np.random.default_rng(2), 1.0)
    b = photometric(img, np.random.default_rng(2), 1.0)
    assert a.dtype == np.float32 and a.shape == img.shape and np.array_equal(a, b) and not np.array_equal(a, img)


def test_confident_density_drops_thin_background_and_keeps_cells_whole():
    from cellxfer.density.targets import density_map
    from cellxfer.train.adapt import confident_density

    cells = density_map(np.array([[20.5, 20.5], [24.5, 21.5], [50.5, 40.5]]), (64, 80), sigma=2.0)
    haze = np.full((64, 80), 0.002, np.float32)  # 10 cells' worth of density spread thin
    kept = confident_density(cells + haze, sigma=2.0, min_peak=0.5)
    assert (kept[cells > 1e-4] > 0).all()  # every cell keeps its whole kernel (pixels down to 1e-4 of a cell)
    assert cells.sum() < kept.sum() < cells.sum() + 0.1 * haze.sum()  # and only the haze right around them
    assert kept[0, 0] == 0 and kept[60, 5] == 0
    assert confident_density(cells + haze, 2.0, 0.0).sum() == pytest.approx((cells + haze).sum())


def test_adapt_batches_fill_the_target_half_from_one_image():
    from cellxfer.train.data import Domain
    from cellxfer.train.sampler import epoch_batches, steps_in_epoch

    rng = np.random.default_rng(0)
    one = Domain("t", Path("t"), ["a"], [rng.random((40, 50)).astype(np.float32)], [rng.random((40, 50)).astype(np.float32)])
    syn = Domain("s", Path("s"), ["b", "c"], [rng.random((40, 50)).astype(np.float32)] * 2,
                 [rng.random((40, 50)).astype(np.float32)] * 2)
    assert steps_in_epoch("adapt", 1, 2, 8) == 1 and steps_in_epoch("adapt", 20, 0, 8) == 3
    batches = list(epoch_batches("adapt", one, syn, batch_size=8, crop=16, rng=rng, with_maps=True, mix_prob=1.0))
    x, y, maps = batches[0]
    assert len(batches) == 1 and x.shape == (8, 1, 16, 16) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), y, rtol=1e-5)  # mixed density targets keep their mass
    alone = list(epoch_batches("adapt", one, None, batch_size=4, crop=16, rng=rng, with_maps=True))
    assert len(alone) == 1 and alone[0][0].shape == (4, 1, 16, 16)


def test_target_images_are_normalised_as_count_normalises_them(tmp_path):
    """adapt-count learns on what ``count`` will feed the counter: each target image resized and normalised as
    :func:`cellxfer.count.parts.plan_image` does it (the grey-level floor read on the image as given, a
    field of mixed brightness lifted), not by the image's percentiles alone."""
    from dataclasses import replace

    import tifffile

    from cellxfer.count.parts import plan_image
    from cellxfer.counter.model import load_counter
    from cellxfer.engines.base import default_model
    from cellxfer.scale import DiameterPolicy
    from cellxfer.train.adapt import load_target

    _, meta = load_counter(default_model())
    meta = replace(meta, normalization=replace(meta.normalization, lift=0.5))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :200]
    img = rng.integers(0, 4, (200, 200)).astype(np.float32)
    for k, (y, x) in enumerate(rng.uniform(15, 185, (30, 2))):
        img[(yy - y) ** 2 + (xx - x) ** 2 <= 36] += 200 if k % 10 == 0 else 40  # a tenth 5x brighter
    (tmp_path / "t").mkdir()
    tifffile.imwrite(tmp_path / "t" / "a.tif", img.astype(np.uint8))
    got = load_target(tmp_path / "t", meta).images[0]
    plan = plan_image(img.astype(np.uint8), meta, DiameterPolicy.parse(None, meta.diameter))
    assert plan.levels.lift < 1  # the field is one the counter lifts
    assert np.array_equal(got, meta.normalization.apply_levels(plan.source, plan.levels))
