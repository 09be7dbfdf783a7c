"""Counter ensembles: several trained counters in one model file whose output is the mean of theirs.

Members must agree on everything ``count`` reads from :class:`~cellxfer.counter.model.CounterMeta`
(input channels, window, output kind, intensity normalisation, and for density maps the kernel sigma),
so the ensemble is used, exported and counted like any single counter. Its meta has
``arch = "ensemble"`` and ``arch_options["members"]``, the members' metas (as dicts); its weights are
the members' under ``members.<i>.``. A density ensemble sums to the mean of the members' counts.

Typical use: train the same recipe with K seeds (``train-count --seed``), then ``cellxfer ensemble``.
Averaging K independently trained networks lowers the variance part of the error; it costs K times the
inference compute.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cellxfer.counter.model import CounterMeta
from cellxfer.errors import InputError

ARCH = "ensemble"
#: Fields every member must share with the first one (what ``count`` reads from the meta).
SHARED = ("in_chans", "window", "output", "normalization")


def member_metas(meta: CounterMeta) -> list[CounterMeta]:
    """The members' metas of an ensemble meta."""
    return [CounterMeta.from_dict(d) for d in (meta.arch_options or {}).get("members", [])]


def build_ensemble(meta: CounterMeta):
    """``torch.nn.Module``: members built from their metas; ``forward(x)`` = mean of their outputs."""
    import torch
    from torch import nn

    from cellxfer.counter.model import build_counter

    members = member_metas(meta)
    if not members:
        raise InputError("ensemble meta without members; build it with `cellxfer ensemble MODEL MODEL ...`")

    class CounterEnsemble(nn.Module):
        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList([build_counter(m) for m in members])

        def forward(self, x):
            return torch.stack([m(x) for m in self.members]).mean(dim=0)

    return CounterEnsemble()


def ensemble_meta(metas: list[CounterMeta], names: list[str]) -> CounterMeta:
    """The ensemble's meta; :class:`InputError` naming the member that does not fit the first."""
    if len(metas) < 2:
        raise InputError("an ensemble needs at least two counters; give two or more .safetensors files")
    from cellxfer.counter.head import head_of

    for name, m in zip(names, metas):
        if not head_of(m).trained:
            raise InputError(f"{name}: a LoG detector outputs detections, not a density; ensemble trained counters only")
    first = metas[0]
    for name, m in zip(names[1:], metas[1:]):
        for f in SHARED:
            if getattr(m, f) != getattr(first, f):
                raise InputError(f"{name}: {f} {getattr(m, f)!r} differs from {names[0]}'s {getattr(first, f)!r}; "
                                 "ensemble counters trained with the same data settings")
        if head_of(first).makes_points and m.arch_options.get("sigma") != first.arch_options.get("sigma"):
            raise InputError(f"{name}: density sigma {m.arch_options.get('sigma')} differs from {names[0]}'s "
                             f"{first.arch_options.get('sigma')}; ensemble density counters trained with the same --sigma")
    options = {"members": [asdict(m) for m in metas]}
    if head_of(first).makes_points:
        for key in ("sigma", "tile", "margin"):
            if key in first.arch_options:
                options[key] = first.arch_options[key]
    diameters, ranges = [m.diameter for m in metas], [m.diameter_range for m in metas]
    diameter = float(sum(diameters) / len(diameters)) if all(diameters) else None
    seen = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if all(ranges) else None
    return CounterMeta(arch=ARCH, in_chans=first.in_chans, window=first.window, output=first.output,
                       normalization=first.normalization, arch_options=options, diameter=diameter,
                       diameter_range=seen,
                       extra={"members": len(metas)})


@dataclass(frozen=True)
class EnsembleConfig:
    """``models``: counter checkpoints (.safetensors) to average; ``out``: the ensemble file to write
    (plus ``<out>.manifest.json``), never one of ``models``, and an existing file only with ``overwrite``."""

    models: tuple[Path, ...]
    out: Path
    overwrite: bool = False


def refuse_repeats(models) -> None:
    """:class:`InputError` when two of ``models`` are one counter (the same file by any name, or a copy):
    it would count twice in the mean, silently weighting the ensemble."""
    from cellxfer.manifest import sha256_file

    seen: dict[str, Path] = {}
    for path in map(Path, models):
        digest = sha256_file(path) if path.is_file() else str(path)  # a missing file: read_meta names it
        if digest in seen:
            raise InputError(f"{seen[digest]} and {path}: the same counter twice (the same file, or a copy), which "
                             f"would count double in the mean; give each counter once (e.g. one recipe trained with "
                             f"several --seed values)")
        seen[digest] = path


def make_ensemble(config: EnsembleConfig) -> Path:
    """Write the ensemble of ``config.models`` to ``config.out`` (atomically) with its manifest."""
    from cellxfer.atomic import write_json
    from cellxfer.counter.model import read_meta, save_counter
    from cellxfer.manifest import build_manifest, config_dict, sidecar_manifest
    from cellxfer.weights import load_weights

    from cellxfer.outputs import refuse_existing

    out = Path(config.out)
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: the ensemble is a counter checkpoint; name it *.safetensors")
    refuse_existing(out, "-o", config.overwrite, inputs=config.models)
    refuse_repeats(config.models)
    metas = [replace(read_meta(p), version="") for p in config.models]
    meta = ensemble_meta(metas, [str(p) for p in config.models])
    model = build_ensemble(meta)
    for slot, path, m in zip(model.members, config.models, metas):
        load_weights(slot, path, f"architecture '{m.arch}'")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_counter(out, model, meta)
    write_json(sidecar_manifest(out),
               build_manifest("ensemble", config_dict(config), seed=None, inputs=list(config.models)))
    return out

