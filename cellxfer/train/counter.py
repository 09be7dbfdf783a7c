"""Train a counter in one of the paper's regimes (see :mod:`cellxfer.train.sampler`).

Run folder (``config.out``)::

    best.safetensors   weights of the epoch with the lowest validation MAE (save_counter format)
    last.safetensors   weights after the last finished epoch
    state.pt           resume state: weights, optimizer, epoch, history, best (one atomic file)
    history.csv        epoch, phase, steps, train loss (MSE), validation MAE/RMSE, seconds
    manifest.json      config, seed, inputs with hashes, versions, pretrained weights, result

A run folder (:class:`cellxfer.runs.RunFolder`): rerunning with the same settings and inputs continues
from ``state.pt`` (``epochs``, ``device`` may change), other settings are refused, ``overwrite`` starts over.

Determinism: the model is initialised from ``seed``; epoch ``e`` draws its crops, augmentation and mixing
from ``numpy.random.default_rng([seed, e])`` and seeds torch with ``(seed, e)`` too, so a run resumed
after epoch ``e`` continues exactly as an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from cellxfer.counter.model import CounterMeta
from cellxfer.errors import InputError
from cellxfer.train.config import LR_SCHEDULES, REGIMES, TrainConfig  # noqa: F401 - TrainConfig: part of this module's API
from cellxfer.train.sampler import epoch_batches, phase_of, steps_in_epoch

STATE, BEST, LAST, HISTORY = "state.pt", "best.safetensors", "last.safetensors", "history.csv"
HISTORY_COLUMNS = ("epoch", "phase", "steps", "loss", "val_mae", "val_rmse", "seconds")
#: Config fields that may differ when a run is resumed.
RESUMABLE_CHANGES = {"epochs", "resume", "overwrite", "out", "device"}


def lr_at(config: "TrainConfig", step: int, total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a run of ``total_steps`` steps.

    The schedule depends on the total, so a run resumed with a larger ``--epochs`` continues on the
    stretched curve (its learning rate jumps up once); give the final ``--epochs`` from the start.
    """
    if config.lr_schedule == "constant" or total_steps <= 1:
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@dataclass(frozen=True)
class TrainCounterResult:
    """What :func:`train_counter` returns (and its manifest's ``result`` records): the run folder ``out``
    (``best.safetensors``, ``last.safetensors``, ``history.csv``, ``manifest.json``), the epochs done, the best
    epoch (``{"epoch", "val_mae", "val_rmse"}``, None values without validation) and the training time."""

    out: Path
    epochs: int
    best: dict
    train_seconds: float


@dataclass
class EpochRecord:
    epoch: int
    phase: str
    steps: int
    loss: float
    val_mae: float | None
    val_rmse: float | None
    seconds: float


def _arch(name: str):
    from cellxfer.plugins import get_registry

    return get_registry().provided("cellxfer_counter_architectures").get(name)


def _fit_of(config: TrainConfig):
    """The ``fit`` of ``config``'s architecture when it is fitted rather than trained (the LoG), else None."""
    return getattr(_arch(config.arch), "fit", None)


def planned_epochs(config: TrainConfig) -> int:
    """The epochs a run of ``config`` goes through: 1, the fit, for an architecture that is fitted rather than
    trained (its ``fit``; ``--epochs`` does not apply), else :meth:`TrainConfig.total_epochs`."""
    return 1 if _fit_of(config) is not None else config.total_epochs()


def meta_for(config: TrainConfig) -> CounterMeta:
    from cellxfer.counter.head import head_for

    arch = _arch(config.arch)
    output = getattr(arch, "output", "count")
    options = dict(getattr(arch, "defaults", {}) or {})
    options.update(head_for(output, config.arch).train_options(config.sigma, config.crop))
    options.update((config.extra or {}).get("arch_options", {}))  # e.g. {"base": 16} for --arch density
    return CounterMeta(arch=config.arch, in_chans=1, window=config.crop, output=output, arch_options=options,
                       normalization=config.normalization(),
                       extra={"regime": config.regime, "trained_epochs": 0})


def domain_scale(domain, zoom: tuple[float, float] | None = None, most: int = 64) -> dict:
    """The nucleus size a counter records (``diameter``, ``diameter_range``: :func:`cellxfer.scale.training_scale`)
    over at most ``most`` evenly spaced training images of its target domain (real if given, else synthetic).
    With scale randomisation (``zoom`` = (lo, hi)) the model saw nuclei lo..hi times their size: the range
    widens to ``(p10 * lo, p90 * hi)`` and the diameter is multiplied by ``sqrt(lo * hi)`` (the middle)."""
    from cellxfer.scale import training_scale

    if domain is None or not len(domain):
        return {"diameter": None, "diameter_range": None}
    step = max(1, len(domain) // most)
    scale = training_scale(domain.images[::step][:most])
    if zoom is None or scale["diameter"] is None:
        return scale
    lo, hi = zoom
    d_lo, d_hi = scale["diameter_range"]
    return {"diameter": round(scale["diameter"] * (lo * hi) ** 0.5, 3), "diameter_range": (round(d_lo * lo, 3), round(d_hi * hi, 3))}


def _torch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, 7]).generate_state(1)[0])


def predict_normalized(model, meta: CounterMeta, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Whole-image counts of already normalised images by ``count``'s own splitter and merger
    (:func:`cellxfer.count.parts.count_normalized`; the counter's head picks them); the model is left in
    the mode it was in."""
    from cellxfer.count.parts import count_normalized
    from cellxfer.counter.model import torch_runner

    was_training = model.training
    first = next(iter(model.parameters()), None)
    runner = torch_runner(model, str(first.device) if first is not None else "cpu")  # (puts it in eval mode)
    try:
        return np.array([count_normalized(runner, meta, img, batch_size) for img in images])
    finally:
        model.train(was_training)


def _teacher(model, ema):
    """The weights to validate, save (and, adapting, pseudo-label with): the moving average when there is
    one, with the model's batch-norm statistics copied in (they are not averaged), else the model."""
    if ema is None:
        return model
    for b_ema, b in zip(ema.module.buffers(), model.buffers()):
        b_ema.copy_(b)
    return ema.module


def _head_bias(model, value: float) -> bool:
    import torch

    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    bias = getattr(head, "bias", None)
    if bias is None or bias.numel() != 1:
        return False
    with torch.no_grad():
        bias.fill_(value)
    return True


def _mean_crop_count(domains, crop: int) -> float:
    vals = []
    for d in domains:
        for m in d.maps:
            h, w = m.shape
            vals.append(float(m.sum()) * min(1.0, crop * crop / (h * w)))
    return float(np.mean(vals)) if vals else 0.0


def train_counter(config: TrainConfig, on_epoch: Callable[[EpochRecord], None] | None = None,
                  on_step: Callable[[int, float], None] | None = None,
                  on_start: Callable[[int, int], None] | None = None) -> TrainCounterResult:
    """Train (or resume) a counter; returns the run folder (see module docs).

    ``on_start(steps_done, steps_total)`` is called once the data is loaded, ``on_step(epoch, loss)``
    after every optimizer step, ``on_epoch(record)`` after every epoch. Under torchrun the run is
    data-parallel (:mod:`cellxfer.train.distributed`) and the callbacks run on rank 0 only.
    """
    from cellxfer.train.distributed import distributed

    import contextlib

    from cellxfer.budget import check_estimate

    config.validate()
    check_estimate(estimate(config))  # before any data is read: a crop and batch that cannot train here
    with distributed(config.device) as dist, contextlib.ExitStack() as stack:
        if not dist.is_main:
            on_epoch = on_step = on_start = None
        return _train_counter(config, dist, on_epoch, on_step, on_start, stack)


#: memory one training step takes per input pixel of a batch (forward and backward, fp32), measured as
#: peak RSS on the CPU at crops 128-512, batch 4: a timm CNN (efficientnet_b0) ~1700 bytes, the density
#: UNet ~900; an architecture that is fitted, not trained by gradient (log), is not estimated
TRAIN_BYTES_PER_PIXEL = {"density": 900}
DEFAULT_TRAIN_BYTES_PER_PIXEL = 1700


def estimate(config: TrainConfig):
    """What one training step costs (:class:`cellxfer.budget.Estimate`): the batch's crops times the
    architecture's bytes per pixel (:data:`TRAIN_BYTES_PER_PIXEL`), plus about 1 GB for torch and the
    model, on the device that trains; None for a fitted architecture."""
    from cellxfer.budget import Estimate

    if _fit_of(config) is not None:
        return None
    per_pixel = TRAIN_BYTES_PER_PIXEL.get(config.arch, DEFAULT_TRAIN_BYTES_PER_PIXEL)
    return Estimate(what=f"train-count --crop {config.crop} --batch-size {config.batch_size} (--arch {config.arch})",
                    fix="lower --crop (256 is the default; counting windows are crops) or --batch-size",
                    bytes=1e9 + config.batch_size * config.crop ** 2 * per_pixel, device=str(config.device))


def run_identity(config: TrainConfig) -> dict:
    """What must match for a training run to be continued: its settings, its seed and, when its labelled
    inputs hold images cellxfer leaves out (:func:`cellxfer.train.data.known_defects`), which ones."""
    from cellxfer.manifest import config_dict
    from cellxfer.train.data import known_defects

    identity = {"config": config_dict(config), "seed": config.seed}
    left_out = known_defects(config.real, config.val)
    if left_out:
        identity["left_out"] = left_out
    return identity


def run_folder(config: TrainConfig, main: bool = True):
    """The run folder of a training run (:class:`cellxfer.runs.RunFolder`): a rerun with the same
    settings and inputs continues it, ``config.overwrite`` starts again; ``RESUMABLE_CHANGES`` may differ.
    Its inputs, hashed: the labelled sets, the weights it starts from (``--pretrained``, adapt-count's
    ``--model``) and the target's image files (never its labels), so a rerun after any of them changed is
    refused, not continued on other data."""
    from cellxfer.manifest import config_dict
    from cellxfer.runs import RunFolder

    inputs = [p for p in (config.real, config.synthetic, config.val, config.pretrained) if p is not None]
    if config.unlabeled is not None:
        from cellxfer.train.adapt import target_files

        inputs.append((config.unlabeled, target_files(config.unlabeled)))
    return RunFolder(config.out, "adapt-count" if config.regime == "adapt" else "train-count", run_identity(config),
                     own=(BEST, LAST), inputs=inputs, overwrite=config.overwrite, mutable=RESUMABLE_CHANGES,
                     defaults=config_dict(TrainConfig()), main=main)


def _train_counter(config: TrainConfig, dist, on_epoch, on_step, on_start, stack) -> TrainCounterResult:
    import torch

    from cellxfer.counter.model import save_counter
    from cellxfer.manifest import config_dict
    from cellxfer.train.finite import check_finite_weights

    fit = _fit_of(config)
    if fit is not None:  # fitted (classical) architectures: no gradient training
        if dist.active:
            raise InputError(f"--arch {config.arch} is fitted, not trained by gradient descent; run it without torchrun")
        return fit(config, on_epoch=on_epoch, on_step=on_step, on_start=on_start)
    if config.regime == "finetune" and config.pre_epochs is None:  # pin the phase boundary for --resume
        config = replace(config, pre_epochs=config.epochs)
    cfg = config_dict(config)
    run = stack.enter_context(run_folder(config, dist.is_main))
    out, state = run.out, run.load_state()
    dist.check_batch(config.batch_size)
    dist.barrier()  # every rank has seen the folder as it was before rank 0 writes to it

    meta, real, syn, unlab, val = _load_data(config)
    parts = _Parts.build(config, meta, dist, state, [d for d in (real, syn) if d is not None], unlab is not None)
    model, ema = parts.model, parts.ema

    total = config.total_epochs()
    manifest_extra = parts.manifest_extra(real, syn, val, unlab, dist)

    def save_manifest(result: dict | None = None) -> None:
        run.write_manifest(run.manifest(**manifest_extra, complete=result is not None, result=result))

    if state is None:
        save_manifest()
    n_real, n_syn = len(real or unlab or ()), len(syn) if syn else 0
    all_steps, step = steps_total(config, n_real, n_syn), steps_total(config, n_real, n_syn, upto=parts.start)
    if on_start is not None:
        on_start(step, all_steps)
    from cellxfer.counter.head import head_of

    density = head_of(meta).learnt_density  # pixel-density loss; else the window-count loss
    d_scale = float(meta.arch_options.get("scale", 1.0)) if density else 1.0
    net = dist.wrap(model)  # the training forward (DDP under torchrun); `model` is validated and saved
    model = dist.unwrap(net)
    net.train()
    for epoch in range(parts.start, total):
        phase = phase_of(config.regime, epoch, config.pre())
        rng = np.random.default_rng([config.seed, epoch])  # the same on every rank: one global batch stream
        torch.manual_seed(dist.seed(_torch_seed(config.seed, epoch)))
        t0 = time.perf_counter()
        losses = []
        if unlab is not None:  # the teacher's pseudo-density of this epoch; batch-norm statistics stay the given
            from cellxfer.train.adapt import freeze_batch_norm  # counter's (cellxfer.train.adapt)

            real = unlab.pseudo_labelled(_teacher(model, ema), meta, config.pseudo_peak)
            freeze_batch_norm(model)
        step = _train_epoch(net, parts, config, phase, real, syn, rng, dist, d_scale if density else None,
                            epoch, step, all_steps, losses, on_step)
        shown = _teacher(model, ema)  # what is validated and saved
        for module in {id(model): model, id(shown): shown}.values():  # no checkpoint of non-finite weights
            check_finite_weights(module, epoch + 1)
        val_mae, val_rmse = None, None
        if val is not None and ((epoch + 1) % config.val_every == 0 or epoch + 1 == total):
            val_mae, val_rmse = _validate(shown, meta, val, dist)
        seconds = time.perf_counter() - t0
        parts.train_seconds += seconds
        rec = EpochRecord(epoch + 1, phase, len(losses), float(np.mean(losses)) if losses else float("nan"),
                          val_mae, val_rmse, seconds)
        parts.history.append(rec.__dict__)
        if dist.is_main:
            parts.save(run, shown, meta, rec, last_epoch=epoch + 1 == total and val is None, config=cfg)
        dist.barrier()
        if on_epoch is not None:
            on_epoch(rec)
    if total == 0 and dist.is_main:
        save_counter(out / LAST, model, meta)
        save_counter(out / BEST, model, meta)
    best_out = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in parts.best.items()}
    save_manifest({"epochs": total, "best": best_out, "train_seconds": round(parts.train_seconds, 2),
                   "final_loss": parts.history[-1]["loss"] if parts.history else None})
    dist.barrier()
    return TrainCounterResult(out, total, best_out, round(parts.train_seconds, 2))


def _load_data(config: TrainConfig):
    """``(meta, real, synthetic, unlabelled, validation)`` of a run: the labelled domains normalised as the
    model will record, the counter's meta with the training diameter range (or, adapting, the given
    counter's scale, the target images resized to it)."""
    from cellxfer.train.data import load_domain

    meta = meta_for(config)
    norm = meta.normalization
    real = load_domain(config.real, norm, "real", config.exclude) if config.real else None
    syn = load_domain(config.synthetic, norm, "synthetic", config.exclude) if config.synthetic else None
    unlab, val_scale = None, None
    if config.regime == "adapt":  # the given counter's scale; target (and validation) images resized to it
        from cellxfer.train.adapt import adapted_meta, as_density, load_target

        meta, val_scale = adapted_meta(config, meta)
        unlab = load_target(config.unlabeled, meta, config.diameter)
        syn = as_density(syn, config.sigma) if syn is not None else None
    else:
        meta = replace(meta, **domain_scale(real or syn, config.zoom))
    val = load_domain(config.val, norm, "validation", config.exclude, scale=val_scale) if config.val else None
    return meta, real, syn, unlab, val


def _validate(model, meta: CounterMeta, val, dist) -> tuple[float, float]:
    """Whole-image MAE and RMSE of ``model`` on the validation domain (images shared among ranks)."""
    pred = np.array(dist.map_shared(lambda img: predict_normalized(model, meta, [img])[0], val.images))
    err = pred - val.counts
    return float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))


@dataclass
class _Parts:
    """What a training run carries from epoch to epoch, and resumes from ``state.pt``."""

    model: object
    opt: object
    ema: object | None
    pretrained_info: dict | None = None
    head_init: float | None = None
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "val_mae": math.inf})
    start: int = 0
    train_seconds: float = 0.0

    @classmethod
    def build(cls, config: TrainConfig, meta: CounterMeta, dist, state: dict | None, labelled: list, adapting: bool) -> "_Parts":
        """The model (seeded; pretrained weights; head bias at the mean crop count), Adam, the optional
        weight average, and, resuming, all of them as ``state`` left them."""
        import torch

        from cellxfer.counter.model import build_counter

        torch.manual_seed(config.seed)
        model = build_counter(meta).to(dist.device)
        parts = cls(model, torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay), None)
        if config.pretrained is not None:
            from cellxfer.train.pretrained import load_pretrained

            info = parts.pretrained_info = load_pretrained(model, config.pretrained)
            if adapting and info["loaded"] != info["of"]:
                raise InputError(f"--model {config.pretrained}: only {info['loaded']} of {info['of']} "
                                 f"tensors fit; give a counter checkpoint written by train-count")
        if config.init_head_bias and state is None:
            parts.head_init = _mean_crop_count(labelled, config.crop)
            if not _head_bias(model, parts.head_init):
                parts.head_init = None
        if config.ema > 0:  # after the weights are in place: adapting, the teacher starts as the given counter
            parts.ema = _ema(model, config.ema, warm_up=not adapting)
        if state is not None:
            model.load_state_dict(state["model"])
            parts.opt.load_state_dict(state["optimizer"])
            if parts.ema is not None:
                parts.ema.load_state_dict(state["ema"])
            parts.history, parts.best = state["history"], state["best"]
            parts.start, parts.train_seconds = state["epoch"], state["train_seconds"]
            parts.head_init = state.get("head_bias_init")
            parts.pretrained_info = state.get("pretrained", parts.pretrained_info)
        return parts

    def manifest_extra(self, real, syn, val, unlab, dist) -> dict:
        """What the manifest records beside config and inputs: weights started from, head bias, data sizes."""
        extra = {
            "pretrained": self.pretrained_info or "none: trained from scratch (random initialisation)",
            "head_bias_init": self.head_init,
            "data": {d.name: {"images": len(d), "cells": int(d.counts.sum())} for d in (real, syn, val) if d is not None},
            "distributed": dist.describe(),
        }
        if unlab is not None:  # its image files only: the target folder's labels are never read, not even hashed
            extra["unlabeled"] = unlab.manifest()
        return extra

    def save(self, run, shown, meta: CounterMeta, rec: "EpochRecord", last_epoch: bool, config: dict) -> None:
        """After an epoch (main process): ``best`` when validation improved (or, without validation, at the
        end), ``last``, ``history.csv`` and the resume state. Checkpoints hold the unwrapped module and no
        per-rank state: resumable at any world size."""
        from cellxfer.counter.model import save_counter

        epoch_meta = replace(meta, extra={**meta.extra, "trained_epochs": rec.epoch})
        if (rec.val_mae is not None and rec.val_mae < self.best["val_mae"]) or last_epoch:
            self.best = {"epoch": rec.epoch, "val_mae": rec.val_mae if rec.val_mae is not None else math.inf,
                         "val_rmse": rec.val_rmse}
            save_counter(run.path(BEST), shown, replace(epoch_meta, extra={**epoch_meta.extra, "val_mae": rec.val_mae}))
        save_counter(run.path(LAST), shown, epoch_meta)
        run.write_history(self.history, HISTORY_COLUMNS)
        run.save_state({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "epoch": rec.epoch,
                        "ema": None if self.ema is None else self.ema.state_dict(), "history": self.history,
                        "best": self.best, "train_seconds": self.train_seconds, "config": config,
                        "head_bias_init": self.head_init, "pretrained": self.pretrained_info})


def _ema(model, decay: float, warm_up: bool):
    """Weights averaged after every step (decay warmed up as timm does: min(d, (1+n)/(10+n)); adapting, the
    teacher starts as the given counter and keeps a constant decay). Batch-norm statistics are not averaged
    (the average would remember their initial values for thousands of steps) but copied from the model
    before every validation and save."""
    from torch.optim.swa_utils import AveragedModel

    def ema_fn(avg, cur, n, d=decay):
        k = min(d, (1.0 + float(n)) / (10.0 + float(n))) if warm_up else d
        return k * avg + (1.0 - k) * cur

    ema = AveragedModel(model, avg_fn=ema_fn, use_buffers=False)
    if not warm_up:  # counted as one average already, so the first update averages instead of copying
        ema.n_averaged.fill_(1)
    return ema


def _train_epoch(net, parts: _Parts, config: TrainConfig, phase: str, real, syn, rng, dist, d_scale: float | None,
                 epoch: int, step: int, all_steps: int, losses: list, on_step) -> int:
    """One epoch's optimizer steps (their losses appended to ``losses``); returns the step count after it."""
    from cellxfer.train.finite import check_finite_loss

    for batch in epoch_batches(phase, real, syn, batch_size=config.batch_size, crop=config.crop, rng=rng,
                              flips=config.flips, rotations=config.rotations, cutmix_alpha=config.cutmix_alpha,
                              mix_prob=config.mix_prob, edge_prob=config.edge_prob,
                              max_steps=config.max_steps_per_epoch, with_maps=d_scale is not None, zoom=config.zoom,
                              photometric_strength=config.photometric):
        n, rows = len(batch[0]), dist.shard(len(batch[0]))
        if rows is None:  # a last batch with fewer crops than processes: skipped by every rank
            continue
        for group in parts.opt.param_groups:
            group["lr"] = lr_at(config, step, all_steps)
        step += 1
        loss = _batch_loss(net, [b[rows] for b in batch], config, dist.device, d_scale)
        # the global batch's mean loss, checked before backward: a NaN never reaches the weights
        value = check_finite_loss(dist.mean(loss.detach(), rows, n), epoch + 1, step)
        parts.opt.zero_grad(set_to_none=True)
        (loss * dist.loss_weight(rows, n)).backward()
        parts.opt.step()
        if parts.ema is not None:
            parts.ema.update_parameters(parts.model)
        losses.append(value)
        if on_step is not None:
            on_step(epoch, value)
    return step


def _batch_loss(net, batch: list, config: TrainConfig, device: str, d_scale: float | None):
    """Mean loss of ``net`` on one (x, y[, centre maps]) batch: count MSE, or for density heads
    (``d_scale`` given) pixel MSE against exact-mass Gaussian targets in the head's units, plus the
    optional crop-count term."""
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(batch[0]).to(device)
    if d_scale is None:
        pred = net(xt).reshape(len(xt), -1).sum(dim=1)
        return F.mse_loss(pred, torch.from_numpy(batch[1]).to(device))
    from cellxfer.density.targets import density_batch

    target = torch.from_numpy(density_batch(batch[2], config.sigma)).to(device)
    dens = net(xt)
    loss = F.mse_loss(dens * d_scale, target * d_scale)
    if config.count_weight:  # crop counts, in cells: a faint spread of density is many cells
        loss = loss + config.count_weight * F.mse_loss(dens.sum(dim=(1, 2, 3)), target.sum(dim=(1, 2, 3)))
    return loss


def steps_total(config: TrainConfig, n_real: int, n_syn: int, upto: int | None = None) -> int:
    """Optimizer steps of the whole run, or of its first ``upto`` epochs (for progress bars)."""
    n = config.total_epochs() if upto is None else upto
    return sum(steps_in_epoch(phase_of(config.regime, e, config.pre()), n_real, n_syn, config.batch_size,
                              config.max_steps_per_epoch) for e in range(n))
