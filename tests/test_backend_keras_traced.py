"""The Keras passes without recorded layers run as traced TensorFlow functions
(:mod:`cnn_widgets.backends.keras_traced`): same results as a plain eager tape, weights read
at each call, an untraceable model run eagerly instead, and no model kept alive by the cache."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.attribution import attribution
from tests.cases import case

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
from cnn_widgets.backends import keras_traced  # noqa: E402  (needs TensorFlow)


def batch(n: int = 3, shape: tuple[int, int, int] = (3, 32, 32)) -> np.ndarray:
    return np.random.default_rng(5).random((n, *shape), dtype=np.float32)


def tape_gradients(model: Any, x: np.ndarray, classes: list[int]) -> tuple[np.ndarray, ...]:
    """Logits and the image's gradient (channels-first) from a plain eager tape."""
    image = tf.constant(x.transpose(0, 2, 3, 1))
    with tf.GradientTape() as tape:
        tape.watch(image)
        logits = model(image, training=False)
        scores = tf.gather_nd(logits, [[i, c] for i, c in enumerate(classes)])
        total = tf.reduce_sum(scores)
    grad = tape.gradient(total, image).numpy().transpose(0, 3, 1, 2)
    return logits.numpy(), scores.numpy(), grad


def close(ours: np.ndarray, theirs: np.ndarray) -> None:
    # a traced graph may fuse ops (conv + bias + activation): float32 last bits
    scale = float(np.abs(theirs).max())
    assert scale > 0
    assert float(np.abs(ours - theirs).max()) <= 1e-5 * scale


@pytest.mark.parametrize("key", ["sequential", "residual", "nested"])
def test_the_traced_pass_equals_an_eager_tape(key) -> None:
    model, adapter = case("keras", key)
    x = batch()
    result = adapter.gradients(x, (), [1, 2, 3])
    assert model in keras_traced._TRACED and model not in keras_traced.EAGER_ONLY
    logits, scores, grad = tape_gradients(model, x, [1, 2, 3])
    close(result.logits, logits)
    close(result.scores, scores)
    close(result.input_grad, grad)
    top = adapter.gradients(x[:2], (), None, backward=False)  # another batch size, forward
    assert top.input_grad is None
    close(top.logits, logits[:2])
    assert np.array_equal(top.scores, top.logits.max(axis=1))


def test_the_traced_pass_reads_the_weights_at_each_call() -> None:
    model, adapter = case("keras")
    x = batch(1)
    before = adapter.gradients(x, (), 4).input_grad
    kernel = next(v for v in model.variables if len(v.shape) == 4)
    kernel.assign(kernel.numpy() * -2.0)
    after = adapter.gradients(x, (), 4).input_grad
    assert not np.allclose(before, after)
    close(after, tape_gradients(model, x, [4])[2])


def test_a_model_that_cannot_be_traced_runs_eagerly() -> None:
    """A layer that reads a tensor's value in Python (``.numpy()``) cannot be traced: the pass
    runs eagerly instead, with the same results, and the model is remembered."""

    class Eager(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * float(np.asarray(x.numpy()).mean() > -1)  # 1, read in Python

        def compute_output_shape(self, shape: Any) -> Any:
            return shape

    inputs = keras.Input((16, 16, 3))
    hidden = Eager()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    out = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, out)
    adapter = cw.adapt(model)
    x = batch(2, (3, 16, 16))
    before = adapter.snapshot()
    result = attribution(adapter, list(x), method="saliency", target=2)
    assert model in keras_traced.EAGER_ONLY
    assert adapter.same_state(before, adapter.snapshot())
    grad = tape_gradients(model, x, [2, 2])[2]
    for r, g in zip(result, grad, strict=True):
        close(r.raw, g)


def test_the_cache_does_not_keep_a_model_alive() -> None:
    model, adapter = case("keras")
    attribution(adapter, batch(1)[0], method="saliency")
    assert model in keras_traced._TRACED
    ref = weakref.ref(model)
    del model, adapter
    gc.collect()
    assert ref() is None
