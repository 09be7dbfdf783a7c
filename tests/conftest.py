"""Shared fixtures: paths to the real data ($CELLXFER_DATA or ../shared/data, as the scripts' shared module
``scripts/benchlib.py`` defines them; ``scripts/`` is put on ``sys.path`` so that scripts loaded by path find
it) and GPU-test skipping."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
# the napari plugin of this checkout, not another checkout's editable install of it (tests/test_napari_plugin.py)
sys.path.insert(0, str(REPO / "plugins" / "cellxfer-napari"))

from benchlib import DATA as SHARED_DATA, IDCIA  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one torch thread (and do not fight other processes for the cores); a
    module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Exported engines (``--engine auto`` is the default of every command) go to a cache of the test
    session, never the user's ``~/.cache/cellxfer``; a test may still point ``CELLXFER_CACHE`` elsewhere."""
    import os

    old = os.environ.get("CELLXFER_CACHE")
    os.environ["CELLXFER_CACHE"] = str(tmp_path_factory.mktemp("cellxfer-cache"))
    yield
    if old is None:
        os.environ.pop("CELLXFER_CACHE", None)
    else:
        os.environ["CELLXFER_CACHE"] = old


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def idcia_dir() -> Path:
    if not IDCIA.is_dir():
        pytest.skip(f"real IDCIA data not found at {IDCIA}")
    return IDCIA


#: what `synth` says on Ctrl-C (the one stderr line the interrupt tests expect)
SYNTH_INTERRUPTED = ("interrupted: finished images are in --out; rerun the same command to make the rest "
                     "(finished ones are checked and kept)")


def interrupt_synth(out: Path, how: list[str], wait_s: float = 60) -> tuple[int, str]:
    """Start `cellxfer synth --n 5000 --size 64 HOW --out OUT` in its own process group, send SIGINT to the whole
    group (what a terminal's Ctrl-C does) once 5 images are finished, and return ``(exit status, stderr)``."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "cellxfer", "synth", "--n", "5000", "--size", "64", *how,
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + wait_s
        # five *finished* images (os.listdir also saw the temporary of one being written, which the
        # interrupted run removes: 4 images were left now and then)
        while not (out / "images").is_dir() or len(list((out / "images").glob("*.tif"))) < 5:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, stderr


def tiny_translator(root: Path, n_pairs: int = 1) -> tuple[Path, Path]:
    """Train a tiny translator one step on ``n_pairs`` synthetic 32 px pairs under ``root``:
    ``(translator.safetensors, the pairs folder)``."""
    from cellxfer.cli import main

    for args in (["synth-pairs", "--n", str(n_pairs), "--size", "32", "--cell-size", "8", "-o", root / "pairs"],
                 ["train-translate", "--pairs", root / "pairs", "-o", root / "run", "--steps", "1", "--size", "32",
                  "--ngf", "4", "--ndf", "4", "--num-downs", "5"]):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        assert exc.value.code == 0, args
    return root / "run" / "translator.safetensors", root / "pairs"


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    """A tiny trained translator (1 step on one 32 px pair): ``translator.safetensors`` of its run."""
    return tiny_translator(tmp_path_factory.mktemp("tr"))[0]


def other_counter(model: Path, out: Path) -> Path:
    """A second counter file for commands that read two (``ensemble``): ``model``'s weights under other
    metadata (``extra["copy"]``), so it is not the same counter twice, which ``ensemble`` refuses."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(model), "np") as f:
        metadata = f.metadata()
    meta = json.loads(metadata["cellxfer"])
    meta["extra"] = {**meta.get("extra", {}), "copy": 2}
    save_file(load_file(str(model)), str(out), metadata={**metadata, "cellxfer": json.dumps(meta)})
    return out


def small_disk(where: Path, size: str, request) -> Path:
    """Mount a tmpfs of ``size`` (e.g. ``4k``) at the new folder ``where`` for this test (unmounted after it), or
    skip the test where that is not possible (not root, not Linux): a full disk to write to."""
    import subprocess

    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot mount a tmpfs here")
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10))
    return where

