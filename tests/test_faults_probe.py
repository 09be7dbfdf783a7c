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
