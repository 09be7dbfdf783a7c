"""What values each field of a typed config takes: one mechanism for every option of every command.

A config field states its range in its dataclass metadata with :func:`ranged`::

    sigma: float = ranged(3.0, gt=0)                    # --sigma -1  ->  error: --sigma -1: must be > 0
    crop: int = ranged(256, ge=32, multiple_of=32)
    norm: str = ranged("batch", choices=("batch", "instance"))

and the config's ``__post_init__`` calls :func:`check_fields`, which raises :class:`OutOfRange` (an
:class:`InputError`: exit 2, one line naming the option, the value and the bound) for the first field out of
its range. Relations between fields (``--overlap`` at most half of ``--tile``, LOW below HIGH) are checked
in ``__post_init__`` after it, the same way. :func:`cellxfer.options.config_option` makes the option of a
field: its ``--help`` shows the bound (:func:`help_text`) and the value is checked as the command line is
read; an option that sets no field (``--seed``, ``--limit``, how many images) states its :class:`Bound` where
it is declared (:func:`cellxfer.options.bounded_option`), and an architecture's ``--arch-option`` keys in its
``bounds``. tests/test_option_properties.py draws values for all of them (Hypothesis).

Numbers are checked to be finite (``nan`` and ``inf`` are out of every numeric range); ``None`` is always
allowed for a field whose default is ``None`` (it means "not given": the documented default applies).
A field without a bound takes any value of its type (paths, names resolved later, such as ``--arch``).
numpy-free, so the CLI reads the bounds at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from cellxfer.errors import InputError

#: the metadata key of a field's :class:`Bound`
KEY = "bound"


class OutOfRange(InputError, ValueError):
    """An option outside its range (exit 2, one line). Also a ValueError, as a dataclass's checks were."""


@dataclass(frozen=True)
class Bound:
    """The values a config field takes. Numbers: ``ge``/``gt``/``le``/``lt`` and ``multiple_of``; words:
    ``choices``, or ``pattern`` (a regular expression the whole text matches, read as ``pattern_text``);
    ``pair``: the value is ``(low, high)``, each within the numeric bounds, ``low < high`` (``<=`` with
    ``equal_ok``).
    ``option``: the option that sets the field when it is not ``--<field-name>``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_text: str = ""
    pair: bool = False
    equal_ok: bool = False
    option: str | None = None

    @property
    def numeric(self) -> bool:
        return any(v is not None for v in (self.ge, self.gt, self.le, self.lt, self.multiple_of))

    def text(self) -> str:
        """The range as ``--help`` and errors show it: ``> 0``, ``in [0, 1)``, ``one of a, b``, ..."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern:
            return self.pattern_text or f"matching {self.pattern}"
        low = (f"{_g(self.ge)}" if self.ge is not None else f"{_g(self.gt)}" if self.gt is not None else None)
        high = (f"{_g(self.le)}" if self.le is not None else f"{_g(self.lt)}" if self.lt is not None else None)
        if low is not None and high is not None:
            rng = f"in {'[' if self.ge is not None else '('}{low}, {high}{']' if self.le is not None else ')'}"
        elif low is not None:
            rng = f"{'>=' if self.ge is not None else '>'} {low}"
        elif high is not None:
            rng = f"{'<=' if self.le is not None else '<'} {high}"
        else:
            rng = "a whole number" if self.multiple_of else ""
        if self.multiple_of and self.multiple_of > 1:
            rng += f", a multiple of {self.multiple_of}"
        if self.pair:
            return f"LOW:HIGH, each {rng}, LOW {'<=' if self.equal_ok else '<'} HIGH"
        return rng

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range (``must be > 0``), or None when it is in range."""
        if self.pair:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                return f"must be {self.text()}"
            if any(self._number_problem(v) for v in value) or not (
                    value[0] <= value[1] if self.equal_ok else value[0] < value[1]):
                return f"must be {self.text()}"
            return None
        if self.choices:
            return None if value in self.choices else f"must be {self.text()}"
        if self.pattern:
            return None if isinstance(value, str) and re.fullmatch(self.pattern, value) else f"must be {self.text()}"
        return self._number_problem(value)

    def _number_problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, {self.text()}"
        ok = math.isfinite(value) and all((
            self.ge is None or value >= self.ge, self.gt is None or value > self.gt,
            self.le is None or value <= self.le, self.lt is None or value < self.lt,
            not self.multiple_of or float(value) % self.multiple_of == 0,
        ))
        return None if ok else f"must be {self.text()}"


def _g(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 or x != int(x) else str(int(x))


def ranged(default: Any = dataclasses.MISSING, **bound) -> Any:
    """A dataclass field with ``default`` whose values are limited by ``Bound(**bound)``."""
    return dataclasses.field(default=default, metadata={KEY: Bound(**bound)})


def bound_of(config_cls: type, name: str) -> Bound | None:
    """The :class:`Bound` of field ``name`` of the dataclass ``config_cls`` (None: no bound)."""
    field = config_cls.__dataclass_fields__.get(name)
    return None if field is None else field.metadata.get(KEY)


def option_name(field_name: str, bound: Bound | None = None) -> str:
    return (bound.option if bound is not None and bound.option else None) or "--" + field_name.replace("_", "-")


def shown(value: Any) -> str:
    """A value as the user typed it: ``50:50`` for a pair, ``-1`` for a number."""
    if isinstance(value, (tuple, list)):
        return ":".join(shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_fields(config: Any) -> None:
    """Raise :class:`OutOfRange` (``--sigma -1: must be > 0``) for the first field of the dataclass
    instance ``config`` whose value is out of its :class:`Bound`."""
    for field in dataclasses.fields(config):
        bound = field.metadata.get(KEY)
        value = getattr(config, field.name)
        if bound is None or (value is None and field.default is None):
            continue
        why = bound.problem(value)
        if why:
            raise OutOfRange(f"{option_name(field.name, bound)} {shown(value)}: {why}")


def help_text(config_cls: type, name: str, help: str) -> str:
    """``help`` with the range of field ``name`` appended (``Range: > 0.``) unless it says it already."""
    bound = bound_of(config_cls, name)
    if bound is None:
        return help
    if bound.choices and all(c in help for c in bound.choices):
        return help
    return f"{help} Range: {bound.text()}."


# -- bounds several configs share (the option vocabulary's, cellxfer.options) ----------------------------
#: ``--device``: auto, cpu, cuda or cuda:N
DEVICE = dict(pattern=r"auto|cpu|cuda(:\d+)?", pattern_text="auto, cpu, cuda or cuda:N")
#: ``--seed``: numpy's and torch's generators take 0 .. 2**32 - 1
SEED = dict(ge=0, le=2**32 - 1, multiple_of=1)
#: ``--workers``: 0 = one per core
WORKERS = dict(ge=0, le=1024, multiple_of=1)
#: ``--threads``: at least one (None: one per core)
THREADS = dict(ge=1, le=1024, multiple_of=1)
#: ``--batch-size``
BATCH = dict(ge=1, le=4096, multiple_of=1)
#: a learning rate
LR = dict(gt=0, le=10)
#: a count of steps or epochs that trains something: at least one (0 would write an untrained model)
STEPS = dict(ge=1, le=10**7, multiple_of=1)
#: ``--page`` / ``--channel`` / ``--level``: an index
INDEX = dict(ge=0, le=10**6, multiple_of=1)
#: percentiles LOW:HIGH of an intensity normalisation
PERCENTILES = dict(ge=0, le=100, pair=True)
