"""Does a map point at what the model uses? Deletion and insertion (Petsiuk et al., "RISE",
BMVC 2018): remove the most important pixels first and watch the target's probability fall
(deletion: a small area under the curve is good), or add them first to a blurred image and
watch it rise (insertion: a large area is good). Each curve's points travel through the model
in batches.

Options for the protocols used in the literature: what removed pixels become (``fill``),
pixels ranked and removed in square patches (``patch``, the coarse granularity of RISE-style
evaluations, which a scatter of single black pixels cannot game), the reverse order
(``least_first``), and :attr:`Faithfulness.deletion_gain`, how much more removing the
important pixels first hurts than removing them last.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..images import load_image
from .methods import resize_bilinear

__all__ = ["FILLS", "Faithfulness", "area", "blurred", "deletion_insertion"]

BLUR_SIDE = 16
"""The blurred start of insertion: the image averaged down to about this many pixels a side
and enlarged back bilinearly (Petsiuk et al. blur the image; the exact blur is a detail)."""

FILLS = ("rise", "black", "blur")
"""What removed pixels become: ``"rise"`` as Petsiuk et al. (deletion to black, insertion
from :func:`blurred`), ``"black"`` or ``"blur"`` for both curves."""


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion curves of one map: ``fractions`` of pixels removed (deletion)
    or inserted (insertion), the target's softmax probability at each, and the areas under
    the curves (trapezoidal rule over fractions 0..1).

    ``reverse_deletion_curve`` / ``reverse_deletion`` delete in the opposite order (least
    important first when ``least_first`` is False)."""

    fractions: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    deletion: float
    insertion: float
    reverse_deletion_curve: np.ndarray
    reverse_deletion: float
    least_first: bool = False

    @property
    def deletion_gain(self) -> float:
        """Least-first deletion AUC minus most-first deletion AUC: how much more removing the
        important pixels first hurts than removing them last (> 0 for a map that ranks what
        the model uses first; about 0 for a map unrelated to it)."""
        gain = self.reverse_deletion - self.deletion
        return -gain if self.least_first else gain


def deletion_insertion(
    model: Any,
    image: Any,
    heat: np.ndarray,
    target: int,
    *,
    steps: int = 32,
    batch_size: int = 6,
    fill: str = "rise",
    patch: int = 1,
    least_first: bool = False,
) -> Faithfulness:
    """Deletion and insertion of ``image``'s pixels in the order of ``heat`` (``(H, W)`` at
    the model's input resolution, most important first; ties keep raster order).

    ``steps`` points after the start, each removing (inserting) ``1/steps`` of the pixels;
    the score is the softmax probability of class ``target``.

    Options
    -------
    fill:
        One of :data:`FILLS`. ``"rise"`` (default, Petsiuk et al.): deleted pixels become
        black (0) and insertion starts from :func:`blurred`; ``"black"`` or ``"blur"``: deleted
        pixels become that, and insertion starts from the same.
    patch:
        Side of the square patches pixels are ranked and removed in (1: single pixels); a
        patch's importance is the mean of ``heat`` over it (patches at the right and bottom
        edges may be smaller), and the curves then count patches.
    least_first:
        Remove (insert) the least important pixels first.
    batch_size:
        At most this many images per forward pass, in near-equal batches (6: per image the
        cheapest forward pass of EfficientNet-Lite0 at 224 px on one thread here, ~31 ms
        against ~42 in batches of 16: larger batches leave the caches).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
        raise ValueError(f"patch must be an int >= 1 (pixels a side), got {patch!r}")
    if not isinstance(fill, str) or fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(map(repr, FILLS))}; got {fill!r}")
    if not isinstance(least_first, (bool, np.bool_)):
        raise TypeError(f"least_first must be True or False, got {least_first!r}")
    adapter = model if isinstance(model, Adapter) else adapt(model)
    x = load_image(image, adapter.spec.channels, adapter.spec.spatial)
    heat = np.asarray(heat, np.float64)
    if heat.shape != x.shape[1:]:
        raise ValueError(
            f"heat must be (H, W) = {x.shape[1:]} (the image as the model sees it); "
            f"got shape {heat.shape}"
        )
    cells = _cells(heat.shape, int(patch))
    importance = _patch_means(np.nan_to_num(heat, nan=-np.inf), cells)
    blur = None if fill == "black" else blurred(x)
    removed_empty = blur if fill == "blur" else np.zeros_like(x)
    start = np.zeros_like(x) if blur is None else blur
    order = _order(importance, bool(least_first))
    reverse = _order(importance, not least_first)
    counts = np.rint(np.linspace(0, order.size, steps + 1)).astype(int)
    masks = _masks(order, counts, cells)
    reverse_masks = _masks(reverse, counts, cells)
    fractions = masks.reshape(len(masks), -1).sum(axis=1, dtype=np.int64) / heat.size
    deleted = x[None] * (1 - masks) + removed_empty[None] * masks
    reverse_deleted = x[None] * (1 - reverse_masks) + removed_empty[None] * reverse_masks
    inserted = start[None] * (1 - masks) + x[None] * masks
    # The three curves' images in one run of near-equal batches (no batch of one at the end
    # of each curve): 3 x 17 images at the default steps, 9 batches of 5-6.
    points = len(masks)
    curves = _probabilities(
        adapter, np.concatenate([deleted, inserted, reverse_deleted]), target, batch_size
    )
    del_curve, ins_curve, rev_curve = (curves[i * points : (i + 1) * points] for i in range(3))
    return Faithfulness(
        fractions,
        del_curve,
        ins_curve,
        area(del_curve, fractions),
        area(ins_curve, fractions),
        rev_curve,
        area(rev_curve, fractions),
        bool(least_first),
    )


def _cells(shape: tuple[int, ...], patch: int) -> np.ndarray:
    """``(H, W)`` int: the index of each pixel's patch, patches in raster order."""
    h, w = shape
    rows, cols = np.arange(h) // patch, np.arange(w) // patch
    return rows[:, None] * (-(-w // patch)) + cols[None, :]


def _patch_means(heat: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The mean of ``heat`` over each patch (a -inf pixel, a NaN of the map, makes its patch
    the least important)."""
    flat = cells.ravel()
    if flat.max() + 1 == flat.size:  # single pixels
        return heat.ravel()
    finite = np.where(np.isfinite(heat), heat, 0).ravel()
    sums = np.bincount(flat, weights=finite)
    sizes = np.bincount(flat)
    means = sums / sizes
    bad = np.bincount(flat, weights=~np.isfinite(heat).ravel()) > 0
    return np.where(bad, -np.inf, means)


def _order(importance: np.ndarray, least_first: bool) -> np.ndarray:
    """Patch indices, most important first (least first when asked); ties in raster order."""
    key = importance if least_first else -importance
    return np.argsort(key, kind="stable")


def _masks(order: np.ndarray, counts: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``(steps + 1, 1, H, W)`` float32: mask[i] marks the pixels of the first counts[i]
    patches of ``order``."""
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    pixel_rank = rank[cells]
    return (pixel_rank[None] < counts[:, None, None]).astype(np.float32)[:, None]


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
    bounds = np.linspace(0, len(batch), -(-len(batch) // size) + 1).round().astype(int)
    for start, stop in itertools.pairwise(bounds):
        chunk = batch[start:stop]
        logits = adapter.gradients(chunk, (), int(target), backward=False).logits
        values = logits.reshape(len(chunk), -1).astype(np.float64)
        probs = np.exp(values - values.max(axis=1, keepdims=True))
        out.append(probs[:, target] / probs.sum(axis=1))
    return np.concatenate(out)
