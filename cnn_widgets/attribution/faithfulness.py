"""Does a map point at what the model uses? Deletion and insertion (Petsiuk et al., "RISE",
BMVC 2018): remove the most important pixels first and watch the target's probability fall
(deletion: a small area under the curve is good), or add them first to a blurred image and
watch it rise (insertion: a large area is good). Each curve's points travel through the model
in batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..images import load_image
from .methods import resize_bilinear

__all__ = ["Faithfulness", "area", "blurred", "deletion_insertion"]

BLUR_SIDE = 16
"""The blurred start of insertion: the image averaged down to about this many pixels a side
and enlarged back bilinearly (Petsiuk et al. blur the image; the exact blur is a detail)."""


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion curves of one map: ``fractions`` of pixels removed (deletion)
    or inserted (insertion), the target's softmax probability at each, and the areas under
    the curves (trapezoidal rule over fractions 0..1)."""

    fractions: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    deletion: float
    insertion: float


def deletion_insertion(
    model: Any,
    image: Any,
    heat: np.ndarray,
    target: int,
    *,
    steps: int = 32,
    batch_size: int = 16,
) -> Faithfulness:
    """Deletion and insertion of ``image``'s pixels in the order of ``heat`` (``(H, W)`` at
    the model's input resolution, most important first; ties keep raster order).

    Deletion replaces pixels by black (0), insertion starts from :func:`blurred`. ``steps``
    points after the start, each adding ``1/steps`` of the pixels. The score is the softmax
    probability of class ``target``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    adapter = model if isinstance(model, Adapter) else adapt(model)
    x = load_image(image, adapter.spec.channels, adapter.spec.spatial)
    heat = np.asarray(heat, np.float64)
    if heat.shape != x.shape[1:]:
        raise ValueError(
            f"heat must be (H, W) = {x.shape[1:]} (the image as the model sees it); "
            f"got shape {heat.shape}"
        )
    order = np.argsort(-np.nan_to_num(heat, nan=-np.inf).ravel(), kind="stable")
    counts = np.rint(np.linspace(0, order.size, steps + 1)).astype(int)
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    rank = rank.reshape(heat.shape)
    # mask[i]: the pixels among the first counts[i] of the order
    masks = (rank[None] < counts[:, None, None]).astype(np.float32)[:, None]
    start = blurred(x)
    deleted = x[None] * (1 - masks)
    inserted = start[None] * (1 - masks) + x[None] * masks
    fractions = counts / order.size
    del_curve = _probabilities(adapter, deleted, target, batch_size)
    ins_curve = _probabilities(adapter, inserted, target, batch_size)
    return Faithfulness(
        fractions,
        del_curve,
        ins_curve,
        area(del_curve, fractions),
        area(ins_curve, fractions),
    )


def area(curve: np.ndarray, fractions: np.ndarray) -> float:
    """The area under ``curve`` over ``fractions`` by the trapezoidal rule (numpy >= 1.24 has
    no ``trapezoid`` and deprecates ``trapz``)."""
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)))


def blurred(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` averaged over blocks to about :data:`BLUR_SIDE` pixels a side and
    enlarged back bilinearly."""
    c, h, w = image.shape
    fh, fw = max(1, h // BLUR_SIDE), max(1, w // BLUR_SIDE)
    hh, ww = h // fh, w // fw
    small = image[:, : hh * fh, : ww * fw].reshape(c, hh, fh, ww, fw).mean(axis=(2, 4))
    return resize_bilinear(small, (h, w))


def _probabilities(adapter: Adapter, batch: np.ndarray, target: int, size: int) -> np.ndarray:
    out = []
    for start in range(0, len(batch), size):
        chunk = batch[start : start + size]
        logits = adapter.gradients(chunk, (), int(target), backward=False).logits
        values = logits.reshape(len(chunk), -1).astype(np.float64)
        probs = np.exp(values - values.max(axis=1, keepdims=True))
        out.append(probs[:, target] / probs.sum(axis=1))
    return np.concatenate(out)
