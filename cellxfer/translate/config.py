"""The typed settings of ``train-translate`` (:class:`TrainTranslateConfig`) and ``adapt`` (:class:`AdaptConfig`).

numpy- and torch-free, so the commands take their option defaults from them without slowing ``cellxfer
--help``: a default lives here only. The training is :mod:`cellxfer.translate.train` and
:mod:`cellxfer.translate.adapt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cellxfer.bounds import BATCH, DEVICE, LR, PERCENTILES, SEED, STEPS, OutOfRange, check_fields, ranged
from cellxfer.errors import InputError

if TYPE_CHECKING:
    from cellxfer.translator.model import TranslatorMeta


@dataclass(frozen=True)
class TrainTranslateConfig:
    pairs: str
    out: str
    steps: int = ranged(2000, **STEPS)
    batch_size: int = ranged(1, **BATCH)
    size: int = ranged(256, ge=32, le=8192, multiple_of=32)  # and a multiple of 2**num_downs
    ngf: int = ranged(64, ge=1, le=1024, multiple_of=1)
    ndf: int = ranged(64, ge=1, le=1024, multiple_of=1)
    num_downs: int = ranged(8, ge=5, le=13, multiple_of=1)  # the pix2pix UNet needs 5; 2**num_downs <= size
    d_layers: int = ranged(3, ge=1, le=8, multiple_of=1)
    norm: str = ranged("batch", choices=("batch", "instance"))
    dropout: bool = True
    lr: float = ranged(2e-4, **LR)
    beta1: float = ranged(0.5, ge=0, lt=1)
    lambda_l1: float = ranged(100.0, ge=0, le=1e6)
    lambda_gan: float = ranged(1.0, ge=0, le=1e6)  # 0: pure L1 regression, no discriminator step
    gan_mode: str = ranged("vanilla", choices=("vanilla", "lsgan"))
    augment: str = ranged("flip", choices=("flip", "dihedral"))  # flip (pix2pix: horizontal flips) | dihedral (8 rotations/reflections)
    input_norm: tuple[float, float] = ranged((0.5, 99.5), **PERCENTILES)
    target_norm: tuple[float, float] = ranged((0.5, 99.5), **PERCENTILES)
    checkpoint_every: int = ranged(500, **STEPS)
    val_pairs: str | None = None  # pairs scored every val_every steps; the best step's generator is the translator
    val_every: int = ranged(0, ge=0, le=10**7, multiple_of=1)  # 0 without val_pairs
    seed: int = ranged(0, **SEED)
    threads: int = ranged(0, ge=0, le=1024, multiple_of=1)  # 0: one per core
    device: str = ranged("auto", **DEVICE)  # auto (cuda when there is one), cpu, cuda[:N]; under torchrun cuda means nccl

    def __post_init__(self):
        self.check()

    def meta(self) -> "TranslatorMeta":
        from cellxfer.translator.model import TranslatorMeta

        return TranslatorMeta(ngf=self.ngf, num_downs=self.num_downs, norm=self.norm, dropout=self.dropout,
                              size=self.size, input_norm=tuple(self.input_norm), target_norm=tuple(self.target_norm))

    def check(self) -> None:
        """Each field within its range (:mod:`cellxfer.bounds`), and the relations between them."""
        check_fields(self)
        m = 2 ** self.num_downs
        if self.size % m:
            raise OutOfRange(f"--size {self.size}: must be a multiple of 2**num-downs = {m} (e.g. 256 for 8 down blocks)")
        if self.lambda_gan == self.lambda_l1 == 0:
            raise OutOfRange(f"--lambda-gan {self.lambda_gan} / --lambda-l1 {self.lambda_l1}: weights must be >= 0 and not both 0")
        if (self.val_pairs is None) != (self.val_every <= 0):
            raise OutOfRange("--val-pairs and --val-every go together: give the validation pairs folder and the steps "
                             "between scores (> 0)")


@dataclass(frozen=True)
class AdaptConfig:
    model: str
    source: str
    target: str
    out: str
    layer: int = ranged(16, ge=1, le=26, multiple_of=1)  # 26: 2 x the largest num_downs; at most the translator's 2 x num_downs (checked when it is read)
    steps: int = ranged(500, **STEPS)
    batch_size: int = ranged(4, **BATCH)
    size: int = ranged(0, ge=0, le=8192, multiple_of=1)  # crop side; 0 = the translator's training size
    lr: float = ranged(2e-4, **LR)
    lr_d: float = ranged(2e-4, **LR)
    beta1: float = ranged(0.5, ge=0, lt=1)
    ndf: int = ranged(64, ge=1, le=1024, multiple_of=1)
    d_layers: int = ranged(3, ge=1, le=8, multiple_of=1)
    gan_mode: str = ranged("vanilla", choices=("vanilla", "lsgan"))
    holdout: float = ranged(0.25, ge=0, lt=1)  # share of labelled target pairs kept out of adaptation for evaluation
    eval_pairs: str | None = None  # labelled target pairs for evaluation (instead of a holdout)
    train: str = ranged("upto", choices=("upto", "layer"))  # "upto": blocks 1..L (the paper); "layer": block L only (skips stay the source's)
    match: str = ranged("layer", choices=("layer", "skips"))  # "layer": D on layer L only (the paper); "skips": also one D per skip tensor the rest reads
    seed: int = ranged(0, **SEED)
    threads: int = ranged(0, ge=0, le=1024, multiple_of=1)  # 0: one per core
    device: str = ranged("auto", **DEVICE)  # auto (cuda when there is one), cpu, cuda[:N]; under torchrun cuda means nccl

    def __post_init__(self):
        check_fields(self)
        if self.match == "skips" and self.train == "layer":
            raise OutOfRange("--match skips needs --train upto: with --train layer the skips are the source's and cannot move")


@dataclass(frozen=True)
class TranslateConfig:
    """The tiling and output of ``translate`` (``tile`` also of ``evaluate-translator``). ``tile`` None:
    the translator's training size; a given tile is also a multiple of the translator's 2**num_downs.
    ``overlap``: at most half the tile (checked once the translator is read when ``tile`` is None);
    None: 32 px, or half the tile when that is less."""

    tile: int | None = ranged(None, ge=32, le=8192, multiple_of=32)
    overlap: int | None = ranged(None, ge=0, le=4096, multiple_of=1)
    dtype: str = ranged("uint16", choices=("uint16", "uint8", "float32"))

    def __post_init__(self):
        check_fields(self)
        if self.tile is not None and self.overlap is not None:
            check_overlap(self.overlap, self.tile)


def check_overlap(overlap: int, tile: int) -> None:
    """Tiles blend over ``overlap`` pixels on each side: at most half the tile."""
    if overlap > tile // 2:
        raise OutOfRange(f"--overlap {overlap}: must be at most half the tile ({tile // 2} for --tile {tile}); "
                         f"lower --overlap or raise --tile")


@dataclass(frozen=True)
class SplitFieldConfig:
    """``split-field``: the side of the bottom-right test square, the generator depth whose receptive
    field is the margin between parts, and the margin (None: that receptive field)."""

    test_side: int = ranged(480, ge=1, le=100_000, multiple_of=1)
    num_downs: int = ranged(5, ge=1, le=13, multiple_of=1)
    margin: int | None = ranged(None, ge=0, le=100_000, multiple_of=1)

    def __post_init__(self):
        check_fields(self)
