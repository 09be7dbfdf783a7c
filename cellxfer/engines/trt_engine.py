"""The trt engine: a TensorRT engine built from the model's ONNX export (cached; see :mod:`cellxfer.export.trt`)."""

from __future__ import annotations

from pathlib import Path

from cellxfer.engines.base import Engine, Runner, model_hash, model_kind


def available(device: str = "cuda") -> str | None:
    from cellxfer.export.trt import trt_unavailable_reason

    if device == "cpu":
        return "TensorRT runs on NVIDIA GPUs only; use --engine onnx"
    return trt_unavailable_reason()


def load(model_path: Path, device: str = "cuda", fp16: bool = True, batch_size: int = 16, max_batch: int = 64,
         log=lambda s: None, **_) -> Runner:
    from cellxfer.export.counter import cached_onnx, onnx_counter_meta, trt_sides
    from cellxfer.export.trt import TrtConfig, TrtRunner, build_engine

    onnx_path = model_path if model_kind(model_path) == "onnx" else cached_onnx(model_path, log=log)
    meta = onnx_counter_meta(onnx_path)
    config = TrtConfig(fp16=fp16, opt_batch=min(batch_size, max_batch), max_batch=max(batch_size, max_batch))
    engine_file = build_engine(onnx_path, meta.in_chans, trt_sides(meta), config, log=log)
    runner = TrtRunner(engine_file, config.max_batch)
    return Runner(run=runner, meta=meta, engine="trt", device=f"cuda {config.precision}", model_path=model_path,
                  model_hash=model_hash(model_path), info={"engine": str(engine_file)})


ENGINE = Engine("trt", "TensorRT engine on an NVIDIA GPU (fp16 default), built once and cached", available, load)
