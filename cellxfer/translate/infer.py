"""Running a translator: engines (torch, onnx, trt), whole-image translation, evaluation on pairs.

A *runner* maps float32 (N, 1, T, T) in the network range to float32 (N, 1, T, T) in [-1, 1].
``torch`` runs the generator in eval mode (deterministic: dropout off, batch-norm running stats);
``onnx`` exports it once (parity-checked, cached beside the model as ``translator.onnx``) and runs it
with ONNX Runtime (:mod:`cellxfer.engines.onnx_engine`); ``trt`` builds a TensorRT engine from that
ONNX file (NVIDIA GPU + the ``trt`` extra; a one-line error otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cellxfer.errors import InputError
from cellxfer.translate.model import TranslatorMeta

ENGINES = ("torch", "onnx", "trt")


def torch_runner(g) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    g.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return g(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    return run


def export_translator(model: str | os.PathLike, out: str | os.PathLike | None = None, check: bool = True,
                      atol: float = 1e-3, rtol: float = 1e-3, seed: int = 0):
    """Export a translator to ONNX (dynamic batch, height, width) with the shared exporter of
    :mod:`cellxfer.export.onnx`, and check parity against torch on random inputs of the training
    size. Returns ``(onnx path, ParityReport or None)``; raises ``ExportParityError`` on mismatch."""
    from cellxfer.export.onnx import assert_parity, check_parity, export_onnx
    from cellxfer.manifest import sha256_file
    from cellxfer.translate.model import load_translator, resolve_model

    path = resolve_model(model)
    g, meta = load_translator(path)
    out = Path(out) if out else path.with_suffix(".onnx")
    axes = {0: "batch", 2: "height", 3: "width"}
    export_onnx(g, (1, meta.in_ch, meta.size, meta.size), out,
                metadata={"cellxfer_translator": meta.to_json(), "source_sha256": sha256_file(path)},
                dynamic_axes={"input": axes, "output": axes})
    report = None
    if check:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1.5, (2, meta.in_ch, meta.size, meta.size)).astype(np.float32)
        report = assert_parity(check_parity(g, out, x, atol=atol, rtol=rtol), out, "translator parity")
    return out, report


def _cached_onnx(path: Path, log) -> Path:
    import json

    from cellxfer.export.onnx import read_metadata
    from cellxfer.manifest import sha256_file

    onnx_path = path.with_suffix(".onnx")
    if onnx_path.is_file():
        try:
            if read_metadata(onnx_path).get("source_sha256") == sha256_file(path):
                return onnx_path
        except InputError:
            pass
    log(f"exporting {path} to {onnx_path} (parity-checked)")
    out, report = export_translator(path, onnx_path)
    if report is not None:
        log(report.line("translator parity"))
    _ = json
    return out


@dataclass
class Translator:
    """A loaded translator: ``run`` (runner), ``meta``, engine name."""

    run: Callable[[np.ndarray], np.ndarray]
    meta: TranslatorMeta
    engine: str

    def translate(self, image: np.ndarray, tile: int | None = None, overlap: int = 32, batch_size: int = 8) -> np.ndarray:
        """Raw 2-D image (any dtype) -> float32 prediction in [-1, 1], same H x W (tiled, blended)."""
        from cellxfer.translate.blend import translate_array
        from cellxfer.translate.data import normalize

        tile = tile or self.meta.size
        if tile % self.meta.multiple:
            raise InputError(f"--tile {tile}: must be a multiple of {self.meta.multiple} (2**num_downs of this translator)")
        x = normalize(image, self.meta.input_norm)
        return translate_array(x, self.run, tile=tile, overlap=overlap, batch_size=batch_size, multiple=self.meta.multiple)


def load(model: str | os.PathLike, engine: str = "torch", log=lambda s: None, threads: int | None = None) -> Translator:
    from cellxfer.translate.model import load_translator, resolve_model

    path = resolve_model(model)
    g, meta = load_translator(path)
    if engine == "torch":
        return Translator(torch_runner(g), meta, "torch")
    if engine == "onnx":
        from cellxfer.engines import onnx_engine

        why = onnx_engine.available("cpu")
        if why:
            raise InputError(f"--engine onnx: {why}")
        sess = onnx_engine.session(_cached_onnx(path, log), "cpu", threads)
        name = sess.get_inputs()[0].name
        return Translator(lambda b: sess.run(None, {name: np.ascontiguousarray(b, np.float32)})[0], meta, "onnx")
    if engine == "trt":
        from cellxfer.export.trt import TrtConfig, TrtRunner, build_engine, require_tensorrt

        require_tensorrt()  # one-line error without TensorRT / CUDA
        cfg = TrtConfig(fp16=False, min_batch=1, opt_batch=8, max_batch=8)
        engine_file = build_engine(_cached_onnx(path, log), meta.in_ch, meta.size, cfg, log=log)
        return Translator(TrtRunner(engine_file, cfg.max_batch), meta, "trt")
    raise InputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")


def evaluate_pairs(translator: Translator, pairs, on_progress=None, tile: int | None = None) -> list[dict]:
    """Per-pair metrics (see :mod:`.metrics`): ``[{"id", "pearson", "mae", "ssim"}, ...]``."""
    from cellxfer.translate.data import read_pair, to_unit
    from cellxfer.translate.metrics import score

    rows = []
    for pair in pairs:
        s, t = read_pair(pair)
        pred = to_unit(translator.translate(s, tile=tile))
        rows.append({"id": pair.id, **score(pred, t, translator.meta.target_norm)})
        if on_progress:
            on_progress(1)
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    keys = ("pearson", "mae", "ssim")
    return {k: float(np.nanmean([r[k] for r in rows])) if rows else float("nan") for k in keys}


def write_metrics_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """Per-image metrics of :func:`evaluate_pairs` as ``id,pearson,mae,ssim`` (6 decimals), written atomically."""
    from cellxfer.atomic import write_text

    lines = ["id,pearson,mae,ssim"] + [f"{r['id']},{r['pearson']:.6f},{r['mae']:.6f},{r['ssim']:.6f}" for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def translate_files(translator: Translator, paths: list[Path], out: Path, dtype: str = "uint16", tile: int | None = None,
                    overlap: int = 32, overwrite: bool = False, on_progress=None) -> dict:
    """Translate every image of ``paths`` (files or folders) into ``out/<stem>.tif``; finished outputs
    are skipped on rerun unless ``overwrite``; per-file failures are collected, not raised."""
    from cellxfer.imageio import read_image, write_tiff
    from cellxfer.translate.data import list_images, to_dtype

    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():  # the whole input is wrong, not one of its files: nothing is translated
            raise InputError(f"{p}: no such file or folder; give image files or folders of images")
        files.extend(list_images(p) if p.is_dir() else [p])
    written, skipped, failed = 0, 0, {}
    for f in files:
        target = out / f"{f.stem}.tif"
        if target.is_file() and not overwrite:
            skipped += 1
        else:
            try:
                write_tiff(target, to_dtype(translator.translate(read_image(f), tile=tile, overlap=overlap), dtype))
                written += 1
            except InputError as exc:
                failed[str(f)] = str(exc)
        if on_progress:
            on_progress(1)
    return {"files": len(files), "written": written, "skipped": skipped, "failed": failed}
