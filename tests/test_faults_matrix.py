"""The fault-injection matrix (issue 14): every registered command that reads images or models, or
writes outputs, run on a fixed list of bad and awkward inputs.

The commands come from the plugin registry: each one's :class:`cellxfer.commands.CommandSpec` says
what it reads (and the exit code a bad item of each kind gives), what it writes and how to invoke it,
so registering a command with a spec adds it here. For every (command, role it reads, case) this
asserts: no traceback and no "unexpected" error; the documented exit code (docs/reruns.md "Exit status");
a failure names the file in one line; and nothing partial or clobbered is left (no temporaries, no
output after a refusal, an existing file never replaced).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, blobs

from cellxfer.commands import CommandSpec, Inputs, Output, Role
from cellxfer.errors import ExitCode

SIDE = 48  # tiny images: every valid case runs the whole command


def tif(array: np.ndarray, **kw) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with warnings.catch_warnings():  # a 0x0 TIFF is nonconformant: that is the point
            warnings.simplefilter("ignore")
            tifffile.imwrite(path, array, **kw)
    return write


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _good_tif_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, blobs(SIDE, SIDE, 6))
    return buf.getvalue()


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(blobs(SIDE, SIDE, 6)).save(buf, format="PNG")
    return buf.getvalue()


def _float(kind: str) -> np.ndarray:
    img = (blobs(SIDE, SIDE, 6) / 255.0).astype(np.float32)
    if kind == "nan":
        img[3:6, 4:8] = np.nan
    elif kind == "inf":
        img[3:6, 4:8] = np.inf
    elif kind == "negative":
        img = img * 2 - 1.5  # -1.5 .. 0.5
    return img


def _rgb() -> np.ndarray:
    img = blobs(SIDE, SIDE, 6)
    return np.stack([img, img // 2, img // 3], axis=-1)


def _plain_safetensors(path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": np.ones((4, 4), np.float32)}, str(path))


@dataclass(frozen=True)
class Case:
    """One fault. ``kind``: which roles it applies to (whole: the input path itself; image, points,
    model, output). ``write``: makes
    the faulty file at a path (None: the whole input is missing or empty, see ``name``). ``valid``:
    a well-formed input every command must take (exit 0); else a bad one refused with the role's code.
    ``small``: an image smaller than some commands need (a training crop): accepted, or refused with
    the role's code in one line naming it. ``options``: what the input needs on the command line (every
    image of the run is then of its kind; a command without the options: usage error 2)."""

    name: str
    kind: str
    write: Callable[[Path], None] | None = None
    valid: bool = False
    small: bool = False
    options: tuple[str, ...] = ()


IMAGE_CASES = [
    Case("missing-path", "whole"),
    Case("empty-folder", "whole"),
    Case("non-image", "image", raw(b"these are my notes, not an image\n")),
    Case("zero-byte", "image", raw(b"")),
    Case("truncated-tiff", "image", lambda p: raw(_good_tif_bytes()[:300])(p)),
    Case("png-bytes-in-tif", "image", lambda p: raw(_png_bytes())(p), valid=True),
    Case("0x0", "image", tif(np.zeros((0, 0), np.uint8))),
    Case("1x1", "image", tif(np.full((1, 1), 100, np.uint8)), small=True),
    Case("3x2000", "image", tif(blobs(3, 2000, 0)), small=True),
    Case("float32-0..1", "image", tif(_float("unit")), valid=True),
    Case("float-nan", "image", tif(_float("nan"))),
    Case("float-inf", "image", tif(_float("inf"))),
    Case("negative-float", "image", tif(_float("negative")), valid=True),
    Case("rgb", "image", tif(_rgb(), photometric="rgb")),  # (identical channels would be read as grayscale)
    Case("rgb-with-channel", "image", tif(_rgb(), photometric="rgb"), valid=True, options=("--channel", "1")),
    Case("stack", "image", tif(np.stack([blobs(SIDE, SIDE, 6)] * 3), photometric="minisblack")),
    Case("stack-with-page", "image", tif(np.stack([blobs(SIDE, SIDE, 6)] * 3), photometric="minisblack"), valid=True,
         options=("--page", "1")),
    Case("all-zero-uint16", "image", tif(np.zeros((SIDE, SIDE), np.uint16)), valid=True),
    Case("saturated-uint16", "image", tif(np.full((SIDE, SIDE), 65535, np.uint16)), valid=True),
]
POINTS_CASES = [
    Case("points-not-numbers", "points", raw(b"x,y\n5,five\n")),
    Case("points-no-xy-columns", "points", raw(b"a,b\n5,5\n")),
    Case("points-nan", "points", raw(b"x,y\nnan,5\n")),
    Case("points-missing", "points"),
]
MODEL_CASES = [
    Case("model-missing", "model"),
    Case("model-corrupt", "model", lambda p: raw(DEFAULT_MODEL.read_bytes()[:200])(p)),
    Case("model-foreign", "model", lambda p: _plain_safetensors(p)),  # no cellxfer metadata
    Case("model-folder", "model"),
]
OUTPUT_CASES = [
    Case("out-unwritable", "output"),  # its folder is a file (tests run as root: permissions do not stop root)
    Case("out-existing", "output"),
    # --out names an input (a file of it for a file output, the input folder for a folder output), with
    # --overwrite where the command has it: refused in one line, every input byte kept (issue 27)
    Case("out-is-input", "output"),
    # --out on a full disk (a 4 KB tmpfs; skipped where none can be mounted): one line naming the file being
    # written, exit 2, no temporaries; what finished before is kept for the rerun, as after Ctrl-C (issue 27)
    Case("out-disk-full", "output"),
]
CASE_KINDS = {Role.IMAGES: ("whole", "image"), Role.DATASET: ("whole", "image", "points"), Role.PAIRS: ("whole", "image"),
              Role.LAYOUT: ("whole", "points"), Role.MODEL: ("model",), Role.TRANSLATOR: ("model",)}


def specs() -> dict[str, CommandSpec]:
    from cellxfer.cli import build_app
    from cellxfer.plugins import get_registry

    build_app()
    return {n: s for n, s in sorted(get_registry().commands().items()) if s.argv is not None}


def matrix() -> list:
    rows = []
    for name, spec in specs().items():
        for role in spec.reads:
            for case in IMAGE_CASES + POINTS_CASES + MODEL_CASES:
                if case.kind in CASE_KINDS[role]:
                    rows.append(pytest.param(name, role, case, id=f"{name}-{role.value}-{case.name}"))
        if spec.writes is not None:
            for case in OUTPUT_CASES:
                if (case.name != "out-is-input" or spec.reads) and (case.name != "out-disk-full" or spec.runs_offline):
                    rows.append(pytest.param(name, None, case, id=f"{name}-{case.name}"))
    return rows


def command_options(name: str) -> set[str]:
    import typer

    from cellxfer.cli import build_app

    command = typer.main.get_command(build_app()).commands[name]
    return {o for p in command.params for o in p.opts}


# -- inputs -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def translator_and_pairs(tmp_path_factory):
    """A tiny translator trained one step on two synthetic pairs (built once for the module)."""
    from conftest import tiny_translator

    return tiny_translator(tmp_path_factory.mktemp("translator"), n_pairs=2)


def labelled(root: Path, ids=("a", "b")) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    for k, id_ in enumerate(ids):
        tifffile.imwrite(root / "images" / f"{id_}.tif", blobs(SIDE, SIDE, 6, seed=k))
        (root / "points" / f"{id_}.csv").write_text("x,y\n10,12\n30,20\n")
    return root


def build(tmp: Path, spec: CommandSpec, role: Role | None, case: Case, translator: Path, pairs: Path):
    """The :class:`Inputs` for one matrix cell, the file the failure must name, and the output path."""
    images = tmp / "images"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", blobs(SIDE, SIDE, 6))
    dataset = labelled(tmp / "dataset")
    if case.options:  # a run with --page/--channel: all its images are stacks / colour images
        case.write(images / "a.tif")
        case.write(dataset / "images" / "a.tif")
    shutil.copytree(pairs, tmp / "pairs")
    from conftest import other_counter

    inputs = dict(images=images, dataset=dataset, model=DEFAULT_MODEL, translator=translator, pairs=tmp / "pairs",
                  out=tmp / "result" / f"out{spec.out_suffix}", other_model=other_counter(DEFAULT_MODEL, tmp / "other.safetensors"))
    (tmp / "result").mkdir()
    culprit = None
    field = {Role.IMAGES: "images", Role.DATASET: "dataset", Role.LAYOUT: "dataset", Role.PAIRS: "pairs",
             Role.MODEL: "model", Role.TRANSLATOR: "translator"}.get(role)
    if case.name == "missing-path":
        culprit = inputs[field] = tmp / "no-such-folder"
    elif case.name == "empty-folder":
        culprit = inputs[field] = tmp / "empty"
        culprit.mkdir()
    elif case.kind == "image":
        if role is Role.IMAGES:
            culprit = images / "b.tif"
        elif role is Role.DATASET:
            culprit = dataset / "images" / "b.tif"
        else:  # a pair: the case as both source and target
            case.write(tmp / "pairs" / "target" / "zz.tif")
            culprit = tmp / "pairs" / "source" / "zz.tif"
        case.write(culprit)
        (dataset / "points" / "b.csv").write_text("x,y\n0.5,0.5\n")  # inside even a 1x1 image
    elif case.kind == "points":
        culprit = dataset / "points" / "b.csv"
        if case.write is None:
            culprit.unlink()
        else:
            case.write(culprit)
    elif case.kind == "model":
        culprit = tmp / "models" / f"model{'.safetensors' if case.name != 'model-folder' else ''}"
        (tmp / "models").mkdir()
        if case.write is not None:
            case.write(culprit)
        elif case.name == "model-folder":
            culprit.mkdir()
        inputs[field] = culprit
    elif case.name == "out-unwritable":  # the error must name the file in the way
        culprit = tmp / "blocker"
        culprit.write_text("a file where a folder is needed\n")
        inputs["out"] = culprit / inputs["out"].name
    elif case.name == "out-is-input":
        culprit = inputs["out"] = _an_input(tmp, spec, inputs)
    elif case.name == "out-disk-full":
        culprit = tmp / "full"
        inputs["out"] = culprit / inputs["out"].name
    elif case.name == "out-existing":
        culprit = inputs["out"]
        if spec.writes is Output.FOLDER:
            culprit.mkdir()
            (culprit / "precious.txt").write_text("precious\n")
        else:
            culprit.write_text("precious\n")
    return Inputs(**inputs), culprit


def _an_input(tmp: Path, spec: CommandSpec, inputs: dict) -> Path:
    """What ``--out`` names in the out-is-input case: for a file output a file the command reads (a copy
    of the model, so the shipped one is never at risk), for a folder output the folder it reads."""
    role = next(iter(spec.reads))
    if role in (Role.MODEL, Role.TRANSLATOR):
        field = "model" if role is Role.MODEL else "translator"
        copy = tmp / "models" / Path(inputs[field]).name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(inputs[field], copy)
        inputs[field] = copy
        return copy
    folder = {Role.IMAGES: "images", Role.DATASET: "dataset", Role.LAYOUT: "dataset", Role.PAIRS: "pairs"}[role]
    if spec.writes is Output.FOLDER:
        return inputs[folder]
    return min(p for p in Path(inputs[folder]).rglob("*") if p.is_file())


def _full_disk(where: Path, request) -> None:
    """Mount a 4 KB tmpfs at ``where`` for this test (unmounted after it), or skip where that is not possible."""
    from conftest import small_disk

    small_disk(where, "4k", request)


def _snapshot(tmp: Path) -> dict:
    """Every file under ``tmp`` but the result folder and caches -> its bytes."""
    return {p: p.read_bytes() for p in tmp.rglob("*") if p.is_file()
            and not {"result", "cache"} & set(p.relative_to(tmp).parts)}


def expected_exit(spec: CommandSpec, role: Role | None, case: Case, options: set[str]) -> set[int]:
    if case.options and not set(case.options[::2]) <= options:
        return {ExitCode.BAD_INPUT}  # click: no such option
    if case.kind == "output":
        # an existing folder output may hold other files (kept); an existing file is never replaced; a tiny
        # output may fit even the full disk
        return {ExitCode.OK, ExitCode.BAD_INPUT} if (case.name == "out-existing" and spec.writes is Output.FOLDER
                                                     or case.name == "out-disk-full") else {ExitCode.BAD_INPUT}
    if case.name in ("missing-path", "empty-folder") or case.kind == "model":
        return {ExitCode.BAD_INPUT}
    if case.valid:
        return {ExitCode.OK}
    if case.small:
        return {ExitCode.OK, spec.reads[role]}
    return {spec.reads[role]}


# -- the matrix ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,role,case", matrix())
def test_fault(name, role, case, tmp_path, capsys, monkeypatch, translator_and_pairs, request):
    spec = specs()[name]
    options = command_options(name)
    want = expected_exit(spec, role, case, options)
    if not spec.runs_offline and ExitCode.OK in want:
        pytest.skip(f"{name} cannot finish offline (needs weights cellxfer does not ship)")
    monkeypatch.setenv("CELLXFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    inputs, culprit = build(tmp_path, spec, role, case, *translator_and_pairs)
    if case.name == "out-disk-full":
        _full_disk(culprit, request)
    before = culprit.read_bytes() if case.name == "out-existing" and culprit.is_file() else None
    extra = ["--overwrite"] if case.name == "out-is-input" and "--overwrite" in options else []
    snapshot = _snapshot(tmp_path) if case.name == "out-is-input" else None
    r = run_cli([*spec.argv(inputs), *case.options, *extra], capsys)
    said = r.stdout + r.stderr
    assert "Traceback" not in said and "unexpected" not in said, said
    assert r.returncode in want, f"exit {r.returncode}, want {sorted(want)}\n{said}"
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    if r.returncode == ExitCode.BAD_INPUT and case.options and not set(case.options[::2]) <= options:
        assert "No such option" in r.stderr
    elif r.returncode == ExitCode.BAD_INPUT:
        assert len(errors) == 1 and str(culprit) in errors[0], r.stderr
        if case.name == "out-disk-full":
            assert "no space left on the device writing it" in errors[0], r.stderr
    elif r.returncode == ExitCode.SOME_INPUTS_FAILED:
        failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed ")]
        assert len(failed) == 1 and (str(culprit) in failed[0] or f"failed {culprit.stem}:" in failed[0]), r.stderr
    # nothing partial, nothing clobbered
    assert not list(tmp_path.rglob("*.cellxfer-tmp*")), list(tmp_path.rglob("*.cellxfer-tmp*"))
    if snapshot is not None:
        assert _snapshot(tmp_path) == snapshot, "an input was changed"
    if case.name == "out-existing":
        if before is not None:
            assert culprit.read_bytes() == before
        else:
            assert (culprit / "precious.txt").read_text() == "precious\n"
    elif r.returncode == ExitCode.BAD_INPUT and spec.writes is not None and case.name not in ("out-is-input",
                                                                                              "out-disk-full"):
        left = [inputs.out] if inputs.out.is_file() else list(inputs.out.rglob("*")) if inputs.out.is_dir() else []
        assert not left, f"a refused run left {left}"
    elif r.returncode == ExitCode.SOME_INPUTS_FAILED:  # the others' results are there, the culprit's not
        assert inputs.out.exists()
        if inputs.out.is_dir():
            assert not [p for p in inputs.out.rglob("*") if p.stem == culprit.stem], list(inputs.out.rglob("*"))
        elif inputs.out.suffix == ".csv":  # count: the culprit's row says why
            import csv

            with open(inputs.out, newline="") as f:
                (row,) = [row for row in csv.DictReader(f) if Path(row["file"]) == culprit]
            assert row["status"] == "failed" and row["count"] == "" and str(culprit) in row["error"]
    elif r.returncode == ExitCode.OK:
        assert inputs.out.exists()


def test_matrix_covers_every_command_that_reads_or_writes():
    """Registering a command with a spec that reads or writes adds its rows (commands without argv
    must neither read nor write: test_exit_codes checks that)."""
    names = {p.values[0] for p in matrix()}
    assert names == {n for n, s in specs().items() if s.reads or s.writes}
    assert {"count", "evaluate", "translate", "stylize", "train-count", "export", "ensemble", "inspect"} <= names
