"""``cellxfer evaluate``: count every labelled image whole (non-overlapping windows, see
:mod:`cellxfer.counter.windows`) and compare with the annotations."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from cellxfer.evaluate.metrics import Metrics, compute_metrics, format_predictions


from cellxfer.evaluate.config import EvaluateConfig  # noqa: E402,F401  (numpy-free, for the CLI's defaults)


#: a points table listing no cells, of an image the model counts at least this many cells in, is warned about: a
#: header-only table is right for an empty field, but one that lost its rows (a failed export) gives a true count of
#: 0 that would weigh in the metrics unseen. Only a warning: the table is used as it is.
EMPTY_TABLE_ALERT = 10


def _warn_empty_tables(ds, rows: list) -> None:
    """One warning line per image whose table lists no cells while the model counts :data:`EMPTY_TABLE_ALERT` or
    more, naming the table."""
    from cellxfer.console import warn

    for id_, true, pred in rows:
        if true == 0 and pred >= EMPTY_TABLE_ALERT:
            warn(f"{ds.points_path(id_)}: lists no cells, but the model counts {pred:.0f} in its image; its true count "
                 f"0 is used. If the field is not empty, the table lost its rows: export it again")


@dataclass
class EvaluateResult:
    metrics: Metrics
    csv: Optional[Path]  # the per-image CSV written (--csv), else None
    rows: list  # (image id, true, predicted)
    seconds: float
    localisation: Optional[dict] = None  # density models: precision, recall, f1, radius, tp, n_pred, n_true
    engine: str = ""  # the engine that ran, e.g. "onnx (cpu)"


def evaluate(config: EvaluateConfig, on_image: Callable[[str, int, float], None] | None = None) -> EvaluateResult:
    """Predict every usable image of ``config.data`` with the counter ``config.model`` exactly as
    ``count`` does (same engines and ``--engine auto`` resolution, :func:`cellxfer.engines.base.load_runner`;
    same resizing, windows or tiles, stitching and peaks); write the per-image CSV ``out_csv`` and the
    metrics ``out_json`` where asked (nothing else: no file appears unasked). An existing ``out_csv`` /
    ``out_json`` is replaced only with ``overwrite``, and never when it is an input (the model, a file
    of the data folder: :mod:`cellxfer.outputs`). A table listing no cells is used as it is (an empty field), with
    a warning when the model counts many in its image (:data:`EMPTY_TABLE_ALERT`)."""
    from cellxfer.atomic import write_json, write_text
    from cellxfer.outputs import refuse_existing
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.counter.head import head_of
    from cellxfer.density.match import match_points
    from cellxfer.engines.base import load_runner
    from cellxfer.scale import DiameterPolicy
    from cellxfer.train.data import labelled_ids

    from cellxfer.outputs import refuse_aliases

    refuse_aliases([("--csv", config.out_csv), ("--json", config.out_json)], [])  # not both the same file
    refuse_existing(config.out_csv, "--csv", config.overwrite, inputs=[config.model, config.data])
    refuse_existing(config.out_json, "--json", config.overwrite, inputs=[config.model, config.data])
    runner = load_runner(config.model, config.engine, device=config.device, batch_size=config.batch_size)
    meta = runner.meta
    policy = DiameterPolicy.parse(config.diameter, meta.diameter, str(config.model))
    ds, ids = labelled_ids(config.data, config.exclude, role="evaluation")
    density = head_of(meta).makes_points
    rows = []
    match = None
    t0 = time.perf_counter()
    for id_ in ids:
        s = ds[id_]
        res = count_plan(runner, plan_image(s.image, meta, policy, Path(id_)), config.batch_size, points=density)
        pred = res.count
        if density:  # points = the density's peaks (cellxfer.density), in original pixels
            m = match_points(res.points, s.points, config.radius)
            match = m if match is None else match + m
        rows.append((id_, s.count, pred))
        if on_image is not None:
            on_image(id_, s.count, pred)
    seconds = time.perf_counter() - t0
    _warn_empty_tables(ds, rows)
    out = Path(config.out_csv) if config.out_csv else None
    if out is not None:
        write_text(out, format_predictions(rows))
    loc = None if match is None else {"precision": match.precision, "recall": match.recall, "f1": match.f1,
                                      "radius": config.radius, "tp": match.tp, "n_pred": match.n_pred, "n_true": match.n_true}
    result = EvaluateResult(compute_metrics([r[1] for r in rows], [r[2] for r in rows]), out, rows, seconds, loc,
                            runner.label)
    if config.out_json is not None:
        write_json(config.out_json, {"model": str(config.model), "data": str(config.data), "engine": result.engine,
                                     **result.metrics.as_dict(), "csv": None if out is None else str(out), "localisation": loc})
    return result
