"""Generic ONNX export of any ``torch.nn.Module`` plus a parity check against PyTorch.

Contracts:

- :func:`export_onnx` puts the module in eval mode (train-mode dropout/batch norm is the most common
  silent export mismatch), traces it on a float32 example of ``example_shape`` with the TorchScript
  exporter (it handles dynamic batch/height/width), stores ``metadata`` (str -> str, non-strings as JSON)
  in the model's ``metadata_props``, keeps all weights inside the one ``.onnx`` file and writes it
  atomically. Input name ``input``, output name ``output`` unless told otherwise.
- :func:`check_parity` runs the module and the ONNX file (onnxruntime, CPU) on the same float32 inputs
  and returns max absolute / relative differences; :func:`assert_parity` raises
  :class:`ExportParityError` when they exceed the tolerances.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cellxfer.errors import CellxferError, InputError

INPUT, OUTPUT = "input", "output"
DEFAULT_OPSET = 17


class ExportParityError(CellxferError):
    """The exported model does not reproduce PyTorch's outputs within tolerance."""


def ort_missing_message() -> str:
    return ("ONNX Runtime is not installed (cellxfer's core needs it): pip install onnxruntime "
            "(or onnxruntime-gpu for CUDA; install only one of them)")


def import_onnxruntime():
    """``onnxruntime`` or :class:`CellxferError` with the install line."""
    try:
        import onnxruntime
    except (ImportError, OSError):
        raise CellxferError(ort_missing_message()) from None
    return onnxruntime


def export_onnx(module, example_shape: Sequence[int], out: str | os.PathLike, metadata: dict | None = None,
                dynamic_axes: dict | None = None, opset: int = DEFAULT_OPSET,
                input_name: str = INPUT, output_name: str = OUTPUT) -> Path:
    """Export ``module`` (any ``torch.nn.Module`` taking one float32 tensor) to ``out``; see module docs.

    ``dynamic_axes`` defaults to a dynamic batch axis (0) on input and output; pass e.g.
    ``{"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}``
    for fully convolutional modules.
    """
    import onnx
    import torch

    from cellxfer.atomic import atomic_path

    out = Path(out)
    if dynamic_axes is None:
        dynamic_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}}
    was_training = module.training
    module.eval()
    try:
        example = torch.zeros(tuple(int(s) for s in example_shape), dtype=torch.float32)
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation/tracer notices
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(module, (example,), str(tmp), input_names=[input_name], output_names=[output_name],
                                  dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                                  dynamo=False)
            model = onnx.load(str(tmp))
            for key, value in (metadata or {}).items():
                entry = model.metadata_props.add()
                entry.key, entry.value = str(key), value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            onnx.checker.check_model(model)
            onnx.save(model, str(tmp))
    finally:
        module.train(was_training)
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict, read by ONNX Runtime (a core dependency; the ``onnx``
    package belongs to the train extra, and takes over a second to import). Read once per file version in a
    process (a command reads a model's metadata more than once: the shipped-export check, the engine)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file; export one with `cellxfer export --format onnx`")
    st = path.stat()
    props = _metadata(str(path.resolve()), st.st_mtime_ns, st.st_size)
    if isinstance(props, str):
        raise InputError(f"{path}: not a readable ONNX model ({props}); re-export it")
    return dict(props)


@functools.lru_cache(maxsize=16)
def _metadata(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...] | str:
    """The metadata pairs, or why the file does not load (the exception's type)."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
        return type(exc).__name__
    return tuple(sorted(session.get_modelmeta().custom_metadata_map.items()))


@dataclass(frozen=True)
class ParityReport:
    """Max absolute and relative (|a - b| / max(|a|, floor)) differences over ``n`` inputs."""

    max_abs: float
    max_rel: float
    n: int
    atol: float
    rtol: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.atol or self.max_rel <= self.rtol

    def line(self, label: str = "parity") -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{label}: {verdict} on {self.n} inputs, max abs diff {self.max_abs:.3g} (tol {self.atol:g}), "
                f"max rel diff {self.max_rel:.3g} (tol {self.rtol:g})")


def compare(reference: np.ndarray, other: np.ndarray, atol: float, rtol: float, floor: float = 1e-3) -> ParityReport:
    """Differences between two output arrays of the same shape (relative to ``max(|reference|, floor)``)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape:
        raise ExportParityError(f"output shapes differ: torch {a.shape}, exported {b.shape}")
    if not np.isfinite(b).all():
        return ParityReport(float("inf"), float("inf"), len(a), atol, rtol)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(a), floor)
    return ParityReport(float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), len(a), atol, rtol)


def torch_outputs(module, inputs: Iterable[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Run ``module`` in eval mode (its mode is restored after) on float32 batches; concatenated float32 outputs."""
    import torch

    was_training = module.training
    module.eval()
    outs = []
    try:
        with torch.inference_mode():
            for x in _batches(inputs, batch_size):
                outs.append(module(torch.from_numpy(x)).float().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(outs)


def ort_outputs(onnx_path: str | os.PathLike, inputs: Iterable[np.ndarray], batch_size: int = 16) -> np.ndarray:
    ort = import_onnxruntime()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0] for x in _batches(inputs, batch_size)])


def check_parity(module, onnx_path: str | os.PathLike, inputs: np.ndarray, atol: float = 1e-3,
                 rtol: float = 1e-3, runner=None) -> ParityReport:
    """Compare ``module`` (torch) with ``onnx_path`` (or any ``runner``: numpy batch -> numpy outputs) on
    ``inputs`` (float32, (N, ...)). The report is ok when max abs <= ``atol`` or max rel <= ``rtol``."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    ref = torch_outputs(module, [inputs])
    if runner is None:
        got = ort_outputs(onnx_path, [inputs])
    else:
        got = np.concatenate([np.asarray(runner(x), dtype=np.float32) for x in _batches([inputs], 16)])
    return compare(ref, got, atol, rtol)


def assert_parity(report: ParityReport, path: str | os.PathLike, label: str = "parity") -> ParityReport:
    if not report.ok:
        raise ExportParityError(
            f"{path}: exported model does not match PyTorch ({report.line(label)}); check for train-mode layers, "
            f"unsupported activations or custom ops, or loosen --atol/--rtol if the drift is expected (fp16)"
        )
    return report


def _batches(inputs: Iterable[np.ndarray], batch_size: int):
    for arr in inputs:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        for i in range(0, len(arr), batch_size):
            yield arr[i:i + batch_size]


def cached_export(model_path: str | os.PathLike, export, log=lambda s: None) -> Path:
    """The ONNX export of checkpoint ``model_path``: the ``.onnx`` beside it when that was exported from this
    very checkpoint (the default counter's export shipped in the package, :func:`shipped_export`), else the
    cache's (``<cache>/onnx/<stem>-<sha>.onnx``), made on first use by ``export(model_path, out, log)`` (which
    writes ``out`` with its own parity check, leaving no file on mismatch, and records ``source_sha256`` in the
    metadata). A cached file is used only when it reads as an ONNX model exported from this very checkpoint;
    else it is exported again, once, with a one-line warning (a truncated or foreign cache file never breaks a
    command). Used for every kind of model the engines run (counters and translators)."""
    from cellxfer.console import warn
    from cellxfer.export.trt import cache_folder
    from cellxfer.manifest import sha256_file

    model_path = Path(model_path)
    sha = sha256_file(model_path)
    shipped = shipped_export(model_path, sha)
    if shipped is not None:
        return shipped
    out = cache_folder("onnx") / f"{model_path.stem}-{sha[:16]}.onnx"
    if out.is_file():
        why = _cache_problem(out, sha)
        if why is None:
            return out
        warn(f"{out}: the cached ONNX export of {model_path} {why}; exporting it again")
        out.unlink(missing_ok=True)
    log(f"exporting {model_path} to ONNX once (parity-checked; cached at {out})")
    export(model_path, out, log)
    return out


def shipped_export(model_path: str | os.PathLike, source_sha256: str) -> Path | None:
    """The ``.onnx`` beside checkpoint ``model_path`` (same name) when it is an export of this very checkpoint
    (its metadata's ``source_sha256``), else None: how the default counter's ONNX, shipped in the package
    (``scripts/ship_default_onnx.py``), is used by a core install, without torch."""
    onnx_path = Path(model_path).with_suffix(".onnx")
    return onnx_path if onnx_path.is_file() and _cache_problem(onnx_path, source_sha256) is None else None


def _cache_problem(path: Path, source_sha256: str) -> str | None:
    """Why the cached export ``path`` cannot stand for the checkpoint with hash ``source_sha256``; None if it can."""
    try:
        props = read_metadata(path)
    except InputError:
        return "does not load (truncated or damaged)"
    if props.get("source_sha256") != source_sha256:
        return "was exported from another checkpoint"
    return None
