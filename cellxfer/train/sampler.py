"""Batches of one training epoch for each regime, drawn from one seeded generator.

Every crop is augmented (with ``zoom``, resized by a random factor: :func:`zoom_crop`; flips, 90-degree
rotations) and, with probability ``edge_prob``, cut short and
zero-padded like a border window (:func:`cellxfer.train.data.edge_pad`).

Regimes and what an epoch is (one random crop per image per epoch, as in the paper):

- ``supervised``: real images only, every real image once per epoch.
- ``synthetic``: synthetic images only (no real label at all), every synthetic image once per epoch.
- ``finetune``: ``pre_epochs`` epochs as ``synthetic``, then ``epochs`` epochs as ``supervised``
  (all layers trained; the same optimizer continues).
- ``dual``: every batch is half real, half synthetic (8 + 8 at batch 16); an epoch passes over the real
  images once, each real half paired with synthetic crops drawn without replacement while they last.
- ``dacs``: DACS with CutMix: every batch is half synthetic (the labelled source batch) and half mixed:
  each real crop is paired with another synthetic crop and, with probability ``mix_prob``, a
  Beta(alpha, alpha)-sized box of one is pasted into the other (either direction, equally likely);
  the target is the exact number of centres in the mixed centre map. An epoch passes over the real
  images once.
- ``adapt`` (``adapt-count``): ``dacs`` with the unlabelled target images as the "real" domain, their
  centre maps the teacher's pseudo-points (:mod:`cellxfer.train.adapt`); the target half of every batch
  is filled with crops drawn without replacement while they last, so a folder of fewer images than half
  a batch (even one image) still fills it. Without synthetic images every batch is all target crops.
  An epoch passes over the target images once (at least one step).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from cellxfer.train.config import REGIMES  # noqa: F401 - defined with the config, part of this module's API
from cellxfer.train.data import Domain, augment, edge_pad, photometric, random_crop, zoom_crop
from cellxfer.train.mix import random_cutmix

PHASES = ("real", "synthetic", "dual", "dacs", "adapt")


def phase_of(regime: str, epoch: int, pre_epochs: int) -> str:
    """The kind of epoch ``epoch`` (0-based) is in ``regime``."""
    if regime == "supervised":
        return "real"
    if regime == "synthetic":
        return "synthetic"
    if regime == "finetune":
        return "synthetic" if epoch < pre_epochs else "real"
    if regime in ("dual", "dacs", "adapt"):
        return regime
    raise ValueError(f"unknown regime {regime!r}")


def _draw(domain: Domain, idx: np.ndarray, crop: int, rng, flips: bool, rotations: bool, edge_prob: float,
          zoom: tuple[float, float] | None = None, photometric_strength: float = 0.0):
    imgs, maps = [], []
    for i in idx:
        if zoom:
            img, cm = zoom_crop(domain.images[i], domain.maps[i], crop, rng, zoom)
        else:
            img, cm = random_crop(domain.images[i], domain.maps[i], crop, rng)
        img, cm = augment(img, cm, rng, flips, rotations)
        img = photometric(img, rng, photometric_strength)
        img, cm = edge_pad(img, cm, rng, edge_prob)
        imgs.append(img)
        maps.append(cm)
    return imgs, maps


def _stack_maps(maps) -> np.ndarray:
    """Centre maps as int32, density maps (adapt's pseudo-density) as float32."""
    m = np.stack(maps)
    return m.astype(np.int32 if np.issubdtype(m.dtype, np.integer) else np.float32, copy=False)


def _pack_xy(imgs, counts) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack(imgs).astype(np.float32, copy=False)[:, None]
    return np.ascontiguousarray(x), np.asarray(counts, dtype=np.float32)


def _stream(n: int, k: int, rng) -> np.ndarray:
    """``k`` indices into ``n`` items: successive permutations, so no item repeats before all are used."""
    out = np.concatenate([rng.permutation(n) for _ in range(-(-k // n))]) if k else np.empty(0, np.int64)
    return out[:k]


def steps_in_epoch(phase: str, n_real: int, n_syn: int, batch_size: int, max_steps: int | None = None) -> int:
    half = max(batch_size // 2, 1)
    if phase == "adapt":
        n = max(1, -(-n_real // (half if n_syn else batch_size))) if n_real else 0
    else:
        n = {"real": -(-n_real // batch_size), "synthetic": -(-n_syn // batch_size)}.get(phase, -(-n_real // half) if n_real else 0)
    return min(n, max_steps) if max_steps else n


def epoch_batches(phase: str, real: Domain | None, syn: Domain | None, *, batch_size: int, crop: int,
                  rng: np.random.Generator, flips: bool = True, rotations: bool = True,
                  cutmix_alpha: float = 1.0, mix_prob: float = 0.5, edge_prob: float = 0.0,
                  max_steps: int | None = None, with_maps: bool = False,
                  zoom: tuple[float, float] | None = None,
                  photometric_strength: float = 0.0) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield ``(x, y)``: x float32 (B, 1, crop, crop) normalised windows, y float32 (B,) exact counts;
    with ``with_maps`` also the int32 (B, crop, crop) centre maps of the (mixed) windows (density targets),
    float32 when the domains hold density maps instead (``adapt``: every operation here is the same on both).
    ``photometric_strength`` > 0 also changes every crop's intensities (:func:`cellxfer.train.data.photometric`)."""
    def _pack(imgs, counts, maps=None):
        x, y = _pack_xy(imgs, counts)
        return (x, y, _stack_maps(maps)) if with_maps else (x, y)

    n_steps = steps_in_epoch(phase, len(real) if real else 0, len(syn) if syn else 0, batch_size, max_steps)
    if phase in ("real", "synthetic"):
        dom = real if phase == "real" else syn
        order = rng.permutation(len(dom))
        for s in range(n_steps):
            idx = order[s * batch_size:(s + 1) * batch_size]
            imgs, maps = _draw(dom, idx, crop, rng, flips, rotations, edge_prob, zoom, photometric_strength)
            yield _pack(imgs, [m.sum().item() for m in maps], maps)
        return
    draw = dict(crop=crop, rng=rng, flips=flips, rotations=rotations, edge_prob=edge_prob, zoom=zoom,
                photometric_strength=photometric_strength)
    half = max(batch_size // 2, 1)
    if phase == "adapt" and syn is None:  # target crops only
        order = _stream(len(real), n_steps * batch_size, rng)
        for s in range(n_steps):
            imgs, maps = _draw(real, order[s * batch_size:(s + 1) * batch_size], **draw)
            yield _pack(imgs, [m.sum().item() for m in maps], maps)
        return
    order = _stream(len(real), n_steps * half, rng) if phase == "adapt" else rng.permutation(len(real))
    syn_idx = _stream(len(syn), n_steps * half * (1 if phase == "dual" else 2), rng)
    for s in range(n_steps):
        r_idx = order[s * half:(s + 1) * half]
        r_imgs, r_maps = _draw(real, r_idx, **draw)
        s_imgs, s_maps = _draw(syn, syn_idx[s * half:s * half + half], **draw)
        if phase == "dual":
            yield _pack(r_imgs + s_imgs, [m.sum().item() for m in r_maps + s_maps], r_maps + s_maps)
            continue
        base = n_steps * half + s * half
        p_imgs, p_maps = _draw(syn, syn_idx[base:base + len(r_idx)], **draw)
        mixed, mixed_counts, mixed_maps = [], [], []
        for ri, rm, pi, pm in zip(r_imgs, r_maps, p_imgs, p_maps):
            img, mm, n, _ = random_cutmix(ri, rm, pi, pm, rng, alpha=cutmix_alpha, prob=mix_prob)
            mixed.append(img)
            mixed_counts.append(n)
            mixed_maps.append(mm)
        yield _pack(s_imgs + mixed, [m.sum().item() for m in s_maps] + mixed_counts, s_maps + mixed_maps)
