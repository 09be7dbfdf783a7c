"""TensorRT engines built from ONNX files: build config, optimisation profile, cache, runner.

TensorRT cannot be installed everywhere (it needs an NVIDIA GPU and NVIDIA's own package index), so
``tensorrt`` is imported lazily and every entry point first calls :func:`trt_unavailable_reason`.

- Precision: fp16 by default (``fp16=False`` for fp32); inputs and outputs stay float32.
- Optimisation profile: one profile ``min=(1, C, s0, s0)``, ``opt=(opt_batch, C, s1, s1)``,
  ``max=(max_batch, C, s2, s2)`` for the inputs ``count`` sends (:func:`profile_shapes`): windows of one
  size S (``s0 = s1 = s2 = S``) for count models; for fully convolutional density models the sides range
  from the training crop to the inference tile (:meth:`cellxfer.counter.head.Head.trt_sides`).
- Cache: ``<cache>/trt/<onnx stem>-<key>.engine`` with ``key`` a hash of GPU model, TensorRT version,
  ONNX file hash, precision and profile (:func:`cache_key`); a hit is reused, a miss is built and
  written atomically. ``<cache>`` is ``$CELLXFER_CACHE`` or ``~/.cache/cellxfer``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellxfer.errors import CellxferError, InputError

TRT_MESSAGE = "TensorRT needs an NVIDIA GPU and the `trt` extra; none found: use --engine onnx"


class TrtUnavailable(CellxferError):
    """TensorRT or a CUDA GPU is missing."""


def cache_dir() -> Path:
    """Root of cellxfer's caches: ``$CELLXFER_CACHE``, else ``$XDG_CACHE_HOME/cellxfer``, else ``~/.cache/cellxfer``."""
    if os.environ.get("CELLXFER_CACHE"):
        return Path(os.environ["CELLXFER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cellxfer"


def cache_folder(part: str, root: Path | None = None) -> Path:
    """``<cache>/<part>`` (``root``, else :func:`cache_dir`), made now. A cache root that cannot hold it (a file,
    no permission) is an :class:`InputError` naming the variable that chose it (``CELLXFER_CACHE``, else
    ``XDG_CACHE_HOME``) and the fix, not only the folder the user never named."""
    folder = (root or cache_dir()) / part
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        var = next((v for v in ("CELLXFER_CACHE", "XDG_CACHE_HOME") if root is None and os.environ.get(v)), None)
        where = f"{var}={os.environ[var]}" if var else f"the cache folder {folder.parent}"
        fix = f"set {var} to a folder you can write, or unset it" if var else "set CELLXFER_CACHE to a folder you can write"
        why = (exc.strerror or str(exc)).lower()
        raise InputError(f"{where}: cannot hold the cache's {part}/ ({exc.filename or folder}: {why}); {fix}") from None
    return folder


def import_tensorrt():
    """The ``tensorrt`` module, or None when it is missing or its native libraries fail to load."""
    try:
        import tensorrt
    except (ImportError, OSError):
        return None
    return tensorrt


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def trt_unavailable_reason(trt_module=..., cuda: bool | None = None) -> str | None:
    """None when TensorRT can run here, else the one-line message naming what is missing and the fix.

    ``trt_module`` / ``cuda`` override the detection (tests)."""
    trt = import_tensorrt() if trt_module is ... else trt_module
    if cuda is None:  # without tensorrt the GPU check (it imports torch) cannot change the answer
        cuda = _cuda_available() if trt is not None else True
    missing = [what for what, ok in (("the tensorrt module (pip install 'cellxfer[trt]')", trt is not None),
                                     ("a CUDA GPU", cuda)) if not ok]
    if not missing:
        return None
    return f"{TRT_MESSAGE} (missing: {' and '.join(missing)})"


def require_tensorrt():
    reason = trt_unavailable_reason()
    if reason is not None:
        raise TrtUnavailable(reason)
    return import_tensorrt()


@dataclass(frozen=True)
class TrtConfig:
    """How to build an engine. Batch sizes count windows (N of (N, C, S, S))."""

    fp16: bool = True
    min_batch: int = 1
    opt_batch: int = 24
    max_batch: int = 64
    workspace_mib: int = 2048

    def __post_init__(self):
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise InputError(f"TensorRT profile needs 1 <= min <= opt <= max batch, got "
                             f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"


def sides_of(window) -> tuple[int, int, int]:
    """``S`` or ``(min, opt, max)`` input sides -> ``(min, opt, max)``, checked."""
    sides = (int(window),) * 3 if np.ndim(window) == 0 else tuple(int(s) for s in window)
    if len(sides) != 3 or not 1 <= sides[0] <= sides[1] <= sides[2]:
        raise InputError(f"TensorRT profile needs 1 <= min <= opt <= max input side, got {window}")
    return sides


def profile_shapes(in_chans: int, window, config: TrtConfig) -> dict[str, tuple[int, int, int, int]]:
    """The optimisation profile's ``min`` / ``opt`` / ``max`` input shapes (N, C, side, side); ``window``
    is one side ``S`` or ``(min, opt, max)`` sides."""
    sides = sides_of(window)
    return {k: (b, int(in_chans), s, s)
            for (k, b), s in zip((("min", config.min_batch), ("opt", config.opt_batch), ("max", config.max_batch)), sides)}


def cache_key(gpu_name: str, trt_version: str, onnx_sha256: str, config: TrtConfig, in_chans: int, window) -> str:
    """16 hex digits identifying an engine: GPU model, TensorRT version, ONNX hash, precision, profile."""
    shapes = profile_shapes(in_chans, window, config)
    text = "|".join([gpu_name.strip(), trt_version.strip(), onnx_sha256, config.precision,
                     ";".join(f"{k}={v}" for k, v in sorted(shapes.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def engine_path(onnx_path: Path, key: str, root: Path | None = None) -> Path:
    return cache_folder("trt", root) / f"{Path(onnx_path).stem}-{key}.engine"


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(torch.cuda.current_device())


def build_engine(onnx_path: str | os.PathLike, in_chans: int, window, config: TrtConfig = TrtConfig(),
                 cache_root: Path | None = None, rebuild: bool = False, log=print) -> Path:
    """Build (or reuse from the cache) a serialized TensorRT engine for ``onnx_path``; return its path.
    ``window``: the input side ``S`` or ``(min, opt, max)`` sides of the profile."""
    from cellxfer.atomic import atomic_path
    from cellxfer.manifest import sha256_file

    trt = require_tensorrt()
    onnx_path = Path(onnx_path)
    key = cache_key(gpu_name(), trt.__version__, sha256_file(onnx_path), config, in_chans, window)
    out = engine_path(onnx_path, key, cache_root)
    if out.is_file() and not rebuild:
        log(f"TensorRT engine from cache: {out}")
        return out
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") \
            and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"{onnx_path}: TensorRT cannot parse this ONNX model ({errors}); re-export it or use --engine onnx")
    build_config = builder.create_builder_config()
    build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    if config.fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):
            log("warning: this GPU has no fast fp16; building fp16 anyway")
        build_config.set_flag(trt.BuilderFlag.FP16)  # weakly typed network: TensorRT may pick fp16 kernels
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(in_chans, window, config)
    profile.set_shape(network.get_input(0).name, shapes["min"], shapes["opt"], shapes["max"])
    build_config.add_optimization_profile(profile)
    log(f"building TensorRT engine ({config.precision}, batch {config.min_batch}..{config.max_batch}, "
        f"sides {shapes['min'][-1]}..{shapes['max'][-1]}); "
        f"this takes a minute or more, once per GPU model / TensorRT version / model")
    serialized = builder.build_serialized_network(network, build_config)
    if serialized is None:
        raise CellxferError(f"{onnx_path}: TensorRT failed to build an engine (see its log above); use --engine onnx")
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(serialized))
    return out


class TrtRunner:
    """Runs a serialized engine on the current CUDA device: float32 numpy (N, C, S, S) -> float32 (N, ...).

    Batches larger than the profile's max are split. Buffers are torch CUDA tensors (torch is a core
    dependency, so no pycuda is needed)."""

    def __init__(self, engine_file: str | os.PathLike, max_batch: int):
        import torch

        trt = require_tensorrt()
        self._torch = torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_file).read_bytes())
        if self.engine is None:
            raise InputError(f"{engine_file}: TensorRT cannot load this engine (built by another version?); "
                             f"delete it to rebuild")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.max_batch = max_batch
        self.stream = torch.cuda.Stream()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda(non_blocking=True)
            self.context.set_input_shape(self.input, tuple(x.shape))
            y = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(self.input, x.data_ptr())
            self.context.set_tensor_address(self.output, y.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise CellxferError("TensorRT execution failed; rerun with --engine onnx")
            out = y.cpu()
        self.stream.synchronize()
        return out.numpy()
