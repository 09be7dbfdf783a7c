"""Counting metrics over images (pure numpy; no model needed).

- MAE = mean |pred - true|, RMSE = sqrt(mean (pred - true)^2), over images.
- ACP (accuracy within 5%): share of images with ``|pred - true| <= 0.05 * true`` (an image with
  true count 0 counts only when the prediction is exactly 0).
- MAE per density bin by the *true* count: ``0-50`` = [0, 50), ``50-150`` = [50, 150), ``150+`` = [150, inf);
  a bin without images has MAE ``None``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellxfer.errors import InputError

BINS = (("0-50", 0.0, 50.0), ("50-150", 50.0, 150.0), ("150+", 150.0, float("inf")))
CSV_HEADER = ("image", "true", "predicted")


@dataclass
class Metrics:
    n: int
    mae: float
    rmse: float
    acp: float
    bins: dict  # name -> {"n": int, "mae": float | None}
    mean_true: float
    mean_pred: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def compute_metrics(true, pred, tolerance: float = 0.05) -> Metrics:
    """Metrics of predicted vs true counts (1-D, same length, at least one image)."""
    t = np.asarray(true, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"need equally long, non-empty count lists (got {t.size} and {p.size})")
    err = p - t
    bins = {}
    for name, lo, hi in BINS:
        sel = (t >= lo) & (t < hi)
        bins[name] = {"n": int(sel.sum()), "mae": float(np.abs(err[sel]).mean()) if sel.any() else None}
    return Metrics(n=int(t.size), mae=float(np.abs(err).mean()), rmse=float(np.sqrt((err ** 2).mean())),
                   acp=float((np.abs(err) <= tolerance * t).mean()), bins=bins,
                   mean_true=float(t.mean()), mean_pred=float(p.mean()))


def format_predictions(rows) -> str:
    """CSV text ``image,true,predicted`` of ``[(image, true, predicted), ...]``."""
    lines = [",".join(CSV_HEADER)]
    lines += [f"{name},{int(t)},{p:.3f}" for name, t, p in rows]
    return "\n".join(lines) + "\n"


def read_predictions(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(images, true, predicted)`` from a CSV with columns ``image,true,predicted``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such predictions file; give a CSV written by `cellxfer evaluate`")
    from cellxfer.dataset import read_table_text

    rows = [r for r in csv.reader(read_table_text(path).splitlines()) if r]
    if not rows or [c.strip().lower() for c in rows[0][:3]] != list(CSV_HEADER):
        raise InputError(f"{path}: needs the header 'image,true,predicted'")
    names, t, p = [], [], []
    for n, row in enumerate(rows[1:], start=2):
        try:
            names.append(row[0])
            t.append(float(row[1]))
            p.append(float(row[2]))
        except (ValueError, IndexError):
            raise InputError(f"{path}: line {n} is not 'image,true,predicted' ({','.join(row)}); fix that line") from None
    if not names:
        raise InputError(f"{path}: holds no rows")
    return names, np.array(t), np.array(p)


def metrics_from_csv(path: str | os.PathLike) -> Metrics:
    _, t, p = read_predictions(path)
    return compute_metrics(t, p)
