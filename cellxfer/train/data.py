"""Training data in memory: normalised images with centre-count maps, random crops, dihedral augmentation.

A *centre map* is an int32 array the shape of its image holding, at pixel ``(floor(y), floor(x))``, the
number of annotated centres there (the pixel convention of :mod:`cellxfer.dataset`). Every crop, flip,
rotation or CutMix is applied to image and map together, so the target count of any training window is
``map.sum()``: exact, never estimated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from cellxfer.console import warn
from cellxfer.counter.model import Normalization
from cellxfer.errors import InputError

#: Images known to have a missing annotation (id -> where that is documented). They are excluded from
#: training and evaluation, with a warning, and are not part of the benchmarks' split.
KNOWN_UNANNOTATED = {
    "220909_GFP-AHPC_D_MAP2ab_F4_DAPI_ND1_20x":
        "its ground-truth table has a header and no rows although the image shows ~200 nuclei "
        "(idcia-dapi-95 README, 'Known defect')",
}
_SWAPPED = ("its ground-truth points lie on the nuclei of {other} ({there} of them on signal there, {own} here): "
            "the Map2AB F6/F8/F9 tables are permuted (docs/results.md 'Annotation defects')")
#: Images whose annotation belongs to another image or to none (id -> evidence; found by
#: ``scripts/check_annotations.py``, a model-free test: the share of a table's points that sit on signal,
#: 0.88-1.00 for the other 90 tables). Excluded from training and evaluation with a warning like
#: :data:`KNOWN_UNANNOTATED`, but they keep their place in the benchmarks' split
#: (:mod:`cellxfer.evaluate.split`), so the split stays what it was.
KNOWN_MISANNOTATED = {
    "220912_GFP-AHPC_A_Map2AB_F6_DAPI_ND1_20x": _SWAPPED.format(other="Map2AB F9", there="99%", own="12%"),
    "220912_GFP-AHPC_A_Map2AB_F8_DAPI_ND1_20x": _SWAPPED.format(other="Map2AB F6", there="96%", own="3%"),
    "220912_GFP-AHPC_A_Map2AB_F9_DAPI_ND1_20x": _SWAPPED.format(other="Map2AB F8", there="96%", own="10%"),
    "220909_GFP-AHPC_B_GFAP_F3_DAPI_ND1_20x":
        "only 7% of its 274 ground-truth points lie on signal (the image shows ~145 nuclei) and they fit no "
        "other image of the set: the table belongs to another field (docs/results.md 'Annotation defects')",
}


def centre_map(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """int32 (H, W): number of centres whose pixel is ``(floor(y), floor(x))``; sums to ``len(points)``."""
    cmap = np.zeros(shape, dtype=np.int32)
    if len(points):
        p = np.floor(np.asarray(points, dtype=np.float64)).astype(np.intp)
        np.add.at(cmap, (p[:, 1], p[:, 0]), 1)
    return cmap


@dataclass
class Domain:
    """One domain's labelled images in memory: ``images[i]`` float32 (H, W) normalised, ``maps[i]`` int32
    centre maps of the same shape (or float32 density maps: :mod:`cellxfer.train.adapt`), ``ids[i]`` the
    image ids."""

    name: str
    root: Path
    ids: list[str]
    images: list[np.ndarray]
    maps: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> np.ndarray:
        return np.array([round(float(m.sum())) for m in self.maps], dtype=np.int64)


def excluded_ids(ds, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Ids of ``ds`` to leave out (id -> reason): the known unannotated and misannotated images plus ``exclude``."""
    out = {i: why for i, why in (KNOWN_UNANNOTATED | KNOWN_MISANNOTATED).items() if i in ds.ids}
    for e in exclude:
        stem = Path(e).stem if Path(e).suffix.lower() in (".tif", ".tiff", ".png", ".csv") else e
        if stem not in ds.ids:
            raise InputError(f"{ds.root}: --exclude {e}: no image with that id; give an image file stem")
        out.setdefault(stem, "excluded by the user")
    return out


def known_defects(*roots) -> list[str]:
    """Sorted ids of the images of labelled datasets ``roots`` (None skipped) that cellxfer leaves out
    because their annotation is known wrong or empty (:data:`KNOWN_UNANNOTATED`, :data:`KNOWN_MISANNOTATED`).
    A training run records them in its identity, so a run trained before an image was found wrong is not
    silently continued or reused."""
    from cellxfer.dataset import CellDataset

    hit = set()
    for root in roots:
        if root is None:
            continue
        try:
            hit.update(excluded_ids(CellDataset(root)))  # with no --exclude: just the known ones
        except Exception:  # noqa: BLE001 - an unreadable dataset is reported where it is loaded
            continue
    return sorted(hit)


def labelled_ids(root: str | os.PathLike, exclude: Iterable[str] = (), role: str = "data") -> tuple[object, list[str]]:
    """``(CellDataset, ids to use)`` for a labelled dataset, warning about every excluded image."""
    from cellxfer.dataset import CellDataset

    ds = CellDataset(root)
    if not ds.labelled:
        raise InputError(f"{ds.root}: {role} dataset has no points/ (or ground_truth/) folder; it must be labelled")
    skip = excluded_ids(ds, exclude)
    if ds.ids and not [i for i in ds.ids if i not in skip]:
        whys = sorted(set(skip.values()))
        raise InputError(f"{ds.root}: all {len(ds.ids)} images are left out of {role} ({'; '.join(whys)}); "
                         f"nothing is left to use: drop an --exclude or give another dataset")
    for id_, why in skip.items():
        warn(f"{ds.root}: excluding image {id_} from {role}: {why}")
    lone = ds.unmatched_points()
    if lone:
        names = ", ".join(p.name for p in lone[:5]) + (f" and {len(lone) - 5} more" if len(lone) > 5 else "")
        warn(f"{ds.points_dir}: {len(lone)} points table(s) without an image in images/ ({names}): not used for "
             f"{role}; add their images or remove the tables")
    return ds, [i for i in ds.ids if i not in skip]


def load_domain(root: str | os.PathLike, normalization: Normalization, name: str,
                exclude: Iterable[str] = (), scale=None) -> Domain:
    """Read a labelled dataset into memory (normalised whole images + centre maps). ``scale``
    (image -> :class:`cellxfer.scale.Scaled`, e.g. a ``--diameter`` policy) resizes each image first,
    its points with it, as ``evaluate`` does."""
    ds, ids = labelled_ids(root, exclude, role=name)
    if not ids:
        raise InputError(f"{ds.root}: no usable labelled images for {name}")
    images, maps = [], []
    for id_ in ids:
        s = ds[id_]
        image, points = s.image, s.points
        if scale is not None:
            scaled = scale(image)
            image, points = scaled.image, points / np.array([scaled.sx, scaled.sy])
        images.append(normalization.apply(image))
        maps.append(centre_map(np.minimum(points, np.array(image.shape[::-1]) - 1e-6), image.shape))
    return Domain(name, ds.root, ids, images, maps)


def random_crop(image: np.ndarray, cmap: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One uniformly placed ``size`` x ``size`` crop of image and map. A side shorter than ``size`` is
    zero-padded bottom/right (the padding holds no centres)."""
    h, w = image.shape
    y = int(rng.integers(0, max(h - size, 0) + 1))
    x = int(rng.integers(0, max(w - size, 0) + 1))
    img = image[y:y + size, x:x + size]
    cm = cmap[y:y + size, x:x + size]
    if img.shape != (size, size):
        pi = np.zeros((size, size), dtype=image.dtype)
        pm = np.zeros((size, size), dtype=cmap.dtype)
        pi[:img.shape[0], :img.shape[1]] = img
        pm[:cm.shape[0], :cm.shape[1]] = cm
        img, cm = pi, pm
    return img, cm


def zoom_crop(image: np.ndarray, cmap: np.ndarray, size: int, rng: np.random.Generator,
              zoom: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop in which everything appears ``z`` times its size, ``z`` log-uniform in
    ``zoom`` (scale randomisation): a uniformly placed ``round(size / z)`` square of image and map
    (:func:`random_crop`) resized to ``size`` (bilinear image; every centre moved to the pixel of its
    scaled position), so the crop's target count is still exactly ``map.sum()``. One extra random draw."""
    from PIL import Image

    lo, hi = zoom
    z = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    src = max(1, int(round(size / z)))
    img, cm = random_crop(image, cmap, src, rng)
    if src == size:
        return img, cm
    out = np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.float32)).resize((size, size), Image.BILINEAR))
    ys, xs = np.nonzero(cm)
    scaled = np.zeros((size, size), dtype=cmap.dtype)
    f = size / src
    np.add.at(scaled, (np.minimum(((ys + 0.5) * f).astype(np.intp), size - 1),
                       np.minimum(((xs + 0.5) * f).astype(np.intp), size - 1)), cm[ys, xs])
    return out.astype(image.dtype, copy=False), scaled


def augment(image: np.ndarray, cmap: np.ndarray, rng: np.random.Generator, flips: bool = True,
            rotations: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Random element of the dihedral group (90-degree rotations x horizontal flip), same on both.
    The two random draws are always made, so the random stream does not depend on the options."""
    k, f = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
    if rotations and k:
        image, cmap = np.rot90(image, k), np.rot90(cmap, k)
    if flips and f:
        image, cmap = image[:, ::-1], cmap[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(cmap)


def edge_pad(image: np.ndarray, cmap: np.ndarray, rng: np.random.Generator, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """With probability ``prob``, cut the crop short like a border window of whole-image counting
    (:mod:`cellxfer.counter.windows`): keep the top ``h`` rows and/or left ``w`` columns (h, w uniform in
    1..size) and zero the rest of image and map, so the model learns that the zero padding of border
    windows holds no cells. Four random draws are always made (a fixed stream)."""
    u, kind = rng.random(), int(rng.integers(0, 3))
    size_h, size_w = image.shape
    h, w = int(rng.integers(1, size_h + 1)), int(rng.integers(1, size_w + 1))
    if u >= prob:
        return image, cmap
    image, cmap = image.copy(), cmap.copy()
    if kind in (0, 2):  # short in height (bottom border)
        image[h:], cmap[h:] = 0, 0
    if kind in (1, 2):  # short in width (right border)
        image[:, w:], cmap[:, w:] = 0, 0
    return image, cmap


def photometric(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """The *strong* view of a normalised crop (mean-teacher training, :mod:`cellxfer.train.adapt`):
    gain ``exp(s * U(-0.4, 0.4))``, gamma ``exp(s * U(-0.4, 0.4))`` on the positive values, Gaussian blur
    of sigma ``s * U(0, 1)`` pixels and Gaussian noise of SD ``s * U(0, 0.08)``, with ``s = strength``.
    None of these moves a cell, so the crop's centre map stays its target. ``strength`` 0 returns the
    image unchanged *and draws nothing*, so runs without it keep their random stream; otherwise four
    numbers and one noise field are always drawn."""
    if strength <= 0:
        return image
    from scipy.ndimage import gaussian_filter

    gain, gamma, blur, sd = (float(v) for v in rng.uniform((-0.4, -0.4, 0.0, 0.0), (0.4, 0.4, 1.0, 0.08)))
    noise = rng.standard_normal(image.shape).astype(np.float32)
    out = np.asarray(image, dtype=np.float32) * np.float32(math.exp(strength * gain))
    pos = out > 0
    out[pos] = out[pos] ** np.float32(math.exp(strength * gamma))
    if strength * blur > 0.05:
        out = gaussian_filter(out, strength * blur, mode="nearest").astype(np.float32, copy=False)
    return out + np.float32(strength * sd) * noise
