"""Folders of many images (a plate: ~14,000; a screen: 100,000): what a command does per image must not grow
with the number of images. Nothing here is timed: each test counts the work (paths resolved, bytes written)
that grew with the square of the folder's size before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def count_resolves(monkeypatch):
    """``calls()``: how many times ``Path.resolve`` ran since the fixture started."""
    calls = [0]
    real = Path.resolve

    def resolve(self, *args, **kwargs):
        calls[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "resolve", resolve)
    return lambda: calls[0]


def test_refusing_aliases_resolves_each_input_and_output_a_bounded_number_of_times(tmp_path, count_resolves):
    """``count FOLDER --overlay DIR`` checks one output per image against every image: it resolved every input
    for every output (20,000 x 20,000 paths for a plate: hours before the first count)."""
    from cellxfer.outputs import refuse_aliases

    n = 300
    inputs = []
    for i in range(n):
        inputs.append(tmp_path / "plate" / f"img{i:04d}.tif")
    inputs[0].parent.mkdir()
    for p in inputs:
        p.write_bytes(b"x")
    outputs = [("--overlay", tmp_path / "ov" / f"img{i:04d}.png") for i in range(n)]
    before = count_resolves()
    refuse_aliases([("--out", tmp_path / "counts.csv"), *outputs], [*inputs, tmp_path / "plate"])
    assert count_resolves() - before <= 4 * (2 * n + 2)


def test_the_indexed_alias_check_still_finds_every_kind_of_alias(tmp_path):
    """The same answers as before the index: by name, through a symlink, by hard link, a file an input folder
    is read from; nothing for a new file or a file beside an input folder's images."""
    import os

    from cellxfer.errors import InputError
    from cellxfer.outputs import aliased, refuse_aliases

    plate = tmp_path / "plate"
    plate.mkdir()
    a, b = plate / "a.tif", plate / "b.tif"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    os.symlink(a, tmp_path / "link.tif")
    os.link(b, tmp_path / "hard.tif")
    (tmp_path / "other.csv").write_text("x\n")
    inputs = [a, b]
    assert aliased(a, inputs) == a
    assert aliased(tmp_path / "link.tif", inputs) == a
    assert aliased(tmp_path / "hard.tif", inputs) == b
    assert aliased(tmp_path / "new.png", inputs) is None
    assert aliased(tmp_path / "other.csv", inputs) is None
    assert aliased(a, [plate]) == plate  # an image of an input folder
    assert aliased(plate / "new.png", [plate]) is None  # not there yet: nothing of the folder's is replaced
    with pytest.raises(InputError, match="names one of the inputs"):
        refuse_aliases([("--overlay", tmp_path / "new.png"), ("--overlay", tmp_path / "hard.tif")], inputs)
    with pytest.raises(InputError, match="name the same file"):
        refuse_aliases([("--overlay", tmp_path / "x.png"), ("--points", tmp_path / "x.png")], inputs)


def _row(i: int, status: str = "ok"):
    from cellxfer.count.table import Row

    return Row(f"/plate/img{i:05d}.tif", float(i % 7) if status == "ok" else None, "onnx (cpu)", "0a66cb2a54e5",
               3.0, status, "" if status == "ok" else "does not decode")


def test_the_counts_csv_is_rewritten_a_bounded_number_of_times(tmp_path, monkeypatch):
    """A row at a time, the whole CSV was rewritten (at most once a second): bytes growing with the square of the
    rows, and at 20,000 rows each rewrite took 0.3 s of every second of counting. Now rows go to the journal and
    the CSV is rewritten once it has grown by a share: linear in the rows, whatever the rate."""
    from cellxfer.count import table

    written = []
    real = table.write_text
    monkeypatch.setattr(table, "write_text", lambda path, text: (written.append(len(text)), real(path, text)))
    monkeypatch.setattr(table, "SMALL", 0, raising=False)  # the share rule alone (small CSVs: once a second)
    n = 1200
    with table.CountsTable(tmp_path / "counts.csv", flush_every_s=0.0) as t:  # no time limit: as fast as rows come
        for i in range(n):
            t.put(_row(i))
    final = (tmp_path / "counts.csv").stat().st_size
    assert written[-1] == final and len(table.read_counts(tmp_path / "counts.csv")) == n
    assert sum(written) <= 12 * final, f"{len(written)} rewrites"


def _crash(t) -> None:
    """What a killed process leaves: nothing closed, nothing flushed, the lock gone with it."""
    import os

    if t._fd is not None:
        os.close(t._fd)
    t._lock.release()


def test_a_killed_run_loses_no_finished_row_and_leaves_a_whole_csv(tmp_path):
    import csv

    from cellxfer.count.table import COLUMNS, CountsTable, journal_of, read_counts

    out = tmp_path / "counts.csv"
    t = CountsTable(out, flush_every_s=3600.0)
    for i in range(50):
        t.put(_row(i, "failed" if i == 7 else "ok"))  # the first row rewrote the CSV; the others wait in the journal
    _crash(t)
    with open(out, newline="") as f:  # the CSV: whole, sorted, one row a file (what pandas reads)
        on_disk = list(csv.reader(f))
    assert on_disk[0] == list(COLUMNS) and [r[0] for r in on_disk[1:]] == [_row(0).file]
    with open(journal_of(out), "ab") as f:
        f.write(b"/plate/img99999.tif,3.0")  # the line being written when the process died
    rows = read_counts(out)  # a viewer sees every finished row
    assert [r.file for r in rows] == [_row(i).file for i in range(50)] and rows[7].status == "failed"

    t = CountsTable(out, flush_every_s=3600.0)  # the next run: every finished row, the cut one counted again
    assert len(t.rows) == 50 and _row(99999).file not in t.rows
    t.put(_row(7))  # recounted: its failed row is replaced
    t.put(_row(50))
    _crash(t)
    rows = read_counts(out)
    assert len(rows) == 51 and rows[7].status == "ok"

    with CountsTable(out) as t:  # a clean end: everything in the CSV, no journal
        assert len(t.rows) == 51
    assert not journal_of(out).exists() and len(read_counts(out, journal=False)) == 51


def test_overwriting_replaces_the_rows_and_the_journal_a_killed_run_left(tmp_path):
    from cellxfer.count.table import CountsTable, journal_of, read_counts

    out = tmp_path / "counts.csv"
    t = CountsTable(out, flush_every_s=3600.0)
    for i in range(5):
        t.put(_row(i))
    _crash(t)
    assert journal_of(out).exists()
    t = CountsTable(out, overwrite=True, flush_every_s=3600.0)
    assert t.rows == {}
    t.put(_row(3))
    _crash(t)
    assert [r.file for r in read_counts(out)] == [_row(3).file]


def test_a_dask_map_keeps_a_bounded_window_of_items_on_the_cluster(monkeypatch):
    """``count --scheduler`` submitted every image at once and held every future (and its result) until the end:
    its memory grew by 34 KB an image (a 100,000-image screen: 3.4 GB). Items now go in chunks, a window ahead of
    the results handled; every item still gets its result once."""
    pytest.importorskip("distributed")
    import distributed

    from cellxfer.count import dask_executor

    monkeypatch.setattr(dask_executor, "IN_FLIGHT_MIN", 8, raising=False)
    chunks = []
    real = distributed.Client.map

    def record(self, fn, *iterables, **kwargs):
        chunks.append(len(iterables[0]))
        return real(self, fn, *iterables, **kwargs)

    monkeypatch.setattr(distributed.Client, "map", record)
    items = list(range(-60, 0))
    got = dict(dask_executor.DaskExecutor(address="local:1").map(abs, items))
    assert got == {i: -i for i in items}
    assert sum(chunks) == len(items) and max(chunks) <= 8, chunks


def test_a_run_folder_checks_many_protected_inputs_in_linear_work(tmp_path, count_resolves, monkeypatch):
    """``translate FOLDER -o OUT`` protects every input image and owns every output name: the check built an index
    of the inputs once per input and compared each input with every output (2,000 images: 32 s before the first
    one). Now the inputs are indexed once and each is looked up in a set of the owned paths."""
    from cellxfer import outputs
    from cellxfer.runs import RunFolder

    src = tmp_path / "src"
    src.mkdir()
    n = 300
    images = []
    for i in range(n):
        images.append(src / f"{i}.png")
        images[-1].write_bytes(b"x")
    run = RunFolder(tmp_path / "out", "translate", {"config": {}}, own=[f"{i}.tif" for i in range(n)], protect=images)
    built = []
    real = outputs._Inputs.__init__
    monkeypatch.setattr(outputs._Inputs, "__init__", lambda self, inputs: built.append(1) or real(self, inputs))
    before = count_resolves()
    run._refuse_aliases()
    assert len(built) == 1 and count_resolves() - before <= 4 * n + 10
    (tmp_path / "out").mkdir()
    inside = RunFolder(tmp_path / "out", "translate", {"config": {}}, own=["5.tif"], protect=[tmp_path / "out" / "5.tif"])
    (tmp_path / "out" / "5.tif").write_bytes(b"x")
    with pytest.raises(Exception, match="where this run writes its results"):
        inside._refuse_aliases()


def test_the_records_check_reads_each_folder_s_run_once(tmp_path, monkeypatch):
    """``count --overlay DIR`` inside a run folder names one output per image: each looked for the nearest run
    and parsed its manifest again (2,000 overlays under a 20,000-image run's manifest: 6 s)."""
    import json

    from cellxfer import manifest
    from cellxfer.errors import InputError
    from cellxfer.outputs import refuse_records

    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "translate", "own": ["images"]}))
    calls = []
    real = manifest._nearest_run
    monkeypatch.setattr(manifest, "_nearest_run", lambda start: calls.append(start) or real(start))
    refuse_records([("--overlay", tmp_path / "ov" / f"{i}.png") for i in range(500)])
    assert len(calls) == 1
    with pytest.raises(InputError, match="names a file of the translate run"):
        refuse_records([("--overlay", tmp_path / "ov" / "a.png"), ("--csv", tmp_path / "images" / "x.png")])
