"""Fifth fault hunt (session s10): small faults the fourth left. Each test is an input that once gave a clobbered
run record, a line per input for one bad setting, a silently wrong number or help that contradicts the check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli_inproc import run_cli
from test_faults import one_line
from test_faults_probe4 import LOG, labelled  # noqa: F401  (a module fixture: labelled train and val sets)


@pytest.fixture(scope="module")
def log_run(labelled, tmp_path_factory) -> Path:  # noqa: F811
    """A finished ``train-count --arch log`` run folder (a fit, no training: fast)."""
    from cellxfer.cli import main

    out = tmp_path_factory.mktemp("probe5-run") / "run"
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in ["train-count", "--regime", "supervised", "--real", labelled / "train",
                               "--out", out, *LOG]])
    assert exc.value.code == 0
    return out


# -- 1: an output never replaces what a run folder records -------------------------------------------------
@pytest.mark.parametrize("name", ["history.csv", "last.safetensors", "state.pt", "manifest.json"])
def test_evaluate_csv_never_replaces_a_run_record_even_with_overwrite(name, log_run, labelled, tmp_path, capsys):
    """``evaluate --csv RUN/history.csv --overwrite`` replaced the training run's log (any of its files: its
    checkpoints, resume state, manifest) with per-image predictions; only a file of an *input* folder was kept."""
    before = (log_run / name).read_bytes()
    r = run_cli(["evaluate", "--model", log_run / "best.safetensors", "--data", labelled / "val",
                 "--csv", log_run / name, "--overwrite"], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert f"{log_run / name}: --csv names" in line and "train-count run" in line and "choose another --csv" in line
    assert (log_run / name).read_bytes() == before


def test_evaluate_csv_may_replace_its_own_earlier_file_in_a_run_folder(log_run, labelled, capsys):
    """A file the run does not own (an earlier evaluation's CSV put beside it) is replaced with --overwrite."""
    args = ["evaluate", "--model", log_run / "best.safetensors", "--data", labelled / "val", "--csv", log_run / "eval.csv"]
    assert run_cli(args, capsys).returncode == 0
    assert run_cli(args, capsys).returncode == 2
    assert run_cli([*args, "--overwrite"], capsys).returncode == 0


def test_evaluate_translator_csv_never_replaces_the_translator_runs_log(translator, capsys):
    """``evaluate-translator --csv RUN/log.csv --overwrite`` replaced the training log of the translator's run."""
    log = translator.parent / "log.csv"
    before = log.read_bytes()
    pairs = translator.parent.parent / "pairs"
    r = run_cli(["evaluate-translator", "--model", translator, "--pairs", pairs, "--csv", log, "--overwrite"], capsys)
    assert r.returncode == 2, r.stderr
    assert f"{log}: --csv names" in one_line(r.stderr) and "train-translate run" in one_line(r.stderr)
    assert log.read_bytes() == before


def test_count_outputs_never_replace_a_run_record(log_run, labelled, tmp_path, capsys):
    """``count -o RUN/history.csv --overwrite`` (or ``--points`` into a dataset's ``points/``) wrote over another run's
    files: refused before any image is counted."""
    before = (log_run / "history.csv").read_bytes()
    images = labelled / "val" / "images"
    r = run_cli(["count", images, "--model", log_run / "best.safetensors", "-o", log_run / "history.csv",
                 "--overwrite"], capsys)
    assert r.returncode == 2, r.stderr
    assert f"{log_run / 'history.csv'}: --out names a file of the train-count run" in one_line(r.stderr)
    assert (log_run / "history.csv").read_bytes() == before
    assert not (log_run / "history.csv.manifest.json").exists()


# -- 2: a malformed environment variable is one line before any input -------------------------------------------
@pytest.mark.parametrize("value", ["lots", "nan", "-5"])
def test_a_bad_cellxfer_memory_bytes_is_one_line_before_any_input(value, labelled, tmp_path, capsys, monkeypatch):
    """``CELLXFER_MEMORY_BYTES=lots`` made ``count`` (and ``stylize``) print one "failed" line per image naming the
    variable, write a CSV of failed rows and exit 1: a setting of the run blamed on every input. Every command now
    checks the environment once before its body runs: one line, exit 2, nothing written; ``--help`` still works."""
    monkeypatch.setenv("CELLXFER_MEMORY_BYTES", value)
    for args in (["count", labelled / "val" / "images", "-o", tmp_path / "counts.csv"],
                 ["stylize", "--content", labelled / "val", "--style", labelled / "train" / "images",
                  "--method", "histogram", "-o", tmp_path / "styled"],
                 ["synth", "--n", "1", "--size", "64", "-o", tmp_path / "synth"]):
        r = run_cli(args, capsys)
        assert r.returncode == 2, (args[0], r.stderr)
        assert f"CELLXFER_MEMORY_BYTES={value!r} is not a number of bytes; unset it" in one_line(r.stderr), args[0]
    assert not list(tmp_path.iterdir())
    assert run_cli(["count", "--help"], capsys).returncode == 0


# -- 3: CELLXFER_CACHE that cannot be a folder -------------------------------------------------------------------
def test_a_cache_variable_naming_a_file_is_named_with_the_fix(log_run, labelled, tmp_path, capsys, monkeypatch):
    """``CELLXFER_CACHE=a-file``: the line named ``a-file/onnx`` ("not a directory; ... choose another path"), a path
    the user never gave, and not the variable that chose it."""
    cache = tmp_path / "cache"
    cache.write_text("")
    monkeypatch.setenv("CELLXFER_CACHE", str(cache))
    r = run_cli(["count", labelled / "val" / "images", "--model", log_run / "best.safetensors",
                 "-o", tmp_path / "counts.csv"], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert line.startswith(f"error: CELLXFER_CACHE={cache}: cannot hold the cache's onnx/") and "unset it" in line, line
    # the run stopped before its first row: no CSV, and no sidecar manifest of a CSV that does not exist
    assert not (tmp_path / "counts.csv").exists() and not (tmp_path / "counts.csv.manifest.json").exists()


# -- 4: the image readers disabled -------------------------------------------------------------------------------
def test_disabling_the_image_reader_plugin_is_named_not_no_images_found(labelled, tmp_path, capsys, monkeypatch):
    """``CELLXFER_DISABLE_PLUGINS=imageio``: ``count`` said "no image files found (cellxfer reads TIFF and PNG)" of a
    folder of TIFFs, with no hint that the readers were switched off. With no reader registered, what reads images
    says so, naming the variable and the fix; ``plugins`` still lists them."""
    from cellxfer import plugins

    monkeypatch.setenv("CELLXFER_DISABLE_PLUGINS", "imageio")
    registry = plugins.Registry().load()  # as a process started with the variable loads it
    monkeypatch.setattr(plugins, "get_registry", lambda: registry)
    r = run_cli(["count", labelled / "val" / "images", "-o", tmp_path / "counts.csv"], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert "no image reader is registered: CELLXFER_DISABLE_PLUGINS=imageio disables the built-in TIFF and PNG " \
           "readers" in line and "remove imageio from CELLXFER_DISABLE_PLUGINS" in line, line
    assert run_cli(["plugins"], capsys).returncode == 0


# -- 5: a points table with a header and no rows -----------------------------------------------------------------
def test_evaluate_warns_of_an_empty_table_where_the_model_counts_many(log_run, labelled, tmp_path, capsys):
    """A points table holding only its header (an export that lost its rows) gave a true count of 0 without a word,
    however many cells the model counted. It is still used (an empty field has such a table), with one warning line
    naming it when the model counts 10 or more; a table that lists cells draws none."""
    import shutil

    data = shutil.copytree(labelled / "val", tmp_path / "val")
    (data / "points" / "val0.csv").write_text("x,y\n")
    r = run_cli(["evaluate", "--model", log_run / "best.safetensors", "--data", data, "--csv", tmp_path / "e.csv"],
                capsys)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning")]
    assert len(warned) == 1, r.stderr
    assert f"{data / 'points' / 'val0.csv'}: lists no cells, but the model counts" in warned[0]
    assert (tmp_path / "e.csv").read_text().splitlines()[1].startswith("val0,0,")


# -- 6: help that states a range other than the option's ---------------------------------------------------------
def test_no_option_help_states_a_span_other_than_its_range():
    """``adapt --help`` said "--layer 1..16" beside "Range: in [1, 26]": the real limit is the translator's
    2 x --num-downs. An ``A..B`` an option's help states must be the range it shows, for every command."""
    import re

    import typer.main

    from cellxfer.cli import build_app

    group = typer.main.get_command(build_app())
    wrong = []
    for name, command in group.commands.items():
        for param in command.params:
            stated, _, shown = (getattr(param, "help", None) or "").partition("Range:")
            wrong += [f"{name} {param.opts[0]}: {lo}..{hi} vs{shown}" for lo, hi in re.findall(r"(\d+)\.\.(\d+)", stated)
                      if f"[{lo}, {hi}]" not in shown]
    assert not wrong, wrong


def test_adapt_layer_beyond_the_translator_names_its_limit(translator, tmp_path, capsys):
    """The check says the limit of the translator given, and where it comes from (its --num-downs)."""
    pairs = translator.parent.parent / "pairs"
    r = run_cli(["adapt", "-m", translator, "--source", pairs, "--target", pairs, "-o", tmp_path / "ad", "--layer", "11",
                 "--steps", "1", "--batch-size", "2", "--ndf", "4", "--d-layers", "1", "--holdout", "0"], capsys)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == ("error: --layer 11: this translator (--num-downs 5) has layers 1..10, 2 x its down "
                                  "blocks (10 = output, plain ADDA); give --layer 1 to 10")


# -- 7: a fitted architecture's epoch line -------------------------------------------------------------------------
def test_a_fitted_architecture_says_one_fit_not_the_ignored_epochs(labelled, tmp_path, capsys):  # noqa: F811
    """``train-count --arch log`` printed "epoch 1/50 [fit]", its 50 taken from an ``--epochs`` the fit ignores."""
    r = run_cli(["train-count", "--regime", "supervised", "--real", labelled / "train", "--out", tmp_path / "run",
                 "--epochs", "7", *LOG], capsys)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1 [fit]"), r.stderr


# -- 8: a batch that must hold two kinds of crop -------------------------------------------------------------------
@pytest.mark.parametrize("command", [["adapt-count", "-u", "{val}/images", "--synthetic", "{train}"],
                                     ["train-count", "--regime", "dual", "--real", "{train}", "--synthetic", "{train}"]])
@pytest.mark.parametrize("batch", ["1", "3"])
def test_a_batch_that_cannot_be_two_halves_is_refused(command, batch, labelled, tmp_path, capsys):  # noqa: F811
    """``adapt-count --synthetic S --batch-size 1`` trained batches of 2 (one synthetic, one target crop) without a
    word, where ``dual`` and ``dacs`` refuse a batch under 2; and an odd batch, 3, trained as 1 + 1. All three
    refuse both alike, in one line saying why."""
    args = [a.format(val=labelled / "val", train=labelled / "train") for a in command]
    r = run_cli([*args, "--batch-size", batch, "-o", tmp_path / "run", "--epochs", "1"], capsys)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr).startswith(f"error: --batch-size {batch}: every batch here is half ") and \
        one_line(r.stderr).endswith("crops; give an even --batch-size, 2 or more")
    assert not (tmp_path / "run").exists()
