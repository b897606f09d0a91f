"""Image collections streamed through a model a batch at a time: a folder, an array or any
iterable of images, read lazily so memory stays bounded by one batch whatever the set's size.

:class:`ImageSet` is shared by :func:`~cnn_widgets.analysis.top_images.top_images` and the
channel statistics of :mod:`cnn_widgets.analysis.stats`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..images import _match_channels, _resize, to_hwc_float

__all__ = ["ImageBatch", "ImageSet", "ImagesLike"]

ImagesLike = Any  # a folder path, an (N, H, W[, C]) array, or an iterable of images/paths


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
        self,
        channels: int,
        size: tuple[int, int] | None,
        batch_size: int,
        progress: str | None = None,
    ) -> Iterator[ImageBatch]:
        """Yield :class:`ImageBatch` es of at most ``batch_size`` images.

        Every image is converted to ``channels`` and, when ``size`` is given, resized to it
        (shorter side scaled, then centre-cropped, as :func:`cnn_widgets.prepare_image`
        does). Without ``size`` all images must share the first one's size.

        ``progress``: the title of a ``tqdm`` bar that counts the images as each batch is
        done with (None: no bar). The bar closes when the loop ends, however it ends.
        """
        bar = _progress_bar(self.count, progress)
        try:
            for batch in self._batches(channels, size, batch_size):
                yield batch
                if bar is not None:
                    bar.update(len(batch.indices))
        finally:
            if bar is not None:
                bar.close()

    def _batches(
        self, channels: int, size: tuple[int, int] | None, batch_size: int
    ) -> Iterator[ImageBatch]:
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


def _progress_bar(total: int | None, description: str | None) -> Any:
    """A ``tqdm`` bar counting images, or None when not wanted or tqdm is missing."""
    if description is None:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar rather than no result
        return None
    return tqdm(total=total, desc=description, unit="img", leave=False)
