"""Localisation score: one-to-one matching of predicted to true points within a radius (Hungarian
assignment on distances, pairs farther than ``radius`` never match)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MatchResult:
    tp: int
    n_pred: int
    n_true: int

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        d = self.n_pred + self.n_true
        return 2 * self.tp / d if d else 1.0

    def __add__(self, other: "MatchResult") -> "MatchResult":
        return MatchResult(self.tp + other.tp, self.n_pred + other.n_pred, self.n_true + other.n_true)


def match_points(pred: np.ndarray, true: np.ndarray, radius: float = 5.0) -> MatchResult:
    """Maximum one-to-one matching of ``pred`` (N, 2) to ``true`` (M, 2) with distance <= ``radius``."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 2)
    if not len(p) or not len(t):
        return MatchResult(0, len(p), len(t))
    d = cdist(p, t)
    big = 1e6
    cost = np.where(d <= radius, d, big)
    r, c = linear_sum_assignment(cost)
    return MatchResult(int((cost[r, c] < big).sum()), len(p), len(t))
