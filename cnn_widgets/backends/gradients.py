"""What :meth:`Adapter.gradients <cnn_widgets.backends.base.Adapter.gradients>` takes and
returns, framework-neutral: the result, and the checks of a target that both backends share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Gradients", "Target", "check_classes", "resolve_target", "score_vector"]


@dataclass(frozen=True)
class Gradients:
    """What :meth:`Adapter.gradients` returns: one forward and one backward pass of a batch.

    Attributes
    ----------
    logits:
        ``(N, ...)`` the model's output, taken *before* a final softmax (see
        :meth:`Adapter.gradients`).
    scores:
        ``(N,)`` the target's value per image (NaN per image when a callable target returned
        one scalar for a batch of several images).
    activations, layer_grads:
        Layer name -> ``(N, C, H, W)`` (channels-first, batch kept): the layer's output and the
        gradient of the summed scores with respect to it (zeros where the score does not
        depend on the layer; empty without a backward pass).
    input_grad:
        ``(N, C, H, W)`` the gradient with respect to the ``[0, 1]`` image, before the
        model's preprocessing (None without a backward pass).
    """

    logits: np.ndarray
    scores: np.ndarray
    activations: dict[str, np.ndarray]
    layer_grads: dict[str, np.ndarray]
    input_grad: np.ndarray | None


Target = Callable[[Any], Any] | np.ndarray
"""What a backend's ``_gradients`` gets: ``(N,)`` class indices, or a callable on the logits."""


def resolve_target(target: Any, n: int) -> Target:
    """None -> the top class per image (``-1`` marks it for the backend), an int or ints ->
    ``(N,)`` int64, a callable as it is."""
    if target is None:
        return np.full(n, -1, np.int64)
    if callable(target):
        return target
    if isinstance(target, (bool, np.bool_)) or not isinstance(
        target, (int, np.integer, list, tuple, np.ndarray)
    ):
        raise TypeError(
            "target must be None (the top class), a class index (int), one index per image, "
            f"or a callable on the logits; got {type(target).__name__}"
        )
    classes = np.asarray(target)
    if classes.ndim == 0:
        classes = np.full(n, int(classes), np.int64)
    if classes.shape != (n,) or not np.issubdtype(classes.dtype, np.integer):
        raise TypeError(f"target must give one int class per image ({n}), got {classes!r}")
    if (classes < 0).any():
        raise ValueError(f"a target class index must be >= 0, got {classes.tolist()}")
    return classes.astype(np.int64)


def check_classes(classes: np.ndarray, count: int) -> None:
    """Refuse class indices outside ``0..count-1`` (``-1`` stands for the top class)."""
    bad = [int(c) for c in classes if c >= count]
    if bad:
        raise ValueError(
            f"target class {bad[0]} is out of range: the model has {count} classes "
            f"(valid 0..{count - 1})"
        )


def score_vector(scores: Any, n: int) -> np.ndarray:
    """Check what a callable target returned (as numpy): ``(N,)``, or a scalar."""
    array = np.asarray(scores, dtype=np.float32)
    if array.shape == (n,):
        return array
    if array.ndim == 0:
        return np.full(n, float(array) if n == 1 else np.nan, np.float32)
    raise TypeError(
        f"a target callable must return one score per image (shape ({n},)) or a scalar; "
        f"it returned shape {array.shape}"
    )
