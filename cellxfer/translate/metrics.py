"""Translator metrics on one predicted / true fluorescence pair (2-D float arrays of one shape).

* ``pearson``: Pearson correlation of the pixel intensities (the LM-ADDA paper's metric); scale- and
  offset-free, so it needs no intensity calibration. NaN when either image is constant.
* ``mae`` and ``ssim`` compare both images on the [0, 1] scale: the prediction as the network gives it
  ((y + 1) / 2), the truth normalised by its own (0.5, 99.5) percentiles (as for training) and clipped.
  SSIM: Wang et al. 2004, Gaussian window sd 1.5, K1 0.01, K2 0.03, data range 1, mean over pixels.
"""

from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    from scipy.ndimage import gaussian_filter

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = lambda z: gaussian_filter(z, sigma, truncate=3.5)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    saa = f(a * a) - mu_a ** 2
    sbb = f(b * b) - mu_b ** 2
    sab = f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def score(pred_unit: np.ndarray, truth: np.ndarray, target_norm=(0.5, 99.5)) -> dict[str, float]:
    """``{"pearson", "mae", "ssim"}`` for a prediction in [0, 1] and a raw (any dtype) true image."""
    from cellxfer.translate.data import normalize, to_unit

    t = to_unit(normalize(truth, target_norm, clip=True))
    return {"pearson": pearson(pred_unit, truth), "mae": mae(pred_unit, t), "ssim": ssim(pred_unit, t)}
