"""Export a translator (``train-translate`` / ``adapt`` run folder or ``.safetensors``) to ONNX with the shared
exporter of :mod:`cellxfer.export.onnx` (dynamic batch, height and width), its metadata under
``cellxfer_translator``, checked against torch; and the translator's ONNX cache entry (used by the engines
through :data:`cellxfer.translate.infer.TRANSLATOR`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellxfer.errors import InputError
from cellxfer.translator.model import TranslatorMeta


def export_translator(model: str | os.PathLike, out: str | os.PathLike | None = None, check: bool = True,
                      atol: float = 1e-3, rtol: float = 1e-3, seed: int = 0):
    """Export a translator to ONNX (dynamic batch, height, width) with the shared exporter of
    :mod:`cellxfer.export.onnx`, and check parity against torch on random inputs of the training
    size. Returns ``(onnx path, ParityReport or None)``; raises ``ExportParityError`` on mismatch."""
    from cellxfer.export.onnx import assert_parity, check_parity, export_onnx
    from cellxfer.manifest import sha256_file
    from cellxfer.translator.model import load_translator, resolve_model

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
        try:
            report = assert_parity(check_parity(g, out, x, atol=atol, rtol=rtol), out, "translator parity")
        except BaseException:  # a mismatching export leaves no file
            out.unlink(missing_ok=True)
            raise
    return out, report


def _cache_export(path: Path, out: Path, log=lambda s: None) -> None:
    log(export_translator(path, out)[1].line("translator parity"))


def onnx_translator_meta(path: str | os.PathLike) -> TranslatorMeta:
    """The :class:`TranslatorMeta` stored in an ONNX file exported by cellxfer."""
    from cellxfer.export.onnx import read_metadata

    props = read_metadata(path)
    if "cellxfer_translator" not in props:
        from cellxfer.weights import wrong_family

        raise wrong_family(path, props, "cellxfer_translator") or InputError(f"{path}: ONNX file without translator metadata; export one with `cellxfer export` "
                         f"from a translator, or give the translator's run folder")
    return TranslatorMeta.from_json(props["cellxfer_translator"], str(path))


def cached_onnx(path: Path, log=lambda s: None) -> Path:
    """The translator's ONNX export from the cache (:func:`cellxfer.export.onnx.cached_export`), made on first use."""
    from cellxfer.export.onnx import cached_export

    return cached_export(path, _cache_export, log=log)
