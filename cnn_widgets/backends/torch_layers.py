"""The torch backend's view of a model's layers: the facts the layer table shows, what a
layer's output means (:func:`first_tensor`), and the messages for models that cannot tell
what input they take. Used by :mod:`.torch` (the adapter) and the feature-visualization
session."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import LayerInfo

__all__ = ["first_tensor"]

_CONV_2D = (nn.Conv2d, nn.ConvTranspose2d)
_CONV_1D = (nn.Conv1d, nn.ConvTranspose1d)
_CONV_3D = (nn.Conv3d, nn.ConvTranspose3d)
_ANY_CONV = _CONV_1D + _CONV_2D + _CONV_3D
SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Softmax2d)
"""Modules after which a model's values are probabilities: a class score (an attribution
target, a feature-viz class objective) is taken from such a module's input, the logits."""


def is_softmax(module: nn.Module) -> bool:
    """Whether ``module`` turns logits into probabilities: one of :data:`SOFTMAX_MODULES`, or
    the softmax layer of a model read from a Caffe or ONNX file (``formats.torch_ops.Shaping``
    with ``op == "softmax"``, recognised by that attribute so that the backend does not import
    the readers)."""
    return isinstance(module, SOFTMAX_MODULES) or getattr(module, "op", None) == "softmax"

def _infer_channels(model: nn.Module) -> int:
    first_linear: tuple[str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, _ANY_CONV):
            if module.in_channels > 0:
                return int(module.in_channels)
            # A lazy conv learns its channel count from the first input it sees.
            raise ValueError(
                f"the first convolution of {type(model).__name__} ({name!r}) is lazy and does "
                "not know its channel count yet: pass input_shape=(C, H, W) to cnn_widgets.adapt"
            )
        if first_linear is None and isinstance(module, nn.Linear):
            first_linear = (name or type(module).__name__, module)
    model_name = type(model).__name__
    if first_linear is not None:
        name, linear = first_linear
        raise ValueError(
            f"{model_name} has no convolution to read the input's channel count from; its "
            f"first Linear layer {name!r} takes {linear.in_features} values, so pass "
            f"input_shape=(C, H, W) with C*H*W == {linear.in_features} to cnn_widgets.adapt"
        )
    raise ValueError(
        f"cannot tell what input {model_name} expects (no convolution or Linear layer to read "
        "it from): pass input_shape=(C, H, W) to cnn_widgets.adapt"
    )


def _dummy_forward_failure(
    shape: tuple[int, int | None, int | None], size: tuple[int, int], err: Exception
) -> str:
    channels = shape[0]
    problem = f"{type(err).__name__}: {err}"
    if shape[1] is None or shape[2] is None:
        return (
            f"no image size is known for this model, and a trial forward pass on a "
            f"{channels}x{size[0]}x{size[1]} zero image failed ({problem}); "
            "pass input_shape=(C, H, W) to cnn_widgets.adapt"
        )
    return (
        f"a trial forward pass on a {channels}x{size[0]}x{size[1]} zero image failed "
        f"({problem}); check input_shape, or pass input_shape=(C, H, W) to cnn_widgets.adapt "
        "if it was inferred"
    )


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device of the first parameter or buffer and the dtype of the first floating one,
    read lazily: a model with hundreds of tensors is not listed whole on every pass."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    first = next(tensors, None)
    if first is None:
        return torch.device("cpu"), torch.float32
    floating = first if first.is_floating_point() else None
    if floating is None:
        floating = next((t for t in tensors if t.is_floating_point()), None)
    return first.device, torch.float32 if floating is None else floating.dtype


def first_tensor(output: Any) -> torch.Tensor | None:
    """The output itself, or the first tensor inside a tuple/list/dict (LSTM, attention):
    what a layer's output means everywhere in cnn_widgets."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    # copy=True: the array must never alias a parameter or a tensor the model reuses; in C
    # order also when the tensor is channels-last.
    return (
        tensor.detach()
        .to(device="cpu", dtype=torch.float32, copy=True, memory_format=torch.contiguous_format)
        .numpy()
    )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def _layer_info(
    name: str,
    module: nn.Module,
    output_shape: tuple[int, ...] | None,
    index: int,
    calls: int,
) -> LayerInfo:
    params = [
        (param_name, param)
        for param_name, param in module.named_parameters(recurse=False)
        if not nn.parameter.is_lazy(param)
    ]
    if isinstance(module, _CONV_2D):
        kind = "conv2d"
    elif isinstance(module, _CONV_1D):
        kind = "conv1d"
    elif isinstance(module, _CONV_3D):
        kind = "conv3d"
    elif isinstance(module, nn.Linear):
        kind = "dense"
    else:
        kind = "other"
    # A module built from a model file (cnn_widgets.formats) names the type its file gives
    # the layer ("Convolution", "Gemm"): what its author knows it by.
    source_type = getattr(module, "source_type", None)
    return LayerInfo(
        name=name,
        type=source_type if isinstance(source_type, str) else type(module).__name__,
        output_shape=output_shape,
        param_shapes={param_name: tuple(param.shape) for param_name, param in params},
        num_params=sum(param.numel() for _, param in params),
        has_filters=kind == "conv2d",
        index=index,
        kind=kind,
        calls=calls,
    )
