"""Dataset examples: the images of a collection that excite one channel most.

:func:`top_images` streams an image collection through the model in batches
(:class:`~cnn_widgets.analysis.imagesets.ImageSet`), keeps only the ``k`` best so far (memory
stays bounded by the batch, whatever the collection's size), and crops each winner around the
position of its strongest response, to the size of the channel's *receptive field*
(:func:`~cnn_widgets.analysis.receptive.receptive_field`): the input region that position can
see. ``ImageSet``, ``ReceptiveField`` and ``receptive_field`` are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import adapt
from ..backends.base import LayerInfo, LayerKey
from ..render.pixels import to_uint8
from ..render.rendered import readable_png
from ..render.tile import tile
from .imagesets import ImageSet, ImagesLike
from .receptive import ReceptiveField, receptive_field

__all__ = ["ImageSet", "ReceptiveField", "TopImages", "receptive_field", "top_images"]

Box = tuple[float, float, float, float]  # (x, y, w, h), the order TileLayout.box uses


@dataclass(frozen=True, eq=False)
class TopImages:
    """The images that excite one channel most, best first.

    Attributes
    ----------
    layer, channel:
        What was ranked.
    images:
        ``(k, h, w, C)`` float32 in [0, 1]: receptive-field crops of the model-input images
        (``crop=True``), or the whole model-input images.
    scores:
        ``(k,)``: the channel's maximum over its map (its value, for a vector output).
    indices:
        ``(k,)`` int: positions in the image set given.
    sources:
        The file path of each image, None for in-memory images.
    boxes:
        ``(k, 4)`` float ``(x, y, w, h)``: the crop window around the maximum, in the
        *source* image's pixel coordinates (before resizing); the whole image for vector
        outputs.
    positions:
        ``(k, 2)`` int ``(row, col)`` of the maximum in the layer's map; ``-1`` for vectors.
    receptive_field:
        The field the crops follow, or None for vector outputs.
    """

    layer: str
    channel: int
    images: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    sources: tuple[str | None, ...]
    boxes: np.ndarray
    positions: np.ndarray
    receptive_field: ReceptiveField | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        scores = ", ".join(f"{s:.3g}" for s in self.scores[:5]) + (", ..." if len(self) > 5 else "")
        return (
            f"TopImages(layer={self.layer!r}, channel={self.channel}, k={len(self)}, "
            f"images={self.images.shape[1:]}, scores=[{scores}])"
        )

    def _repr_png_(self) -> bytes:
        # One row, best first, enlarged like every notebook picture: crops are often tiny.
        strip = tile(to_uint8(self.images, channel_axis=-1), pad=2, ncols=len(self))
        return readable_png(strip)


@dataclass
class _Best:
    score: float
    index: int
    source: str | None
    source_size: tuple[int, int]
    position: tuple[int, int]
    pixels: np.ndarray  # (C, H, W) model input


def top_images(
    model: Any,
    layer: LayerKey | LayerInfo,
    channel: int,
    images: ImagesLike,
    k: int = 9,
    crop: bool = True,
    batch_size: int = 32,
    progress: bool = True,
) -> TopImages:
    """The ``k`` images of a collection that excite one channel most (dataset examples).

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one. Left untouched.
    layer:
        Name or index of the layer.
    channel:
        The channel (or vector entry) to rank by.
    images:
        A folder (searched recursively; non-image files are skipped with a warning), an
        ``(N, H, W[, C])`` array, or a list / iterable of images or paths.
    k:
        How many to keep, ``1 .. number of images``.
    crop:
        Crop each image to the receptive field around the channel's maximum (see
        :func:`receptive_field`); otherwise keep the whole image.
    batch_size:
        Images per forward pass; memory is bounded by one batch plus the ``k`` kept images.
    progress:
        Show a ``tqdm`` progress bar.

    Returns
    -------
    TopImages
        Best first; equal scores keep the collection's order.

    Raises
    ------
    ValueError
        For an empty collection, ``k`` or ``channel`` out of range, and for images of
        different sizes when the model has no fixed input size (with one, every image is
        resized to it: shorter side scaled, centre-cropped, like
        :func:`cnn_widgets.prepare_image`).

    Notes
    -----
    NaN values in a map are ignored; a map that is NaN everywhere scores ``-inf``.
    """
    adapter = adapt(model)
    info = adapter.layer(layer)
    if info.output_shape is None:
        raise ValueError(f"layer {info.name!r} did not run in a forward pass; nothing to rank")
    _check_int("channel", channel)
    _check_int("k", k)
    _check_int("batch_size", batch_size)
    channel, k, batch_size = int(channel), int(k), int(batch_size)
    if not 0 <= channel < info.output_shape[0]:
        raise ValueError(
            f"channel {channel} is out of range: layer {info.name!r} has "
            f"{info.output_shape[0]} channels (valid: 0..{info.output_shape[0] - 1})"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    image_set = images if isinstance(images, ImageSet) else ImageSet(images)
    if k < 1 or (image_set.count is not None and k > image_set.count):
        most = image_set.count if image_set.count is not None else "the number of images"
        raise ValueError(f"k={k} is out of range: valid 1..{most}")

    best: list[_Best] = []
    title = f"top images {info.name}[{channel}]" if progress else None
    size: tuple[int, int] | None = adapter.spec.spatial
    for batch in image_set.batches(adapter.spec.channels, size, batch_size, title):
        maps = adapter.activations(batch.pixels, [info.name])[info.name][:, channel]
        flat = np.where(np.isnan(maps), -np.inf, maps).reshape(len(maps), -1)
        argmax = flat.argmax(axis=1)
        for row, index in enumerate(batch.indices):
            if maps.ndim == 3:
                r, c = np.unravel_index(argmax[row], maps.shape[1:])
                position = (int(r), int(c))
            else:
                position = (-1, -1)
            best.append(
                _Best(
                    score=float(flat[row, argmax[row]]),
                    index=index,
                    source=batch.sources[row],
                    source_size=batch.source_sizes[row],
                    position=position,
                    pixels=batch.pixels[row].copy(),  # not a view: the batch can go
                )
            )
        # Stable: equal scores keep the earlier image first.
        best = sorted(best, key=lambda b: (-b.score, b.index))[:k]
    if len(best) < k:
        raise ValueError(f"k={k} is out of range: the image set holds only {len(best)} images")

    input_size = (int(best[0].pixels.shape[1]), int(best[0].pixels.shape[2]))
    spatial = len(info.output_shape) == 3
    field_ = receptive_field(adapter, info.name, input_size) if spatial else None
    windows = [
        field_.window(*b.position) if field_ is not None else (0, 0, input_size[1], input_size[0])
        for b in best
    ]
    if crop:
        pictures = [
            b.pixels[:, y : y + h, x : x + w] for b, (x, y, w, h) in zip(best, windows, strict=True)
        ]
    else:
        pictures = [b.pixels for b in best]
    return TopImages(
        layer=info.name,
        channel=channel,
        images=np.ascontiguousarray(np.stack(pictures).transpose(0, 2, 3, 1), dtype=np.float32),
        scores=np.array([b.score for b in best], dtype=np.float32),
        indices=np.array([b.index for b in best], dtype=np.int64),
        sources=tuple(b.source for b in best),
        boxes=np.array(
            [
                _to_source(window, b.source_size, input_size, resized=size is not None)
                for b, window in zip(best, windows, strict=True)
            ],
            dtype=np.float64,
        ),
        positions=np.array([b.position for b in best], dtype=np.int64),
        receptive_field=field_,
    )


def _to_source(
    window: tuple[int, int, int, int],
    source: tuple[int, int],
    model_size: tuple[int, int],
    resized: bool,
) -> Box:
    """Map an ``(x, y, w, h)`` window on the model input back onto the source image,
    undoing the scale-and-centre-crop of :func:`cnn_widgets.images.load_image`."""
    x, y, w, h = window
    if not resized or source == model_size:
        return (float(x), float(y), float(w), float(h))
    (sh, sw), (th, tw) = source, model_size
    # The same arithmetic as images._resize: scale so both sides cover, round, centre-crop.
    scale = max(th / sh, tw / sw)
    nh, nw = max(th, round(sh * scale)), max(tw, round(sw * scale))
    top, left = (nh - th) // 2, (nw - tw) // 2
    fy, fx = sh / nh, sw / nw
    return ((x + left) * fx, (y + top) * fy, w * fx, h * fy)


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
