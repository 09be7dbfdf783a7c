"""Export a counter checkpoint (``.safetensors`` from train-count) to ONNX or a TensorRT engine.

The ONNX file carries everything ``cellxfer count`` needs in its metadata (:data:`META_KEYS`): the
full :class:`~cellxfer.counter.model.CounterMeta` as JSON under ``cellxfer``, plus readable copies of
the window size, normalisation, architecture and cellxfer version. Input ``input`` float32
(N, in_chans, window, window) with a dynamic batch axis; output ``output`` (N, 1).

After export the model is checked against PyTorch on random windows and on real windows (cut from
``check_images`` when given, else from Syn-HC synthetic images rendered on the fly); the export fails
(and leaves no file) when the max abs and rel differences both exceed the tolerances.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellxfer.counter.head import head_of
from cellxfer.errors import InputError
from cellxfer.export.config import ExportConfig  # noqa: F401 - its home was here
from cellxfer.export.onnx import ParityReport, assert_parity, check_parity, export_onnx, read_metadata

META_KEYS = ("cellxfer", "cellxfer_version", "arch", "window", "in_chans", "normalization", "output", "source_sha256")


@dataclass
class ExportResult:
    out: Path
    format: str
    parity: dict[str, ParityReport] = field(default_factory=dict)
    engine: Path | None = None
    seconds: float = 0.0


def counter_metadata(meta, source_sha256: str = "") -> dict[str, str]:
    import json

    import cellxfer

    return {
        "cellxfer": meta.to_json(),
        "cellxfer_version": cellxfer.__version__,
        "arch": meta.arch,
        "window": str(meta.window),
        "in_chans": str(meta.in_chans),
        "normalization": json.dumps({"low": meta.normalization.low, "high": meta.normalization.high,
                                     "eps": meta.normalization.eps, "clip": meta.normalization.clip}),
        "output": meta.output,
        "source_sha256": source_sha256,
    }


def onnx_counter_meta(path: str | os.PathLike):
    """The :class:`CounterMeta` stored in an ONNX file exported by cellxfer."""
    from cellxfer.counter.model import CounterMeta

    props = read_metadata(path)
    if "cellxfer" not in props:
        from cellxfer.weights import wrong_family

        raise wrong_family(path, props, "cellxfer") or InputError(
            f"{path}: ONNX file without cellxfer metadata; export it with `cellxfer export --format onnx`")
    return CounterMeta.from_json(props["cellxfer"], str(path))


def parity_windows(meta, check_images=(), n_random: int = 8, n_real: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"random": ..., "real": ...}`` float32 windows (N, C, S, S) for the parity check.

    Random: uniform noise over the normalised range plus a few bright blobs. Real: normalised windows
    cut from ``check_images`` (files or folders), else from Syn-HC images (label ``synthetic``)."""
    from cellxfer.counter.windows import window_batch

    rng = np.random.default_rng(seed)
    s, c = meta.window, meta.in_chans
    random = rng.uniform(-0.2, 1.5, size=(n_random, c, s, s)).astype(np.float32)
    out = {"random": random}
    images = []
    if check_images:
        from cellxfer.inputs import expand_inputs
        from cellxfer.imageio import read_image

        files, _ = expand_inputs([str(p) for p in check_images], recursive=True)
        if not files:
            raise InputError(f"{check_images[0]}: no images for the parity check; give TIFF/PNG files or a folder")
        images = [read_image(f) for f in files[:4]]
        label = "real"
    else:
        from cellxfer.synth import synhc
        from cellxfer.synth.base import image_rng

        config = synhc.SynHCConfig(size=max(s, 256))
        context = synhc.prepare(config)
        images = [synhc.render(config, context, image_rng(seed, i))[0] for i in range(2)]
        label = "synthetic"
    windows = np.concatenate([window_batch(meta.normalization.apply(im), s, c) for im in images])
    out[label] = windows[:n_real]
    return out


def export_counter(config: ExportConfig, log=print) -> ExportResult:
    """Export ``config.model`` to ONNX (and a TensorRT engine for ``format="trt"``) with parity checks."""
    from cellxfer.counter.model import load_counter
    from cellxfer.manifest import sha256_file

    t0 = time.perf_counter()
    if config.format not in ("onnx", "trt"):
        raise InputError(f"--format {config.format}: unknown format; use onnx or trt")
    if config.format == "trt":  # fail fast, before the export work
        from cellxfer.export.trt import TrtConfig, require_tensorrt

        trt_config = TrtConfig(fp16=config.fp16, opt_batch=config.opt_batch, max_batch=config.max_batch)
        require_tensorrt()
    model_path = Path(config.model)
    module, meta = load_counter(model_path)
    out = Path(config.out)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out {out}: the exported file must end in .onnx")
    export_onnx(module, (1, meta.in_chans, meta.window, meta.window), out,
                metadata=counter_metadata(meta, sha256_file(model_path)), opset=config.opset,
                dynamic_axes=head_of(meta).dynamic_axes())
    result = ExportResult(out=out, format=config.format)
    try:
        windows = parity_windows(meta, config.check_images, config.n_random, seed=config.seed)
        for label, x in windows.items():
            report = check_parity(module, out, x, config.atol, config.rtol)
            log(report.line(f"onnx vs torch, {label} windows"))
            result.parity[f"onnx/{label}"] = assert_parity(report, out, f"onnx vs torch, {label} windows")
        if head_of(meta).fully_convolutional:  # also check a size other than the window
            x = np.random.default_rng(config.seed).uniform(-0.2, 1.5, (2, meta.in_chans, meta.window + 37, meta.window + 61))
            report = check_parity(module, out, x.astype(np.float32), config.atol, config.rtol)
            log(report.line("onnx vs torch, other-size inputs"))
            result.parity["onnx/other-size"] = assert_parity(report, out, "onnx vs torch, other-size inputs")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if config.format == "trt":
        from cellxfer.export.trt import TrtRunner, build_engine

        engine = build_engine(out, meta.in_chans, head_of(meta).trt_sides(meta), trt_config, log=log)
        runner = TrtRunner(engine, trt_config.max_batch)
        # fp16 drifts more than fp32: compare with a looser floor for fp16 engines
        atol, rtol = (max(config.atol, 0.05), max(config.rtol, 0.02)) if config.fp16 else (config.atol, config.rtol)
        for label, x in windows.items():
            report = check_parity(module, None, x, atol, rtol, runner=runner)
            log(report.line(f"trt vs torch, {label} windows"))
            result.parity[f"trt/{label}"] = assert_parity(report, engine, f"trt vs torch, {label} windows")
        if config.engine_out is not None:
            import shutil

            from cellxfer.atomic import atomic_path

            with atomic_path(config.engine_out) as tmp:
                shutil.copyfile(engine, tmp)
            engine = Path(config.engine_out)
        result.engine = engine
    result.seconds = time.perf_counter() - t0
    return result


def cached_onnx(model_path: str | os.PathLike, log=lambda s: None) -> Path:
    """The counter's ONNX export from the cache (:func:`cellxfer.export.onnx.cached_export`), made on first
    use with the random-window parity check (:func:`_export_quiet`)."""
    from cellxfer.export.onnx import cached_export

    return cached_export(model_path, _export_quiet, log=log)


def _export_quiet(model_path: Path, out: Path, log=lambda s: None) -> None:
    """Export with only the random-window parity check (no Syn-HC render): used for the ONNX cache."""
    from cellxfer.counter.model import load_counter
    from cellxfer.manifest import sha256_file

    cfg = ExportConfig(model=Path(model_path), out=Path(out))
    module, meta = load_counter(cfg.model)
    export_onnx(module, (1, meta.in_chans, meta.window, meta.window), cfg.out,
                metadata=counter_metadata(meta, sha256_file(cfg.model)), opset=cfg.opset,
                dynamic_axes=head_of(meta).dynamic_axes())
    try:
        x = np.random.default_rng(0).uniform(-0.2, 1.5, size=(4, meta.in_chans, meta.window, meta.window))
        assert_parity(check_parity(module, cfg.out, x.astype(np.float32), cfg.atol, cfg.rtol), cfg.out)
    except BaseException:
        cfg.out.unlink(missing_ok=True)
        raise


def _default_out(model, translator: bool) -> Path:
    """``export``'s file when ``--out`` is not given: ``counter.onnx``, or the translator's file with ``.onnx``."""
    if not translator:
        return Path("counter.onnx")
    from cellxfer.translator.model import resolve_model

    return resolve_model(model).with_suffix(".onnx")


def export_model(config: ExportConfig, log=print) -> ExportResult:
    """``cellxfer export``: ``config.model`` is a counter (:func:`export_counter`, ONNX or TensorRT) or a
    translator (ONNX only, :func:`cellxfer.export.translator.export_translator`), told apart by the metadata
    each records (:func:`cellxfer.weights.artefact_kind`). ``config.out`` None: :func:`_default_out`, for either
    kind; an existing ``out`` is replaced only with ``config.overwrite``."""
    from dataclasses import replace

    from cellxfer.outputs import refuse_existing
    from cellxfer.weights import artefact_kind

    translator = artefact_kind(config.model) == "translator"
    if translator and config.format != "onnx":
        raise InputError(f"{config.model}: translators export with --format onnx; `translate --engine trt` builds their TensorRT engine")
    config = replace(config, out=Path(config.out or _default_out(config.model, translator)))
    inputs = [config.model, *config.check_images]
    refuse_existing(config.out, "--out", config.overwrite, inputs=inputs)
    refuse_existing(config.engine_out, "--engine-out", config.overwrite, inputs=[*inputs, config.out])
    if not translator:
        return export_counter(config, log=log)
    from cellxfer.export.translator import export_translator

    t0 = time.perf_counter()
    path, report = export_translator(config.model, config.out, atol=config.atol, rtol=config.rtol)
    if report is not None:
        log(f"{path}: {report.line('translator parity')}")
    return ExportResult(path, "onnx", {"translator parity": report} if report else {}, seconds=time.perf_counter() - t0)

