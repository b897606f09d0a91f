"""BatchNormalization folded into the convolution before it, for the Keras session's passes.

The Keras twin of :mod:`.torch_fold`. In inference a ``BatchNormalization`` is a per-channel
affine map, ``y = a * x + b``; after a ``Conv2D`` or ``DepthwiseConv2D`` with a linear
activation it folds into the convolution's kernel and bias (``K' = a K``, ``bias' = a bias +
b``), and the normalization becomes the identity: two elementwise passes over every
activation forward and two backward fewer per step.

The user's model and its variables are never changed. The folded kernels are private
constants, and the swap lives only while the session traces (or eagerly runs) a pass:
through the adapter's ``swapped``, each folded convolution's ``call`` becomes the same
convolution of the constant kernel, and each folded normalization's ``call`` returns its
input. The traced step then holds the constants; the model's layers get their own ``call``
back as soon as the pass is traced.

A pair is folded when, in one eager pass, the normalization's input is the very tensor the
convolution returned, the convolution is not itself a target (its output would change), and
both are the stock Keras classes in float32 with channels-last data. Whether the folded passes
compute the same targets is then checked on a random image; any difference, or any error,
keeps the model's own layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = ["FOLD_CHECK_TOLERANCE", "foldable_pairs", "folded_swaps"]

FOLD_CHECK_TOLERANCE = 1e-3
"""Largest difference, relative to each target's largest magnitude, between the folded and
the plain pass on a random image (folding only reorders float sums; a wrong fold differs by
order 1). The same bound as the torch fold's."""

Swap = tuple[Any, str, Any]

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _stock_conv(layer: Any) -> bool:
    return (
        type(layer) in _CONVS
        and "call" not in layer.__dict__
        and layer.data_format == "channels_last"
        and getattr(layer.activation, "__name__", "") == "linear"
        and layer.compute_dtype == "float32"
        and layer.built
    )


def _stock_norm(layer: Any) -> bool:
    return (
        type(layer) is keras.layers.BatchNormalization
        and "call" not in layer.__dict__
        and layer.axis in (-1, getattr(layer.input_spec, "ndim", 0) - 1)  # the channels
        and layer.compute_dtype == "float32"
        and layer.built
    )


def foldable_pairs(
    layers: Sequence[Any], run: Callable[[], Any], swapped: Callable[[list[Swap]], Any]
) -> list[tuple[Any, Any]]:
    """``(conv, norm)`` for each stock BatchNormalization fed directly by a stock conv's
    output in the eager pass ``run()`` (each layer in one pair at most)."""
    outputs: dict[int, tuple[Any, Any]] = {}
    pairs: list[tuple[Any, Any]] = []

    def after_conv(layer: Any, inner: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            output = inner(*args, **kwargs)
            outputs[id(output)] = (output, layer)  # the tensor kept: ids stay unique
            return output

        return call

    def before_norm(layer: Any, inner: Any) -> Any:
        def call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
            found = outputs.get(id(inputs))
            if found is not None and found[0] is inputs:
                pairs.append((found[1], layer))
            return inner(inputs, *args, **kwargs)

        return call

    swaps: list[Swap] = []
    for layer in layers:
        if _stock_conv(layer):
            swaps.append((layer, "call", after_conv(layer, layer.call)))
        elif _stock_norm(layer):
            swaps.append((layer, "call", before_norm(layer, layer.call)))
    with swapped(swaps):
        run()
    convs = [id(c) for c, _ in pairs]
    norms = [id(b) for _, b in pairs]
    unique: dict[tuple[int, int], tuple[Any, Any]] = {}
    for conv, norm in pairs:
        if convs.count(id(conv)) == 1 and norms.count(id(norm)) == 1:
            unique[(id(conv), id(norm))] = (conv, norm)
    return list(unique.values())


def _folded(conv: Any, norm: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """The conv's kernel and bias with ``norm`` folded in, as constants (copies)."""
    variance = np.asarray(norm.moving_variance.numpy(), np.float64)
    scale = 1.0 / np.sqrt(variance + norm.epsilon)
    if norm.scale:
        scale = scale * np.asarray(norm.gamma.numpy(), np.float64)
    shift = -np.asarray(norm.moving_mean.numpy(), np.float64) * scale
    if norm.center:
        shift = shift + np.asarray(norm.beta.numpy(), np.float64)
    kernel = np.asarray(conv.kernel.numpy(), np.float64)
    if conv.use_bias:
        shift = shift + np.asarray(conv.bias.numpy(), np.float64) * scale
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # (kh, kw, in, multiplier): output channel c * multiplier + j
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, in / groups, out)
        kernel = kernel * scale
    return tf.constant(kernel, tf.float32), tf.constant(shift, tf.float32)


def _conv_call(conv: Any, kernel: tf.Tensor, bias: tf.Tensor) -> Callable[..., Any]:
    """``conv.call`` with the folded kernel and bias (the stock classes' own op)."""
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)

    def call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if depthwise:
            outputs = keras.ops.depthwise_conv(
                inputs,
                kernel,
                strides=conv.strides,
                padding=conv.padding,
                dilation_rate=conv.dilation_rate,
                data_format=conv.data_format,
            )
        else:
            outputs = conv.convolution_op(inputs, kernel)
        return outputs + bias

    return call


def _identity(inputs: Any, *args: Any, **kwargs: Any) -> Any:
    return inputs


def folded_swaps(pairs: Sequence[tuple[Any, Any]]) -> list[Swap]:
    """The ``(layer, "call", value)`` swaps that run ``pairs`` folded."""
    swaps: list[Swap] = []
    for conv, norm in pairs:
        kernel, bias = _folded(conv, norm)
        swaps.append((conv, "call", _conv_call(conv, kernel, bias)))
        swaps.append((norm, "call", _identity))
    return swaps


def same_targets(expected: Sequence[Any], actual: Sequence[Any]) -> bool:
    """Whether the folded pass's targets match the plain pass's (see
    :data:`FOLD_CHECK_TOLERANCE`)."""
    for want, got in zip(expected, actual, strict=True):
        want, got = np.asarray(want, np.float32), np.asarray(got, np.float32)
        if want.shape != got.shape:
            return False
        scale = float(np.abs(want).max()) if want.size else 0.0
        if float(np.abs(want - got).max(initial=0.0)) > FOLD_CHECK_TOLERANCE * (scale or 1.0):
            return False
    return True
