"""Histogram matching: give each content image the intensity distribution of the style images.

Exact quantile mapping: the content pixel values, ranked, are sent to the style distribution's values
at the same cumulative share (the inverse CDF, so output values are style values) (ties stay ties, order is kept), so bright cells stay brighter than the
background and every pixel stays where it was.
"""

from __future__ import annotations

import numpy as np

from cellxfer.stylize.base import StyleSet
from cellxfer.stylize.config import HistogramConfig


def quantiles(values: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, cumulative share at each) of an image, or of ``values`` with ``counts``."""
    if counts is None:
        values, counts = np.unique(np.asarray(values).ravel(), return_counts=True)
    cdf = np.cumsum(counts, dtype=np.float64)
    return np.asarray(values, dtype=np.float64), cdf / cdf[-1]


def match(image: np.ndarray, ref_values: np.ndarray, ref_cdf: np.ndarray) -> np.ndarray:
    """``image`` (float, any shape) mapped through the reference's quantile function: each distinct
    value, at cumulative share ``q``, becomes the smallest reference value whose share is ``>= q``.
    With distinct content values and equal pixel counts the output histogram is the reference's exactly."""
    x = image.ravel()
    codes = _codes16(x)
    if codes is not None:  # values on the 16-bit grid (any uint8/uint16 image): count, no sort
        counts = np.bincount(codes, minlength=65536)
        present = np.flatnonzero(counts)
        _, cdf = quantiles(present, counts[present])
        idx = np.minimum(np.searchsorted(ref_cdf, cdf - 1e-12, side="left"), len(ref_values) - 1)
        table = np.zeros(65536, dtype=np.float32)
        table[present] = ref_values[idx]
        return table[codes].reshape(image.shape)
    vals, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    _, cdf = quantiles(vals, counts)
    idx = np.minimum(np.searchsorted(ref_cdf, cdf - 1e-12, side="left"), len(ref_values) - 1)
    return ref_values[idx].astype(np.float32)[inv].reshape(image.shape)


def _codes16(x: np.ndarray) -> np.ndarray | None:
    """``round(x * 65535)`` as integers when that is lossless (x on the 1/65535 grid), else None."""
    if x.size == 0 or x.min() < 0 or x.max() > 1:
        return None
    scaled = x.astype(np.float64) * 65535.0
    codes = np.rint(scaled)
    if np.abs(scaled - codes).max() > 0.05:  # float32 k/255 is within 0.004 of the grid
        return None
    return codes.astype(np.intp)


def prepare(config: HistogramConfig, style: StyleSet):
    refs = [quantiles(style.unit(i)) for i in range(len(style))]
    if config.reference == "pooled":
        vals, counts = np.unique(np.concatenate([style.unit(i).ravel() for i in range(len(style))]), return_counts=True)
        return [quantiles(vals, counts)]
    return refs


def stylize(images, refs, config: HistogramConfig, rngs) -> list[np.ndarray]:
    out = []
    for img, rng in zip(images, rngs):
        values, cdf = refs[int(rng.integers(0, len(refs)))] if len(refs) > 1 else refs[0]
        out.append(match(img, values, cdf))
    return out
