"""Model files: a module's ``state_dict`` plus string metadata in one safetensors file, written atomically.

Counters (:mod:`cellxfer.counter.model`) and translators (:mod:`cellxfer.translator.model`) both store
their meta dataclass as JSON under their own metadata key: :func:`save_module` writes, :func:`read_metadata`
and :func:`load_weights` read, with one-line errors that end in ``hint`` (what file to give instead).
"""

from __future__ import annotations

import os
from pathlib import Path


def in_run_folder(path: str | os.PathLike, name: str, what: str) -> Path:
    """The file ``path``, or the file ``name`` inside ``path`` when it is a run folder (a trainer's
    ``--out``); :class:`InputError` ending in ``what`` ("give ...") when there is no such file."""
    from cellxfer.errors import InputError

    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise InputError(f"{path}: no such file; {what}")
    return path


def damaged_meta(source, detail: str):
    """The :class:`InputError` for a model file whose cellxfer metadata cannot be what cellxfer wrote
    (edited by hand, cut short, written by a broken tool): counting with it would fail or give other numbers."""
    from cellxfer.errors import InputError

    return InputError(f"{source}: its cellxfer metadata is damaged ({detail}); give the model file as cellxfer wrote "
                      f"it (train or export it again)")


def meta_object(text: str, source) -> dict:
    """The JSON object a model file's metadata ``text`` holds; :func:`damaged_meta` when it is not one."""
    import json

    try:
        d = json.loads(text)
    except ValueError as exc:
        raise damaged_meta(source, f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise damaged_meta(source, f"a JSON {type(d).__name__}, not an object")
    return d


def refuse_unknown(d: dict, source, unknown: list[str]) -> None:
    """The "upgrade cellxfer" :class:`InputError` when the metadata ``d`` has ``unknown`` fields: a newer
    cellxfer wrote them, and using the model without them would give other numbers."""
    from cellxfer.errors import InputError

    if unknown:
        import cellxfer

        raise InputError(f"{source}: written by cellxfer {d.get('version') or '(newer)'}; its metadata has "
                         f"{', '.join(unknown)}, which cellxfer {cellxfer.__version__} does not know; upgrade cellxfer")


def check_number(source, name: str, value, low: float = 0, high: float = float("inf"), whole: bool = False,
                 low_open: bool = True) -> None:
    """:func:`damaged_meta` unless ``value`` is a finite number (an integer when ``whole``) in ``(low, high]``
    (``[low, high]`` when not ``low_open``)."""
    import math

    kind = int if whole else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > low if low_open else value >= low) or value > high:
        shown = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise damaged_meta(source, f"{name} {value!r}: must be {'a whole number' if whole else 'a number'} in {shown}")


def save_module(path: str | os.PathLike, module, metadata: dict[str, str]) -> Path:
    """Write ``module``'s weights (CPU, contiguous) and ``metadata`` to ``path`` atomically."""
    from safetensors.torch import save_file

    from cellxfer.atomic import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)


def refuse_onnx(path: Path) -> None:
    """:class:`InputError` when ``path`` is an exported ONNX model where weights are needed (``ensemble``,
    ``adapt-count --model``, ``train-count --pretrained``, ``export --model``): the file and where its weights are."""
    from cellxfer.errors import InputError

    if path.suffix.lower() == ".onnx":
        raise InputError(f"{path}: is an exported ONNX model, not a checkpoint with weights to load; give the "
                         f".safetensors file it was exported from")


def read_metadata(path: str | os.PathLike, key: str, hint: str) -> str:
    """The metadata string under ``key``; :class:`InputError` when the file is missing, not
    safetensors, or has no such key."""
    from safetensors import safe_open

    from cellxfer.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file; {hint}")
    refuse_onnx(path)
    try:
        with safe_open(str(path), framework="numpy") as f:  # metadata only: no torch import
            keys = f.metadata() or {}
            text = keys.get(key)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise InputError(f"{path}: not a safetensors file ({exc}); {hint}") from None
    if text is None:
        raise wrong_family(path, keys, key) or InputError(f"{path}: safetensors file without cellxfer '{key}' "
                                                          f"metadata; {hint}")
    return text


_FAMILIES = {"cellxfer": ("a counter (from train-count)", "count and evaluate run counters"),
             "cellxfer_translator": ("a translator (from train-translate or adapt)",
                                     "translate and evaluate-translator run translators")}


def wrong_family(path, keys, wanted: str):
    """The :class:`InputError` for a model file of the other family than ``wanted`` (a translator given
    to ``evaluate``, a counter to ``translate``), naming what it is and where it goes; None when ``keys``
    (the file's metadata keys) name no other family. Safetensors and exported ONNX files alike."""
    from cellxfer.errors import InputError

    other = next((k for k in _FAMILIES if k != wanted and k in keys), None)
    if other is None:
        return None
    return InputError(f"{path}: is {_FAMILIES[other][0]}, not {_FAMILIES[wanted][0].split(' (')[0]}; give "
                      f"{_FAMILIES[wanted][0]} ({_FAMILIES[other][1]})")


#: The metadata key each kind of model file records its meta under (:func:`artefact_kind`).
COUNTER_KEY, TRANSLATOR_KEY = "cellxfer", "cellxfer_translator"
KINDS = {TRANSLATOR_KEY: "translator", COUNTER_KEY: "counter"}
#: The translator file in a train-translate/adapt run folder.
TRANSLATOR_FILE = "translator.safetensors"


def artefact_kind(path: str | os.PathLike) -> str | None:
    """What a model path is, from what it records: ``"translator"`` (a translator file, or a run folder
    holding ``translator.safetensors``), ``"counter"``, or None (missing, not safetensors, no cellxfer
    metadata: the loader of the expected kind then says what is wrong in one line)."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / TRANSLATOR_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:  # metadata only: no torch import
            keys = set(f.metadata() or {})
    except Exception:  # noqa: BLE001 - safetensors raises several types
        return None
    return next((kind for key, kind in KINDS.items() if key in keys), None)


def refuse_other_family(path: str | os.PathLike, wanted: str) -> None:
    """:func:`wrong_family`'s error, naming ``path``, when the checkpoint records a model of another kind than
    ``wanted`` (``counter``, ``translator``); nothing when it records ``wanted`` or nothing cellxfer knows (its
    loader says what is wrong). Checked before an engine reads the file or its cached export, so the line names
    the file given, not the export."""
    kind = artefact_kind(path)
    if kind is not None and kind != wanted:
        key_of = {k: key for key, k in KINDS.items()}
        raise wrong_family(path, {key_of[kind]: ""}, key_of[wanted])


def load_weights(module, path: str | os.PathLike, what: str):
    """Load ``path``'s weights into ``module`` and return it in eval mode; a shape/name mismatch is an
    :class:`InputError` naming ``what`` (the architecture the metadata recorded)."""
    from safetensors.torch import load_file

    from cellxfer.errors import InputError

    try:
        module.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit {what} ({str(exc).splitlines()[0]})") from None
    return module.eval()
