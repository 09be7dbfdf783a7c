"""Fourier domain adaptation (Yang & Soatto, CVPR 2020) for grayscale images.

The amplitude spectrum of the content image is replaced, inside a low-frequency window, by that of
a style image of the same size (a random crop of a real image, mirrored at the borders when the real
image is smaller); the content's phase is kept, so edges and cell positions stay put.

The window is symmetric about DC: frequencies ``|ky| <= b`` and ``|kx| <= b`` with
``b = floor(beta * min(H, W))``. Because it is closed under ``k -> -k`` and both amplitude spectra
are even, the mixed spectrum keeps Hermitian symmetry and the inverse transform is real. The reference
implementation mutated corners of a one-sided ``rfft`` as if it were two-sided, which swaps a
window at the highest horizontal frequencies too and is asymmetric; here the half-spectrum of
``rfft2`` is indexed as what it is (``kx = 0..W/2``), which is the same window as the full-FFT one.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from cellxfer.stylize.base import StyleSet, crop_like
from cellxfer.stylize.config import FDAConfig


def low_frequency_window(shape: tuple[int, int], beta: float) -> np.ndarray:
    """Boolean (H, W // 2 + 1) mask over ``rfft2`` bins: ``|ky| <= b`` and ``kx <= b``."""
    h, w = shape
    b = int(np.floor(beta * min(h, w)))
    ky = np.minimum(np.arange(h), h - np.arange(h))  # |integer frequency| of each row bin
    kx = np.arange(w // 2 + 1)
    return (ky[:, None] <= b) & (kx[None, :] <= b)


def fda(content: np.ndarray, style: np.ndarray, beta: float) -> np.ndarray:
    """FDA of float ``content`` (..., H, W) toward ``style`` of the same shape; float32, unclipped.
    ``beta = 0`` swaps only the DC term (the mean)."""
    content = np.asarray(content, dtype=np.float32)
    style = np.asarray(style, dtype=np.float32)
    if content.shape != style.shape:
        raise ValueError(f"content {content.shape} and style {style.shape} must have the same shape")
    h, w = content.shape[-2:]
    fc = scipy.fft.rfft2(content, axes=(-2, -1))
    fs = scipy.fft.rfft2(style, axes=(-2, -1))
    win = low_frequency_window((h, w), beta)
    amp = np.where(win, np.abs(fs), np.abs(fc))
    mixed = amp * np.exp(1j * np.angle(fc))
    return scipy.fft.irfft2(mixed, s=(h, w), axes=(-2, -1)).astype(np.float32)


def prepare(config: FDAConfig, style: StyleSet):
    return style


def stylize(images, style: StyleSet, config: FDAConfig, rngs) -> list[np.ndarray]:
    out = []
    for img, rng in zip(images, rngs):
        ref = crop_like(style.unit(style.pick(rng)), img.shape, rng)
        out.append(fda(img, ref, config.beta))
    return out
