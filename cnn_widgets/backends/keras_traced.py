"""The Keras passes without layers to record, as traced TensorFlow functions: the image's
gradient (saliency, SmoothGrad, integrated gradients) and forward passes (Score-CAM's masked
images, deletion / insertion curves).

Eagerly, Keras dispatches every op of every layer from Python; on EfficientNet-Lite0 at 224 px
and one thread that was ~90 % of a saliency pass (a traced pass: 44 ms of CPU against 400 ms,
gradients equal to 1e-6 of their largest value). A function is traced once per model, input
size and kind of pass (the batch size is left open), on the first call (~2 s, once), and kept
per model object for as long as the model lives; it reads the model's variables at each call,
so changed weights (the sanity check's randomization) are seen. A model that cannot be traced
(Python that TensorFlow cannot follow) runs eagerly instead, remembered per model object.
Layers recorded for CAM methods, guided backpropagation, target callables and preprocessing
callables stay eager: they run user or wrapper code at every call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from .gradients import Gradients, check_classes, score_vector
from .keras_layers import first_tensor, softmax_kind, swapped_attributes

if TYPE_CHECKING:
    from .keras import KerasAdapter

_TRACED: weakref.WeakKeyDictionary[Any, dict[tuple, Any]] = weakref.WeakKeyDictionary()
"""Per model: (backward, input shape, output layer) -> its traced function."""

EAGER_ONLY: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Models that failed to trace (they run eagerly)."""


def traced_pass(
    adapter: KerasAdapter, nhwc: np.ndarray, classes: np.ndarray, backward: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Logits, the target classes' scores and (``backward``) the gradient of their sum with
    respect to ``nhwc``, the model's input as it takes it; classes ``-1`` mean the top class.
    Raises whatever tracing or running raised (the caller then runs eagerly)."""
    info = adapter.output_layer()
    check_classes(classes, int(np.prod(info.output_shape)))
    key = (backward, tuple(nhwc.shape[1:]), info.name)
    functions = _TRACED.setdefault(adapter.model, {})
    function = functions.get(key)
    if function is None:
        function = _trace(adapter, nhwc.shape[1:], backward)
    outputs = function(tf.convert_to_tensor(nhwc), tf.convert_to_tensor(classes.astype(np.int32)))
    functions[key] = function  # kept once it has run
    logits, scores = (np.asarray(t.numpy(), np.float32) for t in outputs[:2])
    grad = np.asarray(outputs[2].numpy(), np.float32) if backward else None
    return logits, score_vector(scores, len(nhwc)), grad


def traced_gradients(
    adapter: KerasAdapter, nhwc: np.ndarray, classes: np.ndarray, backward: bool
) -> Gradients:
    """:class:`Gradients` of a pass without recorded layers (``input_grad`` in NHWC order,
    with respect to the model's input)."""
    logits, scores, grad = traced_pass(adapter, nhwc, classes, backward)
    return Gradients(logits, scores, {}, {}, grad)


def _trace(adapter: KerasAdapter, shape: tuple[int, ...], backward: bool) -> Any:
    model_ref = weakref.ref(adapter.model)  # the cache must not keep the model alive
    forward = _logits_function(adapter, model_ref)

    def scores_of(logits: Any, classes: Any) -> Any:
        flat = tf.reshape(logits, (tf.shape(logits)[0], -1))
        top = tf.argmax(flat, axis=1, output_type=tf.int32)
        chosen = tf.where(classes < 0, top, classes)
        return tf.gather_nd(flat, tf.stack([tf.range(tf.shape(flat)[0]), chosen], axis=1))

    signature = [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32)]

    @tf.function(input_signature=signature)
    def with_gradient(x: Any, classes: Any) -> Any:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            logits = forward(x)
            scores = scores_of(logits, classes)
            total = tf.reduce_sum(scores)
        grad = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return logits, scores, grad

    @tf.function(input_signature=signature)
    def forward_only(x: Any, classes: Any) -> Any:
        logits = forward(x)
        return logits, scores_of(logits, classes)

    return with_gradient if backward else forward_only


def _logits_function(adapter: KerasAdapter, model_ref: Any) -> Callable[[Any], Any]:
    """The model's logits for a traced input: a final softmax is looked through as in the
    eager pass (its input read, or a layer's softmax activation made linear for the trace)."""
    output_layer = adapter.layer_object(adapter.output_layer())
    kind = softmax_kind(output_layer)
    layer_ref = weakref.ref(output_layer)

    def forward(x: Any) -> Any:
        model, layer = model_ref(), layer_ref()
        box: list[Any] = []
        changes: list[tuple[Any, str, Any]] = []
        if kind == "input":
            inner = layer.call

            def call(*args: Any, **kwargs: Any) -> Any:
                if not box:
                    box.append(args[0] if args else next(iter(kwargs.values())))
                return inner(*args, **kwargs)

            changes.append((layer, "call", call))
        elif kind == "activation":
            changes.append((layer, "activation", keras.activations.linear))
        # While tracing (under the caller's protect(), which holds the model lock); the
        # graph keeps what ran. Not adapter.swapped: the function must not refer to the
        # adapter, which refers to the model the cache must not keep alive.
        with swapped_attributes(changes):
            output = model(x, training=False)
        return box[0] if box else first_tensor(output)

    return forward
