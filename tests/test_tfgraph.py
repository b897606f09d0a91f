"""TensorFlow graphs (a TF1 session, a frozen .pb, a SavedModel, a tf.function) opened like a
Keras model: layers, filters and activations exact against the graph's own ``sess.run``, and
the user's graph and variables untouched."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import cnn_widgets as cw
from cnn_widgets.backends.tfgraph import TFGraphAdapter

from .tf1_nets import TF1Net, deep_mnist, graph_state

v1 = tf.compat.v1
SEEDS = {"seed000": False, "seed003": True}  # name -> has a keep_prob dropout


@pytest.fixture(scope="module", params=list(SEEDS))
def net(request: pytest.FixtureRequest) -> TF1Net:
    return deep_mnist(dropout=SEEDS[request.param])


@pytest.fixture(scope="module")
def seed003() -> TF1Net:
    return deep_mnist(dropout=True, steps=10)


def load(net: TF1Net, **kwargs: object) -> TFGraphAdapter:
    feed = {net.keep_prob.name: 1.0} if net.keep_prob is not None else None
    return cw.load_tf_graph(net.session, feed=feed, **kwargs)


def digits(n: int = 3) -> np.ndarray:
    from cnn_widgets.zoo.lenet import mnist_5k

    images, _ = mnist_5k()
    return (images[::997][:n] / 255.0).astype(np.float32)[:, None]  # (n, 1, 28, 28)


def run(net: TF1Net, tensor: object, images: np.ndarray) -> np.ndarray:
    feed = {net.x: images.reshape(len(images), 784)}
    if net.keep_prob is not None:
        feed[net.keep_prob] = 1.0
    return net.session.run(tensor, feed)


def test_a_session_lists_the_ops_that_compute_from_the_image_alone(net: TF1Net) -> None:
    adapter = load(net)
    infos = adapter.layers()
    types = [i.type for i in infos]
    assert types == ["Reshape", "Conv2D", "AddV2", "Relu", "MaxPool", "Conv2D", "AddV2",
                     "Relu", "MaxPool", "Reshape", "MatMul", "AddV2", "Relu", "MatMul",
                     "AddV2", "Softmax"]  # fmt: skip
    names = [i.name for i in infos]
    assert net.h_conv1.op.name in names and net.y_conv.op.name == names[-1]
    assert adapter.output_layer().name == net.y_conv.op.name
    # Labels, the loss, its gradients and Adam's updates need y_: none is a layer.
    assert not [n for n in names if "gradients" in n or "Adam" in n]
    assert adapter.spec.shape == (1, 28, 28)  # from the graph's reshape to [-1, 28, 28, 1]
    conv = adapter.layer(net.h_conv1.op.inputs[0].op.inputs[0].op.name)
    assert conv.has_filters and conv.output_shape == (8, 28, 28)
    assert conv.param_shapes == {"kernel": (5, 5, 1, 8)}
    assert infos[-1].output_shape == (10,)


def test_filters_are_the_session_kernel_transposed(net: TF1Net) -> None:
    adapter = load(net)
    expected = net.session.run(net.W_conv1).transpose(3, 2, 0, 1)
    conv = adapter.conv_layers()[0].name
    np.testing.assert_array_equal(cw.filters(adapter, conv), expected)
    # Also by the kernel's variable name, as tf.trainable_variables() lists it.
    np.testing.assert_array_equal(adapter.filters(net.W_conv1.op.name), expected)
    np.testing.assert_array_equal(cw.filters(adapter, net.W_conv1.name), expected)
    assert cw.render_filters(adapter, net.W_conv1.name).width > 0


def test_activations_equal_sess_run_for_the_same_image(net: TF1Net) -> None:
    adapter = load(net)
    images = digits()
    names = [net.h_conv1.op.name, net.h_conv2.op.name, net.y_conv.op.name]
    acts = adapter.activations(images, names)
    # The same graph, the same kernels on the same CPU: equal up to oneDNN's choice of
    # kernel for a differently built graph (float rounding of sums of 25-400 products).
    for name, tensor in zip(names, (net.h_conv1, net.h_conv2, net.y_conv), strict=True):
        expected = run(net, tensor, images)
        if expected.ndim == 4:
            expected = expected.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(acts[name], expected, rtol=1e-5, atol=1e-6)


def test_the_session_graph_and_variables_are_untouched(net: TF1Net) -> None:
    before = graph_state(net)
    adapter = load(net)
    snap = adapter.snapshot()
    adapter.layers()
    adapter.filters(adapter.conv_layers()[1].name)
    adapter.activations(digits(2))
    adapter.layer_inputs(digits(1), [adapter.conv_layers()[0].name])
    with pytest.raises(ValueError):
        adapter.filters("MaxPool")
    assert graph_state(net) == before
    assert adapter.same_state(snap, adapter.snapshot())
    # ... and the session still trains as before.
    feed = {net.x: digits(2).reshape(2, 784), net.y_: np.eye(10)[[1, 2]]}
    if net.keep_prob is not None:
        feed[net.keep_prob] = 0.5
    net.session.run(net.train_step, feed)
    assert not adapter.same_state(snap, adapter.snapshot())  # the snapshot sees a change


def test_a_frozen_pb_of_the_session_gives_the_same_layers_and_values(
    seed003: TF1Net, tmp_path: Path
) -> None:
    net = seed003
    # Frozen as Lucid-era tools did: graph_util on the session, written as a binary GraphDef.
    frozen = v1.graph_util.convert_variables_to_constants(
        net.session, net.graph.as_graph_def(), [net.y_conv.op.name]
    )
    path = tmp_path / "frozen.pb"
    path.write_bytes(frozen.SerializeToString())
    from_file = cw.adapt(
        str(path), feed=None if net.keep_prob is None else {net.keep_prob.op.name: 1.0}
    )
    from_session = load(net)
    assert [(i.name, i.type) for i in from_file.layers()] == [
        (i.name, i.type) for i in from_session.layers()
    ]
    images = digits()
    a, b = from_file.activations(images), from_session.activations(images)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(from_file.filters(1), from_session.filters(1))
    before = from_file.snapshot()
    from_file.activations(images)
    assert from_file.same_state(before, from_file.snapshot())


# -- SavedModels, frozen functions, tf.Module: a Keras twin as the oracle -------------------
def keras_twin() -> keras.Model:
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(4, 1, padding="same", name="mix"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(5, activation="softmax", name="fc"),
        ]
    )
    bn = model.get_layer("bn")  # moving statistics other than 0/1, so BN is no identity
    bn.moving_mean.assign(np.linspace(-0.2, 0.3, 6).astype(np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 6).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path, Path]:
    """The Keras model, its SavedModel directory and a frozen .pb of its serving function."""
    from tensorflow.python.framework import convert_to_constants

    model = keras_twin()
    directory = tmp_path_factory.mktemp("twin") / "saved"
    model.export(str(directory), verbose=False)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, 16, 16, 3], tf.float32)
    )
    frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    pb = directory.parent / "frozen.pb"
    pb.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return model, directory, pb


def graph_op_of(adapter: TFGraphAdapter, keras_name: str) -> str:
    """The last graph layer inside the Keras layer's name scope (``.../conv_1/Relu``)."""
    scope = re.compile(rf"(^|/){keras_name}(_\d+)?/")
    return [i.name for i in adapter.layers() if scope.search(i.name)][-1]


@pytest.mark.parametrize("form", ["savedmodel", "pb", "function"])
def test_every_keras_layer_equals_the_graph_layer_that_computes_it(
    twin: tuple[keras.Model, Path, Path], form: str
) -> None:
    model, directory, pb = twin
    spec = tf.TensorSpec([None, 16, 16, 3], tf.float32)
    source = {
        "savedmodel": str(directory),
        "pb": pb,
        "function": tf.function(lambda x: model(x, training=False), input_signature=[spec]),
    }[form]
    graph = cw.adapt(source)
    before = graph.snapshot()
    assert graph.spec.shape == (3, 16, 16)
    assert graph.output_layer().type == "Softmax"
    keras_adapter = cw.adapt(model)
    images = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    names = [layer.name for layer in model.layers]
    expected = keras_adapter.activations(images, names)
    got = graph.activations(images, [graph_op_of(graph, n) for n in names])
    for name in names:
        np.testing.assert_allclose(got[graph_op_of(graph, name)], expected[name], atol=1e-5)
    conv = graph_op_of(graph, "conv").rsplit("/", 1)[0]
    kernel_op = next(i.name for i in graph.conv_layers() if i.name.startswith(conv))
    np.testing.assert_array_equal(graph.filters(kernel_op), keras_adapter.filters("conv"))
    depthwise = next(i for i in graph.conv_layers() if i.type == "DepthwiseConv2dNative")
    np.testing.assert_array_equal(graph.filters(depthwise.name), keras_adapter.filters("dw"))
    assert graph.conv_config(depthwise.name) == keras_adapter.conv_config("dw")
    assert graph.same_state(before, graph.snapshot())  # the files / the function's variables


def test_a_tf_module_with_a_signature_and_its_variables_untouched() -> None:
    class Edges(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 1, 2], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, 12, 12, 1], tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "SAME"))

    module = Edges()
    before = module.kernel.numpy().copy()
    adapter = cw.adapt(module)
    assert [(i.name, i.type) for i in adapter.layers()] == [("Conv2D", "Conv2D"), ("Relu", "Relu")]
    image = np.random.default_rng(1).random((1, 1, 12, 12), dtype=np.float32)
    expected = module(tf.constant(image.transpose(0, 2, 3, 1))).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(adapter.activations(image, ["Relu"])["Relu"], expected, atol=1e-6)
    np.testing.assert_array_equal(adapter.filters(0), before.transpose(3, 2, 0, 1))
    snap = adapter.snapshot()
    adapter.activations(image)
    assert adapter.same_state(snap, adapter.snapshot())
    np.testing.assert_array_equal(module.kernel.numpy(), before)
    assert module.kernel.trainable


# -- the private TensorFlow functions we freeze with -----------------------------------------
def test_the_private_freezing_functions_are_where_we_call_them() -> None:
    """Fails loudly on a TensorFlow release that moves or renames them: freezing a session
    and a function both go through tensorflow.python.framework.convert_to_constants."""
    import inspect

    from tensorflow.python.framework import convert_to_constants

    session_freeze = convert_to_constants.convert_variables_to_constants_from_session_graph
    assert list(inspect.signature(session_freeze).parameters)[:3] == [
        "session", "graph_def", "output_node_names"
    ]  # fmt: skip
    assert (
        "func"
        in inspect.signature(convert_to_constants.convert_variables_to_constants_v2).parameters
    )


# -- bad input --------------------------------------------------------------------------------
def small_session(placeholders: dict[str, object], initialize: bool = True) -> object:
    graph = tf.Graph()
    with graph.as_default():
        inputs = {n: v1.placeholder(d, [None, 8, 8, 1], name=n) for n, d in placeholders.items()}
        kernel = v1.Variable(tf.ones([3, 3, 1, 2]), name="kernel")
        x = tf.cast(next(iter(inputs.values())), tf.float32)
        for other in list(inputs.values())[1:]:
            x = x + tf.cast(other, tf.float32)
        tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"), name="relu")
        session = v1.Session(graph=graph)
        if initialize:
            session.run(v1.global_variables_initializer())
    return session


BAD_INPUT = {
    "no float placeholder": (lambda: small_session({"ids": tf.int32}), {},
                             r"no float placeholder.*'ids'"),
    "several placeholders": (lambda: small_session({"a": tf.float32, "b": tf.float32}), {},
                             r"several: 'a', 'b'.*input="),
    "input no op": (lambda: small_session({"image": tf.float32}), {"input": "imag"},
                    r"input='imag' is no operation.*Did you mean 'image'"),
    "output no op": (lambda: small_session({"image": tf.float32}), {"output": "rel"},
                     r"output='rel' is no operation.*'relu'"),
    "input not a placeholder": (lambda: small_session({"image": tf.float32}),
                                {"input": "relu"}, r"Relu operation, not a placeholder.*'image'"),
    "uninitialized": (lambda: small_session({"image": tf.float32}, initialize=False), {},
                      r"not all initialized"),
    "not a graph": (lambda: 42, {}, r"expected a tf.compat.v1.Session.*got builtins.int"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_sources_get_a_clear_message(case: str) -> None:
    build, kwargs, message = BAD_INPUT[case]
    error = TypeError if case == "not a graph" else ValueError
    with pytest.raises(error, match=message):
        cw.load_tf_graph(build(), **kwargs)


def test_filters_of_an_op_without_a_kernel_name_the_layers_that_have_one() -> None:
    adapter = cw.load_tf_graph(small_session({"image": tf.float32}))
    with pytest.raises(ValueError, match=r"'relu' is a Relu layer.*Layers with filters: 'Conv2D'"):
        adapter.filters("relu")
    with pytest.raises(
        ValueError,
        match=r"'image' is a Placeholder operation of the graph, neither a layer nor a kernel",
    ):
        adapter.filters("image")
    with pytest.raises(ValueError, match=r"no layer named 'Conv2d'.*Did you mean 'Conv2D'"):
        adapter.filters("Conv2d")


def test_a_missing_signature_lists_the_signatures(twin: tuple[keras.Model, Path, Path]) -> None:
    with pytest.raises(ValueError, match=r"no signature 'predict'; signatures: 'serve', "):
        cw.load_tf_graph(twin[1], signature="predict")


def test_files_that_are_no_graph_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff\xfe not a protobuf at all")
    with pytest.raises(ValueError, match=r"is not a binary GraphDef"):
        cw.load_tf_graph(junk)
    with pytest.raises(ValueError, match=r"no file or SavedModel directory"):
        cw.load_tf_graph(tmp_path / "missing.pb")


def test_control_flow_on_the_way_to_the_output_is_refused() -> None:
    kernel = tf.Variable(tf.ones([3, 3, 1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
    def branching(x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, kernel, 1, "SAME")
        return tf.cond(tf.reduce_mean(x) > 0.5, lambda: tf.nn.relu(y), lambda: tf.nn.relu6(y))

    with pytest.raises(
        ValueError, match=r"with control flow \(.*\), which cannot be split into layers"
    ):
        cw.load_tf_graph(branching)


def test_a_flat_input_needs_an_image_shape_of_as_many_values() -> None:
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 64], name="x")
        w = v1.Variable(tf.ones([64, 3]))
        tf.nn.softmax(tf.matmul(x, w))
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    with pytest.raises(ValueError, match=r"shape \(None, 64\), not an image.*C\*H\*W = 64"):
        cw.load_tf_graph(session)
    with pytest.raises(ValueError, match=r"input_shape=\(1, 8, 9\) has 72 values.*takes 64"):
        cw.load_tf_graph(session, input_shape=(1, 8, 9))
    adapter = cw.load_tf_graph(session, input_shape=(1, 8, 8))
    image = np.random.default_rng(2).random((1, 1, 8, 8), dtype=np.float32)
    expected = session.run("Softmax:0", {x: image.reshape(1, 64)})
    np.testing.assert_allclose(adapter.activations(image, [-1])["Softmax"], expected, atol=1e-6)


def test_graph_keywords_are_refused_for_other_models() -> None:
    with pytest.raises(TypeError, match=r"feed= apply to TensorFlow graphs"):
        cw.adapt(keras_twin(), feed={"keep_prob": 1.0})


# -- feature visualization through the Keras backend's TensorFlow code ------------------------
def test_feature_viz_raises_its_channel_above_noise_and_gray(seed003: TF1Net) -> None:
    adapter = load(seed003)
    before, graph_before = adapter.snapshot(), graph_state(seed003)
    layer = seed003.h_conv2.op.name
    channels = [0, 3]
    # The channel objective: what this test checks is its activation. The default "auto"
    # subtracts a soft maximum of the layer (trading some of the channel's activation for
    # being the layer's most active channel), which on this barely trained net, 32 steps,
    # leaves channel 0 at 1.1x noise instead of the 1.5x asked here.
    images = cw.feature_viz(adapter, layer, channels, steps=32, seed=0, objective="channel")
    assert images.shape == (2, 28, 28, 1)
    reached = adapter.activations(images.transpose(0, 3, 1, 2), [layer])[layer]
    gray = adapter.activations(np.full((1, 1, 28, 28), 0.5, np.float32), [layer])[layer]
    noise = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    noisy = adapter.activations(noise, [layer])[layer]
    for k, channel in enumerate(channels):
        best_other = max(gray[0, channel].mean(), noisy[:, channel].mean(axis=(1, 2)).max())
        assert reached[k, channel].mean() > 1.5 * best_other, (channel, best_other)
    assert adapter.same_state(before, adapter.snapshot())
    assert graph_state(seed003) == graph_before


def test_the_class_objective_maximizes_the_logit_before_the_softmax(seed003: TF1Net) -> None:
    adapter = load(seed003)
    values: list[np.ndarray] = []
    images: list[np.ndarray] = []

    def record(step: int, batch: np.ndarray, value: np.ndarray) -> None:
        images.append(batch.copy())
        values.append(value.copy())

    # Without random views the model sees the image itself: step s+1's value is the logit
    # of the image the callback saw after step s.
    cw.feature_viz(adapter, None, [3], objective="class", steps=4, transforms=False,
                   callback=record)  # fmt: skip
    logits = seed003.y_conv.op.inputs[0]  # the add before tf.nn.softmax
    for step in range(3):
        expected = run(seed003, logits, images[step].transpose(0, 3, 1, 2))[:, 3]
        np.testing.assert_allclose(values[step + 1], expected, rtol=1e-4, atol=1e-5)


# -- the command line ---------------------------------------------------------------------------
def test_the_cli_opens_a_frozen_pb_and_a_saved_model(
    seed003: TF1Net, twin: tuple[keras.Model, Path, Path], tmp_path: Path, capsys: object
) -> None:
    from PIL import Image

    from cnn_widgets.__main__ import main

    net = seed003
    frozen = v1.graph_util.convert_variables_to_constants(
        net.session, net.graph.as_graph_def(), [net.y_conv.op.name]
    )
    pb = tmp_path / "seed003.pb"
    pb.write_bytes(frozen.SerializeToString())
    out = tmp_path / "conv.png"
    keep_prob = f"{net.keep_prob.op.name}=1.0"
    assert main(["render", "--model", str(pb), "--feed", keep_prob, "--layer", "Conv2D",
                 "--out", str(out), "--scale", "1"]) == 0  # fmt: skip
    with Image.open(out) as picture:
        assert picture.format == "PNG" and np.asarray(picture).std() > 0
    assert main(["layers", "--model", str(twin[1])]) == 0
    table = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "DepthwiseConv2dNative" in table and "Softmax" in table
    # Without keep_prob the output needs a placeholder that has no value: said in one line.
    assert main(["layers", "--model", str(pb)]) == 2
    assert "give them values with feed=" in capsys.readouterr().err  # type: ignore[attr-defined]
    assert main(["layers", "--model", "demo:lenet", "--feed", "a=1"]) == 2
    assert "--feed are for TensorFlow graphs" in capsys.readouterr().err  # type: ignore[attr-defined]


# -- the contract cases, through a tf.function of each Keras twin ------------------------------
# Left out, with reason: depthwise_grouped (Keras runs grouped convs through an XLA-compiled
# function freezing keeps whole: refused, see test_bad_sources...), dilated_strided (TensorFlow
# computes a dilated conv as SpaceToBatch -> Conv2D -> BatchToSpace, so the graph's Conv2D is
# an undilated conv on another tensor), conv1d_conv3d (conv1d is a Conv2D in the graph),
# never_runs (a graph has no layers that never run).
GRAPH_CASES = ["sequential", "residual", "branching", "bias_free", "grayscale", "nested"]


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_contract_cases_show_the_keras_convs_as_graph_convs(case: str) -> None:
    from tests.cases import keras_cases

    model, shape = keras_cases.CASES[case]()
    twin = cw.adapt(model, input_shape=shape)
    c, h, w = twin.spec.shape
    spec = tf.TensorSpec([None, h, w, c], tf.float32)
    graph = cw.adapt(tf.function(lambda x: model(x, training=False), input_signature=[spec]))
    keras_before, graph_before = twin.snapshot(), graph.snapshot()
    image = np.random.default_rng(3).random((1, c, h, w), dtype=np.float32)
    twin_convs, graph_convs = twin.conv_layers(), graph.conv_layers()
    assert len(twin_convs) == len(graph_convs)
    graph_acts = graph.activations(image, [i.name for i in graph_convs])
    twin_acts = twin.activations(image, [i.name for i in twin_convs])
    for k, g in zip(twin_convs, graph_convs, strict=True):
        np.testing.assert_array_equal(graph.filters(g.name), twin.filters(k.name))
        assert graph.conv_config(g.name) == twin.conv_config(k.name)
        assert g.output_shape == k.output_shape
        # The graph's Conv2D is the conv before its bias: compare without the bias.
        bias = twin.conv_bias(k.name)
        expected = twin_acts[k.name] - (0 if bias is None else bias[None, :, None, None])
        np.testing.assert_allclose(graph_acts[g.name], expected, atol=1e-5)
    assert twin.same_state(keras_before, twin.snapshot())
    assert graph.same_state(graph_before, graph.snapshot())


def test_a_function_freezing_keeps_whole_is_refused_with_its_name() -> None:
    from tests.cases import keras_cases

    model, _ = keras_cases.CASES["depthwise_grouped"]()  # Keras's grouped conv: XLA on CPU
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    with pytest.raises(ValueError, match=r"function calls TensorFlow does not inline \(.*grouped"):
        cw.adapt(tf.function(lambda x: model(x, training=False), input_signature=[spec]))


def test_adapting_again_keeps_the_graph_and_takes_new_labels(seed003: TF1Net) -> None:
    adapter = load(seed003)
    digits_named = [f"digit {k}" for k in range(10)]
    labelled = cw.adapt(adapter, labels=digits_named)
    assert isinstance(labelled, TFGraphAdapter) and labelled.source is seed003.session
    assert labelled.spec.labels == tuple(digits_named)
    assert [i.name for i in labelled.layers()] == [i.name for i in adapter.layers()]
    top = cw.top_classes(labelled, digits(1)[0], k=3)
    assert len(top) == 3 and all(label == digits_named[i] for i, label, _ in top)


def test_kernel_times_image_responses_sum_to_the_graph_conv(seed003: TF1Net) -> None:
    """filter_responses reads layer_inputs, conv_config and conv_bias: on a graph, the
    per-input-channel responses of the second conv add up to its Conv2D op (pre-bias)."""
    adapter = load(seed003)
    conv = adapter.conv_layers()[1].name
    image = digits(1)[0]
    response = cw.filter_responses(adapter, image, conv, channel=5)
    assert response.per_input.shape[0] == 8
    expected = adapter.activations(image[None], [conv])[conv][0, 5]
    np.testing.assert_allclose(response.total, expected, rtol=1e-4, atol=1e-4)


def test_an_interactive_session_opens_like_a_session() -> None:
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 6, 6, 1], name="x")
        kernel = v1.Variable(tf.reshape(tf.range(9, dtype=tf.float32), [3, 3, 1, 1]))
        tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID"), name="out")
        session = v1.InteractiveSession(graph=graph)  # the Deep MNIST tutorial's session
        try:
            session.run(v1.global_variables_initializer())
            adapter = cw.adapt(session)
            np.testing.assert_array_equal(
                adapter.filters("Conv2D")[0, 0], np.arange(9, dtype=np.float32).reshape(3, 3)
            )
            assert adapter.conv_config("Conv2D").padding == "valid"
            assert adapter.layer(-1).output_shape == (1, 4, 4)
        finally:
            session.close()


def test_an_input_without_a_shape_takes_the_shape_given(tmp_path: Path) -> None:
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, name="input")  # as Lucid-era frozen graphs declare it
        kernel = tf.constant(np.ones((3, 3, 3, 2), np.float32))
        tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"), name="out")
    path = tmp_path / "noshape.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(ValueError, match=r"'input' declares no shape; pass input_shape"):
        cw.load_tf_graph(path)
    adapter = cw.load_tf_graph(path, input_shape=(3, 10, 12))
    assert adapter.layer("out").output_shape == (2, 10, 12)
    image = np.random.default_rng(4).random((1, 3, 10, 12), dtype=np.float32)
    expected = np.maximum(image.sum(axis=1), 0)  # a 3x3 box sum of all channels, inside
    got = adapter.activations(image, ["out"])["out"][0, 0]
    box = sum(expected[0, dy : dy + 8, dx : dx + 10] for dy in range(3) for dx in range(3))
    np.testing.assert_allclose(got[1:-1, 1:-1], box, rtol=1e-5)


def test_the_explorer_shows_a_session_graph_and_leaves_it_untouched(seed003: TF1Net) -> None:
    adapter = load(seed003)
    before, graph_before = adapter.snapshot(), graph_state(seed003)
    viewer = cw.Explorer(adapter, digits(1)[0])  # the widget, through the same adapter
    viewer.layer = seed003.h_conv2.op.name
    viewer.wait()
    assert viewer.error == "" and len(viewer.grid) > 0
    viewer.layer = "Softmax"
    viewer.wait()
    assert viewer.error == ""
    assert adapter.same_state(before, adapter.snapshot())
    assert graph_state(seed003) == graph_before


@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated_gradients"])
def test_attribution_on_the_graph_agrees_with_the_keras_twin(
    twin: tuple[keras.Model, Path, Path], method: str
) -> None:
    # The same float32 computation (the graph is the twin's function frozen); TensorFlow may
    # fuse ops differently in a graph than eagerly, which moves the last bits, so the maps agree
    # to 1e-4 of their scale (equal here), for the predicted class (whose Grad-CAM is not 0).
    model, _, pb = twin
    graph, keras_adapter = cw.adapt(pb), cw.adapt(model)
    image = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    cam = method == "gradcam"
    before = graph.snapshot()
    ours = cw.attribution(graph, image, method=method, layer=graph_op_of(graph, "mix") if cam
                          else None)  # fmt: skip
    theirs = cw.attribution(keras_adapter, image, method=method, layer="mix" if cam else None)
    assert ours.target == theirs.target
    assert np.abs(theirs.map).max() > 0
    np.testing.assert_allclose(ours.map, theirs.map, atol=1e-4 * np.abs(theirs.map).max())
    np.testing.assert_allclose(ours.score, theirs.score, rtol=1e-5)
    assert graph.same_state(before, graph.snapshot())
