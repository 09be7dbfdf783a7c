#!/usr/bin/env python
"""Write the default counter's ONNX export into the package, beside its weights:
``cellxfer/models/default_counter.safetensors`` -> ``cellxfer/models/default_counter.onnx``.

A core install (``pip install cellxfer``: no torch) counts with this file: ``count`` uses the ``.onnx`` beside
a checkpoint when its metadata's ``source_sha256`` is that checkpoint's (:func:`cellxfer.export.onnx.shipped_export`),
so the first ``count`` exports nothing. The file is made by ``cellxfer export``'s own function (full metadata,
parity-checked against torch on random windows, Syn-HC windows and another input size; no file on mismatch).
Rerun it whenever the weights change (after ``scripts/train_default_counter.py``); ``tests/test_shipped_onnx.py``
fails while the two disagree. Needs the train extra (torch, onnx).

    .venv/bin/python scripts/ship_default_onnx.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchlib import REPO

MODEL = REPO / "cellxfer" / "models" / "default_counter.safetensors"


def main(argv=None) -> int:
    from cellxfer.export.counter import ExportConfig, export_counter
    from cellxfer.export.onnx import read_metadata
    from cellxfer.manifest import sha256_file

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=MODEL, help="the checkpoint (default: the shipped counter)")
    args = p.parse_args(argv)
    out = args.model.with_suffix(".onnx")
    result = export_counter(ExportConfig(model=args.model, out=out), log=print)
    props = read_metadata(out)
    assert props["source_sha256"] == sha256_file(args.model)
    print(f"{out} ({out.stat().st_size / 2**10:.0f} KiB) from {args.model.name} "
          f"(sha256 {props['source_sha256'][:12]}), {len(result.parity)} parity checks passed, {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
