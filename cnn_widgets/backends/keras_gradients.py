"""Gradients for the Keras backend: :meth:`KerasAdapter.gradients` in one eager pass under a
``tf.GradientTape``.

Each wanted layer's ``call`` is wrapped for the pass (the adapter's ``swapped``, restored in
``finally`` blocks); the wrapper asks the tape to watch the layer's output, the very tensor the
next layers consume, so the tape gives the gradient with respect to it. Layers inside nested
models are reached the same way, as their own ``call`` runs when the nested model runs: no
sub-model is built, which would not reach them.

A :class:`~cnn_widgets.backends.base.Normalization` (an affine map per channel) is applied in
numpy before the pass and the image's gradient is scaled by it afterwards (the chain rule),
instead of running it as recorded TensorFlow ops: eagerly, their forward and backward ops
cost EfficientNet-Lite0's saliency ~30 ms of ~365 at one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from .base import Normalization
from .gradients import Gradients, Target, check_classes, score_vector
from .keras_layers import (
    _numpy,
    _recording_call,
    _to_channels_first,
    all_layers,
    first_tensor,
    softmax_kind,
)
from .keras_traced import EAGER_ONLY, traced_gradients

if TYPE_CHECKING:
    from .keras import KerasAdapter


def keras_gradients(
    adapter: KerasAdapter,
    batch: np.ndarray,
    names: Sequence[str],
    target: Target,
    backward: bool = True,
    input_grad: bool = True,
    guided: bool = False,
) -> Gradients:
    """See :meth:`Adapter.gradients`; the caller holds :meth:`KerasAdapter.protect`."""
    if batch.ndim != 4 or batch.shape[1] != adapter.spec.channels:
        raise ValueError(
            f"expected a batch of shape (N, {adapter.spec.channels}, H, W), got {batch.shape}"
        )
    pre = adapter.spec.preprocess
    nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    if isinstance(pre, Normalization):  # the same float32 ops as adapter.preprocess, in numpy
        std = np.asarray(pre.std, np.float32)
        nhwc = (nhwc * np.float32(pre.scale) - np.asarray(pre.mean, np.float32)) / std
    # Nothing recorded, no user code at each call: a traced function (see keras_traced).
    plain = not names and not guided and not callable(target)
    if (
        plain
        and (pre is None or isinstance(pre, Normalization))
        and adapter.model not in EAGER_ONLY
    ):
        try:
            traced = traced_gradients(adapter, nhwc, np.asarray(target), backward)
        except Exception:
            # The model's own error, if it has one, comes from the eager pass.
            result = _eager(adapter, batch, nhwc, names, target, backward, input_grad, guided)
            EAGER_ONLY[adapter.model] = True
            return result
        grad = traced.input_grad
        return Gradients(
            traced.logits, traced.scores, {}, {},
            _input_grad(grad, grad, pre) if backward and input_grad else None,
        )
    return _eager(adapter, batch, nhwc, names, target, backward, input_grad, guided)


def _eager(
    adapter: KerasAdapter,
    batch: np.ndarray,
    nhwc: np.ndarray,
    names: Sequence[str],
    target: Target,
    backward: bool,
    input_grad: bool,
    guided: bool,
) -> Gradients:
    """The pass under a ``tf.GradientTape``, layer by layer from Python."""
    pre = adapter.spec.preprocess
    recorded: dict[str, Any] = {}
    logits_box: list[Any] = []
    tape = tf.GradientTape(watch_accessed_variables=False)

    def on_call(name: str, result: Any, args: tuple[Any, ...] = ()) -> None:
        if name in recorded:
            return  # a layer called again: its first call is the one used
        tensor = first_tensor(result)
        if backward:
            tape.watch(tensor)
        recorded[name] = tensor

    def softmax_input(inner: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not logits_box:
                logits_box.append(args[0] if args else next(iter(kwargs.values())))
            return inner(*args, **kwargs)

        return call

    output_layer = adapter.layer_object(adapter.output_layer())
    kind = softmax_kind(output_layer)

    def changes() -> Any:
        # A generator: swapped applies each change before the next is read, so the softmax
        # wrapper wraps a recording wrapper already put on the same layer.
        for name in names:
            layer = adapter.layer_object(name)
            yield layer, "call", _recording_call(name, layer.call, on_call)
        if kind == "input":
            yield output_layer, "call", softmax_input(output_layer.call)
        elif kind == "activation":
            yield output_layer, "activation", keras.activations.linear
        if guided and backward:
            yield from _guided_changes(all_layers(adapter.model))

    x = tf.convert_to_tensor(nhwc)
    with tape:
        if backward and input_grad:
            # Watched only when its gradient is wanted: CAM methods then record the forward
            # pass from the first chosen layer on (the tape records what watched tensors touch).
            tape.watch(x)
        with adapter.swapped(changes()):
            model_input = x if isinstance(pre, Normalization) else adapter.preprocess(x)
            output = adapter.model(model_input, training=False)
        missing = [n for n in names if n not in recorded]
        if missing:
            raise ValueError(
                f"layer(s) {', '.join(map(repr, missing))} did not run in the forward pass, "
                "so they have no gradients"
            )
        logits = logits_box[0] if logits_box else first_tensor(output)
        scores = _scores(logits, target, len(batch))
        total = tf.reduce_sum(scores)
    wanted = [recorded[n] for n in names]

    def channels_first(tensor: Any, like: Any) -> np.ndarray:
        array = np.zeros(like.shape, np.float32) if tensor is None else _numpy(tensor)
        return _to_channels_first(np.asarray(array, np.float32))

    activations = {n: channels_first(recorded[n], recorded[n]) for n in names}
    logits_np = np.asarray(_numpy(logits), np.float32)
    scores_np = score_vector(_numpy(scores), len(batch))
    if not backward:
        return Gradients(logits_np, scores_np, activations, {}, None)
    # Without the image's gradient, the tape differentiates only down to the chosen layers.
    if input_grad:
        grads = tape.gradient(total, [x, *wanted])
    else:
        grads = [None, *tape.gradient(total, wanted)]
    return Gradients(
        logits=logits_np,
        scores=scores_np,
        activations=activations,
        layer_grads={
            n: channels_first(g, t) for n, g, t in zip(names, grads[1:], wanted, strict=True)
        },
        input_grad=_input_grad(grads[0], x, pre) if input_grad else None,
    )


def _input_grad(grad: Any, x: Any, pre: Any) -> np.ndarray:
    """The gradient with respect to the [0, 1] image, ``(N, C, H, W)``: through a
    Normalization ``(x * scale - mean) / std`` by the chain rule, in the order TensorFlow's
    own gradients of those ops would compute it."""
    array = np.zeros(x.shape, np.float32) if grad is None else np.asarray(_numpy(grad), np.float32)
    if isinstance(pre, Normalization):
        array = array / np.asarray(pre.std, np.float32) * np.float32(pre.scale)
    return _to_channels_first(array)


_RELUS = (keras.activations.relu, keras.activations.relu6)


@tf.custom_gradient
def _guide(x: Any) -> Any:
    """Identity forward; backward passes only the positive part of the gradient. Put after a
    ReLU, whose own backward then masks where its input was <= 0: guided backpropagation."""

    def grad(upstream: Any) -> Any:
        return tf.maximum(upstream, 0.0)

    return tf.identity(x), grad


def _guided(inner: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        return _guide(inner(*args, **kwargs))

    return call


def _guided_changes(layers: Sequence[Any]) -> Any:
    """``swapped`` changes that guide every ReLU: ReLU layers' ``call``, and relu / relu6
    activations of any layer (``Conv2D(..., activation="relu")``, ``Activation("relu")``)."""
    for layer in layers:
        if isinstance(layer, keras.layers.ReLU):
            yield layer, "call", _guided(layer.call)
        elif getattr(layer, "activation", None) in _RELUS:
            yield layer, "activation", _guided(layer.activation)


def _scores(logits: Any, target: Target, n: int) -> Any:
    if callable(target):
        scores = target(logits)
        score_vector(_numpy(scores), n)  # checks the shape
        return scores
    flat = tf.reshape(logits, (n, -1))
    check_classes(target, int(flat.shape[1]))
    classes = np.asarray(target)
    if (classes < 0).any():  # the top class: read off the logits only when asked for
        classes = np.where(classes < 0, np.argmax(_numpy(flat), axis=1), classes)
    # One gather_nd op (and one scatter back): tf.gather with batch_dims runs ~10 small
    # ops on the tape, each with its Python dispatch, recorded and differentiated.
    indices = np.stack([np.arange(n), classes], axis=1).astype(np.int32)
    return tf.gather_nd(flat, indices)
