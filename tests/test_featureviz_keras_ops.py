"""The TensorFlow twins of the torch feature-visualization ops
(``cnn_widgets.featureviz.keras_ops``) give torch's numbers: here the random-view resampling,
forward and gradient, against ``torch.nn.functional.grid_sample``; and the bitcast that
makes the spectrum complex, against ``tf.complex`` of the two slices; and the session's
full-size normalization, against the adapter's own preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from cnn_widgets.featureviz.keras_ops import _corner_pairs, affine_sample


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_affine_sample_matches_torch_grid_sample_forward_and_backward(
    size: tuple[int, int], traced: bool
) -> None:
    rng = np.random.default_rng(0)
    k, (height, width) = 3, size
    image = rng.random((k, height, width, 3), dtype=np.float32)
    theta = np.tile(np.eye(2, 3, dtype=np.float32), (k, 1, 1))
    theta += rng.normal(0.0, 0.3, theta.shape).astype(np.float32)  # rotate, scale, shift out
    upstream = rng.normal(size=(k, height, width, 3)).astype(np.float32)

    def run(x: tf.Tensor, theta: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = affine_sample(x, theta)
            loss = tf.reduce_sum(out * upstream)
        return out, tape.gradient(loss, x)

    run = tf.function(run, autograph=False) if traced else run
    ours, our_grad = run(tf.constant(image), tf.constant(theta))
    our_grad = our_grad.numpy()

    t = torch.tensor(image.transpose(0, 3, 1, 2), requires_grad=True)
    grid = F.affine_grid(torch.tensor(theta), [k, 3, height, width], align_corners=False)
    theirs = F.grid_sample(t - 0.5, grid, mode="bilinear", align_corners=False) + 0.5
    (theirs * torch.tensor(upstream.transpose(0, 3, 1, 2))).sum().backward()

    # float32 coordinates computed in another order: a few ulps
    np.testing.assert_allclose(
        ours.numpy(), theirs.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5
    )
    np.testing.assert_allclose(our_grad, t.grad.numpy().transpose(0, 2, 3, 1), atol=1e-4)
    assert np.abs(our_grad).max() > 0.5  # the gradient is not trivially zero


@pytest.mark.parametrize("traced", [False, True])
def test_as_complex_is_tf_complex_of_the_pairs_value_and_gradient_bit_for_bit(
    traced: bool,
) -> None:
    from cnn_widgets.featureviz.keras_ops import as_complex

    rng = np.random.default_rng(1)
    pairs = tf.constant(rng.normal(size=(2, 3, 8, 5, 2)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))

    def value_and_grad(make: object) -> tuple[np.ndarray, np.ndarray]:
        def run(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                image = tf.signal.irfft2d(make(x), fft_length=[8, 8])  # type: ignore[operator]
                loss = tf.reduce_sum(image * weights)
            return image, tape.gradient(loss, x)

        image, grad = (tf.function(run, autograph=False) if traced else run)(pairs)
        return image.numpy(), grad.numpy()

    ours = value_and_grad(as_complex)
    plain = value_and_grad(lambda x: tf.complex(x[..., 0], x[..., 1]))
    np.testing.assert_array_equal(ours[0], plain[0])
    np.testing.assert_array_equal(ours[1], plain[1])


def test_corner_pairs_are_each_row_with_its_columns_corner_by_corner() -> None:
    top_left = np.array([5, 0, 2**31 - 8, 7, 3], np.int32)  # the largest int32 columns too
    offsets = np.array([0, 1, 6, 7], np.int32)
    pairs = _corner_pairs(tf.constant(top_left), tf.constant(offsets))
    assert pairs.dtype == tf.int32
    rows = np.tile(np.arange(5), 4)
    cols = (top_left[None, :] + offsets[:, None]).reshape(-1)
    np.testing.assert_array_equal(pairs.numpy(), np.stack([rows, cols], 1))


def test_full_size_normalization_gives_the_adapters_preprocessing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keras

    import cnn_widgets as cw
    from cnn_widgets.backends.base import Normalization
    from cnn_widgets.featureviz import keras_impl

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.ReLU(name="relu")(x))
    norm = Normalization(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), scale=2.0)
    adapter = cw.adapt(model, preprocess=norm)

    def run() -> np.ndarray:
        return cw.feature_viz(adapter, "relu", [0, 1], steps=6, size=16)

    fast = []
    preprocess = keras_impl.Session._preprocess

    def spy(self: keras_impl.Session, view: tf.Tensor) -> tf.Tensor:
        fast.append(self._normalization is not None and tuple(view.shape[1:]) == (16, 16, 3))
        return preprocess(self, view)

    monkeypatch.setattr(keras_impl.Session, "_preprocess", spy)
    ours = run()
    assert any(fast)  # the traced step takes the full-size constants
    monkeypatch.setattr(keras_impl.Session, "_full_size_normalization", lambda self: None)
    fast.clear()
    plain = run()
    assert not any(fast)
    # x * (scale / std) - mean / std against (x * scale - mean) / std: ulps apart per
    # pixel, amplified by at most a little over 6 Adam steps
    np.testing.assert_allclose(ours, plain, rtol=0, atol=1e-5)
