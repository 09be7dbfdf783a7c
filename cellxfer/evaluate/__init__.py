"""Evaluating counters on full-size labelled images: per-image predictions and the paper's metrics."""
