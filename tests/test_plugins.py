"""The plugin registry: contract tests over everything registered, failure isolation, entry points,
and the real out-of-tree example plugin installed with pip."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cellxfer.hookspecs import hookimpl
from cellxfer.plugins import BUILTIN_PLUGINS, Registry, get_registry
from cellxfer.synth.base import image_rng

REPO = Path(__file__).resolve().parents[1]


def cli(*args, env=None, cwd=None):
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cellxfer", *args], capture_output=True, text=True, env=full_env, cwd=cwd)


def test_every_builtin_loads():
    reg = get_registry()
    for name, _ in BUILTIN_PLUGINS:
        assert reg.infos[name].status == "loaded", reg.infos[name]
        assert reg.infos[name].origin == "builtin"
    assert "synhc" in reg.synthesizers() and "local" in reg.executors()
    assert {"tiff", "png"} <= set(reg.image_readers())


# -- contract tests: every object any plugin provides --------------------------------------------------
@pytest.mark.parametrize("name", sorted(get_registry().synthesizers()))
def test_synthesizer_contract(name):
    synth = get_registry().synthesizers()[name]
    assert dataclasses.is_dataclass(synth.config_cls) and synth.description
    overrides = {"size": 64} if "size" in {f.name for f in dataclasses.fields(synth.config_cls)} else {}
    cfg = synth.config_cls(**overrides)
    ctx = synth.prepare(cfg)
    img, pts = synth.render(cfg, ctx, image_rng(0, 1))
    img2, pts2 = synth.render(cfg, ctx, image_rng(0, 1))
    assert img.ndim == 2 and img.dtype in (np.uint8, np.uint16)
    assert pts.dtype == np.float64 and pts.ndim == 2 and pts.shape[1] == 2
    h, w = img.shape
    assert ((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)).all()
    assert np.array_equal(img, img2) and np.array_equal(pts, pts2)  # determined by the generator


@pytest.mark.parametrize("name", sorted(get_registry().provided("cellxfer_counter_architectures")))
def test_counter_architecture_contract(name, tmp_path):
    """Built from a meta of its defaults (an ensemble: of two density UNets), eval mode: a count
    architecture maps (N, C, w, w) to (N, 1), a density one to (N, 1, H, W) at any size; finite
    outputs; the saved checkpoint reloads to the same outputs."""
    torch = pytest.importorskip("torch")
    from cellxfer.counter.ensemble import ensemble_meta
    from cellxfer.counter.model import CounterMeta, build_counter, load_counter, save_counter

    arch = get_registry().provided("cellxfer_counter_architectures")[name]
    assert arch.name == name and arch.description and callable(arch.build)
    output = getattr(arch, "output", "count")
    if name == "ensemble":
        member = CounterMeta(arch="density", window=32, output="density", arch_options={"base": 4, "depth": 2, "sigma": 3.0})
        meta = ensemble_meta([member, member], ["a", "b"])
        output = meta.output
    else:
        meta = CounterMeta(arch=name, window=32, output=output, arch_options=dict(getattr(arch, "defaults", {}) or {}))
    from cellxfer.counter.head import head_of

    full = head_of(meta).fully_convolutional  # what export declares as dynamic axes
    assert full == (output == "density")
    torch.manual_seed(0)
    model = build_counter(meta).eval()
    sizes = [(32, 32)] + ([(40, 52)] if full else [])
    for h, w in sizes:
        x = torch.rand(2, meta.in_chans, h, w)
        with torch.no_grad():
            y = model(x)
        assert tuple(y.shape) == ((2, 1, h, w) if full else (2, 1)) and torch.isfinite(y).all()
    reloaded, meta2 = load_counter(save_counter(tmp_path / "m.safetensors", model, meta))
    assert meta2.arch == name
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))


@pytest.mark.parametrize("name", sorted(get_registry().image_readers()))
def test_image_reader_contract(name, tmp_path):
    import tifffile
    from PIL import Image

    reader = get_registry().image_readers()[name]
    assert reader.suffixes and all(s.startswith(".") and s == s.lower() for s in reader.suffixes)
    img = np.arange(12 * 9, dtype=np.uint8).reshape(12, 9)
    path = tmp_path / f"img{reader.suffixes[0]}"
    if reader.suffixes[0] in (".tif", ".tiff"):
        tifffile.imwrite(path, img)
    else:
        Image.fromarray(img).save(path)
    assert np.array_equal(reader.read(path, channel=None, page=None), img)


def _maybe_fail(x):
    if x == 3:
        raise ValueError("bad item 3")
    return x * x


@pytest.mark.parametrize("name", sorted(get_registry().executors()))
@pytest.mark.parametrize("workers", [1, 2])
def test_executor_contract(name, workers):
    ex = get_registry().executors()[name]
    missing = ex.available()
    if missing:
        pytest.skip(f"executor {name} unavailable here: {missing}")
    results = dict(ex.map(_maybe_fail, range(8), workers=workers))
    assert set(results) == set(range(8))
    assert isinstance(results[3], ValueError)
    assert all(results[i] == i * i for i in range(8) if i != 3)


# -- isolation -------------------------------------------------------------------------------------------
class RaisingProvider:
    @hookimpl
    def cellxfer_synthesizers(self):
        raise RuntimeError("boom")


class RaisingCommands:
    @hookimpl
    def cellxfer_register_commands(self, app):
        @app.command("half-registered")
        def _x():
            pass

        raise RuntimeError("boom in commands")


class Misspelled:
    @hookimpl
    def cellxfer_synthesiser(self):  # no such hook
        return []


def test_a_raising_plugin_is_reported_and_skipped(capsys):
    import typer

    reg = Registry().load(use_entry_points=False)
    reg.register(RaisingProvider(), name="raiser")
    reg.register(RaisingCommands(), name="cmds")
    reg.register(Misspelled(), name="typo")
    err = capsys.readouterr().err
    assert "plugin 'raiser'" in err and "boom" in err and "skipped" in err
    assert "plugin 'typo'" in err
    assert reg.infos["raiser"].status == "failed" and reg.infos["typo"].status == "failed"
    assert "synhc" in reg.synthesizers()
    app = typer.Typer()
    reg.register_commands(app)
    names = [c.name for c in app.registered_commands]
    assert "synth" in names and "half-registered" not in names
    assert reg.infos["cmds"].status == "failed"


def test_duplicate_names_are_refused(capsys):
    from cellxfer.stages.synth import SYNHC

    class Dup:
        @hookimpl
        def cellxfer_synthesizers(self):
            return [SYNHC]

    reg = Registry().load(use_entry_points=False)
    reg.register(Dup(), name="dup")
    assert "already provided" in capsys.readouterr().err
    assert "synthesizer" not in reg.infos["dup"].provides


def _fake_distribution(root: Path, name: str, target: str) -> Path:
    dist = root / f"{name}-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(f"[cellxfer]\n{name} = {target}\n")
    return root


def test_an_entry_point_that_fails_to_import_does_not_break_the_cli(tmp_path):
    site = _fake_distribution(tmp_path / "site", "broken", "no_such_module_xyz")
    env = {"PYTHONPATH": str(site)}
    r = cli("plugins", env=env)
    assert r.returncode == 0, r.stderr
    assert "plugin 'broken' (entry point (broken 0.0.1)) failed to load" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "synth" in r.stdout and "failed" in r.stdout
    r = cli("synth", "--n", "2", "--size", "32", "--out", str(tmp_path / "o"), env=env)
    assert r.returncode == 0, r.stderr
    r = cli("plugins", env={**env, "CELLXFER_DISABLE_PLUGINS": "broken"})
    assert "warning" not in r.stderr and "disabled" in r.stdout


def test_out_of_tree_plugin_installs_and_works(tmp_path):
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO / "plugins" / "cellxfer-blobs")],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(target)}
    r = cli("plugins", env=env)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("blobs"))
    assert "entry point (cellxfer-blobs 0.1.0)" in line and "synthesizer: blobs" in line
    out = tmp_path / "blobs"
    r = cli("synth", "--method", "blobs", "--n", "3", "--size", "48", "--set", "sigma=2", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    from cellxfer.dataset import CellDataset
    from cellxfer.manifest import read_manifest

    ds = CellDataset(out)
    assert len(ds) == 3 and ds[0].image.shape == (48, 48)
    assert read_manifest(out)["method"] == "blobs" and read_manifest(out)["config"]["sigma"] == 2.0
    r = cli("synth", "--method", "blobs", "--n", "1", "--cell-size", "4", "--out", str(tmp_path / "b2"), env=env)
    assert r.returncode == 2 and "--cell-size is not a parameter of synthesizer 'blobs'" in r.stderr
    r = cli("plugins", env={**env, "CELLXFER_DISABLE_PLUGINS": "blobs"})
    assert "disabled" in next(l for l in r.stdout.splitlines() if l.startswith("blobs"))


def test_what_a_provider_must_have_is_what_its_class_requires():
    """:data:`cellxfer.hookspecs.PROVIDES` (the attributes the registry checks on every provided object) names
    the fields without a default of each hook's documenting class, and every built-in provider has them."""
    from cellxfer.commands import CommandSpec
    from cellxfer.counter.model import CounterArch
    from cellxfer.engines.base import Engine
    from cellxfer.executors import LocalExecutor
    from cellxfer.hookspecs import PROVIDES
    from cellxfer.imageio import ImageReader
    from cellxfer.stylize.spec import Stylizer
    from cellxfer.synth.base import Synthesizer

    def required(cls):
        return tuple(f.name for f in dataclasses.fields(cls)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)

    classes = {"cellxfer_commands": CommandSpec, "cellxfer_synthesizers": Synthesizer, "cellxfer_stylizers": Stylizer,
               "cellxfer_image_readers": ImageReader, "cellxfer_engines": Engine,
               "cellxfer_counter_architectures": CounterArch}
    assert {h: required(c) for h, c in classes.items()} == {h: a for h, a in PROVIDES.items() if h in classes}
    assert PROVIDES["cellxfer_executors"] == ("name", "description", "available", "map")
    assert all(hasattr(LocalExecutor(), a) for a in PROVIDES["cellxfer_executors"])
    reg = get_registry()
    for hook, attrs in PROVIDES.items():
        assert reg.provided(hook), hook
        assert all(hasattr(obj, a) for obj in reg.provided(hook).values() for a in attrs), hook
