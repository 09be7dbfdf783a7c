"""The typed settings of a counter training run (``train-count``, ``adapt-count``): :class:`TrainConfig`.

numpy- and torch-free, so the commands take their option defaults from it without slowing ``cellxfer
--help`` (a default lives here only). The training itself is :func:`cellxfer.train.counter.train_counter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cellxfer.bounds import BATCH, DEVICE, LR, SEED, STEPS, OutOfRange, check_fields, ranged
from cellxfer.errors import InputError

if TYPE_CHECKING:
    from cellxfer.counter.model import Normalization

#: The training regimes (see :mod:`cellxfer.train.sampler` for what each batch holds).
REGIMES = ("supervised", "synthetic", "finetune", "dual", "dacs", "adapt")
LR_SCHEDULES = ("cosine", "constant")

#: ``Normalization`` field -> the ``TrainConfig`` field (and train-count option) that sets it; every field but
#: ``eps`` (tests/test_option_vocabulary.py keeps the two in step)
NORM_FIELDS = {"low": "norm_low", "high": "norm_high", "clip": "norm_clip", "min_snr": "norm_min_snr",
               "min_levels": "norm_min_levels", "max_top": "norm_max_top", "lift": "norm_lift"}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Paths are cell datasets or IDCIA-layout folders."""

    regime: str = ranged("supervised", choices=REGIMES)
    out: Path = Path("run")
    real: Optional[Path] = None        # labelled real images (supervised, finetune, dual, dacs)
    unlabeled: Optional[Path] = None   # adapt: unlabelled target images (cellxfer.train.adapt); never their labels
    synthetic: Optional[Path] = None   # labelled synthetic images (synthetic, finetune, dual, dacs)
    val: Optional[Path] = None         # labelled validation images, counted whole with windows
    arch: str = "efficientnet_b0"      # a registered architecture or a timm name (checked when it is built)
    pretrained: Optional[Path] = None  # local weights file; None = from scratch
    epochs: int = ranged(50, **STEPS)  # epochs on real data (synthetic epochs for regime synthetic)
    pre_epochs: Optional[int] = ranged(None, ge=0, le=10**7, multiple_of=1)  # finetune: synthetic epochs before the real ones (default: epochs)
    batch_size: int = ranged(16, **BATCH)
    lr: float = ranged(1e-4, **LR)
    lr_schedule: str = ranged("constant", choices=LR_SCHEDULES)  # the paper's; "cosine": lr x (1 + cos(pi x step / total steps)) / 2
    ema: float = ranged(0.0, ge=0, lt=1)  # > 0: validate and save an exponential moving average of the weights (decay)
    weight_decay: float = ranged(1e-5, ge=0, le=1)
    crop: int = ranged(256, ge=16, le=8192, multiple_of=8)  # training crop side = evaluation window
    flips: bool = True
    rotations: bool = True
    cutmix_alpha: float = ranged(1.0, gt=0, le=1000)
    mix_prob: float = ranged(0.5, ge=0, le=1)
    edge_prob: float = ranged(0.25, ge=0, le=1)  # share of crops zero-padded like border windows (see windows.py)
    zoom: Optional[tuple[float, float]] = ranged(None, ge=0.125, le=8, pair=True, equal_ok=True)  # scale randomisation: crops resized by a log-uniform factor in this range
    norm_low: float = ranged(0.5, ge=0, le=100, option="--input-norm")  # intensity normalisation percentiles, stored with the model
    norm_high: float = ranged(99.5, ge=0, le=100, option="--input-norm")
    norm_clip: Optional[float] = ranged(None, gt=0)  # upper bound of normalised values (Normalization.clip), stored with the model
    norm_min_snr: Optional[float] = ranged(None, gt=0)  # divisor floor in noise SDs (Normalization.min_snr), stored with the model
    norm_min_levels: Optional[float] = ranged(None, gt=0)  # divisor floor in grey-level steps (Normalization.min_levels), stored with the model
    norm_max_top: Optional[float] = ranged(None, gt=0)  # bound of the normalised 99.9th percentile (Normalization.max_top), stored with the model
    norm_lift: Optional[float] = ranged(None, gt=0, le=1)  # power of the mid-tones' lift in fields of mixed brightness (Normalization.lift), stored with the model
    max_steps_per_epoch: Optional[int] = ranged(None, **STEPS)
    val_every: int = ranged(1, **STEPS)
    exclude: tuple[str, ...] = ()
    seed: int = ranged(0, **SEED)
    init_head_bias: bool = True        # start the output bias at the mean training crop count
    sigma: float = ranged(3.0, gt=0, le=100)  # density architectures: Gaussian kernel sigma of the targets, pixels
    count_weight: float = ranged(0.0, ge=0, le=1e6)  # density architectures: + weight x mean over crops of (sum pred - sum target)^2
    photometric: float = ranged(0.0, ge=0, le=10)  # strength of the intensity augmentation of crops (train.data.photometric); 0 = off
    pseudo_peak: float = ranged(0.0, ge=0, le=100)  # adapt: pseudo-density kept only near peaks above this x one kernel's height (train.adapt.confident_density)
    diameter: Optional[str] = None     # adapt: --diameter policy the target images are resized by, as in count (cellxfer.scale)
    resume: bool = False               # ignored, kept for old callers: a rerun with the same settings continues anyway
    overwrite: bool = False
    device: str = ranged("auto", **DEVICE)  # auto: cuda when there is one (cellxfer.train.distributed)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Each field within its range (:mod:`cellxfer.bounds`), and LOW below HIGH of --input-norm."""
        check_fields(self)
        if not self.norm_low < self.norm_high:
            raise OutOfRange(f"--input-norm {self.norm_low:g}:{self.norm_high:g}: LOW must be below HIGH (e.g. 0.5:99.5)")

    def normalization(self) -> "Normalization":
        """The input normalisation the trained model records (its fields from :data:`NORM_FIELDS`)."""
        from cellxfer.counter.model import Normalization

        return Normalization(**{k: getattr(self, f) for k, f in NORM_FIELDS.items()})

    @staticmethod
    def norm_options(normalization) -> dict:
        """The ``norm_*`` fields that make ``normalization`` (:meth:`normalization`'s inverse): what a run that
        must keep a model's normalisation (``adapt-count``) is given."""
        return {f: getattr(normalization, k) for k, f in NORM_FIELDS.items()}

    def total_epochs(self) -> int:
        return self.epochs + (self.pre() if self.regime == "finetune" else 0)

    def pre(self) -> int:
        return self.epochs if self.pre_epochs is None else self.pre_epochs

    def halves(self) -> tuple[str, str] | None:
        """The two kinds of crop every batch is split between, half each (:mod:`cellxfer.train.sampler`), else None:
        ``dual`` (real, synthetic), ``dacs`` (synthetic, mixed) and ``adapt`` given ``--synthetic`` (synthetic,
        target). Such a run needs an even batch of at least 2 (:meth:`validate`), never one silently grown to 2
        or cut to the even size below it."""
        if self.regime == "adapt" and self.synthetic is None:
            return None
        return {"dual": ("real", "synthetic"), "dacs": ("synthetic", "mixed"), "adapt": ("synthetic", "target")}.get(self.regime)

    def validate(self) -> None:
        """:meth:`check`, and what the regime needs (its inputs, a batch that holds both domains, CUDA)."""
        self.check()
        needs_real = self.regime not in ("synthetic", "adapt")
        needs_syn = self.regime not in ("supervised", "adapt")
        if self.regime == "adapt":
            self._validate_adapt()
        elif self.unlabeled is not None:
            raise InputError("unlabelled target images are for adapt-count; drop --unlabeled")
        if needs_real and self.real is None:
            raise InputError(f"--regime {self.regime} trains on real images; pass --real DIR (a labelled dataset)")
        if needs_syn and self.synthetic is None:
            raise InputError(f"--regime {self.regime} trains on synthetic images; pass --synthetic DIR (e.g. from `cellxfer synth`)")
        if self.regime == "synthetic" and self.real is not None:
            raise InputError("--regime synthetic uses no real label; drop --real (give real images as --val to watch them)")
        halves = self.halves()
        if halves is not None and (self.batch_size < 2 or self.batch_size % 2):
            raise InputError(f"--batch-size {self.batch_size}: every batch here is half {halves[0]}, half {halves[1]} "
                             f"crops; give an even --batch-size, 2 or more")
        refuse_val_in_training(self.val, {"--real": self.real, "--synthetic": self.synthetic, "--unlabeled": self.unlabeled})
        if self.device != "cpu":
            import torch

            if self.device.startswith("cuda") and not torch.cuda.is_available():
                raise InputError(f"--device {self.device}: no CUDA GPU is visible to torch; use --device cpu")

    def _validate_adapt(self) -> None:
        if self.unlabeled is None or self.pretrained is None:
            raise InputError("adapt-count needs --model COUNTER (the counter to adapt) and --unlabeled DIR (target images)")
        if self.real is not None:
            raise InputError("adapt-count uses no real label; drop --real (give labelled images as --val to watch them)")
        if not 0 < self.ema < 1:
            raise InputError(f"--ema {self.ema}: adapt-count's teacher is the moving average of the weights; "
                             f"give a decay in (0, 1), e.g. 0.99")
        refuse_labelled_overlap(self.unlabeled, {"--val": self.val, "--synthetic": self.synthetic})


def _overlaps(a: Path, b: Path | None) -> bool:
    """``a`` is, contains or lies inside ``b`` (resolved: by any name)."""
    if b is None:
        return False
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or b in a.parents or a in b.parents


def refuse_val_in_training(val: Path | None, training: dict[str, Path | None]) -> None:
    """:class:`InputError` when the validation set is a training input (option name -> path), by any name or
    as a copy (every validation image byte-identical to one of the training set's): the best epoch would be
    picked, and its MAE reported, on images the run trains on; a warning when only some are. (A dataset
    nested in another is not read by it: a dataset is read from its images/ and points/.)"""
    fix = "give held-out labelled images as --val (another folder), or leave --val out"
    for option, path in training.items():
        if val is None or path is None:
            continue
        if Path(val).resolve() == Path(path).resolve():
            raise InputError(f"--val {val} is the {option} set {path}: the best epoch would be picked on images it trains "
                             f"on; {fix}")
        shared, of = _shared_images(Path(val), Path(path))
        if shared and len(shared) == of:
            raise InputError(f"--val {val} holds the same images as the {option} set {path} (all {of}, byte for byte): "
                             f"the best epoch would be picked on images it trains on; {fix}")
        if shared:
            from cellxfer.console import warn

            warn(f"--val {val}: {len(shared)} of its {of} images are also in the {option} set {path} "
                 f"({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}): their errors flatter the validation MAE")


def _shared_images(val: Path, training: Path) -> tuple[list[str], int]:
    """``(names of the image files of val whose bytes are an image file of training's, how many val has)``; each
    a dataset (its images/) or a folder of images. Only files of equal size are hashed."""
    from cellxfer.manifest import sha256_file

    val_files, train_files = _image_files(val), _image_files(training)
    val_sizes, train_sizes = ({p.stat().st_size for p in files} for files in (val_files, train_files))
    train_hashes = {sha256_file(p) for p in train_files if p.stat().st_size in val_sizes}
    shared = [p.name for p in val_files if p.stat().st_size in train_sizes and sha256_file(p) in train_hashes]
    return shared, len(val_files)


def _image_files(root: Path) -> list[Path]:
    """The image files of a dataset's images/ or of a folder of images (adapt-count's target); none when it
    holds none or is not there (reported where it is read)."""
    from cellxfer.inputs import expand_inputs

    folder = root / "images" if (root / "images").is_dir() else root
    try:
        files, _ = expand_inputs([folder])
    except InputError:
        return []
    return [p for p in files if p.is_file()]


def refuse_labelled_overlap(unlabeled: Path, labelled: dict[str, Path | None]) -> None:
    """:class:`InputError` when the target path is, contains or lies inside a labelled input (option
    name -> path): its labels would be in the run."""
    for option, path in labelled.items():
        if _overlaps(unlabeled, path):
            raise InputError(f"--unlabeled {unlabeled} overlaps {option} {path}: adaptation must not see labels of "
                             f"its target images; give the target images and the labelled {option} images as separate folders")
