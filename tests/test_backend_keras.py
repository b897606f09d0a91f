"""Keras-specific behaviour of the Keras 3 backend (the shared contract is in test_contract.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnn_widgets.backends import adapt
from cnn_widgets.backends.base import Normalization
from cnn_widgets.backends.keras import KerasAdapter
from tests.cases import keras_cases

L = keras.layers


def build(case: str, **kwargs: object) -> tuple[keras.Model, KerasAdapter]:
    model, shape = keras_cases.CASES[case]()
    adapter = adapt(model, input_shape=shape, **kwargs)
    assert isinstance(adapter, KerasAdapter)
    return model, adapter


def random_batch(shape: tuple[int, int, int], n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


def to_numpy(tensor: object) -> np.ndarray:
    return np.asarray(tensor.numpy())  # np.asarray(tensor) makes numpy 2 warn about __array__


def channels_first(array: object) -> np.ndarray:
    return np.moveaxis(to_numpy(array), -1, 1)


def sub_model_output(model: keras.Model, layer: str, batch: np.ndarray) -> np.ndarray:
    probe = keras.Model(model.inputs[0], model.get_layer(layer).output)
    return channels_first(probe(nhwc(batch), training=False))


def every_layer(model: keras.Model) -> list[keras.layers.Layer]:
    return list(model._flatten_layers(include_self=True, recursive=True))


def assert_no_call_wrappers(model: keras.Model) -> None:
    wrapped = [layer.name for layer in every_layer(model) if "call" in layer.__dict__]
    assert not wrapped, f"call wrappers left on {wrapped}"


class Counting(L.Layer):
    """Identity that counts its eager calls, to see how far a forward pass went."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.count = 0

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        self.count += 1
        return x


class ResidualBlock(L.Layer):
    """A user-defined layer made of Keras layers: the backend opens it."""

    def __init__(self, channels: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.conv_a = L.Conv2D(channels, 3, padding="same", name="conv_a")
        self.conv_b = L.Conv2D(channels, 3, padding="same", name="conv_b")
        self.scale = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        return x + self.scale * self.conv_b(keras.ops.relu(self.conv_a(x)))


# -- how layers are found ------------------------------------------------------------------
def test_keras_layer_call_dispatches_through_the_instance_call_attribute() -> None:
    model, adapter = build("sequential")
    conv1 = model.get_layer("conv1")
    seen: list[tuple[int, ...]] = []

    def spy(*args: object, **kwargs: object) -> object:
        output = type(conv1).call(conv1, *args, **kwargs)
        seen.append(tuple(output.shape))
        return output

    with adapter.swapped([(conv1, "call", spy)]):
        assert conv1.__dict__["call"] is spy
        model(np.zeros((1, 32, 32, 3), np.float32), training=False)
    assert seen == [(1, 32, 32, 8)]
    assert "call" not in conv1.__dict__


def test_swapped_attributes_are_put_back_exactly_also_after_an_error() -> None:
    model, adapter = build("sequential")
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")

    def own_call(*args: object, **kwargs: object) -> None:
        return None

    object.__setattr__(conv2, "call", own_call)  # conv2 has an instance-level call already
    try:
        swaps = [(conv1, "call", print), (conv2, "call", print)]
        with pytest.raises(RuntimeError, match="inside"), adapter.swapped(swaps):
            assert conv1.__dict__["call"] is print and conv2.__dict__["call"] is print
            raise RuntimeError("inside")
        assert "call" not in conv1.__dict__  # it had none of its own: removed again
        assert conv2.__dict__["call"] is own_call  # its own one is back
    finally:
        object.__delattr__(conv2, "call")


def test_nested_model_layers_are_named_outer_slash_inner() -> None:
    _, adapter = build("nested")
    names = [info.name for info in adapter.layers()]
    assert names == [
        "features/conv0",
        "features/relu0",
        "features/conv1",
        "features/relu1",
        "gap",
        "fc",
    ]
    assert adapter.filters("features/conv0").shape == (8, 3, 3, 3)


def test_subclassed_model_layers_come_in_forward_order_and_a_shared_layer_once() -> None:
    _, adapter = build("subclassed")
    infos = adapter.layers()
    assert [i.name for i in infos] == ["conv1", "act", "conv2", "gap", "fc"]
    assert [i.calls for i in infos] == [1, 2, 1, 1, 1]
    assert [i.index for i in infos] == list(range(5))


def test_layer_table_reports_kinds_params_and_channels_first_shapes() -> None:
    _, adapter = build("conv1d_conv3d")
    by_name = {i.name: i for i in adapter.layers()}
    assert by_name["conv"].output_shape == (4, 16, 16)
    assert by_name["conv1d"].output_shape == (4, 256) and by_name["conv1d"].kind == "conv1d"
    assert by_name["conv3d"].output_shape == (2, 4, 16, 16) and by_name["conv3d"].kind == "conv3d"
    assert by_name["fc"].kind == "dense" and by_name["fc"].output_shape == (10,)
    assert by_name["conv"].param_shapes == {"kernel": (3, 3, 3, 4), "bias": (4,)}
    assert by_name["conv3d"].num_params == 3 * 3 * 3 * 1 * 2 + 2
    assert [i.name for i in adapter.layers() if i.has_filters] == ["conv"]
    _, bn_adapter = build("bias_free")
    bn = bn_adapter.layer("bn")
    assert set(bn.param_shapes) == {"gamma", "beta", "moving_mean", "moving_variance"}


def test_input_layers_are_skipped() -> None:
    _, adapter = build("residual")
    assert not any(i.type == "InputLayer" for i in adapter.layers())


@pytest.mark.filterwarnings("ignore:`build\\(\\)` was called on layer:UserWarning")
def test_layers_that_did_not_run_come_last_without_a_shape() -> None:
    class WithSpare(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.spare = L.Dense(3, name="spare")
            self.conv = L.Conv2D(4, 3, name="conv")

        def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
            return self.conv(x)

    adapter = adapt(WithSpare(), input_shape=(3, 8, 8))
    infos = adapter.layers()
    assert [(i.name, i.output_shape, i.calls) for i in infos] == [
        ("conv", (4, 6, 6), 1),
        ("spare", None, 0),
    ]
    with pytest.raises(ValueError, match=r"'spare' did not run"):
        adapter.activations(np.zeros((1, 3, 8, 8), np.float32), ["spare"])


class Head(keras.Model):
    """conv -> pool -> fc, then ``tail`` decides what the model returns."""

    def __init__(self, tail: str) -> None:
        super().__init__(name=f"head_{tail}")
        self.tail = tail
        self.conv = L.Conv2D(4, 3, name="conv")
        self.act = L.ReLU(name="act")
        self.gap = L.GlobalAveragePooling2D(name="gap")
        self.fc = L.Dense(5, name="fc")
        self.aux = L.Dense(2, name="aux")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        features = self.gap(self.act(self.conv(x)))
        out = self.fc(features)
        if self.tail == "function":  # no layer returns what the model returns
            return keras.ops.softmax(out)
        if self.tail == "aux_after":  # a layer runs after the one whose output is returned
            self.aux(features)
            return out
        if self.tail == "shared_act":  # a layer called earlier gives the output at call 2
            return self.act(out)
        return out


@pytest.mark.filterwarnings("ignore:`build\\(\\)` was called on layer:UserWarning")
@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("plain", "fc"),
        ("function", "fc"),  # falls back to the last layer that ran
        ("aux_after", "fc"),  # the layer that gave the returned tensor, not the last to run
        ("shared_act", "fc"),  # act's shown activations (its first call) are not the output
    ],
)
def test_the_output_layer_is_the_layer_that_returned_the_models_output(
    tail: str, expected: str
) -> None:
    adapter = adapt(Head(tail), input_shape=(3, 8, 8))
    assert adapter.output_layer().name == expected
    assert adapter.layer(-1).name == expected
    if tail == "aux_after":
        assert adapter.layers()[-1].name == "aux" and adapter.layers()[-1].ran
        assert [adapter.layer(k).name for k in (-1, -2)] == ["fc", "gap"]


def test_a_user_defined_composite_layer_is_opened_and_listed_after_its_parts() -> None:
    inputs = keras.Input((8, 8, 4))
    outputs = ResidualBlock(4, name="block")(inputs)
    adapter = adapt(keras.Model(inputs, outputs))
    infos = adapter.layers()
    assert [i.name for i in infos] == ["block/conv_a", "block/conv_b", "block"]
    assert infos[-1].param_shapes == {"scale": ()}
    assert infos[-1].output_shape == (4, 8, 8)


# -- input spec ----------------------------------------------------------------------------
def test_input_shape_comes_from_the_model() -> None:
    model, _ = keras_cases.non_square()
    assert adapt(model).spec.shape == (3, 24, 40)


def test_an_unbuilt_subclassed_model_needs_an_input_shape() -> None:
    with pytest.raises(ValueError, match=r"not built.*input_shape=\(C, H, W\)"):
        adapt(keras_cases.CalledTwice())
    adapter = adapt(keras_cases.CalledTwice(), input_shape=(3, 12, 12))
    assert adapter.layer("conv2").output_shape == (8, 12, 12)


def test_an_unbuilt_sequential_model_is_built_by_the_discovery_pass() -> None:
    model = keras.Sequential([L.Conv2D(4, 3, name="conv"), L.Flatten(name="flatten")])
    adapter = adapt(model, input_shape=(3, 10, 10))
    assert [(i.name, i.output_shape, i.calls) for i in adapter.layers()] == [
        ("conv", (4, 8, 8), 1),
        ("flatten", (256,), 1),
    ]


def test_a_model_of_any_size_uses_the_given_size_or_a_fallback() -> None:
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3, padding="same", name="conv")(inputs))
    assert adapt(model).spec.shape == (3, None, None)
    assert adapt(model).layer("conv").output_shape == (4, 64, 64)
    assert adapt(model, input_shape=(3, 20, 30)).layer("conv").output_shape == (4, 20, 30)


def test_an_input_shape_that_contradicts_the_model_is_refused() -> None:
    model, _ = keras_cases.sequential()
    with pytest.raises(ValueError, match="has 1 channels but the model takes 3"):
        adapt(model, input_shape=(1, 32, 32))
    with pytest.raises(ValueError, match="fixed input size"):
        adapt(model, input_shape=(3, 64, 64))


def test_channels_first_layers_are_refused() -> None:
    model = keras.Sequential(
        [keras.Input((3, 8, 8)), L.Conv2D(4, 3, data_format="channels_first", name="conv")]
    )
    with pytest.raises(ValueError, match=r"'conv'.*channels_first"):
        adapt(model)


def test_models_with_several_inputs_are_refused() -> None:
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    model = keras.Model([a, b], L.Add()([a, b]))
    with pytest.raises(ValueError, match="takes 2 inputs"):
        adapt(model)


# -- filters & geometry ----------------------------------------------------------------------
def test_conv2d_filters_are_the_kernel_as_out_in_kh_kw() -> None:
    model, adapter = build("depthwise_grouped")
    for name in ("conv", "grouped"):
        kernel = to_numpy(model.get_layer(name).kernel)
        filters = adapter.filters(name)
        np.testing.assert_array_equal(filters, kernel.transpose(3, 2, 0, 1))
        assert filters.dtype == np.float32 and filters.flags.c_contiguous
    assert adapter.filters("grouped").shape == (16, 4, 3, 3)


def test_filters_are_a_copy_not_a_view_of_the_weights() -> None:
    model, adapter = build("sequential")
    adapter.filters("conv1")[:] = 0
    assert np.abs(to_numpy(model.get_layer("conv1").kernel)).sum() > 0


def test_depthwise_filters_follow_keras_output_channel_order() -> None:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((7, 7, 3))
    dw = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False, name="dw")
    adapter = adapt(keras.Model(inputs, dw(inputs)))
    filters = adapter.filters("dw")
    assert filters.shape == (6, 1, 3, 3)
    for channel in range(3):
        delta = np.zeros((1, 3, 7, 7), np.float32)
        delta[0, channel, 3, 3] = 1.0
        response = adapter.activations(delta, ["dw"])["dw"][0]  # (6, 7, 7)
        for out in range(6):
            # Cross-correlation of a delta is the kernel flipped, centred on the delta.
            seen = response[out, 2:5, 2:5][::-1, ::-1]
            expected = filters[out, 0] if out // 2 == channel else np.zeros((3, 3))
            np.testing.assert_allclose(seen, expected, atol=1e-6, err_msg=f"output {out}")


def test_separable_conv_shows_its_depthwise_kernels() -> None:
    inputs = keras.Input((8, 8, 3))
    sep = L.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, name="sep")
    adapter = adapt(keras.Model(inputs, sep(inputs)))
    depthwise = to_numpy(sep.depthwise_kernel)  # (3, 3, 3, 2)
    filters = adapter.filters("sep")
    assert filters.shape == (6, 1, 3, 3)
    np.testing.assert_array_equal(filters[1 * 2 + 1, 0], depthwise[:, :, 1, 1])
    config = adapter.conv_config("sep")
    assert (config.groups, config.has_bias, config.stride) == (3, False, (2, 2))


def test_conv2d_transpose_filters_are_out_in_kh_kw() -> None:
    inputs = keras.Input((8, 8, 3))
    up = L.Conv2DTranspose(5, 3, strides=2, padding="same", name="up")
    adapter = adapt(keras.Model(inputs, up(inputs)))
    kernel = to_numpy(up.kernel)  # (kh, kw, out, in)
    np.testing.assert_array_equal(adapter.filters("up"), kernel.transpose(2, 3, 0, 1))
    assert adapter.filters("up").shape == (5, 3, 3, 3)
    assert adapter.layer("up").output_shape == (5, 16, 16)


def test_conv_config_reports_stride_padding_dilation_groups_and_bias() -> None:
    _, strided = build("dilated_strided")
    configs = {name: strided.conv_config(name) for name in ("strided", "dilated", "valid")}
    assert (configs["strided"].stride, configs["strided"].padding) == ((2, 2), "same")
    assert (configs["dilated"].dilation, configs["dilated"].stride) == ((2, 2), (1, 1))
    assert configs["valid"].padding == "valid" and configs["valid"].has_bias
    _, grouped = build("depthwise_grouped")
    assert grouped.conv_config("dw").groups == 8 and grouped.conv_config("dw").has_bias
    assert grouped.conv_config("grouped").groups == 2
    assert grouped.conv_config(0).groups == 1
    _, bias_free = build("bias_free")
    assert not bias_free.conv_config("conv").has_bias
    with pytest.raises(ValueError, match=r"'fc' is a Dense layer.*Layers with filters: 'conv'"):
        bias_free.conv_config("fc")


# -- activations ---------------------------------------------------------------------------
def test_activations_equal_a_keras_sub_model() -> None:
    model, adapter = build("residual")
    batch = random_batch((3, 32, 32))
    acts = adapter.activations(batch, ["bn_a", "relu_out", "fc"])
    for name in ("bn_a", "relu_out", "fc"):
        np.testing.assert_allclose(
            acts[name], sub_model_output(model, name, batch), rtol=1e-5, atol=1e-5
        )
    assert acts["relu_out"].shape == (2, 16, 32, 32)


def test_activations_inside_a_nested_model_equal_its_sub_model() -> None:
    model, adapter = build("nested")
    batch = random_batch((3, 32, 32))
    expected = sub_model_output(model.get_layer("features"), "conv1", batch)
    got = adapter.activations(batch, ["features/conv1"])["features/conv1"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_shared_layer_reports_its_first_call() -> None:
    model, adapter = build("subclassed")
    batch = random_batch((3, 32, 32))
    act = adapter.activations(batch, ["act"])["act"]
    expected = channels_first(keras.ops.relu(model.conv1(nhwc(batch))))
    np.testing.assert_allclose(act, expected, rtol=1e-5, atol=1e-5)


def test_activations_of_an_early_layer_do_not_run_the_rest_of_the_model() -> None:
    inputs = keras.Input((8, 8, 3))
    conv = L.Conv2D(4, 3, name="conv")(inputs)
    later = Counting(name="later")
    model = keras.Model(inputs, later(conv))
    adapter = adapt(model)
    adapter.layers()
    before = later.count
    adapter.activations(np.zeros((1, 3, 8, 8), np.float32), ["conv"])
    assert later.count == before
    adapter.activations(np.zeros((1, 3, 8, 8), np.float32), ["later"])
    assert later.count == before + 1


def test_normalization_preprocessing_is_applied_channels_last() -> None:
    norm = Normalization(mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 2.0), scale=2.0)
    model, adapter = build("sequential", preprocess=norm)
    batch = random_batch((3, 32, 32))
    x = (nhwc(batch) * 2.0 - np.array([0.2, 0.4, 0.6], np.float32)) / np.array(
        [0.5, 0.25, 2.0], np.float32
    )
    expected = channels_first(model.get_layer("conv1")(x))
    got = adapter.activations(batch, ["conv1"])["conv1"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_callable_preprocess_gets_an_nhwc_tensor() -> None:
    shapes: list[tuple[int, ...]] = []

    def to_minus_one_one(x: object) -> object:
        shapes.append(tuple(x.shape))
        return x * 2.0 - 1.0

    model, adapter = build("non_square", preprocess=to_minus_one_one)
    batch = random_batch((3, 24, 40), n=1)
    got = adapter.activations(batch, ["conv"])["conv"]
    expected = channels_first(model.get_layer("conv")(nhwc(batch) * 2.0 - 1.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert shapes[-1] == (1, 24, 40, 3)


def test_a_normalization_with_the_wrong_channel_count_is_refused() -> None:
    model, shape = keras_cases.grayscale()
    with pytest.raises(ValueError, match="mean has 3 values but the model takes 1"):
        adapt(model, input_shape=shape, preprocess="imagenet")


def test_a_batch_with_the_wrong_channel_count_is_refused() -> None:
    _, adapter = build("sequential")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        adapter.activations(np.zeros((1, 1, 32, 32), np.float32), ["conv1"])


# -- never harm the model ------------------------------------------------------------------
def test_weights_are_bit_identical_after_every_call_even_when_one_raises() -> None:
    for case in ("bias_free", "nan_weights"):  # moving statistics; NaN equals NaN by bytes
        model, adapter = build(case)
        before = adapter.snapshot()
        adapter.layers()
        for info in adapter.conv_layers():
            adapter.filters(info.name)
            adapter.conv_config(info.name)
        adapter.activations(random_batch((3, 32, 32)))
        with pytest.raises(ValueError, match="no layer named"):
            adapter.activations(random_batch((3, 32, 32)), ["no such layer"])
        with pytest.raises(ValueError):  # fails inside the forward pass: wrong spatial size
            adapter.activations(random_batch((3, 16, 16)), ["fc" if case == "bias_free" else "fc2"])
        assert adapter.same_state(before, adapter.snapshot())
        assert_no_call_wrappers(model)


def test_same_state_sees_a_changed_weight_a_flag_and_a_leftover_wrapper() -> None:
    model, adapter = build("sequential")
    conv1 = model.get_layer("conv1")
    before = adapter.snapshot()
    kernel = to_numpy(conv1.kernel).copy()
    kernel[0, 0, 0, 0] = np.nextafter(kernel[0, 0, 0, 0], np.float32(np.inf))
    conv1.kernel.assign(kernel)
    assert not adapter.same_state(before, adapter.snapshot())
    before = adapter.snapshot()
    conv1.trainable = False
    assert not adapter.same_state(before, adapter.snapshot())
    before = adapter.snapshot()
    object.__setattr__(conv1, "call", conv1.call)
    assert not adapter.same_state(before, adapter.snapshot())
    object.__delattr__(conv1, "call")
    assert adapter.same_state(before, adapter.snapshot())


def test_a_frozen_layer_stays_frozen() -> None:
    model, adapter = build("residual")
    model.get_layer("conv_a").trainable = False
    model.get_layer("bn_b").trainable = False
    before = adapter.snapshot()
    adapter.layers()
    adapter.filters("conv_a")
    adapter.activations(random_batch((3, 32, 32)), ["bn_b"])
    assert not model.get_layer("conv_a").trainable and not model.get_layer("bn_b").trainable
    assert model.get_layer("stem").trainable
    assert adapter.same_state(before, adapter.snapshot())


def test_protect_restores_trainable_flags_and_removes_wrappers_when_the_block_raises() -> None:
    model, adapter = build("nested")
    features = model.get_layer("features")
    features.get_layer("conv1").trainable = False
    before = adapter.snapshot()
    with pytest.raises(RuntimeError, match="boom"), adapter.protect():
        model.trainable = False  # cascades to every layer and variable
        object.__setattr__(features.get_layer("conv0"), "call", lambda *a, **k: None)
        raise RuntimeError("boom")
    assert model.trainable and features.get_layer("conv0").trainable
    assert not features.get_layer("conv1").trainable
    assert_no_call_wrappers(model)
    assert adapter.same_state(before, adapter.snapshot())


def test_the_model_predicts_the_same_afterwards() -> None:
    model, adapter = build("subclassed")
    batch = keras.ops.convert_to_tensor(nhwc(random_batch((3, 32, 32), n=4)))
    expected = to_numpy(model(batch, training=False))
    adapter.layers()
    adapter.activations(random_batch((3, 32, 32)), ["conv1"])  # stops the pass early
    adapter.filters("conv2")
    assert_no_call_wrappers(model)
    np.testing.assert_array_equal(to_numpy(model(batch, training=False)), expected)
    # predict traces a graph now, after our passes: a leftover wrapper would be traced in.
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert [i.calls for i in adapter.layers()] == [1, 2, 1, 1, 1]


def test_a_non_keras_model_is_refused_with_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"Keras 3 keras\.Model"):
        KerasAdapter.create(L.Dense(3), None, None, None)


def test_a_flatten_of_feature_maps_lists_values_in_channels_first_order() -> None:
    """Keras flattens (H, W, C) channel-last; through our API the vector is in torch's
    (C, H, W) order, so the same network gives the same vector in both frameworks."""
    model = keras.Sequential(
        [
            keras.Input((2, 3, 4)),
            keras.layers.Identity(name="maps"),
            keras.layers.Flatten(name="flat"),
        ]
    )
    adapter = adapt(model)
    image = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3) / 100  # (C, H, W)
    acts = adapter.activations(image[None], ["maps", "flat"])
    np.testing.assert_array_equal(acts["flat"][0], acts["maps"][0].ravel())
