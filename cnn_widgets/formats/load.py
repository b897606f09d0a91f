"""``load_caffe`` and ``load_onnx``: read a file, build the torch module, adapt it.

Imported by :mod:`cnn_widgets.formats` only when a loader is called (it needs torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends import Adapter, adapt
from .builder import build

MeanLike = str | Path | Sequence[float] | np.ndarray | None


class CaffeTransform:
    """What Caffe's ``caffe.io.Transformer`` does to an image, on an NCHW tensor of RGB
    images in [0, 1]: RGB→BGR (3 channels), × ``raw_scale``, − ``mean``, × ``scale``.

    ``mean`` is None, one value per (BGR) channel, or a per-pixel ``(C, H, W)`` mean,
    centre-cropped to the image when it is larger; for a larger image (feature
    visualization at another size) its per-channel average is used.
    """

    def __init__(
        self, channels: int, mean: np.ndarray | None, raw_scale: float, scale: float
    ) -> None:
        self.channels, self.raw_scale, self.scale = channels, float(raw_scale), float(scale)
        self.mean = None if mean is None else torch.from_numpy(np.array(mean, np.float32))
        self.__name__ = "caffe"  # how the adapter's repr names this preprocessing

    def _mean_for(self, size: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        assert self.mean is not None
        mean = self.mean
        height, width = mean.shape[-2:]
        if height >= size[0] and width >= size[1]:
            top, left = (height - size[0]) // 2, (width - size[1]) // 2
            mean = mean[:, top : top + size[0], left : left + size[1]]
        else:
            mean = mean.mean(dim=(1, 2), keepdim=True)
        return mean.to(device=like.device, dtype=like.dtype)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels == 3:
            images = images.flip(1)
        images = images * self.raw_scale
        if self.mean is not None:
            images = images - self._mean_for(images.shape[-2:], images)
        return images * self.scale


def _read_mean(mean: MeanLike, channels: int, size: tuple[int, int]) -> np.ndarray | None:
    """The mean as ``(C, 1, 1)`` or ``(C, H, W)`` float32, centre-cropped to ``size``."""
    if mean is None:
        return None
    if isinstance(mean, (str, Path)):
        path = Path(mean)
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".binaryproto":
            from .caffe import _blob
            from .caffe_proto import messages

            array = _blob("mean", messages()["BlobProto"].FromString(path.read_bytes()))
        else:
            raise ValueError(
                f"mean={str(mean)!r}: expected a .binaryproto or .npy file, a value per "
                "channel (BGR) or an array"
            )
    else:
        array = np.asarray(mean, dtype=np.float32)
    array = np.asarray(array, dtype=np.float32)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 1:
        array = array.reshape(-1, 1, 1)
    if array.ndim != 3 or array.shape[0] != channels:
        raise ValueError(
            f"mean has shape {array.shape}; expected {channels} values (one per channel, BGR) "
            f"or a ({channels}, H, W) per-pixel mean"
        )
    if array.shape[1:] != (1, 1):
        if array.shape[1] < size[0] or array.shape[2] < size[1]:
            raise ValueError(
                f"the per-pixel mean is {array.shape[1]}x{array.shape[2]}, smaller than the "
                f"net's {size[0]}x{size[1]} input"
            )
        top, left = (array.shape[1] - size[0]) // 2, (array.shape[2] - size[1]) // 2
        array = array[:, top : top + size[0], left : left + size[1]]
    return np.ascontiguousarray(array)


def load_caffe(
    prototxt: str | Path,
    weights: str | Path | None = None,
    *,
    mean: MeanLike = None,
    raw_scale: float = 255.0,
    scale: float = 1.0,
    labels: Sequence[str] | None = None,
) -> Adapter:
    """See :func:`cnn_widgets.load_caffe`."""
    from .caffe import read_caffe

    graph = read_caffe(prototxt, weights)
    channels, height, width = graph.input_shape
    assert height is not None and width is not None  # a Caffe input always has its size
    transform = CaffeTransform(channels, _read_mean(mean, channels, (height, width)),
                               raw_scale, scale)  # fmt: skip
    return adapt(build(graph), input_shape=graph.input_shape, preprocess=transform,
                 labels=labels)  # fmt: skip


def load_onnx(
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    preprocess: str | Callable[[Any], Any] | None = None,
    labels: Sequence[str] | None = None,
) -> Adapter:
    """See :func:`cnn_widgets.load_onnx`."""
    from .onnx import read_onnx

    if input_shape is not None and len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    graph = read_onnx(path, input_shape)
    return adapt(build(graph), input_shape=graph.input_shape, preprocess=preprocess,
                 labels=labels)  # fmt: skip
