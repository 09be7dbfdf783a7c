"""Stylizer and learn-style settings (numpy- and torch-free, so the CLI starts fast)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The token file in a learn-style run folder (written by :mod:`cellxfer.stylize.learn`).
TOKEN_FILE = "token.safetensors"


@dataclass(frozen=True)
class FDAConfig:
    """Fourier domain adaptation. ``beta``: half-width of the swapped low-frequency window as a
    fraction of the shorter image side (window ``|ky|, |kx| <= floor(beta * min(H, W))``)."""

    beta: float = 0.01
    batch_size: int = 64

    def __post_init__(self):
        if not 0 <= self.beta < 0.5:
            raise ValueError(f"beta {self.beta} must lie in [0, 0.5)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass(frozen=True)
class HistogramConfig:
    """Histogram matching. ``reference``: ``random`` (each content image matched to one style image
    drawn at random) or ``pooled`` (to the pooled intensities of all style images)."""

    reference: str = "random"
    batch_size: int = 64

    def __post_init__(self):
        if self.reference not in ("random", "pooled"):
            raise ValueError(f"reference {self.reference!r} must be 'random' or 'pooled'")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def _check_device(device: str, precision: str) -> None:
    if device != "auto" and not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device {device!r} must be auto, cpu or cuda[:N]")
    if precision not in ("auto", "fp32", "fp16"):
        raise ValueError(f"precision {precision!r} must be auto, fp32 or fp16")


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
    strength: float = 0.7
    steps: int = 50
    guidance: float = 10.0
    eta: float = 0.0
    prompt: str = "*"
    batch_size: int = 4
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        for name in ("token", "model", "clip"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required for InST (a local path)")
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength {self.strength} must lie in (0, 1]")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if self.eta < 0:
            raise ValueError("eta must be >= 0")
        _check_device(self.device, self.precision)


@dataclass(frozen=True)
class LearnStyleConfig:
    """InST style-token training (paper section 3.2). ``size``: side of the random square crop taken
    from a style image per step (resized up when the image is smaller); a multiple of 8.
    The token network: ``blocks`` x (self-attention, cross-attention to the CLIP image embedding,
    linear), ``heads`` x ``dim_head`` wide, as in the InST code."""

    model: str
    clip: str
    model_config: str = ""  # single-file --model only: a diffusers SD v1 folder holding its configs
    steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 1
    size: int = 512
    prompt: str = "*"
    heads: int = 8
    dim_head: int = 64
    blocks: int = 1
    dropout: float = 0.05
    save_every: int = 100
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.save_every < 1:
            raise ValueError("steps, batch_size and save_every must be at least 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.size < 8 or self.size % 8:
            raise ValueError(f"size {self.size} must be a positive multiple of 8")
        if self.heads < 1 or self.dim_head < 1 or self.blocks < 1:
            raise ValueError("heads, dim_head and blocks must be at least 1")
        _check_device(self.device, self.precision)


def resolve_token(path: str | os.PathLike) -> Path:
    """A token file, or a ``learn-style`` run folder holding ``token.safetensors``."""
    from cellxfer.weights import in_run_folder

    return in_run_folder(path, TOKEN_FILE, f"--token needs a learn-style run folder or its {TOKEN_FILE}")
