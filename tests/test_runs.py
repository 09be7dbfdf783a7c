"""The run-folder policy every run- or dataset-writing command shares (:class:`cellxfer.runs.RunFolder`)."""

from __future__ import annotations

import pytest

from cellxfer.errors import InputError
from cellxfer.runs import RunFolder


def _run(out, inputs=(), overwrite=False, **config):
    return RunFolder(out, "demo", {"config": {"lr": 1.0, "epochs": 2, **config}, "seed": 0}, own=("weights",),
                     inputs=inputs, overwrite=overwrite, mutable=("epochs",), defaults={"extra": "x"})


def _start(out, **kw):
    with _run(out, **kw) as run:
        run.write_manifest(complete=False)
        (out / "weights").write_text("w")
        run.save_state({"step": 3})
        return run.resumed


def test_new_then_continued_then_refused_then_overwritten(tmp_path):
    out, data = tmp_path / "run", tmp_path / "data.txt"
    data.write_text("a")
    assert _start(out, inputs=[data]) is False
    (out / "notes.txt").write_text("mine")
    with _run(out, inputs=[data], epochs=5) as run:  # a mutable field may change: continued
        assert run.resumed and run.load_state() == {"step": 3}
    with _run(out, inputs=[data], extra="x") as run:  # a field added since, at its default: continued
        assert run.resumed
    with pytest.raises(InputError, match=r"lr 1.0 -> 2.0.*--overwrite"):
        _run(out, inputs=[data], lr=2.0).open()
    data.write_text("b")
    with pytest.raises(InputError, match="inputs changed since"):
        _run(out, inputs=[data]).open()
    with _run(out, inputs=[data], overwrite=True) as run:
        assert not run.resumed and run.load_state() is None
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # only the run's own entries deleted


def test_a_foreign_folder_is_refused_and_a_second_writer_too(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "x.txt").write_text("x")
    with pytest.raises(InputError, match="holds no demo run"):
        _run(out).open()
    other = tmp_path / "other"
    with _run(other):
        with pytest.raises(InputError, match="another cellxfer demo .* is writing"):
            _run(other).open()
    assert not (tmp_path / "other.lock").exists()  # released on exit


def test_state_is_loaded_without_pickled_code(tmp_path):
    import torch

    out = tmp_path / "run"
    _start(out)
    torch.save({"obj": InputError("x")}, str(out / "state.pt"))  # an object weights_only refuses
    with pytest.raises(InputError, match="state.pt cannot be read"):
        with _run(out) as run:
            run.load_state()


def test_rerunning_the_stage_that_made_an_input_does_not_change_it(tmp_path, capsys):
    """A finished synth rerun rewrites its manifest (new times) but not its images: a run reading that
    folder continues; a changed image is a changed input and is refused."""
    import numpy as np
    import tifffile

    from cli_inproc import run_cli
    from cellxfer.manifest import hash_input

    syn = tmp_path / "syn"
    assert run_cli(["synth", "--n", "2", "--size", "32", "--out", syn], capsys).returncode == 0
    before = hash_input(syn)
    (syn / "manifest.json").write_text((syn / "manifest.json").read_text().replace('"complete": true', '"complete": true ') + "\n")
    (syn / "x.lock").write_text("pid 1\n")
    assert hash_input(syn) == before
    assert run_cli(["synth", "--n", "2", "--size", "32", "--out", syn], capsys).returncode == 0
    assert hash_input(syn)["sha256"] == before["sha256"]
    img = next((syn / "images").iterdir())
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    assert hash_input(syn)["sha256"] != before["sha256"]
