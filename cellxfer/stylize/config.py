"""Stylizer and learn-style settings (numpy- and torch-free, so the CLI starts fast)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cellxfer.bounds import BATCH, DEVICE, LR, STEPS, OutOfRange, check_fields, ranged

#: The token file in a learn-style run folder (written by :mod:`cellxfer.stylize.learn`).
TOKEN_FILE = "token.safetensors"

PRECISION = dict(choices=("auto", "fp32", "fp16"))


@dataclass(frozen=True)
class FDAConfig:
    """Fourier domain adaptation. ``beta``: half-width of the swapped low-frequency window as a
    fraction of the shorter image side (window ``|ky|, |kx| <= floor(beta * min(H, W))``)."""

    beta: float = ranged(0.01, ge=0, lt=0.5)
    batch_size: int = ranged(64, **BATCH)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class HistogramConfig:
    """Histogram matching. ``reference``: ``random`` (each content image matched to one style image
    drawn at random) or ``pooled`` (to the pooled intensities of all style images)."""

    reference: str = ranged("random", choices=("random", "pooled"))
    batch_size: int = ranged(64, **BATCH)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class InSTConfig:
    """InST inference (paper section 3.3). Paths are local: ``model`` a Stable Diffusion v1 diffusers
    folder or single-file checkpoint, ``clip`` a CLIP image-encoder folder, ``token`` a file written by
    ``learn-style``. ``strength`` x ``steps`` DDIM steps are run (default 0.7 x 50 = 35).
    ``precision`` auto = fp16 on CUDA, fp32 on the CPU."""

    token: str = ""
    model: str = ""
    clip: str = ""
    model_config: str = ""  # single-file --model only: a diffusers SD v1 folder holding its configs
    strength: float = ranged(0.7, gt=0, le=1)
    steps: int = ranged(50, ge=1, le=10_000, multiple_of=1)
    guidance: float = ranged(10.0, ge=0, le=1000)
    eta: float = ranged(0.0, ge=0, le=1)
    prompt: str = "*"
    batch_size: int = ranged(4, **BATCH)
    device: str = ranged("auto", **DEVICE)
    precision: str = ranged("auto", **PRECISION)

    def __post_init__(self):
        check_fields(self)
        for name in ("token", "model", "clip"):
            if not getattr(self, name):
                raise OutOfRange(f"--{name} is required for InST (a local path)")


@dataclass(frozen=True)
class LearnStyleConfig:
    """InST style-token training (paper section 3.2). ``size``: side of the random square crop taken
    from a style image per step (resized up when the image is smaller); a multiple of 8.
    The token network: ``blocks`` x (self-attention, cross-attention to the CLIP image embedding,
    linear), ``heads`` x ``dim_head`` wide, as in the InST code."""

    model: str
    clip: str
    model_config: str = ""  # single-file --model only: a diffusers SD v1 folder holding its configs
    steps: int = ranged(1000, **STEPS)
    lr: float = ranged(1e-4, **LR)
    batch_size: int = ranged(1, **BATCH)
    size: int = ranged(512, ge=8, le=4096, multiple_of=8)
    prompt: str = "*"
    heads: int = ranged(8, ge=1, le=64, multiple_of=1)
    dim_head: int = ranged(64, ge=1, le=1024, multiple_of=1)
    blocks: int = ranged(1, ge=1, le=64, multiple_of=1)
    dropout: float = ranged(0.05, ge=0, lt=1)
    save_every: int = ranged(100, **STEPS)
    device: str = ranged("auto", **DEVICE)
    precision: str = ranged("auto", **PRECISION)

    def __post_init__(self):
        check_fields(self)


def resolve_token(path: str | os.PathLike) -> Path:
    """A token file, or a ``learn-style`` run folder holding ``token.safetensors``."""
    from cellxfer.weights import in_run_folder

    return in_run_folder(path, TOKEN_FILE, f"--token needs a learn-style run folder or its {TOKEN_FILE}")


def model_paths(config) -> list[str]:
    """The local model folders or files a stylize or learn-style ``config`` reads (``--model``, ``--clip``,
    ``--model-config``; none for weight-free stylizers): inputs its ``--out`` may not be, nor write into."""
    return [v for v in (getattr(config, k, "") for k in ("model", "clip", "model_config")) if v]
