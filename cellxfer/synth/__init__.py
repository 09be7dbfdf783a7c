"""Synthetic cell images with exact centres. :mod:`.base` runs any synthesizer into a cell dataset;
:mod:`.synhc` is the InST-Microscopy paper's Syn-HC generator."""
