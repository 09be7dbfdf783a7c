"""count: inputs, batching across images, engines, CSV (incremental, resumable), failures, overlays."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from test_export import cli, tiny_counter  # noqa: E402

from cellxfer.inputs import expand_inputs  # noqa: E402
from cellxfer.count.table import COLUMNS  # noqa: E402

QC_REASONS = {"ok", "no-nuclei", "scale-unsure", "outside-sizes", "crowded", "saturated", "disagrees", "uncertain"}

WINDOW = 32


def blobs(h: int, w: int, n: int, seed: int, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(20, 4, size=(h, w))
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        img += 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    top = 255 if dtype == np.uint8 else 4000
    return np.clip(img * (top / 255), 0, top).astype(dtype)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import tifffile
    from PIL import Image

    root = tmp_path_factory.mktemp("count")
    ckpt = tiny_counter(root / "tiny.safetensors", window=WINDOW)
    folder = root / "plate"
    (folder / "sub").mkdir(parents=True)
    tifffile.imwrite(folder / "a.tif", blobs(70, 90, 12, 1))
    tifffile.imwrite(folder / "b.tif", blobs(64, 64, 3, 2, np.uint16))
    Image.fromarray(blobs(40, 100, 6, 3)).save(folder / "c.png")
    tifffile.imwrite(folder / "sub" / "d.tif", blobs(50, 50, 4, 4))
    (folder / "notes.txt").write_text("not an image")
    return {"root": root, "ckpt": ckpt, "folder": folder}


def reference_counts(ckpt: Path, files) -> dict[str, float]:
    """Counts through issue 3's whole-image function on the torch model: the ground truth of parity."""
    from cellxfer.counter.model import load_counter
    from cellxfer.count.parts import count_image
    from cellxfer.counter.model import torch_runner
    from cellxfer.imageio import read_image

    model, meta = load_counter(ckpt)
    return {str(Path(f).resolve()): count_image(torch_runner(model), meta, read_image(f)) for f in files}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def test_expand_inputs_folder_recursive_glob(setup, tmp_path):
    folder = setup["folder"]
    files, skipped = expand_inputs([folder])
    assert [f.name for f in files] == ["a.tif", "b.tif", "c.png"]
    reasons = {p.name: why for p, why in skipped}
    assert "not an image" in reasons["notes.txt"] and "--recursive" in reasons["plate"]
    for record in ("manifest.json", "counts.csv.manifest.json", "run.lock", "counts.csv.journal"):  # cellxfer's own records
        (tmp_path / "records").mkdir(exist_ok=True)
        (tmp_path / "records" / record).write_text("{}")
    _, skipped = expand_inputs([tmp_path / "records"])
    assert skipped == []
    _, skipped = expand_inputs([tmp_path / "records" / "manifest.json"])  # named: said why it is not counted
    assert "not an image" in skipped[0][1]
    files, skipped = expand_inputs([folder], recursive=True)
    assert [f.name for f in files] == ["a.tif", "b.tif", "c.png", "d.tif"] and len(skipped) == 1
    files, _ = expand_inputs([str(folder / "**" / "*.tif"), folder / "a.tif"])  # glob + duplicate
    assert sorted(f.name for f in files) == ["a.tif", "b.tif", "d.tif"]
    from cellxfer.errors import InputError

    with pytest.raises(InputError, match="no such file or folder"):
        expand_inputs([tmp_path / "nope"])
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.tif")])


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_count_folder_matches_torch_reference(setup, tmp_path, capsys, engine, monkeypatch):
    monkeypatch.setenv("CELLXFER_CACHE", str(setup["root"] / "cache"))
    out = tmp_path / "counts.csv"
    r = cli(["count", setup["folder"], "--recursive", "--model", setup["ckpt"], "--engine", engine, "--out", out,
             "--batch-size", "5", "--workers", "2"], capsys)  # batch 5: windows of several images per batch
    assert r.returncode == 0, r.stderr + r.stdout
    rows = read_csv(out)
    assert tuple(rows[0]) == COLUMNS and len(rows) == 4
    ref = reference_counts(setup["ckpt"], [Path(x["file"]) for x in rows])
    for row in rows:
        assert row["status"] == "ok" and row["engine"].startswith(engine)
        assert float(row["count"]) == pytest.approx(ref[row["file"]], abs=2e-3)
        assert len(row["model_hash"]) == 12 and float(row["elapsed_ms"]) > 0
    assert len({round(v, 1) for v in ref.values()}) > 1, "the tiny counter must give different counts"
    assert "notes.txt: not an image" in r.stderr and "counted now" in r.stdout
    assert (tmp_path / "counts.csv.manifest.json").is_file()
    assert not list(tmp_path.glob("*.cellxfer-tmp"))


def test_rerun_skips_done_overwrite_redoes_and_broken_file_reported(setup, tmp_path, capsys, monkeypatch):
    import shutil

    import tifffile

    monkeypatch.setenv("CELLXFER_CACHE", str(setup["root"] / "cache"))
    folder = tmp_path / "plate"
    shutil.copytree(setup["folder"], folder)
    (folder / "broken.tif").write_bytes(b"II*\x00garbage")
    stack = np.stack([blobs(40, 40, 3, 7), blobs(40, 40, 9, 8)])
    tifffile.imwrite(folder / "stack.tif", stack)  # 2 pages: needs --page, never guessed
    out = tmp_path / "counts.csv"
    args = ["count", folder, "--model", setup["ckpt"], "--engine", "onnx", "--out", out]
    r = cli(args, capsys)
    assert r.returncode == 1  # failures are reported in the exit code, after the whole batch
    rows = {Path(x["file"]).name: x for x in read_csv(out)}
    assert set(rows) == {"a.tif", "b.tif", "c.png", "broken.tif", "stack.tif"}
    assert rows["broken.tif"]["status"] == "failed" and "not a readable TIFF" in rows["broken.tif"]["error"]
    assert rows["stack.tif"]["status"] == "failed" and "--page" in rows["stack.tif"]["error"]
    assert all(rows[n]["status"] == "ok" for n in ("a.tif", "b.tif", "c.png"))
    assert "failed" in r.stderr and "broken.tif" in r.stderr
    # a failed row records the --diameter policy asked for, as an ok row does (the default counter has a diameter)
    r = cli(["count", folder, "--engine", "onnx", "--diameter", "12", "--out", tmp_path / "d.csv"], capsys)
    assert r.returncode == 1 and {x["diameter_mode"] for x in read_csv(tmp_path / "d.csv")} == {"12"}

    (folder / "broken.tif").unlink()
    r = cli(args + ["--page", "1"], capsys)  # rerun: done files skipped, the failed one retried
    assert r.returncode == 0, r.stdout + r.stderr
    import re

    assert re.search(r"already done \(skipped\)\s*│\s*3\s", r.stdout), r.stdout
    assert re.search(r"counted now\s*│\s*1\s", r.stdout), r.stdout
    rows2 = {Path(x["file"]).name: x for x in read_csv(out)}
    assert rows2["stack.tif"]["status"] == "ok"
    assert rows2["a.tif"]["elapsed_ms"] == rows["a.tif"]["elapsed_ms"]  # not recounted
    (folder / "stack.tif").unlink()
    r = cli(args + ["--overwrite"], capsys)
    assert r.returncode == 0 and re.search(r"counted now\s*│\s*3\s", r.stdout), r.stdout + r.stderr
    assert len(read_csv(out)) == 3  # --overwrite recounts everything into a new CSV


def test_a_count_run_hashes_its_model_file_once(setup, tmp_path, monkeypatch):
    """The rows' model_hash and the manifests (written before the first row and at the end) share one read of the
    model file (the engine, when one is loaded, reads it on its own)."""
    import cellxfer.manifest
    from cellxfer.count.job import CountConfig, run_count

    real, seen = cellxfer.manifest.sha256_file, []
    monkeypatch.setattr(cellxfer.manifest, "sha256_file", lambda path, *a: seen.append(Path(path)) or real(path, *a))
    config = CountConfig(paths=(str(setup["folder"]),), model=setup["ckpt"], engine="torch", out=tmp_path / "c.csv")
    assert len(run_count(config).counts) == 3
    seen.clear()
    assert run_count(config).skipped_done == 3  # nothing to count: no engine loaded
    assert seen == [Path(setup["ckpt"]).resolve()]


def test_pages_channels_and_uint16(setup, tmp_path, capsys):
    import tifffile

    from cellxfer.count.job import CountConfig, run_count

    img16 = blobs(48, 80, 5, 11, np.uint16)
    tifffile.imwrite(tmp_path / "u16.tif", img16)
    stack = np.stack([blobs(48, 48, 2, 12), blobs(48, 48, 10, 13)])
    tifffile.imwrite(tmp_path / "pages.tif", stack)
    res = run_count(CountConfig(paths=(str(tmp_path / "pages.tif"),), model=setup["ckpt"], engine="torch",
                                out=tmp_path / "p.csv", page=1))
    from cellxfer.counter.model import load_counter
    from cellxfer.count.parts import count_image
    from cellxfer.counter.model import torch_runner

    model, meta = load_counter(setup["ckpt"])
    assert list(res.counts.values())[0] == pytest.approx(count_image(torch_runner(model), meta, stack[1]), abs=1e-4)
    res = run_count(CountConfig(paths=(str(tmp_path / "u16.tif"),), model=setup["ckpt"], engine="torch",
                                out=tmp_path / "u.csv"))
    assert list(res.counts.values())[0] == pytest.approx(count_image(torch_runner(model), meta, img16), abs=1e-4)


def test_overlay_pngs(setup, tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("CELLXFER_CACHE", str(setup["root"] / "cache"))
    r = cli(["count", setup["folder"], "-r", "--model", setup["ckpt"], "--engine", "onnx", "--out", tmp_path / "c.csv",
             "--overlay", tmp_path / "ov"], capsys)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "ov").iterdir())
    assert names == ["a.png", "b.png", "c.png", "sub__d.png"]
    with Image.open(tmp_path / "ov" / "a.png") as im:
        arr = np.asarray(im)
    assert im.size == (90, 70) and arr.ndim == 3
    yellow = (arr[..., 0] > 200) & (arr[..., 1] > 180) & (arr[..., 2] < 80)
    assert yellow[:, WINDOW].sum() > 30 or yellow[WINDOW, :].sum() > 30, "window grid lines drawn"


def test_engine_auto_and_model_kinds(setup, tmp_path, capsys, monkeypatch):
    from cellxfer.engines import onnx_engine
    from cellxfer.engines.base import load_runner
    from cellxfer.errors import CellxferError, InputError
    from cellxfer.export.counter import ExportConfig, export_counter

    monkeypatch.setenv("CELLXFER_CACHE", str(setup["root"] / "cache"))
    said = []
    runner = load_runner(setup["ckpt"], "auto", log=said.append)
    # the engine line, after an 'exporting ... once' line when this test runs first (its cache is then empty)
    assert runner.engine == "onnx" and any("engine auto -> onnx (cpu)" in s and "trt/cuda" in s for s in said), said
    assert not any("TensorRT" in s for s in said), said  # the reasons are `plugins`' to give, not every count's

    onnx_path = export_counter(ExportConfig(model=setup["ckpt"], out=tmp_path / "m.onnx", n_random=2), log=lambda s: None).out
    r = cli(["count", setup["folder"] / "a.tif", "--model", onnx_path, "--out", tmp_path / "o.csv"], capsys)
    assert r.returncode == 0, r.stderr
    ref = reference_counts(setup["ckpt"], [setup["folder"] / "a.tif"])
    assert float(read_csv(tmp_path / "o.csv")[0]["count"]) == pytest.approx(list(ref.values())[0], abs=2e-3)
    with pytest.raises(InputError, match="torch engine needs the counter checkpoint"):
        load_runner(onnx_path, "torch")

    monkeypatch.setattr(onnx_engine, "_ort", lambda: None)  # ONNX Runtime missing: clear message
    with pytest.raises(CellxferError, match=r"ONNX Runtime is not installed .*: pip install onnxruntime "):
        load_runner(setup["ckpt"], "onnx")
    said.clear()
    assert load_runner(setup["ckpt"], "auto", log=said.append).engine == "torch" and "onnx/cpu" in said[0], said
    r = cli(["plugins"], capsys)  # and `plugins` says why
    assert any(ln.split()[:2] == ["onnx", "cpu"] and "ONNX Runtime is not installed" in ln for ln in r.stdout.splitlines())


def test_count_errors_are_one_line(setup, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    r = cli(["count", setup["folder"], "--model", setup["ckpt"], "--out", tmp_path / "bad.csv"], capsys)
    assert r.returncode == 2 and "not a cellxfer counts CSV" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli(["count", tmp_path / "empty", "--model", setup["ckpt"]], capsys)
    assert r.returncode == 2 and "no image files found" in r.stderr
    r = cli(["count", setup["folder"], "--model", tmp_path / "nope.safetensors"], capsys)
    assert r.returncode == 2 and "no such model file" in r.stderr
    r = cli(["count", setup["folder"], "--model", setup["ckpt"], "--engine", "bogus"], capsys)
    assert r.returncode == 2 and "unknown engine" in r.stderr


def test_batching_across_images_equals_per_image(setup):
    from cellxfer.count.job import count_batched
    from cellxfer.engines.base import load_runner

    runner = load_runner(setup["ckpt"], "torch")
    files, _ = expand_inputs([setup["folder"]], recursive=True)
    per_image = {f: res.region_counts for f, _, res, _ in count_batched(files, runner, batch_size=1, workers=1)}
    for bs in (3, 7, 64):
        got = list(count_batched(files, runner, batch_size=bs, workers=2))
        assert [f for f, *_ in got] == files  # input order
        for f, prep, res, ms in got:
            wc = res.region_counts
            assert len(wc) == len(prep.boxes) and np.allclose(wc, per_image[f], atol=1e-4)
            assert res.count == pytest.approx(float(wc.sum()))


def test_default_model_is_shipped_and_counts(tmp_path, capsys):
    from cellxfer.engines.base import default_model

    path = Path(__file__).resolve().parents[1] / "cellxfer" / "models" / "default_counter.safetensors"
    if not path.is_file():
        pytest.fail("the default counter is not shipped: run scripts/train_default_counter.py")
    assert default_model() == path and path.stat().st_size < 20 * 2**20
    import tifffile

    tifffile.imwrite(tmp_path / "slide.tif", blobs(256, 256, 40, 21))
    r = cli(["count", tmp_path / "slide.tif", "--out", tmp_path / "c.csv"], capsys)
    assert r.returncode == 0, r.stderr
    row = read_csv(tmp_path / "c.csv")[0]
    assert float(row["count"]) > 0
    assert row["qc"] and all(reason in QC_REASONS for reason in row["qc"].split(";"))  # measured: never 'unchecked'
    assert "flagged (qc column)" in r.stdout


def test_plugins_says_why_each_engine_cannot_run(capsys):
    from cellxfer.engines.base import AUTO_ORDER, availability, engines

    rows = availability()
    assert [(n, d) for n, d, _ in rows][:len(AUTO_ORDER)] == [(n, d) for n, d in AUTO_ORDER if n in engines()]
    assert dict(((n, d), r) for n, d, r in rows)[("onnx", "cpu")] is None  # the core's engine runs anywhere
    r = cli(["plugins"], capsys)
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index("engines, in --engine auto's order"):]
    for name, device, reason in rows:
        first_words = " ".join((reason or "available").split()[:3])
        assert any(name in line and device in line and first_words in line for line in table.splitlines()), table
