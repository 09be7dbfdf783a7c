"""Engine and runner types, the default model, and ``--engine auto`` selection.

Model files: a counter checkpoint (``.safetensors``, from train-count) works with every engine (onnx
and trt export it once into the cache); an exported ``.onnx`` works with onnx and trt.
``model_hash`` is the first 12 hex digits of the SHA-256 of the model file the user named, so rows
counted by different engines with the same model carry the same hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cellxfer.errors import InputError, PluginError

#: ``--engine auto`` tries these, in order: (engine name, device).
AUTO_ORDER = (("trt", "cuda"), ("onnx", "cuda"), ("onnx", "cpu"), ("torch", "auto"))

DEFAULT_MODEL_NAME = "default_counter.safetensors"


@dataclass
class Runner:
    """A loaded model: ``runner(batch)`` maps float32 (N, C, S, S) to float32 (N, ...)."""

    run: Callable[[Any], Any]  # numpy float32 (N, C, S, S) -> numpy (N, ...)
    meta: Any  # CounterMeta
    engine: str
    device: str
    model_path: Path
    model_hash: str
    info: dict = field(default_factory=dict)

    def __call__(self, batch):
        return self.run(batch)

    @property
    def label(self) -> str:
        return f"{self.engine} ({self.device})"


@dataclass(frozen=True)
class ModelFamily:
    """What the engines need to know about one kind of model (counter, translator) so that every engine
    runs every kind the same way: ``load_torch(checkpoint) -> (module in eval mode, meta)``;
    ``onnx_meta(onnx file) -> meta`` (from the file's metadata, :class:`InputError` when absent);
    ``cached_onnx(checkpoint, log) -> onnx file`` (the parity-checked export in the shared cache,
    :func:`cellxfer.export.onnx.cached_export`); ``trt_profile(meta) -> (in_chans, (min, opt, max) side)``.
    Invariant: a runner's output for a batch is the torch module's within the export's parity tolerance."""

    name: str
    load_torch: Callable[[Path], tuple[Any, Any]]
    onnx_meta: Callable[[Path], Any]
    cached_onnx: Callable[..., Path]
    trt_profile: Callable[[Any], tuple[int, tuple[int, int, int]]]

    def onnx_file(self, model_path: Path, log=lambda s: None) -> Path:
        """``model_path`` itself when it is an exported .onnx, else its cached export."""
        return model_path if model_kind(model_path) == "onnx" else self.cached_onnx(model_path, log=log)


def _counter_torch(path: Path):
    from cellxfer.counter.model import load_counter

    return load_counter(path)


def _counter_onnx_meta(path: Path):
    from cellxfer.export.counter import onnx_counter_meta

    return onnx_counter_meta(path)


def _counter_cached_onnx(path: Path, log=lambda s: None) -> Path:
    from cellxfer.export.counter import cached_onnx

    return cached_onnx(path, log=log)


def _counter_trt_profile(meta) -> tuple[int, tuple[int, int, int]]:
    from cellxfer.counter.head import head_of

    return meta.in_chans, head_of(meta).trt_sides(meta)


#: Counters (train-count checkpoints): the family ``count``, ``evaluate`` and ``load_runner`` default to.
COUNTER = ModelFamily("counter", _counter_torch, _counter_onnx_meta, _counter_cached_onnx, _counter_trt_profile)


@dataclass(frozen=True)
class Engine:
    """``available(device) -> None | reason``; ``load(model_path, device=..., family=COUNTER) -> Runner``."""

    name: str
    description: str
    available: Callable[..., str | None]
    load: Callable[..., Runner]


def default_model() -> Path:
    """The counter shipped in the package (``cellxfer/models/``)."""
    path = Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise InputError(f"{path}: the default counter is not installed; pass --model CKPT "
                         f"(train one with `cellxfer train-count` or scripts/train_default_counter.py)")
    return path


def model_hash(path: str | os.PathLike) -> str:
    from cellxfer.manifest import sha256_file

    return short_hash(sha256_file(path))


def short_hash(sha256: str) -> str:
    """The :func:`model_hash` of a model file whose SHA-256 (hex) is known already (a manifest's input entry)."""
    return sha256[:12]


def model_kind(path: Path, family: str = "counter") -> str:
    """``checkpoint`` (.safetensors) or ``onnx``; anything else is an :class:`InputError`."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "checkpoint"
    if suffix == ".onnx":
        return "onnx"
    raise InputError(f"{path}: unknown model file type; give a {family} checkpoint (.safetensors) or an exported .onnx")


def model_meta(path: Path):
    """The :class:`~cellxfer.counter.model.CounterMeta` of a checkpoint or exported ONNX file."""
    if model_kind(path) == "onnx":
        from cellxfer.export.counter import onnx_counter_meta

        return onnx_counter_meta(path)
    from cellxfer.counter.model import read_meta

    return read_meta(path)


def engines() -> dict[str, Engine]:
    from cellxfer.plugins import get_registry

    return get_registry().provided("cellxfer_engines")


def availability() -> list[tuple[str, str, str | None]]:
    """``(engine, device, reason it cannot run here or None)`` for every registered engine, in
    :data:`AUTO_ORDER` first (then any other engine, on ``auto``): what ``--engine auto`` would try, and why
    it passes over one (``cellxfer plugins`` prints it)."""
    known = engines()
    order = [(n, d) for n, d in AUTO_ORDER if n in known] + [(n, "auto") for n in sorted(known)
                                                            if n not in {a for a, _ in AUTO_ORDER}]
    return [(name, device, known[name].available(device)) for name, device in order]


def load_runner(model: str | os.PathLike | None, engine: str = "auto", log=lambda s: None,
                family: ModelFamily = COUNTER, **options) -> Runner:
    """Load ``model`` (None = the default counter) of ``family`` with ``engine`` (a name, or ``auto``:
    see :data:`AUTO_ORDER`); ``log`` receives one line saying which engine was picked and why. The one
    engine resolution of every command that runs a model (count, evaluate, translate, evaluate-translator)."""
    path = Path(model) if model is not None else default_model()
    if not path.is_file():
        raise InputError(f"{path}: no such model file; pass --model CKPT (.safetensors or .onnx)")
    if model_kind(path, family.name) == "checkpoint":
        from cellxfer.weights import refuse_other_family

        refuse_other_family(path, family.name)
    options.update(family=family, log=log)  # engines say what they build once (the ONNX export, the TRT engine)
    known = engines()
    wanted = options.pop("device", "auto") or "auto"
    if engine != "auto":
        if engine not in known:
            raise PluginError(f"--engine {engine}: unknown engine (available: auto, {', '.join(sorted(known))})")
        device = wanted
        reason = known[engine].available(device)
        if reason is not None:
            raise PluginError(reason)
        return known[engine].load(path, device=device, **options)
    skipped = []
    for name, device in AUTO_ORDER:
        if name not in known or (wanted != "auto" and device not in (wanted, "auto")):
            continue
        device = wanted if device == "auto" else device
        reason = known[name].available(device)
        if reason is None and name == "torch" and model_kind(path) == "onnx":
            reason = "torch cannot run an .onnx file"
        if reason is not None:
            skipped.append(f"{name}/{device}: {reason}")
            continue
        runner = known[name].load(path, device=device, **options)
        why = f"; not available here: {', '.join(s.split(':')[0] for s in skipped)} (`cellxfer plugins` says why)"
        log(f"engine auto -> {runner.label}{why if skipped else ''}")
        return runner
    raise PluginError(f"{path}: no engine can run this model ({'; '.join(skipped)})")
