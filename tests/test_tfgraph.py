"""TensorFlow graphs (a TF1 session, a frozen .pb, a SavedModel, a tf.function) opened like a
Keras model: layers, filters and activations exact against the graph's own ``sess.run``, and
the user's graph and variables untouched."""

from __future__ import annotations

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
    np.testing.assert_array_equal(adapter.filters(net.W_conv1.name), expected)


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
