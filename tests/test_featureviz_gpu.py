"""Feature visualization on a GPU: torch ``.to("cuda")`` and Keras on a GPU device. Each test
is skipped, with the reason in the test report, where no such device is visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz
from tests.test_featureviz_fold import conv_bn_model


# -- on a GPU --------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_feature_viz_runs_on_a_cuda_model_folded_and_leaves_it_there() -> None:
    model = conv_bn_model().cuda()
    adapter = cw.adapt(model, input_shape=(3, 16, 16))
    before = adapter.snapshot()
    images, frames = feature_viz(
        adapter, "relu2", [0, 1, 1], steps=8, size=16, objective="diversity", record_every=4
    )
    assert isinstance(images, np.ndarray) and images.shape == (3, 16, 16, 3)
    assert frames.shape == (2, 3, 16, 16, 3)
    np.testing.assert_array_equal(frames[-1], images)
    assert adapter.same_state(before, adapter.snapshot())
    assert all(p.device.type == "cuda" for p in model.parameters())
    # The same run on the CPU: the same pictures up to float rounding amplified by Adam.
    cpu = feature_viz(
        cw.adapt(conv_bn_model(), input_shape=(3, 16, 16)),
        "relu2",
        [0, 1, 1],
        steps=8,
        size=16,
        objective="diversity",
    )
    assert np.abs(images - cpu).mean() < 0.02


def _keras_gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


@pytest.mark.skipif(not _keras_gpus(), reason="needs a GPU visible to TensorFlow (none here)")
def test_feature_viz_runs_a_keras_model_on_the_gpu() -> None:
    import tensorflow as tf

    with tf.device("/GPU:0"):
        lenet = cw.zoo.load("lenet", "keras")
        before = lenet.snapshot()
        images = feature_viz(lenet, "conv2", [0, 1], steps=8)
    assert images.shape == (2, 28, 28, 1) and np.isfinite(images).all()
    assert lenet.same_state(before, lenet.snapshot())
