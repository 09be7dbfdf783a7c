"""Fault injection (issue 14): bad input gets one clear line naming the file and the fix, a documented
exit code, and never a silently wrong number, a lost row or a clobbered file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "cellxfer" / "models" / "default_counter.safetensors"


def blobs(h: int = 128, w: int = 128, n: int = 20, seed: int = 0) -> np.ndarray:
    """uint8 image of ``n`` bright Gaussian spots on a noisy background."""
    rng = np.random.default_rng(seed)
    img = rng.normal(20, 4, size=(h, w))
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
        img += 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def rows(path: Path) -> dict[str, dict]:
    """The counts CSV ``path`` as file name -> row."""
    with open(path, newline="") as f:
        return {Path(r["file"]).name: r for r in csv.DictReader(f)}


def one_line(err: str) -> str:
    """The single non-empty line of ``err`` (asserts there is exactly one, and no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "unexpected" not in err, err
    return lines[0]


# -- 1. float images ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["default", "network"])
def test_float_image_in_0_1_counts_like_its_uint8_original(kind, tmp_path, capsys):
    """The shipped counter (LoG) and a network counter (whose output depends on the intensities it is
    given) count a float32 0..1 TIFF exactly like the uint8 image it came from."""
    if kind == "default":
        model = DEFAULT_MODEL
    else:
        from test_export import tiny_counter

        model = tiny_counter(tmp_path / "tiny.safetensors", window=32)
    img = blobs(256, 256, 40, seed=21)
    tifffile.imwrite(tmp_path / "u8.tif", img)
    tifffile.imwrite(tmp_path / "f32.tif", (img / 255.0).astype(np.float32))
    r = run_cli(["count", tmp_path / "u8.tif", tmp_path / "f32.tif", "-m", model, "--engine", "torch",
                 "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 0, r.stderr
    got = rows(tmp_path / "c.csv")
    assert abs(float(got["u8.tif"]["count"])) > 1
    assert got["f32.tif"]["status"] == "ok"
    assert float(got["f32.tif"]["count"]) == pytest.approx(float(got["u8.tif"]["count"]), rel=1e-3, abs=1e-2)
