"""The seeds' TensorFlow-1 networks, written as the articles write them (placeholders,
variables, ``tf.nn`` ops, a session), for the graph backend's tests.

Seeds 000 and 003 both build the "Deep MNIST" tutorial net: ``x`` a ``[None, 784]``
placeholder reshaped to 28x28, two 5x5 conv + ReLU + 2x2 max-pool blocks, a 1024-unit dense
layer and a softmax; seed 003 puts dropout (a ``keep_prob`` placeholder) before the last
layer. Here the widths are smaller (8/16/64) so a few training steps take a fraction of a
second; the graph's structure is the articles'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1


@dataclass
class TF1Net:
    session: Any
    graph: Any
    x: Any
    keep_prob: Any | None
    W_conv1: Any
    h_conv1: Any
    h_conv2: Any
    y_conv: Any
    train_step: Any
    y_: Any


def deep_mnist(dropout: bool, steps: int = 5, seed: int = 0) -> TF1Net:
    """Build and train (``steps`` Adam steps on the MNIST subset) the seeds' net."""
    from cnn_widgets.zoo.lenet import mnist_5k

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)

        def weight_variable(shape: list[int]) -> Any:
            return v1.Variable(v1.truncated_normal(shape, stddev=0.1))

        def bias_variable(shape: list[int]) -> Any:
            return v1.Variable(tf.constant(0.1, shape=shape))

        def conv2d(x: Any, W: Any) -> Any:
            return tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding="SAME")

        def max_pool_2x2(x: Any) -> Any:
            return v1.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")

        x = v1.placeholder(tf.float32, shape=[None, 784])
        y_ = v1.placeholder(tf.float32, shape=[None, 10])
        W_conv1 = weight_variable([5, 5, 1, 8])
        b_conv1 = bias_variable([8])
        x_image = tf.reshape(x, [-1, 28, 28, 1])
        h_conv1 = tf.nn.relu(conv2d(x_image, W_conv1) + b_conv1)
        h_pool1 = max_pool_2x2(h_conv1)
        W_conv2 = weight_variable([5, 5, 8, 16])
        b_conv2 = bias_variable([16])
        h_conv2 = tf.nn.relu(conv2d(h_pool1, W_conv2) + b_conv2)
        h_pool2 = max_pool_2x2(h_conv2)
        W_fc1 = weight_variable([7 * 7 * 16, 64])
        b_fc1 = bias_variable([64])
        h_pool2_flat = tf.reshape(h_pool2, [-1, 7 * 7 * 16])
        h_fc1 = tf.nn.relu(tf.matmul(h_pool2_flat, W_fc1) + b_fc1)
        keep_prob = v1.placeholder(tf.float32) if dropout else None
        h_fc1_drop = v1.nn.dropout(h_fc1, keep_prob) if dropout else h_fc1
        W_fc2 = weight_variable([64, 10])
        b_fc2 = bias_variable([10])
        y_conv = tf.nn.softmax(tf.matmul(h_fc1_drop, W_fc2) + b_fc2)
        cross_entropy = tf.reduce_mean(-tf.reduce_sum(y_ * v1.log(y_conv + 1e-9), axis=[1]))
        train_step = v1.train.AdamOptimizer(1e-3).minimize(cross_entropy)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    images, labels = mnist_5k()
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pick = rng.choice(len(images), 50, replace=False)
        feed = {x: images[pick].reshape(-1, 784) / 255.0, y_: np.eye(10)[labels[pick]]}
        if dropout:
            feed[keep_prob] = 0.5
        session.run(train_step, feed)
    return TF1Net(session, graph, x, keep_prob, W_conv1, h_conv1, h_conv2, y_conv,
                  train_step, y_)  # fmt: skip


def graph_state(net: TF1Net) -> tuple[Any, ...]:
    """The graph's operations and every variable's value, read with the user's own means."""
    ops = tuple((op.name, op.type) for op in net.graph.get_operations())
    variables = net.graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
    values = net.session.run(variables)
    return ops, tuple(np.asarray(v).tobytes() for v in values)
