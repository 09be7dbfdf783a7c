"""Counting models: architectures, intensity normalisation and the checkpoint format."""
