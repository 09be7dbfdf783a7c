"""Guards that keep NaN and infinity out of training results.

Invariant, when :func:`check_finite_loss` runs on every step before ``loss.backward()`` and
:func:`check_finite_weights` before every checkpoint: a non-finite loss stops training with a
:class:`cellxfer.errors.TrainingError` (one line, exit 2) before it reaches the weights, and no
checkpoint with a non-finite weight is ever written. Both are cheap (one scalar; one pass over the
weights per save).
"""

from __future__ import annotations

import math

from cellxfer.errors import TrainingError

ADVICE = "lower --lr (or --count-weight), or check the training images and points tables for bad values"


def check_finite_loss(loss, epoch: int, step: int) -> float:
    """``float(loss)`` (a number or a 0-d tensor) when it is finite, else :class:`TrainingError` naming
    ``epoch`` and ``step`` (1-based, as the progress shows them) and the fix."""
    value = float(loss.detach() if hasattr(loss, "detach") else loss)
    if not math.isfinite(value):
        raise TrainingError(f"training diverged: the loss is {value} at epoch {epoch}, step {step}; stopped before "
                            f"updating the weights, nothing after the last finished epoch was saved; {ADVICE}")
    return value


def check_finite_weights(module, epoch: int) -> None:
    """:class:`TrainingError` when a floating-point tensor of ``module``'s state (weights, buffers) holds
    NaN or infinity; call it before writing a checkpoint of ``module``."""
    import torch

    for name, tensor in module.state_dict().items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingError(f"training diverged: weight {name} is not finite after epoch {epoch}; no checkpoint "
                                f"of it was written, nothing after the last finished epoch was saved; {ADVICE}")
