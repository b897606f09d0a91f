"""Keras half of the shared model catalogue.

Each factory returns ``(model, (C, H, W))``: a small, built Keras 3 model (channels_last) with
seeded random weights. The keys, the conv filter shapes (in forward order, as
``(out, in_per_group, kh, kw)``) and the channels-first conv output shapes match the torch
twins in ``torch_cases.py``; ``padding="same"`` stands in for torch's ``padding=k // 2``.
Keras-only cases: ``subclassed``. ``never_runs`` is subclassed too: only a subclassed
Keras model can hold a layer its forward pass never calls.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import keras
import numpy as np

Shape = tuple[int, int, int]
Case = Callable[[], tuple[keras.Model, Shape]]

L = keras.layers


@contextmanager
def _seeded() -> Iterator[None]:
    """Seed Keras for reproducible weights; put Python's and numpy's global streams back so
    the caller's random numbers do not depend on which models a test built."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(0)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _gap_head(x: keras.KerasTensor) -> keras.KerasTensor:
    return L.Dense(10, name="fc")(L.GlobalAveragePooling2D(name="gap")(x))


def _sequential_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.Conv2D(8, 3, padding="same", name="conv1"),
            L.ReLU(name="relu1"),
            L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(16, 3, padding="same", name="conv2"),
            L.ReLU(name="relu2"),
            L.MaxPooling2D(2, name="pool2"),
            L.Flatten(name="flatten"),
            L.Dense(32, name="fc1"),
            L.ReLU(name="relu3"),
            L.Dense(10, name="fc2"),
        ],
        name="sequential",
    )


def sequential() -> tuple[keras.Model, Shape]:
    with _seeded():
        return _sequential_model(), (3, 32, 32)


def residual() -> tuple[keras.Model, Shape]:
    with _seeded():
        inputs = keras.Input((32, 32, 3))
        stem = L.Conv2D(16, 3, padding="same", name="stem")(inputs)
        x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv_a")(stem)
        x = L.ReLU(name="relu")(L.BatchNormalization(name="bn_a")(x))
        x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv_b")(x)
        x = L.BatchNormalization(name="bn_b")(x)
        x = L.ReLU(name="relu_out")(L.Add(name="add")([stem, x]))
        return keras.Model(inputs, _gap_head(x), name="residual"), (3, 32, 32)


def branching() -> tuple[keras.Model, Shape]:
    with _seeded():
        inputs = keras.Input((32, 32, 3))
        x = L.ReLU(name="relu")(L.Conv2D(8, 3, padding="same", name="stem")(inputs))
        b1 = L.Conv2D(4, 1, name="b1")(x)
        b3 = L.Conv2D(4, 3, padding="same", name="b3")(x)
        b5 = L.Conv2D(4, 5, padding="same", name="b5")(x)
        pooled = L.MaxPooling2D(3, strides=1, padding="same", name="bpool")(x)
        bp = L.Conv2D(4, 1, name="bpool_proj")(pooled)
        x = L.Concatenate(name="concat")([b1, b3, b5, bp])
        return keras.Model(inputs, _gap_head(x), name="branching"), (3, 32, 32)


def depthwise_grouped() -> tuple[keras.Model, Shape]:
    with _seeded():
        inputs = keras.Input((32, 32, 3))
        x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
        x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
        x = L.Conv2D(16, 3, padding="same", groups=2, name="grouped")(x)
        return keras.Model(inputs, _gap_head(x), name="depthwise_grouped"), (3, 32, 32)


def dilated_strided() -> tuple[keras.Model, Shape]:
    with _seeded():
        inputs = keras.Input((32, 32, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", name="strided")(inputs)
        x = L.Conv2D(8, 3, dilation_rate=2, padding="same", name="dilated")(x)
        x = L.Conv2D(8, 5, name="valid")(x)
        return keras.Model(inputs, _gap_head(x), name="dilated_strided"), (3, 32, 32)


def bias_free() -> tuple[keras.Model, Shape]:
    with _seeded():
        inputs = keras.Input((32, 32, 3))
        x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
        bn = L.BatchNormalization(name="bn")
        x = L.ReLU(name="relu")(bn(x))
        model = keras.Model(inputs, _gap_head(x), name="bias_free")
        # Moving statistics other than 0 / 1, so that inference-mode batch norm visibly acts.
        rng = np.random.default_rng(0)
        bn.moving_mean.assign(rng.normal(0.0, 0.5, 8).astype(np.float32))
        bn.moving_variance.assign((rng.random(8) + 0.5).astype(np.float32))
        return model, (3, 32, 32)


def grayscale() -> tuple[keras.Model, Shape]:
    with _seeded():
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                L.Conv2D(6, 5, padding="same", name="conv1"),
                L.ReLU(name="relu1"),
                L.MaxPooling2D(2, name="pool1"),
                L.Conv2D(16, 5, name="conv2"),
                L.ReLU(name="relu2"),
                L.MaxPooling2D(2, name="pool2"),
                L.Flatten(name="flatten"),
                L.Dense(10, name="fc"),
            ],
            name="grayscale",
        )
        return model, (1, 28, 28)


def non_square() -> tuple[keras.Model, Shape]:
    with _seeded():
        inputs = keras.Input((24, 40, 3))
        x = L.ReLU(name="relu")(L.Conv2D(8, 3, padding="same", name="conv")(inputs))
        x = L.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)
        return keras.Model(inputs, _gap_head(x), name="non_square"), (3, 24, 40)


def nested() -> tuple[keras.Model, Shape]:
    with _seeded():
        inner_in = keras.Input((32, 32, 3))
        x = L.Conv2D(8, 3, padding="same", name="conv0")(inner_in)
        x = L.ReLU(name="relu0")(x)
        x = L.Conv2D(8, 3, padding="same", name="conv1")(x)
        x = L.ReLU(name="relu1")(x)
        features = keras.Model(inner_in, x, name="features")
        inputs = keras.Input((32, 32, 3))
        return keras.Model(inputs, _gap_head(features(inputs)), name="nested"), (3, 32, 32)


class CalledTwice(keras.Model):
    """A subclassed model whose one ReLU layer runs after both convolutions."""

    def __init__(self) -> None:
        super().__init__(name="called_twice")
        self.conv1 = L.Conv2D(8, 3, padding="same", name="conv1")
        self.conv2 = L.Conv2D(8, 3, padding="same", name="conv2")
        self.act = L.ReLU(name="act")
        self.gap = L.GlobalAveragePooling2D(name="gap")
        self.fc = L.Dense(10, name="fc")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.fc(self.gap(x))


def subclassed() -> tuple[keras.Model, Shape]:
    with _seeded():
        model = CalledTwice()
        model(np.zeros((1, 32, 32, 3), np.float32))  # builds every layer
        return model, (3, 32, 32)


class NeverRuns(keras.Model):
    """Twin of the torch case: a layer defined before the head and a conv defined after it
    that ``call`` never uses."""

    def __init__(self) -> None:
        super().__init__(name="never_runs")
        self.conv1 = L.Conv2D(8, 3, padding="same", name="conv1")
        self.skipped = L.Identity(name="skipped")
        self.relu = L.ReLU(name="relu")
        self.gap = L.GlobalAveragePooling2D(name="gap")
        self.fc = L.Dense(10, name="fc")
        self.unused = L.Conv2D(4, 3, padding="same", name="unused")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        return self.fc(self.gap(self.relu(self.conv1(x))))


def never_runs() -> tuple[keras.Model, Shape]:
    with _seeded():
        model = NeverRuns()
        # Weights to show, though call never uses it; built first, so that the model's own
        # build by the call below finds no unbuilt layer to warn about.
        model.unused.build((None, 32, 32, 8))
        model(np.zeros((1, 32, 32, 3), np.float32))
        return model, (3, 32, 32)


def conv1d_conv3d() -> tuple[keras.Model, Shape]:
    """A Conv2D, then the same features seen as a 1-D signal and as a 3-D volume."""
    with _seeded():
        inputs = keras.Input((16, 16, 3))
        x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
        x = L.Reshape((256, 4), name="to_1d")(x)
        x = L.Conv1D(4, 3, padding="same", name="conv1d")(x)
        x = L.Reshape((16, 16, 4), name="to_2d")(x)
        # The 4 channels become the depth axis of a one-channel volume, as torch's unsqueeze(1).
        x = L.Permute((3, 1, 2), name="depth_first")(x)
        x = L.Reshape((4, 16, 16, 1), name="to_3d")(x)
        x = L.Conv3D(2, 3, padding="same", name="conv3d")(x)
        x = L.Lambda(lambda t: keras.ops.mean(t, axis=-1), name="mean")(x)
        x = L.Permute((2, 3, 1), name="channels_last")(x)
        return keras.Model(inputs, _gap_head(x), name="conv1d_conv3d"), (3, 16, 16)


def no_conv() -> tuple[keras.Model, Shape]:
    with _seeded():
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                L.Flatten(name="flatten"),
                L.Dense(32, name="fc1"),
                L.ReLU(name="relu"),
                L.Dense(10, name="fc2"),
            ],
            name="no_conv",
        )
        return model, (1, 8, 8)


def nan_weights() -> tuple[keras.Model, Shape]:
    model, shape = sequential()
    conv1 = model.get_layer("conv1")
    kernel = conv1.kernel.numpy().copy()
    kernel[0, 0, 0, 0] = np.nan
    conv1.kernel.assign(kernel)
    return model, shape


CASES: dict[str, Case] = {
    "sequential": sequential,
    "residual": residual,
    "branching": branching,
    "depthwise_grouped": depthwise_grouped,
    "dilated_strided": dilated_strided,
    "bias_free": bias_free,
    "grayscale": grayscale,
    "non_square": non_square,
    "nested": nested,
    "subclassed": subclassed,
    "conv1d_conv3d": conv1d_conv3d,
    "no_conv": no_conv,
    "nan_weights": nan_weights,
    "never_runs": never_runs,
}
