"""The typed settings of ``train-translate`` (:class:`TrainTranslateConfig`) and ``adapt`` (:class:`AdaptConfig`).

numpy- and torch-free, so the commands take their option defaults from them without slowing ``cellxfer
--help``: a default lives here only. The training is :mod:`cellxfer.translate.train` and
:mod:`cellxfer.translate.adapt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cellxfer.errors import InputError

if TYPE_CHECKING:
    from cellxfer.translator.model import TranslatorMeta


@dataclass(frozen=True)
class TrainTranslateConfig:
    pairs: str
    out: str
    steps: int = 2000
    batch_size: int = 1
    size: int = 256
    ngf: int = 64
    ndf: int = 64
    num_downs: int = 8
    d_layers: int = 3
    norm: str = "batch"
    dropout: bool = True
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    lambda_gan: float = 1.0  # 0: pure L1 regression, no discriminator step
    gan_mode: str = "vanilla"  # vanilla | lsgan
    augment: str = "flip"  # flip (pix2pix: horizontal flips) | dihedral (8 rotations/reflections)
    input_norm: tuple[float, float] = (0.5, 99.5)
    target_norm: tuple[float, float] = (0.5, 99.5)
    checkpoint_every: int = 500
    val_pairs: str | None = None  # pairs scored every val_every steps; the best step's generator is the translator
    val_every: int = 0
    seed: int = 0
    threads: int = 0
    device: str = "auto"  # auto (cuda when there is one), cpu, cuda[:N]; under torchrun cuda means nccl

    def meta(self) -> "TranslatorMeta":
        from cellxfer.translator.model import TranslatorMeta

        return TranslatorMeta(ngf=self.ngf, num_downs=self.num_downs, norm=self.norm, dropout=self.dropout,
                              size=self.size, input_norm=tuple(self.input_norm), target_norm=tuple(self.target_norm))

    def check(self) -> None:
        m = 2 ** self.num_downs
        if self.size % m:
            raise InputError(f"--size {self.size}: must be a multiple of 2**num-downs = {m} (e.g. 256 for 8 down blocks)")
        if self.steps < 0 or self.batch_size < 1:
            raise InputError("--steps must be >= 0 and --batch-size >= 1")
        if self.augment not in ("flip", "dihedral"):
            raise InputError(f"--augment {self.augment!r}: expected flip (horizontal flips) or dihedral (8 rotations/reflections)")
        if self.gan_mode not in ("vanilla", "lsgan"):
            raise InputError(f"--gan-mode {self.gan_mode!r}: expected vanilla or lsgan")
        if self.lambda_gan < 0 or self.lambda_l1 < 0 or self.lambda_gan == self.lambda_l1 == 0:
            raise InputError(f"--lambda-gan {self.lambda_gan} / --lambda-l1 {self.lambda_l1}: weights must be >= 0 and not both 0")
        if (self.val_pairs is None) != (self.val_every <= 0):
            raise InputError("--val-pairs and --val-every go together: give the validation pairs folder and the steps "
                             "between scores (> 0)")


@dataclass(frozen=True)
class AdaptConfig:
    model: str
    source: str
    target: str
    out: str
    layer: int = 16
    steps: int = 500
    batch_size: int = 4
    size: int = 0  # crop side; 0 = the translator's training size
    lr: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    ndf: int = 64
    d_layers: int = 3
    gan_mode: str = "vanilla"
    holdout: float = 0.25  # share of labelled target pairs kept out of adaptation for evaluation
    eval_pairs: str | None = None  # labelled target pairs for evaluation (instead of a holdout)
    train: str = "upto"  # "upto": blocks 1..L (the paper); "layer": block L only (skips stay the source's)
    match: str = "layer"  # "layer": D on layer L only (the paper); "skips": also one D per skip tensor the rest reads
    seed: int = 0
    threads: int = 0
    device: str = "auto"  # auto (cuda when there is one), cpu, cuda[:N]; under torchrun cuda means nccl
