"""The typed settings of a counter training run (``train-count``, ``adapt-count``): :class:`TrainConfig`.

numpy- and torch-free, so the commands take their option defaults from it without slowing ``cellxfer
--help`` (a default lives here only). The training itself is :func:`cellxfer.train.counter.train_counter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cellxfer.errors import InputError

if TYPE_CHECKING:
    from cellxfer.counter.model import Normalization

#: The training regimes (see :mod:`cellxfer.train.sampler` for what each batch holds).
REGIMES = ("supervised", "synthetic", "finetune", "dual", "dacs", "adapt")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Paths are cell datasets or IDCIA-layout folders."""

    regime: str = "supervised"
    out: Path = Path("run")
    real: Optional[Path] = None        # labelled real images (supervised, finetune, dual, dacs)
    unlabeled: Optional[Path] = None   # adapt: unlabelled target images (cellxfer.train.adapt); never their labels
    synthetic: Optional[Path] = None   # labelled synthetic images (synthetic, finetune, dual, dacs)
    val: Optional[Path] = None         # labelled validation images, counted whole with windows
    arch: str = "efficientnet_b0"
    pretrained: Optional[Path] = None  # local weights file; None = from scratch
    epochs: int = 50                   # epochs on real data (synthetic epochs for regime synthetic)
    pre_epochs: Optional[int] = None   # finetune: synthetic epochs before the real ones (default: epochs)
    batch_size: int = 16
    lr: float = 1e-4
    lr_schedule: str = "constant"      # the paper's; "cosine": lr x (1 + cos(pi x step / total steps)) / 2
    ema: float = 0.0                   # > 0: validate and save an exponential moving average of the weights (decay)
    weight_decay: float = 1e-5
    crop: int = 256                    # training crop side = evaluation window
    flips: bool = True
    rotations: bool = True
    cutmix_alpha: float = 1.0
    mix_prob: float = 0.5
    edge_prob: float = 0.25            # share of crops zero-padded like border windows (see windows.py)
    zoom: Optional[tuple[float, float]] = None  # scale randomisation: crops resized by a log-uniform factor in this range
    norm_low: float = 0.5              # intensity normalisation percentiles, stored with the model
    norm_high: float = 99.5
    norm_clip: Optional[float] = None  # upper bound of normalised values (Normalization.clip), stored with the model
    norm_min_snr: Optional[float] = None  # divisor floor in noise SDs (Normalization.min_snr), stored with the model
    max_steps_per_epoch: Optional[int] = None
    val_every: int = 1
    exclude: tuple[str, ...] = ()
    seed: int = 0
    init_head_bias: bool = True        # start the output bias at the mean training crop count
    sigma: float = 3.0                 # density architectures: Gaussian kernel sigma of the targets, pixels
    count_weight: float = 0.0          # density architectures: + weight x mean over crops of (sum pred - sum target)^2
    photometric: float = 0.0           # strength of the intensity augmentation of crops (train.data.photometric); 0 = off
    pseudo_peak: float = 0.0           # adapt: pseudo-density kept only near peaks above this x one kernel's height (train.adapt.confident_density)
    diameter: Optional[str] = None     # adapt: --diameter policy the target images are resized by, as in count
    resume: bool = False               # ignored, kept for old callers: a rerun with the same settings continues anyway
    overwrite: bool = False
    device: str = "auto"               # auto: cuda when there is one (cellxfer.train.distributed)
    extra: dict = field(default_factory=dict)

    def normalization(self) -> "Normalization":
        """The input normalisation the trained model records."""
        from cellxfer.counter.model import Normalization

        return Normalization(low=self.norm_low, high=self.norm_high, clip=self.norm_clip, min_snr=self.norm_min_snr)

    def total_epochs(self) -> int:
        return self.epochs + (self.pre() if self.regime == "finetune" else 0)

    def pre(self) -> int:
        return self.epochs if self.pre_epochs is None else self.pre_epochs

    def validate(self) -> None:
        if self.regime not in REGIMES:
            raise InputError(f"--regime {self.regime}: unknown; use one of {', '.join(REGIMES)}")
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
        if self.batch_size < (2 if self.regime in ("dual", "dacs") else 1):
            raise InputError(f"--batch-size {self.batch_size} is too small for regime {self.regime}")
        for name in ("epochs", "crop", "val_every"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise InputError(f"--{name.replace('_', '-')} must be positive")
        if self.count_weight < 0:
            raise InputError(f"--count-weight {self.count_weight} must be >= 0 (0 = pixel loss only)")
        if not 0 <= self.ema < 1:
            raise InputError(f"--ema {self.ema} must lie in [0, 1) (0 = off; 0.999 is usual)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule {self.lr_schedule}: unknown; use one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.mix_prob <= 1:
            raise InputError(f"--mix-prob {self.mix_prob} must lie in [0, 1]")
        if self.zoom is not None and not (len(self.zoom) == 2 and 0.125 <= self.zoom[0] <= self.zoom[1] <= 8):
            raise InputError(f"--zoom {self.zoom}: give LOW:HIGH with 0.125 <= LOW <= HIGH <= 8 (e.g. 0.5:2)")
        if not 0 <= self.edge_prob <= 1:
            raise InputError(f"--edge-prob {self.edge_prob} must lie in [0, 1]")
        if not 0 <= self.norm_low < self.norm_high <= 100:
            raise InputError("normalisation percentiles need 0 <= low < high <= 100")
        if self.norm_min_snr is not None and not self.norm_min_snr > 0:
            raise InputError(f"--norm-min-snr {self.norm_min_snr} must be > 0 (the divisor floor in noise SDs)")
        if self.norm_clip is not None and not self.norm_clip > 0:
            raise InputError(f"--norm-clip {self.norm_clip} must be > 0 (normalised values above it are clipped)")
        if self.photometric < 0:
            raise InputError(f"--photometric {self.photometric} must be >= 0 (0 = off)")
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
        if not self.pseudo_peak >= 0:
            raise InputError(f"--pseudo-peak {self.pseudo_peak} must be >= 0 (x one kernel's peak height; 0 keeps all the teacher's density)")
        refuse_labelled_overlap(self.unlabeled, {"--val": self.val, "--synthetic": self.synthetic})


def refuse_labelled_overlap(unlabeled: Path, labelled: dict[str, Path | None]) -> None:
    """:class:`InputError` when the target path is, contains or lies inside a labelled input (option
    name -> path): its labels would be in the run."""
    u = Path(unlabeled).resolve()
    for option, path in labelled.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if u == p or p in u.parents or u in p.parents:
            raise InputError(f"--unlabeled {unlabeled} overlaps {option} {path}: adaptation must not see labels of "
                             f"its target images; give the target images and the labelled {option} images as separate folders")
