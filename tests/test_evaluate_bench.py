"""scripts/bench_sim2real.py: the documented IDCIA split (disjoint, deterministic, symlinks only)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sim2real", REPO / "scripts" / "bench_sim2real.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_sim2real"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_split_is_documented_disjoint_and_deterministic(idcia_dir, tmp_path):
    from cellxfer.dataset import CellDataset
    from cellxfer.train.data import KNOWN_UNANNOTATED

    bench = _bench()
    a = bench.make_split(tmp_path / "a")
    b = bench.make_split(tmp_path / "b")
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (60, 15, 19)
    assert a == {**b, "source": a["source"]}
    parts = [set(a[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert not set(KNOWN_UNANNOTATED) & set().union(*parts)
    test = CellDataset(tmp_path / "a" / "idcia-test")
    assert test.layout == "idcia" and test.ids == a["test"]
    assert all(p.is_symlink() for p in (tmp_path / "a" / "idcia-test" / "images").iterdir())


def test_table_has_one_row_per_regime():
    bench = _bench()
    row = {"regime": "dacs", "epochs": 2, "steps": 16, "train_seconds": 120.0, "best_val_mae": 10.0,
           "test": {"mae": 1.0, "rmse": 2.0, "acp": 0.5, "bins": {"0-50": {"mae": None}, "50-150": {"mae": 3.0}, "150+": {"mae": 4.0}}}}
    md = bench.table([{"model": "efficientnet_b0", **row}, {**row, "model": "density", "regime": "dual"}]).splitlines()
    assert len(md) == 4 and md[2].startswith("| efficientnet_b0 | dacs | 2 | 16 | 2.0 min | 10.00 | 1.00 | 2.00 | 50% | - | 3.00 | 4.00 |")
    assert md[3].startswith("| density | dual |")
