"""export: generic ONNX export of torch modules, parity checks, counter export with metadata, CLI."""

from __future__ import annotations

import json
from pathlib import Path

from cli_inproc import run_cli

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from cellxfer.counter.model import CounterMeta, Normalization, build_counter, save_counter  # noqa: E402
from cellxfer.export.onnx import (ExportParityError, assert_parity, check_parity, compare, export_onnx,  # noqa: E402
                                  read_metadata)

REPO = Path(__file__).resolve().parents[1]


cli = run_cli  # other test modules import it from here


def tiny_counter(path: Path, window: int = 32, seed: int = 0) -> Path:
    """A randomly initialised timm ``test_efficientnet`` counter whose outputs are not all ~0."""
    torch.manual_seed(seed)
    meta = CounterMeta(arch="test_efficientnet", window=window, normalization=Normalization(1.0, 99.0))
    model = build_counter(meta)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.normal_(0, 300.0)  # random features are tiny: make counts depend on the image
        head.bias.fill_(2.0)
    return save_counter(path, model, meta)


class Branchy(torch.nn.Module):
    """Data-dependent control flow: tracing bakes in the branch of the example input."""

    def forward(self, x):
        if float(x.mean()) > 0.5:
            return x.mean(dim=(1, 2, 3), keepdim=False)[:, None] * 10
        return x.mean(dim=(1, 2, 3))[:, None]


class TrainModeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(4, 1)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.head(x.mean(dim=(2, 3)))


def test_export_any_module_dynamic_batch_and_metadata(tmp_path):
    net = TrainModeNet()
    net.bn.running_mean.fill_(0.3)
    net.train()  # a user hands over a module left in train mode
    out = export_onnx(net, (1, 1, 16, 16), tmp_path / "net.onnx", metadata={"kind": "test", "window": 16, "d": {"a": 1}})
    assert out.is_file() and net.training, "export must restore the module's mode"
    meta = read_metadata(out)
    assert meta["kind"] == "test" and meta["window"] == "16" and json.loads(meta["d"]) == {"a": 1}
    x = np.random.default_rng(0).normal(size=(5, 1, 16, 16)).astype(np.float32)  # batch 5 != example batch 1
    report = check_parity(net, out, x)
    assert report.ok and report.n == 5 and report.max_abs < 1e-4
    assert net.training  # check_parity compares in eval mode and restores the module's mode
    assert not list(tmp_path.glob("*.cellxfer-tmp"))


def test_export_dynamic_height_width(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(2, 1, 1))
    axes = {"input": {0: "b", 2: "h", 3: "w"}, "output": {0: "b", 2: "h", 3: "w"}}
    out = export_onnx(net, (1, 1, 32, 32), tmp_path / "fcn.onnx", metadata={}, dynamic_axes=axes)
    x = np.random.default_rng(1).normal(size=(2, 1, 24, 40)).astype(np.float32)
    assert check_parity(net, out, x).max_abs < 1e-5


def test_parity_mismatch_fails_loudly(tmp_path):
    net = Branchy()
    out = export_onnx(net, (1, 1, 8, 8), tmp_path / "branchy.onnx")  # traced with zeros: the x1 branch
    bright = np.full((3, 1, 8, 8), 0.9, dtype=np.float32)
    report = check_parity(net, out, bright)
    assert not report.ok and report.max_abs > 1
    with pytest.raises(ExportParityError, match="does not match PyTorch"):
        assert_parity(report, out)


def test_compare_shapes_and_nan():
    with pytest.raises(ExportParityError, match="shapes differ"):
        compare(np.zeros((2, 1)), np.zeros((3, 1)), 1e-3, 1e-3)
    assert not compare(np.zeros((2, 1)), np.array([[0.0], [np.nan]]), 1e-3, 1e-3).ok
    r = compare(np.array([[100.0]]), np.array([[100.05]]), 1e-3, 1e-3)
    assert r.ok and r.max_rel == pytest.approx(5e-4)


def test_export_counter_cli_roundtrip(tmp_path, idcia_dir, capsys):
    ckpt = tiny_counter(tmp_path / "c.safetensors")
    onnx_path = tmp_path / "c.onnx"
    images = sorted((idcia_dir / "images").glob("*.tiff"))[:1]
    r = cli(["export", "--model", ckpt, "--out", onnx_path, "--check-images", images[0]], capsys)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "onnx vs torch, random windows: ok" in r.stdout and "onnx vs torch, real windows: ok" in r.stdout
    assert "max abs diff" in r.stdout and "max rel diff" in r.stdout
    from cellxfer.export.counter import onnx_counter_meta

    props = read_metadata(onnx_path)
    import cellxfer

    assert props["window"] == "32" and props["arch"] == "test_efficientnet"
    assert props["cellxfer_version"] == cellxfer.__version__
    assert json.loads(props["normalization"]) == {"low": 1.0, "high": 99.0, "eps": 1.0, "clip": None}
    meta = onnx_counter_meta(onnx_path)
    assert meta.window == 32 and meta.normalization == Normalization(1.0, 99.0)

    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == "batch"
    assert sess.run(None, {"input": np.zeros((7, 1, 32, 32), np.float32)})[0].shape == (7, 1)


def test_export_counter_parity_failure_leaves_no_file(tmp_path, monkeypatch):
    from cellxfer.export import counter as export_counter_mod
    from cellxfer.export.counter import ExportConfig, export_counter

    ckpt = tiny_counter(tmp_path / "c.safetensors")
    real_check = export_counter_mod.check_parity

    def skewed(module, path, x, atol, rtol, runner=None):  # simulate an exporter that drifts
        report = real_check(module, path, x, atol, rtol, runner)
        from dataclasses import replace

        return replace(report, max_abs=0.5, max_rel=0.2)

    monkeypatch.setattr(export_counter_mod, "check_parity", skewed)
    with pytest.raises(ExportParityError):
        export_counter(ExportConfig(model=ckpt, out=tmp_path / "bad.onnx"), log=lambda s: None)
    assert not (tmp_path / "bad.onnx").exists()


def test_export_bad_inputs_one_line(tmp_path, capsys):
    r = cli(["export", "--model", tmp_path / "missing.safetensors"], capsys)
    assert r.returncode == 2 and "missing.safetensors: no such model file" in r.stderr and "Traceback" not in r.stderr
    ckpt = tiny_counter(tmp_path / "c.safetensors")
    r = cli(["export", "--model", ckpt, "--out", tmp_path / "x.bin"], capsys)
    assert r.returncode == 2 and "must end in .onnx" in r.stderr


def test_a_model_file_says_what_it_is(tmp_path):
    """export tells a translator from a counter by the metadata each records (cellxfer.weights.artefact_kind),
    not by trying loaders; anything else is None and the expected loader's one-line error follows."""
    from cellxfer.counter.model import CounterMeta, build_counter, save_counter
    from cellxfer.translator.model import TranslatorMeta, build_generator, save_translator
    from cellxfer.weights import artefact_kind

    meta = CounterMeta(arch="density", output="density", window=32, arch_options={"base": 4, "stem": 2})
    save_counter(tmp_path / "c.safetensors", build_counter(meta), meta)
    tmeta = TranslatorMeta(ngf=4, num_downs=5, size=32)
    (tmp_path / "run").mkdir()
    save_translator(tmp_path / "run" / "translator.safetensors", build_generator(tmeta), tmeta)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    assert artefact_kind(tmp_path / "c.safetensors") == "counter"
    assert artefact_kind(tmp_path / "run") == artefact_kind(tmp_path / "run" / "translator.safetensors") == "translator"
    assert artefact_kind(tmp_path / "junk.safetensors") is None and artefact_kind(tmp_path / "missing") is None
