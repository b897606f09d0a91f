"""Analyses for both frameworks: kernel x image responses add up to the layer's output, the
health check finds every planted fault, dataset examples rank, crop and map their boxes
correctly, and none of it touches the model."""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.analysis import (
    HealthReport,
    ImageSet,
    ReceptiveField,
    TopImages,
    receptive_field,
)
from cnn_widgets.analysis.responses import conv_per_input
from cnn_widgets.backends.base import ConvConfig
from tests.cases import case

FRAMEWORKS = ("torch", "keras")
DIGITS = [cw.zoo.sample_image(f"digit{d}") for d in range(10)]




def random_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    c, h, w = shape
    return [rng.random((h, w, c), dtype=np.float32) for _ in range(n)]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def lenet(request) -> cw.Adapter:
    return cw.zoo.load("lenet", framework=request.param)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def efficientnet(request) -> cw.Adapter:
    return cw.zoo.load("efficientnet_lite0", framework=request.param)


# --------------------------------------------------------------------------- responses
def assert_sums_to_output(adapter: cw.Adapter, image: Any, layer: str, channels: Any) -> None:
    out = cw.activations(adapter, image, layer)[layer]
    for channel in channels:
        r = cw.filter_responses(adapter, image, layer, int(channel))
        expected = out[channel] - (0.0 if r.bias is None else r.bias)
        assert r.total.shape == expected.shape
        np.testing.assert_allclose(r.per_input.sum(axis=0), r.total, rtol=1e-5, atol=1e-6)
        scale = float(np.abs(out[channel]).max()) + 1e-6
        np.testing.assert_allclose(r.total, expected, rtol=0, atol=2e-5 * scale)
        np.testing.assert_allclose(r.output, out[channel], rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    "key", ["sequential", "depthwise_grouped", "dilated_strided", "bias_free", "non_square"]
)
def test_filter_responses_add_up_to_the_layer_output_before_bias(framework, key) -> None:
    _, adapter = case(framework, key)
    (image,) = random_images(1, adapter.spec.shape)
    for info in adapter.conv_layers():
        count = info.output_shape[0]
        assert_sums_to_output(adapter, image, info.name, {0, count // 2, count - 1})
    if key == "bias_free":
        assert cw.filter_responses(adapter, image, "conv", 0).bias is None


def test_filter_responses_of_the_bundled_lenet_add_up(lenet) -> None:
    assert_sums_to_output(lenet, DIGITS[7], "conv1", range(8))
    assert_sums_to_output(lenet, DIGITS[7], "conv2", range(16))


def test_filter_responses_of_the_bundled_efficientnet_add_up(efficientnet) -> None:
    photo = cw.zoo.sample_image("chelsea")
    # A TF-"same" strided stem, a strided depthwise conv and a 1x1 projection.
    assert_sums_to_output(efficientnet, photo, "_conv_stem", [0, 31])
    assert_sums_to_output(efficientnet, photo, "_blocks.1._depthwise_conv", [0, 95])
    assert_sums_to_output(efficientnet, photo, "_blocks.1._project_conv", [23])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_filter_responses_of_grouped_and_depthwise_convs_use_only_their_group(framework) -> None:
    _, adapter = case(framework, "depthwise_grouped")
    (image,) = random_images(1, adapter.spec.shape)
    grouped = cw.filter_responses(adapter, image, "grouped", 9)  # 16 filters in 2 groups
    assert grouped.input_channels == (4, 5, 6, 7)
    assert grouped.per_input.shape == (4, 32, 32) and grouped.kernel.shape == (4, 3, 3)
    depthwise = cw.filter_responses(adapter, image, "dw", 5)
    assert depthwise.input_channels == (5,) and depthwise.per_input.shape == (1, 32, 32)
    # The input maps are what the layer received: the depthwise conv's output channels.
    previous = cw.activations(adapter, image, "dw")["dw"]
    np.testing.assert_array_equal(grouped.inputs, previous[4:8])
    first = cw.filter_responses(adapter, image, "conv", 0)
    assert first.input_channels == (0, 1, 2) and first.inputs.shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("padding", "mode"),
    [
        (1, "reflect"),
        (2, "replicate"),
        ((1, 2), "circular"),
        ("same", "zeros"),
        ("same", "reflect"),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_filter_responses_follow_torch_padding_modes_and_same_padding(padding, mode) -> None:
    import torch
    nn = torch.nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # An even kernel under "same" pads one pixel more after than before.
        kernel = 4 if padding == "same" else 3
        conv = nn.Conv2d(3, 5, kernel, padding=padding, padding_mode=mode, dilation=1)
        model = nn.Sequential(OrderedDict([("conv", conv), ("relu", nn.ReLU())])).eval()
    adapter = cw.adapt(model, input_shape=(3, 17, 19))
    (image,) = random_images(1, (3, 17, 19))
    assert adapter.conv_padding_mode("conv") == mode
    assert_sums_to_output(adapter, image, "conv", range(5))


def test_filter_responses_of_a_keras_separable_conv_are_its_depthwise_step() -> None:
    import keras
    inputs = keras.Input((15, 15, 3))
    separable = keras.layers.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2)
    model = keras.Model(inputs, separable(inputs))
    adapter = cw.adapt(model)
    (image,) = random_images(1, (3, 15, 15))
    r = cw.filter_responses(adapter, image, separable.name, 3)  # input channel 1, multiplier 1
    assert r.input_channels == (1,) and r.bias is None
    depthwise = keras.ops.depthwise_conv(
        image[None], separable.depthwise_kernel, strides=2, padding="same"
    )
    expected = np.asarray(depthwise)[0, :, :, 3]
    np.testing.assert_allclose(r.total, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_filter_responses_refuse_non_convs_transposed_convs_and_bad_channels(framework) -> None:
    _, adapter = case(framework, "sequential")
    (image,) = random_images(1, adapter.spec.shape)
    with pytest.raises(ValueError, match="relu1"):
        cw.filter_responses(adapter, image, "relu1", 0)
    with pytest.raises(ValueError, match=r"channel 8 is out of range.*8 filters.*0\.\.7"):
        cw.filter_responses(adapter, image, "conv1", 8)
    with pytest.raises(ValueError, match="out of range"):
        cw.filter_responses(adapter, image, "conv1", -1)
    with pytest.raises(TypeError, match="int"):
        cw.filter_responses(adapter, image, "conv1", 1.0)
    if framework == "torch":
        import torch

        model = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 3, stride=2)).eval()
        transposed, name = cw.adapt(model, input_shape=(3, 8, 8)), "0"
    else:
        import keras

        inputs = keras.Input((8, 8, 3))
        up = keras.layers.Conv2DTranspose(4, 3, strides=2, name="up")
        transposed, name = cw.adapt(keras.Model(inputs, up(inputs))), "up"
    with pytest.raises(ValueError, match="transposed convolution"):
        cw.filter_responses(transposed, random_images(1, (3, 8, 8))[0], name, 0)


def test_conv_per_input_matches_a_hand_computed_strided_dilated_case() -> None:
    inputs = np.arange(2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    kernel = np.zeros((2, 2, 2), np.float32)
    kernel[0, 0, 0] = 1.0  # picks the top-left tap of channel 0
    kernel[1, 1, 1] = -1.0  # minus the bottom-right (dilated) tap of channel 1
    config = ConvConfig(stride=(2, 3), padding=(0, 0), dilation=(2, 2), groups=1, has_bias=False)
    out = conv_per_input(inputs, kernel, config)
    assert out.shape == (2, 2, 2)  # rows: (6 - 3) // 2 + 1, cols: (7 - 3) // 3 + 1
    np.testing.assert_array_equal(out[0], inputs[0, 0:4:2, 0:6:3])
    np.testing.assert_array_equal(out[1], -inputs[1, 2:6:2, 2:8:3])


# --------------------------------------------------------------------------- health
def plant_faults(framework: str) -> tuple[Any, cw.Adapter]:
    """The sequential model with one fault per kind:

    conv1 filter 0: zero weights, zero bias   -> dead filter, dead at the conv's output
    conv1 filter 1: bias -100                 -> dead after relu1 only
    conv1 filter 2: zero weights, bias 0.5    -> dead filter, constant channel
    conv2 filter 3: one NaN weight            -> non-finite weights and activations
    """
    model, adapter = case(framework, "sequential")
    if framework == "torch":
        import torch

        with torch.no_grad():
            model.conv1.weight[0] = 0.0
            model.conv1.bias[0] = 0.0
            model.conv1.bias[1] = -100.0
            model.conv1.weight[2] = 0.0
            model.conv1.bias[2] = 0.5
            model.conv2.weight[3, 1, 1, 1] = float("nan")
    else:
        conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
        kernel, bias = conv1.kernel.numpy().copy(), conv1.bias.numpy().copy()
        kernel[..., 0] = 0.0
        kernel[..., 2] = 0.0
        bias[:3] = (0.0, -100.0, 0.5)
        conv1.kernel.assign(kernel)
        conv1.bias.assign(bias)
        kernel = conv2.kernel.numpy().copy()
        kernel[1, 1, 1, 3] = np.nan
        conv2.kernel.assign(kernel)
    return model, adapter


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_health_report_flags_every_planted_fault(framework) -> None:
    _, adapter = plant_faults(framework)
    report = cw.health_report(adapter, random_images(6, (3, 32, 32)))
    assert isinstance(report, HealthReport)
    assert report.layers == ("conv1", "conv2") and report.images == 6
    assert report.followers == {"conv1": ("relu1",), "conv2": ("relu2",)}
    conv1 = {
        0: ["dead_filter", "dead_channel"],
        1: ["dead_channel"],
        2: ["dead_filter", "constant_channel"],
    }
    assert report.flagged("conv1") == conv1
    assert report.flagged("relu1") == conv1  # a follower shows the same channels
    conv2 = report.flagged("conv2")
    assert conv2.pop(3) == ["nonfinite_weights", "nonfinite_activations"]
    # With three of conv1's channels gone, a conv2 channel or two may never pass relu2 on
    # these noise images: that is a true finding, and the only other kind allowed here.
    others = [f for f in report.by_layer()["conv2"] if f.channel in conv2]
    assert all(f.kind == "dead_channel" and f.where == "relu2" for f in others)
    assert report.flagged("pool1") == {}
    where = {(f.channel, f.kind): f.where for f in report.by_layer()["conv1"]}
    assert where[(0, "dead_channel")] == "conv1"  # zero already at the conv
    assert where[(1, "dead_channel")] == "relu1"  # only the ReLU kills it
    assert where[(2, "constant_channel")] == "conv1"
    constant = next(f for f in report.findings if f.kind == "constant_channel")
    assert "0.5" in constant.message
    assert report.counts()["dead_channel"] == 2 + len(others)
    assert list(report.by_layer()) == ["conv1", "conv2"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_health_report_without_images_checks_weights_only(framework) -> None:
    _, adapter = plant_faults(framework)
    report = cw.health_report(adapter)
    assert report.images == 0
    assert report.flagged("conv1") == {0: ["dead_filter"], 2: ["dead_filter"]}
    assert report.flagged("conv2") == {3: ["nonfinite_weights"]}
    loose = cw.health_report(adapter, dead_weight_tol=-1.0)  # nothing is that small
    assert "dead_filter" not in {f.kind for f in loose.findings}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_health_report_checks_the_weights_of_a_conv_that_never_ran(framework) -> None:
    # never_runs: 'conv1' runs, 'unused' (a conv) is never called by the forward pass.
    model, adapter = case(framework, "never_runs")
    before = adapter.snapshot()
    report = cw.health_report(adapter, random_images(2, (3, 32, 32)))
    assert report.layers == ("conv1", "unused") and report.images == 2
    assert report.not_run == ("unused",) and "unused" not in report.followers
    assert "1 conv layer(s) did not run in the forward pass (weights only): 'unused'" in repr(
        report
    )
    assert adapter.same_state(before, adapter.snapshot())
    # Its weights are still checked: a zeroed filter of the unused conv is found.
    if framework == "torch":
        import torch

        with torch.no_grad():
            model.unused.weight[1] = 0.0
    else:
        kernel = model.unused.kernel.numpy().copy()
        kernel[..., 1] = 0.0
        model.unused.kernel.assign(kernel)
    assert cw.health_report(adapter, random_images(2, (3, 32, 32))).flagged("unused") == {
        1: ["dead_filter"]
    }


def test_health_report_of_the_bundled_lenet(lenet) -> None:
    # The weights are sound; on the ten sample digits four conv2 channels never fire
    # (zero after relu2 on every digit), the same in both frameworks.
    assert len(cw.health_report(lenet)) == 0
    report = cw.health_report(lenet, DIGITS)
    assert report.flagged("conv1") == {}
    assert report.flagged("relu2") == {c: ["dead_channel"] for c in (4, 6, 9, 10)}
    assert {f.where for f in report.findings} == {"relu2"}


def test_health_report_reads_as_text_and_escaped_html() -> None:
    import torch
    nn = torch.nn
    model = nn.Sequential(
        OrderedDict([("<b>conv", nn.Conv2d(1, 2, 3)), ("act&", nn.ReLU())])
    ).eval()
    with torch.no_grad():
        model.get_submodule("<b>conv").weight[1] = 0.0
    report = cw.health_report(model, random_images(2, (1, 8, 8)))
    text = repr(report)
    assert text.startswith("HealthReport: ") and "<b>conv" in text and "dead_filter" in text
    page = report._repr_html_()
    assert "&lt;b&gt;conv" in page and "<b>" not in page
    clean = cw.health_report(cw.zoo.load("lenet", framework="torch"))
    assert "no problems in 2 conv layer(s)" in repr(clean)


# --------------------------------------------------------------------------- channel stats
def test_channel_stats_match_numpy_on_the_whole_set(lenet) -> None:
    images = DIGITS + random_images(3, (1, 28, 28))
    for layer in ("relu1", "fc2"):
        stats = cw.channel_stats(lenet, images, layer, batch_size=4)  # 4 + 4 + 4 + 1
        batch = np.stack([cw.prepare_image(lenet, im) for im in images])
        values = lenet.activations(batch, [layer])[layer]
        per_channel = np.moveaxis(values.reshape(len(images), values.shape[1], -1), 1, 0)
        per_channel = per_channel.reshape(values.shape[1], -1).astype(np.float64)
        assert len(stats) == values.shape[1] and stats.images == len(images)
        # Batches of another size may round float32 sums differently: ~1e-7 relative.
        close = {"rtol": 1e-5, "atol": 1e-6}
        np.testing.assert_allclose(stats.mean, per_channel.mean(axis=1), **close)
        np.testing.assert_allclose(stats.std, per_channel.std(axis=1), **close)
        np.testing.assert_allclose(stats.max, per_channel.max(axis=1), **close)
        np.testing.assert_allclose(stats.min, per_channel.min(axis=1), **close)
        np.testing.assert_array_equal(stats.zero_fraction, (per_channel == 0).mean(axis=1))
        assert not stats.nan_count.any() and not stats.inf_count.any()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_channel_stats_count_nan_and_leave_other_channels_finite(framework) -> None:
    _, adapter = case(framework, "nan_weights")  # conv1 filter 0 has one NaN weight
    images = random_images(3, (3, 32, 32))
    stats = cw.channel_stats(adapter, images, "conv1", batch_size=2)
    # The NaN tap makes NaN wherever it meets the image (31 x 31 positions); where it meets
    # the zero padding it depends on the conv kernel the framework picks for the batch shape.
    assert 3 * 31 * 31 <= stats.nan_count[0] <= 3 * 32 * 32
    assert np.isfinite(stats.mean[0]) or stats.nan_count[0] == 3 * 32 * 32
    assert not stats.nan_count[1:].any() and np.isfinite(stats.std[1:]).all()
    assert "channels with NaN/Inf=1" in repr(stats)


# --------------------------------------------------------------------------- receptive field
def test_receptive_field_of_lenet_follows_its_conv_and_pool_geometry(lenet) -> None:
    expected = {  # (size, stride, offset): 5x5 pad 2, 2x2 pool, 5x5 valid, 2x2 pool
        "conv1": (5, 1, -2),
        "pool1": (6, 2, -2),
        "conv2": (14, 2, -2),
        "relu2": (14, 2, -2),
        "pool2": (16, 4, -2),
    }
    for layer, (size, stride, offset) in expected.items():
        rf = receptive_field(lenet, layer)
        assert (rf.size, rf.stride, rf.offset) == ((size,) * 2, (stride,) * 2, (offset,) * 2)
        assert rf.whole == (False, False)
    rf = receptive_field(lenet, "conv2")
    assert rf.span(0, 0) == (0, 11) and rf.span(9, 1) == (16, 27)
    assert rf.window(9, 0) == (0, 14, 14, 14)  # moved inside the image, full size kept


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_receptive_field_follows_each_frameworks_padding_and_branches(framework) -> None:
    _, adapter = case(framework, "dilated_strided")
    # torch pads symmetrically (padding=1); TensorFlow's "same" pads the odd pixel after.
    start = -1 if framework == "torch" else 0
    sizes = {"strided": 3, "dilated": 3 + 2 * 2 * 2, "valid": 11 + 4 * 2}
    offsets = {"strided": start, "dilated": start - 4, "valid": start - 4}
    for layer, size in sizes.items():
        rf = receptive_field(adapter, layer)
        assert rf.size == (size, size) and rf.stride == (2, 2), layer
        assert rf.offset == (offsets[layer],) * 2, layer
    _, branching = case(framework, "branching")
    assert receptive_field(branching, "b5").size == (7, 7)  # stem 3x3, then 5x5
    assert receptive_field(branching, "bpool_proj").size == (5, 5)  # 3x3 max pool
    assert receptive_field(branching, "gap").whole == (True, True)


def test_receptive_field_of_deep_layers_covers_the_whole_image(efficientnet) -> None:
    head = receptive_field(efficientnet, "_conv_head")
    assert head.whole == (True, True) and head.window(0, 6) == (0, 0, 224, 224)
    # Stem 3x3/2, then 3x3 depthwise convs: /1 (block 0), /2 (block 1), /1 (block 2); each
    # widens the field by (k - 1) times the stride so far: 3 + 2*2 + 2*2 + 2*4 = 19.
    mid = receptive_field(efficientnet, "_blocks.2._project_conv")
    assert (mid.size, mid.stride, mid.whole) == ((19, 19), (4, 4), (False, False))
    # TF-style "same" padding puts the odd pixel after: the stem's first field starts at 0.
    assert receptive_field(efficientnet, "_conv_stem").offset == (0, 0)


# --------------------------------------------------------------------------- top images
def test_top_images_rank_lenet_digits_by_the_channel_maximum(lenet) -> None:
    images = DIGITS + random_images(6, (1, 28, 28), seed=1)
    result = cw.top_images(lenet, "conv2", 5, images, k=4, batch_size=3, progress=False)
    assert isinstance(result, TopImages) and len(result) == 4
    batch = np.stack([cw.prepare_image(lenet, im) for im in images])
    maps = lenet.activations(batch, ["conv2"])["conv2"][:, 5]
    best = maps.reshape(len(images), -1).max(axis=1)
    order = np.argsort(-best, kind="stable")[:4]
    np.testing.assert_array_equal(result.indices, order)
    np.testing.assert_allclose(result.scores, best[order], rtol=1e-6)
    field = receptive_field(lenet, "conv2")
    assert result.images.shape == (4, 14, 14, 1) and result.sources == (None,) * 4
    for i, index in enumerate(result.indices):
        row, col = np.unravel_index(maps[index].argmax(), maps[index].shape)
        assert tuple(result.positions[i]) == (row, col)
        x, y, w, h = field.window(row, col)
        assert tuple(result.boxes[i]) == (x, y, w, h)  # 28x28 sources: no resizing
        np.testing.assert_array_equal(
            result.images[i, ..., 0], batch[index, 0, y : y + h, x : x + w]
        )
    whole = cw.top_images(lenet, "fc2", 3, np.stack(DIGITS), k=2, crop=False, progress=False)
    assert whole.images.shape == (2, 28, 28, 1) and whole.indices[0] == 3  # digit 3's logit
    assert tuple(whole.boxes[0]) == (0.0, 0.0, 28.0, 28.0) and tuple(whole.positions[0]) == (-1, -1)


def test_top_images_read_a_folder_skipping_other_files(lenet, tmp_path: Path) -> None:
    for d in (1, 4, 7):
        Image.fromarray(DIGITS[d]).save(tmp_path / f"digit{d}.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(DIGITS[0]).resize((56, 56)).save(tmp_path / "sub" / "big0.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipped 1 file.*notes\.txt"):
        result = cw.top_images(lenet, "conv1", 2, tmp_path, k=4, progress=False)
    paths = sorted(str(p) for p in tmp_path.rglob("*.png"))
    assert sorted(result.sources) == paths
    assert set(result.indices) == {0, 1, 2, 3}
    big = result.sources.index(str(tmp_path / "sub" / "big0.png"))
    assert tuple(result.boxes[big][2:]) == (10.0, 10.0)  # a 5x5 field on a 2x downscaled image
    assert tuple(result.boxes[big]) == tuple(
        2.0 * v for v in result.receptive_field.window(*result.positions[big])
    )
    with pytest.warns(UserWarning, match="skipped 1"):
        stats = cw.channel_stats(lenet, tmp_path, "conv1")
    assert stats.images == 4


def test_top_images_refuse_bad_input(lenet) -> None:
    with pytest.raises(ValueError, match="empty"):
        cw.top_images(lenet, "conv1", 0, [], progress=False)
    with pytest.raises(ValueError, match=r"k=4 is out of range: valid 1\.\.3"):
        cw.top_images(lenet, "conv1", 0, DIGITS[:3], k=4, progress=False)
    with pytest.raises(ValueError, match="k=0 is out of range"):
        cw.top_images(lenet, "conv1", 0, DIGITS[:3], k=0, progress=False)
    with pytest.raises(ValueError, match=r"channel 8 is out of range.*0\.\.7"):
        cw.top_images(lenet, "conv1", 8, DIGITS, progress=False)
    with pytest.raises(ValueError, match="looks like one"):
        cw.top_images(lenet, "conv1", 0, np.zeros((28, 28, 3)), progress=False)
    with pytest.raises(ValueError, match="k=3 is out of range: the image set holds only 2"):
        cw.top_images(lenet, "conv1", 0, iter(DIGITS[:2]), k=3, progress=False)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_top_images_refuse_mixed_sizes_without_a_model_input_size(framework) -> None:
    model, _ = case(framework, "nested" if framework == "torch" else "subclassed")
    if framework == "torch":
        adapter = cw.adapt(model)  # global pooling: any size, and none given
        mixed = random_images(2, (3, 32, 32)) + random_images(1, (3, 24, 40))
        with pytest.raises(ValueError, match=r"image 0 is 32x32 but image 2 is 24x40"):
            cw.top_images(adapter, 1, 0, mixed, k=1, progress=False)
        ok = cw.top_images(adapter, 1, 0, random_images(3, (3, 24, 40)), k=2, progress=False)
        assert ok.images.shape[0] == 2
    else:
        adapter = cw.adapt(model)  # built on 32x32: Keras knows the size and resizes
        mixed = random_images(1, (3, 32, 32)) + random_images(1, (3, 24, 40))
        result = cw.top_images(adapter, "conv1", 0, mixed, k=2, progress=False)
        assert result.images.shape[0] == 2


def test_top_images_of_efficientnet_on_the_sample_photos(efficientnet) -> None:
    photos = [cw.zoo.sample_image(name) for name in cw.zoo.SAMPLE_IMAGES]
    layer, channel = "_blocks.2._project_conv", 5
    result = cw.top_images(efficientnet, layer, channel, photos, k=3, batch_size=2, progress=False)
    field = result.receptive_field
    assert isinstance(field, ReceptiveField) and field.output_size == (56, 56)
    assert result.images.shape == (3, *field.size, 3)
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    batch = np.stack([cw.prepare_image(efficientnet, p) for p in photos])
    maps = efficientnet.activations(batch, [layer])[layer][:, channel]
    assert result.scores[0] == pytest.approx(float(maps.max()), rel=1e-5)
    assert list(result.scores) == sorted(result.scores, reverse=True)
    for i, index in enumerate(result.indices):
        h, w = photos[index].shape[:2]
        x, y, bw, bh = result.boxes[i]
        assert min(x, y) >= 0 and x + bw <= w + 1e-9 and y + bh <= h + 1e-9
        assert bw == pytest.approx(field.size[1] * min(h, w) / 224)


def test_top_images_show_a_progress_bar(lenet, capsys) -> None:
    cw.top_images(lenet, "conv1", 0, DIGITS, k=2, batch_size=4, progress=True)
    assert "top images conv1[0]" in capsys.readouterr().err
    cw.top_images(lenet, "conv1", 0, DIGITS, k=2, batch_size=4, progress=False)
    assert capsys.readouterr().err == ""


def test_a_progress_bar_closes_when_the_loop_stops_early(capsys) -> None:
    batches = ImageSet(DIGITS[:6]).batches(1, None, 2, progress="reading")
    next(batches)
    batches.close()
    err = capsys.readouterr().err
    # Counted only once a batch is done with; closed, the bar (leave=False) wipes its line.
    assert "reading:   0%" in err and err.endswith(" \r")


def test_top_images_show_in_a_notebook_as_one_readable_strip(lenet) -> None:
    result = cw.top_images(lenet, "conv1", 0, DIGITS, k=3, progress=False)
    h, w = result.images.shape[1:3]
    strip_w = 3 * w + 2 * 2  # three crops, 2 px gaps
    factor = max(1, round(512 / max(strip_w, h)))
    with Image.open(io.BytesIO(result._repr_png_())) as shown:
        assert shown.size == (strip_w * factor, h * factor)
        assert shown.mode == "L"  # gray digits stay gray


def test_image_sets_stream_iterators_and_refuse_empty_folders(tmp_path: Path) -> None:
    streamed = ImageSet(iter(DIGITS[:5]))
    assert streamed.count is None
    sizes = [len(b.indices) for b in streamed.batches(1, None, 2)]
    assert sizes == [2, 2, 1]
    (tmp_path / "readme.md").write_text("#")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no image files"):
            ImageSet(tmp_path)


# --------------------------------------------------------------------------- never harm
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_analyses_leave_the_model_untouched(framework) -> None:
    model, adapter = case(framework, "residual")  # batch norm: train mode would show
    if framework == "torch":
        model.train()  # a mode the analyses must switch off and restore
    images = random_images(3, (3, 32, 32))
    before = adapter.snapshot()
    for target in (model, adapter):  # raw models and adapters alike
        cw.filter_responses(target, images[0], "stem", 3)
        cw.channel_stats(target, images, "stem")
        cw.health_report(target, images)
        cw.top_images(target, "stem", 1, images, k=2, progress=False)
    assert adapter.same_state(before, adapter.snapshot())
    if framework == "torch":
        assert model.training
