"""Right answers and right advice (issue 27): inspect flags damaged images and points outside their
image; evaluate-translator says over how many images each mean is; evaluate with every image excluded
is one line; the advice names what the user can do (no --page for stylize under Dask, a translator given
to evaluate is called a translator, a JPEG is not sent to --recursive)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cli_inproc import run_cli
from test_faults import DEFAULT_MODEL, blobs, labelled_dataset, one_line


def test_inspect_flags_a_truncated_image_and_points_outside_their_image(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {k: blobs(64, 64, seed=i) for i, k in enumerate("abcd")})
    whole = (data / "images" / "b.tif").read_bytes()
    (data / "images" / "b.tif").write_bytes(whole[: len(whole) // 2])  # its header is intact
    (data / "points" / "c.csv").write_text("x,y\n5,5\n70,10\n")  # 70 > 64 wide
    r = run_cli(["inspect", data, "--preview", tmp_path / "sheet.png"], capsys)
    assert r.returncode == 1, r.stderr
    failed = sorted(ln for ln in r.stderr.splitlines() if ln.startswith("failed "))
    assert len(failed) == 2 and "Traceback" not in r.stderr
    assert failed[0].startswith(f"failed {data / 'images' / 'b.tif'}: not a readable TIFF")
    assert failed[1].startswith(f"failed {data / 'points' / 'c.csv'}: point 2 (x=70, y=10) lies outside its 64x64 image")
    assert "4 images" in r.stdout and "total 4" in r.stdout  # a and d: two points each
    assert (tmp_path / "sheet.png").is_file()


def test_evaluate_with_every_image_excluded_is_one_line(tmp_path, capsys):
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64), "b": blobs(64, 64, seed=1)})
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data, "--exclude", "a", "--exclude", "b"], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr) == (f"error: {data}: all 2 images are left out of evaluation (excluded by the user); "
                                  f"nothing is left to use: drop an --exclude or give another dataset")


def test_count_of_a_jpeg_says_to_convert_it_not_to_recurse(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(blobs()).save(tmp_path / "good.jpg")
    r = run_cli(["count", tmp_path / "good.jpg", "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith(f"error: {tmp_path / 'good.jpg'}: not an image (.jpg;") and "save it as a TIFF or PNG" in line
    assert "--recursive" not in line
    (tmp_path / "sub").mkdir()  # a folder with subfolders and no image: --recursive is the advice
    r = run_cli(["count", tmp_path / "sub" / "..", "-m", DEFAULT_MODEL, "-o", tmp_path / "c.csv"], capsys)
    assert r.returncode == 2 and "pass --recursive" in one_line(r.stderr)


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    from conftest import tiny_translator

    return tiny_translator(tmp_path_factory.mktemp("tr"), n_pairs=3)


def test_a_translator_given_as_a_counter_is_called_a_translator(tmp_path, capsys, translator):
    model, _ = translator
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64)})
    r = run_cli(["evaluate", "-m", model, "-d", data], capsys)
    assert r.returncode == 2
    assert one_line(r.stderr) == (f"error: {model}: is a translator (from train-translate or adapt), not a counter; "
                                  f"give a counter (from train-count) (translate and evaluate-translator run translators)")


def test_evaluate_translator_says_over_how_many_images_each_mean_is(tmp_path, capsys, translator):
    """A constant target has no Pearson correlation: the mean was over 2 images but said "over 3"."""
    import shutil

    model, pairs = translator
    shutil.copytree(pairs, tmp_path / "pairs")
    tifffile.imwrite(tmp_path / "pairs" / "target" / "000001.tif", np.full((32, 32), 1000, np.uint16))
    r = run_cli(["evaluate-translator", "-m", model, "--pairs", tmp_path / "pairs", "--engine", "torch"], capsys)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("mean over 3 images: Pearson")
    assert last.endswith("(pearson over 2: undefined for 1 (a constant image))")


def test_stylize_under_dask_does_not_advise_a_page_option_it_has_not(tmp_path, capsys):
    pytest.importorskip("distributed")
    data = labelled_dataset(tmp_path / "ds", {"a": blobs(64, 64), "b": np.stack([blobs(64, 64)] * 3)})
    style = tmp_path / "style"
    style.mkdir()
    tifffile.imwrite(style / "s.tif", blobs())
    r = run_cli(["stylize", "-c", data, "-s", style, "-o", tmp_path / "out", "--method", "histogram",
                 "--scheduler", "local:1"], capsys)
    assert r.returncode == 1, r.stderr
    (failed,) = [ln for ln in r.stderr.splitlines() if ln.startswith("failed ")]
    assert "3 planes" in failed and "this command has no --page" in failed and "pass --page" not in failed


def test_points_tables_without_an_image_are_named_not_dropped_silently(tmp_path, capsys):
    """An image renamed or never copied leaves its points table alone in points/: inspect and evaluate (and so
    train-count, through the same reader) say which tables they leave out instead of reporting fewer cells."""
    data = labelled_dataset(tmp_path / "ds", {k: blobs(64, 64, seed=i) for i, k in enumerate("abc")})
    (data / "images" / "c.tif").rename(tmp_path / "c.tif")  # moved away: points/c.csv stays
    r = run_cli(["inspect", data], capsys)
    assert r.returncode == 0 and "2 images" in r.stdout and "1 points table(s) have no image" in r.stdout
    assert "c.csv" in r.stdout
    r = run_cli(["evaluate", "-m", DEFAULT_MODEL, "-d", data], capsys)
    assert r.returncode == 0, r.stderr
    assert f"warning: {data / 'points'}: 1 points table(s) without an image in images/ (c.csv): not used" in r.stderr
