"""Data-parallel training (cellxfer.train.distributed): batch splitting, per-rank seeds, torchrun
detection, and a real 2-process gloo run of ``torchrun -m cellxfer train-count`` that reproduces the
1-process loss curve and weights and whose checkpoint a 1-process run resumes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cellxfer.errors import InputError
from cellxfer.train.distributed import Distributed, from_env

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
# float32 weights after 9 Adam steps: 2 processes sum per-rank gradients in another order than one
# process's convolution backward; measured differences are ~1e-8 (weights O(1)), losses agree to 6 digits
ATOL_WEIGHTS, RTOL_LOSS = 1e-5, 1e-5


@pytest.mark.parametrize("n,world", [(16, 2), (5, 2), (7, 3), (3, 3), (2, 3)])
def test_shards_cover_the_global_batch_and_weights_give_its_mean(n, world):
    ranks = [Distributed(world, r, r, "gloo") for r in range(world)]
    shards = [d.shard(n) for d in ranks]
    if n < world:
        assert shards == [None] * world
        return
    rows = np.concatenate([np.arange(n)[s] for s in shards])
    assert rows.tolist() == list(range(n))  # contiguous, disjoint, in order
    sizes = [s.stop - s.start for s in shards]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    # DDP averages the weighted per-rank means: that must be the global mean for any values
    values = np.random.default_rng(0).normal(size=n)
    ddp = np.mean([values[s].mean() * d.loss_weight(s, n) for d, s in zip(ranks, shards)])
    assert ddp == pytest.approx(values.mean(), rel=1e-12)


def test_one_process_is_the_identity():
    one = Distributed()
    assert not one.active and one.is_main and one.shard(5) == slice(0, 5)
    assert one.loss_weight(slice(0, 5), 5) == 1.0 and one.seed(123) == 123
    model = torch.nn.Linear(2, 1)
    assert one.wrap(model) is model and one.map_shared(lambda x: x * 2, [1, 2]) == [2, 4]
    assert one.describe() == {"world_size": 1, "backend": None, "launcher": None}
    assert from_env("cpu", {}) == one and from_env("cuda:1", {"WORLD_SIZE": "1"}).device == "cuda:1"


def test_per_rank_seeds_and_backends_from_torchrun_variables(monkeypatch):
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    cpu = from_env("cpu", env)
    assert (cpu.backend, cpu.device, cpu.rank, cpu.is_main) == ("gloo", "cpu", 3, False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="needs cuda:1 but 1 GPU"):
        from_env("cuda", env)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpu = from_env("cuda", env)
    assert (gpu.backend, gpu.device) == ("nccl", "cuda:1")
    seeds = {Distributed(4, r).seed(7) for r in range(4)}
    assert len(seeds) == 4 and Distributed(4, 0).seed(7) == 7 and cpu.seed(7) == cpu.seed(7)
    with pytest.raises(InputError, match="--device cuda"):
        from_env("cuda:1", env)
    with pytest.raises(InputError, match="torchrun"):
        from_env("cpu", {"WORLD_SIZE": "2"})
    with pytest.raises(InputError, match="--batch-size 3 is smaller than the 4 processes"):
        cpu.check_batch(3)


def _blobs(root: Path):
    from cellxfer.dataset import CellDatasetWriter

    rng = np.random.default_rng(1)
    for name, n in (("real", 12), ("val", 3)):
        w = CellDatasetWriter(root / name)
        for i in range(n):
            pts = rng.uniform(2, 46, (int(rng.integers(0, 40)), 2))
            img = rng.normal(8, 2, (48, 48))
            for x, y in pts:
                img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] += 120
            w.write(f"img{i:03d}", np.clip(img, 0, 255).astype(np.uint8), pts)
        w.finalize({"stage": "test"})


def _weights(run: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(run / "last.safetensors"))


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "history.csv").read_text().splitlines())]


def test_two_gloo_processes_train_like_one_and_resume_in_one(tmp_path):
    """Global batch 5 over 2 ranks (3 + 2 rows; the epoch's last batch of 2 is 1 + 1): the loss-weighted
    gradient average equals the 1-process step. Group norm, so batch statistics do not depend on the split."""
    from cellxfer.train.counter import TrainConfig, train_counter

    _blobs(tmp_path)
    opts = {"norm": "group", "base": 4, "depth": 1}
    common = dict(regime="supervised", real=tmp_path / "real", val=tmp_path / "val", arch="density", crop=32,
                  batch_size=5, seed=3, extra={"arch_options": opts})
    ref = train_counter(TrainConfig(out=tmp_path / "one", epochs=3, **common)).out

    args = ["train-count", "--regime", "supervised", "--real", str(tmp_path / "real"), "--val", str(tmp_path / "val"),
            "--arch", "density", *[a for k, v in opts.items() for a in ("--arch-option", f"{k}={v}")],
            "--crop", "32", "--batch-size", "5", "--seed", "3", "--epochs", "2", "--out", str(tmp_path / "two")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "cellxfer", *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = tmp_path / "two"
    import json

    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["distributed"] == {"world_size": 2, "backend": "gloo", "launcher": "torchrun"}
    np.testing.assert_allclose(_losses(two), _losses(ref)[:2], rtol=RTOL_LOSS)
    vals = [[r["val_mae"] for r in csv.DictReader((p / "history.csv").read_text().splitlines())] for p in (ref, two)]
    assert vals[1] == vals[0][:2]  # validation sharded over the ranks, every image counted once

    # the 2-process checkpoint continues in one process to the 1-process run's third epoch
    resumed = train_counter(TrainConfig(out=two, epochs=3, resume=True, **common)).out
    np.testing.assert_allclose(_losses(resumed), _losses(ref), rtol=RTOL_LOSS)
    a, b = _weights(ref), _weights(resumed)
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < ATOL_WEIGHTS
    assert json.loads((two / "manifest.json").read_text())["distributed"]["world_size"] == 1


def _torchrun(script_args: list[str], timeout: int = 180) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *script_args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_translate_adapt_and_learn_style_on_two_gloo_processes(tmp_path):
    """train-translate (instance norm, no dropout) and learn-style (all random draws made for the global
    batch) reproduce one process, and 2 processes continue a 1-process translator checkpoint as one would; adapt, whose discriminator has batch norm (per-rank statistics on the
    CPU), trains only up to its layer and records the world."""
    import importlib.util
    import json
    import shutil
    from dataclasses import replace

    import tifffile
    from safetensors.numpy import load_file

    import ddp_worker
    from cellxfer.synth.paired import PairedConfig, write_pairs
    from cellxfer.translate.adapt import adapt_layer
    from cellxfer.translate.train import train_translator

    write_pairs(PairedConfig(size=64, cell_size=12, cells=(3, 6)), 4, tmp_path / "pairs", seed=0)
    write_pairs(PairedConfig(size=64, cell_size=12, cells=(3, 6), modality="bf", overexpose=2.0), 4, tmp_path / "bf", seed=1)
    spec = importlib.util.spec_from_file_location("make_tiny_models", REPO / "scripts" / "make_tiny_models.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    assert tiny.main([str(tmp_path / "tiny")]) == 0
    (tmp_path / "style").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        tifffile.imwrite(tmp_path / "style" / f"s{i}.tif", rng.normal(8, 3, (70, 90)).clip(0, 255).astype(np.uint8))
    train_translator(ddp_worker.translate_config(tmp_path, "t_one"))
    train_translator(replace(ddp_worker.translate_config(tmp_path, "t_six"), steps=6))
    shutil.copytree(tmp_path / "t_one", tmp_path / "t_resume")  # 2 processes continue it to step 6
    marked = tmp_path / "t_resume" / "log.csv"  # rows 1-4 marked: a resumed run appends, a fresh one rewrites
    lines = marked.read_text().splitlines()
    marked.write_text("\n".join(lines[:1] + [f"{i},-1,-1,-1" for i in range(1, 5)]) + "\n")
    adapt_layer(ddp_worker.adapt_config(tmp_path, "a_one"))
    ddp_worker.learn(tmp_path, "s_one")

    _torchrun([str(REPO / "tests" / "ddp_worker.py"), str(tmp_path)])

    def close(a: Path, b: Path, atol: float) -> None:
        wa, wb = load_file(str(a)), load_file(str(b))
        assert wa.keys() == wb.keys() and max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < atol

    def log(run: str):
        return np.loadtxt(tmp_path / run / "log.csv", delimiter=",", skiprows=1)

    np.testing.assert_allclose(log("t_two"), log("t_one"), rtol=1e-4)  # printed with 5 decimals
    resumed = log("t_resume")
    assert resumed[:, 0].tolist() == [1, 2, 3, 4, 5, 6] and (resumed[:4, 1:] == -1).all()
    np.testing.assert_allclose(resumed[4:], log("t_six")[4:], rtol=1e-4)
    # translators compared as functions: the biases of convolutions followed by instance norm have zero true
    # gradient, so Adam turns their float noise into lr-sized steps of either sign (measured: up to 1.5e-3)
    # that the norm removes again
    from cellxfer.translator.model import load_translator

    x = torch.from_numpy(np.random.default_rng(2).normal(size=(2, 1, 32, 32)).astype(np.float32))
    for one, two in (("t_one", "t_two"), ("t_six", "t_resume")):
        with torch.no_grad():
            y1, y2 = (load_translator(tmp_path / d / "translator.safetensors")[0](x) for d in (one, two))
        assert float((y1 - y2).abs().max()) < ATOL_WEIGHTS
    close(tmp_path / "s_one" / "token.safetensors", tmp_path / "s_two" / "token.safetensors", ATOL_WEIGHTS)
    manifests = {n: json.loads(p.read_text()) for n, p in (("t", tmp_path / "t_two" / "manifest.json"),
                                                           ("a", tmp_path / "a_two" / "manifest.json"),
                                                           ("s", tmp_path / "s_two" / "manifest.json"))}
    assert all(m["distributed"]["world_size"] == 2 and m["distributed"]["backend"] == "gloo" for m in manifests.values())
    def losses(run: str):
        return np.loadtxt(tmp_path / run / "history.csv", delimiter=",", skiprows=1)[:, 1]

    np.testing.assert_allclose(losses("s_two"), losses("s_one"), rtol=RTOL_LOSS)

    src, _ = load_translator(tmp_path / "t_one" / "translator.safetensors")
    two, meta = load_translator(tmp_path / "a_two" / "translator.safetensors")
    moved = [not all(torch.equal(a, b) for a, b in zip(src.block(i).state_dict().values(), two.block(i).state_dict().values()))
             for i in range(1, meta.n_layers + 1)]
    assert all(moved[:10]) and not any(moved[10:])  # blocks 1..10 adapted, the rest frozen
    assert len((tmp_path / "a_two" / "log.csv").read_text().splitlines()) == 1 + 4
