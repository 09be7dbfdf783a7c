"""Fourth fault hunt (session s10): evaluate, adapt-count, adapt, evaluate-translator, plugins, environment
variables and outputs over inputs. Each test is an input that once gave a traceback, a lost result, a run
done twice or a silently wrong number."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_inproc import run_cli
from test_faults import one_line


def _blobs(rng, size=(96, 112), n=20) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image of ``n`` Gaussian blobs and their centres (x, y)."""
    h, w = size
    pts = np.column_stack([rng.uniform(6, w - 6, n), rng.uniform(6, h - 6, n)])
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros(size)
    for x, y in pts:
        img += np.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (2 * 2.0 ** 2))
    return np.clip(img * 200 + rng.normal(0, 3, size), 0, 255).astype(np.uint8), pts


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """``train`` (4 images) and ``val`` (2 other images): labelled cell datasets of blobs."""
    from cellxfer.dataset import CellDatasetWriter

    root = tmp_path_factory.mktemp("probe4-data")
    rng = np.random.default_rng(4)
    for name, n in (("train", 4), ("val", 2)):
        w = CellDatasetWriter(root / name)
        for i in range(n):
            w.write(f"{name}{i}", *_blobs(rng))
        w.finalize({"stage": "test"})
    return root


LOG = ["--arch", "log", "--crop", "64"]


# -- Part 1a: --val a byte copy of the training set -----------------------------------------------------
def test_train_count_refuses_val_that_is_a_copy_of_the_training_set(labelled, tmp_path, capsys):
    """``train-count --real train --val copy-of-train``: the path check let a copy through, so the best epoch was
    picked, and its MAE reported, on the images the run trained on."""
    shutil.copytree(labelled / "train", tmp_path / "copy")
    r = run_cli(["train-count", "--regime", "supervised", "--real", labelled / "train", "--val", tmp_path / "copy",
                 "--out", tmp_path / "run", *LOG], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert f"--val {tmp_path / 'copy'}" in line and "same images as the --real set" in line
    assert not (tmp_path / "run").exists()


def test_train_count_takes_a_val_set_of_other_images_and_warns_of_shared_ones(labelled, tmp_path, capsys):
    """The content check refuses only what the run trains on: another labelled set is validation, and one that
    shares some images with the training set is used with one warning naming them."""
    r = run_cli(["train-count", "--regime", "supervised", "--real", labelled / "train", "--val", labelled / "val",
                 "--out", tmp_path / "run", *LOG], capsys)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    mixed = shutil.copytree(labelled / "val", tmp_path / "mixed")
    for sub, suffix in (("images", ".tif"), ("points", ".csv")):
        src = next((labelled / "train" / sub).glob(f"train0{suffix}*"))
        shutil.copy(src, mixed / sub / src.name)
    r = run_cli(["train-count", "--regime", "supervised", "--real", labelled / "train", "--val", mixed,
                 "--out", tmp_path / "run2", *LOG], capsys)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning")]
    assert len(warned) == 1 and "1 of its 3 images are also in the --real set" in warned[0], r.stderr


# -- Part 1b: a finished --arch log run is kept ------------------------------------------------------------
def test_a_finished_log_run_is_kept_not_fitted_again(labelled, tmp_path, capsys, monkeypatch):
    """A rerun of a finished ``train-count --arch log`` fitted the LoG again (the same result) where every other
    finished run is kept; now its resume state says it is done, as a trained run's does."""
    import cellxfer.classical as classical

    args = ["train-count", "--regime", "supervised", "--real", labelled / "train", "--val", labelled / "val",
            "--out", tmp_path / "run", *LOG]
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.name != "manifest.json"}
    calls = []
    monkeypatch.setattr(classical, "fit_log", lambda *a, **k: calls.append(a) or pytest.fail("fitted again"))
    r = run_cli(args, capsys)
    assert r.returncode == 0, r.stderr
    assert not calls
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.name != "manifest.json"} == before
    assert "val MAE" in r.stdout


# -- adapt-count / train-count: a rerun after an input changed ----------------------------------------------
@pytest.fixture(scope="module")
def counter(labelled, tmp_path_factory) -> Path:
    """A tiny density counter (one step on ``train``)."""
    from cellxfer.train.counter import TrainConfig, train_counter

    out = tmp_path_factory.mktemp("probe4-counter") / "run"
    train_counter(TrainConfig(regime="supervised", out=out, real=labelled / "train", arch="density", crop=32,
                              batch_size=2, epochs=1, max_steps_per_epoch=1, extra={"arch_options": {"base": 4}}))
    return out / "best.safetensors"


ADAPT = ["--batch-size", "2", "--max-steps-per-epoch", "1"]


@pytest.mark.parametrize("changed", ["target", "model"])
def test_adapt_count_rerun_after_its_target_or_model_changed_is_refused(labelled, counter, tmp_path, capsys, changed):
    """An adapt-count run continued (``--epochs 2``) after an image of its target folder was removed, or after
    the counter it adapts was replaced, went on silently on other data: the target and the model were not
    among the inputs a rerun is checked against. Now both are hashed (the target's image files only)."""
    target = shutil.copytree(labelled / "val", tmp_path / "target")
    model = Path(shutil.copy(counter, tmp_path / "model.safetensors"))
    args = ["adapt-count", "-m", model, "-u", target, "-o", tmp_path / "run", *ADAPT, "--epochs"]
    r = run_cli([*args, 1], capsys)
    assert r.returncode == 0, r.stderr
    (target / "points" / "val0.csv").write_text("x,y\n1,1\n")  # its labels are not inputs: still the same run
    r = run_cli([*args, 2], capsys)
    assert r.returncode == 0, r.stderr
    if changed == "target":
        next((target / "images").glob("val1*")).unlink()
    else:
        from cellxfer.counter.model import load_counter, save_counter

        net, meta = load_counter(model)
        next(net.parameters()).data += 0.1
        save_counter(model, net, meta)
    r = run_cli([*args, 3], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert "inputs changed since" in line and str((target if changed == "target" else model).resolve()) in line
    assert "--overwrite" in line




def test_adapt_count_refuses_val_that_is_a_copy_of_its_target(labelled, counter, tmp_path, capsys):
    """``adapt-count -u target --val labelled-copy-of-target``: refused by path ("adaptation must not see labels of
    its target images"), the copy picked the best epoch by the target's own labels, as train-count's --val did."""
    target = tmp_path / "target"
    shutil.copytree(labelled / "val" / "images", target)  # a plain folder of the images
    r = run_cli(["adapt-count", "-m", counter, "-u", target, "--val", labelled / "val", "-o", tmp_path / "run",
                 *ADAPT, "--epochs", "1"], capsys)
    assert r.returncode == 2, r.stderr
    assert "holds the same images as the --unlabeled set" in one_line(r.stderr)
    assert not (tmp_path / "run").exists()


# -- third-party plugins -------------------------------------------------------------------------------------
class _NotAList:
    from cellxfer.hookspecs import hookimpl

    @hookimpl
    def cellxfer_engines(self):
        return 5


class _HalfEngine:
    from cellxfer.hookspecs import hookimpl

    @hookimpl
    def cellxfer_engines(self):
        from types import SimpleNamespace

        return [SimpleNamespace(name="half")]


def test_a_plugin_returning_no_list_or_objects_without_the_hooks_attributes_does_not_break_the_cli(capsys, monkeypatch):
    """A plugin whose engine hook returned an int stopped every command, ``cellxfer plugins`` included, with
    "unexpected TypeError: 'int' object is not iterable" (exit 70); one returning an engine without
    ``available``/``load`` stopped ``plugins`` (and ``--engine auto``) with an AttributeError. Now each is
    one warning naming the plugin, and ignored."""
    import cellxfer.plugins
    from cellxfer.plugins import Registry

    reg = Registry().load(use_entry_points=False)
    capsys.readouterr()
    reg.register(_NotAList(), name="notalist")
    reg.register(_HalfEngine(), name="half")
    warned = {ln for ln in capsys.readouterr().err.splitlines() if ln.strip()}  # (each register() collects again)
    assert warned == {"warning: plugin 'notalist' returned int from cellxfer_engines, not a list; ignored",
                      "warning: plugin 'half' provides engine 'half' without description, available, load; ignored"}
    assert "half" not in reg.provided("cellxfer_engines") and "onnx" in reg.provided("cellxfer_engines")
    monkeypatch.setattr(cellxfer.plugins, "get_registry", lambda: reg)
    r = run_cli(["plugins"], capsys)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr


class _ExitingHook:
    from cellxfer.hookspecs import hookimpl

    @hookimpl
    def cellxfer_synthesizers(self):
        raise SystemExit("this plugin needs foo: pip install foo")


def test_a_plugin_that_calls_sys_exit_is_skipped_not_the_cli(tmp_path, capsys, monkeypatch):
    """A plugin module that calls ``sys.exit("needs foo")`` when imported (a script-like module whose
    dependency is missing) ended every command, ``--help`` too, with its message and exit 1; one whose hook
    did the same, likewise. Now it is a plugin that failed to load: one warning, and the CLI goes on."""
    from cellxfer.plugins import BUILTIN_PLUGINS, Registry

    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit('this plugin needs foo: pip install foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    capsys.readouterr()
    reg = Registry().load(builtins=(*BUILTIN_PLUGINS, ("exiting", "exiting_plugin")), use_entry_points=False)
    reg.register(_ExitingHook(), name="exiting-hook")
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(warned) == 2 and all("SystemExit: this plugin needs foo" in w and "skipped" in w for w in warned), warned
    assert reg.infos["exiting"].status == reg.infos["exiting-hook"].status == "failed"
    assert "synhc" in reg.synthesizers()


# -- environment variables -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["lots", "nan", "-5", "1e400"])
def test_an_absurd_cellxfer_memory_bytes_is_named_not_blamed_on_the_images(labelled, tmp_path, capsys, monkeypatch, value):
    """``CELLXFER_MEMORY_BYTES=lots`` made ``count`` fail every image with "not a readable TIFF (ValueError: could
    not convert string to float: 'lots'); check the file is complete" (and ``-5`` with "-5 B is free"), and
    ``train-count`` stop with "unexpected ValueError" (exit 70). Now the variable is named, with the fix, once
    before any image is read (``tests/test_faults_probe5.py``)."""
    monkeypatch.setenv("CELLXFER_MEMORY_BYTES", value)
    r = run_cli(["count", labelled / "val" / "images", "-o", tmp_path / "counts.csv"], capsys)
    assert r.returncode == 2, r.stderr
    assert f"CELLXFER_MEMORY_BYTES={value!r} is not a number of bytes" in one_line(r.stderr)
    r = run_cli(["train-count", "--regime", "supervised", "--real", labelled / "train", "--out", tmp_path / "run",
                 "--arch", "density", "--crop", "32"], capsys)
    assert r.returncode == 2
    assert f"CELLXFER_MEMORY_BYTES={value!r} is not a number of bytes" in one_line(r.stderr)


@pytest.mark.parametrize("env, named", [({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
                                        ({"WORLD_SIZE": "-1"}, "WORLD_SIZE='-1'"),
                                        ({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"}, "RANK='x'"),
                                        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "²"}, "LOCAL_RANK='²'")])
def test_torchrun_variables_that_are_not_numbers_are_named(env, named):
    """``WORLD_SIZE=two`` (or a RANK that is not a number) left in the environment stopped ``train-count``,
    ``adapt-count``, ``train-translate`` and ``adapt`` with "unexpected ValueError: invalid literal for int()"
    (exit 70). Now one line names the variable and how to train in one process."""
    from cellxfer.errors import InputError
    from cellxfer.train.distributed import from_env

    with pytest.raises(InputError, match=f"^{named}: not a process count or rank; .*unset WORLD_SIZE"):
        from_env("cpu", env)
    assert from_env("cpu", {"WORLD_SIZE": ""}).world_size == 1



# -- adapt ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sweep, says", [(",", "names no layer"), (" ", "names no layer"),
                                         ("1,1", "layer 1 given more than once")])
def test_adapt_sweep_of_no_layer_or_a_layer_twice_is_refused(translator, tmp_path, capsys, sweep, says):
    """``adapt --sweep ,`` adapted nothing and exited 0 ("no labelled target pairs, nothing picked"), leaving a run
    folder of no layer; ``--sweep 1,1`` adapted layer 1 twice into the same layer_01/ and listed it twice in
    sweep.csv. Both are refused before any work."""
    pairs = translator.parent.parent / "pairs"  # (conftest.tiny_translator's layout)
    r = run_cli(["adapt", "-m", translator, "--source", pairs, "--target", pairs, "-o", tmp_path / "out", "--sweep", sweep,
                 "--steps", "1", "--batch-size", "1", "--ndf", "4", "--d-layers", "1", "--holdout", "0"], capsys)
    assert r.returncode == 2
    assert f"--sweep {sweep!r}: {says}" in one_line(r.stderr)
    assert not (tmp_path / "out").exists()



def test_a_finished_adapt_run_and_the_finished_layers_of_a_sweep_are_kept(translator, tmp_path, capsys, monkeypatch):
    """A rerun of a finished ``adapt`` (docs: a rerun with the same settings continues, finished steps kept) adapted
    again from scratch, and a sweep stopped after some layers adapted every layer again. Now a finished layer
    (its manifest complete, its translator there) is kept."""
    import cellxfer.translate.adapt as adapt_module

    pairs = translator.parent.parent / "pairs"
    base = ["adapt", "-m", translator, "--source", pairs, "--target", pairs, "--steps", "1", "--batch-size", "1",
            "--ndf", "4", "--d-layers", "1", "--holdout", "0"]
    for extra in (["-o", tmp_path / "one", "--layer", "2"], ["-o", tmp_path / "sweep", "--sweep", "1,2"]):
        r = run_cli([*base, *extra], capsys)
        assert r.returncode == 0, r.stderr
    files = {p: p.read_bytes() for p in tmp_path.rglob("*.safetensors")}
    monkeypatch.setattr(adapt_module, "_adapt_layer", lambda *a, **k: pytest.fail("adapted again"))
    for extra in (["-o", tmp_path / "one", "--layer", "2"], ["-o", tmp_path / "sweep", "--sweep", "1,2"]):
        r = run_cli([*base, *extra], capsys)
        assert r.returncode == 0, r.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.safetensors")} == files


# -- a model of the other kind -----------------------------------------------------------------------------------
def test_a_model_of_the_other_kind_is_named_as_given_not_as_its_cached_export(labelled, counter, translator, tmp_path, capsys):
    """``evaluate -m translator.safetensors`` after the translator had run once (its ONNX export cached) said
    "error: ~/.cache/cellxfer/onnx/translator-<sha>.onnx: is a translator ...": a file the user never gave;
    likewise ``evaluate-translator -m best.safetensors`` of a counter. The file given is named."""
    pairs = translator.parent.parent / "pairs"  # (conftest.tiny_translator's layout)
    warm = [["evaluate-translator", "-m", translator, "--pairs", pairs, "--engine", "onnx"],
            ["evaluate", "-m", counter, "-d", labelled / "val", "--engine", "onnx"]]
    for args in warm:
        assert run_cli(args, capsys).returncode == 0
    for args, given, says in ((["evaluate", "-m", translator, "-d", labelled / "val"], translator, "is a translator"),
                              (["evaluate-translator", "-m", counter, "--pairs", pairs], counter, "is a counter")):
        r = run_cli(args, capsys)
        assert r.returncode == 2
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {given}: {says}"), r.stderr
