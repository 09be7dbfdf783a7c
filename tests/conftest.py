"""Shared fixtures: paths to the real data ($CELLXFER_DATA or ../shared/data, as the scripts' shared module
``scripts/benchlib.py`` defines them; ``scripts/`` is put on ``sys.path`` so that scripts loaded by path find
it) and GPU-test skipping."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

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
