"""Fault injection (issue 14): bad input gets one clear line naming the file and the fix, a documented
exit code, and never a silently wrong number, a lost row or a clobbered file."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from types import SimpleNamespace

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


# -- 2. non-finite pixels -----------------------------------------------------------------------------
def nan_image(kind: str = "nan") -> np.ndarray:
    """float32 0..1 blobs with a 4x5 block of NaN (or +inf)."""
    img = (blobs() / 255.0).astype(np.float32)
    img[10:14, 20:25] = np.nan if kind == "nan" else np.inf
    return img


def labelled_dataset(root: Path, images: dict[str, np.ndarray]) -> Path:
    """A cell dataset folder with ``images`` (id -> array) and two points per image."""
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    for id_, img in images.items():  # (H, W, 3) is RGB, (N, H, W) a stack of N pages
        rgb = img.ndim == 3 and img.shape[-1] == 3
        tifffile.imwrite(root / "images" / f"{id_}.tif", img, photometric="rgb" if rgb else "minisblack")
        (root / "points" / f"{id_}.csv").write_text("x,y\n5,5\n30,40\n")
    return root


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_read_image_refuses_non_finite_and_empty_images(kind, tmp_path):
    from cellxfer.errors import InputError
    from cellxfer.imageio import read_image

    tifffile.imwrite(tmp_path / "bad.tif", nan_image(kind))
    with pytest.raises(InputError, match=r"bad\.tif: image has 20 non-finite pixels .*replace them \(e\.g\. with 0\) or crop them out"):
        read_image(tmp_path / "bad.tif")
    with warnings.catch_warnings():  # tifffile warns that it writes a nonconformant TIFF: that is the point
        warnings.simplefilter("ignore")
        tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 0), np.uint8))
    with pytest.raises(InputError, match=r"empty\.tif: image is empty"):
        read_image(tmp_path / "empty.tif")


def test_count_reports_non_finite_pixels_as_a_failed_row(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "good.tif", blobs())
    tifffile.imwrite(tmp_path / "nan.tif", nan_image())
    r = run_cli(["count", tmp_path, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    got = rows(tmp_path / "c.csv")
    assert got["good.tif"]["status"] == "ok"
    bad = got["nan.tif"]
    assert bad["status"] == "failed" and bad["count"] == ""
    assert str(tmp_path / "nan.tif") in bad["error"] and "20 non-finite pixels" in bad["error"]
    assert "RuntimeWarning" not in r.stderr


def test_evaluate_and_train_count_refuse_non_finite_pixels_in_one_line(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(), "b": nan_image("inf")})
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", tmp_path / "p.csv"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert str(data / "images" / "b.tif") in line and "non-finite pixels" in line
    r = run_cli(["train-count", "--regime", "supervised", "--real", data, "--out", tmp_path / "run", "--arch", "density",
                 "--epochs", "1"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert str(data / "images" / "b.tif") in line and "non-finite pixels" in line


def test_stylize_refuses_non_finite_style_and_reports_non_finite_content(tmp_path, capsys):
    content = labelled_dataset(tmp_path / "content", {"a": blobs(64, 64), "b": nan_image()[:64, :64]})
    style = tmp_path / "style"
    style.mkdir()
    tifffile.imwrite(style / "s.tif", nan_image())
    r = run_cli(["stylize", "-c", content, "-s", style, "-o", tmp_path / "out"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert str(style / "s.tif") in line and "non-finite pixels" in line
    tifffile.imwrite(style / "s.tif", blobs())
    r = run_cli(["stylize", "-c", content, "-s", style, "-o", tmp_path / "out"], capsys)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"failed b: InputError: {content / 'images' / 'b.tif'}: image has 20 non-finite" in r.stderr
    assert (tmp_path / "out" / "images" / "a.tif").is_file() and not (tmp_path / "out" / "images" / "b.tif").exists()


class FakeTranslator:
    """Stands in for a trained translator: output = the input scaled to [-1, 1]."""

    engine = "fake"
    meta = SimpleNamespace(size=256)  # a translator's training size (the default tile)

    def translate(self, image, tile=None, overlap=32):
        x = np.asarray(image, dtype=np.float32)
        return 2 * (x - x.min()) / max(float(np.ptp(x)), 1e-6) - 1


def use_fake_translator(monkeypatch) -> None:
    """``translate`` runs :class:`FakeTranslator` whatever ``-m`` names (its run manifest hashes the default
    counter's file in place of the translator's)."""
    import cellxfer.translate.infer as infer

    monkeypatch.setattr(infer, "load", lambda *a, **kw: FakeTranslator())
    monkeypatch.setattr(infer, "model_file", lambda m: DEFAULT_MODEL)


def test_translate_reports_non_finite_input_and_goes_on(tmp_path, capsys, monkeypatch):
    use_fake_translator(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "a_nan.tif", nan_image())
    tifffile.imwrite(src / "b_good.tif", blobs())
    r = run_cli(["translate", src, "-m", tmp_path / "unused", "-o", tmp_path / "out"], capsys)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"failed {src / 'a_nan.tif'}: image has 20 non-finite pixels" in r.stderr
    assert (tmp_path / "out" / "b_good.tif").is_file() and not (tmp_path / "out" / "a_nan.tif").exists()


def test_check_finite_loss_and_weights():
    import torch

    from cellxfer.errors import TrainingError
    from cellxfer.train.finite import check_finite_loss, check_finite_weights

    assert check_finite_loss(torch.tensor(2.5), 1, 3) == 2.5 and check_finite_loss(0.0, 1, 1) == 0.0
    for bad in (float("nan"), torch.tensor(float("inf"), requires_grad=True) * 1):
        with pytest.raises(TrainingError, match=r"loss is (nan|inf) at epoch 2, step 7; stopped .*lower --lr"):
            check_finite_loss(bad, 2, 7)
    net = torch.nn.Linear(2, 1)
    check_finite_weights(net, 1)
    with torch.no_grad():
        net.weight[0, 1] = float("nan")
    with pytest.raises(TrainingError, match="weight weight is not finite after epoch 4; no checkpoint"):
        check_finite_weights(net, 4)


# -- 3. one writer per counts CSV ---------------------------------------------------------------------
HOLD_LOCK = """
import sys, time
from cellxfer.lock import OutputLock
OutputLock(sys.argv[1], "cellxfer count").acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_count_refuses_a_csv_another_process_writes_and_takes_over_a_killed_ones_lock(tmp_path, capsys):
    import subprocess
    import sys

    tifffile.imwrite(tmp_path / "a.tif", blobs())
    out = tmp_path / "c.csv"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = run_cli(["count", tmp_path / "a.tif", "-m", DEFAULT_MODEL, "-o", out], capsys)
        assert r.returncode == 2
        assert one_line(r.stderr) == (f"error: another cellxfer count (pid {holder.pid}) is writing {out}; "
                                      f"wait for it or pass another --out")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "c.csv.lock").read_text().split() == [str(holder.pid)]  # left behind by kill -9
    r = run_cli(["count", tmp_path / "a.tif", "-m", DEFAULT_MODEL, "-o", out], capsys)
    assert r.returncode == 0, r.stderr
    assert f"taking over a stale lock of pid {holder.pid}" in r.stderr
    assert list(rows(out)) == ["a.tif"] and not (tmp_path / "c.csv.lock").exists()


def test_a_refusal_names_the_holder_that_has_not_yet_written_its_pid(tmp_path):
    """A holder takes the flock first and writes its pid just after: a refusal read in that gap waits
    for the pid instead of naming no holder (the race two simultaneous counts hit)."""
    import fcntl
    import os
    import threading

    from cellxfer.errors import InputError
    from cellxfer.lock import OutputLock, lock_path

    out = tmp_path / "c.csv"
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        writer = threading.Timer(0.2, lambda: os.pwrite(fd, b"4242\n", 0))
        writer.start()
        with pytest.raises(InputError, match=r"another cellxfer count \(pid 4242\) is writing"):
            OutputLock(out, "cellxfer count").acquire()
        writer.join()
    finally:
        os.close(fd)


def test_two_counts_into_one_csv_never_lose_rows(tmp_path):
    """Two processes count 20 different images each into the same CSV at the same time: every run that
    says it succeeded has all its rows in the CSV (the other is refused, or runs after it)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "c.csv"
    procs = []
    for k in range(2):
        folder = tmp_path / f"plate{k}"
        folder.mkdir()
        for i in range(20):
            tifffile.imwrite(folder / f"{k}_{i:02d}.tif", blobs(64, 64, 5, seed=100 * k + i))
        procs.append(subprocess.Popen([sys.executable, "-m", "cellxfer", "count", str(folder), "-m", str(DEFAULT_MODEL),
                                       "-o", str(out), "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    results = [(p.wait(timeout=120), p.communicate()) for p in procs]
    got = rows(out)
    ok = [k for k, (code, _) in enumerate(results) if code == 0]
    assert ok, results
    for k, (code, (_, err)) in enumerate(results):
        if code == 0:
            assert sum(name.startswith(f"{k}_") for name in got) == 20
        else:
            assert code == 2 and "another cellxfer count (pid" in err and "Traceback" not in err
    assert len(got) == 20 * len(ok)


# -- 4. existing files are not replaced without --overwrite -------------------------------------------
def test_evaluate_csv_and_json_are_not_overwritten_without_overwrite(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(), "b": blobs(seed=1)})
    for option, name in (("--csv", "p.csv"), ("--json", "m.json")):
        target = tmp_path / name
        target.write_text("precious\n")
        r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, option, target, "--csv" if option == "--json" else "--json",
                     tmp_path / ("other.csv" if option == "--json" else "other.json")], capsys)
        assert r.returncode == 2
        assert one_line(r.stderr) == f"error: {target}: exists; pass --overwrite to replace it or choose another {option}"
        assert target.read_text() == "precious\n"
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", tmp_path / "p.csv", "--json", tmp_path / "m.json",
                 "--overwrite"], capsys)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.csv").read_text().startswith("image") and '"mae"' in (tmp_path / "m.json").read_text()
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", DEFAULT_MODEL, "--overwrite"], capsys)
    assert r.returncode == 2 and "names one of the inputs" in one_line(r.stderr)


def test_inspect_preview_is_not_overwritten_without_overwrite(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {"a": blobs()})
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"precious")
    r = run_cli(["inspect", data, "--preview", sheet], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr) == f"error: {sheet}: exists; pass --overwrite to replace it or choose another --preview"
    assert sheet.read_bytes() == b"precious"
    r = run_cli(["inspect", data, "--preview", sheet, "--overwrite"], capsys)
    assert r.returncode == 0, r.stderr
    assert sheet.read_bytes().startswith(b"\x89PNG")


def test_ensemble_never_overwrites_an_input_and_needs_overwrite_for_other_files(tmp_path, capsys):
    from test_ensemble import _member

    members = [_member(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    before = members[0].read_bytes()
    for extra in ([], ["--overwrite"]):
        r = run_cli(["ensemble", *members, "-o", members[0], *extra], capsys)
        assert r.returncode == 2
        assert one_line(r.stderr) == (f"error: {members[0]}: -o names one of the inputs, which writing would destroy; "
                                      f"choose another -o")
        assert members[0].read_bytes() == before
    out = tmp_path / "e.safetensors"
    out.write_bytes(b"precious")
    r = run_cli(["ensemble", *members, "-o", out], capsys)
    assert r.returncode == 2 and f"{out}: exists; pass --overwrite" in one_line(r.stderr)
    assert out.read_bytes() == b"precious"
    r = run_cli(["ensemble", *members, "-o", out, "--overwrite"], capsys)
    assert r.returncode == 0, r.stderr


def test_evaluate_translator_csv_is_not_overwritten_without_overwrite(tmp_path, capsys):
    target = tmp_path / "m.csv"
    target.write_text("precious\n")
    r = run_cli(["evaluate-translator", "-m", tmp_path / "t.safetensors", "--pairs", tmp_path, "--csv", target], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr) == f"error: {target}: exists; pass --overwrite to replace it or choose another --csv"
    assert target.read_text() == "precious\n"


# -- 5. advice the user can follow --------------------------------------------------------------------
def stack(kind: str) -> np.ndarray:
    """A 3-plane Z stack (``page``) or an RGB image with different channels (``channel``)."""
    img = blobs(64, 64)
    if kind == "page":
        return np.stack([img, img // 2, img // 3])
    return np.stack([img, img // 2, img // 3], axis=-1)


@pytest.mark.parametrize("kind", ["page", "channel"])
def test_multi_plane_advice_names_only_options_the_command_has(kind, tmp_path, capsys, monkeypatch):
    img = stack(kind)
    data = labelled_dataset(tmp_path / "ds", {"a": img})
    path = data / "images" / "a.tif"
    no_option = f"this command has no --{kind}: save the"
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", tmp_path / "p.csv"], capsys)
    assert r.returncode == 2 and str(path) in one_line(r.stderr) and no_option in r.stderr and "pass --" not in r.stderr
    from cellxfer.errors import InputError
    from cellxfer.imageio import read_image

    with pytest.raises(InputError, match=f"pass --{kind} N"):  # the command's declaration ended with it
        read_image(path)
    r = run_cli(["train-count", "--regime", "supervised", "--real", data, "--out", tmp_path / "run", "--arch", "density",
                 "--epochs", "1"], capsys)
    assert r.returncode == 2 and str(path) in one_line(r.stderr) and no_option in r.stderr and "pass --" not in r.stderr
    r = run_cli(["stylize", "-c", labelled_dataset(tmp_path / "c", {"b": blobs(64, 64)}), "-s", path,
                 "-o", tmp_path / "st"], capsys)
    assert r.returncode == 2 and str(path) in one_line(r.stderr) and no_option in r.stderr and "pass --" not in r.stderr
    use_fake_translator(monkeypatch)
    r = run_cli(["translate", path, "-m", tmp_path / "unused", "-o", tmp_path / "tr"], capsys)
    assert r.returncode == 1 and f"failed {path}: image has 3" in r.stderr and no_option in r.stderr
    # commands that have the option still say to pass it, and it works
    r = run_cli(["count", path, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 1 and f"pass --{kind} N (0..2) to pick one" in rows(tmp_path / "c.csv")["a.tif"]["error"]
    r = run_cli(["count", path, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", f"--{kind}", "1"], capsys)
    assert r.returncode == 0, r.stderr
    r = run_cli(["inspect", data, "--preview", tmp_path / "sheet.png"], capsys)
    assert r.returncode == 2 and f"pass --{kind} N (0..2) to pick one" in one_line(r.stderr)


# -- 6. child processes die with their parent ---------------------------------------------------------
def test_synth_workers_die_when_synth_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    proc = subprocess.Popen([sys.executable, "-m", "cellxfer", "synth", "--n", "2000", "--workers", "2", "--size", "128",
                             "--out", str(tmp_path / "syn")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    children = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while len(parent.children()) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        children = parent.children(recursive=True)
        assert len(children) >= 2, "synth started no worker processes"
        time.sleep(1.0)  # let them work
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"workers still running after their parent was killed: {[p.pid for p in alive]}"
    finally:  # never leave strays, even when failing
        for p in [proc, *children]:
            try:
                p.kill()
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass


# -- 7. resume verifies what is on disk ---------------------------------------------------------------
def test_synth_resume_rewrites_a_truncated_image(tmp_path, capsys):
    args = ["synth", "--n", "6", "--size", "64", "--workers", "1", "--out", tmp_path / "syn"]
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    images = tmp_path / "syn" / "images"
    originals = {p.name: p.read_bytes() for p in images.glob("*.tif")}
    victim, empty = sorted(originals)[2], sorted(originals)[4]
    (images / victim).write_bytes(originals[victim][: len(originals[victim]) // 2])
    (images / empty).write_bytes(b"")
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert "(2 written, 4 already done)" in r.stdout
    assert f"{images / victim}: does not decode" in r.stderr and f"{images / empty}: empty file" in r.stderr
    assert {p.name: p.read_bytes() for p in images.glob("*.tif")} == originals


def test_count_rebuilds_a_truncated_or_foreign_onnx_cache_file_once_with_a_warning(tmp_path, capsys, monkeypatch):
    from test_export import tiny_counter

    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    model = tiny_counter(tmp_path / "tiny.safetensors", window=32)
    other = tiny_counter(tmp_path / "other.safetensors", window=32, seed=1)
    tifffile.imwrite(tmp_path / "a.tif", blobs(64, 64))
    args = ["count", tmp_path / "a.tif", "-m", model, "--engine", "onnx", "--workers", "1"]
    r = run_cli([*args, "-o", tmp_path / "c0.csv"], capsys)
    assert r.returncode == 0, r.stderr
    (cached,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    good = cached.read_bytes()
    for k, (damage, why) in enumerate(((good[: len(good) // 3], "does not load (truncated or damaged)"),
                                       (None, "was exported from another checkpoint"))):
        if damage is None:  # a complete ONNX file, but of another checkpoint, under this one's name
            run_cli(["count", tmp_path / "a.tif", "-m", other, "--engine", "onnx", "-o", tmp_path / "o.csv"], capsys)
            (foreign,) = [p for p in (tmp_path / "cache" / "onnx").glob("other-*.onnx")]
            damage = foreign.read_bytes()
        cached.write_bytes(damage)
        out = tmp_path / f"c{k + 1}.csv"
        r = run_cli([*args, "-o", out], capsys)
        assert r.returncode == 0, r.stderr
        warnings_ = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
        assert warnings_ == [f"warning: {cached}: the cached ONNX export of {model} {why}; exporting it again"]
        assert cached.read_bytes() == good
        assert rows(out)["a.tif"]["count"] == rows(tmp_path / "c0.csv")["a.tif"]["count"]
    r = run_cli([*args, "-o", tmp_path / "c9.csv"], capsys)  # a good cache file is used as is
    assert r.returncode == 0 and "warning" not in r.stderr


# -- 8. no raw library warnings -----------------------------------------------------------------------
def test_count_prints_decoder_warnings_as_one_line_naming_the_file(tmp_path):
    """Run as a real process: tifffile's log records and numpy's RuntimeWarnings went straight to stderr."""
    import os
    import subprocess
    import sys

    odd = tmp_path / "odd.tif"  # a NewSubfileType tag with two values: tifffile logs a warning reading it
    tifffile.imwrite(odd, blobs(), photometric="minisblack", extratags=[(254, "I", 2, (0, 0), True)])
    tifffile.imwrite(tmp_path / "huge.tif", np.full((32, 32), 1e39))  # float64 beyond float32: overflow in cast
    tifffile.imwrite(tmp_path / "nan.tif", nan_image())
    r = subprocess.run([sys.executable, "-m", "cellxfer", "count", str(tmp_path), "-m", str(DEFAULT_MODEL),
                        "-o", str(tmp_path / "c.csv")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("engine ", "failed ", "error: "))]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {odd}: tifffile: invalid") and "subfiletype" in lines[0], r.stderr
    got = rows(tmp_path / "c.csv")
    assert got["odd.tif"]["status"] == "ok"
    assert "beyond the 32-bit float range" in got["huge.tif"]["error"] and got["nan.tif"]["status"] == "failed"


def test_large_png_is_read_without_a_decompression_bomb_warning(tmp_path, monkeypatch):
    from PIL import Image

    from cellxfer.imageio import read_image

    Image.fromarray(blobs(64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # stands in for a 200-Mpixel slide scan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "big.png").shape == (64, 64)


def test_train_count_stops_on_a_non_finite_loss_and_saves_nothing_of_it(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {f"i{k}": blobs(64, 64, 5, seed=k) for k in range(4)})
    r = run_cli(["train-count", "--regime", "supervised", "--real", data, "--out", tmp_path / "run", "--arch", "density",
                 "--epochs", "3", "--crop", "32", "--batch-size", "2", "--arch-option", "base=4",
                 "--arch-option", "scale=1e-40"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)  # (an --lr of 1e30 made it nan before --lr had a range; a 1e-40 output scale overflows)
    assert "error: training diverged: the loss is " in line and " at epoch 1, step 1" in line
    assert not (tmp_path / "run" / "last.safetensors").exists() and not (tmp_path / "run" / "best.safetensors").exists()


def test_image_format_is_read_from_the_content_not_the_name(tmp_path):
    """A PNG saved under a .tif name (and a TIFF under .png) is read as what it is, with the same pixels;
    a file that is neither still says which file and why."""
    from PIL import Image

    from cellxfer.errors import InputError
    from cellxfer.imageio import read_image

    img = blobs(40, 50)
    Image.fromarray(img).save(tmp_path / "png.tif", format="PNG")
    tifffile.imwrite(tmp_path / "tiff.png", img)
    assert np.array_equal(read_image(tmp_path / "png.tif"), img)
    assert np.array_equal(read_image(tmp_path / "tiff.png"), img)
    (tmp_path / "text.tif").write_text("notes\n")
    with pytest.raises(InputError, match=r"text\.tif: not a readable TIFF"):
        read_image(tmp_path / "text.tif")
