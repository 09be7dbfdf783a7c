"""pix2pix training of a translator on a paired folder (``train-translate``).

Objective (Isola et al. 2017): G minimises ``lambda_gan * GAN(D(x, G(x)) -> real) + lambda_l1 * |G(x) - y|_1``,
D (a PatchGAN on the input/output pair, 2 channels) minimises ``GAN(D(x, y) -> real) + GAN(D(x, G(x)) -> fake)``
halved; ``lambda_gan = 0`` is pure L1 regression (D is neither run nor trained, its losses are logged as NaN); vanilla (BCE with logits) or least-squares GAN; Adam(lr, beta1, 0.999). One step = one batch
of random ``size`` crops with random horizontal flips. Deterministic on the CPU for a given seed.

Run folder: ``translator.safetensors`` (the generator, see :mod:`.model`), ``checkpoint.pt`` (G, D,
optimisers, step, RNG state, best validation score), ``log.csv`` (step, losses), ``manifest.json``: a run
folder (:class:`cellxfer.runs.RunFolder`): a rerun with the same settings and pairs continues from the
checkpoint, ``overwrite`` starts again, other settings are refused.

Checkpoint selection (``val_pairs`` + ``val_every``): every ``val_every`` steps and after the last one, the
generator in eval mode is scored on the validation pairs exactly as ``evaluate-translator`` scores it
(whole images, tiled and blended at the training size; mean Pearson / MAE / SSIM), one row per score in
``val.csv``; ``translator.safetensors`` is then the generator of the step with the highest mean Pearson
(the earlier on a tie), not the last one (that stays in ``checkpoint.pt``), and the manifest names its
step. Scoring draws no random numbers, so the training is the same with or without it.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cellxfer.translate.config import TrainTranslateConfig  # noqa: F401 - part of this module's API
from cellxfer.translator.model import MODEL_FILE

CHECKPOINT = "checkpoint.pt"
#: The run's per-step losses (written through :meth:`cellxfer.runs.RunFolder.write_history`).
LOG, LOG_COLUMNS = "log.csv", ("step", "loss_d", "loss_g_gan", "loss_g_l1")
#: The validation scores of checkpoint selection (``val_pairs``), one row per scored step.
VAL_LOG, VAL_COLUMNS = "val.csv", ("step", "pearson", "mae", "ssim")
#: Config fields a rerun may change and still continue the run.
MUTABLE = ("out", "steps", "checkpoint_every", "threads", "device")


@dataclass(frozen=True)
class TrainTranslateResult:
    """What :func:`train_translator` did: the run folder, steps done in all, seconds of this call, the
    last step's losses (None when no step ran) and, with validation pairs, the translator's
    ``(step, val Pearson)``."""

    out: Path
    steps: int
    seconds: float
    loss_d: float | None = None
    loss_g_gan: float | None = None
    loss_g_l1: float | None = None
    selected: tuple[int, float] | None = None


def gan_loss(mode: str):
    """``loss(logits, real: bool)``: BCE-with-logits (vanilla) or MSE to 1/0 (lsgan)."""
    import torch
    import torch.nn.functional as F

    def loss(logits, real: bool):
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if mode == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    return loss


def load_pairs(folder, cfg_size: int, input_norm, target_norm) -> list[np.ndarray]:
    """Every pair as a (2, H, W) float32 array: normalised source (unclipped), normalised target (clipped)."""
    from cellxfer.translate.data import check_size, list_pairs, normalize, read_pair

    arrays = []
    for pair in list_pairs(folder):
        s, t = read_pair(pair)
        check_size(pair.source, s.shape, cfg_size)
        arrays.append(np.stack([normalize(s, input_norm), normalize(t, target_norm, clip=True)]))
    return arrays


def set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def train_translator(cfg: TrainTranslateConfig, on_step: Callable[..., None] | None = None,
                     overwrite: bool = False) -> TrainTranslateResult:
    """Train (or continue) a translator in ``cfg.out`` (a :class:`cellxfer.runs.RunFolder`).
    Trains on ``cfg.device``; under torchrun the run is data-parallel (gloo on the CPU, nccl on GPUs;
    :mod:`cellxfer.train.distributed`): each process takes its share of every ``batch_size`` crops, rank
    0 writes and calls ``on_step``. A run may continue on another device (its state is saved on the CPU)."""
    from cellxfer.train.distributed import distributed

    cfg.check()
    with distributed(cfg.device) as dist:
        dist.check_batch(cfg.batch_size)
        return _train_translator(cfg, dist, on_step if dist.is_main else None, overwrite)


def _run_folder(cfg: TrainTranslateConfig, overwrite: bool, main: bool):
    from cellxfer.manifest import config_dict
    from cellxfer.runs import RunFolder

    return RunFolder(cfg.out, "train-translate", {"config": config_dict(cfg), "seed": cfg.seed},
                     own=(MODEL_FILE, CHECKPOINT, LOG, VAL_LOG),
                     inputs=[cfg.pairs, *([cfg.val_pairs] if cfg.val_pairs else [])], overwrite=overwrite,
                     mutable=MUTABLE, defaults=config_dict(TrainTranslateConfig(pairs="", out="")), main=main)


def _train_translator(cfg: TrainTranslateConfig, dist, on_step, overwrite: bool) -> TrainTranslateResult:
    with _run_folder(cfg, overwrite, dist.is_main) as run:
        dist.barrier()  # every rank has seen the folder as it was before rank 0 writes to it
        return _train_in(cfg, dist, on_step, run)


def _train_in(cfg: TrainTranslateConfig, dist, on_step, run) -> TrainTranslateResult:
    import torch

    from cellxfer.translator.model import build_discriminator, build_generator, save_translator

    set_threads(cfg.threads)
    out = run.out
    arrays = load_pairs(cfg.pairs, cfg.size, cfg.input_norm, cfg.target_norm)
    torch.manual_seed(cfg.seed)
    meta = cfg.meta()
    g = build_generator(meta).to(dist.device)
    d = build_discriminator(2, cfg.ndf, cfg.d_layers, cfg.norm).to(dist.device)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    rng = np.random.default_rng(cfg.seed)
    step = 0
    state = run.load_state(CHECKPOINT)
    val = BestOnVal(cfg, run, state)
    manifest = run.write_manifest(run.manifest(), complete=False)
    if state is not None:
        g.load_state_dict(state["g"]); d.load_state_dict(state["d"])
        opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"])
        step = state["step"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    dist.fork_torch_rng(cfg.seed, step)  # dropout differs between ranks; rank 0 continues the saved stream
    g_net, d_net = dist.wrap(g), dist.wrap(d)  # training forwards; g and d are saved
    history = _logged(run, step)  # rows of the steps the checkpoint holds (later ones are done again)
    t0 = time.perf_counter()
    last = {}

    def save_checkpoint():
        run.save_state({"g": g.state_dict(), "d": d.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                        "step": step, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                        **({"best_val": list(val.best)} if val.best else {})}, CHECKPOINT)
        run.write_history(history, LOG_COLUMNS, LOG)

    g.train(); d.train()
    rows = dist.shard(cfg.batch_size)  # this rank's crops of every global batch (all of them in one process)
    weight = dist.loss_weight(rows, cfg.batch_size)
    while step < cfg.steps:
        batch = torch.from_numpy(random_batch(arrays, cfg.size, cfg.batch_size, rng, cfg.augment))[rows].to(dist.device)
        losses = pix2pix_step(cfg, batch[:, :1], batch[:, 1:], g_net, d_net, opt_g, opt_d, weight)
        step += 1
        last = {k: dist.mean(v, rows, cfg.batch_size) for k, v in losses.items()}
        history.append({"step": step, **last})
        if on_step:
            on_step(1, **last)
        if val.due(step, step == cfg.steps):
            val.score(g, meta, step)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save_checkpoint()
    save_checkpoint()
    g.eval()
    seconds = time.perf_counter() - t0
    if dist.is_main:
        if not val.pairs:
            save_translator(out / MODEL_FILE, g, meta)
        selected = {"selected_step": val.best[0], "selected_val_pearson": round(val.best[1], 6)} if val.best else {}
        run.write_manifest(manifest, complete=True, steps_done=step, final_losses=last, seconds=round(seconds, 2),
                           distributed=dist.describe(), **selected)
    dist.barrier()
    return TrainTranslateResult(out, step, seconds, **last, selected=val.best)


def pix2pix_step(cfg: TrainTranslateConfig, x, y, g_net, d_net, opt_g, opt_d, weight: float) -> dict[str, float]:
    """One optimisation step on a batch (see module docs): D first (skipped when ``lambda_gan`` is 0), then G.
    Returns this process's ``loss_d``, ``loss_g_gan`` (NaN without a GAN term) and ``loss_g_l1``."""
    import torch

    crit = gan_loss(cfg.gan_mode)
    fake = g_net(x)
    loss_d = loss_gan = torch.tensor(float("nan"))
    if cfg.lambda_gan:
        opt_d.zero_grad()
        loss_d = 0.5 * (crit(d_net(torch.cat([x, fake.detach()], 1)), False) + crit(d_net(torch.cat([x, y], 1)), True))
        (loss_d * weight).backward()
        opt_d.step()
    opt_g.zero_grad()
    loss_l1 = torch.nn.functional.l1_loss(fake, y)
    loss_g = cfg.lambda_l1 * loss_l1
    if cfg.lambda_gan:
        loss_gan = crit(d_net(torch.cat([x, fake], 1)), True)
        loss_g = loss_g + cfg.lambda_gan * loss_gan
    (loss_g * weight).backward()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g_gan": loss_gan.item(), "loss_g_l1": loss_l1.item()}


class BestOnVal:
    """Checkpoint selection on validation pairs (see module docs). ``best`` is ``(step, pearson)`` or None;
    :meth:`score` writes the translator when the step beats it. Scores nothing without ``val_pairs`` and
    outside the main process."""

    def __init__(self, cfg: TrainTranslateConfig, run, state: dict | None):
        from cellxfer.translate.data import list_pairs

        self.pairs = list_pairs(cfg.val_pairs) if cfg.val_pairs else []
        self.every, self.run = cfg.val_every, run
        self.best = tuple(state["best_val"]) if state and "best_val" in state else None
        self.rows = _logged(run, state["step"] if state else 0, VAL_LOG)

    def due(self, step: int, last: bool) -> bool:
        return bool(self.pairs) and self.run.main and (step % self.every == 0 or last)

    def score(self, g, meta, step: int) -> dict[str, float]:
        """Score the generator (in train mode again afterwards), log it, keep it when best; its mean metrics."""
        from cellxfer.translate.infer import Translator, evaluate_pairs, summarize
        from cellxfer.translator.model import torch_runner
        from cellxfer.translator.model import save_translator

        m = summarize(evaluate_pairs(Translator(torch_runner(g), meta, "torch"), self.pairs))
        g.train()
        self.rows.append({"step": step, **m})
        self.run.write_history(self.rows, VAL_COLUMNS, VAL_LOG)
        if self.best is None or m["pearson"] > self.best[1]:
            self.best = (step, m["pearson"])
            save_translator(self.run.out / MODEL_FILE, g, meta)
        return m


def _logged(run, step: int, name: str = LOG) -> list[dict]:
    """The rows of ``name`` (``log.csv``) up to ``step`` (those a continued run keeps, as written), none for a new run."""
    path = run.path(name)
    if step == 0 or not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]


def random_batch(arrays, size, n, rng, augment: str = "flip") -> np.ndarray:
    from cellxfer.translate.data import random_crops

    return random_crops(arrays, size, n, rng, augment=augment)
