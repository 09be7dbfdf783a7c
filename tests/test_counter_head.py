"""The typed counter head (cellxfer.counter.head) is the one owner of what a counter's output implies."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cellxfer.counter.head import COUNT, DENSITY, DETECTIONS, head_for, head_of
from cellxfer.counter.model import CounterMeta

PKG = Path(__file__).resolve().parents[1] / "cellxfer"
#: a decision by output kind written outside the head, on a line of code tokens (see _code_lines)
OUTPUT_CHECK = re.compile(r"""\. output (==|!=)|\boutput (==|!=) ["']|\barch (==|!=) ["']log["']"""
                          r"""|["']output["'] , ["']\w+["'] \) (==|!=)""")


def test_head_of_each_kind():
    assert head_of(CounterMeta(arch="efficientnet_b0", output="count")) is COUNT
    assert head_of(CounterMeta(arch="density", output="density")) is DENSITY
    assert head_of(CounterMeta(arch="log", output="density")) is DETECTIONS
    assert DETECTIONS.makes_points and not DETECTIONS.trained and not DETECTIONS.learnt_density
    assert DENSITY.makes_points and DENSITY.learnt_density and not COUNT.makes_points
    with pytest.raises(ValueError, match="unknown counter output"):
        head_for("segmentation")


def test_export_shapes_follow_the_head():
    count, dens = CounterMeta(window=64, output="count"), CounterMeta(arch="density", window=128, output="density")
    assert head_of(count).dynamic_axes()["input"] == {0: "batch"}
    assert head_of(dens).dynamic_axes()["input"] == {0: "batch", 2: "height", 3: "width"}
    assert head_of(count).trt_sides(count) == (64, 64, 64) and head_of(dens).trt_sides(dens) == (128, 256, 1024)


@pytest.mark.parametrize("output", ["count", "density"])
def test_training_validation_counts_as_count_does(output):
    """predict_normalized (validation during training) and count's split/merge give the same count."""
    torch = pytest.importorskip("torch")
    from cellxfer.count.parts import count_plan, plan_image
    from cellxfer.counter.model import build_counter
    from cellxfer.counter.model import torch_runner
    from cellxfer.train.counter import predict_normalized

    if output == "density":
        meta = CounterMeta(arch="density", window=32, output="density", arch_options={"base": 4, "depth": 2, "sigma": 3.0})
    else:
        meta = CounterMeta(arch="test-sum", window=32, output="count")
    torch.manual_seed(0)
    model = build_counter(meta).eval() if output == "density" else _PixelSum()
    img = (np.random.default_rng(0).random((70, 90)) * 200).astype(np.uint8)
    plan = plan_image(img, meta)
    assert type(plan.splitter) is type(head_of(meta).splitter(meta))
    via_count = count_plan(torch_runner(model, "cpu"), plan, 4).count
    via_training = predict_normalized(model, meta, [meta.normalization.apply(img)], 4)[0]
    assert via_count == via_training  # one splitter and merger: the same numbers
    assert abs(via_count) > 1e-3  # a real number was compared


def _PixelSum():
    import torch

    class PixelSum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return (x * self.w).sum(dim=(1, 2, 3)).unsqueeze(1)

    return PixelSum().eval()


def _code_lines(path: Path) -> dict[int, str]:
    """Each line's code tokens joined by spaces (comments dropped, strings with spaces replaced by STR)."""
    import io
    import tokenize

    lines: dict[int, list[str]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.NAME, tokenize.OP, tokenize.STRING):  # prose (docstrings) becomes STR
            text = "STR" if tok.type == tokenize.STRING and any(c.isspace() for c in tok.string) else tok.string
            lines.setdefault(tok.start[0], []).append(text)
    return {n: " ".join(t) for n, t in lines.items()}


def test_no_output_kind_checks_outside_the_head():
    """No module decides by ``meta.output == ...`` or ``arch == "log"``: they ask the head."""
    pattern = OUTPUT_CHECK
    bad = [f"{p.relative_to(PKG.parent)}:{n}" for p in sorted(PKG.rglob("*.py")) if p.name != "head.py"
           for n, code in _code_lines(p).items() if pattern.search(code)]
    assert not bad, "ask cellxfer.counter.head.head_of(meta) instead: " + ", ".join(bad)


def test_the_output_check_finds_one():
    """The scan above is not blind: it flags a decision written the old way."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.py"
        p.write_text('"""meta.output == "density" in a docstring is fine."""\nif meta.output == "density":\n    pass\n'
                     'x = getattr(meta, "output", "count") == "density"\n')
        hits = [n for n, code in _code_lines(p).items() if OUTPUT_CHECK.search(code)]
    assert hits == [2, 4]
