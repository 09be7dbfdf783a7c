"""The counts CSV: one row per image, rewritten atomically as results arrive.

Columns (:data:`COLUMNS`): ``file`` (absolute path), ``count`` (float, 3 decimals; empty when failed),
``engine`` (e.g. ``onnx (cpu)``), ``model_hash`` (12 hex), ``plane`` (the plane counted of an image of several:
``page=2``, ``channel=1 level=0``..., :meth:`cellxfer.imageio.Plane.text`; empty for a single-plane image),
``diameter_mode`` (the ``--diameter`` policy:
``auto``, ``off`` or the pixels given), ``diameter`` (the image's nucleus diameter in pixels that set the
rescaling, estimated or given; empty when not rescaled by policy or nothing blob-like was found), ``scale``
(the resize factor applied before counting, 1 when none), ``elapsed_ms`` (decode + normalise + this
image's share of the batched inference), ``qc`` (the trust flag: ``ok``, ``unchecked`` or the reasons
not to trust the count, :mod:`cellxfer.count.qc`), ``status`` (``ok`` | ``failed``), ``error`` (one line).
Rows are sorted by file, so the CSV does not depend on completion order or on the executor.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cellxfer.atomic import write_text
from cellxfer.errors import InputError

COLUMNS = ("file", "count", "engine", "model_hash", "plane", "diameter_mode", "diameter", "scale", "elapsed_ms", "qc",
           "status", "error")
#: the columns of counts CSVs written before the ``plane`` column existed (read with plane empty, a single-plane
#: image's: an image of several planes, whose row does not say which it came from, is counted again)
COLUMNS_V3 = ("file", "count", "engine", "model_hash", "diameter_mode", "diameter", "scale", "elapsed_ms", "qc", "status",
              "error")
#: the columns of counts CSVs written before the ``qc`` flag existed (read with qc empty)
COLUMNS_V2 = ("file", "count", "engine", "model_hash", "diameter_mode", "diameter", "scale", "elapsed_ms", "status", "error")
#: the columns of counts CSVs written before ``--diameter`` existed (read as ``diameter_mode`` off)
COLUMNS_V1 = ("file", "count", "engine", "model_hash", "elapsed_ms", "status", "error")


@dataclass
class Row:
    file: str
    count: float | None
    engine: str
    model_hash: str
    elapsed_ms: float
    status: str = "ok"
    error: str = ""
    diameter_mode: str = "off"
    diameter: float | None = None
    scale: float = 1.0
    qc: str = ""
    plane: str = ""

    def cells(self) -> list[str]:
        d = asdict(self)
        d["count"] = "" if self.count is None else f"{self.count:.3f}"
        d["diameter"] = "" if self.diameter is None else f"{self.diameter:.2f}"
        d["scale"] = f"{self.scale:.4g}"
        d["elapsed_ms"] = f"{self.elapsed_ms:.1f}"
        d["error"] = " ".join(str(self.error).split())
        return [d[c] for c in COLUMNS]


class CountsTable:
    """The rows of ``path``; :meth:`done` says whether a file was already counted OK with a model.

    Single writer: from construction to :meth:`close` the table holds ``<path>.lock``
    (:class:`cellxfer.lock.OutputLock`), so a second ``count`` writing the same CSV is refused in one
    line instead of both rewriting it from their own rows (which lost the other's rows). The existing
    rows are read under the lock.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, flush_every_s: float = 1.0):
        from cellxfer.lock import OutputLock

        self.path = Path(path)
        self.rows: dict[str, Row] = {}
        self.flush_every_s = flush_every_s
        self._last_flush = 0.0
        self._dirty = False
        self._lock = OutputLock(self.path, "cellxfer count", "wait for it or pass another --out").acquire()
        try:
            if self.path.exists() and not overwrite:
                self.rows = {r.file: r for r in read_counts(self.path)}
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Write pending rows and release the lock (idempotent)."""
        try:
            self.flush(force=True)
        finally:
            self._lock.release()

    def __enter__(self) -> "CountsTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def done(self, file: Path, model_hash: str, diameter_mode: str = "off", plane: str = "") -> bool:
        """Counted OK before with this model, the same ``--diameter`` policy and from the same ``plane`` (its
        :meth:`cellxfer.imageio.Plane.text`)."""
        row = self.rows.get(str(file))
        return (row is not None and row.status == "ok" and row.model_hash == model_hash
                and row.diameter_mode == diameter_mode and row.plane == plane)

    def put(self, row: Row) -> None:
        self.rows[row.file] = row
        self._dirty = True
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_flush < self.flush_every_s):
            return
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for key in sorted(self.rows):
            w.writerow(self.rows[key].cells())
        write_text(self.path, buf.getvalue())
        self._last_flush, self._dirty = now, False


def read_counts(path: str | os.PathLike) -> list[Row]:
    """Rows of a counts CSV written by ``cellxfer count``."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the counts CSV ({exc}); pass another --out or --overwrite") from None
    if text and not text.endswith("\n") and "\n" in text:  # cut short (a full disk, a copy): the last row is
        from cellxfer.console import warn    # not trusted, so its file is counted again

        last = text[text.rindex("\n") + 1:]
        warn(f"{path}: its last row is cut short ({last[:60]!r}, no final newline); that file is counted again")
        text = text[:text.rindex("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) not in (COLUMNS, COLUMNS_V3, COLUMNS_V2, COLUMNS_V1):
        raise InputError(f"{path}: not a cellxfer counts CSV (columns {','.join(reader.fieldnames or [])}); "
                         f"pass another --out, or --overwrite to replace it")
    rows = []
    for n, r in enumerate(reader, start=2):
        try:
            rows.append(Row(file=r["file"], count=float(r["count"]) if r["count"] else None, engine=r["engine"],
                            model_hash=r["model_hash"], elapsed_ms=float(r["elapsed_ms"] or 0), status=r["status"],
                            error=r["error"] or "", diameter_mode=r.get("diameter_mode") or "off",
                            diameter=float(r["diameter"]) if r.get("diameter") else None,
                            scale=float(r.get("scale") or 1.0), qc=r.get("qc") or "", plane=r.get("plane") or ""))
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {n} is malformed; fix it, or --overwrite to recount everything") from None
    return rows
