"""The onnx engine: ONNX Runtime with all graph optimisations, CPU or CUDA execution provider.

ONNX Runtime is a core dependency (``onnxruntime``, the CPU build); ``onnxruntime-gpu`` can take its place
(the two cannot be installed together). A counter
checkpoint (counter or translator: the runner's ``family``) is exported once into the shared cache
(:meth:`cellxfer.engines.base.ModelFamily.onnx_file`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cellxfer.engines.base import COUNTER, Engine, ModelFamily, Runner, model_hash
from cellxfer.executors import default_workers


def _ort():
    try:
        import onnxruntime
    except (ImportError, OSError):
        return None
    return onnxruntime


def _cuda_ok(ort) -> bool:
    """ONNX Runtime has the CUDA provider and the NVIDIA driver reports a GPU (onnxruntime-gpu lists CUDA
    even without one, and then falls back with errors)."""
    return "CUDAExecutionProvider" in ort.get_available_providers() and nvidia_gpus() > 0


def nvidia_gpus() -> int:
    """The NVIDIA GPUs the driver reports to this process (``cuInit`` + ``cuDeviceGetCount`` of libcuda,
    which honour ``CUDA_VISIBLE_DEVICES``); 0 without a driver. Torch-free, for the core install."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    n = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return 0
    return n.value


def available(device: str = "auto") -> str | None:
    ort = _ort()
    if ort is None:
        from cellxfer.export.onnx import ort_missing_message

        return ort_missing_message()
    if device == "cuda" and not _cuda_ok(ort):
        return ("ONNX Runtime has no usable CUDA provider (needs an NVIDIA GPU and onnxruntime-gpu in place of the "
                "core's onnxruntime: pip uninstall -y onnxruntime && pip install onnxruntime-gpu)")
    return None


#: input values per ``InferenceSession.run`` on the CPU: a batch is run a few inputs at a time (at least
#: one), whose activations stay in cache (the default density UNet, two 320-pixel tiles a run: ~20% less
#: time per tile than 24 at once; the outputs are the same, input by input, at any batch size)
CPU_CHUNK_VALUES = 2 * 320 * 320


def session(onnx_path: Path, device: str = "cpu", threads: int | None = None):
    """An ``InferenceSession`` with ORT_ENABLE_ALL; ``threads`` intra-op threads (default: one per core),
    which sleep between operators instead of spinning (spinning took the cores the decode threads need)."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or default_workers()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)


def load(model_path: Path, device: str = "auto", threads: int | None = None, log=lambda s: None,
         family: ModelFamily = COUNTER, **_) -> Runner:
    """The runner of ``model_path``. On the CPU a batch is cut into runs of ``CPU_CHUNK_VALUES`` input values,
    run side by side on ``threads`` threads (default: one per core) by a single-threaded session: the cores
    share whole inputs, with no hand-over inside each operator (which cost the two-thread session ~15% more
    CPU per tile); the outputs are those of one run of the whole batch, in order."""
    import numpy as np

    ort = _ort()
    device = ("cuda" if _cuda_ok(ort) else "cpu") if device == "auto" else device
    onnx_path = family.onnx_file(model_path, log=log)
    meta = family.onnx_meta(onnx_path)
    side_by_side = device != "cuda"
    sess = session(onnx_path, device, 1 if side_by_side else threads)
    name = sess.get_inputs()[0].name
    provider = sess.get_providers()[0]
    workers = (threads or default_workers()) if side_by_side else 1
    pool, pool_pid = None, None

    def one(x):
        return sess.run(None, {name: x})[0]

    def run(batch):
        nonlocal pool, pool_pid
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        chunk = max(1, CPU_CHUNK_VALUES // max(1, batch[0].size)) if side_by_side and len(batch) else len(batch)
        if len(batch) <= chunk:
            return one(batch)
        runs = [batch[i:i + chunk] for i in range(0, len(batch), chunk)]
        if workers == 1:
            return np.concatenate([one(x) for x in runs])
        if pool_pid != os.getpid():  # one pool per process (a forked child has none of its parent's threads)
            from concurrent.futures import ThreadPoolExecutor

            pool, pool_pid = ThreadPoolExecutor(workers, thread_name_prefix="cellxfer-onnx"), os.getpid()
        return np.concatenate(list(pool.map(one, runs)))

    return Runner(run=run, meta=meta, engine="onnx", device=provider.replace("ExecutionProvider", "").lower(),
                  model_path=model_path, model_hash=model_hash(model_path), info={"onnx": str(onnx_path)})


ENGINE = Engine("onnx", "ONNX Runtime, all graph optimisations (CPU, or CUDA with onnxruntime-gpu)", available, load)
