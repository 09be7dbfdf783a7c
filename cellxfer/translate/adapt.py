"""LM-ADDA: layer-matching adversarial discriminative domain adaptation of a translator (``adapt``).

Given a source translator G (frozen) and *unpaired* images of a new microscope setting, a trainable
copy G' of G is made; only G's blocks ``1..L`` (in forward order, see :mod:`.model`) are trained in G',
the blocks after ``L`` stay frozen and equal to G's. A discriminator D (PatchGAN sized to the layer's
feature map, :func:`.model.build_discriminator`) learns to tell ``G_L(x_source)`` (real) from
``G'_L(x_target)`` (fake); G' is trained to make D call its target features real (GAN-style
alternating updates, Tzeng et al. 2017). ``L = 2 * num_downs`` (the output) is plain ADDA.

Both G and G' run in eval mode during adaptation: batch-norm uses G's running statistics and dropout
is off, so the source features are deterministic and the only thing that moves is G''s weights.
With ``train="layer"`` only block ``L`` is trained: in a UNet the blocks before ``L`` also produce skip
tensors that the frozen decoder reads but the discriminator never sees, and training them lets those
skips drift (see docs/results.md). ``match="skips"`` is the other fix: besides layer ``L``, every
skip tensor of the state after ``L`` (the down-block outputs the frozen rest still reads, see
:meth:`.model.UNetGenerator.forward_to`) gets its own discriminator, and G' is trained to fool all of
them (mean of the GAN losses), so the skips are pulled to the source distribution instead of drifting. The
adapted G' is a complete translator in the same file format (its meta records ``adapted``).

``run_sweep`` adapts at several layers, evaluates each (and the unadapted G) on held-out labelled
target pairs when there are any, and keeps the best by mean Pearson.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from cellxfer.errors import InputError
from cellxfer.translate.config import AdaptConfig  # noqa: F401 - part of this module's API
from cellxfer.translator.model import MODEL_FILE


def _load_inputs(paths, norm, size) -> list[np.ndarray]:
    from cellxfer.imageio import read_image
    from cellxfer.translate.data import check_size, normalize

    arrays = []
    for p in paths:
        img = read_image(p)
        check_size(p, img.shape, size)
        arrays.append(normalize(img, norm)[None])
    return arrays


def split_target(cfg: AdaptConfig):
    """``(adaptation input files, evaluation pairs or [])`` for the target folder (see module docs)."""
    from cellxfer.translate.data import is_pairs, list_images, list_pairs

    if cfg.eval_pairs:
        return list_images(cfg.target), list_pairs(cfg.eval_pairs)
    if not is_pairs(cfg.target):
        return list_images(cfg.target), []
    pairs = list_pairs(cfg.target, need_targets=False)
    labelled = [p for p in pairs if p.target is not None]
    if not labelled or cfg.holdout <= 0:
        return [p.source for p in pairs], []
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(labelled))
    n_eval = max(1, int(round(cfg.holdout * len(labelled))))
    held = {labelled[i].id for i in order[:n_eval]}
    if len(held) >= len(pairs):
        raise InputError(f"{cfg.target}: --holdout {cfg.holdout} leaves no target images to adapt on; lower it or add images")
    return [p.source for p in pairs if p.id not in held], sorted((p for p in labelled if p.id in held), key=lambda p: p.id)


def evaluate_held_out(cfg: AdaptConfig) -> "HeldOutScore | None":
    """The adapted translator in ``cfg.out`` on the labelled target pairs held out of adaptation
    (``--holdout`` / ``--eval-pairs``), or None when there are none."""
    from cellxfer.translate.infer import evaluate_pairs, load, summarize

    held = split_target(cfg)[1]
    if not held:
        return None
    return HeldOutScore(len(held), **summarize(evaluate_pairs(load(cfg.out, "torch"), held)))


def adapt(cfg: AdaptConfig, on_step: Callable[..., None] | None = None, overwrite: bool = False) -> "AdaptResult":
    """``cellxfer adapt`` at one layer: :func:`adapt_layer`, then the adapted translator scored on the held-out
    labelled target pairs (``held_out``; None without any)."""
    result = adapt_layer(cfg, on_step=on_step, overwrite=overwrite)
    return replace(result, held_out=evaluate_held_out(cfg))


def layers_of(meta) -> str:
    """What ``--layer`` may be for the translator ``meta``: 1 to 2 x its ``num_downs`` (the last is its output)."""
    return (f"this translator (--num-downs {meta.num_downs}) has layers 1..{meta.n_layers}, 2 x its down blocks "
            f"({meta.n_layers} = output, plain ADDA)")


def run_folder(cfg: AdaptConfig, overwrite: bool, main: bool = True, layers: list[int] | None = None):
    """The run folder of one adaptation (or, with ``layers``, of a sweep: its ``layer_LL/`` are its own):
    a :class:`cellxfer.runs.RunFolder`, so a rerun with other settings is refused unless ``overwrite``."""
    from cellxfer.manifest import config_dict
    from cellxfer.runs import RunFolder
    from cellxfer.translator.model import resolve_model

    identity = {"config": config_dict(cfg), "seed": cfg.seed}
    own: tuple = (MODEL_FILE, "log.csv")
    if layers is not None:
        identity["layers"] = list(layers)
        own = (MODEL_FILE, "sweep.json", "sweep.csv", *(f"layer_{L:02d}" for L in layers))
    return RunFolder(cfg.out, "adapt", identity, own=own, inputs=[resolve_model(cfg.model), cfg.source, cfg.target],
                     overwrite=overwrite, mutable=("out", "threads", "device"), main=main)


def adapt_layer(cfg: AdaptConfig, g=None, meta=None, source_arrays=None, target_arrays=None,
                on_step: Callable[..., None] | None = None, overwrite: bool = False) -> dict:
    """Adapt at ``cfg.layer``; write ``cfg.out/translator.safetensors``, ``log.csv``, ``manifest.json``.
    ``g``/``meta``/arrays may be passed in to share loading across a sweep. Returns a summary with the
    discriminator loss over the first and last 10% of steps. Runs on ``cfg.device``; under torchrun the
    run is data-parallel (gloo on the CPU, nccl on GPUs; :mod:`cellxfer.train.distributed`): each process
    takes its share of every batch of source and target crops, rank 0 writes and calls ``on_step``."""
    from cellxfer.train.distributed import distributed

    with distributed(cfg.device) as dist:
        dist.check_batch(cfg.batch_size)
        with run_folder(cfg, overwrite, dist.is_main) as run:
            dist.barrier()  # every rank has seen the folder as it was before rank 0 writes to it
            kept = _finished(run)
            if kept is not None:
                return kept
            return _adapt_layer(cfg, dist, g, meta, source_arrays, target_arrays, on_step if dist.is_main else None, run)


def _finished(run) -> "AdaptResult | None":
    """The summary of the finished adaptation a rerun continues (the same settings and inputs; its manifest
    complete and its translator there), kept as every finished run is (a sweep's finished layers too); None
    when there is none: the layer is adapted (again, from its first step: no partial state is kept)."""
    previous = run.previous or {}
    if previous.get("complete") and isinstance(previous.get("summary"), dict) and (run.out / MODEL_FILE).is_file():
        return AdaptResult(**{**previous["summary"], "held_out": None})
    return None


def _up_to(g, layer: int, skips: bool = False):
    """``g``'s matched tensors at ``layer`` as a module's forward (what DDP wraps): ``(feature,)``, or
    ``(feature, *skips)`` with ``skips`` (the skip tensors the rest after ``layer`` reads)."""
    import torch

    class UpTo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.g = g

        def forward(self, x):
            h, s = self.g.forward_to(x, layer)
            return (h, *s) if skips else (h,)

    return UpTo()


def _discriminators(probes, cfg: AdaptConfig):
    """One PatchGAN per matched tensor (sized to it); forward: tensors -> their logits."""
    import torch

    from cellxfer.translator.model import build_discriminator

    class Discriminators(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ds = torch.nn.ModuleList(build_discriminator(p.shape[1], cfg.ndf, cfg.d_layers, "batch", spatial=p.shape[-1])
                                          for p in probes)

        def forward(self, feats):
            return [d(f) for d, f in zip(self.ds, feats)]

    return Discriminators()


def _adapt_layer(cfg: AdaptConfig, dist, g, meta, source_arrays, target_arrays, on_step, run) -> dict:
    import torch

    from cellxfer.translate.data import list_images, random_crops
    from cellxfer.translator.model import load_translator, resolve_model
    from cellxfer.translate.train import gan_loss, set_threads

    set_threads(cfg.threads)
    model_path = resolve_model(cfg.model)
    if g is None:
        g, meta = load_translator(model_path)
    g = g.to(dist.device)
    if not 1 <= cfg.layer <= meta.n_layers:
        raise InputError(f"--layer {cfg.layer}: {layers_of(meta)}; give --layer 1 to {meta.n_layers}")
    size = cfg.size or meta.size
    if size % meta.multiple:
        raise InputError(f"--size {size}: must be a multiple of {meta.multiple}")
    if source_arrays is None:
        source_arrays = _load_inputs(list_images(cfg.source), meta.input_norm, size)
    if target_arrays is None:
        target_arrays = _load_inputs(split_target(cfg)[0], meta.input_norm, size)
    L = cfg.layer
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    gp = copy.deepcopy(g).eval()
    first = 1 if cfg.train == "upto" else L
    trainable = [p for i in range(first, L + 1) for p in gp.block(i).parameters()]
    for p in trainable:
        p.requires_grad_(True)
    skips = cfg.match == "skips"
    with torch.no_grad():
        probes = _up_to(g, L, skips)(torch.zeros(1, meta.in_ch, size, size, device=dist.device))
    d = _discriminators(probes, cfg).to(dist.device)
    d.train()
    opt_g = torch.optim.Adam(trainable, lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999))
    g_net = _up_to(g, L, skips)
    gp_net, d_net = dist.wrap(_up_to(gp, L, skips)), dist.wrap(d)  # training forwards; gp is saved
    crit = gan_loss(cfg.gan_mode)
    manifest = run.write_manifest(complete=False)
    losses = []
    rows = dist.shard(cfg.batch_size)  # this rank's crops of every global batch (all of them in one process)
    weight = dist.loss_weight(rows, cfg.batch_size)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        xs = torch.from_numpy(random_crops(source_arrays, size, cfg.batch_size, rng))[rows].to(dist.device)
        xt = torch.from_numpy(random_crops(target_arrays, size, cfg.batch_size, rng))[rows].to(dist.device)
        with torch.no_grad():
            fs = g_net(xs)
        ft = gp_net(xt)
        opt_d.zero_grad()
        real, fake = d_net(fs), d_net([f.detach() for f in ft])
        loss_d = sum(0.5 * (crit(a, True) + crit(b, False)) for a, b in zip(real, fake)) / len(real)
        (loss_d * weight).backward()
        opt_d.step()
        opt_g.zero_grad()
        fooled = d_net(ft)
        loss_g = sum(crit(b, True) for b in fooled) / len(fooled)
        (loss_g * weight).backward()
        opt_g.step()
        ld, lg = dist.mean(loss_d.item(), rows, cfg.batch_size), dist.mean(loss_g.item(), rows, cfg.batch_size)
        losses.append((ld, lg))
        if on_step:
            on_step(1, loss_d=ld, loss_g=lg)
    seconds = time.perf_counter() - t0
    for p in g.parameters():
        p.requires_grad_(True)
    summary = _summary(L, cfg.steps, seconds, losses, len(probes))
    if dist.is_main:
        _write_adapted(cfg, run, manifest, model_path, gp, meta, losses, summary, dist)
    dist.barrier()
    return summary


@dataclass(frozen=True)
class AdaptResult:
    """What :func:`adapt_layer` returns (and its manifest's ``summary`` records): the layer, steps and time,
    the mean discriminator / generator losses over the first and last 10% of steps, and how many tensors
    the discriminators matched (1, or 1 + the skips with ``--match skips``)."""

    layer: int
    steps: int
    seconds: float
    loss_d_first: float
    loss_d_last: float
    loss_g_first: float
    loss_g_last: float
    matched_tensors: int
    held_out: "HeldOutScore | None" = None  # set by :func:`adapt` after the manifest is written (null there)


@dataclass(frozen=True)
class HeldOutScore:
    """Mean Pearson / MAE / SSIM of a translator on ``pairs`` labelled target pairs held out of adaptation."""

    pairs: int
    pearson: float
    mae: float
    ssim: float


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` returns (``sweep.json``): the layers tried, one row per layer (and a ``"none"``
    row without adaptation) with losses and, given labelled target pairs, Pearson/MAE/SSIM; the best
    layer by Pearson (None without pairs) and the ids of the pairs it was picked on."""

    layers: list
    rows: list
    best_layer: int | None
    eval_pairs: list


def _summary(L: int, steps: int, seconds: float, losses: list, matched: int) -> AdaptResult:
    k = max(1, len(losses) // 10)
    arr = np.asarray(losses).reshape(-1, 2) if losses else np.full((1, 2), np.nan)
    return AdaptResult(L, steps, round(seconds, 2), float(arr[:k, 0].mean()), float(arr[-k:, 0].mean()),
                       float(arr[:k, 1].mean()), float(arr[-k:, 1].mean()), matched)


def _write_adapted(cfg: AdaptConfig, run, manifest: dict, model_path, gp, meta, losses: list, summary: AdaptResult,
                   dist) -> None:
    """log.csv, the adapted translator (its meta records ``adapted``) and the manifest of one layer."""
    from cellxfer.manifest import sha256_file
    from cellxfer.translator.model import save_translator

    out = run.out
    run.write_history([{"step": i + 1, "loss_d": a, "loss_g": b} for i, (a, b) in enumerate(losses)],
                      ("step", "loss_d", "loss_g"), "log.csv")
    L = summary.layer
    adapted = {"method": "LM-ADDA" if L < meta.n_layers else "ADDA (output layer)", "layer": L, "train": cfg.train,
               "match": cfg.match,
               "source_model": str(model_path), "source_model_sha256": sha256_file(model_path), "steps": cfg.steps}
    save_translator(out / MODEL_FILE, gp, replace(meta, adapted=adapted))
    run.write_manifest(manifest, complete=True, summary=asdict(summary), distributed=dist.describe())


def run_sweep(cfg: AdaptConfig, layers: list[int], on_event: Callable[[str], None] = lambda s: None,
              on_step=None, overwrite: bool = False) -> dict:
    """Adapt at each of ``layers`` into ``out/layer_LL/``; evaluate every one (and no adaptation) on the
    held-out labelled target pairs; copy the best (highest mean Pearson) to ``out/translator.safetensors``.
    Writes ``out/sweep.json`` and ``out/sweep.csv``. Without labels nothing is picked. Under torchrun every
    process adapts (data-parallel) and rank 0 alone evaluates, picks, writes and reports."""
    from cellxfer.train.distributed import distributed

    with distributed(cfg.device) as dist, run_folder(cfg, overwrite, dist.is_main, layers) as run:
        dist.barrier()  # every rank has seen the folder as it was before rank 0 writes to it
        if not dist.is_main:  # the others train each layer with rank 0, then wait for its sweep to be written
            for L in layers:
                adapt_layer(replace(cfg, layer=L, out=str(Path(cfg.out) / f"layer_{L:02d}")))
            dist.barrier()
            return SweepResult(layers, [], None, [])
        result = _run_sweep(cfg, layers, on_event, on_step, run)
        dist.barrier()
        return result


def _run_sweep(cfg: AdaptConfig, layers: list[int], on_event, on_step, run) -> SweepResult:
    from cellxfer.atomic import write_json, write_text
    from cellxfer.train.distributed import from_env
    from cellxfer.translate.data import list_images
    from cellxfer.translate.infer import Translator, evaluate_pairs, summarize
    from cellxfer.translator.model import torch_runner
    from cellxfer.translator.model import load_translator, resolve_model

    g, meta = load_translator(resolve_model(cfg.model))
    bad = [L for L in layers if not 1 <= L <= meta.n_layers]
    if bad:
        raise InputError(f"--sweep: layer(s) {bad} out of range: {layers_of(meta)}")
    size = cfg.size or meta.size
    adapt_files, eval_pairs = split_target(cfg)
    src = _load_inputs(list_images(cfg.source), meta.input_norm, size)
    tgt = _load_inputs(adapt_files, meta.input_norm, size)
    out = run.out
    manifest = run.write_manifest(complete=False)
    rows = []
    if eval_pairs:
        base = summarize(evaluate_pairs(Translator(torch_runner(g), meta, "torch"), eval_pairs))
        rows.append({"layer": "none", **base})
        on_event(f"no adaptation: Pearson {base['pearson']:.4f}")
    for L in layers:
        sub = replace(cfg, layer=L, out=str(out / f"layer_{L:02d}"))
        s = adapt_layer(sub, g=g, meta=meta, source_arrays=src, target_arrays=tgt, on_step=on_step)
        row = {"layer": L, "loss_d_first": s.loss_d_first, "loss_d_last": s.loss_d_last, "seconds": s.seconds}
        if eval_pairs:
            ga, ma = load_translator(Path(sub.out) / MODEL_FILE)
            row.update(summarize(evaluate_pairs(Translator(torch_runner(ga), ma, "torch"), eval_pairs)))
            on_event(f"layer {L}: Pearson {row['pearson']:.4f} ({s.seconds:.0f} s)")
        else:
            on_event(f"layer {L}: D loss {s.loss_d_first:.3f} -> {s.loss_d_last:.3f} ({s.seconds:.0f} s)")
        rows.append(row)
    best = None
    scored = [r for r in rows if r["layer"] != "none" and np.isfinite(r.get("pearson", np.nan))]
    if scored:
        best = max(scored, key=lambda r: r["pearson"])["layer"]
        shutil.copyfile(out / f"layer_{best:02d}" / MODEL_FILE, out / MODEL_FILE)
    result = SweepResult(layers, rows, best, [p.id for p in eval_pairs])
    write_json(out / "sweep.json", asdict(result))
    keys = ["layer", "pearson", "mae", "ssim", "loss_d_first", "loss_d_last", "seconds"]
    lines = [",".join(keys)] + [",".join("" if r.get(k) is None else (f"{r[k]:.5f}" if isinstance(r.get(k), float) else str(r[k]))
                                         for k in keys) for r in rows]
    write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    run.write_manifest(manifest, complete=True, sweep=asdict(result), distributed=from_env(cfg.device).describe())
    return result
