"""The torch engine: eager PyTorch on the CPU or a CUDA GPU (the reference for parity)."""

from __future__ import annotations

from pathlib import Path

from cellxfer.engines.base import COUNTER, Engine, ModelFamily, Runner, model_hash, model_kind
from cellxfer.errors import InputError


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def available(device: str = "auto") -> str | None:
    from cellxfer.extras import missing_line

    missing = missing_line("train", "the torch engine")
    if missing is not None:
        return missing
    if device == "cuda" and not _cuda():
        return "torch sees no CUDA GPU; use --device cpu"
    return None


def load(model_path: Path, device: str = "auto", threads: int | None = None, family: ModelFamily = COUNTER,
         **_) -> Runner:
    import numpy as np
    import torch

    if model_kind(model_path) != "checkpoint":
        raise InputError(f"{model_path}: the torch engine needs the {family.name} checkpoint (.safetensors); "
                         f"use --engine onnx for an .onnx file")
    device = ("cuda" if _cuda() else "cpu") if device == "auto" else device
    if threads:
        torch.set_num_threads(threads)
    module, meta = family.load_torch(model_path)
    module.eval()
    module = module.to(device)

    def run(batch):
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(batch)).to(device)).float().cpu().numpy()

    return Runner(run=run, meta=meta, engine="torch", device=device, model_path=model_path,
                  model_hash=model_hash(model_path), info={"module": module})


ENGINE = Engine("torch", "PyTorch eager (CPU or CUDA); the parity reference", available, load)
