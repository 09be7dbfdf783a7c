"""The counts CSV's trust flag (:mod:`cellxfer.count.qc`): each reason fires on the measurement it reads."""

from __future__ import annotations

import pytest

from cellxfer.count.qc import QCRules, ScaleInfo
from cellxfer.scale import Estimate


def info(**kw) -> ScaleInfo:
    est = dict(diameter=12.0, blobs=50, spread=1.3, clumped=0.1, nuclei=50.0, saturated=0.0) | kw
    return ScaleInfo(12.0, 1.0, Estimate(**est))


@pytest.mark.parametrize("kw,count,reason", [
    ({}, 50.0, None),
    ({"spread": 3.0}, 50.0, "scale-unsure"),
    ({"clumped": 0.9}, 50.0, "crowded"),
    ({"saturated": 0.5}, 50.0, "saturated"),
    ({}, 300.0, "disagrees"),
    ({}, 5.0, "disagrees"),
    ({}, 30.0, "disagrees"),  # 0.6 of the segmentation's 50: nuclei it sees and the model does not
    ({}, 110.0, None),  # 2.2 times: the segmentation undercounts clumps, so more is allowed than fewer
    ({"diameter": None}, 0.0, "no-nuclei"),
    ({"dim": 0.2}, 50.0, "mixed-brightness"),  # the typical nucleus a fifth as bright as those measured
    ({"dim": 0.9}, 50.0, None),
])
def test_each_reason_fires_on_its_measurement(kw, count, reason):
    label = QCRules().label(count, info(**kw))
    assert label == (reason or "ok")


def test_a_clipped_resize_says_the_nuclei_are_outside_the_model_sizes():
    i = info()
    assert QCRules().label(50.0, ScaleInfo(i.diameter, 8.0, i.estimate, clipped=True)) == "outside-sizes"


def test_nothing_measured_is_unchecked_not_ok():
    assert QCRules().label(50.0, ScaleInfo()) == "unchecked"
    assert QCRules().label(50.0, ScaleInfo.of(None)) == "unchecked"


def test_reasons_are_joined_in_one_cell():
    assert QCRules().label(300.0, info(spread=3.0, saturated=0.5)) == "scale-unsure;saturated;disagrees"


def test_partial_share_counts_the_blobs_the_model_half_believes():
    import numpy as np

    from cellxfer.count.parts import DensityMap
    from cellxfer.count.qc import partial_share

    m = np.zeros((40, 40))
    m[5:8, 5:8] = 1.0 / 9  # a whole nucleus
    m[5:8, 20:23] = 2.0 / 9  # two touching nuclei: one blob of mass 2, not partial
    m[25:28, 25:28] = 0.4 / 9  # a dim nucleus the model half-believes
    m[35, 35] = 0.001  # below the blob level: noise, no blob
    share = partial_share(DensityMap(m, 1))
    assert share == pytest.approx(1 / m.sum())
    assert partial_share(DensityMap(m, 4)) is None  # a slide's coarse map does not separate nuclei
    assert partial_share(None) is None
    assert QCRules().label(50.0, info(), partial=0.3) == "uncertain"
    assert QCRules().label(50.0, info(), partial=0.05) == "ok"
    assert QCRules().label(50.0, info(), partial=None) == "ok"


def test_judge_composes_the_label_from_the_count_and_its_map():
    """``judge`` is ``label`` with the map's partial share, which it also returns; without a map, no share."""
    import numpy as np

    from cellxfer.count.parts import DensityMap

    m = np.zeros((40, 40))
    m[5:8, 5:8] = 1.0 / 9
    m[25:28, 25:28] = 0.4 / 9  # half-believed: a partial share of 0.4 / 1.4 per nucleus, over 0.17
    label, partial = QCRules().judge(50.0, info(), DensityMap(m, 1))
    assert partial == pytest.approx(1 / 1.4) and label == QCRules().label(50.0, info(), partial) == "uncertain"
    assert QCRules().judge(50.0, info(), None) == ("ok", None)


# -- tiles that are not in the file ----------------------------------------------------------------------
def _sparse(path, empty) -> None:
    """Zero the offsets and byte counts of segments ``empty`` (indices) of the TIFF at ``path``, as a sparse
    or partly-written file has them (the format allows it): those tiles are then not in the file."""
    import struct

    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        names = ("TileOffsets", "TileByteCounts") if page.is_tiled else ("StripOffsets", "StripByteCounts")
        spots = []
        for name in names:
            tag = page.tags[name]
            fmt = tif.byteorder + tifffile.TIFF.DATA_FORMATS[tag.dtype][-1]
            spots += [(tag.valueoffset + i * struct.calcsize(fmt), struct.pack(fmt, 0)) for i in empty]
    with open(path, "r+b") as f:
        for where, zero in spots:
            f.seek(where)
            f.write(zero)


@pytest.mark.parametrize("slide", [False, True])  # read whole / read by region
@pytest.mark.parametrize("compression", ["zlib", None])
def test_tiles_missing_from_the_file_are_said_and_flag_the_count(tmp_path, capsys, monkeypatch, slide, compression):
    """A TIFF whose tile offsets and byte counts are 0 (sparse, or a writer that stopped) reads those tiles as
    zeros: the count says so in one warning line (how many of how many) and its qc column has
    ``empty-tiles``, with ``--diameter auto`` or a fixed one; the same file intact is neither."""
    pytest.importorskip("torch")
    import numpy as np
    import tifffile

    from cellxfer import lazy
    from cellxfer.classical import build_log, log_options
    from cellxfer.count.table import read_counts
    from cellxfer.counter.model import CounterMeta, save_counter
    from cli_inproc import run_cli
    from test_scale import disks

    monkeypatch.setattr(lazy, "LAZY_PIXELS", 1000 if slide else 10**9)
    img = (disks(7.0, size=600, seed=3)[0] * 40).astype(np.uint16)
    for name in ("whole.tif", "sparse.tif"):
        tifffile.imwrite(tmp_path / name, img, tile=(64, 64), compression=compression)
    _sparse(tmp_path / "sparse.tif", [0, 5, 17])  # 3 of 100 tiles
    meta = CounterMeta(arch="log", window=128, output="density", arch_options={**log_options(2.5, 0.15), "tile": 256},
                       diameter=7.0)
    model = save_counter(tmp_path / "m" / "log.safetensors", build_log(meta), meta)
    for diameter in ("auto", "7"):
        out = tmp_path / f"{diameter}.csv"
        r = run_cli(["count", tmp_path / "whole.tif", tmp_path / "sparse.tif", "-m", model, "--engine", "torch",
                     "--diameter", diameter, "-o", out], capsys)
        assert r.returncode == 0, r.stderr
        rows = {r.file: r for r in read_counts(out)}
        qc = {name: rows[str((tmp_path / name).resolve())].qc for name in ("whole.tif", "sparse.tif")}
        assert "empty-tiles" not in qc["whole.tif"] and "empty-tiles" in qc["sparse.tif"].split(";"), qc
        if diameter == "auto":  # (the line is said once per file in a process)
            assert f"{tmp_path / 'sparse.tif'}: 3 of 100 tiles are not in the file" in " ".join(r.stderr.split())
        assert "whole.tif: " not in r.stderr and "empty-tiles 1" in r.stderr
    assert lazy.is_lazy(lazy.open_image(tmp_path / "sparse.tif")) == slide


def test_tiles_missing_from_the_file_come_first_and_are_checked_without_a_measurement():
    assert QCRules().label(50.0, info(), empty=3) == "empty-tiles"
    assert QCRules().label(300.0, info(), empty=3) == "empty-tiles;disagrees"
    assert QCRules().label(50.0, ScaleInfo(), empty=1) == "empty-tiles"  # a fixed --diameter: not "unchecked"
    assert QCRules().label(50.0, ScaleInfo(), empty=0) == "unchecked"
