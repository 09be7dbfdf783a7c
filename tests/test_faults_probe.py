"""Fault hunt from a biologist's side (session s9a): each test is an input that once gave a traceback, a
mangled message, a lost result or a silently wrong number."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, blobs, one_line, rows


def test_file_names_with_emoji_codes_are_printed_as_they_are(tmp_path, capsys):
    """A failed file named ``well:x:1.tif`` is named as it is: rich once turned ``:x:`` into an emoji,
    naming a file that does not exist."""
    tifffile.imwrite(tmp_path / "ok.tif", blobs())
    (tmp_path / "well:x:1.tif").write_text("not a tiff\n")
    r = run_cli(["count", tmp_path, "-m", DEFAULT_MODEL, "-o", tmp_path / "c:thumbsup:.csv"], capsys)
    assert r.returncode == 1, r.stderr
    assert f"failed {tmp_path / 'well:x:1.tif'}: " in r.stderr
    assert str(tmp_path / "c:thumbsup:.csv") in r.stderr + r.stdout
    assert "\u274c" not in r.stderr and "\U0001f44d" not in r.stderr + r.stdout


def _points_dataset(tmp_path: Path, table: bytes) -> Path:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    tifffile.imwrite(root / "images" / "a.tif", blobs(64, 64, 3))
    (root / "points" / "a.csv").write_bytes(table)
    return root


@pytest.mark.parametrize("table", [
    "\ufeffx,y\r\n10,12\r\n20,22\r\n".encode("utf-8"),     # Excel's "CSV UTF-8": a byte-order mark first
    "x,y\r\n10,12\r\n20,22\r\n".encode("utf-16"),          # Excel's "Unicode text"
    " ,Area(µm²),X,Y\n1,3,10,12\n2,3,20,22\n".encode("cp1252", errors="replace"),  # ImageJ on Windows
], ids=["utf8-bom", "utf16", "cp1252"])
def test_points_tables_saved_by_excel_or_imagej_on_windows_are_read(table, tmp_path):
    """A points table with a byte-order mark was refused ("needs columns 'x' and 'y' (found: x,y)"), one in
    UTF-16 or Windows-1252 stopped with an unexpected UnicodeDecodeError (exit 70)."""
    from cellxfer.dataset import CellDataset

    pts = CellDataset(_points_dataset(tmp_path, table)).read_points("a")
    assert pts.tolist() == [[10.0, 12.0], [20.0, 22.0]]


def test_a_binary_points_table_is_one_line_naming_it(tmp_path, capsys):
    root = _points_dataset(tmp_path, bytes(range(256)) * 2)
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", root], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert str(root / "points" / "a.csv") in line and "not a text table" in line and "UTF-8" in line


def test_recursive_searches_symlinked_subfolders_once(tmp_path, capsys):
    """``count TOP --recursive`` skipped a subfolder that is a link (a plate folder of links to the
    acquisition drive) without a word, though without --recursive it said "1 subfolder(s) not searched;
    pass --recursive"; a link back up is no loop and counts nothing twice."""
    real = tmp_path / "drive" / "plate2"
    real.mkdir(parents=True)
    tifffile.imwrite(real / "b.tif", blobs(64, 64, 3))
    top = tmp_path / "top"
    top.mkdir()
    tifffile.imwrite(top / "a.tif", blobs(64, 64, 3))
    (top / "plate2").symlink_to(real)
    (real / "up").symlink_to(top)  # a loop
    r = run_cli(["count", top, "-r", "-m", DEFAULT_MODEL, "--diameter", "off", "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "c.csv", newline="") as f:
        files = sorted(row["file"] for row in csv.DictReader(f))
    assert files == [str(real / "b.tif"), str(top / "a.tif")]


def test_a_broken_link_in_a_folder_is_reported_not_dropped(tmp_path, capsys):
    """An image that is a link to an unmounted drive was left out of the CSV and the summary alike."""
    tifffile.imwrite(tmp_path / "a.tif", blobs(64, 64, 3))
    (tmp_path / "b.tif").symlink_to(tmp_path / "gone" / "b.tif")
    (tmp_path / "plate3").symlink_to(tmp_path / "gone" / "plate3")
    r = run_cli(["count", tmp_path, "-m", DEFAULT_MODEL, "--diameter", "off", "-o", tmp_path / "out" / "c.csv"], capsys)
    assert r.returncode == 1, r.stderr
    got = rows(tmp_path / "out" / "c.csv")
    assert got["a.tif"]["status"] == "ok" and got["b.tif"]["status"] == "failed"
    assert "broken link" in got["b.tif"]["error"] and str(tmp_path / "gone" / "b.tif") in got["b.tif"]["error"]
    assert f"skipped {tmp_path / 'plate3'}: a broken link" in r.stderr


def test_a_rerun_asking_for_another_plane_does_not_keep_the_old_planes_counts(tmp_path, capsys):
    """``count stack.tif --page 0`` then ``--page 1`` into the same CSV skipped the stack as already counted
    and kept page 0's count, a silently wrong number for page 1. Each row records its plane (``plane``), part of
    what makes a row done: the stack is counted again; a single-plane image's row stands (it reads the same
    whatever page was asked)."""
    img = blobs(96, 96, 12)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, np.zeros_like(img)]))
    tifffile.imwrite(tmp_path / "flat.tif", img)
    out = tmp_path / "c.csv"
    base = ["count", tmp_path / "stack.tif", "-m", DEFAULT_MODEL, "--diameter", "off", "-o", out]
    assert run_cli([*base, "--page", "0"], capsys).returncode == 0
    assert float(rows(out)["stack.tif"]["count"]) > 0 and rows(out)["stack.tif"]["plane"] == "page=0"
    assert run_cli([*base[:2], tmp_path / "flat.tif", *base[2:], "--page", "0"], capsys).returncode == 0
    flat = rows(out)["flat.tif"]
    assert flat["plane"] == ""
    r = run_cli([*base[:2], tmp_path / "flat.tif", *base[2:], "--page", "1"], capsys)
    assert r.returncode == 0, r.stderr
    assert float(rows(out)["stack.tif"]["count"]) == 0.0 and rows(out)["flat.tif"] == flat
    assert rows(out)["stack.tif"]["plane"] == "page=1"
    r = run_cli([*base, "--page", "1"], capsys)  # the same plane again: skipped as done
    assert r.returncode == 0 and "warning" not in r.stderr and float(rows(out)["stack.tif"]["count"]) == 0.0


def test_each_row_says_its_plane_whatever_the_last_run_asked(tmp_path, capsys):
    """The plane was judged by ``<csv>.manifest.json``, which holds the last run's options only: a.tif counted
    from page 0, then b.tif from page 1, then both from page 1 kept a.tif's page-0 count."""
    img = blobs(96, 96, 12)
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, np.stack([img, np.zeros_like(img)]))
    out = tmp_path / "c.csv"
    opts = ["-m", DEFAULT_MODEL, "--diameter", "off", "-o", out]
    assert run_cli(["count", tmp_path / "a.tif", *opts, "--page", "0"], capsys).returncode == 0
    assert run_cli(["count", tmp_path / "b.tif", *opts, "--page", "1"], capsys).returncode == 0
    b = rows(out)["b.tif"]
    assert run_cli(["count", tmp_path / "a.tif", tmp_path / "b.tif", *opts, "--page", "1"], capsys).returncode == 0
    got = rows(out)
    assert float(got["a.tif"]["count"]) == 0.0 and got["a.tif"]["plane"] == "page=1" and got["b.tif"] == b


def test_a_csv_written_before_the_plane_column_resumes(tmp_path, capsys):
    """A counts CSV of an earlier version has no ``plane`` column: its single-plane images' rows stand, and an
    image of several planes, whose row does not say which plane it came from, is counted again."""
    img = blobs(96, 96, 12)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, np.zeros_like(img)]))
    tifffile.imwrite(tmp_path / "flat.tif", img)
    out = tmp_path / "c.csv"
    cmd = ["count", tmp_path / "stack.tif", tmp_path / "flat.tif", "-m", DEFAULT_MODEL, "--diameter", "off",
           "-o", out, "--page", "0"]
    assert run_cli(cmd, capsys).returncode == 0
    before = rows(out)
    with open(out, "w", newline="") as f:  # as written before: no plane column, and counts a rerun would not give
        old = [c for c in before["flat.tif"] if c != "plane"]
        w = csv.DictWriter(f, old, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows({**row, "count": "1234.000"} for row in before.values())
    r = run_cli(cmd, capsys)
    assert r.returncode == 0, r.stderr
    got = rows(out)
    assert got["flat.tif"]["count"] == "1234.000" and got["flat.tif"]["plane"] == ""
    assert got["stack.tif"]["count"] == before["stack.tif"]["count"] and got["stack.tif"]["plane"] == "page=0"


def test_the_manifest_records_the_plane_before_the_first_row(tmp_path, monkeypatch):
    """A first run stopped after its first row left no manifest, so a rerun could not tell its plane."""
    import json

    from cellxfer.count import job

    img = blobs(64, 64, 5)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, img]))
    seen = {}
    real_put = job.CountsTable.put

    def put(self, row):
        real_put(self, row)
        seen.update(json.loads(Path(f"{self.path}.manifest.json").read_text())["config"])
        raise KeyboardInterrupt

    monkeypatch.setattr(job.CountsTable, "put", put)
    with pytest.raises(KeyboardInterrupt):
        job.run_count(job.CountConfig(paths=(str(tmp_path / "stack.tif"),), model=DEFAULT_MODEL, page=1,
                                      diameter="off", out=tmp_path / "c.csv"))
    assert seen["page"] == 1 and (tmp_path / "c.csv").is_file()


def test_count_out_must_be_a_csv_name_not_a_folder_or_an_image(tmp_path, capsys):
    """``--out FOLDER`` failed naming cellxfer's own temporary (``.out.1a2b3c4d.cellxfer-tmp: is a
    directory``); ``--out other.tif --overwrite`` replaced an image (not an input of the run) with a CSV."""
    tifffile.imwrite(tmp_path / "a.tif", blobs(64, 64, 3))
    (tmp_path / "results").mkdir()
    victim = tmp_path / "keep.tif"
    tifffile.imwrite(victim, blobs(32, 32, 2))
    before = victim.read_bytes()
    base = ["count", tmp_path / "a.tif", "-m", DEFAULT_MODEL, "--overwrite", "-o"]
    r = run_cli([*base, tmp_path / "results"], capsys)
    line = one_line(r.stderr)
    assert r.returncode == 2 and line.startswith(f"error: {tmp_path / 'results'}: --out is a folder") and "cellxfer-tmp" not in line
    r = run_cli([*base, victim], capsys)
    assert r.returncode == 2 and "--out names an image file" in one_line(r.stderr)
    assert victim.read_bytes() == before


def test_an_atomic_write_onto_a_folder_names_the_folder(tmp_path):
    from cellxfer.atomic import write_text

    with pytest.raises(IsADirectoryError) as exc:
        write_text(tmp_path, "x")
    assert exc.value.filename == str(tmp_path) and not list(tmp_path.parent.glob("*cellxfer-tmp"))


def test_inspect_preview_is_a_png_name(tmp_path, capsys):
    """``inspect --preview sheet.jpg`` wrote PNG bytes under a .jpg name (viewers that trust the suffix fail)."""
    from test_faults import labelled_dataset

    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64)})
    r = run_cli(["inspect", data, "--preview", tmp_path / "sheet.jpg"], capsys)
    assert r.returncode == 2 and "give a name ending in .png" in one_line(r.stderr)
    assert not (tmp_path / "sheet.jpg").exists()
    assert run_cli(["inspect", data, "--preview", tmp_path / "sheet.PNG"], capsys).returncode == 0


def test_synhc_levels_beyond_its_8_bit_image_are_refused(tmp_path, capsys):
    """``synth --background 300:400`` wrote all-white uint8 images whose points tables still listed every
    (invisible) cell; ``--intensity 1000:4000`` clipped every cell to 255 without a word."""
    for option in (["--background", "300:400"], ["--intensity", "1000:4000"]):
        r = run_cli(["synth", "--out", tmp_path / "syn", "--n", "1", *option], capsys)
        assert r.returncode == 2 and "each in [0, 255]" in one_line(r.stderr), r.stderr
        assert not (tmp_path / "syn").exists()


def test_a_dataset_with_two_images_of_one_id_is_refused(tmp_path, capsys):
    """``images/a.tif`` and ``images/a.png`` share the points table ``a.csv``: one was left out unsaid."""
    root = _points_dataset(tmp_path, b"x,y\n10,12\n")
    tifffile.imwrite(root / "images" / "a.png", blobs(64, 64, 3))  # tifffile writes TIFF bytes; suffix decides
    r = run_cli(["inspect", root], capsys)
    assert r.returncode == 2 and "two images with the id 'a'" in one_line(r.stderr)
