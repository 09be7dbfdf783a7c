"""Outputs never alias inputs (issue 27): every command resolves its outputs (symlinks followed, hard
links by inode) against its inputs and refuses, in one line, whatever would replace an input, with or
without --overwrite; a file it writes is new or replaced only under --overwrite; one writer per file
by any name. The matrix (tests/test_faults_matrix.py, case out-is-input) runs every registered command
with --out naming an input; these are the cases of the issue, one by one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, HOLD_LOCK, blobs, labelled_dataset, one_line


def _tree(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_inspect_preview_never_replaces_an_image_of_the_dataset(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64), "b": blobs(64, 64, seed=1)})
    before = _tree(data)
    target = data / "images" / "a.tif"
    r = run_cli(["inspect", data, "--preview", target, "--overwrite"], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr).startswith(f"error: {target}: --preview names one of the inputs")
    assert _tree(data) == before
    # a preview beside the dataset's files (not one of them) is fine, and replaced with --overwrite
    for _ in range(2):
        r = run_cli(["inspect", data, "--preview", data / "sheet.png", "--overwrite"], capsys)
        assert r.returncode == 0, r.stderr


def test_evaluate_never_replaces_the_labels(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64), "b": blobs(64, 64, seed=1)})
    (data / "counts.csv").write_text("id,count\na,2\nb,2\n")
    before = _tree(data)
    for option in ("--csv", "--json"):
        r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, option, data / "counts.csv", "--overwrite"], capsys)
        assert r.returncode == 2
        assert one_line(r.stderr).startswith(f"error: {data / 'counts.csv'}: {option} names one of the inputs")
    link = tmp_path / "labels.csv"
    link.symlink_to(data / "points" / "a.csv")
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", link, "--overwrite"], capsys)
    assert r.returncode == 2 and "names one of the inputs" in one_line(r.stderr)
    assert _tree(data) == before


def test_evaluate_writes_no_predictions_file_unasked(tmp_path, capsys, monkeypatch):
    """Without --csv nothing lands in the working directory (two runs used to replace each other's
    <model>-<data>-predictions.csv there silently); with --csv it is written, and replaced only with
    --overwrite."""
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64), "b": blobs(64, 64, seed=1)})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for _ in range(2):
        r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data], capsys)
        assert r.returncode == 0, r.stderr
        assert "MAE" in r.stdout and "per-image predictions" not in r.stdout
    assert list(work.iterdir()) == []
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", "p.csv"], capsys)
    assert r.returncode == 0 and (work / "p.csv").read_text().startswith("image,true,predicted")
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", "p.csv"], capsys)
    assert r.returncode == 2 and "exists; pass --overwrite" in one_line(r.stderr)
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--csv", "p.csv", "--json", "p.csv"], capsys)
    assert r.returncode == 2 and "name the same file" in one_line(r.stderr)


def test_no_predictions_files_in_the_repository_root():
    root = Path(__file__).resolve().parents[1]
    assert not sorted(root.glob("*-predictions.csv"))


def test_translate_never_replaces_its_input(tmp_path, capsys, translator):
    folder = tmp_path / "dir"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", blobs(32, 32, 3))
    before = _tree(folder)
    r = run_cli(["translate", folder / "a.tif", "-m", translator, "-o", folder, "--overwrite"], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr).startswith(f"error: {folder / 'a.tif'}: -o names one of the inputs")
    assert _tree(folder) == before


def test_translate_refuses_two_inputs_written_to_one_name(tmp_path, capsys, translator):
    """a.tif and a.png both become OUT/a.tif: the second was called "already done"."""
    from PIL import Image

    tifffile.imwrite(tmp_path / "a.tif", blobs(32, 32, 3))
    Image.fromarray(blobs(32, 32, 3, seed=1)).save(tmp_path / "a.png")
    r = run_cli(["translate", tmp_path / "a.tif", tmp_path / "a.png", "-m", translator, "-o", tmp_path / "out"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert str(tmp_path / "a.tif") in line and str(tmp_path / "a.png") in line and "both would be written to" in line
    assert not (tmp_path / "out").exists()


def test_count_density_map_never_replaces_the_input_nor_an_existing_file_unasked(tmp_path, capsys):
    image = tmp_path / "x.tif"
    tifffile.imwrite(image, blobs())
    before = image.read_bytes()
    r = run_cli(["count", image, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--density-map", image], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr).startswith(f"error: {image}: --density-map names one of the inputs")
    assert image.read_bytes() == before and not (tmp_path / "c.csv").exists()
    existing = tmp_path / "map.tif"
    existing.write_bytes(b"precious")
    r = run_cli(["count", image, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--density-map", existing], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr) == (f"error: {existing}: exists; pass --overwrite to replace it or choose another "
                                  f"--density-map")
    assert existing.read_bytes() == b"precious" and not (tmp_path / "c.csv").exists()
    r = run_cli(["count", image, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--density-map", existing,
                 "--overlay", tmp_path / "ov", "--points", tmp_path / "pts"], capsys)  # refused: no folder left behind
    assert r.returncode == 2 and not (tmp_path / "ov").exists() and not (tmp_path / "pts").exists()
    r = run_cli(["count", image, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--density-map", existing,
                 "--overwrite"], capsys)
    assert r.returncode == 0, r.stderr
    assert tifffile.imread(existing).dtype.name == "float32"
    # the same command again: its row and map are done, nothing is replaced, nothing refused
    r = run_cli(["count", image, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--density-map", existing], capsys)
    assert r.returncode == 0, r.stderr


def test_count_overlay_and_points_never_replace_an_input(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(blobs()).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", blobs(seed=1))
    before = _tree(tmp_path)
    r = run_cli(["count", tmp_path / "a.png", tmp_path / "b.tif", "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv",
                 "--overlay", tmp_path, "--overwrite"], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr).startswith(f"error: {tmp_path / 'a.png'}: --overlay names one of the inputs")
    assert _tree(tmp_path) == before


def test_count_lock_holds_for_a_symlink_to_the_csv(tmp_path, capsys):
    """A second count whose --out is a symlink to the first's CSV is refused (the lock is taken on the
    resolved path); a single run writes through the link and keeps it."""
    tifffile.imwrite(tmp_path / "a.tif", blobs())
    out = tmp_path / "c.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = run_cli(["count", tmp_path / "a.tif", "-m", DEFAULT_MODEL, "-o", link], capsys)
        assert r.returncode == 2
        assert one_line(r.stderr) == (f"error: another cellxfer count (pid {holder.pid}) is writing {link}; "
                                      f"wait for it or pass another --out")
    finally:
        holder.kill()
        holder.wait()
    r = run_cli(["count", tmp_path / "a.tif", "-m", DEFAULT_MODEL, "-o", link], capsys)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and out.read_text().startswith("file,")


def test_a_hard_link_to_an_input_is_the_input(tmp_path, capsys):
    image = tmp_path / "x.tif"
    tifffile.imwrite(image, blobs())
    os.link(image, tmp_path / "same.tif")
    r = run_cli(["count", image, "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv", "--density-map",
                 tmp_path / "same.tif", "--overwrite"], capsys)
    assert r.returncode == 2 and "names one of the inputs" in one_line(r.stderr)
    assert tifffile.imread(image).dtype.name == "uint8"


def test_a_run_folder_never_holds_its_inputs_where_it_writes(tmp_path, capsys):
    """split-field -o the folder of its input, and synth-pairs-style own entries: refused with --overwrite."""
    folder = tmp_path / "field"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", blobs(64, 64))
    before = _tree(folder)
    r = run_cli(["split-field", folder / "a.tif", "-o", folder, "--test-side", "8", "--margin", "1", "--overwrite"],
                capsys)
    assert r.returncode == 2 and str(folder) in one_line(r.stderr)
    assert _tree(folder) == before


def test_export_never_replaces_a_check_image_nor_an_existing_engine_unasked(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", blobs())
    before = _tree(images)
    r = run_cli(["export", "-m", DEFAULT_MODEL, "-o", images / "a.tif", "--check-images", images, "--overwrite"], capsys)
    assert r.returncode == 2 and one_line(r.stderr).startswith(f"error: {images / 'a.tif'}: --out names one of the inputs")
    assert _tree(images) == before
    (tmp_path / "e.plan").write_text("precious\n")
    r = run_cli(["export", "-m", DEFAULT_MODEL, "--format", "trt", "-o", tmp_path / "m.onnx", "--engine-out",
                 tmp_path / "e.plan"], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr) == (f"error: {tmp_path / 'e.plan'}: exists; pass --overwrite to replace it or choose "
                                  f"another --engine-out")
    assert (tmp_path / "e.plan").read_text() == "precious\n"


def test_a_run_folder_may_hold_an_input_folder_beside_its_own_files(tmp_path):
    """`synth -o work/syn` then a run with `-o work` reading work/syn is fine; work/images (the run's own
    entry) or an input file directly in work is refused."""
    from cellxfer.errors import InputError
    from cellxfer.runs import RunFolder

    (tmp_path / "work" / "syn").mkdir(parents=True)
    with RunFolder(tmp_path / "work", "stage", {"config": {}}, own=("images",), inputs=[tmp_path / "work" / "syn"],
                   overwrite=True):
        pass
    (tmp_path / "work" / "images").mkdir()
    with pytest.raises(InputError, match="holds the input .* where this run writes"):
        RunFolder(tmp_path / "work", "stage", {"config": {}}, own=("images",), inputs=[tmp_path / "work" / "images"],
                  overwrite=True).open()
    tifffile.imwrite(tmp_path / "work" / "a.tif", blobs(16, 16, 1))
    with pytest.raises(InputError, match="holds the input"):
        RunFolder(tmp_path / "work", "stage", {"config": {}}, inputs=[tmp_path / "work" / "a.tif"], overwrite=True).open()
