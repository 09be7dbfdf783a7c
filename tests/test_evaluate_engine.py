"""``evaluate --engine``: the model a user ships (ONNX) measured as ``count`` runs it, equal to torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

IDCIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "idcia-dapi-95"
NAMES = ("220909_GFP-AHPC_A_GFAP_F10_DAPI_ND1_20x", "220909_GFP-AHPC_A_GFAP_F4_DAPI_ND1_20x")


@pytest.fixture
def data(tmp_path):
    """Two IDCIA images and their annotations, linked (never copied) into the IDCIA layout."""
    if not (IDCIA / "images").is_dir():
        pytest.skip("the IDCIA data (../shared/data/idcia-dapi-95) is not here")
    root = tmp_path / "idcia"
    (root / "images").mkdir(parents=True)
    (root / "ground_truth").mkdir()
    for n in NAMES:
        (root / "images" / f"{n}.tiff").symlink_to(IDCIA / "images" / f"{n}.tiff")
        (root / "ground_truth" / f"{n}.csv").symlink_to(IDCIA / "ground_truth" / f"{n}.csv")
    return root


def test_evaluate_onnx_equals_torch(data, tmp_path, capsys):
    from cli_inproc import run_cli
    from cellxfer.engines.base import default_model

    got = {}
    for engine in ("torch", "onnx"):
        r = run_cli(["evaluate", "-m", default_model(), "-d", data, "--engine", engine,
                     "--csv", tmp_path / f"{engine}.csv", "--json", tmp_path / f"{engine}.json"], capsys)
        assert r.returncode == 0, r.stderr
        got[engine] = json.loads((tmp_path / f"{engine}.json").read_text())
        assert got[engine]["engine"].startswith(engine) and f"engine {engine}" in r.stdout
    assert got["onnx"]["mae"] == pytest.approx(got["torch"]["mae"], abs=0.05)
    assert got["onnx"]["mean_pred"] == pytest.approx(got["torch"]["mean_pred"], abs=0.05)
    assert got["onnx"]["localisation"]["f1"] == pytest.approx(got["torch"]["localisation"]["f1"], abs=0.02)


def test_evaluate_unknown_engine_is_one_line(data, tmp_path, capsys):
    from cli_inproc import run_cli
    from cellxfer.engines.base import default_model

    r = run_cli(["evaluate", "-m", default_model(), "-d", data, "--engine", "bogus", "--csv", tmp_path / "p.csv"], capsys)
    assert r.returncode != 0 and "unknown engine" in r.stderr and "Traceback" not in r.stderr


def test_without_csv_nothing_is_written_anywhere(data, tmp_path, capsys, monkeypatch):
    """Without --csv no per-image table is written: not in the working directory (runs replaced each
    other's there, and left them in the repository), and never beside the shipped model, whose folder is
    inside the installed package (often read-only)."""
    from cli_inproc import run_cli
    from cellxfer.engines.base import default_model

    models = sorted(p.name for p in Path(default_model()).parent.iterdir())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = run_cli(["evaluate", "-m", default_model(), "-d", data, "--engine", "onnx"], capsys)
    assert r.returncode == 0, r.stderr
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in Path(default_model()).parent.iterdir()) == models
