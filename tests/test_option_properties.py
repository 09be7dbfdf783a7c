"""Property-based tests of option ranges (issue 27), over everything registered.

For every typed config a registered command builds (found through the options that set its fields:
:func:`cellxfer.options.config_option`) and every synthesizer's and stylizer's config, Hypothesis draws
values for every bounded field (:mod:`cellxfer.bounds`): a value outside the range is refused with
:class:`cellxfer.bounds.OutOfRange` naming the option, a value inside is accepted or refused for a
documented relation between fields (also OutOfRange, one line), never another exception. On the
command line, every bounded option of every registered command is drawn out of range (one line, exit 2,
no traceback), and a small sample in range runs each command on tiny inputs (exit 0/1/2, a refusal one
line, never "unexpected"). New commands and configs are drawn as soon as they are registered.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_inproc import run_cli

from cellxfer.bounds import KEY, Bound, OutOfRange, option_name

BIG = 10**6  # the stand-in upper end of a range open above


# -- what is registered ---------------------------------------------------------------------------------
def _commands():
    import typer

    from cellxfer.cli import build_app

    return typer.main.get_command(build_app()).commands


def bounded_params() -> list[tuple[str, object]]:
    """(command, click parameter) of every visible option with a range, of every registered command."""
    return [(name, p) for name, c in sorted(_commands().items()) for p in c.params
            if getattr(p.callback, "bound", None) is not None and not getattr(p, "hidden", False)]


def configs() -> list[type]:
    from cellxfer.plugins import get_registry

    classes = {p.callback.config_cls for _, p in bounded_params() if p.callback.config_cls is not None}
    registry = get_registry()
    classes |= {s.config_cls for s in registry.synthesizers().values()}
    classes |= {s.config_cls for s in registry.stylizers().values()}
    return sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _field_type(cls: type, name: str):
    tp = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) and len(args) == 1:
        tp = args[0]
    return tp


def _scalar(tp) -> type:
    """int or float: a pair's element type, or the field's."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp


def _base(cls: type) -> dict:
    """Values for the fields without a default (and the words InST needs), so ``cls(**base)`` is valid."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            tp = _field_type(cls, f.name)
            out[f.name] = ("x",) if typing.get_origin(tp) is tuple else Path("x") if tp is Path else "x"
    try:
        cls(**out)
    except OutOfRange:  # required words with an empty default (InST's token, model, clip)
        out.update({f.name: "x" for f in dataclasses.fields(cls) if f.default == ""})
    return out


# -- drawing values from a Bound ----------------------------------------------------------------------
def _low_high(b: Bound, integer: bool) -> tuple[float, float]:
    lo = b.ge if b.ge is not None else (b.gt + (1 if integer else 0)) if b.gt is not None else -BIG
    hi = b.le if b.le is not None else (b.lt - (1 if integer else 0)) if b.lt is not None else BIG
    return lo, hi


def inside_number(b: Bound, integer: bool, cheap: bool = False) -> st.SearchStrategy:
    lo, hi = _low_high(b, integer)
    if cheap:  # the cheap end of the range: near its low end, never a huge size, count or epoch number
        hi = min(hi, max(lo, 0) + (3 * max(1, b.multiple_of or 1) if integer or b.multiple_of else 2))
    if integer or b.multiple_of:
        m = max(1, b.multiple_of or 1)
        return st.integers(math.ceil(lo / m), math.floor(hi / m)).map(lambda k: k * m)
    return st.floats(lo, hi, exclude_min=b.gt is not None and b.ge is None, exclude_max=b.lt is not None and b.le is None,
                     allow_nan=False, allow_infinity=False)


def inside(b: Bound, tp, cheap: bool = False) -> st.SearchStrategy:
    if b.choices:
        return st.sampled_from(b.choices)
    if b.pattern:
        return st.from_regex(b.pattern, fullmatch=True)
    integer = _scalar(tp) is int
    if b.pair:
        one = inside_number(b, integer, cheap)
        return st.tuples(one, one).map(sorted).map(tuple).filter(lambda v: b.equal_ok or v[0] < v[1])
    return inside_number(b, integer, cheap)


def outside_number(b: Bound, integer: bool, words: bool) -> st.SearchStrategy:
    lo, hi = _low_high(b, integer)
    options = []
    if lo > -BIG:
        options.append(st.integers(int(lo) - BIG, math.ceil(lo) - 1) if integer else
                       st.floats(max_value=lo, exclude_max=b.ge is not None, allow_nan=False, allow_infinity=False,
                                 min_value=lo - BIG))
    if hi < BIG:
        options.append(st.integers(math.floor(hi) + 1, int(hi) + BIG) if integer else
                       st.floats(min_value=hi, exclude_min=b.le is not None, allow_nan=False, allow_infinity=False,
                                 max_value=hi + BIG))
    if b.multiple_of and b.multiple_of > 1:
        m = b.multiple_of
        options.append(st.integers(math.ceil(lo / m), math.floor(hi / m) - 1).map(lambda k: k * m + m // 2))
    if not integer:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(options)


def outside(b: Bound, tp) -> st.SearchStrategy:
    if b.choices or b.pattern:
        word = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789:_."), min_size=1, max_size=8)
        return word.filter(lambda w: b.problem(w) is not None)
    integer = _scalar(tp) is int
    if b.pair:
        one_in = inside_number(b, integer)
        reversed_ = st.tuples(one_in, one_in).filter(lambda v: v[0] > v[1] or (not b.equal_ok and v[0] == v[1]))
        return st.one_of(reversed_, st.tuples(outside_number(b, integer, False), one_in).map(tuple))
    return outside_number(b, integer, False)


def bounded_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if KEY in f.metadata]


# -- the configs ------------------------------------------------------------------------------------------
CONFIGS = configs()


def test_the_registered_configs_are_found_and_every_number_in_them_has_a_range():
    names = {c.__name__ for c in CONFIGS}
    assert {"TrainConfig", "CountConfig", "SynHCConfig", "NucleiConfig", "FDAConfig", "ExportConfig"} <= names, names
    missing = [f"{c.__name__}.{f.name}" for c in CONFIGS for f in dataclasses.fields(c)
               if KEY not in f.metadata and _scalar(_field_type(c, f.name)) in (int, float)]
    assert not missing, f"numeric config fields with no range (cellxfer.bounds.ranged): {missing}"


def test_every_default_is_within_its_range():
    for cls in CONFIGS:
        cls(**_base(cls))


@pytest.mark.parametrize("cls", CONFIGS, ids=[c.__name__ for c in CONFIGS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_config_refuses_every_value_out_of_range_and_takes_every_value_in_it(cls, data):
    fields = bounded_fields(cls)
    f = data.draw(st.sampled_from(fields), label="field")
    bound, tp = f.metadata[KEY], _field_type(cls, f.name)
    base = _base(cls)
    bad = data.draw(outside(bound, tp), label="out of range")
    with pytest.raises(OutOfRange) as exc:
        cls(**{**base, f.name: bad})
    assert str(exc.value).startswith(option_name(f.name, bound) + " "), str(exc.value)
    assert "\n" not in str(exc.value)
    good = data.draw(inside(bound, tp), label="in range")
    try:
        cls(**{**base, f.name: good})
    except OutOfRange as relation:  # a documented relation between fields (LOW below HIGH, cell within image)
        assert bound.problem(good) is None and "\n" not in str(relation)


# -- the command line ------------------------------------------------------------------------------------
PARAMS = bounded_params()


def _flag(p) -> str:
    return p.callback.flag


def _text(value) -> str:
    if isinstance(value, tuple):
        return ":".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)


def _param_type(p):
    tp = p.type_descriptor.annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args and typing.get_origin(tp) is not tuple else tp


@pytest.mark.parametrize("command,param", PARAMS, ids=[f"{c} {_flag(p)}" for c, p in PARAMS])
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_option_out_of_range_is_one_line_exit_2(command, param, data, capsys):
    bound = param.callback.bound
    tp = _param_type(param)
    if bound.pair and tp is str:  # LOW:HIGH text, parsed in the command: the config test covers it
        return
    value = data.draw(outside(bound, tp if tp in (int, float) else str), label="value")
    r = run_cli([command, _flag(param), _text(value)], capsys)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"error: {_flag(param)} ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout


# -- in range, on real (tiny) inputs -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Tiny inputs for every role a command reads (the fault matrix's, smaller): images, a labelled
    dataset, the shipped counter, a translator trained one step on two pairs."""
    from cellxfer.commands import Inputs
    from cellxfer.engines.base import default_model

    root = tmp_path_factory.mktemp("ranges")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    ds = root / "dataset"
    (ds / "images").mkdir(parents=True)
    (ds / "points").mkdir()
    for k in range(2):
        img = rng.integers(0, 40, (48, 48)).astype(np.uint8)
        img[10:14, 10:14] = img[30:34, 20:24] = 220
        tifffile.imwrite(root / "images" / f"{k}.tif", img)
        tifffile.imwrite(ds / "images" / f"{k}.tif", img)
        (ds / "points" / f"{k}.csv").write_text("x,y\n12,12\n22,32\n")
    from conftest import tiny_translator

    from conftest import other_counter

    translator, pairs = tiny_translator(root, n_pairs=2)
    return Inputs(images=root / "images", dataset=ds, model=default_model(), translator=translator,
                  pairs=pairs, out=root / "out", other_model=other_counter(default_model(), root / "other.safetensors"))


#: options whose in-range values are not drawn on the command line, and why (the config test draws them)
NOT_RUN = {"device": "cuda needs a GPU: refused as one line where there is none (tests/test_exit_codes.py)",
           "threads": "torch's thread count is process-wide; drawn in the config test only"}


def _runnable() -> dict[str, list]:
    from cellxfer.plugins import get_registry

    specs = get_registry().commands()
    out = {}
    for command, p in PARAMS:
        spec = specs.get(command)
        if spec is None or spec.argv is None or not spec.runs_offline or p.name in NOT_RUN:
            continue
        if p.callback.bound.pair and _param_type(p) is str:
            continue
        out.setdefault(command, []).append(p)
    return out


RUNNABLE = _runnable()


@pytest.mark.parametrize("command", sorted(RUNNABLE))
@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_an_option_in_range_runs_or_is_refused_in_one_line(command, data, inputs, capsys, tmp_path_factory):
    from dataclasses import replace

    from cellxfer.plugins import get_registry

    param = data.draw(st.sampled_from(RUNNABLE[command]), label="option")
    value = data.draw(inside(param.callback.bound, _param_type(param), cheap=True), label="value")
    spec = get_registry().commands()[command]
    out = tmp_path_factory.mktemp("out") / f"out{spec.out_suffix}"
    argv = [*spec.argv(replace(inputs, out=out)), _flag(param), _text(value)]
    r = run_cli(argv, capsys)
    assert r.returncode in (0, 1, 2), r
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr + r.stdout, r.stderr
    if r.returncode == 2:
        assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr
