"""Second fault hunt from a biologist's and an imaging ML researcher's side (session s9c): each test is an
input that once gave a traceback, a mangled message, a lost result or a silently wrong number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import one_line


def _field(folder: Path, names=("z0", "dapi"), shape=(120, 120)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 60000, shape, dtype=np.uint16))
        paths.append(folder / f"{name}.tif")
    return paths


SPLIT = ["--test-side", "32", "--margin", "4"]


def test_split_field_refuses_the_target_as_a_source_by_any_name(tmp_path, capsys, monkeypatch):
    """``split-field dapi.tif --target dapi.tif`` stopped with "unexpected KeyError: 'train'" (exit 70); given
    under another name (./dapi.tif and its absolute path) the target was split as its own input."""
    z0, dapi = _field(tmp_path / "f")
    monkeypatch.chdir(tmp_path)
    for source in (dapi, Path("f") / "dapi.tif"):
        r = run_cli(["split-field", z0, source, "--target", dapi, "-o", tmp_path / "out", *SPLIT], capsys)
        assert r.returncode == 2, r.stderr
        assert f"{source}: is the --target itself" in one_line(r.stderr)
    assert not (tmp_path / "out").exists()
    r = run_cli(["split-field", dapi, "--target", dapi, "-o", tmp_path / "out", *SPLIT], capsys)
    assert r.returncode == 2 and "is the --target itself" in one_line(r.stderr)


def test_split_field_folder_holding_the_target_splits_the_other_images(tmp_path, capsys):
    """A folder of z-slices that also holds the target (the ISL layout) gives its other images as sources,
    whatever name the target is given by."""
    _field(tmp_path / "f", names=("z0", "z1", "dapi"))
    r = run_cli(["split-field", tmp_path / "f", "--target", tmp_path / "f" / ".." / "f" / "dapi.tif",
                 "-o", tmp_path / "out", *SPLIT], capsys)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["z0", "z1"]


def test_split_field_refuses_two_sources_of_one_name(tmp_path, capsys):
    """``split-field a/z0.tif b/z0.tif`` wrote both slices' crops to out/z0/, the second over the first."""
    (a,), (b,) = _field(tmp_path / "a", names=("z0",)), _field(tmp_path / "b", names=("z0",))
    r = run_cli(["split-field", a, b, "-o", tmp_path / "out", *SPLIT], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert str(a) in line and str(b) in line and "both would be written to" in line
