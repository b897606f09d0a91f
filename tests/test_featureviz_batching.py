"""Feature visualization (``cnn_widgets.featureviz``): determinism and batching, for torch
and Keras alike. The same seed gives the same images, an image does not depend on its batch
neighbours, and batch size changes a picture only by rounding; both frameworks draw the same
starts and random views. Split from tests/test_featureviz.py, whose fixtures it uses.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.featureviz import feature_viz
from tests.test_featureviz import FRAMEWORKS, Recorder, build


@pytest.fixture(autouse=True)
def _few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNN_WIDGETS_MAX_STEPS", "24")


# -- determinism and batching ----------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_same_seed_gives_the_same_images(framework: str) -> None:
    adapter = build(framework)
    first = feature_viz(adapter, "conv2", [0, 1, 2], steps=6, seed=3)
    again = feature_viz(adapter, "conv2", [0, 1, 2], steps=6, seed=3)
    other = feature_viz(adapter, "conv2", [0, 1, 2], steps=6, seed=4)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.01


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_image_does_not_depend_on_the_other_images_of_its_batch(framework: str) -> None:
    # Same batch layout, other neighbours: the kernels run the same sums in the same order,
    # so every image that is in both pages comes out bit for bit the same, on any CPU.
    adapter = build(framework)
    page = feature_viz(adapter, "conv2", [0, 1, 2, 3, 4], steps=8)
    other = feature_viz(adapter, "conv2", [0, 1, 2, 9, 4], steps=8)
    np.testing.assert_array_equal(page[[0, 1, 2, 4]], other[[0, 1, 2, 4]])
    assert np.abs(page[3] - other[3]).max() > 0.01


# Another batch size changes the order in which kernels sum floats (per CPU model and batch
# size), and Adam divides each step by the running gradient magnitude: a coefficient whose
# gradient is at rounding level steps by +lr or -lr depending on that order. Each such flip
# moves an image's pixels by a few thousandths (measured: at most 0.009 after 8 steps of
# 32-px images, mean 3e-4). What holds on any machine is "the same picture": on average
# below one grey level apart, no pixel by more than 0.05.
BATCHING_MEAN_TOLERANCE = 1.0 / 255.0
BATCHING_MAX_TOLERANCE = 0.05


def assert_same_pictures(actual: np.ndarray, expected: np.ndarray) -> None:
    difference = np.abs(actual - expected)
    per_image = difference.reshape(len(difference), -1).mean(axis=1)
    assert per_image.max() < BATCHING_MEAN_TOLERANCE, per_image
    assert difference.max() < BATCHING_MAX_TOLERANCE, difference.max()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_image_is_the_same_picture_in_any_batch_size(framework: str) -> None:
    # The plain channel objective: "auto" subtracts a soft maximum of the whole layer, which
    # on this random-weight model pulls the pictures of neighbouring channels towards the
    # same one within 8 steps (channels 3 and 4: 0.024 mean apart), so the "other channels
    # differ" check below would test the objective rather than the batching.
    adapter = build(framework)
    page = feature_viz(adapter, "conv2", [0, 1, 2, 3, 4], steps=8, objective="channel")
    chunked = feature_viz(
        adapter, "conv2", [0, 1, 2, 3, 4], steps=8, batch_size=2, objective="channel"
    )
    alone = feature_viz(adapter, "conv2", [3], steps=8, objective="channel")
    assert_same_pictures(chunked, page)
    assert_same_pictures(alone, page[3:4])
    # ... while other channels give other pictures (the tolerance is not blind).
    assert np.abs(page[3] - page[4]).mean() > 10 * BATCHING_MEAN_TOLERANCE


def test_both_frameworks_draw_the_same_start_and_views() -> None:
    # The bundled LeNet holds the same weights in both frameworks. With a vanishing learning
    # rate the images stay at their start, so every step's objective value is the model's
    # response to that step's random view of the same start: equal up to float rounding in
    # one forward pass (no optimizer amplifies it), on any CPU.
    runs = {}
    for framework in FRAMEWORKS:
        recorder = Recorder()
        images = feature_viz(
            cw.zoo.load("lenet", framework), "conv2", [0, 3], steps=6, lr=1e-9, callback=recorder
        )
        runs[framework] = (images, np.stack(recorder.values))
    (torch_images, torch_values), (keras_images, keras_values) = runs["torch"], runs["keras"]
    np.testing.assert_allclose(torch_images, keras_images, atol=1e-5)
    np.testing.assert_allclose(torch_values, keras_values, rtol=1e-4, atol=1e-5)
    assert len({tuple(v) for v in torch_values.round(4)}) > 1  # the views differ by step


def test_torch_on_cpu_chunks_by_its_own_budget_and_an_explicit_budget_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cnn_widgets.featureviz import loop, torch_impl

    sizes: list[int] = []
    start = torch_impl.Session.start

    def spy(self: torch_impl.Session, chunk: loop.ChunkSpec) -> object:
        sizes.append(chunk.size)
        return start(self, chunk)

    monkeypatch.setattr(torch_impl.Session, "start", spy)
    # The CPU budget is the general one today (512 MiB, measured); a smaller one shows that a
    # session's own budget is used.
    monkeypatch.setattr(torch_impl, "CPU_MEMORY_BUDGET", 256 * 2**20)
    per_image = 100 * 2**20  # 2 images fit the CPU budget (256 MiB), 5 the general one
    monkeypatch.setattr(loop, "estimate_bytes_per_image", lambda *args: per_image)
    adapter = build("torch")
    chunked = feature_viz(adapter, "conv2", [0, 1, 2, 3, 4], steps=4, objective="channel")
    assert sizes == [2, 1, 2]  # as even as possible
    sizes.clear()
    whole = feature_viz(
        adapter,
        "conv2",
        [0, 1, 2, 3, 4],
        steps=4,
        objective="channel",
        memory_budget=loop.DEFAULT_MEMORY_BUDGET,
    )
    assert sizes == [5]
    assert_same_pictures(chunked, whole)


@pytest.mark.parametrize("threads", [1, 0])
def test_keras_on_one_cpu_thread_chunks_by_its_own_budget(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One intra-op thread: the smaller budget (batches that stay in the core's cache);
    TensorFlow's default threads on this multi-core machine: the general one."""
    import tensorflow as tf

    from cnn_widgets.featureviz import keras_impl, loop

    sizes: list[int] = []
    start = keras_impl.Session.start

    def spy(self: keras_impl.Session, chunk: loop.ChunkSpec) -> object:
        sizes.append(chunk.size)
        return start(self, chunk)

    monkeypatch.setattr(keras_impl.Session, "start", spy)
    monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: threads)
    monkeypatch.setattr(keras_impl.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # no GPU
    # 2 images fit the one-thread budget (150 MiB), 8 the general one (512 MiB)
    monkeypatch.setattr(loop, "estimate_bytes_per_image", lambda *args: 60 * 2**20)
    images = feature_viz(build("keras"), "conv2", [0, 1, 2, 3, 4], steps=4, objective="channel")
    assert sizes == ([2, 1, 2] if threads == 1 else [5])
    assert images.shape[0] == 5
