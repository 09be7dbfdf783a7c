"""The classical baseline counter: Laplacian-of-Gaussian blob detection with fitted parameters.

:func:`build_log` makes a weight-free torch module (so ``count``, ``evaluate`` and ``export`` treat it
like any counter): input (N, 1, H, W) normalised image, output (N, 1, H, W) float32 with 1.0 at every
detected blob centre and 0 elsewhere (``CounterMeta.output == "density"``: its sum is the count).
A blob centre is a pixel whose scale-normalised response ``-sigma^2 * LoG`` is the maximum of its
``(2 * min_distance + 1)^2`` neighbourhood and above ``threshold``. The LoG is computed separably
(``G''(y) G(x) + G(y) G''(x)``) on the image mirrored at its borders (``reflect``: the border pixel is
not repeated), so a border looks like more of the same image, not like an edge against black: no blob is
invented along the border of a sparse, noisy image. Tiles stitched with a margin of at least
``4 * sigma + min_distance`` equal the whole-image result (tiles pad past the image by the same
mirroring, :func:`cellxfer.density.stitch.cut_tiles`).

:func:`fit_log` picks ``sigma`` and ``min_distance`` from a grid (``min_distance`` about 1, 1.5 or 2
sigma: a larger one keeps a textured nucleus from answering twice) and ``threshold`` by exhaustive
search over the observed peak responses, minimising the whole-image count MAE on labelled images; the
fit computes the same responses with scipy on a thread pool (:func:`log_response`), about 0.05 s per
600x800 image and sigma on one core (measured for sigma 4). A LoG answers one nucleus size, so
:func:`train_log` fits it on its training images resized to their median nucleus diameter (then normalised),
as ``count --diameter auto`` resizes every image it counts (:meth:`cellxfer.scale.DiameterPolicy.scale`).
"""

from __future__ import annotations

import math
import numpy as np

SIGMAS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)


def _kernels(sigma: float):
    r = int(math.ceil(4 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    d2 = g * (x ** 2 - sigma ** 2) / sigma ** 4
    return g.astype(np.float32), d2.astype(np.float32)


def build_log(meta):
    """LoG blob detector for ``meta.arch_options`` (sigma, threshold, min_distance)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    o = meta.arch_options or {}
    sigma, thr = float(o.get("sigma", 3.0)), float(o.get("threshold", 0.1))
    md = int(o.get("min_distance", max(1, round(sigma))))

    class LoGCounter(nn.Module):
        def __init__(self):
            super().__init__()
            g, d2 = _kernels(sigma)
            self.register_buffer("g", torch.from_numpy(g))
            self.register_buffer("d2", torch.from_numpy(d2))
            self.threshold, self.md, self.r = thr, md, len(g) // 2

        def response(self, x):
            x = x[:, :1]
            k = len(self.g)
            gy, gx = self.g.view(1, 1, k, 1), self.g.view(1, 1, 1, k)
            dy, dx = self.d2.view(1, 1, k, 1), self.d2.view(1, 1, 1, k)
            p = self.r
            x = _mirror(x, p)
            a = F.conv2d(F.conv2d(x, gx), dy)
            b = F.conv2d(F.conv2d(x, dx), gy)
            return -(sigma ** 2) * (a + b)

        def peaks(self, resp):
            k, p = 2 * self.md + 1, self.md  # a square max filter is a row max of a column max: 2k, not k^2
            m = F.max_pool2d(F.max_pool2d(resp, (k, 1), stride=1, padding=(p, 0)), (1, k), stride=1, padding=(0, p))
            return resp >= m

        def forward(self, x):
            resp = self.response(x)
            return (self.peaks(resp) & (resp > self.threshold)).to(x.dtype)

    return LoGCounter()


def _mirror(x, p: int):
    """``x`` (N, C, H, W) padded by ``p`` on every side by reflection (repeated for images smaller than
    ``p``, like numpy's ``reflect``; a single row or column is repeated)."""
    import torch.nn.functional as F

    while p > 0:
        step = min(p, x.shape[-1] - 1, x.shape[-2] - 1)
        if step < 1:
            return F.pad(x, (p, p, p, p), mode="replicate")
        x = F.pad(x, (step, step, step, step), mode="reflect")
        p -= step
    return x


def log_options(sigma: float, threshold: float, min_distance: int | None = None) -> dict:
    md = max(1, round(sigma)) if min_distance is None else int(min_distance)
    return {"sigma": float(sigma), "threshold": float(threshold), "min_distance": md,
            "margin": int(math.ceil(4 * sigma)) + md + 2}


def log_response(image: np.ndarray, sigma: float) -> np.ndarray:
    """float32 (H, W) scale-normalised response ``-sigma^2 * LoG`` of a normalised image: the same
    separable filters and mirrored borders as :func:`build_log`'s module, computed with scipy (no GIL)."""
    from scipy.ndimage import correlate1d

    g, d2 = _kernels(sigma)
    x = np.ascontiguousarray(image, dtype=np.float32)
    a = correlate1d(correlate1d(x, g, axis=1, mode="mirror"), d2, axis=0, mode="mirror")
    b = correlate1d(correlate1d(x, d2, axis=1, mode="mirror"), g, axis=0, mode="mirror")
    return np.float32(-(sigma ** 2)) * (a + b)


def _peak_values(image: np.ndarray, sigma: float, min_distance: int | None = None) -> np.ndarray:
    from scipy.ndimage import maximum_filter1d

    r = log_response(image, sigma)
    k = 2 * log_options(sigma, 0.0, min_distance)["min_distance"] + 1
    m = maximum_filter1d(maximum_filter1d(r, k, axis=0, mode="constant", cval=-np.inf), k, axis=1, mode="constant", cval=-np.inf)
    return np.sort(r[r >= m].astype(np.float64))


def peak_responses(images: list[np.ndarray], sigma: float, workers: int | None = None,
                   min_distance: int | None = None) -> list[np.ndarray]:
    """Per image, the sorted responses of all LoG local maxima (whole normalised images), on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    from cellxfer.executors import default_workers

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return list(pool.map(lambda im: _peak_values(im, sigma, min_distance), images))


def min_distances(sigma: float) -> list[int]:
    """The ``min_distance`` values :func:`fit_log` tries with ``sigma``: about 1, 1.5 and 2 sigma."""
    return sorted({max(1, round(f * sigma)) for f in (1.0, 1.5, 2.0)})


def fit_threshold(values: list[np.ndarray], counts: np.ndarray) -> tuple[float, float]:
    """``(threshold, MAE)`` minimising the MAE of ``#(values_i > threshold)`` vs ``counts``."""
    allv = np.unique(np.concatenate(values)) if values else np.zeros(1)
    cand = np.unique(np.quantile(allv, np.linspace(0, 1, 2001))) if len(allv) > 4000 else allv
    cand = np.concatenate([cand, [cand[-1] + 1.0]])
    n = np.stack([len(v) - np.searchsorted(v, cand, side="right") for v in values])  # (images, candidates)
    mae = np.abs(n - counts[:, None]).mean(axis=0)
    i = int(np.argmin(mae))
    # "> t" keeps the same peaks for any t in [cand[i], cand[i + 1]): take the middle (robust to float noise)
    t = cand[i] if i + 1 == len(cand) else 0.5 * (cand[i] + cand[i + 1])
    return float(t), float(mae[i])


def fit_log(images: list[np.ndarray], counts, sigmas=SIGMAS) -> dict:
    """Best ``{sigma, threshold, min_distance, margin, fit_mae, grid}`` on normalised images + true counts
    (ties: the first in the grid's order, smaller sigma and min_distance first)."""
    counts = np.asarray(counts, dtype=np.float64)
    grid = []
    for s in sigmas:
        for md in min_distances(s):
            t, mae = fit_threshold(peak_responses(images, s, min_distance=md), counts)
            grid.append({"sigma": s, "min_distance": md, "threshold": t, "mae": mae})
    best = min(grid, key=lambda g: g["mae"])
    return {**log_options(best["sigma"], best["threshold"], best["min_distance"]), "fit_mae": best["mae"], "grid": grid}


def _at_diameter(diameter: float):
    """``image -> Scaled``: the resize ``count --diameter auto`` applies to an image for a LoG counter of this
    ``diameter`` (:meth:`cellxfer.scale.DiameterPolicy.scale`), for :func:`cellxfer.train.data.load_domain`."""
    from cellxfer.counter.model import CounterMeta
    from cellxfer.scale import DiameterPolicy

    meta = CounterMeta(arch="log", output="density", diameter=diameter)
    return lambda image: DiameterPolicy("auto").scale(image, meta)


def train_log(config, on_epoch=None, on_step=None, on_start=None):
    """``train-count --arch log``: fit the LoG on the regime's labelled training images (real, or
    synthetic for ``--regime synthetic``; both for the mixed regimes); write the run folder like
    :func:`cellxfer.train.counter.train_counter` (best/last checkpoints, history.csv, state.pt, manifest.json), a
    :class:`cellxfer.runs.RunFolder` kept as a trained run is: the fit is its one epoch, and a rerun with the same
    settings whose ``state.pt`` records it keeps the run (nothing is fitted again); other settings are refused
    unless ``overwrite``. ``config`` is validated (:func:`cellxfer.train.counter.train_counter` calls this)."""
    from cellxfer.train.counter import EpochRecord, TrainCounterResult, run_folder

    with run_folder(config) as run:
        state = run.load_state()
        if state is None or state.get("epoch") != 1:  # a new run, or one stopped before its fit was saved
            run.write_manifest(complete=False)
            state = _fit_log_run(config, run)
            if on_epoch is not None:
                on_epoch(EpochRecord(**state["history"][-1]))
        run.write_manifest(fitted=state["fitted"], complete=True, result={
            "epochs": 1, "best": state["best"], "train_seconds": state["train_seconds"], "final_loss": state["fitted"]["fit_mae"]})
    return TrainCounterResult(run.out, 1, state["best"], state["train_seconds"])


def _fit_log_run(config, run) -> dict:
    """Fit the LoG of ``train_log``'s run, write its checkpoints and history, and save (and return) its resume
    state: the one epoch, ``history``, ``best``, ``train_seconds`` and ``fitted`` (plain data)."""
    import json
    import time
    from dataclasses import fields, replace

    from cellxfer.counter.model import CounterMeta, save_counter
    from cellxfer.train.counter import BEST, LAST, EpochRecord, domain_scale
    from cellxfer.train.data import load_domain

    norm = config.normalization()
    t0 = time.perf_counter()
    sources = [(p, n) for p, n in ((config.real, "real"), (config.synthetic, "synthetic"))
               if p is not None and (config.regime != "supervised" or n == "real")]
    doms = [load_domain(p, norm, n, config.exclude) for p, n in sources]
    scale = domain_scale(doms[0] if doms else None)
    if scale["diameter"]:  # fit on the images as count sees them: each resized to the diameter, then normalised
        doms = [load_domain(p, norm, n, config.exclude, scale=_at_diameter(scale["diameter"])) for p, n in sources]
    fitted = fit_log([im for d in doms for im in d.images], np.concatenate([d.counts for d in doms]))
    opts = {k: fitted[k] for k in ("sigma", "threshold", "min_distance", "margin")}
    meta = CounterMeta(arch="log", window=config.crop, output="density", normalization=norm, arch_options=opts,
                       **scale, extra={"regime": config.regime, "fit_mae": fitted["fit_mae"]})
    model = build_log(meta)
    val_mae = val_rmse = None
    if config.val is not None:
        from cellxfer.train.counter import predict_normalized

        val = load_domain(config.val, norm, "validation", config.exclude)
        err = predict_normalized(model, meta, val.images) - val.counts
        val_mae, val_rmse = float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))
    record = EpochRecord(1, "fit", 0, fitted["fit_mae"], val_mae, val_rmse, time.perf_counter() - t0)
    save_counter(run.path(BEST), model, replace(meta, extra={**meta.extra, "val_mae": val_mae}))
    save_counter(run.path(LAST), model, meta)
    run.write_history([record.__dict__], [f.name for f in fields(EpochRecord)])
    state = {"epoch": 1, "history": [record.__dict__], "best": {"epoch": 1, "val_mae": val_mae, "val_rmse": val_rmse},
             "train_seconds": round(record.seconds, 2),
             "fitted": json.loads(json.dumps(fitted, default=float))}  # plain data: the state loads weights_only
    run.save_state(state)
    return state
