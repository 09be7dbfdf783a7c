"""Running a translator: engines, whole-image translation, evaluation on pairs.

A *runner* maps float32 (N, 1, T, T) in the network range to float32 (N, 1, T, T) in [-1, 1].
Translators run on the same engines as counters, through the engine hook and the one resolution
(:func:`cellxfer.engines.base.load_runner` with the translator :class:`~cellxfer.engines.base.ModelFamily`):
``torch`` runs the generator in eval mode (deterministic: dropout off, batch-norm running stats);
``onnx`` exports it once (parity-checked) into the shared ONNX cache
(:func:`cellxfer.export.onnx.cached_export`: a damaged or foreign cache file is rebuilt with a warning);
``trt`` builds a TensorRT engine from that ONNX file (NVIDIA GPU + the ``trt`` extra; a one-line error
otherwise); ``auto`` picks as ``count`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cellxfer.errors import InputError
from cellxfer.engines.base import ModelFamily
from cellxfer.export.translator import cached_onnx, onnx_translator_meta
from cellxfer.translator.model import TranslatorMeta


def _load_torch(path: Path):
    from cellxfer.translator.model import load_translator

    return load_translator(path)


def _trt_profile(meta: TranslatorMeta) -> tuple[int, tuple[int, int, int]]:
    return meta.in_ch, (meta.size,) * 3


#: Translators (train-translate / adapt run folders) as a model family of the engines.
TRANSLATOR = ModelFamily("translator", _load_torch, onnx_translator_meta, cached_onnx, _trt_profile)


@dataclass
class Translator:
    """A loaded translator: ``run`` (runner), ``meta``, engine name."""

    run: Callable[[np.ndarray], np.ndarray]
    meta: TranslatorMeta
    engine: str

    def translate(self, image: np.ndarray, tile: int | None = None, overlap: int = 32, batch_size: int = 8) -> np.ndarray:
        """Raw 2-D image (any dtype) -> float32 prediction in [-1, 1], same H x W (ramp-blended tiles:
        :class:`cellxfer.counter.splitters.RampTiles`, :func:`cellxfer.count.parts.blend_image`)."""
        from cellxfer.count.parts import RampTiles, blend_image
        from cellxfer.translate.data import normalize

        tile = tile or self.meta.size
        if tile % self.meta.multiple:
            raise InputError(f"--tile {tile}: must be a multiple of {self.meta.multiple} (2**num_downs of this translator)")
        x = normalize(image, self.meta.input_norm)
        return blend_image(self.run, x, RampTiles(tile, overlap), batch_size)


def model_file(model: str | os.PathLike) -> Path:
    """The translator file ``model`` names: an exported ``.onnx``, a ``.safetensors``, or a run folder's."""
    from cellxfer.translator.model import resolve_model

    path = Path(model)
    return path if path.suffix.lower() == ".onnx" and path.is_file() else resolve_model(path)


def load(model: str | os.PathLike, engine: str = "auto", log=lambda s: None, threads: int | None = None,
         device: str = "auto") -> Translator:
    """A translator (run folder, ``.safetensors`` or exported ``.onnx``) on ``engine`` (default auto, as
    every command's ``--engine``; ``torch`` is the parity reference), resolved by the engines' one resolution
    (:func:`cellxfer.engines.base.load_runner`, ``auto`` as in ``count``).
    TensorRT builds fp32 engines for translators (their parity is checked in fp32 only)."""
    from cellxfer.engines.base import load_runner

    path = model_file(model)
    runner = load_runner(path, engine, log=log, family=TRANSLATOR, device=device, threads=threads, fp16=False,
                         batch_size=8, max_batch=8)
    return Translator(runner, runner.meta, runner.label)


def evaluate_pairs(translator: Translator, pairs, on_progress=None, tile: int | None = None) -> list[dict]:
    """Per-pair metrics (see :mod:`.metrics`): ``[{"id", "pearson", "mae", "ssim"}, ...]``."""
    from cellxfer.translate.data import read_pair, to_unit
    from cellxfer.translate.metrics import score

    rows = []
    for pair in pairs:
        s, t = read_pair(pair)
        pred = to_unit(translator.translate(s, tile=tile))
        rows.append({"id": pair.id, **score(pred, t, translator.meta.target_norm)})
        if on_progress:
            on_progress(1)
    return rows


METRICS = ("pearson", "mae", "ssim")


def summarize(rows: list[dict]) -> dict[str, float]:
    """The mean of each metric over the rows where it is defined (Pearson is not for a constant image)."""
    out = {}
    for k in METRICS:
        values = [r[k] for r in rows if np.isfinite(r[k])]
        out[k] = float(np.mean(values)) if values else float("nan")
    return out


def defined(rows: list[dict]) -> dict[str, int]:
    """How many rows each mean of :func:`summarize` is over."""
    return {k: sum(1 for r in rows if np.isfinite(r[k])) for k in METRICS}


def write_metrics_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """Per-image metrics of :func:`evaluate_pairs` as ``id,pearson,mae,ssim`` (6 decimals), written atomically."""
    from cellxfer.atomic import write_text

    lines = ["id,pearson,mae,ssim"] + [f"{r['id']},{r['pearson']:.6f},{r['mae']:.6f},{r['ssim']:.6f}" for r in rows]
    write_text(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class TranslatorEvaluation:
    """What :func:`evaluate_translator` measured: the engine that ran, the per-pair metrics
    (``{"id", "pearson", "mae", "ssim"}``, as :func:`evaluate_pairs`) and their means (:func:`summarize`)."""

    engine: str
    rows: list
    mean: dict


def evaluate_translator(model: str | os.PathLike, pairs: str | os.PathLike, engine: str = "auto",
                        tile: int | None = None, csv: str | os.PathLike | None = None, on_progress=None,
                        log=lambda s: None) -> TranslatorEvaluation:
    """``evaluate-translator``: the translator ``model`` on ``engine`` (:func:`load`) over the pairs folder
    ``pairs``; the per-pair metrics are written to ``csv`` when given (:func:`write_metrics_csv`)."""
    from cellxfer.translate.data import list_pairs

    translator = load(model, engine, log=log)
    rows = evaluate_pairs(translator, list_pairs(pairs), on_progress=on_progress, tile=tile)
    if csv is not None:
        write_metrics_csv(rows, csv)
    return TranslatorEvaluation(translator.engine, rows, summarize(rows))


@dataclass(frozen=True)
class TranslateFilesResult:
    """What :func:`translate_files` did: input images found, outputs written, skipped as already there, and
    the inputs that failed (path -> one-line reason)."""

    files: int
    written: int
    skipped: int
    failed: dict
    engine: str = ""  # the engine that ran (translate_images)


def translate_images(model: str | os.PathLike, paths: list[Path], out: Path, engine: str = "auto", log=lambda s: None,
                     **kw) -> TranslateFilesResult:
    """``cellxfer translate``: load the translator ``model`` on ``engine`` (:func:`load`) and translate
    ``paths`` into ``out`` (:func:`translate_files`, ``kw`` its options); the result names the engine.

    ``out`` is a run folder (:class:`cellxfer.runs.RunFolder`): its ``manifest.json`` records the model (by
    content hash), tile, overlap and dtype, so a rerun with the same ones continues (finished images kept) and
    one with others is refused, naming each difference, unless ``overwrite``: a folder never mixes the
    translations of two models or settings. The engine may change (every engine is parity-checked)."""
    from dataclasses import asdict, replace

    from cellxfer.manifest import read_manifest
    from cellxfer.runs import RunFolder
    from cellxfer.translate.config import check_overlap

    targets = translation_targets(paths, out, inputs=[model])  # refused before the translator is loaded
    translator = load(model, engine, log=log)
    tile = kw.get("tile") or translator.meta.size
    if kw.get("overlap") is None:  # not given: 32 px, at most half the tile
        kw["overlap"] = min(32, tile // 2)
    check_overlap(kw["overlap"], tile)
    config = {"tile": tile, "overlap": kw["overlap"], "dtype": kw.get("dtype", "uint16")}
    previous = read_manifest(Path(out)) or {}
    names = {t.name for t in targets.values()} | set(previous.get("outputs", []) if previous.get("stage") == "translate" else [])
    with RunFolder(out, "translate", {"config": config, "seed": None}, own=sorted(names), inputs=[model_file(model)],
                   protect=list(targets), overwrite=kw.get("overwrite", False)) as run:
        manifest = run.write_manifest(complete=False, outputs=sorted(names))  # --overwrite deletes all of them
        result = replace(translate_files(translator, paths, out, inputs=[model], **kw), engine=translator.engine)
        summary = {k: v for k, v in asdict(result).items() if k != "failed"}
        run.write_manifest(manifest, complete=True, summary={**summary, "failed": len(result.failed)},
                           outputs=sorted(n for n in names if (Path(out) / n).is_file()))
    return result


def translation_targets(paths: list[Path], out: Path, inputs=()) -> dict[Path, Path]:
    """``{input image: out/<stem>.tif}`` for every image of ``paths`` (files or folders). Refused with one
    line: a path that does not exist, two inputs written to one name (``a.tif`` and ``a.png``), and an
    output that would replace an input or one of ``inputs`` (:mod:`cellxfer.outputs`), even with --overwrite."""
    from cellxfer.outputs import refuse_aliases, refuse_collisions
    from cellxfer.translate.data import list_images

    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():  # the whole input is wrong, not one of its files: nothing is translated
            raise InputError(f"{p}: no such file or folder; give image files or folders of images")
        files.extend(list_images(p) if p.is_dir() else [p])
    targets = {f: Path(out) / f"{f.stem}.tif" for f in files}
    refuse_collisions(targets, "-o")
    refuse_aliases([("-o", t) for t in targets.values()], [*files, *inputs])
    return targets


def translation_done(target: Path, source: Path) -> bool:
    """Whether ``target`` is a finished translation of ``source``: it decodes and has the source's size. A
    damaged one (cut short by a full disk or a copy) is reported and translated again, not trusted."""
    from cellxfer.console import warn
    from cellxfer.imageio import image_shape, read_image

    if not target.is_file():
        return False
    try:
        got = read_image(target).shape
    except InputError as exc:
        warn(f"{target}: does not decode ({str(exc).removeprefix(f'{target}: ')}); translating {source} again")
        return False
    want = image_shape(source)
    if want is not None and tuple(got) != tuple(want):
        warn(f"{target}: is {got[1]} x {got[0]} pixels, {source} is {want[1]} x {want[0]}; translating it again")
        return False
    return True


def translate_files(translator: Translator, paths: list[Path], out: Path, dtype: str = "uint16", tile: int | None = None,
                    overlap: int = 32, overwrite: bool = False, on_progress=None, inputs=()) -> TranslateFilesResult:
    """Translate every image of ``paths`` (files or folders) into ``out/<stem>.tif``
    (:func:`translation_targets`); finished outputs are skipped on rerun unless ``overwrite``; per-file
    failures are collected, not raised."""
    from cellxfer.imageio import read_image, write_tiff
    from cellxfer.translate.data import to_dtype

    targets = translation_targets(paths, out, inputs)
    files = list(targets)
    written, skipped, failed = 0, 0, {}
    for f in files:
        target = targets[f]
        if not overwrite and translation_done(target, f):
            skipped += 1
        else:
            try:
                write_tiff(target, to_dtype(translator.translate(read_image(f), tile=tile, overlap=overlap), dtype))
                written += 1
            except InputError as exc:
                failed[str(f)] = str(exc)
        if on_progress:
            on_progress(1)
    return TranslateFilesResult(len(files), written, skipped, failed)
