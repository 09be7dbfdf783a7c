"""A full disk is an ordinary error (issue 27): one line naming the file being written and the bytes it
needs, exit 2, no partial file, and the whole run stops (a batch does not report it per item). Tested
with writes that raise ENOSPC (always) and on a real 64 KB tmpfs where one can be mounted (root, Linux)."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, blobs, labelled_dataset, one_line


def test_is_disk_full_reads_every_writers_way_of_saying_it(tmp_path):
    from cellxfer.errors import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    wrapped = RuntimeError("writing failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    # a short write (tifffile) is a full disk only where the disk is nearly full
    assert not is_disk_full(OSError("16384 requested and 10112 written"), tmp_path)


def test_a_write_that_hits_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Every atomic write: synth's first file raises ENOSPC -> exit 2, one line naming it and its size."""
    import cellxfer.atomic as atomic

    real = Path.write_bytes

    def full(self, data):
        if atomic.TMP_MARK in self.name:
            real(self, data[: len(data) // 2])  # half of it landed
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    r = run_cli(["synth", "--n", "3", "--size", "32", "--workers", "1", "-o", tmp_path / "s"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith(f"error: {tmp_path / 's'}/") and "no space left on the device writing it (it needs about" in line
    assert "free some space or write somewhere else" in line
    assert not list(tmp_path.rglob("*cellxfer-tmp*"))


def test_an_oserror_28_without_a_file_name_is_exit_2_not_an_internal_error(capsys, monkeypatch):
    import cellxfer.inspect

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cellxfer.inspect, "inspect_dataset", full)
    r = run_cli(["inspect", "anything"], capsys)
    assert r.returncode == 2 and "no space left" in one_line(r.stderr)


@pytest.fixture
def tiny_disk(tmp_path, request):
    """A 64 KB tmpfs (root on Linux only; else the test is skipped)."""
    from conftest import small_disk

    return small_disk(tmp_path / "tiny", "64k", request)


def _commands(data: Path, tiny: Path, image: Path) -> dict:
    return {
        "synth": ["synth", "--n", "20", "--size", "256", "--workers", "1", "-o", tiny / "out"],
        "synth-2-workers": ["synth", "--n", "40", "--size", "256", "--workers", "2", "-o", tiny / "out"],
        "count": ["count", data / "images", "-m", DEFAULT_MODEL, "-o", tiny / "c.csv", "--overlay", tiny / "ov",
                  "--workers", "1"],
        "synth-pairs": ["synth-pairs", "--n", "5", "--size", "128", "-o", tiny / "out"],
        "split-field": ["split-field", image, "-o", tiny / "out", "--test-side", "64"],
        "inspect": ["inspect", data, "--preview", tiny / "p.png"],
        "export": ["export", "-m", DEFAULT_MODEL, "-o", tiny / "m.onnx"],
        "stylize": ["stylize", "-c", data, "-s", data / "images", "-o", tiny / "out", "--method", "histogram"],
    }


@pytest.mark.parametrize("name", ["synth", "synth-2-workers", "count", "synth-pairs", "split-field", "inspect",
                                  "export", "stylize"])
def test_a_full_disk_is_one_line_in_every_command(name, tiny_disk, tmp_path, capsys):
    """Before: `unexpected OSError`, exit 70, in seven commands; stylize reported it per image (exit 1)."""
    data = labelled_dataset(tmp_path / "ds", {f"{k}": blobs(512, 512, 30, seed=k) for k in range(4)})
    image = tmp_path / "field.tif"
    tifffile.imwrite(image, np.tile(blobs(256, 256, 30), (2, 2)))
    r = run_cli(_commands(data, tiny_disk, image)[name], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line("\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("engine auto")))
    assert line.startswith(f"error: {tiny_disk}/") and "no space left on the device writing it (it needs" in line
    assert not list(tiny_disk.rglob("*cellxfer-tmp*"))
