"""Caffe and ONNX model files, opened like native models: a real trained Caffe net, classic
topologies against onnxruntime through both readers, seed 004's table, and bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.__main__ import main
from cnn_widgets.formats.caffe import SUPPORTED
from cnn_widgets.formats.caffe_proto import messages
from tests.formats_cases import (
    CAFFE,
    DATA,
    NSFW_PROTOTXT,
    NSFW_WEIGHTS,
    photo,
    randomized_light,
    reference_outputs,
    relative_error,
    write_caffemodel,
)

MEAN = (104.0, 117.0, 123.0)


@pytest.fixture(scope="module")
def nsfw():
    return cw.load_caffe(NSFW_PROTOTXT, NSFW_WEIGHTS, mean=MEAN, labels=["sfw", "nsfw"])


# -- a real trained Caffe model ----------------------------------------------------------


def test_the_nsfw_net_lists_every_caffe_layer_under_its_name_and_type(nsfw) -> None:
    infos = cw.layers(nsfw)
    types = [info.type for info in infos]
    assert [types.count(t) for t in ("Convolution", "BatchNorm", "Scale", "Eltwise")] == [
        53, 53, 53, 16,
    ]  # fmt: skip
    # In-place layers (bn_1, scale_1, relu_1 all write conv_1's blob) are entries of their own.
    assert [i.name for i in infos[:5]] == ["conv_1", "bn_1", "scale_1", "relu_1", "pool1"]
    assert infos[0].param_shapes == {"weight": (64, 3, 7, 7), "bias": (64,)}
    assert infos[0].output_shape == (64, 112, 112) and infos[4].output_shape == (64, 56, 56)
    assert nsfw.output_layer().name == "prob" and infos[-1].output_shape == (2,)
    assert dict(nsfw.model.named_modules())["conv_1"] is nsfw.module("conv_1")


def test_nsfw_outputs_match_golden_values_from_an_independent_runtime(nsfw) -> None:
    golden = json.loads((DATA / "nsfw_golden.json").read_text())
    assert tuple(golden["mean_bgr"]) == MEAN
    images = np.stack([photo(name) for name in golden["photos"]])
    got = nsfw.activations(images, ["pool1", "eltwise_stage3_block2", "fc_nsfw", "prob"])
    # Golden: the same net written as an ONNX graph by hand and run by onnxruntime
    # (scripts/nsfw_golden.py). Different kernels sum in another order: float32 tolerances.
    np.testing.assert_allclose(got["prob"], golden["prob"], atol=1e-5)
    assert relative_error(got["fc_nsfw"], np.asarray(golden["fc_nsfw"])) < 1e-4
    for layer in ("pool1", "eltwise_stage3_block2"):
        means = got[layer].mean(axis=(2, 3))
        assert relative_error(means, np.asarray(golden[f"{layer}_channel_means"])) < 1e-4
    # Every photo is clearly safe for work; the labels reach the probability view.
    assert all(p[0] > 0.95 for p in got["prob"])
    assert cw.top_classes(nsfw, images[0], k=1)[0][1] == "sfw"


def test_each_in_place_layer_reports_its_own_output(nsfw) -> None:
    image = photo("chelsea")[None]
    acts = nsfw.activations(image, ["conv_1", "bn_1", "scale_1", "relu_1"])
    conv = nsfw.module("conv_1")
    with torch.no_grad():
        expected = conv(nsfw.preprocess(torch.from_numpy(image)))
    np.testing.assert_allclose(acts["conv_1"], expected.numpy(), rtol=1e-5, atol=1e-4)
    assert acts["conv_1"].min() < 0 and acts["relu_1"].min() == 0.0
    assert not np.allclose(acts["bn_1"], acts["scale_1"])


def test_nsfw_conv_1_filters_are_64_learned_7x7_kernels(nsfw) -> None:
    weights = cw.filters(nsfw, "conv_1")
    golden = json.loads((DATA / "nsfw_golden.json").read_text())
    assert weights.shape == (64, 3, 7, 7)
    assert np.abs(weights).sum() == pytest.approx(golden["conv_1_weight_sum_abs"], rel=1e-6)
    # Learned first-layer kernels are smooth: neighbouring taps agree far more than noise.
    flat = weights.reshape(64 * 3, 7, 7)
    neighbours = np.mean([np.corrcoef(k[:, :-1].ravel(), k[:, 1:].ravel())[0, 1] for k in flat])
    assert neighbours > 0.5
    picture = cw.render_filters(nsfw, "conv_1")
    assert picture.pixels.shape[-1] == 3 and picture.pixels.std() > 0


def test_caffe_preprocessing_is_the_transformer_s(nsfw) -> None:
    image = torch.rand(2, 3, 224, 224)
    bgr = image.flip(1) * 255.0 - torch.tensor(MEAN).reshape(1, 3, 1, 1)
    torch.testing.assert_close(nsfw.preprocess(image), bgr)
    assert "preprocess=caffe" in repr(nsfw)


def test_no_function_changes_the_loaded_caffe_model(nsfw) -> None:
    before = nsfw.snapshot()
    cw.activations(nsfw, photo("coffee"), ["conv_1", "prob"])
    cw.render_activations(nsfw, photo("coffee"), -1, view="probabilities")
    cw.feature_viz(nsfw, "conv_stage0_block0_branch2a", channels=[0, 1], steps=2, size=64)
    with pytest.raises(ValueError, match="no layer named"):
        cw.activations(nsfw, photo("coffee"), ["conv1"])
    viewer = cw.Explorer(nsfw, photo("coffee"))  # the widget, through the same adapter
    viewer.layer = "relu_1"
    viewer.wait()
    assert viewer.error == "" and len(viewer.grid) > 0
    assert nsfw.same_state(before, nsfw.snapshot())
    assert not nsfw.model.training


# -- classic topologies against onnxruntime, through both readers --------------------------

LIGHT = [
    ("light_bvlc_alexnet.onnx", "bvlc_alexnet.prototxt", 227),  # groups, LRN, 3 pools
    ("light_inception_v1.onnx", "bvlc_googlenet.prototxt", 224),  # ceil pools, Concat
]


@pytest.mark.parametrize(("onnx_name", "prototxt", "size"), LIGHT)
def test_classic_nets_match_onnxruntime_through_both_readers(
    tmp_path, onnx_name, prototxt, size
) -> None:
    model = randomized_light(onnx_name, size)
    path = tmp_path / onnx_name
    onnx.save(model, str(path))
    x = np.random.default_rng(1).random((1, 3, size, size), dtype=np.float32)
    reference = reference_outputs(model, x)

    # (a) the ONNX reader: every node's output, by node name
    ours = cw.load_onnx(path)
    got = ours.activations(x)
    compared = [n for n in model.graph.node if n.name in got]
    assert len(compared) == len(got) >= 24
    for node in compared:
        assert relative_error(got[node.name], reference[node.output[0]]) <= 1e-4, node.name

    # (b) the Caffe reader fed the same weights through the BVLC deploy.prototxt
    weights: dict[str, dict[str, np.ndarray]] = {}
    for init in model.graph.initializer:
        layer, _, kind = init.name.rpartition("_")[0].rpartition("_")
        weights.setdefault(layer, {})[kind] = numpy_helper.to_array(init)
    # Caffe2 blob names: <layer>_w_0, <layer>_b_0. GoogLeNet's classifier weight is 4-D
    # (1, 1, 1000, 1024), as old Caffe stored every blob: it loads as (1000, 1024).
    blobs = {layer: [w["w"], w["b"]] for layer, w in weights.items() if {"w", "b"} <= w.keys()}
    caffemodel = write_caffemodel(tmp_path / "net.caffemodel", blobs)
    caffe = cw.load_caffe(CAFFE / prototxt, caffemodel, raw_scale=1.0)
    # Caffe's preprocessing turns RGB into BGR: hand it the channels reversed.
    caffe_acts = caffe.activations(np.ascontiguousarray(x[:, ::-1]))
    pairs = [n for n in model.graph.node if n.op_type != "Reshape"]
    layers = cw.layers(caffe)
    assert len(layers) == len(pairs)
    for info, node in zip(layers, pairs, strict=True):
        assert relative_error(caffe_acts[info.name], reference[node.output[0]]) <= 1e-4, info.name


# -- seed 004's table ----------------------------------------------------------------------


def test_caffenet_with_random_weights_has_seed_004_s_blobs_and_params() -> None:
    net = cw.load_caffe(CAFFE / "bvlc_reference_caffenet.prototxt")
    infos = {info.name: info for info in cw.layers(net)}
    blobs = {
        "conv1": (96, 55, 55), "pool1": (96, 27, 27), "norm1": (96, 27, 27),
        "conv2": (256, 27, 27), "pool2": (256, 13, 13), "norm2": (256, 13, 13),
        "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13),
        "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,), "prob": (1000,),
    }  # fmt: skip
    assert {name: infos[name].output_shape for name in blobs} == blobs
    params = {
        "conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
        "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216),
        "fc7": (4096, 4096), "fc8": (1000, 4096),
    }  # fmt: skip
    shown = {n: i.param_shapes for n, i in infos.items() if i.param_shapes}
    assert shown == {n: {"weight": s, "bias": (s[0],)} for n, s in params.items()}
    table = repr(cw.summary(net))
    assert "conv2" in table and "Convolution" in table and "(256, 48, 5, 5)" in table
    # The same prototxt gives the same random weights every time.
    again = cw.load_caffe(CAFFE / "bvlc_reference_caffenet.prototxt")
    np.testing.assert_array_equal(cw.filters(net, "conv1"), cw.filters(again, "conv1"))


# -- old (V1) nets and the rest of the layer types ----------------------------------------

V1_NET = """
name: "old"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 12 input_dim: 12
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
         convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
         pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool" top: "fc"
         inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
"""

V2_NET = """
name: "new"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_h: 3 kernel_w: 3 pad_h: 1 pad_w: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
        inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" top: "loss" include { phase: TRAIN } }
"""  # noqa: E501


def _small_blobs(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "conv": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.random(4, np.float32)],
        "fc": [rng.standard_normal((5, 196)).astype(np.float32), rng.random(5, np.float32)],
        "data": [],  # a layer the prototxt has no weights for: ignored
        "loss": [rng.random(3, np.float32)],  # a training layer the deploy net lacks: ignored
    }


def test_an_old_v1_net_with_4d_blobs_loads_like_its_new_form(tmp_path) -> None:
    (tmp_path / "old.prototxt").write_text(V1_NET)
    (tmp_path / "new.prototxt").write_text(V2_NET)
    old_weights = write_caffemodel(tmp_path / "old.caffemodel", _small_blobs(), v1=True)
    new_weights = write_caffemodel(tmp_path / "new.caffemodel", _small_blobs())
    old = cw.load_caffe(tmp_path / "old.prototxt", old_weights)
    new = cw.load_caffe(tmp_path / "new.prototxt", new_weights)
    image = np.random.default_rng(2).random((1, 3, 12, 12), dtype=np.float32)
    a, b = old.activations(image), new.activations(image)
    assert list(a) == list(b) == ["conv", "relu", "pool", "fc", "prob"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert [i.type for i in cw.layers(old)] == [i.type for i in cw.layers(new)]
    # Caffe's AVE pooling counts the padding: a corner window of a constant map is diluted;
    # and it rounds the output size up: 12 px, window 3, stride 2, pad 1 give 7, not 6.
    pool = old.module("pool")(torch.ones(1, 1, 12, 12))
    assert pool[0, 0, 0, 0].item() == pytest.approx(4 / 9) and pool.shape[-1] == 7


def test_rare_caffe_layers_compute_what_caffe_defines(tmp_path) -> None:
    net = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 6 dim: 6 } } }
layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }
layer { name: "slice" type: "Slice" bottom: "a" top: "s1" top: "s2" slice_param { slice_point: 1 } }
layer { name: "prelu" type: "PReLU" bottom: "s2" top: "p" }
layer { name: "sig" type: "Sigmoid" bottom: "s1" top: "s1" }
layer { name: "cat" type: "Concat" bottom: "s1" bottom: "p" top: "cat" }
layer { name: "tanh" type: "TanH" bottom: "b" top: "t" }
layer { name: "bias" type: "Bias" bottom: "t" top: "t" }
layer { name: "gpool" type: "Pooling" bottom: "t" top: "g" pooling_param { pool: MAX global_pooling: true } }
layer { name: "prod" type: "Eltwise" bottom: "cat" bottom: "t" top: "prod" eltwise_param { operation: PROD } }
layer { name: "sum" type: "Eltwise" bottom: "prod" bottom: "cat" top: "sum" eltwise_param { coeff: 2 coeff: -1 } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "t" top: "max" eltwise_param { operation: MAX } }
layer { name: "drop" type: "Dropout" bottom: "max" top: "max" }
layer { name: "flat" type: "Flatten" bottom: "max" top: "flat" }
"""  # noqa: E501
    (tmp_path / "net.prototxt").write_text(net)
    blobs = {"prelu": [np.full(3, 0.5, np.float32)], "bias": [np.arange(4, dtype=np.float32)]}
    weights = write_caffemodel(tmp_path / "w.caffemodel", blobs)
    model = cw.load_caffe(tmp_path / "net.prototxt", weights, raw_scale=1.0)
    x = torch.randn(1, 4, 6, 6)
    got = model.activations(x.numpy())  # BGR order is a matter of 3-channel input only
    s1, s2 = x[:, :1], x[:, 1:]
    cat = torch.cat([torch.sigmoid(s1), torch.where(s2 >= 0, s2, 0.5 * s2)], 1)
    t = torch.tanh(x) + torch.arange(4.0).reshape(1, 4, 1, 1)
    expected = torch.maximum(2 * cat * t - cat, t).flatten(1)
    np.testing.assert_allclose(got["flat"], expected.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["gpool"][0, :, 0, 0], t.amax((2, 3))[0].numpy(), rtol=1e-6)
    assert got["split"].shape == (1, 4, 6, 6) and got["slice"].shape == (1, 1, 6, 6)


def test_caffe_convolution_and_inner_product_settings_reach_torch(tmp_path) -> None:
    net = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 11 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 6 group: 2 bias_term: false dilation: 2
                            kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 2 pad_w: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 3 transpose: true } }
"""  # noqa: E501
    (tmp_path / "net.prototxt").write_text(net)
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
    fc_in_out = rng.standard_normal((6 * 6 * 9, 3)).astype(np.float32)  # transpose: (in, out)
    blobs = {"conv": [kernel], "fc": [fc_in_out, rng.standard_normal(3).astype(np.float32)]}
    weights = write_caffemodel(tmp_path / "w.caffemodel", blobs)
    model = cw.load_caffe(tmp_path / "net.prototxt", weights, raw_scale=1.0)
    x = torch.from_numpy(rng.standard_normal((1, 4, 11, 9)).astype(np.float32))
    got = model.activations(x.numpy())
    conv = torch.nn.functional.conv2d(x, torch.from_numpy(kernel), None, (2, 1), (2, 1), 2, 2)
    np.testing.assert_allclose(got["conv"], conv.numpy(), rtol=1e-5, atol=1e-5)
    fc = conv.flatten(1) @ torch.from_numpy(fc_in_out) + torch.from_numpy(blobs["fc"][1])
    np.testing.assert_allclose(got["fc"], fc.numpy(), rtol=1e-5, atol=1e-5)
    config = model.conv_config("conv")
    assert (config.stride, config.padding, config.dilation, config.groups) == (
        (2, 1), (2, 1), (2, 2), 2,
    ) and not config.has_bias  # fmt: skip


# -- ONNX operators beyond the classic nets, against onnxruntime ---------------------------


def _onnx_model(opset: int, size: int = 9) -> onnx.ModelProto:
    rng = np.random.default_rng(opset)

    def init(name: str, shape: tuple[int, ...], scale: float = 0.5) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)  # noqa: E501

    def ints(name: str, values: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(values, np.int64), name)

    inits = [init("w1", (6, 3, 3, 3)), init("b1", (6,)), init("w2", (6, 2, 2, 2)),
             init("slope", (6, 1, 1)), init("fc", (6, 4)), init("bias", (4,))]  # fmt: skip
    bn = [init(n, (6,)) for n in ("g", "beta", "mu")] + [
        numpy_helper.from_array(rng.random(6).astype(np.float32) + 0.5, "var")
    ]
    ceil = {"ceil_mode": 1} if opset >= 10 else {}  # 4 px, window 3, stride 2: 3 rows, not 2
    nodes = [
        helper.make_node("Constant", [], ["w3"], value=init("w3v", (6, 6, 1, 1))),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv_asym", pads=[0, 1, 1, 0]),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "mu", "var"], ["bn"], name="bn"),
        helper.make_node("PRelu", ["bn", "slope"], ["pr"], name="prelu"),
        helper.make_node("Conv", ["pr", "w2"], ["c2"], name="conv_same", group=3,
                         strides=[2, 2], auto_pad="SAME_UPPER", kernel_shape=[2, 2]),
        helper.make_node("HardSwish" if opset >= 14 else "HardSigmoid", ["c2"], ["hs"]),
        helper.make_node("Conv", ["hs", "w3"], ["c3"], name="conv.dotted", dilations=[1, 1]),
        helper.make_node("LeakyRelu", ["c3"], ["lr"], alpha=0.2),
        helper.make_node("AveragePool", ["lr"], ["ap"], name="avg", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 0, 1, 1], **ceil),
        helper.make_node("GlobalMaxPool", ["ap"], ["apg"], name="gmp"),
        helper.make_node("MaxPool", ["lr"], ["mp"], name="max", kernel_shape=[2, 2],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Pad", ["mp", "pads"] if opset >= 11 else ["mp"], ["pd"], name="pad",
                         **({} if opset >= 11 else {"pads": [0, 0, 0, 0, 0, 0, 1, 1]})),
        helper.make_node("Sub", ["pd", "apg"], ["d"], name="sub"),
        helper.make_node("Clip", ["d", "lo", "hi"] if opset >= 11 else ["d"], ["cl"], name="clip",
                         **({} if opset >= 11 else {"min": -0.5, "max": 0.7})),
        helper.make_node("GlobalAveragePool", ["cl"], ["gap"], name="gap"),
        helper.make_node("Squeeze", ["gap", "axes"] if opset >= 13 else ["gap"], ["sq"],
                         **({} if opset >= 13 else {"axes": [2, 3]})),
        helper.make_node("MatMul", ["sq", "fc"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "bias"], ["add"], name="add"),
        helper.make_node("Unsqueeze", ["add", "axes1"] if opset >= 13 else ["add"], ["us"],
                         **({} if opset >= 13 else {"axes": [1]})),
        helper.make_node("Transpose", ["us"], ["tr"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["tr"], ["fl"], axis=1),
        helper.make_node("Softmax", ["fl"], ["y"], name="softmax"),
    ]  # fmt: skip
    extra = [ints("pads", [0, 0, 0, 0, 0, 0, 1, 1]), ints("axes", [2, 3]), ints("axes1", [1]),
             numpy_helper.from_array(np.float32(-0.5), "lo"),
             numpy_helper.from_array(np.float32(0.7), "hi")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits + bn + extra,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("opset", [9, 11, 13, 22])
def test_onnx_operators_match_onnxruntime_across_opsets(tmp_path, opset) -> None:
    model = _onnx_model(opset)
    onnx.checker.check_model(model)
    path = tmp_path / "ops.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(0).random((2, 3, 9, 9), dtype=np.float32)
    reference = reference_outputs(model, x)
    ours = cw.load_onnx(path)
    got = ours.activations(x)
    names = {(n.name or n.output[0]).replace(".", "_"): n.output[0] for n in model.graph.node
             if n.op_type != "Constant"}  # fmt: skip
    assert set(got) == set(names)
    for name, tensor in names.items():
        assert relative_error(got[name], reference[tensor]) <= 1e-5, name
    info = ours.layer("conv_asym")
    assert info.type == "Conv" and info.has_filters
    with pytest.raises(ValueError, match="pads unevenly"):
        ours.conv_config("conv_asym")
    assert ours.conv_config("conv_same").padding == "same"


# -- bad input: a clear error, nothing half-built -----------------------------------------


def test_a_truncated_caffemodel_is_a_clear_error(tmp_path) -> None:
    broken = tmp_path / "broken.caffemodel"
    broken.write_bytes(NSFW_WEIGHTS.read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match=r"broken\.caffemodel.*not a readable \.caffemodel"):
        cw.load_caffe(NSFW_PROTOTXT, broken)


def test_weights_that_do_not_fit_name_the_layer_and_both_shapes(tmp_path) -> None:
    (tmp_path / "new.prototxt").write_text(V2_NET)
    blobs = _small_blobs()
    blobs["fc"][0] = np.zeros((5, 100), np.float32)
    caffemodel = write_caffemodel(tmp_path / "w.caffemodel", blobs)
    with pytest.raises(ValueError, match=r"'fc' \(InnerProduct\).*\(5, 100\).*\(5, 196\)"):
        cw.load_caffe(tmp_path / "new.prototxt", caffemodel)
    del blobs["conv"]
    caffemodel = write_caffemodel(tmp_path / "w.caffemodel", blobs)
    with pytest.raises(ValueError, match="no weights for Caffe layer 'conv'"):
        cw.load_caffe(tmp_path / "new.prototxt", caffemodel)


def test_an_unknown_caffe_layer_type_names_the_layer_and_the_supported_types(tmp_path) -> None:
    (tmp_path / "net.prototxt").write_text(
        V2_NET.replace('type: "Softmax"', 'type: "Crop"')
    )
    with pytest.raises(ValueError, match=r"'prob' has type 'Crop'.*Supported types: BatchNorm"):
        cw.load_caffe(tmp_path / "net.prototxt")
    assert "Convolution" in SUPPORTED and "Crop" not in SUPPORTED


@pytest.mark.parametrize(("op", "inputs", "hint"), [
    ("Erf", ["x"], "Supported operators: Constant, Add"),
    ("ConvTranspose", ["x", "w"], "transposed convolutions are not supported"),
])  # fmt: skip
def test_an_unsupported_onnx_operator_names_it_the_node_and_the_opset(
    tmp_path, op, inputs, hint
) -> None:
    weight = numpy_helper.from_array(np.ones((3, 2, 2, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="the_node")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight],
    )  # fmt: skip
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match=rf"'{op}' \(node 'the_node', opset 17\) is not") as err:
        cw.load_onnx(path)
    assert hint in str(err.value)


def test_files_of_another_kind_are_refused_by_each_loader(tmp_path) -> None:
    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    with pytest.raises(ValueError, match=r"photo\.png.*not a readable Caffe prototxt"):
        cw.load_caffe(png)
    with pytest.raises(ValueError, match=r"photo\.png.*caffemodel"):
        cw.load_caffe(CAFFE / "bvlc_alexnet.prototxt", png)
    with pytest.raises(ValueError, match=r"photo\.png.*ONNX"):
        cw.load_onnx(png)
    with pytest.raises(ValueError, match="ONNX"):
        cw.load_onnx(CAFFE / "bvlc_alexnet.prototxt")
    with pytest.raises(ValueError, match="cannot read the Caffe prototxt"):
        cw.load_caffe(tmp_path / "missing.prototxt")


def test_per_pixel_means_are_read_and_centre_cropped(tmp_path) -> None:
    mean = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32) * 100
    np.save(tmp_path / "mean.npy", mean)
    blob = messages()["BlobProto"]()
    blob.num, blob.channels, blob.height, blob.width = 1, 3, 16, 16
    blob.data.extend(mean.ravel().tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    (tmp_path / "net.prototxt").write_text(V2_NET)
    image = torch.rand(1, 3, 12, 12)
    for source in (tmp_path / "mean.npy", tmp_path / "mean.binaryproto", mean):
        net = cw.load_caffe(tmp_path / "net.prototxt", mean=source, scale=0.5)
        expected = (image.flip(1) * 255 - torch.from_numpy(mean[:, 2:14, 2:14])) * 0.5
        torch.testing.assert_close(net.preprocess(image), expected)
    with pytest.raises(ValueError, match="expected 3 values"):
        cw.load_caffe(tmp_path / "net.prototxt", mean=(1.0, 2.0))


def test_importing_cnn_widgets_loads_no_reader_dependency() -> None:
    code = (
        "import sys, cnn_widgets as cw\n"
        "assert callable(cw.load_caffe) and callable(cw.load_onnx)\n"
        "print(sorted(m for m in ('torch', 'onnx', 'google.protobuf') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_torch_the_loaders_say_which_extra_to_install(monkeypatch) -> None:
    import cnn_widgets.formats as formats

    real = formats.importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))  # fmt: skip
    with pytest.raises(ImportError, match=r"needs torch.*cnn_widgets\[torch\]"):
        cw.load_caffe(NSFW_PROTOTXT)
    with pytest.raises(ImportError, match=r"needs torch"):
        cw.load_onnx("model.onnx")


# -- the command line ----------------------------------------------------------------------


def test_the_cli_renders_a_caffe_model_and_lists_an_onnx_model(tmp_path, capsys) -> None:
    out = tmp_path / "conv_1.png"
    args = ["render", "--model", str(NSFW_PROTOTXT), "--weights", str(NSFW_WEIGHTS),
            "--mean", "104,117,123", "--layer", "conv_1", "--out", str(out), "--scale", "1"]
    assert main(args) == 0, capsys.readouterr().err
    with Image.open(out) as picture:  # 64 kernels of 7x7 in an 8x8 grid with 1 px gaps
        assert picture.size == (63, 63)
    model = _onnx_model(13)
    onnx.save(model, str(tmp_path / "ops.onnx"))
    assert main(["layers", "--model", str(tmp_path / "ops.onnx")]) == 0
    table = capsys.readouterr().out
    assert "conv_asym" in table and "conv_dotted" in table and "HardSigmoid" in table
    assert main(["layers", "--model", "demo:lenet", "--weights", "w.caffemodel"]) == 2
    assert "for Caffe models" in capsys.readouterr().err
