"""Every option is validated in one place (issue 27): the typed configs state each field's range
(:mod:`cellxfer.bounds`), the CLI shows it in ``--help`` and refuses a value outside it as one line, exit 2.

The absurd options the issue reported are each a case here; the contract tests run over every registered
command (the plugin registry), so a new command's options are covered as soon as it is registered; the
property-based tests (Hypothesis) draw values for every bounded field of every config and every bounded
option of every command (tests/test_option_properties.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli

#: (command line, what the one error line starts with). Each ran, or was accepted, before issue 27.
REPORTED = [
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--epochs", "0"], "--epochs 0: must be"),
    (["adapt-count", "-u", "u", "-o", "o", "--epochs", "0"], "--epochs 0: must be"),
    (["train-translate", "--pairs", "p", "-o", "o", "--steps", "0"], "--steps 0: must be"),
    (["adapt", "-m", "m", "--source", "s", "--target", "t", "-o", "o", "--steps", "0"], "--steps 0: must be"),
    (["stylize", "-c", "c", "-s", "s", "-o", "o", "--limit", "-2"], "--limit -2: must be"),
    (["synth", "-o", "o", "--noise", "-1"], "--noise -1: must be"),
    (["synth", "-o", "o", "--set", "noise=-1"], "synthesizer 'synhc': --noise -1: must be"),
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--sigma", "-1"], "--sigma -1: must be"),
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--sigma", "0"], "--sigma 0: must be"),
    (["evaluate", "-m", "m", "-d", "d", "--radius", "0"], "--radius 0: must be"),
    (["evaluate", "-m", "m", "-d", "d", "--radius", "-3"], "--radius -3: must be"),
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--crop", "7"], "--crop 7: must be"),
    (["train-translate", "--pairs", "p", "-o", "o", "--input-norm", "50:50"], "--input-norm 50:50: must be"),
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--input-norm", "50:50"], "--input-norm 50:50: LOW must be below HIGH"),
    (["translate", "a.tif", "-m", "m", "-o", "o", "--tile", "64", "--overlap", "64"], "--overlap 64: must be at most half the tile"),
    (["translate", "a.tif", "-m", "m", "-o", "o", "--tile", "64", "--overlap", "-1"], "--overlap -1: must be"),
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--lr", "nan"], "--lr nan: must be"),
    (["train-translate", "--pairs", "p", "-o", "o", "--lr", "inf"], "--lr inf: must be"),
    (["count", "a.tif", "--workers", "-1"], "--workers -1: must be"),
    (["synth", "-o", "o", "--workers", "-1"], "--workers -1: must be"),
    (["count", "a.tif", "--device", "tpu"], "--device tpu: must be auto, cpu, cuda or cuda:N"),
    (["train-count", "--regime", "supervised", "--real", "r", "-o", "o", "--device", "tpu"], "--device tpu: must be"),
    (["export", "-m", "m", "--opset", "1"], "--opset 1: must be"),
    (["inspect", "d", "--tiles", "0"], "--tiles 0: must be"),
]


@pytest.mark.parametrize("argv,line", REPORTED, ids=[" ".join(a[:1] + a[-2:]) for a, _ in REPORTED])
def test_an_absurd_option_is_one_line_exit_2_naming_the_bound(argv, line, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing the command might write lands in the checkout
    r = run_cli(argv, capsys)
    assert r.returncode == 2, r
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(f"error: {line}"), r.stderr
    assert not list(tmp_path.iterdir()), "a refused command wrote something"


def _image(path: Path, side: int = 48) -> Path:
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(0, 255, (side, side), dtype=np.uint8))
    return path


@pytest.mark.parametrize("diameter", ["100000", "0", "0.5"])
def test_count_refuses_a_diameter_the_model_cannot_be_resized_to(diameter, capsys, tmp_path):
    """``count --diameter 100000`` counted 32 of 175: the resize factor was clipped at 1/8 silently.
    A fixed diameter is refused unless resizing by at most 16x down / 4x up brings it into the model's
    range of nuclei; 0 is not a diameter (``off`` is)."""
    img = _image(tmp_path / "a.tif")
    r = run_cli(["count", img, "--diameter", diameter, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r
    assert r.stderr.replace("'", "").startswith(f"error: --diameter {diameter}: "), r.stderr
    assert not (tmp_path / "c.csv").exists()


def test_diameter_policy_bounds_follow_the_one_size_the_model_counts_at():
    """A fixed diameter is reachable when resizing it to the model's diameter stays within [MIN_FACTOR,
    MAX_FACTOR] (the training range no longer matters: every image goes to the one size)."""
    from cellxfer.errors import InputError
    from cellxfer.scale import MAX_FACTOR, MIN_FACTOR, DiameterPolicy

    assert DiameterPolicy.parse(str(9.0 / MIN_FACTOR), 9.0).pixels == 9.0 / MIN_FACTOR
    assert DiameterPolicy.parse(str(9.0 / MAX_FACTOR), 9.0).pixels == 9.0 / MAX_FACTOR
    for bad in (9.0 / MIN_FACTOR + 0.5, 9.0 / MAX_FACTOR - 0.1, 200.0):
        with pytest.raises(InputError, match=r"counts nuclei of 9 px .* must lie in \[2.25, 144\] px"):
            DiameterPolicy.parse(str(bad), 9.0)


def test_an_overlay_folder_that_cannot_be_written_is_an_error_before_counting(capsys, tmp_path):
    """It was a warning per image, after counting; now one line, exit 2, and nothing counted."""
    img = _image(tmp_path / "a.tif")
    (tmp_path / "blocker").write_text("a file where the overlay folder should go\n")
    for option in ("--overlay", "--points"):
        r = run_cli(["count", img, option, tmp_path / "blocker" / "ov", "-o", tmp_path / "c.csv"], capsys)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r
        assert str(tmp_path / "blocker") in r.stderr and not (tmp_path / "c.csv").exists()


# -- contracts over every registered command -----------------------------------------------------------
def _commands():
    import typer

    from cellxfer.cli import build_app

    return typer.main.get_command(build_app()).commands


def _bare(p):
    import types
    import typing

    tp = p.type_descriptor.annotation  # typer's: the parameter's annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


#: Visible options of registered commands that take any value of their type, and why.
UNBOUNDED = {
    "arch": "a registered architecture or any timm name, checked when it is built",
    "engine": "a registered engine, checked by the registry (one line naming those available)",
    "method": "a registered synthesizer or stylizer, checked by the registry",
    "scheduler": "a Dask address or local:N, checked when the executor starts",
    "diameter": "auto, off or PIXELS: cellxfer.scale.DiameterPolicy.parse, bounded by the model's reach",
    "sweep": "comma-separated layers, checked against the translator's layers once it is read",
}


def test_every_numeric_or_word_option_of_every_command_states_its_range():
    """A number or a word from a fixed set (not a path, a flag, a name the registry resolves) has a
    :class:`cellxfer.bounds.Bound`: a new command's options are held to it as soon as it is registered."""
    missing = []
    for name, command in sorted(_commands().items()):
        for p in command.params:
            if getattr(p, "hidden", False) or getattr(p.callback, "bound", None) is not None or p.name in UNBOUNDED:
                continue
            if _bare(p) in (int, float):
                missing.append(f"{name} --{p.name.replace('_', '-')}")
    assert not missing, f"options with no range (cellxfer.bounds): {missing}"


def test_every_bounded_option_shows_its_range_in_help():
    shown = 0
    for name, command in sorted(_commands().items()):
        for p in command.params:
            bound = getattr(p.callback, "bound", None)
            if bound is None or getattr(p, "hidden", False):
                continue
            text = bound.text()
            assert f"Range: {text}." in p.help or (bound.choices and all(c in p.help for c in bound.choices)), \
                f"{name} --{p.name}: help {p.help!r} does not show {text!r}"
            shown += 1
    assert shown >= 100


def test_help_shows_ranges_as_written(capsys):
    """``--help`` prints the ranges (and literal ``[default: ...]`` text) as written, not as rich markup."""
    r = run_cli(["train-count", "--help"], capsys)
    flat = " ".join(r.stdout.replace("│", " ").split())
    assert r.returncode == 0 and "Range: in (0, 100]." in flat and "Range: in [16, 8192], a multiple of 8." in flat
    r = run_cli(["count", "--help"], capsys)
    assert "[default: the shipped counter]" in " ".join(r.stdout.replace("│", " ").split())


@pytest.mark.parametrize("option", ["base=0", "depth=-1", "scale=0", "stem=0", "norm=layer"])
def test_an_architecture_option_out_of_range_is_one_line_exit_2(option, capsys, tmp_path):
    """``--arch-option base=0`` ended in a raw torch error (exit 70), ``depth=-1`` in an IndexError."""
    r = run_cli(["train-count", "--regime", "supervised", "--real", tmp_path, "-o", tmp_path / "run", "--arch", "density",
                 "--arch-option", option], capsys)
    assert r.returncode == 2 and r.stderr.splitlines() == [f"error: {r.stderr[7:].strip()}"], r
    assert r.stderr.startswith(f"error: --arch-option {option}: must be"), r.stderr


def test_every_option_of_every_registered_architecture_states_its_range():
    from cellxfer.plugins import get_registry

    missing = [f"{name} {key}" for name, arch in get_registry().provided("cellxfer_counter_architectures").items()
               for key, default in (getattr(arch, "defaults", None) or {}).items()
               if not isinstance(default, bool) and key not in (getattr(arch, "bounds", None) or {})]
    assert not missing, f"architecture options with no range: {missing}"


def test_a_usage_error_is_one_line_exit_2_naming_the_help(capsys):
    """Text where a number goes, a missing option or argument, an unknown option or command: click's message
    on one line (it printed usage, a hint and the message on four), with where the options are listed."""
    cases = [(["train-count", "--out", "x"], "Missing option '--regime'"), (["count"], "Missing argument"),
             (["count", "--bogus"], "No such option: --bogus"), (["bogus"], "No such command")]
    for name, command in sorted(_commands().items()):
        for p in command.params:
            bound = getattr(p.callback, "bound", None)
            if bound is not None and bound.numeric and not bound.pair and _bare(p) in (int, float):
                cases.append(([name, p.callback.flag, "abc"], f"Invalid value for '{p.callback.flag}'"))
    assert len(cases) > 100
    for argv, said in cases:
        r = run_cli(argv, capsys)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, (argv, r)
        assert r.stderr.startswith("error: ") and said in r.stderr and "--help`)" in r.stderr, (argv, r.stderr)
