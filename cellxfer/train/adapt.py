"""Unsupervised adaptation of a density counter to unlabelled target images (``cellxfer adapt-count``).

Method (a mean teacher with pseudo-density, DACS mixing and the synthetic labels kept in the loop): it
is :func:`cellxfer.train.counter.train_counter` in regime ``adapt``, starting from a trained counter
(``pretrained``), with ``ema`` > 0 as the *teacher*:

1. At the start of every epoch the teacher (the exponential moving average of the student's weights)
   counts every target image whole, as ``count`` does (resized to the model's nucleus diameter by the
   ``--diameter`` policy, normalised, tiles stitched). Its density map is the image's *pseudo-density*
   (the weak view: the whole image, unaugmented). It is used as it is, so it keeps the teacher's count
   exactly; hard pseudo-points from its peaks lose the cells of merged peaks in dense regions, and
   training on them shrank the counts epoch after epoch (docs/results.md).
2. The epoch is ``dacs`` with the pseudo-labelled target images as the real domain
   (:mod:`cellxfer.train.sampler`, phase ``adapt``): every batch is half labelled synthetic crops (their
   centres rendered as density: the supervised loss stays in the loop) and half target crops, each with
   probability ``mix_prob`` CutMixed with another synthetic crop. Every crop is a strong view: a random
   flip / 90-degree rotation (its map moved with it) and, with ``photometric`` > 0, gain, gamma, blur and
   noise (:func:`cellxfer.train.data.photometric`). The student's pixel and crop-count loss against the
   pseudo-density is the consistency term between the teacher's weak and the student's strong view.
3. Batch-norm layers stay in evaluation mode with the given counter's statistics (:func:`freeze_batch_norm`).
4. After every step the teacher moves toward the student (constant decay ``ema``, no warm-up, so it
   starts as the given counter and changes slowly); the teacher is what is validated and saved.

Invariants: the labels of the target images are never read (only its image files are listed, opened and
hashed for the manifest, even when the folder holds points tables), and a run whose target folder is,
holds or lies inside a labelled folder of the same run (``--val``, ``--synthetic``) is refused. The
pseudo-density of epoch ``e`` is a function of the teacher saved after epoch ``e - 1``, so a resumed run
equals an uninterrupted one (the resume mechanism of ``train-count``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellxfer.errors import InputError
from cellxfer.train.data import Domain


def target_files(path: str | os.PathLike) -> list[Path]:
    """Image files of ``path``: a cell dataset's ``images/`` folder (its points tables are not opened),
    a folder of images, or one image file."""
    from cellxfer.inputs import expand_inputs

    path = Path(path)
    if not path.exists():
        raise InputError(f"--unlabeled {path}: no such file or folder; give the folder of target images")
    folder = path / "images" if (path / "images").is_dir() else path
    files, _ = expand_inputs([folder])
    if not files:
        raise InputError(f"--unlabeled {path}: holds no images (TIFF, PNG)")
    return files


@dataclass
class Target:
    """Unlabelled target images in memory, resized and normalised exactly as ``count`` would."""

    root: Path
    files: list[Path]
    images: list[np.ndarray]  # float32, normalised, at the model's nucleus scale

    def __len__(self) -> int:
        return len(self.files)

    def manifest(self) -> dict:
        """What the manifest records of the target: its image files and their hashes (no label file)."""
        from cellxfer.manifest import sha256_file

        return {"path": str(self.root.resolve()), "images": len(self.files),
                "files": {f.name: sha256_file(f) for f in self.files}}

    def pseudo_labelled(self, teacher, meta, min_peak: float = 0.0) -> Domain:
        """The target images with the teacher's whole-image density maps (float32) as their maps, each
        filtered by :func:`confident_density` with ``min_peak``."""
        from cellxfer.counter.model import torch_runner
        from cellxfer.count.parts import density_normalized

        was_training = teacher.training
        teacher.eval()
        device = next(iter(teacher.parameters())).device
        runner = torch_runner(teacher, str(device))
        sigma = float(meta.arch_options.get("sigma", 3.0))
        maps = [confident_density(density_normalized(runner, meta, img), sigma, min_peak) for img in self.images]
        teacher.train(was_training)
        return Domain("target (pseudo-labelled)", self.root, [f.stem for f in self.files], self.images, maps)


def confident_density(density: np.ndarray, sigma: float, min_peak: float) -> np.ndarray:
    """float32 ``density`` kept only near confident cells: pixels within ``3 sigma`` of a pixel whose
    density reaches ``min_peak`` x the peak height of one isolated kernel (``1 / (2 pi sigma^2)``, the
    scale of :func:`cellxfer.density.peaks.find_peaks`' threshold); elsewhere 0. Low density spread over
    the background (noise the teacher half-counts) goes, a confidently found cell keeps its whole kernel,
    dense clusters keep their exact mass; ``min_peak`` 0 keeps everything."""
    d = np.asarray(density, dtype=np.float32)
    if min_peak <= 0:
        return d
    from scipy.ndimage import binary_dilation

    r = int(np.ceil(3 * sigma))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    keep = binary_dilation(d >= min_peak / (2 * np.pi * sigma ** 2), structure=(yy * yy + xx * xx) <= r * r)
    return np.where(keep, d, np.float32(0)).astype(np.float32, copy=False)


def as_density(domain: Domain, sigma: float) -> Domain:
    """``domain`` with its centre maps rendered as density maps (one kernel of mass 1 per centre, whole
    images), so its crops mix with the target's pseudo-density."""
    from cellxfer.density.targets import density_from_centre_map

    return Domain(domain.name, domain.root, domain.ids, domain.images,
                  [density_from_centre_map(m, sigma) for m in domain.maps])


def load_target(path: str | os.PathLike, meta, diameter: str | None = None) -> Target:
    """Read the target images (never their labels), resize them by the ``--diameter`` policy for ``meta``
    and normalise them as ``count`` does (:func:`cellxfer.count.parts.plan_image`)."""
    from cellxfer.imageio import read_image
    from cellxfer.scale import DiameterPolicy

    files = target_files(path)
    policy = DiameterPolicy.parse(diameter, meta.diameter)
    return Target(Path(path), files, [_normalized(read_image(f), meta, policy) for f in files])


def _normalized(image, meta, policy):
    """An image resized by ``policy`` and normalised for ``meta`` as ``count`` does it."""
    scaled = policy.scale(image, meta)
    return meta.normalization.apply(scaled.image, image if scaled.resized else None, scaled.estimate)


def source_meta(model: str | os.PathLike):
    """The counter to adapt: its :class:`CounterMeta`, refused unless it outputs a density."""
    from cellxfer.counter.model import read_meta

    from cellxfer.counter.head import head_of

    meta = read_meta(model)
    if not head_of(meta).learnt_density:
        raise InputError(f"--model {model}: a {meta.arch} counter ({meta.output} output) cannot make pseudo-points; "
                         f"adapt-count adapts density counters (train-count --arch density)")
    return meta


def adapt_config(model: str | os.PathLike, unlabeled: str | os.PathLike, out: str | os.PathLike, **kw):
    """A :class:`TrainConfig` of regime ``adapt`` whose architecture, window, normalisation and density
    options are those of the counter ``model`` (what it was trained with); ``kw`` sets the rest."""
    from cellxfer.train.config import TrainConfig

    meta = source_meta(model)
    opts = dict(meta.arch_options)
    extra = dict(kw.pop("extra", {}) or {})
    extra["arch_options"] = opts
    kw.setdefault("init_head_bias", False)
    return TrainConfig(regime="adapt", out=Path(out), unlabeled=Path(unlabeled), pretrained=Path(model),
                       arch=meta.arch, crop=meta.window, **TrainConfig.norm_options(meta.normalization),
                       sigma=float(opts.get("sigma", 3.0)), extra=extra, **kw)


def adapted_meta(config, meta):
    """``(meta, scale)`` of an adapt run: ``meta`` with the given counter's nucleus scale (the adapted
    counter expects what it did), refused unless architecture, window, normalisation and options match
    it; ``scale(image) -> Scaled`` resizes labelled validation images as ``evaluate`` would."""
    from dataclasses import replace

    from cellxfer.scale import DiameterPolicy

    src = source_meta(config.pretrained)
    for name in ("arch", "window", "normalization", "arch_options"):
        if getattr(src, name) != getattr(meta, name):
            raise InputError(f"--model {config.pretrained}: its {name} ({getattr(src, name)}) differs from the run's "
                             f"({getattr(meta, name)}); build the adapt config with cellxfer.train.adapt.adapt_config")
    meta = replace(meta, diameter=src.diameter, diameter_range=src.diameter_range,
                   extra={**meta.extra, "adapted_from": Path(config.pretrained).name})
    policy = DiameterPolicy.parse(config.diameter, meta.diameter)
    return meta, (lambda image: policy.scale(image, meta))


def freeze_batch_norm(model) -> int:
    """Put every batch-norm layer of ``model`` in evaluation mode (its running statistics stay those of
    the given counter; its scale and shift still learn); returns how many. Measured on the IDCIA
    validation images (docs/results.md): re-estimating the statistics on the target images (AdaBN)
    made the synthetic-only counters overcount (val MAE 20.29 -> 32.23, 18.52 -> 21.92)."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.eval()
    return len(layers)
