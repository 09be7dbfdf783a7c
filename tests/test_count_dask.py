"""count --scheduler: the folder job on a Dask LocalCluster gives the same CSV as the local run."""

from __future__ import annotations

import csv
import re

import pytest

pytest.importorskip("onnxruntime")

from test_count import WINDOW, blobs  # noqa: E402
from test_export import cli, tiny_counter  # noqa: E402


def rows(path):
    with open(path, newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def test_scheduler_local_cluster_matches_local_run(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    import tifffile

    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    ckpt = tiny_counter(tmp_path / "tiny.safetensors", window=WINDOW)
    folder = tmp_path / "plate"
    folder.mkdir()
    for i in range(4):
        tifffile.imwrite(folder / f"img{i}.tif", blobs(60 + 7 * i, 70, 5 + 3 * i, 30 + i))
    (folder / "broken.tif").write_bytes(b"not a tiff")
    ov = tmp_path / "ov"
    local = cli(["count", folder, "--model", ckpt, "--engine", "onnx", "--out", tmp_path / "local.csv"], capsys)
    dask = cli(["count", folder, "--model", ckpt, "--engine", "onnx", "--out", tmp_path / "dask.csv",
                "--scheduler", "local:2", "--overlay", ov], capsys)
    assert local.returncode == 1 and dask.returncode == 1, dask.stderr  # the broken file, in both
    a, b = rows(tmp_path / "local.csv"), rows(tmp_path / "dask.csv")
    assert list(a) == list(b) and len(a) == 5
    for f in a:
        assert a[f]["status"] == b[f]["status"] and a[f]["count"] == b[f]["count"] and a[f]["engine"] == b[f]["engine"]
        assert a[f]["model_hash"] == b[f]["model_hash"]
    assert b[str(folder / "broken.tif")]["status"] == "failed" and "not a readable TIFF" in b[str(folder / "broken.tif")]["error"]
    assert sorted(p.name for p in ov.iterdir()) == [f"img{i}.png" for i in range(4)]
    # resumable there too: nothing left to do
    again = cli(["count", folder, "--model", ckpt, "--engine", "onnx", "--out", tmp_path / "dask.csv",
                 "--scheduler", "local:1"], capsys)
    c = rows(tmp_path / "dask.csv")
    assert {f: r for f, r in c.items() if r["status"] == "ok"} == {f: r for f, r in b.items() if r["status"] == "ok"}
    assert re.search(r"already done \(skipped\)\s*│\s*4\s", again.stdout), again.stdout


def test_scheduler_errors(tmp_path, capsys, monkeypatch):
    from cellxfer.count import dask_executor
    from cellxfer.errors import CellxferError, InputError

    with pytest.raises(InputError, match="local:N"):
        dask_executor.parse_local("local:x")
    assert dask_executor.parse_local("local:3") == 3 and dask_executor.parse_local("tcp://h:8786") is None

    def missing():
        raise CellxferError(dask_executor.MISSING)

    monkeypatch.setattr(dask_executor, "import_distributed", missing)
    with pytest.raises(CellxferError, match=r"pip install 'cellxfer\[dask\]'"):
        list(dask_executor.DaskExecutor(address="local:1").map(len, ["ab"]))


def test_scheduler_writes_the_same_points_as_the_local_run(tmp_path, capsys, monkeypatch):
    """A density-output model (the shipped LoG) on the cluster: same counts and points CSVs as locally."""
    pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    import tifffile

    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "plate"
    folder.mkdir()
    for i in range(3):
        tifffile.imwrite(folder / f"img{i}.tif", blobs(90 + 9 * i, 110, 8 + 4 * i, 40 + i))
    for where, extra in (("local", []), ("dask", ["--scheduler", "local:1"])):
        r = cli(["count", folder, "--engine", "onnx", "--out", tmp_path / f"{where}.csv", "--points", tmp_path / where]
                + extra, capsys)
        assert r.returncode == 0, r.stderr
    a, b = rows(tmp_path / "local.csv"), rows(tmp_path / "dask.csv")
    assert {f: r["count"] for f, r in a.items()} == {f: r["count"] for f, r in b.items()}
    assert any(float(r["count"]) > 0 for r in a.values())
    for i in range(3):
        assert (tmp_path / "local" / f"img{i}.csv").read_text() == (tmp_path / "dask" / f"img{i}.csv").read_text()


def test_synth_on_a_local_cluster_writes_the_local_run_bytes(tmp_path, capsys):
    """synth --scheduler uses the registry's Dask executor like count; same seed, same images."""
    pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    from cli_inproc import run_cli

    base = ["synth", "--n", "3", "--size", "48", "--workers", "1"]
    assert run_cli(base + ["--out", tmp_path / "local"], capsys).returncode == 0
    code, _, err = run_cli(base + ["--out", tmp_path / "dask", "--scheduler", "local:1"], capsys)
    assert code == 0, err
    for name in ("000000.tif", "000001.tif", "000002.tif"):
        assert (tmp_path / "local" / "images" / name).read_bytes() == (tmp_path / "dask" / "images" / name).read_bytes()
    assert (tmp_path / "local" / "counts.csv").read_text() == (tmp_path / "dask" / "counts.csv").read_text()


def test_executors_come_from_the_registry():
    from cellxfer.executors import LocalExecutor, executor_for

    assert isinstance(executor_for(None), LocalExecutor)
    if pytest.importorskip("distributed", reason="the dask extra is not installed"):
        assert executor_for("local:2").name == "dask" and executor_for("local:2").address == "local:2"


def test_stylize_on_a_local_cluster_writes_the_local_run_bytes(tmp_path, capsys, monkeypatch):
    """stylize --scheduler: its batches are jobs of the same Dask executor as count's and synth's; same
    seed, same images as in this process, and a rerun there has nothing left to do."""
    pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    import numpy as np
    import tifffile
    from cli_inproc import run_cli

    from cellxfer.count.dask_executor import DaskExecutor

    jobs = []
    real_map = DaskExecutor.map

    def spy(self, fn, items, workers=0):
        items = list(items)
        jobs.append((self.address, len(items)))
        return real_map(self, fn, items, workers)

    monkeypatch.setattr(DaskExecutor, "map", spy)

    assert run_cli(["synth", "--n", "3", "--size", "48", "--workers", "1", "--out", tmp_path / "syn"], capsys).returncode == 0
    (tmp_path / "real").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        tifffile.imwrite(tmp_path / "real" / f"r{i}.tif", rng.gamma(2.0, 20.0, (40, 50)).astype(np.uint8))
    base = ["stylize", "-c", tmp_path / "syn", "-s", tmp_path / "real", "--method", "histogram", "--batch-size", "2"]
    assert run_cli(base + ["--out", tmp_path / "local"], capsys).returncode == 0
    code, out, err = run_cli(base + ["--out", tmp_path / "dask", "--scheduler", "local:2"], capsys)
    assert code == 0 and "3 written" in out, err
    assert jobs == [("local:2", 2)]  # 3 images in batches of 2, on the cluster
    for name in ("000000.tif", "000001.tif", "000002.tif"):
        assert (tmp_path / "local" / "images" / name).read_bytes() == (tmp_path / "dask" / "images" / name).read_bytes()
    assert (tmp_path / "local" / "counts.csv").read_text() == (tmp_path / "dask" / "counts.csv").read_text()
    code, out, _ = run_cli(base + ["--out", tmp_path / "dask", "--scheduler", "local:1"], capsys)
    assert code == 0 and "0 written, 3 already done" in out


def test_a_slide_is_split_across_dask_workers_and_equals_the_local_run(tmp_path, monkeypatch):
    """--scheduler splits one slide into blocks of parts across the workers (not one task per file): the
    count and the points CSV equal the local run's exactly (cells on block seams owned once). Batch 1:
    the model's float sums depend on which inputs share a batch (the local run batches across parts and
    images), which is not what is tested here."""
    pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")
    import distributed
    import numpy as np
    import tifffile

    from cellxfer import lazy
    from cellxfer.count import parts, split
    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.splitters import OwnedTiles

    monkeypatch.setattr(lazy, "LAZY_PIXELS", 100_000)
    monkeypatch.setattr(parts, "PART_TILES", 3)
    monkeypatch.setattr(split, "BLOCK_PARTS", 1)
    monkeypatch.setattr(OwnedTiles, "MAX_FACTOR", 1)  # the model's own tiles: many parts in a small slide
    img = blobs(960, 800, 240, 6, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "slide.tif", img, tile=(128, 128), compression="zlib")
    tifffile.imwrite(tmp_path / "small.tif", img[:200, :300])  # an ordinary image beside it: one task
    paths = (str(tmp_path / "slide.tif"), str(tmp_path / "small.tif"))
    blocks = []
    run = split.BlockItem.run
    monkeypatch.setattr(split.BlockItem, "run", lambda self, task: blocks.append(self.span) or run(self, task))
    local = run_count(CountConfig(paths=paths, engine="torch", out=tmp_path / "local.csv", points=tmp_path / "lp",
                                  batch_size=1))
    assert not blocks
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        dask = run_count(CountConfig(paths=paths, engine="torch", out=tmp_path / "dask.csv", points=tmp_path / "dp",
                                     batch_size=1, scheduler=c.scheduler_address))
    assert not local.failed and not dask.failed, (local.failed, dask.failed)
    assert len(blocks) >= 4 and sorted(blocks)[0][0] == 0  # the slide went out as blocks
    assert dask.counts == local.counts and local.counts[paths[0]] > 100
    a, b = rows(tmp_path / "local.csv"), rows(tmp_path / "dask.csv")
    assert {f: r["count"] for f, r in a.items()} == {f: r["count"] for f, r in b.items()}
    for name in ("slide.csv", "small.csv"):
        assert (tmp_path / "lp" / name).read_text() == (tmp_path / "dp" / name).read_text()
    # --density-map of a slide split across workers: each block sends back its own rows of the map
    maps = {}
    for where in ("local", "dask"):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c2:
            kw = {"scheduler": c2.scheduler_address} if where == "dask" else {}
            res = run_count(CountConfig(paths=paths[:1], engine="torch", out=tmp_path / f"m-{where}.csv", batch_size=1,
                                        density_map=tmp_path / f"{where}.tif", **kw))
        assert not res.failed, res.failed
        maps[where] = tifffile.imread(tmp_path / f"{where}.tif")
    assert maps["local"].shape == maps["dask"].shape and maps["local"].sum() > 100
    np.testing.assert_allclose(maps["dask"], maps["local"], rtol=1e-6, atol=1e-9)
