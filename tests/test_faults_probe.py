"""Fault hunt from a biologist's side (session s9a): each test is an input that once gave a traceback, a
mangled message, a lost result or a silently wrong number."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
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
