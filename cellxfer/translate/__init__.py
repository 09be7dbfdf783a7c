"""Image-to-image translation (transmitted light -> fluorescence) and its unsupervised adaptation.

:mod:`.model`: pix2pix UNet generator with addressable layers 1..2*num_downs, PatchGAN, checkpoint format.
:mod:`.data`: paired and unpaired image folders, intensity normalisation.
:mod:`.train`: pix2pix training (``train-translate``).
:mod:`.adapt`: LM-ADDA layer-matching adversarial adaptation (``adapt``).
:mod:`.blend`: sliding-window inference with seamless blending (``translate``).
:mod:`.metrics`: Pearson, MAE, SSIM (``evaluate-translator``).
"""
