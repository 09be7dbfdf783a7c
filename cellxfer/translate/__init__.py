"""Image-to-image translation (transmitted light -> fluorescence) and its unsupervised adaptation.

The model (pix2pix UNet generator, PatchGAN, checkpoint format) is :mod:`cellxfer.translator.model`; its ONNX export
:mod:`cellxfer.export.translator`.
:mod:`.data`: paired and unpaired image folders, intensity normalisation.
:mod:`.train`: pix2pix training (``train-translate``).
:mod:`.adapt`: LM-ADDA layer-matching adversarial adaptation (``adapt``).
:mod:`.infer`: loading a translator on an engine; images of any size are cut and blended by
:class:`cellxfer.counter.splitters.RampTiles` and :func:`cellxfer.count.parts.blend_image` (``translate``).
:mod:`.metrics`: Pearson, MAE, SSIM (``evaluate-translator``).
"""
