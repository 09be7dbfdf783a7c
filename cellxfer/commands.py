"""What cellxfer knows of each command beyond its typer signature: one :class:`CommandSpec` per command,
returned by the ``cellxfer_commands`` hook of the plugin that registers the command, next to it.

A spec says what a Ctrl-C leaves behind and how to resume (the CLI prints it), what the command reads
and what a bad item of each kind makes it exit with (:class:`cellxfer.errors.ExitCode`), what it
writes, and how to invoke it on given inputs (:attr:`CommandSpec.argv`). The contract tests run every
registered command's spec through the fault-injection suite (``tests/test_faults_matrix.py``), so a new
command is tested as soon as it is registered with a spec, and a command without one fails them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Mapping

from cellxfer.errors import ExitCode


class Role(str, Enum):
    """A kind of input a command reads."""

    IMAGES = "images"  # image files or folders of images, each read on its own
    DATASET = "dataset"  # a labelled cell dataset folder: images/<id>.tif + points/<id>.csv
    LAYOUT = "layout"  # a labelled cell dataset of which only the points and the image sizes are read
    MODEL = "model"  # a counter checkpoint (.safetensors from train-count)
    TRANSLATOR = "translator"  # a translator (.safetensors from train-translate / adapt)
    PAIRS = "pairs"  # a paired folder: source/<id>.tif + target/<id>.tif


class Output(str, Enum):
    """What a command's output path names."""

    FILE = "file"
    FOLDER = "folder"


@dataclass(frozen=True)
class Inputs:
    """The paths one invocation of a command is built from (:attr:`CommandSpec.argv`)."""

    images: Path
    dataset: Path
    model: Path
    translator: Path
    pairs: Path
    out: Path
    #: a second counter, another file than ``model``, for a command that reads two (``ensemble``)
    other_model: Path | None = None


@dataclass(frozen=True)
class CommandSpec:
    """One command's contract.

    ``interrupted``: one line printed after ``interrupted:`` on Ctrl-C (exit 130): what is saved and how
    to resume. ``reads``: each kind of input the command reads -> the exit code when one item of it is
    bad (``SOME_INPUTS_FAILED`` where the batch goes on past it, ``BAD_INPUT`` where the whole run is
    refused); a missing or empty input is always ``BAD_INPUT``. ``writes``: what ``--out`` names (None:
    nothing). ``argv``: the command line (without ``cellxfer``) that runs the command on
    :class:`Inputs`, quickly: small settings, the inputs' roles in ``reads`` used, the rest of
    :class:`Inputs` ignored; options an input needs (``--page 1``) can be appended to it. ``runs_offline``: False when the command cannot finish on such inputs
    because it needs weights cellxfer does not ship (learn-style's Stable Diffusion): then only its
    refusals of bad input are checked. ``out_suffix``: the suffix an output file needs (``.csv``).
    ``extra``: the pip extra the command needs (a key of :data:`cellxfer.extras.EXTRAS`; empty: the core install
    runs it); the CLI checks it before the command runs."""

    name: str
    interrupted: str
    reads: Mapping[Role, ExitCode] = field(default_factory=dict)
    writes: Output | None = None
    argv: Callable[[Inputs], list] | None = None
    runs_offline: bool = True
    out_suffix: str = ""
    extra: str = ""
