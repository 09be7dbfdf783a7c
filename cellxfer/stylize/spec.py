"""The stylizer contract (numpy-free, so plugin modules stay cheap to import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Stylizer:
    """A named style-transfer method, provided through the ``cellxfer_stylizers`` hook.

    ``config_cls``: a frozen dataclass of the method's parameters (all with defaults except the paths
    a weight-based method requires); an int field ``batch_size`` sets how many images one call gets.
    ``prepare(config, style) -> context``: run once per job (precompute style statistics, load
    networks); ``style`` is a :class:`cellxfer.stylize.base.StyleSet` of real images.
    ``stylize(images, context, config, rngs) -> list``: ``images`` a list of float32 (H, W) arrays in
    [0, 1] (the stored value divided by the dtype's maximum; shapes may differ), ``rngs`` one
    ``numpy.random.Generator`` per image; returns float32 arrays of the same shapes, pixel-aligned with
    the inputs (values outside [0, 1] are clipped on writing). Labels are never touched.
    ``needs_weights``: True when the method loads pretrained networks (InST).
    ``extra``: the pip extra the method needs (:data:`cellxfer.extras.EXTRAS`; InST: ``stylize``), checked
    before any work, so the one line names the extra that brings everything it needs.
    ``estimate(config, (H, W)) -> cellxfer.budget.Estimate``: optional, what one call costs on the largest
    content image, so settings that cannot run on this machine are refused before any work.
    """

    name: str
    description: str
    config_cls: type
    prepare: Callable[[Any, Any], Any]
    stylize: Callable[[list, Any, Any, list], list]
    needs_weights: bool = False
    estimate: Callable[[Any, tuple], Any] | None = None
    extra: str | None = None
