"""Real third-party architectures, built offline with seeded random weights, for the tests.

Keras models come from ``keras.applications`` (``weights=None``: nothing is downloaded), torch
models from ``torchvision.models`` (``weights=None``). torchvision is a test-only dependency
(the Makefile installs it with ``--no-deps`` so that pip cannot replace our CPU torch); its
C++ operators do not load beside that torch, and its import registers fake implementations
for ``torchvision::nms`` and ``torchvision::qnms``, which fails unless the operators are
declared first. :func:`torchvision_models` declares them, then imports torchvision. Only the
pure-Python model definitions are used; the C++ ops (nms, roi_align) stay unavailable.

Each :class:`Architecture` names the families it stands for and builds a :class:`RealModel`:
the model and the adapter options that fit it (input size, the preprocessing the
architecture expects). Inputs are
64-96 px and heads have 10 classes, so the whole corpus runs in minutes on two cores.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import keras
import numpy as np
import torch

import cnn_widgets as cw
from cnn_widgets.backends import Normalization

CLASSES = 10
SEED = 0

# The operators torchvision's import attaches fake (meta) implementations to.
_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# Kept alive for the process: dropping a torch.library.Library removes its definitions.
_torchvision_library: Any = None


@dataclass(frozen=True)
class RealModel:
    """A built model and how to adapt it.

    Attributes
    ----------
    model:
        The ``torch.nn.Module`` (left in training mode, as a user's model may be: the tests
        check that it stays so) or the ``keras.Model``.
    input_shape:
        ``(C, H, W)`` for :func:`cnn_widgets.adapt`.
    preprocess:
        What the architecture expects on a [0, 1] image.
    """

    model: Any
    input_shape: tuple[int, int, int]
    preprocess: Any

    def adapt(self) -> cw.Adapter:
        return cw.adapt(self.model, input_shape=self.input_shape, preprocess=self.preprocess)


@dataclass(frozen=True)
class Architecture:
    """One corpus entry: the families it stands for, and how to build it (seeded)."""

    families: tuple[str, ...]
    build: Callable[[], RealModel]


def torchvision_models() -> ModuleType:
    """``torchvision.models``, importable beside the CPU torch (see the module docstring)."""
    global _torchvision_library
    if "torchvision" not in sys.modules and _torchvision_library is None:
        library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _TORCHVISION_OPS:
            # RuntimeError: already declared (by a torchvision build whose C++ ops loaded).
            with contextlib.suppress(RuntimeError):
                library.define(schema)
        _torchvision_library = library
    import torchvision.models

    return torchvision.models


# -- torch --------------------------------------------------------------------------------
def _torch(name: str, families: tuple[str, ...], size: int = 64, **kwargs: Any) -> Architecture:
    def build() -> RealModel:
        models = torchvision_models()
        # fork_rng: seeded weights without moving the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = getattr(models, name)(weights=None, num_classes=CLASSES, **kwargs)
        return RealModel(model, (3, size, size), "imagenet")

    return Architecture(families, build)


TORCH_MODELS: dict[str, Architecture] = {
    "resnet18": _torch("resnet18", ("residual",)),
    "densenet121": _torch("densenet121", ("dense concatenation",)),
    "mobilenet_v3_small": _torch(
        "mobilenet_v3_small", ("depthwise", "squeeze-excitation", "hard-swish")
    ),
    "efficientnet_b0": _torch(
        "efficientnet_b0", ("depthwise", "squeeze-excitation", "stochastic depth")
    ),
    "shufflenet_v2_x0_5": _torch("shufflenet_v2_x0_5", ("channel shuffle", "modules never run")),
    "googlenet": _torch(
        "googlenet", ("inception branches",), size=96, aux_logits=False, init_weights=False
    ),
    "convnext_tiny": _torch("convnext_tiny", ("LayerNorm blocks", "stochastic depth")),
    "regnet_x_400mf": _torch("regnet_x_400mf", ("grouped convolutions", "residual")),
    "squeezenet1_1": _torch("squeezenet1_1", ("fire modules", "conv classifier, no Linear")),
}


# -- keras --------------------------------------------------------------------------------
# What each application expects on a [0, 1] image (the Keras docs' preprocess_input modes):
# "tf": [-1, 1]; "torch": ImageNet mean/std; "caffe": BGR, mean-subtracted 0..255; models with
# preprocessing layers inside (Rescaling / Normalization) take 0..255.
_TF_MODE = Normalization(mean=(0.5,), std=(0.5,))
_INSIDE = Normalization(mean=(0.0,), std=(1.0,), scale=255.0)


def _caffe(x: Any) -> Any:
    """ResNet50's preprocess_input on an NHWC [0, 1] tensor (a callable preprocess)."""
    return keras.applications.resnet50.preprocess_input(x * 255.0)


def _keras(
    name: str, families: tuple[str, ...], preprocess: Any, size: int = 64, **kwargs: Any
) -> Architecture:
    def build() -> RealModel:
        # set_random_seed seeds Python, numpy and the backend; put the global streams back so
        # the caller's random numbers do not depend on which models a test built.
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            keras.utils.set_random_seed(SEED)
            model = getattr(keras.applications, name)(
                weights=None, input_shape=(size, size, 3), classes=CLASSES, **kwargs
            )
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        return RealModel(model, (3, size, size), preprocess)

    return Architecture(families, build)


KERAS_MODELS: dict[str, Architecture] = {
    "ResNet50": _keras("ResNet50", ("residual", "callable preprocess"), _caffe),
    "DenseNet121": _keras("DenseNet121", ("dense concatenation",), "imagenet"),
    "MobileNetV2": _keras("MobileNetV2", ("depthwise", "inverted residual"), _TF_MODE),
    "Xception": _keras("Xception", ("separable convolutions",), _TF_MODE, size=71),
    "EfficientNetB0": _keras(
        "EfficientNetB0",
        ("depthwise", "squeeze-excitation", "Rescaling + Normalization inside"),
        _INSIDE,
    ),
    "MobileNetV3Small": _keras(
        "MobileNetV3Small", ("squeeze-excitation", "hard-swish", "Rescaling inside"), _INSIDE
    ),
    "ConvNeXtTiny": _keras(
        "ConvNeXtTiny", ("LayerNorm blocks", "Normalization inside"), _INSIDE
    ),
    "InceptionV3": _keras("InceptionV3", ("inception branches",), _TF_MODE, size=75),
}
