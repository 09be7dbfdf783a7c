"""Second fault hunt from a biologist's and an imaging ML researcher's side (session s9c): each test is an
input that once gave a traceback, a mangled message, a lost result or a silently wrong number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import one_line


def _field(folder: Path, names=("z0", "dapi"), shape=(120, 120)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 60000, shape, dtype=np.uint16))
        paths.append(folder / f"{name}.tif")
    return paths


SPLIT = ["--test-side", "32", "--margin", "4"]


def test_split_field_refuses_the_target_as_a_source_by_any_name(tmp_path, capsys, monkeypatch):
    """``split-field dapi.tif --target dapi.tif`` stopped with "unexpected KeyError: 'train'" (exit 70); given
    under another name (./dapi.tif and its absolute path) the target was split as its own input."""
    z0, dapi = _field(tmp_path / "f")
    monkeypatch.chdir(tmp_path)
    for source in (dapi, Path("f") / "dapi.tif"):
        r = run_cli(["split-field", z0, source, "--target", dapi, "-o", tmp_path / "out", *SPLIT], capsys)
        assert r.returncode == 2, r.stderr
        assert f"{source}: is the --target itself" in one_line(r.stderr)
    assert not (tmp_path / "out").exists()
    r = run_cli(["split-field", dapi, "--target", dapi, "-o", tmp_path / "out", *SPLIT], capsys)
    assert r.returncode == 2 and "is the --target itself" in one_line(r.stderr)


def test_split_field_folder_holding_the_target_splits_the_other_images(tmp_path, capsys):
    """A folder of z-slices that also holds the target (the ISL layout) gives its other images as sources,
    whatever name the target is given by."""
    _field(tmp_path / "f", names=("z0", "z1", "dapi"))
    r = run_cli(["split-field", tmp_path / "f", "--target", tmp_path / "f" / ".." / "f" / "dapi.tif",
                 "-o", tmp_path / "out", *SPLIT], capsys)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["z0", "z1"]


def test_split_field_refuses_two_sources_of_one_name(tmp_path, capsys):
    """``split-field a/z0.tif b/z0.tif`` wrote both slices' crops to out/z0/, the second over the first."""
    (a,), (b,) = _field(tmp_path / "a", names=("z0",)), _field(tmp_path / "b", names=("z0",))
    r = run_cli(["split-field", a, b, "-o", tmp_path / "out", *SPLIT], capsys)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert str(a) in line and str(b) in line and "both would be written to" in line


def _with_meta(src: Path, dst: Path, key: str, edit) -> Path:
    """A copy of the model file ``src`` whose ``key`` metadata is ``edit(meta dict)`` (a dict, or the
    text to store as it is)."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(src), "np") as f:
        metadata = f.metadata()
    meta = edit(json.loads(metadata[key]))
    save_file(load_file(str(src)), str(dst), metadata={**metadata, key: meta if isinstance(meta, str) else json.dumps(meta)})
    return dst


COUNTER_EDITS = {
    "not-json": lambda m: "{not json",
    "a-list": lambda m: "[1, 2]",
    "window-negative": lambda m: {**m, "window": -32},
    "window-text": lambda m: {**m, "window": "256"},
    "percentiles-reversed": lambda m: {**m, "normalization": {**m["normalization"], "low": 99.0, "high": 1.0}},
    "normalization-number": lambda m: {**m, "normalization": 5},
    "output-unknown": lambda m: {**m, "output": "bogus"},
    "diameter-text": lambda m: {**m, "diameter": "abc"},
}


@pytest.mark.parametrize("edit", COUNTER_EDITS, ids=list(COUNTER_EDITS))
def test_a_counter_with_damaged_metadata_is_one_line_naming_it(edit, tmp_path, capsys):
    """A counter whose metadata was edited by hand or broken stopped ``count``/``export`` with "unexpected
    JSONDecodeError / RuntimeError / TypeError" (exit 70); percentiles 99:1 or a diameter "abc" counted
    with a normalisation nobody chose, or failed every image."""
    from test_faults import DEFAULT_MODEL, blobs

    model = _with_meta(DEFAULT_MODEL, tmp_path / "m.safetensors", "cellxfer", COUNTER_EDITS[edit])
    tifffile.imwrite(tmp_path / "a.tif", blobs(64, 64, 3))
    r = run_cli(["count", tmp_path / "a.tif", "-m", model, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr).startswith(f"error: {model}: its cellxfer metadata is damaged (")
    assert not (tmp_path / "c.csv").exists()


def test_a_translator_with_unknown_or_damaged_metadata_is_one_line_naming_it(tmp_path, capsys):
    """A translator's metadata with a field this cellxfer does not know stopped ``translate`` with
    "unexpected TypeError" (exit 70); a counter's has said "upgrade cellxfer" all along."""
    torch = pytest.importorskip("torch")
    from cellxfer.translator.model import TranslatorMeta, build_generator, save_translator

    torch.manual_seed(0)
    meta = TranslatorMeta(ngf=4, num_downs=5, size=32)
    good = save_translator(tmp_path / "t.safetensors", build_generator(meta).eval(), meta)
    tifffile.imwrite(tmp_path / "p.tif", np.random.default_rng(0).integers(0, 60000, (64, 64), dtype=np.uint16))
    for name, edit, words in (("newer", lambda m: {**m, "future_field": 1}, "future_field, which cellxfer"),
                              ("norm", lambda m: {**m, "input_norm": [99.5, 0.5]}, "metadata is damaged (input_norm[1]"),
                              ("text", lambda m: "]", "metadata is damaged (not JSON")):
        model = _with_meta(good, tmp_path / f"{name}.safetensors", "cellxfer_translator", edit)
        r = run_cli(["translate", tmp_path / "p.tif", "-m", model, "-o", tmp_path / name], capsys)
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert str(model) in line and words in line


def test_ensemble_refuses_one_counter_given_twice(tmp_path, capsys):
    """``ensemble a b a`` (a shell glob and a name typed again), or a counter and its copy, wrote an
    "ensemble" in which that counter counted double in the mean, without a word."""
    import shutil

    from test_faults import DEFAULT_MODEL

    other = tmp_path / "b.safetensors"
    shutil.copy(DEFAULT_MODEL, other)
    (tmp_path / "link.safetensors").symlink_to(DEFAULT_MODEL)
    for second in (DEFAULT_MODEL, tmp_path / "link.safetensors", other):
        r = run_cli(["ensemble", DEFAULT_MODEL, second, "-o", tmp_path / "e.safetensors"], capsys)
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert f"{DEFAULT_MODEL} and {second}: the same counter twice" in line
        assert not (tmp_path / "e.safetensors").exists()


def test_train_count_refuses_validating_on_its_training_set(tmp_path, capsys, monkeypatch):
    """``train-count --real train/ --val train/`` (or ``--val ./train``) picked the best epoch, and reported
    its "val MAE", on the images it trained on, without a word."""
    from test_faults import labelled_dataset, blobs

    data = labelled_dataset(tmp_path / "train", {"a": blobs(64, 64, 3), "b": blobs(64, 64, 3, seed=1)})
    monkeypatch.chdir(tmp_path)
    base = ["train-count", "--arch", "density", "--crop", "32", "--epochs", "1", "--batch-size", "2"]
    cases = ((["--regime", "supervised", "--real", data], "./train", "--real"),
             (["--regime", "synthetic", "--synthetic", "train"], data, "--synthetic"),
             (["--regime", "dual", "--real", tmp_path / "other", "--synthetic", data], tmp_path / "x" / ".." / "train", "--synthetic"))
    for k, (inputs, val, option) in enumerate(cases):
        r = run_cli([*base, *inputs, "--val", val, "--out", tmp_path / f"run{k}"], capsys)
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert f"--val {Path(val)} is the {option} set" in line and "held-out" in line
        assert not (tmp_path / f"run{k}").exists()


def test_learn_style_and_stylize_never_write_into_the_model_folders(tmp_path, capsys):
    """``learn-style -o sd/ --overwrite`` (or ``-o clip/``, ``stylize --method inst -o sd/``) wrote the run's
    token, state, history and manifest into the Stable Diffusion or CLIP folder it reads; a later
    ``--overwrite`` run deletes such entries there."""
    from test_faults import labelled_dataset, blobs

    sd, clip, style = tmp_path / "sd", tmp_path / "clip", tmp_path / "style"
    for folder, marker in ((sd, "model_index.json"), (clip, "config.json"), (style, None)):
        folder.mkdir()
        if marker:
            (folder / marker).write_text("{}\n")
    tifffile.imwrite(style / "s.tif", blobs(64, 64, 3))
    content = labelled_dataset(tmp_path / "content", {"a": blobs(64, 64, 3)})
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "token.safetensors").write_bytes(b"token")  # refused before it is read
    models = ["--model", sd, "--clip", clip, "--steps", "1", "--device", "cpu", "--overwrite"]
    for out in (sd, clip):
        for args in (["learn-style", "--style", style, "--size", "64"],
                     ["stylize", "--method", "inst", "-c", content, "-s", style, "--token", tmp_path / "tok"]):
            r = run_cli([*args, *models, "-o", out], capsys)
            assert r.returncode == 2, r.stderr
            assert f"{out}: --out is one of the inputs" in one_line(r.stderr)
    assert sorted(p.name for p in sd.iterdir()) == ["model_index.json"]
    assert sorted(p.name for p in clip.iterdir()) == ["config.json"]


def test_an_exported_onnx_where_a_checkpoint_is_needed_names_the_checkpoint(tmp_path, capsys):
    """``train-count --pretrained counter.onnx`` printed torch's paragraph advising to rerun ``torch.load`` with
    ``weights_only=False`` ("arbitrary code execution"); ``ensemble``/``adapt-count``/``export`` said "header too
    large". Each is one line saying it is an exported model and to give the checkpoint it came from."""
    import shutil

    from test_faults import DEFAULT_MODEL, labelled_dataset, blobs

    onnx = tmp_path / "counter.onnx"
    shutil.copy(DEFAULT_MODEL.with_suffix(".onnx"), onnx)
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64, 3)})
    for args in (["train-count", "--regime", "supervised", "--real", data, "--arch", "density", "--crop", "32",
                  "--epochs", "1", "--pretrained", onnx, "-o", tmp_path / "run"],
                 ["ensemble", onnx, DEFAULT_MODEL, "-o", tmp_path / "e.safetensors"],
                 ["export", "-m", onnx, "-o", tmp_path / "again.onnx"],
                 ["adapt-count", "-m", onnx, "-u", data / "images", "--synthetic", data, "-o", tmp_path / "ad"]):
        r = run_cli(args, capsys)
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert f"{onnx}: is an exported ONNX model" in line and "the .safetensors file it was exported from" in line
        assert "weights_only" not in line
