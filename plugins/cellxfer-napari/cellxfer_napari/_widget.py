"""The "Count cells" dock widget: counts an image layer (the whole image or the part in view) with a
counter and engine (:func:`cellxfer.count.count_array`, the pipeline of ``cellxfer count``, run in a
worker process: :mod:`._work`), shows the
cells as a points layer and the count; the points (edited or not) are saved as an ``x,y`` CSV, or GeoJSON
for QuPath, by the file's suffix (:func:`cellxfer.count.job.write_points`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton, create_widget

from cellxfer_napari._coords import from_napari, to_napari
from cellxfer_napari._reader import POINTS_STYLE

WHOLE, VISIBLE = "whole image", "part in view"


class _Job(NamedTuple):
    """One count to run: the layer, the plane shown (``lead``), the box ``(r0, r1, c0, c1)``, whether it is
    the whole plane, and :func:`cellxfer_napari._work.count_in_worker`'s arguments."""

    layer: object
    lead: tuple
    box: tuple
    whole: bool
    args: tuple


class CountWidget(Container):
    """See module docs. ``count_in_background()`` and ``save()`` are what the buttons run; ``count()``
    counts and waits (tests, scripts)."""

    def __init__(self, napari_viewer):
        from cellxfer.engines.base import engines

        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = FileEdit(label="counter", mode="r", filter="*.safetensors *.onnx", value="",
                              tooltip="A counter file (.safetensors or .onnx); empty: the shipped default counter")
        self.engine = ComboBox(label="engine", choices=["auto", *sorted(engines())], value="auto")
        self.region = ComboBox(label="region", choices=[WHOLE, VISIBLE], value=WHOLE,
                               tooltip="Count the whole image, or only the part the view shows (a region of a slide)")
        self.diameter = LineEdit(label="diameter", value="",
                                 tooltip="Nucleus diameter: auto, off or pixels; empty: as `cellxfer count`")
        self.count_button = PushButton(text="Count")
        self.result = Label(value="")
        self.save_to = FileEdit(label="save to", mode="w", filter="*.csv *.geojson", value="",
                                tooltip="x,y CSV (Fiji, cellxfer datasets) or .geojson (QuPath); "
                                        "empty: back to the file the points were opened from")
        self.save_button = PushButton(text="Save points")
        self.extend([self.image, self.model, self.engine, self.region, self.diameter, self.count_button,
                     self.result, self.save_to, self.save_button])
        self.count_button.changed.connect(self.count_in_background)
        self.save_button.changed.connect(self.save)
        self.points = None  # the points layer of the last count

    # -- counting -----------------------------------------------------------------------------------------
    def count(self):
        """Count the chosen image layer and wait for it; returns the points layer (None, with the reason
        shown, when the count could not run). The Count button runs :meth:`count_in_background`."""
        from cellxfer_napari._work import count_in_worker

        job = self._job()
        return self._say(job) if isinstance(job, str) else self._show(job, count_in_worker(*job.args))

    def count_in_background(self, *_):
        """The Count button: the same count, napari kept responsive while the worker counts; returns the
        thread worker (its ``returned`` signal comes after the points are shown)."""
        from napari.qt.threading import create_worker

        from cellxfer_napari._work import count_in_worker

        job = self._job()
        if isinstance(job, str):
            return self._say(job)
        self.count_button.enabled = False
        self._say(f"counting {job.layer.name}...")
        worker = create_worker(count_in_worker, *job.args, _start_thread=False)
        worker.returned.connect(lambda out: self._show(job, out))
        worker.finished.connect(lambda: setattr(self.count_button, "enabled", True))
        worker.start()
        return worker

    def _job(self):
        """What to count: a :class:`_Job`, or why nothing can be counted (a str)."""
        from cellxfer.lazy import is_lazy

        layer = self.image.value
        if layer is None:
            return "open an image first"
        data = layer.data[0] if layer.multiscale else layer.data
        lead = self._leading_index(layer, data)
        shape = data.shape[len(lead):len(lead) + 2]
        (r0, r1), (c0, c1) = self._bounds(layer, shape)
        if r1 <= r0 or c1 <= c0:
            return "the image is not in view: pan to it, or count the whole image"
        whole = (r0, c0, r1, c1) == (0, 0, *shape)
        # a slide opened by region (the reader) goes to the worker as it is: pickled by path, read by parts
        region = data if whole and is_lazy(data) else np.asarray(data[(*lead, slice(r0, r1), slice(c0, c1))])
        args = (region, self._model_path(), self.engine.value, self.diameter.value.strip() or None, layer.name)
        return _Job(layer, lead, (r0, r1, c0, c1), whole, args)

    def _show(self, job: "_Job", outcome):
        """Show a count's ``(count, points, error)`` (:func:`cellxfer_napari._work.count_in_worker`)."""
        count, points, error = outcome
        if error is not None:
            return self._say(error)
        if points is None:
            return self._say(f"count {count:.1f} (this counter gives a count per window, not cells)")
        r0, r1, c0, c1 = job.box
        xy = points + [c0, r0]
        self._show_points(job.layer, xy, job.lead, f"{job.layer.name} cells")
        self.points.metadata["cellxfer"] = {"count": count, "region": list(job.box), "points_file": None}
        where = "" if job.whole else f" in rows {r0}-{r1}, columns {c0}-{c1}"
        self._say(f"{len(xy)} cells (count {count:.1f}){where}")
        return self.points

    def _model_path(self):
        value = str(self.model.value or "").strip()
        return None if value in ("", ".") else Path(value)

    def _leading_index(self, layer, data) -> tuple:
        """Index of the plane shown, for a layer with axes before its 2-D planes (a stack)."""
        step = self.viewer.dims.current_step  # one per world axis; the layer's are the last layer.ndim
        return tuple(int(min(max(step[len(step) - layer.ndim + i], 0), data.shape[i] - 1))
                     for i in range(layer.ndim - 2))

    def _bounds(self, layer, shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((r0, r1), (c0, c1))``: the whole image, or the pixels of ``layer`` the canvas shows."""
        h, w = int(shape[0]), int(shape[1])
        if self.region.value == WHOLE:
            return (0, h), (0, w)
        camera = self.viewer.camera if not hasattr(self.viewer, "scene") else self.viewer.scene.camera
        ch, cw = self.viewer.canvas.size if hasattr(self.viewer, "canvas") else self.viewer._canvas_size
        cy, cx = camera.center[-2:]
        half = np.array([ch, cw]) / 2 / camera.zoom
        point = np.array(self.viewer.dims.point, dtype=float)
        corners = []
        for dy, dx in ((-1, -1), (1, 1)):
            point[-2:] = (cy + dy * half[0], cx + dx * half[1])
            corners.append(np.asarray(layer.world_to_data(point))[-2:])
        lo, hi = np.minimum(*corners), np.maximum(*corners)
        # napari's pixel i spans [i - 0.5, i + 0.5): the pixels any part of which is in view
        r0, c0 = (max(0, math.floor(v + 0.5)) for v in lo)
        r1, c1 = min(h, math.ceil(hi[0] + 0.5)), min(w, math.ceil(hi[1] + 0.5))
        return (r0, r1), (c0, c1)

    def _show_points(self, layer, xy: np.ndarray, lead: tuple, name: str) -> None:
        """Show ``xy`` (cellxfer points of ``layer``'s plane ``lead``) as a points layer aligned with
        ``layer`` (same scale and translate), replacing the points of an earlier count of it."""
        rc = to_napari(xy)
        if lead:
            rc = np.column_stack([np.tile(np.asarray(lead, float), (len(rc), 1)), rc])
        ndim = rc.shape[1]
        transform = {"scale": tuple(layer.scale)[-ndim:], "translate": tuple(layer.translate)[-ndim:]}
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.points = self.viewer.add_points(rc, name=name, ndim=ndim, **POINTS_STYLE, **transform)

    # -- saving -------------------------------------------------------------------------------------------
    def save(self, path=None):
        """Write the selected points layer (else the last count's) to ``path`` (else the "save to" box,
        else the file the points were opened from); returns the path written (None: why is shown)."""
        from napari.layers import Points

        from cellxfer.count.job import write_points

        layer = self.viewer.layers.selection.active
        layer = layer if isinstance(layer, Points) else self.points
        if layer is None or layer not in self.viewer.layers:
            return self._say("no points to save: count an image or select a points layer")
        chosen = str(self.save_to.value or "").strip()
        target = path or (chosen if chosen not in ("", ".") else None) \
            or layer.metadata.get("cellxfer", {}).get("points_file")
        if not target:
            return self._say("choose a file to save the points to (.csv or .geojson)")
        target = Path(target)
        try:
            write_points(target, from_napari(layer.data))
        except OSError as exc:
            return self._say(f"{target}: cannot write ({exc.strerror or exc}); choose another file")
        self._say(f"saved {len(layer.data)} cells to {target}")
        return target

    def _say(self, text: str):
        self.result.value = text
        return None
