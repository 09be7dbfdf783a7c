"""Shared fixtures: paths to the real data in ../shared/data and GPU-test skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IDCIA = SHARED_DATA / "idcia-dapi-95"


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
