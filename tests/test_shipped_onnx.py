"""The default counter's ONNX shipped in the package (``scripts/ship_default_onnx.py``) is the export of the
shipped weights: the same checkpoint hash and metadata, the same outputs; and ``count`` uses it as it is (a core
install, without torch, exports nothing). When the weights change, rerun the script: these tests fail until then."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellxfer.engines.base import COUNTER, default_model

RERUN = "rerun `python scripts/ship_default_onnx.py`"


def _shipped():
    ckpt = default_model()
    return ckpt, ckpt.with_suffix(".onnx")


def test_the_shipped_onnx_carries_the_metadata_of_the_shipped_weights():
    from cellxfer.counter.model import read_meta
    from cellxfer.export.counter import META_KEYS, counter_metadata
    from cellxfer.export.onnx import read_metadata
    from cellxfer.manifest import sha256_file

    ckpt, onnx = _shipped()
    assert onnx.is_file(), f"{onnx} is missing: {RERUN}"
    props = read_metadata(onnx)
    assert props.get("source_sha256") == sha256_file(ckpt), f"{onnx} was exported from other weights: {RERUN}"
    want = counter_metadata(read_meta(ckpt), sha256_file(ckpt))
    for key in META_KEYS:
        if key != "cellxfer_version":  # the version that exported it
            assert props[key] == want[key], f"{key}: {RERUN}"
    assert json.loads(props["cellxfer"]) == json.loads(want["cellxfer"])  # the full CounterMeta that count reads


def test_the_shipped_onnx_computes_what_the_shipped_weights_compute():
    pytest.importorskip("torch")
    from cellxfer.counter.model import load_counter
    from cellxfer.export.onnx import check_parity

    ckpt, onnx = _shipped()
    module, meta = load_counter(ckpt)
    rng = np.random.default_rng(0)
    for shape in ((4, meta.in_chans, meta.window, meta.window), (2, meta.in_chans, meta.window + 37, meta.window + 61)):
        report = check_parity(module, onnx, rng.uniform(-0.2, 1.5, shape).astype(np.float32), 1e-3, 1e-3)
        assert report.ok, f"{report.line()}: {RERUN}"


def test_count_runs_the_shipped_onnx_without_exporting(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    ckpt, onnx = _shipped()
    assert COUNTER.onnx_file(ckpt) == onnx
    assert not (tmp_path / "cache").exists()  # nothing exported, nothing cached


def test_an_onnx_beside_a_checkpoint_is_used_only_when_exported_from_it(tmp_path, monkeypatch):
    """A copy of the shipped ONNX beside other weights is not taken for their export."""
    import shutil

    from cellxfer.export.onnx import shipped_export
    from cellxfer.manifest import sha256_file

    ckpt, onnx = _shipped()
    other = tmp_path / "other.safetensors"
    other.write_bytes(ckpt.read_bytes() + b" ")  # other bytes, so another hash
    shutil.copyfile(onnx, tmp_path / "other.onnx")
    assert shipped_export(other, sha256_file(other)) is None
    assert shipped_export(ckpt, sha256_file(ckpt)) == onnx
