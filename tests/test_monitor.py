# ruff: noqa: F811  (the fixtures imported from tests.test_widgets are requested by name)
"""The training monitor: snapshots while a model trains, for torch and Keras.

Training runs are a few steps of tiny models on random data. The monitor must see every
``every``-th step, leave no hook or thread behind, and leave the training run itself exactly
as it would have been: same weights, same BatchNorm statistics, same random numbers.
"""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import torch
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.training import Recorder
from tests.test_widgets import make, recording_comms  # noqa: F401  (fixtures)

FRAMEWORKS = ("torch", "keras")


def torch_net() -> torch.nn.Module:
    """A conv with BatchNorm and Dropout: training changes BN statistics and draws numbers."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        OrderedDict(
            conv1=torch.nn.Conv2d(1, 4, 3, padding=1),
            bn=torch.nn.BatchNorm2d(4),
            relu=torch.nn.ReLU(),
            drop=torch.nn.Dropout(0.3),
            conv2=torch.nn.Conv2d(4, 6, 3),
            pool=torch.nn.AdaptiveAvgPool2d(1),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(6, 3),
        )
    )


def keras_net() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(name="relu"),
            keras.layers.Dropout(0.3, name="drop"),
            keras.layers.Conv2D(6, 3, name="conv2"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(3, name="fc"),
        ]
    )


DATA = np.random.default_rng(1).random((48, 12, 12), dtype=np.float32)
LABELS = np.random.default_rng(2).integers(0, 3, 48)
PROBE = [DATA[i] for i in range(3)]


def train_torch(model: torch.nn.Module, monitor: Any = None, steps: int = 6) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    x, y = torch.from_numpy(DATA[:, None]), torch.from_numpy(LABELS)
    torch.manual_seed(3)
    with monitor.watch(optimizer) if monitor is not None else _nothing():
        for step in range(steps):
            batch = slice(8 * step, 8 * step + 8)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.record(loss=loss)


def train_keras(model: keras.Model, monitor: Any = None, steps: int = 6) -> None:
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    keras.utils.set_random_seed(3)
    callbacks = [monitor.keras_callback()] if monitor is not None else []
    model.fit(
        DATA[: 8 * steps, ..., None],
        LABELS[: 8 * steps],
        batch_size=8,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None


def weights(model: Any) -> list[np.ndarray]:
    if isinstance(model, torch.nn.Module):
        return [t.detach().numpy().copy() for t in model.state_dict().values()]
    return [v.numpy().copy() for v in model.variables]


# --------------------------------------------------------------------------- recording


@pytest.mark.parametrize("every", [1, 2, 4])
def test_a_snapshot_every_every_steps_from_the_torch_hook(make: Callable, every: int) -> None:
    model = torch_net()
    monitor = make(cw.TrainingMonitor, cw.adapt(model, input_shape=(1, 12, 12)), PROBE, every=every)
    train_torch(model, monitor, steps=6)
    monitor.wait()
    history = monitor.frames("conv1")
    assert history["steps"].tolist() == [0, *range(every, 7, every)]  # step 0: before training
    assert history["filters"].shape == (len(history["steps"]), 4, 1, 3, 3)
    assert history["maps"].shape[1:] == (3, 4, 12, 12)
    assert monitor.recorder.steps == 6
    assert [step for step, _ in monitor.recorder.numbers["loss"]] == list(range(1, 7))


def test_a_snapshot_every_every_steps_from_the_keras_callback(make: Callable) -> None:
    model = keras_net()
    monitor = make(cw.TrainingMonitor, model, PROBE, every=2)
    train_keras(model, monitor, steps=6)
    monitor.wait()
    assert monitor.frames("conv2")["steps"].tolist() == [0, 2, 4, 6]
    assert len(monitor.recorder.numbers["loss"]) == 6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_manual_steps_record_numbers_and_snapshots(make: Callable, framework: str) -> None:
    model = torch_net() if framework == "torch" else keras_net()
    adapter = cw.adapt(model, input_shape=(1, 12, 12)) if framework == "torch" else model
    monitor = make(cw.TrainingMonitor, adapter, PROBE, layers=["conv2"], every=3)
    for step in range(7):
        monitor.step(loss=1.0 / (step + 1), accuracy=np.float32(step / 10))
    monitor.wait()
    assert monitor.frames()["steps"].tolist() == [0, 3, 6]
    assert monitor.recorder.numbers["accuracy"][-1] == (7, pytest.approx(0.6))
    assert [entry["name"] for entry in monitor.layers if "monitor" in entry["views"]] == ["conv2"]


# --------------------------------------------------------------------------- harmless


def test_torch_training_is_bit_identical_with_and_without_the_monitor(make: Callable) -> None:
    plain = torch_net()
    train_torch(plain)
    plain_rng = torch.get_rng_state()
    watched = torch_net()
    monitor = make(cw.TrainingMonitor, cw.adapt(watched, input_shape=(1, 12, 12)), PROBE, every=1)
    train_torch(watched, monitor)
    # Same weights, BatchNorm statistics and random-number state: the snapshots (an eval-mode
    # forward pass per step) drew nothing and updated nothing.
    for a, b in zip(weights(plain), weights(watched), strict=True):
        np.testing.assert_array_equal(a, b)
    assert torch.equal(plain_rng, torch.get_rng_state())
    assert watched.training and watched.drop.training


def test_keras_training_is_bit_identical_with_and_without_the_monitor(make: Callable) -> None:
    plain = keras_net()
    train_keras(plain)
    watched = keras_net()
    monitor = make(cw.TrainingMonitor, watched, PROBE, every=1)
    train_keras(watched, monitor)
    for a, b in zip(weights(plain), weights(watched), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_snapshot_leaves_batchnorm_statistics_of_a_training_model_alone(
    framework: str,
) -> None:
    if framework == "torch":
        model = torch_net().train()
        adapter = cw.adapt(model, input_shape=(1, 12, 12))
    else:
        model = keras_net()
        adapter = cw.adapt(model)
    before = adapter.snapshot()
    recorder = Recorder(adapter, PROBE, every=1)
    for _ in range(3):
        recorder.step()
    assert adapter.same_state(before, adapter.snapshot())
    if framework == "torch":
        assert model.training and model.bn.training


def test_the_optimizer_hook_is_removed_after_training_and_after_an_exception(
    make: Callable,
) -> None:
    model = torch_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = make(cw.TrainingMonitor, cw.adapt(model, input_shape=(1, 12, 12)), PROBE)
    with monitor.watch(optimizer):
        assert len(optimizer._optimizer_step_post_hooks) == 1
    assert len(optimizer._optimizer_step_post_hooks) == 0
    with pytest.raises(KeyboardInterrupt), monitor.watch(optimizer):
        raise KeyboardInterrupt
    assert len(optimizer._optimizer_step_post_hooks) == 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_closing_the_widget_stops_its_thread(make: Callable) -> None:
    model = torch_net()
    monitor = make(cw.TrainingMonitor, cw.adapt(model, input_shape=(1, 12, 12)), PROBE, every=1)
    train_torch(model, monitor, steps=2)
    monitor.wait()
    thread = monitor.monitor_lane.thread
    assert thread is not None and thread.is_alive()
    monitor.close()
    assert not thread.is_alive()


def test_keras_says_when_steps_per_execution_thins_the_batches(make: Callable) -> None:
    model = keras_net()
    monitor = make(cw.TrainingMonitor, model, PROBE, every=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=2)
    with pytest.warns(UserWarning, match="steps_per_execution=2.*one batch in 2"):
        model.fit(DATA[:16, ..., None], LABELS[:16], batch_size=4, verbose=0,
                  callbacks=[monitor.keras_callback()])
    assert monitor.recorder.steps == 2  # 4 batches, 2 callbacks


# --------------------------------------------------------------------------- the widget


def test_frames_reach_the_browser_and_a_late_view_gets_the_history(make: Callable) -> None:
    model = torch_net()
    monitor = make(
        cw.TrainingMonitor, cw.adapt(model, input_shape=(1, 12, 12)), PROBE, every=2, max_fps=1000
    )
    assert monitor.view == "monitor" and monitor.layer == "conv1"
    train_torch(model, monitor, steps=6)
    monitor.wait()
    meta = monitor.monitor_meta
    assert meta["step"] == 6 and set(meta["layers"]) == {"conv1", "conv2"}
    offset, length, width, height = meta["layers"]["conv1"]["filters"]
    with Image.open(io.BytesIO(monitor.monitor_frame[offset : offset + length])) as picture:
        assert picture.size == (width, height)
    assert sum(len(v) for v in meta["numbers"].values()) >= 1
    monitor.comm.clear()
    ask = {"method": "custom", "content": {"type": "history"}}
    monitor._handle_msg({"content": {"data": ask}, "buffers": []})
    frames = [m for m in monitor.comm.messages if m["data"].get("content", {}).get("type")]
    assert [m["data"]["content"]["meta"]["step"] for m in frames] == [0, 2, 4, 6]
    assert all(len(m["buffers"]) == 1 for m in frames)


def test_save_gif_animates_the_filters_at_a_readable_size(make: Callable, tmp_path: Path) -> None:
    model = torch_net()
    monitor = make(cw.TrainingMonitor, cw.adapt(model, input_shape=(1, 12, 12)), PROBE, every=2)
    train_torch(model, monitor, steps=6)
    path = monitor.save_gif(tmp_path / "conv1.gif", "conv1")
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        assert max(gif.size) >= 256
    with pytest.raises(ValueError, match="not monitored; monitored: 'conv1', 'conv2'"):
        monitor.save_gif(tmp_path / "x.gif", "fc")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(every=0), ValueError, "every must be an int >= 1, got 0"),
        (dict(layers=["conv9"]), ValueError, "no layer named 'conv9'"),
        (dict(probe=np.zeros(5)), ValueError, "expected one image"),
        (dict(max_fps=0), ValueError, "max_fps must be a number > 0"),
        (dict(history=0), ValueError, "history must be an int >= 1"),
    ],
)
def test_bad_arguments_fail_at_construction(
    make: Callable, kwargs: dict, error: type, message: str
) -> None:
    adapter = cw.adapt(torch_net(), input_shape=(1, 12, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=message):
            make(cw.TrainingMonitor, adapter, **({"probe": PROBE} | kwargs))
