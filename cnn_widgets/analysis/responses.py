"""Kernel x image, one input channel at a time (seed 002, section 二).

A convolution's output channel ``o`` is a sum over its input channels: each input map is
convolved with its own 2-D slice of filter ``o``, and the slices' results are added (then the
bias). :func:`filter_responses` returns those per-input-channel terms, so a picture can show
*which* input channels a filter listens to and where.

The convolution is done here, in numpy, on the input the layer really received in one forward
pass, with the layer's own stride, padding, dilation and groups. That keeps it the same for
both frameworks and makes it checkable: the terms add up to the layer's own output minus its
bias (the tests hold every backend to that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import ConvConfig, LayerInfo, LayerKey
from ..images import ImageLike, load_image

__all__ = ["FilterResponses", "conv_per_input", "filter_responses"]

# torch's padding modes -> numpy.pad modes (Keras always pads with zeros).
_NUMPY_PAD_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


@dataclass(frozen=True, eq=False)
class FilterResponses:
    """One filter applied to one image, input channel by input channel.

    Attributes
    ----------
    layer:
        The conv layer's name.
    channel:
        The output channel (filter index, as :func:`cnn_widgets.filters` numbers them).
    per_input:
        ``(in_per_group, H, W)`` float32: input channel ``input_channels[i]`` convolved with
        the matching kernel slice ``kernel[i]``.
    total:
        ``(H, W)`` float32, the sum of ``per_input``: the layer's output for ``channel``
        before the bias is added (and before anything after the convolution: batch norm, a
        Keras layer's fused ``activation``).
    bias:
        The bias of ``channel``, or None when the layer adds none.
    input_channels:
        The indices of the input channels that feed ``channel``: all of them for a plain
        convolution, only its group's for a grouped or depthwise one.
    inputs:
        ``(in_per_group, H_in, W_in)`` float32: those input maps as the layer received them
        (after the previous layers and the model's preprocessing), before padding.
    kernel:
        ``(in_per_group, kh, kw)`` float32: the filter's slice for each of those maps.
    """

    layer: str
    channel: int
    per_input: np.ndarray
    total: np.ndarray
    bias: float | None
    input_channels: tuple[int, ...]
    inputs: np.ndarray
    kernel: np.ndarray

    @property
    def output(self) -> np.ndarray:
        """``total + bias``: the convolution's own output for ``channel``."""
        return self.total if self.bias is None else self.total + np.float32(self.bias)

    def __repr__(self) -> str:
        bias = "none" if self.bias is None else f"{self.bias:.4g}"
        return (
            f"FilterResponses(layer={self.layer!r}, channel={self.channel}, "
            f"inputs={len(self.input_channels)} x {self.inputs.shape[1:]}, "
            f"kernel={self.kernel.shape[1:]}, out={self.total.shape}, bias={bias})"
        )


def filter_responses(
    model: Any, image: ImageLike, layer: LayerKey | LayerInfo, channel: int
) -> FilterResponses:
    """Convolve each input map of a conv layer with its slice of one filter.

    Parameters
    ----------
    model:
        A torch or Keras model, or one from :func:`cnn_widgets.adapt`. Left untouched.
    image:
        numpy array (HW, HWC or CHW), PIL image, path or file bytes; converted and resized
        as :func:`cnn_widgets.prepare_image` does.
    layer:
        Name or index of a 2-D convolution (``Conv2d``, ``Conv2D``, ``DepthwiseConv2D``,
        ``SeparableConv2D``: for the latter, its depthwise step, whose kernels
        :func:`cnn_widgets.filters` shows; its pointwise mixing is not included).
    channel:
        The filter, ``0 .. filters - 1``.

    Returns
    -------
    FilterResponses
        ``per_input`` (one map per input channel of the filter's group), ``total`` (their
        sum, equal to the layer's output minus the bias), ``bias``, ``input_channels``, and
        the ``inputs`` and ``kernel`` slices they came from.

    Raises
    ------
    ValueError
        When the layer is not a 2-D convolution, is a transposed one (its stride and padding
        act on the output), or ``channel`` is out of range (the message gives the range).
    """
    adapter = model if isinstance(model, Adapter) else adapt(model)
    info = adapter.layer(layer)
    if "transpose" in info.type.lower():
        raise ValueError(
            f"layer {info.name!r} is a transposed convolution ({info.type}); kernel x image "
            "responses need a plain convolution, whose output is a sum over its inputs"
        )
    config = adapter.conv_config(info.name)  # refuses every layer without 2-D filters
    weights = adapter.filters(info.name)
    count = weights.shape[0]
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"channel must be an int, got {type(channel).__name__}")
    if not 0 <= int(channel) < count:
        raise ValueError(
            f"channel {int(channel)} is out of range: layer {info.name!r} has {count} filters "
            f"(valid: 0..{count - 1})"
        )
    channel = int(channel)

    batch = load_image(image, adapter.spec.channels, adapter.spec.spatial)[None]
    received = adapter.layer_inputs(batch, [info.name])[info.name][0]
    in_per_group = weights.shape[1]
    if received.ndim != 3 or received.shape[0] != config.groups * in_per_group:
        raise ValueError(
            f"layer {info.name!r} received an input of shape {received.shape} (C, H, W); its "
            f"{config.groups} group(s) of {in_per_group} input channels need "
            f"{config.groups * in_per_group} channels"
        )
    group = channel // (count // config.groups)
    first = group * in_per_group
    inputs = np.ascontiguousarray(received[first : first + in_per_group])
    kernel = np.ascontiguousarray(weights[channel])
    per_input = conv_per_input(inputs, kernel, config, adapter.conv_padding_mode(info.name))

    bias_vector = adapter.conv_bias(info.name)
    return FilterResponses(
        layer=info.name,
        channel=channel,
        per_input=per_input.astype(np.float32),
        total=per_input.sum(axis=0).astype(np.float32),
        bias=None if bias_vector is None else float(bias_vector[channel]),
        input_channels=tuple(range(first, first + in_per_group)),
        inputs=inputs,
        kernel=kernel,
    )


def conv_per_input(
    inputs: np.ndarray, kernel: np.ndarray, config: ConvConfig, padding_mode: str = "zeros"
) -> np.ndarray:
    """Cross-correlate each input map with its own kernel slice, as a conv layer does.

    Parameters
    ----------
    inputs:
        ``(C, H, W)`` input maps.
    kernel:
        ``(C, kh, kw)``: ``kernel[c]`` is applied to ``inputs[c]``.
    config:
        The layer's stride, padding and dilation (``groups`` and ``has_bias`` are not used:
        pick the group's channels before calling).
    padding_mode:
        ``"zeros"``, or torch's ``"reflect"``, ``"replicate"``, ``"circular"``.

    Returns
    -------
    numpy.ndarray
        ``(C, H_out, W_out)`` float64, unsummed.

    Notes
    -----
    ``"same"`` padding follows TensorFlow: the total ``max((ceil(n / s) - 1) * s +
    (k - 1) * d + 1 - n, 0)`` is split with the odd pixel *after* the image. torch's
    ``padding="same"`` (stride 1 only) pads the same way, and so does the bundled
    EfficientNet's ``Conv2dSame``.
    """
    x = np.asarray(inputs, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64)
    if x.ndim != 3 or k.ndim != 3 or x.shape[0] != k.shape[0]:
        raise ValueError(
            f"expected inputs (C, H, W) and kernel (C, kh, kw) with the same C, got "
            f"{x.shape} and {k.shape}"
        )
    if padding_mode not in _NUMPY_PAD_MODES:
        raise ValueError(
            f"padding_mode {padding_mode!r} is not one of {', '.join(_NUMPY_PAD_MODES)}"
        )
    pads = [
        _padding(size, ksize, stride, dilation, config.padding, axis)
        for axis, (size, ksize, stride, dilation) in enumerate(
            zip(x.shape[1:], k.shape[1:], config.stride, config.dilation, strict=True)
        )
    ]
    if any(pads[0] + pads[1]):
        x = np.pad(x, ((0, 0), *pads), mode=_NUMPY_PAD_MODES[padding_mode])  # type: ignore[call-overload]
    (dh, dw), (sh, sw) = config.dilation, config.stride
    extent = ((k.shape[1] - 1) * dh + 1, (k.shape[2] - 1) * dw + 1)
    if x.shape[1] < extent[0] or x.shape[2] < extent[1]:
        raise ValueError(
            f"the (padded) input {x.shape[1:]} is smaller than the dilated kernel {extent}"
        )
    # A view, no copy: windows[c, i, j] is the dilated patch under output (i, j).
    windows = np.lib.stride_tricks.sliding_window_view(x, extent, axis=(1, 2))
    windows = windows[:, ::sh, ::sw, ::dh, ::dw]
    return np.einsum("chwij,cij->chw", windows, k)


def _padding(
    size: int, kernel: int, stride: int, dilation: int, padding: Any, axis: int
) -> tuple[int, int]:
    """``(before, after)`` padding of one spatial axis."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0)
        if mode == "same":
            out = -(-size // stride)
            total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            return (total // 2, total - total // 2)
        raise ValueError(f"padding {padding!r} is not 'same', 'valid' or a pair of ints")
    amount = int(padding[axis])
    return (amount, amount)
