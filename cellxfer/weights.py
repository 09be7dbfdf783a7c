"""Model files: a module's ``state_dict`` plus string metadata in one safetensors file, written atomically.

Counters (:mod:`cellxfer.counter.model`) and translators (:mod:`cellxfer.translate.model`) both store
their meta dataclass as JSON under their own metadata key through :func:`save_module`.
"""

from __future__ import annotations

import os
from pathlib import Path


def save_module(path: str | os.PathLike, module, metadata: dict[str, str]) -> Path:
    """Write ``module``'s weights (CPU, contiguous) and ``metadata`` to ``path`` atomically."""
    from safetensors.torch import save_file

    from cellxfer.atomic import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)
