"""Draw the benchmark pages' plots from the JSON (and CSV) the benchmarks wrote under ``docs/data/``.

    python scripts/plots.py                      # writes docs/plots/*.png
    python scripts/plots.py --out /tmp/plots     # somewhere else (tests/test_plots.py does this)

One plot per question, each from files a kept command wrote (the command is on the benchmark page):

- ``accuracy_pred_vs_true.png``: the default counter's predicted against true count per IDCIA image
  (``cellxfer evaluate ... --csv docs/data/default_counter_idcia90.csv --json docs/data/default_counter_idcia90.json``).
- ``accuracy_error_by_density.png``: its signed error per image against the true count, with the MAE of each
  density bin.
- ``transfer_few_labels.png``: test MAE against the number of labelled images, per training regime
  (``scripts/bench_transfer.py --few-label 5 15 60``).
- ``speed_images_per_s.png``: images/s in ``count``'s loop per counter and engine (``scripts/bench_count.py``),
  against the 2.2 images/s quoted for StarDist (not measured here; no Cellpose figure exists).
- ``slides_memory_speed.png``: peak RSS and MP/s against slide size (``scripts/bench_slide.py``).
- ``translator_layer_sweep.png``: LM-ADDA's Pearson correlation against the adapted layer, per shift
  (``scripts/bench_adapt.py``).

Each plot prints one line with the figure it shows, computed from the data, so the pages' numbers can be
checked against it. Same input, same PNG bytes (no timestamp in the files).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# which JSON files hold which series (a benchmark page names the command that wrote each)
ACCURACY = ("default_counter_idcia90.json", "default_counter_idcia90.csv")
FEW_LABELS = "transfer_fewlabel_test.json"
SPEED = (  # (label, file, rows' version): images/s per engine
    ("default counter (2026-11-30)", "bench_count_s14.json", None),
    ("density UNet, 1 seed (2026-11-27)", "bench_count_density_r3_seed2.json", None),
    ("density UNet ensemble of 3 (2026-11-27)", "bench_count_density_ensemble.json", None),
    ("EfficientNet-B0 (2026-11-27)", "bench_count_efficientnet_b0_rerun.json", None),
)
STARDIST_QUOTED = 2.2  # images/s, the figure issue 12 quotes for StarDist on this kind of image; not measured here
SLIDES = (  # (label, files, version)
    ("current code (2026-11-30, parts cut across the width)",
     ("bench_slide_s15_16k.json", "bench_slide_s15_32k.json", "bench_slide_s15_strip_64k.json",
      "bench_slide_s15_strip_128k.json"), "after"),
    ("before the width cut (same runs)",
     ("bench_slide_s15_16k.json", "bench_slide_s15_32k.json", "bench_slide_s15_strip_64k.json",
      "bench_slide_s15_strip_128k.json"), "before"),
    ("squares 4k-32k (2026-11-30, fourth session)", ("bench_slide_s14.json", "bench_slide_s14_32k.json"), "after"),
)
SWEEPS = (("adapt --match layer (the paper)", "bench_adapt_testbed_layer.json"),
          ("adapt --match skips", "bench_adapt_testbed_skips.json"))


class DataError(Exception):
    """A benchmark file is missing or not what the plot expects."""


def load_json(docs: Path, name: str):
    path = docs / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; rerun the benchmark that writes it (see its page under docs/benchmarks)")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc}); rerun the benchmark that writes it")


def per_image(docs: Path, name: str) -> list[tuple[float, float]]:
    """(true, predicted) per image from an ``evaluate --csv`` file."""
    path = docs / name
    try:
        with open(path, newline="") as f:
            return [(float(r["true"]), float(r["predicted"])) for r in csv.DictReader(f)]
    except FileNotFoundError:
        raise DataError(f"{path}: missing; rerun cellxfer evaluate with --csv (docs/benchmarks/accuracy.md)")
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: not an evaluate --csv table (image,true,predicted): {exc}")


def figure(width: float = 6.4, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def save(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)
    return out


def accuracy_pred_vs_true(docs: Path, out: Path) -> str:
    meta = load_json(docs, ACCURACY[0])
    pairs = per_image(docs, ACCURACY[1])
    true = [t for t, _ in pairs]
    pred = [p for _, p in pairs]
    mae = sum(abs(p - t) for t, p in pairs) / len(pairs)
    fig, ax = figure(5.2, 5.0)
    top = max(true + pred) * 1.05
    ax.plot([0, top], [0, top], color="0.6", lw=1, label="predicted = true")
    ax.scatter(true, pred, s=14, color="tab:blue", alpha=0.8, label=f"one IDCIA image ({len(pairs)})")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true count (annotated nuclei)", ylabel="predicted count",
           title=f"Default counter on real IDCIA images: MAE {mae:.2f}, F1 {meta['localisation']['f1']:.3f}")
    ax.title.set_fontsize(10)
    ax.legend(loc="upper left", fontsize=8)
    save(fig, out / "accuracy_pred_vs_true.png")
    return f"{len(pairs)} images, MAE {mae:.2f} (JSON {meta['mae']:.2f}), F1 {meta['localisation']['f1']:.3f}"


def accuracy_error_by_density(docs: Path, out: Path) -> str:
    meta = load_json(docs, ACCURACY[0])
    pairs = per_image(docs, ACCURACY[1])
    fig, ax = figure()
    ax.axhline(0, color="0.6", lw=1)
    ax.scatter([t for t, _ in pairs], [p - t for t, p in pairs], s=14, color="tab:blue", alpha=0.8,
               label="predicted - true, one image")
    edges = {"0-50": (0, 50), "50-150": (50, 150), "150+": (150, max(t for t, _ in pairs) + 1)}
    for name, b in meta["bins"].items():
        lo, hi = edges[name]
        ax.hlines([b["mae"], -b["mae"]], lo, hi, colors="tab:red", lw=2,
                  label="+/- MAE of the bin" if name == "0-50" else None)
        ax.text((lo + hi) / 2, b["mae"] + 2, f"MAE {b['mae']:.2f}\n(n={b['n']})", ha="center", fontsize=8)
    ax.set(xlabel="true count (annotated nuclei)", ylabel="error (nuclei)",
           title="Error against density: dense fields are undercounted")
    ax.title.set_fontsize(10)
    ax.legend(loc="lower left", fontsize=8)
    save(fig, out / "accuracy_error_by_density.png")
    return "MAE by density " + ", ".join(f"{k} {v['mae']:.2f}" for k, v in meta["bins"].items())


def transfer_few_labels(docs: Path, out: Path) -> str:
    data = load_json(docs, FEW_LABELS)
    series: dict[str, list[tuple[int, float]]] = {}
    for row in data["rows"]:
        name = row["regime"] if not row["synth"] else f"{row['regime']} ({row['synth']} images)"
        series.setdefault(name, []).append((row["n"], row["metrics"]["mae"]))
    fig, ax = figure()
    for name, points in series.items():
        points.sort()
        ax.plot([n for n, _ in points], [m for _, m in points], marker="o", label=name)
    ax.set_xscale("log")
    ns = sorted({n for points in series.values() for n, _ in points})
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set(xlabel="labelled real training images", ylabel="test MAE (nuclei per image)",
           title="Few labels: where synthetic data pays off (IDCIA test split)")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    save(fig, out / "transfer_few_labels.png")
    best = {n: min((m, name) for name, pts in series.items() for k, m in pts if k == n) for n in ns}
    return "; ".join(f"{n} labels: best {name} {m:.2f}" for n, (m, name) in best.items())


def speed_images_per_s(docs: Path, out: Path) -> str:
    labels, onnx, torch = [], [], []
    for label, name, _ in SPEED:
        rows = {r["engine"].split()[0]: r["images_per_s"] for r in load_json(docs, name)["rows"]}
        labels.append(label)
        onnx.append(rows.get("onnx", 0.0))
        torch.append(rows.get("torch", 0.0))
    fig, ax = figure(7.0, 4.2)
    y = range(len(labels))
    ax.barh([i + 0.2 for i in y], onnx, height=0.4, color="tab:blue", label="cellxfer, ONNX Runtime (CPU)")
    ax.barh([i - 0.2 for i in y], torch, height=0.4, color="tab:gray", label="cellxfer, torch (CPU)")
    ax.axvline(STARDIST_QUOTED, color="tab:red", ls="--", label=f"StarDist, {STARDIST_QUOTED} images/s (quoted)")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="IDCIA images (600 x 800) per s in count's loop, 2 CPU cores",
           title="Counting speed (no Cellpose figure: not measured here)")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, out / "speed_images_per_s.png")
    return f"default counter onnx {onnx[0]:.2f} images/s = {onnx[0] / STARDIST_QUOTED:.1f}x StarDist's quoted rate"


def slide_rows(docs: Path, files, version: str) -> list[dict]:
    rows = [r for name in files for r in load_json(docs, name)["rows"] if r["version"] == version]
    return sorted(rows, key=lambda r: r["megapixels"])


def slides_memory_speed(docs: Path, out: Path) -> str:
    fig, (rss, speed) = _two_panels()
    for (label, files, version), marker in zip(SLIDES, "os^"):
        rows = slide_rows(docs, files, version)
        mp = [r["megapixels"] for r in rows]
        style = "-" if len(set(mp)) == len(mp) else ""  # several shapes of one size: points, not a line
        for ax, key in ((rss, "peak_rss_mb"), (speed, "mp_per_s")):
            ax.plot(mp, [r[key] for r in rows], marker=marker, ls=style, label=label)
            for r in rows if not style else ():
                ax.annotate(shape(r), (r["megapixels"], r[key]), fontsize=6, xytext=(4, 2), textcoords="offset points")
    for ax in (rss, speed):
        ax.set_xscale("log")
        ax.set_xlabel("slide size (megapixels, uint16)")
        ax.set_ylim(bottom=0)
        ax.title.set_fontsize(10)
    rss.set(ylabel="peak RSS (MB)", title="Peak memory against slide size")
    speed.set(ylabel="megapixels per second", title="Speed against slide size (2 CPU cores)")
    rss.legend(fontsize=7)
    save(fig, out / "slides_memory_speed.png")
    now = slide_rows(docs, SLIDES[0][1], SLIDES[0][2])
    return "current: " + ", ".join(f"{shape(r)} {r['peak_rss_mb']:.0f} MB {r['mp_per_s']:.1f} MP/s" for r in now)


def shape(row: dict) -> str:
    """``HEIGHTk x WIDTHk`` of a bench_slide row (older rows have no height: square)."""
    return f"{(row.get('height') or row['side']) // 1000}k x {row['side'] // 1000}k"


def _two_panels():
    fig, axes = figure(10.0, 4.2)
    fig.delaxes(axes)
    return fig, fig.subplots(1, 2)


def translator_layer_sweep(docs: Path, out: Path) -> str:
    fig, axes = _two_panels()
    lines = []
    for ax, (label, name) in zip(axes, SWEEPS):
        shifts = load_json(docs, name)["shifts"]
        for shift, result in shifts.items():
            layers = sorted((int(k), v) for k, v in result["pearson"].items() if k != "none")
            line, = ax.plot([k for k, _ in layers], [v for _, v in layers], marker="o", ms=3, label=shift)
            ax.axhline(result["pearson"]["none"], color=line.get_color(), ls=":", lw=1)
        ax.set(xlabel="adapted layer L (16 = output-layer ADDA)", ylabel="Pearson r, predicted vs true",
               title=label, ylim=(-0.3, 1.0))
        ax.title.set_fontsize(10)
        best = {s: max((v, k) for k, v in r["pearson"].items()) for s, r in shifts.items()}
        lines.append(f"{label}: " + ", ".join(f"{s} best {k} {v:.3f}" for s, (v, k) in best.items()))
    axes[0].legend(fontsize=7, title="shift (dotted: not adapted)", title_fontsize=7)
    save(fig, out / "translator_layer_sweep.png")
    return "; ".join(lines)


PLOTS = {
    "accuracy_pred_vs_true": accuracy_pred_vs_true,
    "accuracy_error_by_density": accuracy_error_by_density,
    "transfer_few_labels": transfer_few_labels,
    "speed_images_per_s": speed_images_per_s,
    "slides_memory_speed": slides_memory_speed,
    "translator_layer_sweep": translator_layer_sweep,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "data", help="where the benchmark JSON files are")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "plots", help="folder for the PNG files")
    ap.add_argument("--only", nargs="*", choices=sorted(PLOTS), help="draw only these plots")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.only or PLOTS:
            print(f"{args.out / (name + '.png')}: {PLOTS[name](args.docs, args.out)}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
