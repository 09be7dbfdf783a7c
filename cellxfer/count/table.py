"""The counts CSV: one row per image, kept as results arrive; never partial, never losing a finished row.

Each finished row is appended at once to the CSV's journal, ``<csv>.journal`` (:func:`journal_of`; a file
or process crash can cut only the line being written, which is then not read); the CSV itself is only ever
replaced whole (:mod:`cellxfer.atomic`), sorted, holding every row of the journal, which is then emptied. That
rewrite (a compaction) is rare: at most once a second, and once the CSV holds over :data:`SMALL` rows, only
when the journal holds :data:`GROWTH` of the CSV's rows, so a run of N images writes O(N) bytes (a rewrite
per second of a 20,000-row CSV took 30% of a plate's counting, and grew with the plate). A run ends with
the CSV complete and no journal; a run that was killed leaves its last rows in the journal, which
:func:`read_counts` (so the next run, and a viewer) merges.

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
from dataclasses import dataclass
from pathlib import Path

from cellxfer.atomic import FILE_MODE, write_text
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
#: a CSV of up to this many rows is rewritten at most once a second as rows arrive (cheap: milliseconds)
SMALL = 1000
#: a larger one once its journal holds this share of its rows, so the bytes a run writes stay linear in its rows
GROWTH = 1 / 8


def journal_of(path: str | os.PathLike) -> Path:
    """The journal of the counts CSV ``path``: ``<csv>.journal``, the rows not yet in it (module docs)."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


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
        """The row's cells in :data:`COLUMNS` order."""
        return [self.file, "" if self.count is None else f"{self.count:.3f}", self.engine, self.model_hash,
                self.plane, self.diameter_mode, "" if self.diameter is None else f"{self.diameter:.2f}",
                f"{self.scale:.4g}", f"{self.elapsed_ms:.1f}", self.qc, self.status, " ".join(str(self.error).split())]


class CountsTable:
    """The rows of ``path``; :meth:`done` says whether a file was already counted OK with a model.

    Single writer: from construction to :meth:`close` the table holds ``<path>.lock``
    (:class:`cellxfer.lock.OutputLock`), so a second ``count`` writing the same CSV is refused in one
    line instead of both rewriting it from their own rows (which lost the other's rows). The existing
    rows (the CSV's and its journal's) are read under the lock. :meth:`put` appends the row to the journal
    before it returns, and rewrites the CSV when a compaction is due (module docs); :meth:`close` compacts and
    removes the journal. With ``overwrite`` the rows on disk are not read, and replaced at the first row.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, flush_every_s: float = 1.0):
        from cellxfer.lock import OutputLock

        self.path = Path(path)
        self.journal = journal_of(self.path)
        self.rows: dict[str, Row] = {}
        self.flush_every_s = flush_every_s
        self._last_flush = 0.0
        self._dirty = False
        self._csv_rows = 0  # rows in the CSV on disk (0 with overwrite: all are replaced)
        self._journal_rows = 0  # rows in the journal on disk, not yet in the CSV
        self._journal_bytes = 0  # its length up to its last whole line (a killed run may leave a part after it)
        self._fd: int | None = None  # the journal, open for appending once this table has a row
        self._lock = OutputLock(self.path, "cellxfer count", "wait for it or pass another --out").acquire()
        try:
            if not overwrite:
                kept = read_counts(self.path, journal=False) if self.path.exists() else []
                added, self._journal_bytes = _read_journal(self.journal)
                self.rows = {r.file: r for r in [*kept, *added]}
                self._csv_rows, self._journal_rows, self._dirty = len(kept), len(added), bool(added)
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Write pending rows into the CSV, remove the emptied journal and release the lock (idempotent)."""
        try:
            self.flush(force=True)
        finally:
            try:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                    if not self._dirty:
                        self.journal.unlink(missing_ok=True)
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
        """Keep ``row``: in the journal when this returns (a crash from now on does not lose it), in the CSV
        at the next compaction."""
        self.rows[row.file] = row
        self._append(row)
        self._dirty = True
        self.flush(force=False)

    def _append(self, row: Row) -> None:
        """One line (after the header, in an empty journal) at the journal's end, whole or not at all: a
        failed write is cut off again, and a full disk stops the run (:class:`cellxfer.errors.DiskFull`)."""
        from cellxfer.errors import DiskFull, free_bytes, is_disk_full

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self._fd is None:  # what a killed run left after its last whole line goes (or, overwriting, all of it)
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            os.ftruncate(self._fd, self._journal_bytes)
        if self._journal_bytes == 0:
            w.writerow(COLUMNS)
        w.writerow(row.cells())
        data = buf.getvalue().encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            os.ftruncate(self._fd, self._journal_bytes)
            if is_disk_full(exc):
                raise DiskFull(self.journal, len(data), 0, free_bytes(self.journal.parent)) from None
            raise
        self._journal_bytes += len(data)
        self._journal_rows += 1

    def flush(self, force: bool = True) -> None:
        """Compact: the CSV rewritten whole with every row, then the journal emptied; unless ``force``, only
        when due (module docs: at most every ``flush_every_s``, and for a large CSV once the journal holds
        :data:`GROWTH` of its rows)."""
        now = time.monotonic()
        if not self._dirty:
            return
        if not force and (now - self._last_flush < self.flush_every_s
                          or (self._csv_rows > SMALL and self._journal_rows < GROWTH * self._csv_rows)):
            return
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for key in sorted(self.rows):
            w.writerow(self.rows[key].cells())
        write_text(self.path, buf.getvalue())
        if self._fd is not None:  # only now: a crash before this line leaves rows in both, read alike
            os.ftruncate(self._fd, 0)
        else:  # rows a killed run left, now in the CSV (or, overwriting, replaced)
            self.journal.unlink(missing_ok=True)
        self._csv_rows, self._journal_rows, self._journal_bytes = len(self.rows), 0, 0
        self._last_flush, self._dirty = now, False


def _read_journal(path: Path) -> tuple[list[Row], int]:
    """``(rows, bytes up to the last whole line)`` of a counts CSV's journal (``[], 0`` when there is none). A
    last line cut short (the run was killed writing it) is left out without a word: its file is counted again."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise InputError(f"{path}: cannot read the counts CSV's journal ({exc}); pass another --out or "
                         f"--overwrite") from None
    whole = data[:data.rfind(b"\n") + 1]
    return (_parse(path, whole.decode(errors="replace")) if whole else []), len(whole)


def read_counts(path: str | os.PathLike, journal: bool = True) -> list[Row]:
    """Rows of a counts CSV written by ``cellxfer count``, with (``journal``) the rows its journal holds
    (:func:`journal_of`: a run in progress, or one that was killed), which replace the CSV's row of the same
    file; sorted by file then."""
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
    rows = _parse(path, text)
    added = _read_journal(journal_of(path))[0] if journal else []
    if not added:
        return rows
    merged = {r.file: r for r in [*rows, *added]}
    return [merged[f] for f in sorted(merged)]


def _parse(path: Path, text: str) -> list[Row]:
    """The rows of ``text``, a counts CSV's (or its journal's) whole lines."""
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
