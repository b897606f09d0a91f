"""The Keras backend's view of a model's layers: the layer tree, recording a layer's calls,
layout conversions (NHWC / HWIO to channels-first) and the facts the layer table shows.

Shared by :mod:`.keras` (the adapter) and the Keras feature-visualization session; nothing
here holds the model lock — the adapter's methods do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np

__all__ = [
    "SOFTMAX_ACTIVATIONS",
    "all_layers",
    "first_tensor",
    "restore_attribute",
    "softmax_kind",
    "swapped_attributes",
    "unique",
    "walk",
]

_MISSING = object()

_CONV2D = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
)
_CONV1D = (
    keras.layers.Conv1D,
    keras.layers.DepthwiseConv1D,
    keras.layers.SeparableConv1D,
    keras.layers.Conv1DTranspose,
)
_CONV3D = (keras.layers.Conv3D, keras.layers.Conv3DTranspose)



# -- layer tree ----------------------------------------------------------------------------
def _children(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Sublayers worth opening: a model's layers, or those of a user-defined composite layer.

    Built-in Keras layers with internal sublayers (MultiHeadAttention, Bidirectional, ...)
    stay whole: their parts are implementation details.
    """
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    if not type(layer).__module__.startswith("keras."):
        return list(getattr(layer, "_layers", ()))
    return []


def walk(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """Every listed layer with its flattened name, in definition order, each object once."""
    entries: list[tuple[str, keras.layers.Layer]] = []
    seen: set[int] = set()
    taken: set[str] = set()

    def visit(layer: keras.layers.Layer, prefix: str) -> None:
        for child in _children(layer):
            if id(child) in seen or isinstance(child, keras.layers.InputLayer):
                continue
            seen.add(id(child))
            name = prefix + child.name
            if name in taken:  # only subclassed models allow duplicate names
                k = 2
                while f"{name}#{k}" in taken:
                    k += 1
                name = f"{name}#{k}"
            inner = _children(child)
            if inner:
                visit(child, name + "/")
            if not isinstance(child, keras.Model):
                taken.add(name)
                entries.append((name, child))

    visit(model, "")
    return entries


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model and every layer under it (containers, InputLayers, built-in internals),
    pre-order, each once: what snapshot and protect look after."""
    out: list[keras.layers.Layer] = []
    seen: set[int] = set()
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out.append(layer)
        stack.extend(reversed(list(getattr(layer, "_layers", ()))))
    return out


def unique(items: Sequence[Any]) -> list[Any]:
    seen: set[int] = set()
    return [x for x in items if not (id(x) in seen or seen.add(id(x)))]


# -- recording ------------------------------------------------------------------------------
def _recording_call(name: str, inner: Any, on_output: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        output = inner(*args, **kwargs)
        # Building a model traces layers symbolically; only concrete (eager) calls count.
        if _is_concrete(output):
            on_output(name, output, args)
        return output

    return call


@contextmanager
def swapped_attributes(changes: Iterable[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set instance attributes of layers (``call``, ``activation``) for the block and put back
    exactly what was there afterwards (an attribute the instance did not have is removed
    again), also when the block raises.

    ``Layer.__call__`` looks ``self.call`` up on the instance every time, so a function stored
    in the instance ``__dict__`` shadows the class method; ``object.__setattr__`` skips Keras's
    attribute tracking, so the model never records the change.
    """
    previous: list[tuple[Any, str, Any]] = []
    try:
        for layer, name, value in changes:
            previous.append((layer, name, layer.__dict__.get(name, _MISSING)))
            object.__setattr__(layer, name, value)
        yield
    finally:
        for layer, name, attr in reversed(previous):
            restore_attribute(layer, name, attr)


def restore_attribute(layer: Any, name: str, attr: Any) -> None:
    """Put back an instance attribute as it was (``_MISSING``: the instance had none)."""
    if layer.__dict__.get(name, _MISSING) is attr:
        return
    if attr is _MISSING:
        object.__delattr__(layer, name)
    else:
        object.__setattr__(layer, name, attr)


def _is_concrete(output: Any) -> bool:
    leaves = keras.tree.flatten(output)
    if not leaves or keras.backend.is_keras_tensor(leaves[0]):
        return False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # already imported by Keras on this backend

        return bool(tf.executing_eagerly())
    return True


def first_tensor(output: Any) -> Any:
    """A layer's output, or the first tensor of a multi-output layer: what a layer's output
    means everywhere in cnn_widgets."""
    if hasattr(output, "shape"):
        return output
    return keras.tree.flatten(output)[0]


# -- layout conversions ---------------------------------------------------------------------
def _channels_first_shape(shape: Sequence[int | None]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    return dims[-1:] + dims[:-1] if len(dims) >= 2 else dims


def _to_channels_first(array: np.ndarray) -> np.ndarray:
    """Batch kept: ``(N, ..., C) -> (N, C, ...)``; ``(N, F)`` unchanged."""
    return np.ascontiguousarray(np.moveaxis(array, -1, 1)) if array.ndim >= 3 else array


def _flatten_channels_first(flat: np.ndarray, flatten_input: Any) -> np.ndarray:
    """A Flatten of an ``(N, H, W, C)`` tensor lists values channel-last; reorder them to the
    ``(C, H, W)`` order torch's flatten uses, so a vector means the same in both frameworks."""
    shape = tuple(int(d) for d in getattr(flatten_input, "shape", ()))
    if len(shape) < 3 or flat.ndim != 2 or int(np.prod(shape[1:])) != flat.shape[1]:
        return flat
    return np.ascontiguousarray(np.moveaxis(flat.reshape(shape), -1, 1).reshape(flat.shape))


def _to_float32(tensor: Any) -> np.ndarray:
    return np.array(_numpy(tensor), dtype=np.float32)  # always a copy


def _numpy(tensor: Any) -> np.ndarray:
    # ``.numpy()`` first: keras.ops.convert_to_numpy goes through ``np.array(x)``, which makes
    # numpy 2 warn (DeprecationWarning) about TensorFlow's ``__array__`` signature.
    to_numpy = getattr(tensor, "numpy", None)
    return np.asarray(to_numpy() if callable(to_numpy) else keras.ops.convert_to_numpy(tensor))


def _depthwise_oihw(kernel: Any) -> np.ndarray:
    """``(kh, kw, in, mult)`` -> ``(in * mult, 1, kh, kw)``; output ``c * mult + m`` is input
    channel ``c``'s ``m``-th kernel, the order Keras concatenates depthwise outputs in."""
    k = _to_float32(kernel)
    kh, kw, cin, mult = k.shape
    return np.ascontiguousarray(k.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None])


def _pair(value: Any) -> tuple[int, int]:
    values = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


# -- logits -------------------------------------------------------------------------------
SOFTMAX_ACTIVATIONS = ("softmax", "log_softmax")


def softmax_kind(layer: keras.layers.Layer) -> str:
    """Where a layer's pre-softmax values (the logits a class score is taken from) are:
    ``"output"`` (the layer applies no softmax), ``"input"`` (a ``Softmax`` layer or an
    ``Activation("softmax")``: its input) or ``"activation"`` (a layer with
    ``activation="softmax"``, a ``Dense`` say: its output with the activation left out)."""
    if isinstance(layer, keras.layers.Softmax):
        return "input"
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    if activation in SOFTMAX_ACTIVATIONS:
        return "input" if isinstance(layer, keras.layers.Activation) else "activation"
    return "output"


# -- layer facts ------------------------------------------------------------------------------
def _kind(layer: keras.layers.Layer) -> str:
    if isinstance(layer, _CONV2D):
        return "conv2d"
    if isinstance(layer, _CONV1D):
        return "conv1d"
    if isinstance(layer, _CONV3D):
        return "conv3d"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return "other"


def _param_shapes(layer: keras.layers.Layer) -> dict[str, tuple[int, ...]]:
    """Variable name -> shape (Keras layout). A composite layer we open counts only the
    variables its sublayers do not own (those are listed under the sublayers)."""
    weights = unique(layer.weights)
    children = _children(layer)
    if children:
        inner = {id(v) for child in children for v in child.weights}
        weights = [v for v in weights if id(v) not in inner]
    shapes: dict[str, tuple[int, ...]] = {}
    for v in weights:
        key = _relative_name(v, layer.name)
        base, k = key, 2
        while key in shapes:
            key, k = f"{base}_{k}", k + 1
        shapes[key] = tuple(int(d) for d in v.shape)
    return shapes


def _relative_name(variable: Any, layer_name: str) -> str:
    """``"model/conv1/kernel"`` -> ``"kernel"``; keeps sublayer parts (``"query/kernel"``)."""
    parts = str(getattr(variable, "path", variable.name)).split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == layer_name:
            return "/".join(parts[i + 1 :])
    return str(variable.name)


