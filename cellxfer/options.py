"""Typed configs from command-line text: ``--set KEY=VALUE`` pairs and per-field options.

Every stage's parameters are a frozen dataclass; :func:`make_config` builds one from its defaults plus
the values the user gave, parsing strings by the field's type, and rejects unknown names with the
list of known ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from cellxfer.errors import InputError


def parse_value(tp, text: str, name: str):
    """CLI text -> a field's type: int, float, str, bool, ``tuple[a, b]`` as ``a:b``, ``X | None``
    (``none`` for None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", ""):
            return None
        return parse_value(args[0], text, name)
    try:
        if origin is tuple:
            args = typing.get_args(tp)
            parts = text.split(":")
            if len(parts) != len(args):
                raise ValueError
            return tuple(parse_value(a, p, name) for a, p in zip(args, parts))
        if tp is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        return tp(text)
    except (ValueError, TypeError):
        want = ":".join(a.__name__ for a in typing.get_args(tp)) if origin is tuple else getattr(tp, "__name__", str(tp))
        raise InputError(f"--{name.replace('_', '-')} {text!r}: expected {want}") from None


def parse_sets(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` (repeated ``--set``) -> ``{"key": "value"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def make_config(config_cls: type, values: dict[str, Any], owner: str):
    """``config_cls`` from its defaults overridden by ``values`` (strings parsed by field type).

    ``owner`` names what the parameters belong to in messages, e.g. ``"synthesizer 'synhc'"``.
    Unknown names and invalid values raise :class:`InputError`.
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    kwargs = {}
    for key, val in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise InputError(
                f"--{key.replace('_', '-')} is not a parameter of {owner} "
                f"(its parameters: {', '.join(sorted(f.replace('_', '-') for f in fields))})"
            )
        kwargs[key] = parse_value(hints[key], val, key) if isinstance(val, str) and hints[key] is not str else val
    try:
        return config_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{owner}: {exc}") from None


#: ``--precision`` everywhere: auto (fp16 where it is safe and fast: CUDA/TensorRT; fp32 elsewhere), fp16, fp32.
PRECISIONS = ("auto", "fp16", "fp32")


def check_precision(value: str) -> str:
    if value not in PRECISIONS:
        raise InputError(f"--precision {value!r}: expected auto, fp16 or fp32")
    return value


def trt_fp16(precision: str, fp32: bool = False) -> bool:
    """Whether a TensorRT engine is built in fp16: ``--precision auto`` or ``fp16`` (fp32 when ``fp32``,
    the deprecated ``--fp32``, is given)."""
    return check_precision(precision) != "fp32" and not fp32


def deprecated_flag(old: str, instead: str):
    """A hidden boolean option kept for one release under an old spelling (``old``, e.g. ``--fresh``):
    the command still accepts it, ``--help`` no longer shows it, and using it prints one line saying
    what to write ``instead``. The command reads its value as before."""
    return deprecated_option(old, instead, False)


def deprecated_option(old: str, instead: str, default=None):
    """Like :func:`deprecated_flag` for an option that takes a value (``default``: not given)."""
    import typer

    def notice(value):
        if value is not None and value is not False:
            from cellxfer.console import warn

            warn(f"{old} is deprecated and goes in the next release: {instead}")
        return value

    return typer.Option(default, old, hidden=True, callback=notice, help=f"Deprecated: {instead}")


# -- the option vocabulary ----------------------------------------------------------------------------
# An option that several commands share is declared here once: its flags, its default and what it
# means (docs/guide/index.md: the common options). A command may add to the help what the option does
# in it, never another name, short flag or default (tests/test_option_vocabulary.py checks every
# registered command). Options a typed config owns take the config's default (:func:`config_option`).

#: ``--overwrite`` of every command that writes a run folder (cellxfer.runs.RunFolder).
RUN_OVERWRITE = "Start again, replacing the run in --out (a rerun with the same settings continues it)."


def _option(default, *flags: str, **kw):
    import typer

    return typer.Option(default, *flags, **kw)


def bound_check(bound, flag: str, config_cls: type | None = None, field: str | None = None):
    """The callback of an option with a range (:class:`cellxfer.bounds.Bound`): a value outside it is
    refused as the command line is read (exit 2, one line: ``--sigma -1: must be > 0``). ``config_cls``
    and ``field``: the config field the option sets, whose ``__post_init__`` checks the same bound again
    (None for an option that sets no field). The callback carries them as attributes (typer's wrapper
    copies them), so tests find every bounded option of every registered command."""
    from cellxfer.bounds import OutOfRange, shown

    def check(value):
        if value is None or (bound.pair and isinstance(value, str)):  # LOW:HIGH text: checked once parsed
            return value
        for item in (value if isinstance(value, (list, tuple)) and not bound.pair else [value]):
            why = bound.problem(item)
            if why:
                raise OutOfRange(f"{flag} {shown(item)}: {why}")
        return value

    check.bound, check.flag, check.config_cls, check.field = bound, flag, config_cls, field
    return check


def _flag(flags: tuple[str, ...], name: str) -> str:
    long = [f.split("/")[0] for f in flags if f.startswith("--")]
    return long[0] if long else "--" + name.replace("_", "-")


def config_option(config_cls: type, name: str, help: str = "", *flags: str, default=dataclasses.MISSING):
    """An option for the field ``name`` of the dataclass ``config_cls``, its default the field's: the
    default lives in the typed config only (``default``: a command's own, e.g. adapt-count's). ``flags``
    as typer takes them (``"--flips/--no-flips"``). The field's range (:mod:`cellxfer.bounds`) is shown in
    the help and checked as the option is read."""
    from cellxfer.bounds import bound_of, help_text

    field = config_cls.__dataclass_fields__[name]
    if default is dataclasses.MISSING:
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if isinstance(default, tuple):
        default = list(default)  # typer's repeatable options hold lists
    bound = bound_of(config_cls, name)
    check = bound_check(bound, _flag(flags, name), config_cls, name) if bound is not None else None
    return _option(default, *flags, help=help_text(config_cls, name, help), callback=check)


def bounded_option(default, *flags: str, help: str, show_default: bool = True, **bound):
    """An option that sets no config field (how many images, ``--seed``, ``--limit``), with its range
    stated here, in the same terms as a field's (:class:`cellxfer.bounds.Bound`): shown in the help and
    checked as the option is read."""
    from cellxfer.bounds import Bound

    b = Bound(**bound)
    shown_help = help if b.choices and all(c in help for c in b.choices) else f"{help} Range: {b.text()}."
    return _option(default, *flags, help=shown_help, show_default=show_default,
                   callback=bound_check(b, _flag(flags, "")))


def out_option(help: str, default=...):
    return _option(default, "--out", "-o", help=help)


def overwrite_option(help: str = RUN_OVERWRITE):
    return _option(False, "--overwrite", help=help)


def seed_option(help: str = "Random seed: the same seed gives the same output (on the CPU)."):
    from cellxfer.bounds import SEED

    return bounded_option(0, "--seed", help=help, **SEED)


def device_option(help: str = "auto (cuda when there is one), cpu, cuda, cuda:1, ..."):
    from cellxfer.bounds import DEVICE

    return bounded_option("auto", "--device", help=help, **DEVICE)


def precision_option(help: str = "auto (fp16 where it is safe and fast: CUDA, TensorRT), fp16 or fp32."):
    return bounded_option("auto", "--precision", help=help, choices=PRECISIONS)


def engine_option(help: str = "auto (trt, onnx on CUDA, onnx on CPU, torch), torch (the reference), onnx or trt."):
    return _option("auto", "--engine", "-e", help=help)


def threads_option(help: str = "Torch / inference threads [default: one per core]."):
    from cellxfer.bounds import THREADS

    return bounded_option(None, "--threads", help=help, show_default=False, **THREADS)


def workers_option(help: str = "Worker processes (0 = one per core)."):
    from cellxfer.bounds import WORKERS

    return bounded_option(0, "--workers", help=help, **WORKERS)


def scheduler_option(help: str = "Dask scheduler ADDRESS (tcp://host:8786) or local:N (the dask extra) [default: this machine]."):
    return _option(None, "--scheduler", help=help, show_default=False)


def input_norm_option(help: str = "Input normalisation percentiles LOW:HIGH.", default: str = "0.5:99.5"):
    return _option(default, "--input-norm", help=help)


def set_option(help: str = "Any other parameter, KEY=VALUE (repeatable)."):
    return _option([], "--set", help=help)
