"""Density-map counting: targets, a small fully convolutional network, stitching, peaks, point matching."""
