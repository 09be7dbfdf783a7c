"""Stylizers: give synthetic cell images the look of real ones while the cells stay where the labels say.

:mod:`.base` runs any stylizer over a cell dataset (labels carried unchanged, resumable, manifest);
:mod:`.fda` (Fourier domain adaptation) and :mod:`.histogram` (intensity-distribution matching) are
weight-free and CPU-fast; :mod:`.inst` is InST diffusion style transfer (Stable Diffusion v1 through
diffusers) with its style token learned by :mod:`.learn` (:mod:`.mapper` is the token network,
:mod:`.models` loads local model folders offline). :mod:`.metrics` holds the weight-free domain-gap
figures the benchmark reports.
"""
