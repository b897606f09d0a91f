"""The PyTorch backend: layer discovery, filters, activations and never harming the model."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from cnn_widgets.backends import adapt
from cnn_widgets.backends.base import ConvConfig, Normalization
from cnn_widgets.backends.torch import TorchAdapter
from tests.cases.torch_cases import CASES

# Conv filter shapes and conv output shapes, in forward order, as the shared catalogue
# promises them (the Keras twin must match these).
EXPECTED_CONVS = {
    "sequential": [((8, 3, 3, 3), (8, 32, 32)), ((16, 8, 3, 3), (16, 16, 16))],
    "residual": [
        ((16, 3, 3, 3), (16, 32, 32)),
        ((16, 16, 3, 3), (16, 32, 32)),
        ((16, 16, 3, 3), (16, 32, 32)),
    ],
    "branching": [
        ((8, 3, 3, 3), (8, 32, 32)),
        ((4, 8, 1, 1), (4, 32, 32)),
        ((4, 8, 3, 3), (4, 32, 32)),
        ((4, 8, 5, 5), (4, 32, 32)),
        ((4, 8, 1, 1), (4, 32, 32)),
    ],
    "depthwise_grouped": [
        ((8, 3, 3, 3), (8, 32, 32)),
        ((8, 1, 3, 3), (8, 32, 32)),
        ((16, 4, 3, 3), (16, 32, 32)),
    ],
    "dilated_strided": [
        ((8, 3, 3, 3), (8, 16, 16)),
        ((8, 8, 3, 3), (8, 16, 16)),
        ((8, 8, 5, 5), (8, 12, 12)),
    ],
    "bias_free": [((8, 3, 3, 3), (8, 32, 32))],
    "grayscale": [((6, 1, 5, 5), (6, 28, 28)), ((16, 6, 5, 5), (16, 10, 10))],
    "non_square": [((8, 3, 3, 3), (8, 24, 40)), ((8, 8, 3, 3), (8, 12, 20))],
    "nested": [((8, 3, 3, 3), (8, 32, 32)), ((8, 8, 3, 3), (8, 32, 32))],
    "called_twice": [((8, 3, 3, 3), (8, 32, 32)), ((8, 8, 3, 3), (8, 32, 32))],
    "conv1d_conv3d": [((4, 3, 3, 3), (4, 16, 16))],
    "no_conv": [],
    "nan_weights": [((8, 3, 3, 3), (8, 32, 32)), ((16, 8, 3, 3), (16, 16, 16))],
    "never_runs": [((8, 3, 3, 3), (8, 32, 32)), ((4, 8, 3, 3), None)],
}


def make(case: str, **kwargs) -> tuple[nn.Module, TorchAdapter, tuple[int, int, int]]:
    model, shape = CASES[case]()
    kwargs.setdefault("input_shape", shape)
    return model, adapt(model, **kwargs), shape


def images(shape: tuple[int, int, int], n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def names(adapter: TorchAdapter) -> list[str]:
    return [info.name for info in adapter.layers()]


def training_flags(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def every_call(adapter: TorchAdapter, shape: tuple[int, int, int]) -> None:
    """Layers, filters of every conv, and activations of every layer."""
    adapter.layers()
    for info in adapter.conv_layers():
        adapter.filters(info.name)
    adapter.activations(images(shape, n=1))


# -- the catalogue ------------------------------------------------------------------------
def test_catalogue_has_exactly_the_shared_keys():
    assert set(CASES) == set(EXPECTED_CONVS)


@pytest.mark.parametrize("case", sorted(EXPECTED_CONVS))
def test_catalogue_conv_filter_and_output_shapes_are_as_promised(case):
    model, adapter, _ = make(case)
    assert not model.training
    convs = adapter.conv_layers()
    got = [(adapter.filters(info.name).shape, info.output_shape) for info in convs]
    assert got == EXPECTED_CONVS[case]


def test_catalogue_factories_give_the_same_weights_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, _ = CASES["sequential"]()
    second, _ = CASES["sequential"]()
    assert torch.equal(first.conv1.weight, second.conv1.weight)
    assert torch.equal(torch.rand(1), expected_next)


# -- layers -------------------------------------------------------------------------------
def test_nested_layers_are_listed_by_dot_name_in_forward_order():
    _, adapter, _ = make("nested")
    assert names(adapter) == [
        "features.0.conv",
        "features.0.relu",
        "features.1.conv",
        "features.1.relu",
        "gap",
        "flatten",
        "fc",
    ]
    assert [info.index for info in adapter.layers()] == list(range(7))


def test_residual_block_layers_follow_the_forward_pass():
    _, adapter, _ = make("residual")
    assert names(adapter) == [
        "stem",
        "block.conv_a",
        "block.bn_a",
        "block.relu",
        "block.conv_b",
        "block.bn_b",
        "block.relu_out",
        "gap",
        "flatten",
        "fc",
    ]


def test_branches_are_listed_in_call_order_not_definition_order():
    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Conv2d(4, 4, 1)  # defined first, called second
            self.early = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.late(self.early(x))

    adapter = adapt(Reordered(), input_shape=(3, 8, 8))
    assert names(adapter) == ["early", "late"]


def test_module_called_twice_is_listed_once_at_its_first_call():
    _, adapter, _ = make("called_twice")
    infos = adapter.layers()
    assert names(adapter) == ["conv1", "act", "conv2", "gap", "flatten", "fc"]
    assert {info.name: info.calls for info in infos} == {
        "conv1": 1,
        "act": 2,
        "conv2": 1,
        "gap": 1,
        "flatten": 1,
        "fc": 1,
    }


def test_activation_of_module_called_twice_is_that_of_its_first_call():
    model, adapter, shape = make("called_twice")
    batch = images(shape)
    got = adapter.activations(batch, ["act"])["act"]
    with torch.no_grad():
        expected = torch.relu(model.conv1(torch.from_numpy(batch))).numpy()
    np.testing.assert_array_equal(got, expected)


def test_modules_that_never_run_come_last_without_output_shape():
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.Linear(3, 3)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    adapter = adapt(WithSpare(), input_shape=(3, 8, 8))
    infos = adapter.layers()
    assert [(i.name, i.output_shape, i.calls) for i in infos] == [
        ("conv", (4, 6, 6), 1),
        ("spare", None, 0),
    ]
    with pytest.raises(ValueError, match="'spare' did not run"):
        adapter.activations(images((3, 8, 8)), ["spare"])


class _Head(nn.Module):
    """conv -> pool -> fc, then ``tail`` decides what the model returns."""

    def __init__(self, tail: str) -> None:
        super().__init__()
        self.tail = tail
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 5)
        self.relu_inplace = nn.ReLU(inplace=True)
        self.aux = nn.Linear(4, 2)

    def forward(self, x):
        features = self.pool(self.act(self.conv(x)))
        out = self.fc(features)
        if self.tail == "inplace":  # returns the very tensor object fc returned
            return self.relu_inplace(out)
        if self.tail == "function":  # no module returns what the model returns
            return torch.softmax(out, dim=1)
        if self.tail == "aux_after":  # a module runs after the one whose output is returned
            self.aux(features)
            return out
        if self.tail == "shared_act":  # a module called earlier gives the output at call 2
            return self.act(out)
        if self.tail == "tuple":
            return out, self.aux(features)
        return out


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("plain", "fc"),
        ("inplace", "relu_inplace"),  # its captured activation is the returned values
        ("function", "fc"),  # falls back to the last layer that ran
        ("aux_after", "fc"),  # the module that gave the returned tensor, not the last to run
        ("shared_act", "fc"),  # act's shown activations (its first call) are not the output
        ("tuple", "fc"),  # the first tensor of a tuple output
    ],
)
def test_the_output_layer_is_the_module_that_returned_the_models_output(tail, expected):
    adapter = adapt(_Head(tail).eval(), input_shape=(3, 8, 8))
    assert adapter.output_layer().name == expected
    assert adapter.layer(-1).name == expected
    if tail == "inplace":
        batch = images((3, 8, 8))
        with torch.no_grad():
            returned = adapter.model(torch.from_numpy(batch)).numpy()
        np.testing.assert_array_equal(adapter.activations(batch, [-1])["relu_inplace"], returned)


def test_negative_indices_count_back_from_the_output_over_layers_that_ran():
    adapter = adapt(_Head("aux_after").eval(), input_shape=(3, 8, 8))
    infos = adapter.layers()
    # aux ran after fc; relu_inplace never ran and is listed last.
    assert [(i.name, i.ran) for i in infos[-3:]] == [
        ("fc", True), ("aux", True), ("relu_inplace", False)
    ]
    assert [adapter.layer(k).name for k in (-1, -2, -3)] == ["fc", "pool.1", "pool.0"]
    assert adapter.layer(-5).name == "conv"
    with pytest.raises(ValueError, match=r"valid: 0\.\.6, or -5\.\.-1 counting back"):
        adapter.layer(-6)
    assert adapter.layer(5).name == "aux"  # reachable by its position


def test_output_shapes_are_channels_first_without_batch():
    _, adapter, _ = make("sequential")
    shapes = {info.name: info.output_shape for info in adapter.layers()}
    assert shapes["conv1"] == (8, 32, 32)
    assert shapes["pool2"] == (16, 8, 8)
    assert shapes["flatten"] == (1024,)
    assert shapes["fc2"] == (10,)


def test_tuple_outputs_report_their_first_tensor():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), flat=nn.Flatten(2)))

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model
            self.lstm = nn.LSTM(36, 5, batch_first=True)

        def forward(self, x):
            out, _ = self.lstm(self.body(x))
            return out

    adapter = adapt(Head(), input_shape=(1, 8, 8))
    info = adapter.layer("lstm")
    assert info.output_shape == (2, 5)
    assert adapter.activations(images((1, 8, 8)), ["lstm"])["lstm"].shape == (2, 2, 5)


def test_layer_params_kinds_and_filter_flags():
    _, adapter, _ = make("conv1d_conv3d")
    table = {i.name: (i.type, i.kind, i.has_filters, i.num_params) for i in adapter.layers()}
    assert table == {
        "conv": ("Conv2d", "conv2d", True, 4 * 3 * 9 + 4),
        "conv1d": ("Conv1d", "conv1d", False, 4 * 4 * 3 + 4),
        "conv3d": ("Conv3d", "conv3d", False, 2 * 27 + 2),
        "gap": ("AdaptiveAvgPool2d", "other", False, 0),
        "flatten": ("Flatten", "other", False, 0),
        "fc": ("Linear", "dense", False, 4 * 10 + 10),
    }
    assert adapter.layer("conv").param_shapes == {"weight": (4, 3, 3, 3), "bias": (4,)}


def test_a_bare_layer_is_its_own_only_layer():
    adapter = adapt(nn.Conv2d(3, 5, 3), input_shape=(3, 9, 9))
    assert [(i.name, i.output_shape) for i in adapter.layers()] == [("Conv2d", (5, 7, 7))]
    assert adapter.filters(0).shape == (5, 3, 3, 3)


# -- input shape --------------------------------------------------------------------------
def test_input_channels_come_from_the_first_conv():
    model, _ = CASES["grayscale"]()
    adapter = adapt(model)
    assert adapter.spec.shape == (1, None, None)
    nested, _ = CASES["nested"]()
    assert adapt(nested).spec.shape == (3, None, None)


def test_unknown_image_size_is_assumed_64_for_layer_shapes():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    adapter = adapt(model)
    assert adapter.layer("0").output_shape == (4, 64, 64)
    assert adapter.assumed_spatial == (64, 64)
    sized = adapt(model, input_shape=(2, 10, 12))
    assert sized.layer("0").output_shape == (4, 10, 12)
    assert sized.assumed_spatial is None


def test_model_that_cannot_run_at_the_assumed_size_asks_for_input_shape():
    model, _ = CASES["sequential"]()  # its Linear head needs exactly 32x32
    with pytest.raises(RuntimeError) as direct:
        model(torch.zeros(1, 3, 64, 64))
    adapter = adapt(model)
    with pytest.raises(ValueError, match=r"pass input_shape=\(C, H, W\) to cnn_widgets.adapt") as e:
        adapter.layers()
    assert str(direct.value) in str(e.value)


def test_wrong_input_shape_reports_the_forward_error():
    model, _ = CASES["sequential"]()
    adapter = adapt(model, input_shape=(3, 20, 20))
    with pytest.raises(ValueError, match="3x20x20"):
        adapter.layers()


def test_model_without_conv_needs_input_shape():
    model, shape = CASES["no_conv"]()
    with pytest.raises(ValueError, match=r"first Linear layer 'fc1' takes 64 values"):
        adapt(model)
    assert adapt(model, input_shape=shape).layer("fc2").output_shape == (10,)
    with pytest.raises(ValueError, match=r"input_shape=\(C, H, W\)"):
        adapt(nn.Sequential(nn.ReLU(), nn.Flatten()))


# -- filters and conv geometry -------------------------------------------------------------
def test_filters_equal_conv2d_weights_and_are_copies():
    model, adapter, _ = make("sequential")
    weights = adapter.filters("conv1")
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, model.conv1.weight.detach().numpy())
    weights[:] = 0
    assert model.conv1.weight.abs().sum() > 0


def test_filters_of_depthwise_conv_are_one_channel_each():
    _, adapter, _ = make("depthwise_grouped")
    assert adapter.filters("dw").shape == (8, 1, 3, 3)
    assert adapter.filters("grouped").shape == (16, 4, 3, 3)


def test_transposed_conv_filters_are_out_by_in_per_group():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False)  # weight (4, 3, 3, 3)
    adapter = adapt(nn.Sequential(layer), input_shape=(4, 5, 5))
    info = adapter.layer("0")
    assert (info.kind, info.has_filters) == ("conv2d", True)
    filters = adapter.filters("0")
    assert filters.shape == (6, 2, 3, 3)
    # A single lit input pixel stamps filters[o, i] onto output channel o: the kernel
    # linking input channel i of o's group to o, unflipped.
    for channel in range(4):
        group, local = divmod(channel, 2)
        pulse = torch.zeros(1, 4, 1, 1)
        pulse[0, channel] = 1
        with torch.no_grad():
            stamp = layer(pulse)[0].numpy()
        for out in range(6):
            if out // 3 == group:
                np.testing.assert_array_equal(stamp[out], filters[out, local])
            else:
                assert not stamp[out].any()
    with pytest.raises(ValueError, match="transposed convolution"):
        adapter.conv_config("0")


def test_conv1d_layers_have_no_2d_filters():
    _, adapter, _ = make("conv1d_conv3d")
    with pytest.raises(ValueError, match="Layers with filters: 'conv'"):
        adapter.filters("conv1d")


def test_conv_config_of_strided_dilated_and_valid_convs():
    _, adapter, _ = make("dilated_strided")
    assert adapter.conv_config("strided") == ConvConfig((2, 2), (1, 1), (1, 1), 1, True)
    assert adapter.conv_config("dilated") == ConvConfig((1, 1), (2, 2), (2, 2), 1, True)
    assert adapter.conv_config("valid") == ConvConfig((1, 1), (0, 0), (1, 1), 1, True)
    with pytest.raises(ValueError, match="no 2-D filters"):
        adapter.conv_config("gap")


def test_conv_config_of_grouped_bias_free_and_string_padding():
    _, grouped, _ = make("depthwise_grouped")
    assert grouped.conv_config("dw").groups == 8
    assert grouped.conv_config("grouped").groups == 2
    _, bias_free, _ = make("bias_free")
    assert bias_free.conv_config("conv").has_bias is False
    same = adapt(nn.Sequential(nn.Conv2d(3, 4, (3, 5), padding="same")), input_shape=(3, 8, 8))
    assert same.conv_config(0) == ConvConfig((1, 1), "same", (1, 1), 1, True)


# -- activations ------------------------------------------------------------------------
def test_activations_equal_a_manual_forward():
    model, adapter, shape = make("sequential")
    batch = images(shape)
    got = adapter.activations(batch, ["conv2", "fc2"])
    x = torch.from_numpy(batch)
    with torch.no_grad():
        conv2 = model[:4](x).numpy()
        logits = model(x).numpy()
    np.testing.assert_array_equal(got["conv2"], conv2)
    np.testing.assert_array_equal(got["fc2"], logits)
    assert got["fc2"].shape == (2, 10)


def test_normalization_is_applied_before_the_model():
    norm = Normalization(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), scale=255.0)
    model, adapter, shape = make("sequential", preprocess=norm)
    batch = images(shape)
    got = adapter.activations(batch, ["conv1"])["conv1"]
    mean = torch.tensor(norm.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(norm.std).reshape(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.conv1((torch.from_numpy(batch) * 255.0 - mean) / std).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    plain = adapt(model, input_shape=shape).activations(batch, ["conv1"])["conv1"]
    assert np.abs(plain - got).max() > 1


def test_callable_preprocess_gets_an_nchw_tensor_and_cannot_touch_the_input():
    seen: list[tuple[int, ...]] = []

    def invert(x):
        seen.append(tuple(x.shape))
        return x.mul_(-1).add_(1)  # in place on purpose

    model, adapter, shape = make("sequential", preprocess=invert)
    batch = images(shape)
    kept = batch.copy()
    got = adapter.activations(batch, ["conv1"])["conv1"]
    np.testing.assert_array_equal(batch, kept)
    assert seen[-1] == (2, *shape)
    with torch.no_grad():
        expected = model.conv1(1 - torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_activation_is_kept_before_an_inplace_relu_changes_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten())
    got = adapt(model, input_shape=(3, 8, 8)).activations(images((3, 8, 8)), ["0", "1"])
    assert (got["0"] < 0).any()
    np.testing.assert_array_equal(got["1"], np.maximum(got["0"], 0))


def test_early_layers_run_at_any_image_size_even_when_the_head_does_not_fit():
    _, adapter, _ = make("sequential")
    got = adapter.activations(images((3, 48, 40)), ["conv2"])
    assert got["conv2"].shape == (2, 16, 24, 20)
    with pytest.raises(ValueError, match=r"failed on a batch of shape \(2, 3, 48, 40\)"):
        adapter.activations(images((3, 48, 40)), ["fc2"])


def test_double_precision_model_gives_float32_activations():
    model, shape = CASES["sequential"]()
    model.double()
    got = adapt(model, input_shape=shape).activations(images(shape), ["fc2"])["fc2"]
    assert got.dtype == np.float32
    with torch.no_grad():
        expected = model(torch.from_numpy(images(shape)).double()).float().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_activations_come_back_as_cpu_numpy():
    model, shape = CASES["sequential"]()
    model.cuda()
    adapter = adapt(model, input_shape=shape)
    batch = images(shape)
    got = adapter.activations(batch, ["conv1", "fc2"])
    assert isinstance(got["fc2"], np.ndarray) and got["fc2"].shape == (2, 10)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch).cuda()).cpu().numpy()
    np.testing.assert_allclose(got["fc2"], expected, rtol=1e-4, atol=1e-5)
    assert adapter.filters("conv1").shape == (8, 3, 3, 3)


# -- never harm the model -------------------------------------------------------------------
def mixed_mode_model() -> tuple[nn.Module, TorchAdapter, tuple[int, int, int]]:
    model, adapter, shape = make("residual")
    model.train()
    model.block.bn_a.eval()
    return model, adapter, shape


def test_mixed_training_modes_come_back_exactly_after_every_call():
    model, adapter, shape = mixed_mode_model()
    before = training_flags(model)
    assert before["block.bn_a"] is False and before["block.bn_b"] is True
    every_call(adapter, shape)
    assert training_flags(model) == before


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda a: a.activations(images((3, 32, 32)), ["nope"]), id="bad-name"),
        pytest.param(lambda a: a.activations(images((5, 32, 32)), ["fc"]), id="bad-image"),
        pytest.param(lambda a: a.filters("gap"), id="no-filters"),
    ],
)
def test_mixed_training_modes_come_back_when_a_call_raises(call: Callable):
    model, adapter, _ = mixed_mode_model()
    before = training_flags(model)
    snap = adapter.snapshot()
    with pytest.raises(ValueError):
        call(adapter)
    assert training_flags(model) == before
    assert adapter.same_state(snap, adapter.snapshot())


def test_protect_runs_in_eval_with_frozen_params_and_restores_when_raising():
    model, adapter, _ = mixed_mode_model()
    model.fc.bias.requires_grad_(False)
    snap = adapter.snapshot()
    with pytest.raises(KeyError), adapter.protect():
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        raise KeyError("boom")
    assert model.training and not model.block.bn_a.training
    assert adapter.same_state(snap, adapter.snapshot()), snap.differences(adapter.snapshot())


def test_frozen_parameters_stay_frozen_and_others_stay_trainable():
    model, adapter, shape = make("sequential")
    model.conv1.requires_grad_(False)
    every_call(adapter, shape)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == {
        "conv1.weight": False,
        "conv1.bias": False,
        "conv2.weight": True,
        "conv2.bias": True,
        "fc1.weight": True,
        "fc1.bias": True,
        "fc2.weight": True,
        "fc2.bias": True,
    }


def test_existing_grads_are_kept_bit_exactly():
    model, adapter, shape = make("bias_free")
    model(torch.from_numpy(images(shape))).sum().backward()
    with torch.no_grad():
        model.conv.weight.grad[0, 0, 0, 0] = float("nan")
    model.fc.bias.grad = None
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    snap = adapter.snapshot()
    every_call(adapter, shape)
    assert adapter.same_state(snap, adapter.snapshot())
    assert model.fc.bias.grad is None
    for name, param in model.named_parameters():
        if grads[name] is not None:
            assert param.grad.numpy().tobytes() == grads[name].numpy().tobytes(), name


def test_user_hooks_stay_and_no_hooks_are_left_behind():
    model, adapter, shape = make("nested")
    fired: list[str] = []
    model.features[1].conv.register_forward_hook(lambda m, i, o: fired.append("forward"))
    model.fc.register_forward_pre_hook(lambda m, i: fired.append("pre"))
    snap = adapter.snapshot()
    every_call(adapter, shape)
    assert adapter.same_state(snap, adapter.snapshot()), snap.differences(adapter.snapshot())
    assert len(model.features[1].conv._forward_hooks) == 1
    assert len(model.fc._forward_pre_hooks) == 1
    assert sum(len(m._forward_hooks) for m in model.modules()) == 1
    fired.clear()
    model(torch.zeros(1, *shape))
    assert fired == ["forward", "pre"]


def test_weights_and_buffers_are_untouched_by_every_call():
    model, adapter, shape = make("bias_free")
    model.train()  # batch norm would update its running stats if a pass ran in train mode
    state = {k: v.clone() for k, v in model.state_dict().items()}
    every_call(adapter, shape)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_same_state_treats_nan_as_equal_and_sees_every_kind_of_change():
    model, adapter, _ = make("nan_weights")
    base = adapter.snapshot()
    assert adapter.same_state(base, adapter.snapshot())

    def changed(mutate: Callable[[], object], undo: Callable[[], object]) -> bool:
        mutate()
        try:
            return not adapter.same_state(base, adapter.snapshot())
        finally:
            undo()
            assert adapter.same_state(base, adapter.snapshot())

    weight = model.conv2.weight
    old = weight.data[0, 0, 0, 0].item()
    nudged = np.nextafter(np.float32(old), np.float32(np.inf)).item()
    assert changed(
        lambda: weight.data.__setitem__((0, 0, 0, 0), nudged),
        lambda: weight.data.__setitem__((0, 0, 0, 0), old),
    )
    assert changed(lambda: model.relu1.train(), lambda: model.relu1.eval())
    assert changed(lambda: weight.requires_grad_(False), lambda: weight.requires_grad_(True))
    assert changed(
        lambda: setattr(weight, "grad", torch.zeros_like(weight)),
        lambda: setattr(weight, "grad", None),
    )
    handle: list = []
    assert changed(
        lambda: handle.append(model.fc1.register_forward_hook(lambda *a: None)),
        lambda: handle.pop().remove(),
    )
    assert changed(
        lambda: handle.append(nn.modules.module.register_module_forward_hook(lambda *a: None)),
        lambda: handle.pop().remove(),
    )


def test_a_module_s_source_type_is_its_listed_type_and_uneven_padding_is_refused():
    # What cnn_widgets.formats builds: modules that say which type their file gave them, and
    # convolutions that pad one side more than the other.
    class FilePad(nn.Conv2d):
        source_type = "Convolution"
        asymmetric_padding = (0, 0, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))

    model = nn.Sequential(OrderedDict(conv=FilePad(3, 4, 3), relu=nn.ReLU()))
    model.relu.source_type = 42  # not a type name: the class name is shown
    adapter = adapt(model, input_shape=(3, 8, 8))
    assert [(i.name, i.type) for i in adapter.layers()] == [
        ("conv", "Convolution"), ("relu", "ReLU"),
    ]  # fmt: skip
    assert adapter.layer("conv").has_filters and adapter.filters("conv").shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"'conv' pads unevenly .*\(0, 0, 1, 1\)"):
        adapter.conv_config("conv")
