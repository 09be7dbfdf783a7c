"""Folders of many images (a plate: ~14,000; a screen: 100,000): what a command does per image must not grow
with the number of images. Nothing here is timed: each test counts the work (paths resolved, bytes written)
that grew with the square of the folder's size before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def count_resolves(monkeypatch):
    """``calls()``: how many times ``Path.resolve`` ran since the fixture started."""
    calls = [0]
    real = Path.resolve

    def resolve(self, *args, **kwargs):
        calls[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "resolve", resolve)
    return lambda: calls[0]


def test_refusing_aliases_resolves_each_input_and_output_a_bounded_number_of_times(tmp_path, count_resolves):
    """``count FOLDER --overlay DIR`` checks one output per image against every image: it resolved every input
    for every output (20,000 x 20,000 paths for a plate: hours before the first count)."""
    from cellxfer.outputs import refuse_aliases

    n = 300
    inputs = []
    for i in range(n):
        inputs.append(tmp_path / "plate" / f"img{i:04d}.tif")
    inputs[0].parent.mkdir()
    for p in inputs:
        p.write_bytes(b"x")
    outputs = [("--overlay", tmp_path / "ov" / f"img{i:04d}.png") for i in range(n)]
    before = count_resolves()
    refuse_aliases([("--out", tmp_path / "counts.csv"), *outputs], [*inputs, tmp_path / "plate"])
    assert count_resolves() - before <= 4 * (2 * n + 2)


def test_the_indexed_alias_check_still_finds_every_kind_of_alias(tmp_path):
    """The same answers as before the index: by name, through a symlink, by hard link, a file an input folder
    is read from; nothing for a new file or a file beside an input folder's images."""
    import os

    from cellxfer.errors import InputError
    from cellxfer.outputs import aliased, refuse_aliases

    plate = tmp_path / "plate"
    plate.mkdir()
    a, b = plate / "a.tif", plate / "b.tif"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    os.symlink(a, tmp_path / "link.tif")
    os.link(b, tmp_path / "hard.tif")
    (tmp_path / "other.csv").write_text("x\n")
    inputs = [a, b]
    assert aliased(a, inputs) == a
    assert aliased(tmp_path / "link.tif", inputs) == a
    assert aliased(tmp_path / "hard.tif", inputs) == b
    assert aliased(tmp_path / "new.png", inputs) is None
    assert aliased(tmp_path / "other.csv", inputs) is None
    assert aliased(a, [plate]) == plate  # an image of an input folder
    assert aliased(plate / "new.png", [plate]) is None  # not there yet: nothing of the folder's is replaced
    with pytest.raises(InputError, match="names one of the inputs"):
        refuse_aliases([("--overlay", tmp_path / "new.png"), ("--overlay", tmp_path / "hard.tif")], inputs)
    with pytest.raises(InputError, match="name the same file"):
        refuse_aliases([("--overlay", tmp_path / "x.png"), ("--points", tmp_path / "x.png")], inputs)
