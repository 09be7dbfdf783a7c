"""The project's fixed split of a labelled real dataset into test / validation / training parts.

The annotated images (known unannotated ones excluded, :data:`cellxfer.train.data.KNOWN_UNANNOTATED`;
images with a known wrong annotation, :data:`~cellxfer.train.data.KNOWN_MISANNOTATED`, keep their place, so
the split does not move, and are left out wherever labels are read) are sorted by id and permuted with ``numpy.random.default_rng(seed)``: the first ``n_test`` are the
*test* part (reported, never trained, tuned or selected on), the next ``n_val`` the *validation* part
(recipes and checkpoints are chosen on it), the rest the *training* part. :func:`materialize` lays each
part out as a dataset folder of symlinks (nothing is copied). The default numbers are the benchmarks'
split of the IDCIA 95 (seed 2025: 19 / 15 / 60), shared by every ``scripts/bench_*.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SPLIT_SEED = 2025
N_TEST, N_VAL = 19, 15


def split_ids(root: str | os.PathLike, seed: int = SPLIT_SEED, n_test: int = N_TEST, n_val: int = N_VAL) -> dict:
    """``{"test": [...], "val": [...], "train": [...], "seed": seed, "source": root}`` (each sorted)."""
    from cellxfer.dataset import CellDataset
    from cellxfer.train.data import KNOWN_UNANNOTATED

    ids = sorted(i for i in CellDataset(root).ids if i not in KNOWN_UNANNOTATED)
    perm = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return {"test": sorted(perm[:n_test]), "val": sorted(perm[n_test:n_test + n_val]),
            "train": sorted(perm[n_test + n_val:]), "seed": seed, "source": str(root)}


#: the dsb2018-fluo split (:func:`stratified_split_ids`): shares of test and validation images per group
DSB_SEED, DSB_TEST, DSB_VAL = 2026, 0.2, 0.2


def stratified_split_ids(root: str | os.PathLike, seed: int = DSB_SEED, test: float = DSB_TEST,
                         val: float = DSB_VAL) -> dict:
    """A split of a many-source dataset (dsb2018-fluo) that keeps every source in every part: images are
    grouped by their size in pixels (which tracks the microscope in DSB2018), each group's sorted ids are
    permuted with ``numpy.random.default_rng(seed)`` and the first ``round(test * n)`` go to *test*, the
    next ``round(val * n)`` to *validation*, the rest to *training*. Adding a group leaves the others'
    split as it was. Returns the :func:`split_ids` dict plus ``"groups"`` (``{id: "WxH"}``)."""
    from PIL import Image

    from cellxfer.dataset import CellDataset

    ds = CellDataset(root)
    groups: dict[str, list[str]] = {}
    size_of = {}
    for id_ in sorted(ds.ids):
        with Image.open(ds.image_path(id_)) as im:  # the header only
            size_of[id_] = f"{im.size[0]}x{im.size[1]}"
        groups.setdefault(size_of[id_], []).append(id_)
    parts: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    for key in sorted(groups):
        ids = groups[key]
        perm = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        n_test, n_val = round(test * len(ids)), round(val * len(ids))
        parts["test"] += perm[:n_test]
        parts["val"] += perm[n_test:n_test + n_val]
        parts["train"] += perm[n_test + n_val:]
    return {k: sorted(v) for k, v in parts.items()} | {"seed": seed, "source": str(root), "groups": size_of}


def materialize(root: str | os.PathLike, work: str | os.PathLike, parts: dict | None = None) -> dict:
    """Write ``WORK/split.json`` and ``WORK/<prefix>-<part>/{images,ground_truth}`` symlink folders of an
    IDCIA-layout ``root`` (prefix ``idcia``, parts train/val/test plus ``trainval``); returns the split."""
    root, work = Path(root), Path(work)
    split = parts or split_ids(root)
    groups = {p: split[p] for p in ("train", "val", "test")} | {"trainval": sorted(split["train"] + split["val"])}
    for part, ids in groups.items():
        for sub, suffix in (("images", ".tiff"), ("ground_truth", ".csv")):
            (work / f"idcia-{part}" / sub).mkdir(parents=True, exist_ok=True)
            for id_ in ids:
                link = work / f"idcia-{part}" / sub / f"{id_}{suffix}"
                if not link.exists():
                    os.symlink(root / sub / f"{id_}{suffix}", link)
    (work / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    return split


def subset(work: str | os.PathLike, part: str, n: int, seed: int = 0) -> Path:
    """``WORK/idcia-<part>-<n>``: the first ``n`` ids of ``part`` in a seeded random order (nested: the
    5 are inside the 15, which are inside the 60), as symlinks to the part's files."""
    work = Path(work)
    src = work / f"idcia-{part}"
    ids = sorted(p.stem for p in (src / "images").iterdir())
    pick = sorted(ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n])
    dest = work / f"idcia-{part}-{n}"
    for sub in ("images", "ground_truth"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for f in (src / sub).iterdir():
            if f.stem in pick and not (dest / sub / f.name).exists():
                os.symlink(os.path.realpath(f), dest / sub / f.name)
    return dest
