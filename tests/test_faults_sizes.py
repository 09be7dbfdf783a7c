"""Sizes checked before memory is spent, and an interrupted cluster as ordinary as a local run (issue 27):
an image whose header claims more than can be read is refused in well under a second, settings whose
memory would be absurd are refused up front with the estimate and the fix, and Ctrl-C under
``--scheduler local:N`` prints the one line it prints locally."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, blobs, one_line


def lying_tiff(path: Path, width: int, height: int, bytecount: int = 100) -> Path:
    """A ~220-byte uncompressed TIFF whose header claims ``width`` x ``height`` 8-bit pixels."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8 + 2 + 12 * 9 + 4),
               (277, 3, 1), (278, 4, height), (279, 4, bytecount)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(100))
    return path


def lying_png(path: Path, width: int, height: int) -> Path:
    """A 69-byte grayscale PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["tiff-4e9x3", "png-100000^2", "tiff-40000^2"])
def test_an_image_whose_header_claims_too_much_is_refused_at_once(kind, tmp_path):
    """The 4e9 x 3 TIFF hung count (read lazily as a slide whose strips are not in the file); the PNG
    allocated 10 GB before failing; a 40000^2 TIFF with its strips missing is also refused."""
    from cellxfer.errors import InputError
    from cellxfer.lazy import open_image

    if kind == "tiff-4e9x3":
        path, want = lying_tiff(tmp_path / "x.tif", 4_000_000_000, 3), "but the file holds"
    elif kind == "tiff-40000^2":
        path, want = lying_tiff(tmp_path / "x.tif", 40000, 40000), "but the file holds"
    else:
        path, want = lying_png(tmp_path / "x.png", 100_000, 100_000), "more than the 1,073,741,824 pixels"
    from PIL import Image

    Image.fromarray(blobs(16, 16, 1)).save(tmp_path / "warm.png")  # imports and plugins loaded: not timed
    open_image(tmp_path / "warm.png")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=want) as err:
        open_image(path)
    assert time.perf_counter() - t0 < 0.5
    assert str(err.value).startswith(f"{path}: not a readable TIFF (its header claims" if kind.startswith("tiff")
                                     else f"{path}: its header claims")


def test_count_of_a_lying_header_is_a_failed_row_not_a_hang(tmp_path, capsys):
    lying_tiff(tmp_path / "huge.tif", 4_000_000_000, 3)
    lying_png(tmp_path / "huge.png", 100_000, 100_000)
    tifffile.imwrite(tmp_path / "good.tif", blobs())
    t0 = time.perf_counter()
    r = run_cli(["count", tmp_path, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--workers", "1"], capsys)
    assert time.perf_counter() - t0 < 60
    assert r.returncode == 1 and "Traceback" not in r.stderr
    failed = sorted(ln for ln in r.stderr.splitlines() if ln.startswith("failed "))
    assert len(failed) == 2 and "huge.png: its header claims 100000 x 100000" in failed[0]
    assert "huge.tif: not a readable TIFF (its header claims 4000000000 x 3" in failed[1]


def test_an_image_larger_than_free_memory_is_refused_from_its_header(tmp_path, monkeypatch):
    """Within the pixel bound but beyond the free memory (here: 1 MB free, a 2000^2 uint16 image)."""
    from cellxfer.errors import InputError
    from cellxfer.imageio import read_image

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2000, 2000), np.uint16))
    read_image(tmp_path / "a.tif")
    monkeypatch.setenv("CELLXFER_MEMORY_BYTES", "1e6")
    with pytest.raises(InputError, match=r"a\.tif: its 2000 x 2000 pixels needs about 24\.0 MB of memory, 1\.0 MB is free"):
        read_image(tmp_path / "a.tif")


def test_ctrl_c_under_a_local_dask_cluster_is_one_line(tmp_path):
    """SIGINT to the process group of `synth --scheduler local:2`: the one `interrupted` line, exit 130,
    no worker tracebacks or distributed log lines (there were 4-6 tracebacks first)."""
    pytest.importorskip("distributed")
    from conftest import SYNTH_INTERRUPTED, interrupt_synth

    code, stderr = interrupt_synth(tmp_path / "syn", ["--scheduler", "local:2"], wait_s=120)
    assert code == 130, stderr
    assert [ln for ln in stderr.splitlines() if ln.strip()] == [SYNTH_INTERRUPTED]


@pytest.mark.parametrize("args,want", [
    (["synth", "--n", "1", "--size", "4096", "--cell-size", "4000"], r"error: synth: cells of 4000 px .* needs about [\d.]+ [GT]B of memory, 16\.0 GB is free; lower --cell-size"),
    (["synth", "--n", "1", "--count-mean", "100000", "--max-cells", "100000"], r"error: synth: .* would take about \d+ minutes per item"),
    (["train-count", "--regime", "supervised", "--real", "DATA", "--crop", "4096", "--epochs", "1"],
     r"error: train-count --crop 4096 --batch-size 16 \(--arch efficientnet_b0\) needs about 457\.3 GB of memory, 16\.0 GB is free; lower --crop"),
    (["learn-style", "-s", "DATA", "--model", "nosd", "--clip", "noclip", "--size", "4096"],
     r"error: learn-style --size 4096 --batch-size 1 .* needs about [\d.]+ TB of memory, 16\.0 GB is free; lower --size"),
])
def test_settings_that_cannot_fit_are_refused_up_front_with_the_estimate(args, want, tmp_path, capsys, monkeypatch):
    """synth --cell-size 5000 and --count-mean 200000 ran for minutes (or were killed), learn-style --size 4096
    ran with no progress, train-count --crop 4096 grew to 24 GB and was killed by the kernel: now one line with
    the estimate and the fix, before any output exists (free memory pinned at 16 GB here)."""
    import re

    monkeypatch.setenv("CELLXFER_MEMORY_BYTES", "16e9")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "points").mkdir()
    tifffile.imwrite(data / "images" / "a.tif", blobs())
    (data / "points" / "a.csv").write_text("x,y\n5,5\n")
    args = [str(data) if a == "DATA" else a for a in args]
    t0 = time.perf_counter()
    r = run_cli([*args, "-o", tmp_path / "out"], capsys)
    assert time.perf_counter() - t0 < 30
    assert r.returncode == 2
    assert re.match(want, one_line(r.stderr)), r.stderr
    assert not (tmp_path / "out").exists()


def test_the_defaults_fit():
    from cellxfer.budget import check_estimate
    from cellxfer.synth.config import SynHCConfig
    from cellxfer.synth.synhc import estimate
    from cellxfer.train.config import TrainConfig
    from cellxfer.train.counter import estimate as train_estimate

    check_estimate(estimate(SynHCConfig()))
    assert train_estimate(TrainConfig()).bytes < 4e9


def test_stylize_inst_on_content_too_large_for_this_machine_is_refused_up_front(tmp_path, capsys, monkeypatch):
    """InST runs Stable Diffusion at each content image's own size: a 2048 px image, 4 at a time, needs
    hundreds of GB (self-attention at the first level); refused before a weight is loaded."""
    monkeypatch.setenv("CELLXFER_MEMORY_BYTES", "16e9")
    content = tmp_path / "content"
    (content / "images").mkdir(parents=True)
    (content / "points").mkdir()
    tifffile.imwrite(content / "images" / "a.tif", np.zeros((2048, 2048), np.uint8))
    (content / "points" / "a.csv").write_text("x,y\n5,5\n")
    tifffile.imwrite(tmp_path / "style.tif", blobs())
    r = run_cli(["stylize", "-c", content, "-s", tmp_path / "style.tif", "-o", tmp_path / "out", "--method", "inst",
                 "--token", tmp_path / "no-token", "--set", "model=no-model", "--set", "clip=no-clip"], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr).startswith("error: stylize --method inst on 2048 x 2048 content images, 4 at a time "
                                         "needs about 615.8 GB of memory, 16.0 GB is free; crop or downsample")
    assert not (tmp_path / "out").exists()


def test_a_ctrl_c_during_a_dask_map_is_raised_at_the_poll_and_not_inside_a_gc_callback():
    """CI once timed out: the SIGINT's KeyboardInterrupt landed in distributed's gc callback, where Python
    ignores it ("Exception ignored in GCDiagnosis._gc_callback"), and `synth` went on making images. While a
    map polls, Ctrl-C now only sets a flag, and the poll raises it; the old handler is back afterwards."""
    import gc
    import os
    import signal
    from types import SimpleNamespace

    from cellxfer.count import dask_executor as de

    class NeverReady:
        def is_empty(self):
            return False

        def has_ready(self):
            return False

    raised_in_callback = []

    def callback(phase, info):  # stands in for distributed's GCDiagnosis
        try:
            time.sleep(0.01)
        except KeyboardInterrupt:
            raised_in_callback.append(phase)
            raise

    before = signal.getsignal(signal.SIGINT)
    gc.callbacks.append(callback)
    try:
        with de._sigint_at_poll_points() as interrupted:
            os.kill(os.getpid(), signal.SIGINT)
            gc.collect()
            assert interrupted.is_set() and not raised_in_callback
            with pytest.raises(KeyboardInterrupt):
                next(de._as_completed(SimpleNamespace(as_completed=lambda futures: NeverReady()), [], interrupted))
    finally:
        gc.callbacks.remove(callback)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_local_dask_cluster_beside_another_prints_no_port_warning(tmp_path):
    """A local cluster's scheduler bound its HTTP endpoints to port 8787 even without a dashboard; with that port
    taken (a Jupyter session's cluster, another run) every run printed "Port 8787 is already in use"."""
    pytest.importorskip("distributed")
    import socket
    import warnings

    from cellxfer.count.dask_executor import DaskExecutor

    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
    except OSError:
        pytest.skip("port 8787 is taken and cannot be held here")
    taken.listen()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            got = dict(DaskExecutor(address="local:1").map(abs, [-1, -2]))
    finally:
        taken.close()
    assert got == {-1: 1, -2: 2}
    assert not [w for w in seen if "8787" in str(w.message)], [str(w.message) for w in seen]
