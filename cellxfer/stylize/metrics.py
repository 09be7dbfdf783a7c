"""Domain-gap figures that need no pretrained network.

Both compare two sets of 2-D float images in [0, 1] (see :func:`cellxfer.stylize.base.to_unit`):

* :func:`intensity_gap`: 1-Wasserstein distance between the pooled pixel-intensity distributions of the
  two sets, in 8-bit grey levels (the mean absolute shift needed to turn one histogram into the other).
* :func:`spectrum_gap`: mean absolute difference, over radial frequency bins (0, 0.5] cycles/pixel,
  of the sets' mean log10 radially averaged power spectra (power per pixel, DC excluded), in decades.
  Frequencies are normalised, so images of different sizes compare.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

BINS = 4096  # histogram bins over [0, 1]: finer than 8 bits, coarser than 16


def pooled_histogram(images: Iterable[np.ndarray], bins: int = BINS) -> np.ndarray:
    """Normalised histogram (``bins``,) of all pixels of ``images`` over [0, 1]."""
    hist = np.zeros(bins, dtype=np.float64)
    for im in images:
        idx = np.clip((np.asarray(im, dtype=np.float64).ravel() * bins).astype(np.int64), 0, bins - 1)
        hist += np.bincount(idx, minlength=bins)
    return hist / max(hist.sum(), 1.0)


def intensity_gap(a: Iterable[np.ndarray], b: Iterable[np.ndarray], bins: int = BINS) -> float:
    """W1 distance between the pooled intensity distributions of ``a`` and ``b``, in 8-bit grey levels."""
    ha, hb = pooled_histogram(a, bins), pooled_histogram(b, bins)
    return float(np.abs(np.cumsum(ha) - np.cumsum(hb)).sum() / bins * 255.0)


def radial_power_spectrum(image: np.ndarray, nbins: int = 32) -> np.ndarray:
    """log10 of the mean power per pixel in ``nbins`` equal radial bins of normalised frequency
    (0, 0.5] cycles/pixel (corners beyond 0.5 dropped, DC excluded); float64 (nbins,)."""
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2 / (h * w)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    r = np.sqrt(fy ** 2 + fx ** 2)
    idx = np.ceil(r / 0.5 * nbins).astype(np.int64) - 1  # (0, 0.5/n] -> bin 0; DC -> -1
    keep = (idx >= 0) & (idx < nbins)
    sums = np.bincount(idx[keep], weights=power[keep], minlength=nbins)
    counts = np.bincount(idx[keep], minlength=nbins)
    return np.log10(sums / np.maximum(counts, 1) + 1e-20)


def mean_spectrum(images: Iterable[np.ndarray], nbins: int = 32) -> np.ndarray:
    specs = [radial_power_spectrum(im, nbins) for im in images]
    return np.mean(specs, axis=0)


def spectrum_gap(a: Iterable[np.ndarray], b: Iterable[np.ndarray], nbins: int = 32) -> float:
    """Mean |difference| of the two sets' mean log10 radial power spectra, in decades."""
    return float(np.mean(np.abs(mean_spectrum(a, nbins) - mean_spectrum(b, nbins))))


def tiles(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping ``size`` x ``size`` tiles from the top-left (partial tiles dropped)."""
    h, w = image.shape
    return [image[y:y + size, x:x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]
