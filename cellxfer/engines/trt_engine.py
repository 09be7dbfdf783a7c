"""The trt engine: a TensorRT engine built from the model's ONNX export (cached; see :mod:`cellxfer.export.trt`)."""

from __future__ import annotations

from pathlib import Path

from cellxfer.engines.base import COUNTER, Engine, ModelFamily, Runner, model_hash


def available(device: str = "cuda") -> str | None:
    from cellxfer.export.trt import trt_unavailable_reason

    if device == "cpu":
        return "TensorRT runs on NVIDIA GPUs only; use --engine onnx"
    return trt_unavailable_reason()


def load(model_path: Path, device: str = "cuda", fp16: bool = True, batch_size: int = 16, max_batch: int = 64,
         log=lambda s: None, family: ModelFamily = COUNTER, **_) -> Runner:
    from cellxfer.export.trt import TrtConfig, TrtRunner, build_engine

    onnx_path = family.onnx_file(model_path, log=log)
    meta = family.onnx_meta(onnx_path)
    config = TrtConfig(fp16=fp16, opt_batch=min(batch_size, max_batch), max_batch=max(batch_size, max_batch))
    in_chans, sides = family.trt_profile(meta)
    engine_file = build_engine(onnx_path, in_chans, sides, config, log=log)
    runner = TrtRunner(engine_file, config.max_batch)
    return Runner(run=runner, meta=meta, engine="trt", device=f"cuda {config.precision}", model_path=model_path,
                  model_hash=model_hash(model_path), info={"engine": str(engine_file)})


ENGINE = Engine("trt", "TensorRT engine on an NVIDIA GPU (fp16 default), built once and cached", available, load)
