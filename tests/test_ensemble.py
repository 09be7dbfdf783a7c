"""Counter ensembles: the mean of the members' outputs, used by evaluate/count/export like any counter;
members that do not fit together are refused with a one-line error and no output file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellxfer.counter.model import CounterMeta, load_counter, save_counter  # noqa: E402
from cellxfer.dataset import CellDatasetWriter  # noqa: E402
from cellxfer.errors import InputError  # noqa: E402

META = CounterMeta(arch="density", window=32, output="density",
                   arch_options={"base": 4, "depth": 2, "stem": 1, "norm": "batch", "scale": 100.0, "sigma": 2.0, "margin": 4})


def _member(path: Path, seed: int, meta: CounterMeta = META) -> Path:
    from cellxfer.counter.model import build_counter

    torch.manual_seed(seed)
    model = build_counter(meta)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval-mode members differ
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.head.bias.fill_(0.5)  # positive densities, so counts are not ~0
    return save_counter(path, model.eval(), meta)


@pytest.fixture
def members(tmp_path):
    return [_member(tmp_path / f"m{i}.safetensors", seed=i) for i in range(3)]


def test_ensemble_is_the_mean_of_its_members(members, tmp_path):
    from cellxfer.counter.ensemble import EnsembleConfig, make_ensemble

    out = make_ensemble(EnsembleConfig(models=tuple(members), out=tmp_path / "ens.safetensors"))
    ens, meta = load_counter(out)
    assert meta.arch == "ensemble" and meta.output == "density" and meta.window == 32
    assert meta.arch_options["sigma"] == 2.0 and len(meta.arch_options["members"]) == 3
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 45, 61)).astype(np.float32))
    with torch.no_grad():
        outs = [load_counter(p)[0](x) for p in members]
        got = ens(x)
    assert not torch.allclose(outs[0], outs[1])
    torch.testing.assert_close(got, torch.stack(outs).mean(0))
    assert (tmp_path / "ens.safetensors.manifest.json").is_file()


def test_ensemble_counts_are_mean_counts_in_evaluate_and_onnx_count(members, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from cellxfer.count.job import CountConfig, run_count
    from cellxfer.counter.ensemble import EnsembleConfig, make_ensemble
    from cellxfer.evaluate.run import EvaluateConfig, evaluate

    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    w = CellDatasetWriter(tmp_path / "data")
    for i in range(2):
        w.write(f"img{i}", rng.integers(0, 255, (70, 90)).astype(np.uint8), rng.uniform(5, 60, (4, 2)))
    w.finalize({"stage": "test"})
    ens = make_ensemble(EnsembleConfig(models=tuple(members), out=tmp_path / "ens.safetensors"))

    def counts(model):
        return {r[0]: r[2] for r in evaluate(EvaluateConfig(model=model, data=tmp_path / "data", engine="torch")).rows}

    per_member = [counts(m) for m in members]
    got = counts(ens)
    for name, c in got.items():
        assert c == pytest.approx(np.mean([pm[name] for pm in per_member]), rel=1e-4)
    res = run_count(CountConfig(paths=(str(tmp_path / "data" / "images"),), model=ens, engine="onnx", out=tmp_path / "c.csv"))
    assert sorted(res.counts.values()) == pytest.approx(sorted(got.values()), rel=1e-3)


def test_members_that_do_not_fit_are_refused(members, tmp_path):
    from cellxfer.counter.ensemble import EnsembleConfig, make_ensemble

    other = _member(tmp_path / "w64.safetensors", 5, replace(META, window=64))
    sigma = _member(tmp_path / "s3.safetensors", 5, replace(META, arch_options={**META.arch_options, "sigma": 3.0}))
    for bad, word in [(other, "window"), (sigma, "sigma")]:
        with pytest.raises(InputError, match=f"{bad.name}: .*{word}"):
            make_ensemble(EnsembleConfig(models=(members[0], bad), out=tmp_path / "x.safetensors"))
    from cellxfer.counter.model import build_counter

    log_meta = replace(META, arch="log", arch_options={"sigma": 2.0, "threshold": 0.1})
    log = save_counter(tmp_path / "log.safetensors", build_counter(log_meta), log_meta)
    with pytest.raises(InputError, match="log.safetensors: a LoG detector"):
        make_ensemble(EnsembleConfig(models=(members[0], log), out=tmp_path / "x.safetensors"))
    with pytest.raises(InputError, match="at least two"):
        make_ensemble(EnsembleConfig(models=(members[0],), out=tmp_path / "x.safetensors"))
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_ensemble_one_line_error(members, tmp_path, capsys):
    from cli_inproc import run_cli

    code, out, err = run_cli(["ensemble", members[0], tmp_path / "missing.safetensors", "-o", tmp_path / "e.safetensors"], capsys)
    assert code != 0 and "missing.safetensors" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.safetensors").exists()
    code, out, err = run_cli(["ensemble", *members, "-o", tmp_path / "e.safetensors"], capsys)
    assert code == 0, err
    assert load_counter(tmp_path / "e.safetensors")[1].extra["members"] == 3
