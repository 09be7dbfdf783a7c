"""Parameters of the ``nuclei`` synthesizer (numpy-free, so the CLI can show them without numpy).

Every ``tuple[float, float]`` field is a ``(low, high)`` range: each image draws one value uniformly in
it (``diameter`` and ``photons``: log-uniformly), so a dataset spans the range. On the command line a
range is ``--set diameter=8:12``; a fixed value is ``--set diameter=10:10``. Brightness is expressed in
units of the image's *typical nucleus brightness* (1.0) until the camera model turns it into photons.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellxfer.bounds import OutOfRange, check_fields, ranged

Range = tuple[float, float]

DTYPES = ("uint8", "uint16", "random")


@dataclass(frozen=True)
class NucleiConfig:
    """Nuclei synthesizer parameters (see docs/guide/synth.md)."""

    size: int = ranged(256, ge=16, le=8192, multiple_of=1)  # image side, px
    diameter: Range = ranged((5.0, 100.0), ge=2, le=4096, pair=True, equal_ok=True)  # typical nucleus diameter per image, px, log-uniform, capped at size/2
    diameter_jitter: float = ranged(0.15, ge=0, le=0.5)  # per-cell relative SD of the diameter
    coverage: Range = ranged((0.003, 0.5), ge=0, le=0.9, pair=True, equal_ok=True)  # share of the image area covered by nuclei, log-uniform (uniform if low is 0; low raised to 3 nuclei' worth)
    max_cells: int = ranged(2000, ge=0, le=100_000, multiple_of=1)  # upper clamp of the nucleus count
    clustered: float = ranged(0.5, ge=0, le=1)  # probability an image places cells in 1-6 Gaussian clusters
    overlap: Range = ranged((0.0, 0.3), ge=0, le=1, pair=True, equal_ok=True)  # largest share of a new nucleus' area over earlier nuclei
    elongation: Range = ranged((1.0, 1.8), ge=1, le=5, pair=True, equal_ok=True)  # per-cell axis ratio is drawn in this range
    irregularity: Range = ranged((0.0, 0.15), ge=0, le=0.3, pair=True, equal_ok=True)  # amplitude of radial harmonics k=2..5 of the outline
    texture: Range = ranged((0.0, 0.4), ge=0, le=1, pair=True, equal_ok=True)  # chromatin texture amplitude (relative SD)
    grain: Range = ranged((0.0, 1.0), ge=0, le=1, pair=True, equal_ok=True)  # share of fine chromatin grain (~d/20) in the texture, the rest coarse (~d/6)
    rim: Range = ranged((0.0, 0.6), ge=0, le=3, pair=True, equal_ok=True)  # brightening at the nuclear edge (peripheral chromatin), x the centre
    nucleoli: float = ranged(0.3, ge=0, le=1)  # probability a nucleus shows 1-4 nucleoli (dark, 0.1-0.25 d) and chromocentres (bright)
    brightness_sd: float = ranged(0.4, ge=0, le=2)  # per-cell log-normal brightness SD (natural log)
    dim_fraction: Range = ranged((0.0, 0.3), ge=0, le=1, pair=True, equal_ok=True)  # share of nuclei at 0.1-0.4 of the typical brightness
    bright_fraction: Range = ranged((0.0, 0.0), ge=0, le=1, pair=True, equal_ok=True)  # share of nuclei at 2-8x the typical brightness (mitotic, H2B-bright); (0, 0) draws nothing
    defocus_fraction: Range = ranged((0.0, 0.3), ge=0, le=1, pair=True, equal_ok=True)  # share of nuclei blurred by depth (sigma <= 0.3 d)
    bodies: Range = ranged((0.0, 0.05), ge=0, le=1, pair=True, equal_ok=True)  # mitotic/apoptotic figures per nucleus (condensed, bars, daughter pairs), labelled
    debris: Range = ranged((0.0, 0.3), ge=0, le=5, pair=True, equal_ok=True)  # unlabelled specks and fibres per nucleus (+ large dim blobs)
    illumination: Range = ranged((0.0, 0.5), ge=0, le=0.95, pair=True, equal_ok=True)  # depth of the uneven-illumination field (1 - depth at worst)
    background: Range = ranged((0.0, 0.1), ge=0, le=2, pair=True, equal_ok=True)  # background level, x typical nucleus brightness
    blur: Range = ranged((0.5, 2.0), ge=0, le=10, pair=True, equal_ok=True)  # optical PSF Gaussian sigma, px (not scaled with the diameter)
    photons: Range = ranged((20.0, 20000.0), gt=0, le=1e7, pair=True, equal_ok=True)  # photons per typical nucleus brightness, log-uniform
    read_noise: Range = ranged((0.5, 6.0), ge=0, le=1000, pair=True, equal_ok=True)  # camera read-noise SD, camera units
    offset: Range = ranged((0.0, 200.0), ge=0, le=60000, pair=True, equal_ok=True)  # camera offset, camera units
    gain: Range = ranged((0.5, 4.0), gt=0, le=1000, pair=True, equal_ok=True)  # camera units per photon
    saturation: float = ranged(0.15, ge=0, le=1)  # probability that an image saturates (its brightest nucleus pixels clip)
    saturated: Range = ranged((0.003, 0.15), gt=0, le=1, pair=True, equal_ok=True)  # share of the nucleus pixels that clip in a saturated image, log-uniform
    pressed: float = ranged(0.5, ge=0, le=1)  # probability that an image's touching nuclei flatten against each other (else they add up)
    #: the image is rendered at side size / f (nuclei diameter / f) and resized by f (bilinear, antialiased),
    #: f drawn log-uniformly here: the smoothing, correlated noise and blur of an image ``count`` has resized
    #: to the sizes its counter knows; 0.1 .. 10 (1:1 = no resizing)
    rescale: Range = ranged((1.0, 1.0), ge=0.1, le=10, pair=True, equal_ok=True)
    dtype: str = ranged("random", choices=DTYPES)  # output bit depth: "uint8", "uint16" or "random" (each image picks one)
    #: whether clearly defocused nuclei (blur sigma above DEFOCUS_LABEL x their diameter) are labelled cells.
    #: Annotation conventions differ: IDCIA's annotators marked only in-focus nuclei, so a counter meant to
    #: count as they do trains with ``label_defocused=false`` (the nuclei are still drawn, as negatives).
    label_defocused: bool = True
    #: with ``label_defocused=false``: blur sigma, as a fraction of the nucleus diameter, above which a
    #: defocused nucleus is a negative; 0 .. 0.3 (defocus blur is drawn up to 0.3)
    defocus_negative: float = ranged(0.1, ge=0, le=0.3)

    def __post_init__(self):
        check_fields(self)
        if not isinstance(self.label_defocused, bool):
            raise OutOfRange(f"--label-defocused {self.label_defocused!r}: must be true or false")
