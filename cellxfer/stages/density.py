"""Built-in plugin: the ``density`` (small UNet density map) and ``log`` (classical LoG blob detector)
counter architectures (``train-count --arch density|log``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from cellxfer.hookspecs import hookimpl


@dataclass(frozen=True)
class DensityArch:
    """A counter architecture whose output is a density map (``CounterMeta.output == "density"``)."""

    name: str
    description: str
    build: Callable[[Any], Any]
    output: str = "density"
    defaults: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)  # option -> cellxfer.bounds.Bound (checked by train-count --arch-option)


def _build_unet(meta):
    from cellxfer.density.net import build_density_unet

    return build_density_unet(meta)


def _build_log(meta):
    from cellxfer.classical import build_log

    return build_log(meta)


def _fit_log(config, **kw):
    from cellxfer.classical import train_log

    return train_log(config, **kw)


@dataclass(frozen=True)
class FittedArch:
    """A density-output architecture whose parameters are fitted, not trained: ``train-count`` calls
    ``fit(config, on_epoch=..., on_step=..., on_start=...) -> run dir`` instead of gradient training."""

    name: str
    description: str
    build: Callable[[Any], Any]
    fit: Callable[..., Any]
    output: str = "density"
    defaults: dict = field(default_factory=dict)


@hookimpl
def cellxfer_counter_architectures():
    from cellxfer.density.net import BOUNDS, DEFAULTS  # numpy/torch-free module top: cheap at registration

    return [
        DensityArch("density", "small UNet predicting a density map (sum = count, peaks = cells), any input size",
                    _build_unet, defaults=dict(DEFAULTS), bounds=dict(BOUNDS)),
        FittedArch("log", "classical Laplacian-of-Gaussian blob detector; sigma and threshold fitted in about a minute",
                   _build_log, _fit_log),
    ]
