"""Resume verifies (issue 27): every resumable output is checked when a rerun would keep it (decodes,
expected shape, whole tables) and written again when damaged, so a resumed run gives what a run from
scratch gives. Before, only synth's images were checked: a points table cut short made counts.csv say
112 cells instead of 225."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, blobs


def _tree(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "manifest.json" and not p.name.endswith(".manifest.json")}


def _cut_at_line(path: Path, keep: float = 0.5) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: max(1, int(len(lines) * keep))]))


def _cut_bytes(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage", ["points-cut-at-a-line", "points-cut-mid-line", "mask-cut"])
def test_synth_resume_redoes_a_damaged_points_table_or_mask(damage, tmp_path, capsys):
    args = ["synth", "--n", "4", "--size", "96", "--workers", "1", "--out", tmp_path / "syn"]
    assert run_cli(args, capsys).returncode == 0
    before = _tree(tmp_path / "syn")
    points = sorted((tmp_path / "syn" / "points").glob("*.csv"), key=lambda p: -len(p.read_text()))[0]
    if damage == "points-cut-at-a-line":
        _cut_at_line(points)
    elif damage == "points-cut-mid-line":
        _cut_bytes(points, 0.7)
    else:
        _cut_bytes(tmp_path / "syn" / "masks" / f"{points.stem}.tif")
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert "(1 written, 3 already done)" in r.stdout and "writes it again" in r.stderr
    assert _tree(tmp_path / "syn") == before  # counts.csv included


@pytest.mark.parametrize("damage", ["points-cut-at-a-line", "target-cut", "source-cut"])
def test_synth_pairs_resume_redoes_a_damaged_pair(damage, tmp_path, capsys):
    args = ["synth-pairs", "--n", "3", "--size", "64", "--cell-size", "8", "-o", tmp_path / "pairs"]
    assert run_cli(args, capsys).returncode == 0
    before = _tree(tmp_path / "pairs")
    victim = {"points-cut-at-a-line": "points/000001.csv", "target-cut": "target/000001.tif",
              "source-cut": "source/000001.tif"}[damage]
    (_cut_at_line if victim.endswith(".csv") else _cut_bytes)(tmp_path / "pairs" / victim)
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert "(1 written, 2 already done)" in r.stdout and "writes the pair again" in r.stderr
    assert _tree(tmp_path / "pairs") == before


def test_split_field_rerun_rewrites_a_damaged_crop(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "field.tif", blobs(128, 128, 30))
    args = ["split-field", tmp_path / "field.tif", "-o", tmp_path / "split", "--test-side", "32", "--margin", "4"]
    assert run_cli(args, capsys).returncode == 0
    before = _tree(tmp_path / "split")
    _cut_bytes(tmp_path / "split" / "train" / "source" / "field_0.tif")
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "split") == before


def test_translate_resume_redoes_a_damaged_translation(tmp_path, capsys, translator):
    (tmp_path / "in").mkdir()
    for k in range(3):
        tifffile.imwrite(tmp_path / "in" / f"{k}.tif", blobs(48, 40, 5, seed=k))
    args = ["translate", tmp_path / "in", "-m", translator, "-o", tmp_path / "out", "--engine", "torch"]
    assert run_cli(args, capsys).returncode == 0
    before = _tree(tmp_path / "out")
    _cut_bytes(tmp_path / "out" / "1.tif")
    tifffile.imwrite(tmp_path / "out" / "2.tif", blobs(16, 16, 1))  # decodes, but not the input's size
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert "(2 written, 1 already done" in r.stdout
    assert "1.tif: does not decode" in r.stderr and "2.tif: is 16 x 16 pixels" in r.stderr
    assert _tree(tmp_path / "out") == before


def test_count_resume_recounts_a_row_cut_short(tmp_path, capsys):
    for k in range(3):
        tifffile.imwrite(tmp_path / f"{k}.tif", blobs(seed=k))
    args = ["count", *(tmp_path / f"{k}.tif" for k in range(3)), "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv",
            "--workers", "1"]
    assert run_cli(args, capsys).returncode == 0
    whole = (tmp_path / "c.csv").read_text()
    last = whole.splitlines()[-1]
    cut = whole[: whole.rindex(last) + last.index(",") + 3]  # the last row's count cut after two characters
    (tmp_path / "c.csv").write_text(cut)
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert "its last row is cut short" in r.stderr
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert [ln.split(",")[:2] for ln in rows] == [ln.split(",")[:2] for ln in whole.splitlines()]


def test_synth_pairs_keeps_whole_pairs_of_a_run_from_before_the_seal(tmp_path, capsys):
    """A target written before targets were sealed (no points digest) is kept when it is whole."""
    args = ["synth-pairs", "--n", "2", "--size", "64", "--cell-size", "8", "-o", tmp_path / "pairs"]
    assert run_cli(args, capsys).returncode == 0
    target = tmp_path / "pairs" / "target" / "000001.tif"
    tifffile.imwrite(target, tifffile.imread(target), photometric="minisblack")  # as the older code wrote it
    r = run_cli(args, capsys)
    assert r.returncode == 0 and "(0 written, 2 already done)" in r.stdout, r.stdout + r.stderr
