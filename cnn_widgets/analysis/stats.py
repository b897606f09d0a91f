"""Per-channel statistics of layer outputs over an image set.

:func:`channel_stats` streams images through the model and keeps per-channel running sums
(Chan et al.'s parallel variance update), so memory is one batch whatever the set's size. The
health check (:mod:`cnn_widgets.analysis.health`) reads several layers' statistics from one
pass through :func:`stream_stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import LayerInfo, LayerKey
from .imagesets import ImageSet, ImagesLike

__all__ = ["ChannelStats", "channel_stats"]


_BATCH_BYTES = 256 * 2**20
"""Activations kept per forward pass; the batch shrinks below ``batch_size`` to stay under."""


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True, eq=False)
class ChannelStats:
    """Per-channel statistics of one layer's output over a set of images.

    ``mean``, ``std`` (population), ``max`` and ``min`` are over the finite values of every
    image and position (NaN where a channel has none); ``zero_fraction`` counts exact zeros
    among all values. Arrays have one entry per channel; a vector output counts each entry
    as a channel with one position.
    """

    layer: str
    images: int
    positions: int
    mean: np.ndarray
    std: np.ndarray
    max: np.ndarray
    min: np.ndarray
    zero_fraction: np.ndarray
    nan_count: np.ndarray
    inf_count: np.ndarray

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def __repr__(self) -> str:
        dead = int((self.zero_fraction == 1.0).sum())
        bad = int(((self.nan_count + self.inf_count) > 0).sum())
        return (
            f"ChannelStats(layer={self.layer!r}, channels={len(self)}, images={self.images}, "
            f"positions={self.positions}, all-zero channels={dead}, channels with NaN/Inf={bad})"
        )


class _Accumulator:
    """Running per-channel sums over ``(B, C, ...)`` batches."""

    def __init__(self) -> None:
        self.images = 0
        self.positions = 0
        self.count: np.ndarray | None = None  # finite values seen, per channel

    def add(self, values: np.ndarray) -> None:
        batch = values.reshape(values.shape[0], values.shape[1], -1)
        n_images, channels, positions = batch.shape
        flat = np.moveaxis(batch, 1, 0).reshape(channels, -1).astype(np.float64)
        finite = np.isfinite(flat)
        count = finite.sum(axis=1).astype(np.float64)
        clean = np.where(finite, flat, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = clean.sum(axis=1) / count
        m2 = np.where(finite, flat - mean[:, None], 0.0)
        m2 = (m2 * m2).sum(axis=1)
        high = np.where(finite, flat, -np.inf).max(axis=1)
        low = np.where(finite, flat, np.inf).min(axis=1)
        zeros = (flat == 0).sum(axis=1)
        nans = np.isnan(flat).sum(axis=1)
        infs = np.isinf(flat).sum(axis=1)
        if self.count is None:
            self.count, self.mean, self.m2 = count, np.nan_to_num(mean), m2
            self.high, self.low, self.zeros, self.nans, self.infs = high, low, zeros, nans, infs
            self.positions = positions
        else:
            if channels != self.count.shape[0] or positions != self.positions:
                raise ValueError(
                    f"the layer's output changed shape between batches ({channels} channels x "
                    f"{positions} positions, was {self.count.shape[0]} x {self.positions}); "
                    "give images of one size"
                )
            # Chan et al.: merge two (count, mean, M2) summaries without revisiting values.
            total = self.count + count
            delta = np.nan_to_num(mean) - self.mean
            with np.errstate(invalid="ignore", divide="ignore"):
                weight = np.where(total > 0, count / total, 0.0)
                self.m2 = self.m2 + m2 + delta * delta * np.where(total > 0, self.count * weight, 0)
            self.mean = self.mean + delta * weight
            self.count = total
            self.high, self.low = np.maximum(self.high, high), np.minimum(self.low, low)
            self.zeros, self.nans, self.infs = (
                self.zeros + zeros,
                self.nans + nans,
                self.infs + infs,
            )
        self.images += n_images

    def result(self, layer: str) -> ChannelStats:
        if self.count is None:
            raise ValueError("the image set is empty: give at least one image")
        none = self.count == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(self.m2 / self.count)
        return ChannelStats(
            layer=layer,
            images=self.images,
            positions=self.positions,
            mean=np.where(none, np.nan, self.mean),
            std=np.where(none, np.nan, std),
            max=np.where(none, np.nan, self.high),
            min=np.where(none, np.nan, self.low),
            zero_fraction=self.zeros / float(self.images * self.positions),
            nan_count=self.nans.astype(np.int64),
            inf_count=self.infs.astype(np.int64),
        )


def channel_stats(
    model: Any,
    images: ImagesLike,
    layer: LayerKey | LayerInfo,
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> ChannelStats:
    """Mean, std, max, min, zero fraction and NaN/Inf counts of each channel of a layer.

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one. Left untouched.
    images:
        A folder, an ``(N, H, W[, C])`` array, or a list / iterable of images or paths (see
        :class:`~cnn_widgets.analysis.imagesets.ImageSet`).
    layer:
        Name or index.
    batch_size:
        Images per forward pass (fewer when one batch's activations would pass 256 MB).
    progress:
        Show a ``tqdm`` progress bar.

    Returns
    -------
    ChannelStats
        Arrays of length C (channels).
    """
    adapter = adapt(model)
    info = adapter.layer(layer)
    (stats,) = stream_stats(adapter, images, [info], batch_size, progress).values()
    return stats


def stream_stats(
    adapter: Adapter,
    images: ImagesLike,
    infos: Sequence[LayerInfo],
    batch_size: int,
    progress: bool,
) -> dict[str, ChannelStats]:
    """Statistics of several layers from one pass over ``images``, by layer name.

    The batch shrinks below ``batch_size`` when one batch's activations of all ``infos``
    would pass 256 MB.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    image_set = images if isinstance(images, ImageSet) else ImageSet(images)
    per_image = sum(4 * int(np.prod(i.output_shape or (1,))) for i in infos)
    batch_size = max(1, min(int(batch_size), _BATCH_BYTES // max(per_image, 1)))
    names = list(dict.fromkeys(i.name for i in infos))
    sums = {name: _Accumulator() for name in names}
    title = "channel statistics" if progress else None
    for batch in image_set.batches(adapter.spec.channels, adapter.spec.spatial, batch_size, title):
        outputs = adapter.activations(batch.pixels, names)
        for name in names:
            values = outputs[name]
            sums[name].add(values if values.ndim > 1 else values[:, None])
    return {name: sums[name].result(name) for name in names}
