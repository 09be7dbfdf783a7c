"""The napari plugin's "Count cells" widget on a real image, for the docs: docs/napari_count_widget.png.

CellProfiler ExampleHuman's DNA channel (CC0; shared/data/cellprofiler-examplehuman) counted by the
default counter through the widget (plugins/cellxfer-napari), then the whole window grabbed offscreen.
Needs the plugin (``pip install -e plugins/cellxfer-napari``) and a display with OpenGL; without a
screen, Xvfb and Qt's X11 plugin's libraries (Debian: ``apt-get install xvfb libxcb-icccm4 libxcb-image0
libxcb-keysyms1 libxcb-render-util0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-shape0``; Qt's
``offscreen`` platform draws no canvas into a window grab):

    xvfb-run -a .venv/bin/python scripts/napari_screenshot.py

Writes the PNG (a 64-colour palette, small) and ``<png>.manifest.json`` (the image, the count, versions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DATA  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE = DATA / "cellprofiler-examplehuman" / "AS_09125_050116030001_D03f00d0.tif"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "napari_count_widget.png")
    ap.add_argument("--image", type=Path, default=IMAGE)
    args = ap.parse_args(argv)
    import napari
    from cellxfer_napari import _work
    from cellxfer_napari._widget import CountWidget
    import numpy as np
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from cellxfer.imageio import read_image
    from cellxfer.manifest import build_manifest, hash_input

    viewer = napari.Viewer(title="cellxfer in napari")
    viewer.window.resize(1180, 720)
    layer = viewer.add_image(read_image(args.image), name="ExampleHuman DNA (CC0)")
    widget = CountWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Count cells (cellxfer)", area="right")
    widget.reset_choices()
    widget.image.value = layer
    points = widget.count()
    if points is None:
        print(f"count failed: {widget.result.value}", file=sys.stderr)
        return 1
    viewer.layers.selection.active = points
    layer.contrast_limits = tuple(float(v) for v in np.percentile(layer.data, (0.5, 99.8)))
    for _ in range(5):  # lay the dock widget out, then fit the image to the canvas left, before the grab
        QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    _work.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot[..., :3]).quantize(64, dither=Image.Dither.NONE).save(args.out, optimize=True)
    manifest = build_manifest("napari-screenshot", {"image": str(args.image), "size": list(shot.shape[:2])},
                              seed=None, inputs=[hash_input(args.image)], result=widget.result.value)
    Path(f"{args.out}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{args.out}: {widget.result.value} ({args.out.stat().st_size // 1024} KB)")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
