"""TensorRT export: the GPU-free parts (cache key, profile shapes, gating message) and a GPU test."""

from __future__ import annotations

import sys
import types

import pytest

from cellxfer.export import trt as trtmod
from cellxfer.export.trt import TRT_MESSAGE, TrtConfig, cache_key, engine_path, profile_shapes, trt_unavailable_reason


def test_profile_shapes_cover_count_batches():
    shapes = profile_shapes(1, 256, TrtConfig(opt_batch=12, max_batch=48))
    assert shapes == {"min": (1, 1, 256, 256), "opt": (12, 1, 256, 256), "max": (48, 1, 256, 256)}
    with pytest.raises(Exception, match="min <= opt <= max"):
        TrtConfig(opt_batch=64, max_batch=16)
    sized = profile_shapes(1, (128, 256, 256), TrtConfig(opt_batch=12, max_batch=48))
    assert sized == {"min": (1, 1, 128, 128), "opt": (12, 1, 256, 256), "max": (48, 1, 256, 256)}
    with pytest.raises(Exception, match="input side"):
        profile_shapes(1, (256, 128, 256), TrtConfig())


def test_trt_profile_covers_the_sizes_count_sends():
    """A count model: its window; a density model: training crop .. 4 x its inference tile (slides are cut
    into larger tiles: OwnedTiles.for_shape), optimised for the tile."""
    from cellxfer.counter.model import CounterMeta
    from cellxfer.density.stitch import tile_of
    from cellxfer.counter.head import head_of

    def trt_sides(meta):
        return head_of(meta).trt_sides(meta)

    assert trt_sides(CounterMeta(window=256)) == (256, 256, 256)
    dens = CounterMeta(arch="density", window=128, output="density")
    assert trt_sides(dens) == (128, tile_of(dens), 4 * tile_of(dens)) == (128, 256, 1024)
    assert trt_sides(CounterMeta(arch="density", window=96, output="density", arch_options={"tile": 512})) == (96, 512, 2048)


def test_cache_key_depends_on_gpu_trt_onnx_precision_profile():
    base = dict(gpu_name="NVIDIA H100 80GB HBM3", trt_version="10.3.0", onnx_sha256="a" * 64,
                config=TrtConfig(), in_chans=1, window=256)
    key = cache_key(**base)
    assert len(key) == 16 and key == cache_key(**base)
    for change in (dict(gpu_name="NVIDIA A100-SXM4-40GB"), dict(trt_version="10.4.0"), dict(onnx_sha256="b" * 64),
                   dict(config=TrtConfig(fp16=False)), dict(config=TrtConfig(max_batch=128)), dict(window=128),
                   dict(window=(128, 256, 256))):
        assert cache_key(**{**base, **change}) != key, change


def test_engine_path_in_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path))
    p = engine_path(tmp_path / "model.onnx", "0123456789abcdef")
    assert p == tmp_path / "trt" / "model-0123456789abcdef.engine"


def test_gating_message_names_what_is_missing():
    assert trt_unavailable_reason(trt_module=None, cuda=False) == (
        f"{TRT_MESSAGE} (missing: the tensorrt module (pip install 'cellxfer[trt]') and a CUDA GPU)")
    assert "missing: a CUDA GPU" in trt_unavailable_reason(trt_module=types.SimpleNamespace(), cuda=False)
    assert "missing: the tensorrt module" in trt_unavailable_reason(trt_module=None, cuda=True)
    assert trt_unavailable_reason(trt_module=types.SimpleNamespace(), cuda=True) is None


def test_import_errors_are_caught(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "tensorrt":
            raise OSError("libnvinfer.so.10: cannot open shared object file")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    assert trtmod.import_tensorrt() is None


@pytest.mark.skipif(trt_unavailable_reason() is None, reason="TensorRT is usable here; the gating message is not shown")
def test_cli_trt_without_gpu_is_one_clear_line(tmp_path, capsys):
    from test_export import cli, tiny_counter

    ckpt = tiny_counter(tmp_path / "c.safetensors")
    r = cli(["export", "--model", ckpt, "--format", "trt", "--out", tmp_path / "c.onnx"], capsys)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and TRT_MESSAGE in lines[0] and "use --engine onnx" in lines[0]
    assert not (tmp_path / "c.onnx").exists()
    r = cli(["count", tmp_path, "--model", ckpt, "--engine", "trt", "--out", tmp_path / "c.csv"], capsys)
    assert r.returncode == 2 and TRT_MESSAGE in r.stderr and "Traceback" not in r.stderr
    assert "pip install 'cellxfer[trt]'" in r.stderr  # printed as is, not eaten as a style tag


@pytest.fixture
def trt_cache(tmp_path, monkeypatch):
    """Skip unless TensorRT and a GPU are usable; engines go to a fresh cache under ``tmp_path``."""
    pytest.importorskip("tensorrt")
    if trt_unavailable_reason() is not None:
        pytest.skip(trt_unavailable_reason())
    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.gpu
def test_trt_engine_builds_caches_and_matches_torch(tmp_path, trt_cache):
    from cellxfer.export.counter import ExportConfig, export_counter
    from test_export import tiny_counter

    ckpt = tiny_counter(tmp_path / "c.safetensors")
    result = export_counter(ExportConfig(model=ckpt, out=tmp_path / "c.onnx", format="trt", fp16=False), log=print)
    assert result.engine.is_file() and result.engine.parent == trt_cache / "trt"
    assert all(r.ok for r in result.parity.values()) and "trt/random" in result.parity
    mtime = result.engine.stat().st_mtime_ns
    again = export_counter(ExportConfig(model=ckpt, out=tmp_path / "c.onnx", format="trt", fp16=False), log=print)
    assert again.engine == result.engine and again.engine.stat().st_mtime_ns == mtime  # cache hit


@pytest.mark.gpu
def test_trt_density_model_counts_like_torch(tmp_path, trt_cache):
    """A density model through TensorRT: the profile covers the tiles `count` sends (other sides too)."""
    import numpy as np
    import torch

    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.model import CounterMeta, build_counter, save_counter
    from cellxfer.imageio import write_tiff

    torch.manual_seed(0)
    meta = CounterMeta(arch="density", window=64, output="density", arch_options={"base": 4, "depth": 2, "norm": "group"})
    ckpt = save_counter(tmp_path / "d.safetensors", build_counter(meta).eval(), meta)
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    for i, shape in enumerate([(300, 410), (97, 130)]):
        write_tiff(tmp_path / "img" / f"{i}.tif", rng.integers(0, 255, shape).astype(np.uint8))
    counts = {e: run_count(CountConfig(paths=(str(tmp_path / "img"),), model=ckpt, engine=e, fp16=False,
                                       out=tmp_path / f"{e}.csv")).counts for e in ("torch", "trt")}
    for f, c in counts["torch"].items():
        assert counts["trt"][f] == pytest.approx(c, rel=1e-3, abs=1e-2)
