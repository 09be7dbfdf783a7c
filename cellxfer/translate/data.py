"""Translator data: paired folders (``source/<id>.tif`` + ``target/<id>.tif``), unpaired image folders,
and the intensity mapping between stored pixels and the network's [-1, 1] range.

Normalisation (both directions are per image, so 8- and 16-bit files and microscope offsets need no
settings): ``x = 2 * (image - p_lo) / max(p_hi - p_lo, 1) - 1`` with ``p_lo``/``p_hi`` the image's
``(lo, hi)`` percentiles, *not* clipped (a saturated or overexposed image stays as the microscope
gave it). Targets are clipped to [-1, 1] for training, as the generator ends in tanh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellxfer.errors import InputError

SOURCE, TARGET = "source", "target"


def normalize(image: np.ndarray, percentiles: tuple[float, float], clip: bool = False) -> np.ndarray:
    """2-D image, any dtype -> float32 in about [-1, 1] (see module docs)."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, percentiles)
    x = np.float32(2.0) * (img - np.float32(lo)) / np.float32(max(hi - lo, 1.0)) - np.float32(1.0)
    return np.clip(x, -1.0, 1.0) if clip else x


def to_unit(x: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1] -> float32 in [0, 1]."""
    return np.clip((np.asarray(x, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)


def to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """Network output in [-1, 1] -> ``uint16`` (0..65535), ``uint8`` (0..255) or ``float32`` (0..1)."""
    u = to_unit(x)
    if dtype == "uint16":
        return np.rint(u * 65535.0).astype(np.uint16)
    if dtype == "uint8":
        return np.rint(u * 255.0).astype(np.uint8)
    if dtype == "float32":
        return u
    raise InputError(f"--dtype {dtype!r}: expected uint16, uint8 or float32")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (sorted); a pairs folder gives its ``source/`` images."""
    from cellxfer.imageio import image_suffixes

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give a folder of images or a pairs folder (source/ + target/)")
    if (folder / SOURCE).is_dir():
        folder = folder / SOURCE
    suffixes = image_suffixes()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise InputError(f"{folder}: holds no images ({', '.join(sorted(suffixes))}); point at the folder with the images")
    return files


def is_pairs(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / SOURCE).is_dir() and (folder / TARGET).is_dir()


@dataclass
class Pair:
    id: str
    source: Path
    target: Path | None


def list_pairs(folder: str | os.PathLike, need_targets: bool = True) -> list[Pair]:
    """The pairs of a ``source/`` + ``target/`` folder, matched by file stem. Sources without a target
    are an error when ``need_targets``."""
    folder = Path(folder)
    if not (folder / SOURCE).is_dir() or (need_targets and not (folder / TARGET).is_dir()):
        raise InputError(f"{folder}: not a pairs folder; it needs source/<id>.tif and target/<id>.tif (same geometry)")
    sources = list_images(folder / SOURCE)
    targets = {p.stem: p for p in list_images(folder / TARGET)} if (folder / TARGET).is_dir() else {}
    pairs = []
    missing = []
    for s in sources:
        t = targets.get(s.stem)
        if t is None and need_targets:
            missing.append(s.stem)
        pairs.append(Pair(s.stem, s, t))
    if missing:
        raise InputError(f"{folder / TARGET}: no target for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                         f"every source/<id> needs a target/<id> of the same size")
    return pairs


def read_pair(pair: Pair, channel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from cellxfer.imageio import read_image

    s = read_image(pair.source, channel=channel)
    t = read_image(pair.target)
    if s.shape != t.shape:
        raise InputError(f"{pair.target}: size {t.shape[1]}x{t.shape[0]} differs from its source {pair.source} "
                         f"({s.shape[1]}x{s.shape[0]}); register and crop the pair to one geometry")
    return s, t


def check_size(path: Path, shape: tuple[int, int], size: int) -> None:
    if min(shape) < size:
        raise InputError(f"{path}: {shape[1]}x{shape[0]} is smaller than the training size {size}; "
                         f"pass a smaller --size (a multiple of 2**num-downs) or use larger images")


def random_crops(arrays: list[np.ndarray], size: int, n: int, rng: np.random.Generator, flip: bool = True,
                 augment: str = "flip") -> np.ndarray:
    """``n`` random ``size`` crops, each from a random array of ``arrays`` (each (C, H, W) float32).
    ``augment="flip"``: random horizontal flips (pix2pix's augmentation; none when not ``flip``);
    ``"dihedral"``: one of the 8 rotations/reflections of the square, uniformly (for microscopy, where
    the field has no up). The random draws of ``"flip"`` are unchanged from before ``augment`` existed.
    Returns (n, C, size, size) float32."""
    if augment not in ("flip", "dihedral"):
        raise InputError(f"--augment {augment!r}: expected flip (horizontal flips) or dihedral (8 rotations/reflections)")
    out = []
    for _ in range(n):
        a = arrays[int(rng.integers(len(arrays)))]
        y = int(rng.integers(0, a.shape[1] - size + 1))
        x = int(rng.integers(0, a.shape[2] - size + 1))
        c = a[:, y : y + size, x : x + size]
        if flip and rng.random() < 0.5:
            c = c[:, :, ::-1]
        if augment == "dihedral":
            c = np.rot90(c, int(rng.integers(4)), axes=(1, 2))
        out.append(c)
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)
