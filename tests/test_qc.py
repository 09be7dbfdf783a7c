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
