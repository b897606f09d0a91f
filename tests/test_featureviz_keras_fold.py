"""BatchNormalization folding for Keras feature visualization
(``cnn_widgets.featureviz.keras_fold``): the passes run with each inference BatchNormalization
folded into its conv as private constants, compute the same targets, and never change the
user's model or its variables."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz, keras_impl

L = keras.layers


def with_statistics(model: keras.Model) -> keras.Model:
    """Moving statistics and an affine map far from the identity in every BatchNormalization,
    so that a wrong (or missing) fold changes the numbers."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 1.0, n).astype(np.float32))
            layer.moving_variance.assign((rng.random(n) * 3 + 0.2).astype(np.float32))
            layer.gamma.assign(rng.normal(0.0, 1.0, n).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 1.0, n).astype(np.float32))
    return model


def conv_bn_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inputs)  # with a bias
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(x))
    x = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.ReLU(max_value=6.0, name="relu2")(L.BatchNormalization(name="bn2")(x))
    x = L.Conv2D(8, 1, use_bias=False, name="conv3")(x)
    x = L.BatchNormalization(name="bn3")(x)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv4")(x)  # not foldable
    x = L.BatchNormalization(name="bn4")(x)
    return with_statistics(keras.Model(inputs, x, name="conv_bn"))


def skip_from_conv_model() -> keras.Model:
    """The conv's output feeds its BatchNormalization *and* a sum: folding would change the
    sum, so the check must refuse."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    y = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = L.Add(name="add")([L.BatchNormalization(name="bn")(y), y])
    x = L.Conv2D(4, 1, name="out")(x)
    return with_statistics(keras.Model(inputs, x, name="skip"))


def run_both(
    adapter: cw.Adapter, layer: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], dict[bool, np.ndarray], dict[bool, np.ndarray]]:
    counts: list[int] = []
    compile_ = keras_impl.Session.compile

    def spy(self: keras_impl.Session, run: object) -> None:
        compile_(self, run)
        counts.append(self.folded)

    monkeypatch.setattr(keras_impl.Session, "compile", spy)
    values, images = {}, {}
    for fold in (True, False):
        monkeypatch.setattr(keras_impl.Session, "fold_batchnorm", fold)
        seen: list[np.ndarray] = []
        images[fold] = feature_viz(
            adapter,
            layer,
            [0, 1],
            steps=3,
            size=16,
            objective="channel",
            callback=lambda step, im, v, kept=seen: kept.append(v.copy()),
        )
        values[fold] = np.stack(seen)
    return counts, values, images


@pytest.mark.parametrize(("layer", "folded"), [("relu2", 2), ("bn3", 3), ("conv3", 2), ("bn4", 3)])
def test_the_folded_step_equals_the_unfolded_one_and_leaves_the_model_alone(
    layer: str, folded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = conv_bn_model()
    adapter = cw.adapt(model)
    before = adapter.snapshot()
    weights = [w.copy() for w in model.get_weights()]
    counts, values, images = run_both(adapter, layer, monkeypatch)
    # conv4 has its own ReLU before bn4, so bn4 stays; conv3 as the target is not folded
    assert counts == [folded, 0]
    # The first step's values are the model's response to the same view of the same start;
    # later ones may drift by rounding amplified by Adam, far less than the values move.
    np.testing.assert_allclose(values[True][0], values[False][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(images[True], images[False], atol=0.05)
    assert adapter.same_state(before, adapter.snapshot())
    for want, got in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert all("call" not in layer.__dict__ for layer in model.layers)
    # the model still computes with its own BatchNormalizations
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    bn_out = keras.Model(model.input, model.get_layer("bn1").output)(x)
    conv_out = keras.Model(model.input, model.get_layer("conv1").output)(x)
    assert float(np.abs(np.asarray(bn_out) - np.asarray(conv_out)).max()) > 0.1


def test_a_conv_that_also_feeds_a_sum_is_not_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = cw.adapt(skip_from_conv_model())
    counts, values, _ = run_both(adapter, "out", monkeypatch)
    assert counts == [0, 0]
    np.testing.assert_allclose(values[True], values[False], rtol=1e-6)
