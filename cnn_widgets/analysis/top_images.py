"""Dataset examples: the images of a collection that excite one channel most.

:func:`top_images` streams an image collection through the model in batches, keeps only the
``k`` best so far (memory stays bounded by the batch, whatever the collection's size), and
crops each winner around the position of its strongest response, to the size of the
channel's *receptive field*: the input region that position can see.

The receptive field is measured, not derived from layer arithmetic, so it is right for any
architecture both backends can run (branches, residual sums, custom layers), see
:func:`receptive_field`. :class:`ImageSet` is the streaming reader, shared with the channel
statistics of :mod:`cnn_widgets.analysis.health`.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..backends import Adapter, adapt
from ..backends.base import LayerInfo, LayerKey
from ..images import _match_channels, _resize, to_hwc_float

__all__ = ["ImageSet", "ReceptiveField", "TopImages", "receptive_field", "top_images"]

ImagesLike = Any  # a folder path, an (N, H, W[, C]) array, or an iterable of images/paths
Box = tuple[float, float, float, float]  # (x, y, w, h), the order TileLayout.box uses
Band = tuple[int, int, int]  # (axis, first, last): rows (axis 0) or columns (1) of a probe


# --------------------------------------------------------------------------- image sets
@dataclass(frozen=True)
class ImageBatch:
    """One batch from :meth:`ImageSet.batches`."""

    pixels: np.ndarray  # (B, C, H, W) float32 in [0, 1], what the model gets
    indices: tuple[int, ...]  # positions in the image set
    sources: tuple[str | None, ...]  # file paths, None for in-memory images
    source_sizes: tuple[tuple[int, int], ...]  # (H, W) of each image before resizing


class ImageSet:
    """An image collection to stream through a model, a batch at a time.

    Parameters
    ----------
    images:
        * a folder (``str`` or ``Path``): every image file under it, recursively, in sorted
          path order; files that are not images are skipped with one warning that counts
          them;
        * an array ``(N, H, W)`` (gray) or ``(N, H, W, C)`` / ``(N, C, H, W)``;
        * a list (or any iterable, read lazily) of images: arrays, PIL images, paths, bytes;
        * one image file path or PIL image.

    Raises
    ------
    ValueError
        For an empty collection, a folder without images, or a 3-D array that looks like a
        single colour image rather than a stack of gray ones.
    """

    def __init__(self, images: ImagesLike) -> None:
        self.folder: Path | None = None
        self.skipped: tuple[str, ...] = ()
        items: Iterable[Any]
        if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
            self.folder = Path(images)
            items, self.skipped = _scan_folder(self.folder)
            if self.skipped:
                shown = ", ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
                warnings.warn(
                    f"skipped {len(self.skipped)} file(s) in {os.fspath(images)!r} that are "
                    f"not readable images: {shown}",
                    UserWarning,
                    stacklevel=3,
                )
            if not items:
                raise ValueError(f"no image files in folder {os.fspath(images)!r}")
        elif isinstance(images, (str, os.PathLike, bytes, Image.Image)):
            items = [images]
        elif isinstance(images, np.ndarray) or (
            hasattr(images, "__array__") and hasattr(images, "shape")  # torch / tf tensors
        ):
            items = _array_items(np.asarray(images))
        elif isinstance(images, Iterable):
            items = images
        else:
            raise TypeError(
                "images must be a folder path, an (N, H, W[, C]) array, or a list of images "
                f"(arrays, PIL images, paths); got {type(images).__name__}"
            )
        self._items = items
        self.count: int | None = len(items) if isinstance(items, Sequence) else None
        if self.count == 0:
            raise ValueError("the image set is empty: give at least one image")

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError("this image set is read lazily from an iterator; its size is unknown")
        return self.count

    def batches(
        self, channels: int, size: tuple[int, int] | None, batch_size: int
    ) -> Iterator[ImageBatch]:
        """Yield :class:`ImageBatch` es of at most ``batch_size`` images.

        Every image is converted to ``channels`` and, when ``size`` is given, resized to it
        (shorter side scaled, then centre-cropped, as :func:`cnn_widgets.prepare_image`
        does). Without ``size`` all images must share the first one's size.
        """
        pending: list[tuple[np.ndarray, int, str | None, tuple[int, int]]] = []
        first: tuple[int, tuple[int, int]] | None = None
        seen = 0
        for index, item in enumerate(self._items):
            seen += 1
            source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
            hwc = to_hwc_float(item, channels)
            original = (int(hwc.shape[0]), int(hwc.shape[1]))
            if original[0] < 1 or original[1] < 1:
                raise ValueError(f"image {index} is empty: shape {hwc.shape}")
            hwc = _match_channels(hwc, channels)
            if size is not None:
                hwc = _resize(hwc, size)
            elif first is None:
                first = (index, original)
            elif original != first[1]:
                raise ValueError(
                    f"images of different sizes: image {first[0]} is {first[1][0]}x{first[1][1]}"
                    f" but image {index} is {original[0]}x{original[1]}, and the model has no "
                    "fixed input size to resize them to. Resize them yourself, or adapt the "
                    "model with input_shape=(C, H, W) so every image is resized to that"
                )
            pending.append((np.moveaxis(hwc, -1, 0), index, source, original))
            if len(pending) == batch_size:
                yield _batch(pending)
                pending = []
        if pending:
            yield _batch(pending)
        if seen == 0:
            raise ValueError("the image set is empty: give at least one image")


def _batch(items: list[tuple[np.ndarray, int, str | None, tuple[int, int]]]) -> ImageBatch:
    return ImageBatch(
        pixels=np.ascontiguousarray(np.stack([i[0] for i in items]), dtype=np.float32),
        indices=tuple(i[1] for i in items),
        sources=tuple(i[2] for i in items),
        source_sizes=tuple(i[3] for i in items),
    )


def _scan_folder(folder: Path) -> tuple[list[str], tuple[str, ...]]:
    """Image files under ``folder`` (sorted), and the names of the other files."""
    images: list[str] = []
    skipped: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # .DS_Store, .ipynb_checkpoints: not part of anyone's data set
        try:
            with Image.open(path):  # reads the header only
                pass
        except (OSError, ValueError, SyntaxError):  # UnidentifiedImageError is an OSError
            skipped.append(os.fspath(path.relative_to(folder)))
            continue
        images.append(os.fspath(path))
    return images, tuple(skipped)


def _array_items(array: np.ndarray) -> Sequence[np.ndarray]:
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise ValueError(
            f"a 3-D array is read as (N, H, W) gray images, but shape {array.shape} looks like "
            "one (H, W, C) colour image: pass [image] for a single image, or an (N, H, W, C) "
            "array for several"
        )
    if array.ndim not in (3, 4):
        raise ValueError(
            f"an image array must be (N, H, W) or (N, H, W, C) / (N, C, H, W); got shape "
            f"{array.shape}. Pass [image] for a single image"
        )
    return list(array)


# --------------------------------------------------------------------------- receptive field
@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels a position of a layer's output can see, per axis.

    Output row ``i`` sees input rows ``offset[0] + i * stride[0]`` to
    ``offset[0] + i * stride[0] + size[0] - 1`` (clipped to the image); columns likewise.

    Attributes
    ----------
    size, stride, offset:
        ``(rows, cols)`` each, in input pixels. ``offset`` may be negative (padding).
    input_size, output_size:
        ``(H, W)`` of the model input and of the layer's map it was measured for.
    whole:
        ``(rows, cols)``: True where every output position sees the whole axis as far as the
        measurement can tell (the field at the map's centre already reaches an image border,
        or the map is one position wide); ``size`` then is the input size, ``offset`` 0 and
        ``stride`` the input-to-output size ratio.
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    whole: tuple[bool, bool] = (False, False)

    def span(self, position: int, axis: int) -> tuple[int, int]:
        """``(first, last)`` input pixel seen by output ``position`` along ``axis``,
        clipped to the image."""
        if self.whole[axis]:
            return (0, self.input_size[axis] - 1)
        start = self.offset[axis] + position * self.stride[axis]
        stop = start + self.size[axis] - 1
        return (max(start, 0), min(stop, self.input_size[axis] - 1))

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``: a window of the full field size (at most the image) around
        output ``(row, col)``, moved inside the image where the field crosses a border.
        Every window has the same size, so crops of it stack."""
        box = []
        for axis, position in ((1, col), (0, row)):
            length = min(self.size[axis], self.input_size[axis])
            if self.whole[axis]:
                start = 0
            else:
                start = self.offset[axis] + position * self.stride[axis]
                start = min(max(start, 0), self.input_size[axis] - length)
            box.append((start, length))
        (x, w), (y, h) = box
        return (x, y, w, h)


_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], ReceptiveField]] = (
    weakref.WeakKeyDictionary()
)
_PROBE_VALUE = 1e3  # far outside [0, 1]: a change it causes dwarfs rounding noise


def receptive_field(
    model: Any, layer: LayerKey | LayerInfo, input_size: tuple[int, int] | None = None
) -> ReceptiveField:
    """Measure the receptive field of a layer's output positions by perturbing the input.

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one. Left untouched.
    layer:
        Name or index of a layer with a ``(C, H, W)`` output.
    input_size:
        ``(H, W)`` of the input; default the model's own input size.

    Returns
    -------
    ReceptiveField

    Notes
    -----
    For the map's centre, a bisection finds per axis the first and the last input row (column)
    whose perturbation changes any channel at that position; one more edge, of the centre's
    diagonal neighbour, gives the stride. Each probe perturbs a band of rows
    (columns) twice, in two images of one batch: once with NaN, which spreads through every
    sum, so even a contribution through tiny weights is seen; once with a large finite
    value, for operations that drop NaN (TensorFlow's max pooling does). The result is the
    exact, theoretical field of conv/pool geometry, for sequential and branching networks
    alike, at a cost of at most about ``11 + 13 * log2(max(H, W))`` images' forward passes up
    to the layer, fewer in practice (measured once per model, layer and input size, then
    cached).

    When the field of the map's centre reaches an image border (checked first, in one pass,
    so deep layers cost no search), the field is taken as the whole axis. Vector outputs
    (global pooling, dense layers) see the whole image.
    """
    adapter = model if isinstance(model, Adapter) else adapt(model)
    info = adapter.layer(layer)
    size = input_size or adapter.spec.spatial
    if size is None:
        raise ValueError(
            "the model has no fixed input size: pass input_size=(H, W), or adapt the model "
            "with input_shape=(C, H, W)"
        )
    size = (int(size[0]), int(size[1]))
    # Preprocessing is part of the key: a callable one could be spatial (a blur, a crop).
    key = (info.name, adapter.spec.channels, size, adapter.spec.preprocess)
    cache = _CACHE.setdefault(adapter.model, {})
    if key not in cache:
        cache[key] = _measure(adapter, info.name, size)
    return cache[key]


def _measure(adapter: Adapter, name: str, size: tuple[int, int]) -> ReceptiveField:
    rng = np.random.default_rng(0)
    shape = (adapter.spec.channels, *size)
    base = rng.random(shape, dtype=np.float32)
    large = (_PROBE_VALUE * (1.0 + rng.random(shape))).astype(np.float32)

    def run(bands: list[Band]) -> tuple[dict[Band, np.ndarray], np.ndarray]:
        """Outputs for perturbing each ``(axis, first, last)`` band of ``base``: two images
        per band, one filled with NaN and one with large values; the unperturbed image goes
        first in the same batch, so both are computed alike."""
        images = [base]
        for axis, first, last in bands:
            region = [slice(None)] * 3
            region[axis + 1] = slice(first, last + 1)
            with_nan = base.copy()
            with_nan[tuple(region)] = np.nan
            with_large = base.copy()
            with_large[tuple(region)] = large[tuple(region)]
            images += [with_nan, with_large]
        out = adapter.activations(np.stack(images), [name])[name]
        return {band: out[1 + 2 * i : 3 + 2 * i] for i, band in enumerate(bands)}, out[0]

    whole_image = (0, 0, size[0] - 1)  # every row perturbed: the whole image
    # The first and last row and column: if one of them reaches the map's centre, that axis
    # needs no search (see below), which saves a deep layer's many full-depth passes.
    borders = [(axis, edge, edge) for axis in (0, 1) for edge in (0, size[axis] - 1)]
    outputs, base_out = run([whole_image, *borders])
    if base_out.ndim != 3:  # a vector: every entry may see every pixel
        return ReceptiveField(size, size, (0, 0), size, (1, 1), (True, True))
    out_size = (int(base_out.shape[1]), int(base_out.shape[2]))
    finite = base_out[np.isfinite(base_out)]
    # Rounding noise is ~1e-7 of the output's scale; a perturbation's effect is far larger.
    tol = 1e-4 * float(np.abs(finite).max(initial=0.0)) + 1e-30

    def changed(perturbed: np.ndarray, position: tuple[int, int]) -> bool:
        before = base_out[:, position[0], position[1]]
        after = perturbed[:, :, position[0], position[1]]
        moved = ~(np.abs(after - before) <= tol)  # NaN counts as moved
        return bool((moved & np.isfinite(before)).any())

    centre = (out_size[0] // 2, out_size[1] // 2)
    neighbour = (
        centre[0] + 1 if centre[0] + 1 < out_size[0] else centre[0] - 1,
        centre[1] + 1 if centre[1] + 1 < out_size[1] else centre[1] - 1,
    )
    # One bisection per (axis, side, position): side 0 finds the first row (column) that
    # matters by perturbing everything up to a cut, side 1 the last one from the other end.
    touches_border = [
        any(changed(outputs[band], centre) for band in borders if band[0] == axis)
        for axis in (0, 1)
    ]
    searches = []
    for axis in (0, 1):
        if out_size[axis] > 1 and not touches_border[axis]:
            # The neighbour only gives the stride: one of its edges is enough, the one on
            # the far side from the centre, which cannot be clipped when the centre's is not.
            ahead = neighbour[axis] > centre[axis]
            searches += [(axis, 0, centre), (axis, 1, centre), (axis, 0 if ahead else 1, neighbour)]
    # Invariant: side 0: perturbing [0, hi] changes the position, [0, lo] does not;
    # side 1: perturbing [lo, end] changes it, [hi, end] does not.
    bounds = {s: [-1, size[s[0]] - 1] if s[1] == 0 else [0, size[s[0]]] for s in searches}
    reached = {s: changed(outputs[whole_image], s[2]) for s in searches}
    while True:
        todo = [s for s in searches if reached[s] and bounds[s][1] - bounds[s][0] > 1]
        if not todo:
            break
        bands = {}
        for s in todo:
            axis, side, _ = s
            mid = (bounds[s][0] + bounds[s][1]) // 2
            bands[s] = (axis, 0, mid) if side == 0 else (axis, mid, size[axis] - 1)
        # Searches of one side start alike and share their bands until they part.
        outputs, _ = run(list(dict.fromkeys(bands.values())))
        for s, band in bands.items():
            hit = changed(outputs[band], s[2])
            mid = band[2] if s[1] == 0 else band[1]
            if s[1] == 0:
                bounds[s][1 if hit else 0] = mid
            else:
                bounds[s][0 if hit else 1] = mid

    axes = []
    for axis in (0, 1):
        n_in, n_out = size[axis], out_size[axis]
        whole = (n_in, max(round(n_in / n_out), 1), 0, True)
        if touches_border[axis]:
            # The centre's field reaches a border: it is wider than about half the image, so
            # crops take the whole axis (the true field may stick out on both sides).
            axes.append(whole)
            continue
        if n_out == 1 or not all(reached[(axis, side, centre)] for side in (0, 1)):
            # One position wide, or no input row changes the centre (a dead layer): the
            # measurement cannot narrow anything down.
            axes.append(whole)
            continue
        first = {p: bounds[(axis, 0, p)][1] for p in (centre, neighbour) if (axis, 0, p) in bounds}
        last = {p: bounds[(axis, 1, p)][0] for p in (centre, neighbour) if (axis, 1, p) in bounds}
        if neighbour[axis] > centre[axis]:
            search, stride = (axis, 0, neighbour), first[neighbour] - first[centre]
        else:
            search, stride = (axis, 1, neighbour), last[centre] - last[neighbour]
        if not reached[search]:
            stride = round(n_in / n_out)  # the neighbour sees nothing: estimate
        stride = max(int(stride), 1)  # < 1 only after upsampling, where fields overlap
        span = last[centre] - first[centre] + 1
        axes.append((span, stride, first[centre] - centre[axis] * stride, False))
    (rows, cols) = axes
    return ReceptiveField(
        size=(rows[0], cols[0]),
        stride=(rows[1], cols[1]),
        offset=(rows[2], cols[2]),
        input_size=size,
        output_size=out_size,
        whole=(rows[3], cols[3]),
    )


# --------------------------------------------------------------------------- top images
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
        from ..render.encode import encode_png
        from ..render.tile import tile

        pixels = np.clip(np.nan_to_num(self.images, nan=0.0), 0.0, 1.0)
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        strip = tile((pixels * 255.0 + 0.5).astype(np.uint8), pad=2, ncols=len(self))
        return encode_png(strip)


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
    adapter = model if isinstance(model, Adapter) else adapt(model)
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
    bar = _progress(image_set.count, progress, f"top images {info.name}[{channel}]")
    size: tuple[int, int] | None = adapter.spec.spatial
    try:
        for batch in image_set.batches(adapter.spec.channels, size, batch_size):
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
            if bar is not None:
                bar.update(len(batch.indices))
    finally:
        if bar is not None:
            bar.close()
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


def _progress(total: int | None, enabled: bool, description: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar rather than no result
        return None
    return tqdm(total=total, desc=description, unit="img", leave=False)
