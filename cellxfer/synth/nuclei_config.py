"""Parameters of the ``nuclei`` synthesizer (numpy-free, so the CLI can show them without numpy).

Every ``tuple[float, float]`` field is a ``(low, high)`` range: each image draws one value uniformly in
it (``diameter`` and ``photons``: log-uniformly), so a dataset spans the range. On the command line a
range is ``--set diameter=8:12``; a fixed value is ``--set diameter=10:10``. Brightness is expressed in
units of the image's *typical nucleus brightness* (1.0) until the camera model turns it into photons.
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]

DTYPES = ("uint8", "uint16", "random")


@dataclass(frozen=True)
class NucleiConfig:
    """Nuclei synthesizer parameters (see docs/guide/synth.md)."""

    size: int = 256  # image side, px; 16 .. 8192
    diameter: Range = (5.0, 100.0)  # typical nucleus diameter per image, px, log-uniform, capped at size/2; 2 .. 4096
    diameter_jitter: float = 0.15  # per-cell relative SD of the diameter; 0 .. 0.5
    coverage: Range = (0.003, 0.5)  # share of the image area covered by nuclei, log-uniform (uniform if low is 0; low raised to 3 nuclei' worth); 0 .. 0.9
    max_cells: int = 2000  # upper clamp of the nucleus count; 0 .. 100000
    clustered: float = 0.5  # probability an image places cells in 1-6 Gaussian clusters; 0 .. 1
    overlap: Range = (0.0, 0.3)  # largest share of a new nucleus' area over earlier nuclei; 0 .. 1
    elongation: Range = (1.0, 1.8)  # per-cell axis ratio is drawn in this range; 1 .. 5
    irregularity: Range = (0.0, 0.15)  # amplitude of radial harmonics k=2..5 of the outline; 0 .. 0.3
    texture: Range = (0.0, 0.4)  # chromatin texture amplitude (relative SD); 0 .. 1
    grain: Range = (0.0, 1.0)  # share of fine chromatin grain (~d/20) in the texture, the rest coarse (~d/6); 0 .. 1
    rim: Range = (0.0, 0.6)  # brightening at the nuclear edge (peripheral chromatin), x the centre; 0 .. 3
    nucleoli: float = 0.3  # probability a nucleus shows 1-4 nucleoli (dark, 0.1-0.25 d) and chromocentres (bright); 0 .. 1
    brightness_sd: float = 0.4  # per-cell log-normal brightness SD (natural log); 0 .. 2
    dim_fraction: Range = (0.0, 0.3)  # share of nuclei at 0.1-0.4 of the typical brightness; 0 .. 1
    defocus_fraction: Range = (0.0, 0.3)  # share of nuclei blurred by depth (sigma <= 0.3 d); 0 .. 1
    bodies: Range = (0.0, 0.05)  # mitotic/apoptotic figures per nucleus (condensed, bars, daughter pairs), labelled; 0 .. 1
    debris: Range = (0.0, 0.3)  # unlabelled specks and fibres per nucleus (+ large dim blobs); 0 .. 5
    illumination: Range = (0.0, 0.5)  # depth of the uneven-illumination field (1 - depth at worst); 0 .. 0.95
    background: Range = (0.0, 0.1)  # background level, x typical nucleus brightness; 0 .. 2
    blur: Range = (0.5, 2.0)  # optical PSF Gaussian sigma, px (not scaled with the diameter); 0 .. 10
    photons: Range = (20.0, 20000.0)  # photons per typical nucleus brightness, log-uniform; > 0 .. 1e7
    read_noise: Range = (0.5, 6.0)  # camera read-noise SD, camera units; 0 .. 1000
    offset: Range = (0.0, 200.0)  # camera offset, camera units; 0 .. 60000
    gain: Range = (0.5, 4.0)  # camera units per photon; > 0 .. 1000
    saturation: float = 0.15  # probability that an image saturates (its brightest nucleus pixels clip); 0 .. 1
    saturated: Range = (0.003, 0.15)  # share of the nucleus pixels that clip in a saturated image, log-uniform; > 0 .. 1
    pressed: float = 0.5  # probability that an image's touching nuclei flatten against each other (else they add up); 0 .. 1
    #: the image is rendered at side size / f (nuclei diameter / f) and resized by f (bilinear, antialiased),
    #: f drawn log-uniformly here: the smoothing, correlated noise and blur of an image ``count`` has resized
    #: to the sizes its counter knows; 0.1 .. 10 (1:1 = no resizing)
    rescale: Range = (1.0, 1.0)
    dtype: str = "random"  # output bit depth: "uint8", "uint16" or "random" (each image picks one)
    #: whether clearly defocused nuclei (blur sigma above DEFOCUS_LABEL x their diameter) are labelled cells.
    #: Annotation conventions differ: IDCIA's annotators marked only in-focus nuclei, so a counter meant to
    #: count as they do trains with ``label_defocused=false`` (the nuclei are still drawn, as negatives).
    label_defocused: bool = True
    #: with ``label_defocused=false``: blur sigma, as a fraction of the nucleus diameter, above which a
    #: defocused nucleus is a negative; 0 .. 0.3 (defocus blur is drawn up to 0.3)
    defocus_negative: float = 0.1

    def __post_init__(self):
        if not isinstance(self.size, int) or not 16 <= self.size <= 8192:
            raise ValueError(f"size {self.size} must be an integer in [16, 8192]")
        if not isinstance(self.max_cells, int) or not 0 <= self.max_cells <= 100_000:
            raise ValueError(f"max_cells {self.max_cells} must be an integer in [0, 100000]")
        if isinstance(self.defocus_negative, bool) or not 0 <= self.defocus_negative <= 0.3:
            raise ValueError(f"defocus_negative {self.defocus_negative!r} must lie in [0, 0.3]")
        if not isinstance(self.label_defocused, bool):
            raise ValueError(f"label_defocused {self.label_defocused!r} must be true or false")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} must be one of {', '.join(DTYPES)}")
        for name, lo, hi in _SCALARS:
            _check_scalar(name, getattr(self, name), lo, hi)
        for name, lo, hi, open_low in _RANGES:
            _check_range(name, getattr(self, name), lo, hi, open_low)


# (name, lowest, highest) of the scalar fields
_SCALARS = (
    ("diameter_jitter", 0.0, 0.5),
    ("clustered", 0.0, 1.0),
    ("nucleoli", 0.0, 1.0),
    ("brightness_sd", 0.0, 2.0),
    ("saturation", 0.0, 1.0),
    ("pressed", 0.0, 1.0),
)

# (name, lowest, highest, lowest excluded) of the range fields
_RANGES = (
    ("diameter", 2.0, 4096.0, False),
    ("coverage", 0.0, 0.9, False),
    ("overlap", 0.0, 1.0, False),
    ("elongation", 1.0, 5.0, False),
    ("irregularity", 0.0, 0.3, False),
    ("texture", 0.0, 1.0, False),
    ("grain", 0.0, 1.0, False),
    ("rim", 0.0, 3.0, False),
    ("dim_fraction", 0.0, 1.0, False),
    ("defocus_fraction", 0.0, 1.0, False),
    ("bodies", 0.0, 1.0, False),
    ("debris", 0.0, 5.0, False),
    ("illumination", 0.0, 0.95, False),
    ("background", 0.0, 2.0, False),
    ("blur", 0.0, 10.0, False),
    ("photons", 0.0, 1e7, True),
    ("read_noise", 0.0, 1000.0, False),
    ("offset", 0.0, 60000.0, False),
    ("gain", 0.0, 1000.0, True),
    ("saturated", 0.0, 1.0, True),
    ("rescale", 0.1, 10.0, False),
)


def _fmt(r) -> str:
    return f"{r[0]:g}:{r[1]:g}"


def _check_scalar(name: str, value, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{name} {value!r} must be a number in [{lo:g}, {hi:g}]")


def _check_range(name: str, value, lo: float, hi: float, open_low: bool) -> None:
    """``value`` must be a (low, high) pair of numbers with lo <= low <= high <= hi (lo < low if open)."""
    if not isinstance(value, tuple) or len(value) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        example = f"{value:g}:{value:g}" if isinstance(value, (int, float)) else f"{lo:g}:{hi:g}"
        raise ValueError(f"{name} {value!r} must be a LOW:HIGH range (e.g. --set {name}={example})")
    low, high = value
    bound = "<" if open_low else "<="
    if not ((lo < low) if open_low else (lo <= low)) or not low <= high <= hi:
        raise ValueError(f"{name} {_fmt(value)} must satisfy {lo:g} {bound} low <= high <= {hi:g}")

