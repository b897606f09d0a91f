# ruff: noqa: F811  (the fixtures imported from tests.test_widgets are requested by name)
"""The analyses in the widgets, without a kernel or a browser: kernel x image, the channel
health check and the strip of top-activating images.

The recording comm and the helpers of ``tests/test_widgets.py`` are reused: every message a
widget would send is kept, and browser input arrives through ``_handle_msg``. Work on the
worker threads is awaited with ``viewer.wait()``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import cnn_widgets as cw
import cnn_widgets.zoo as zoo
from cnn_widgets.backends import Adapter
from cnn_widgets.widgets import ActivationViewer, Explorer, FilterViewer
from tests.test_widgets import (  # noqa: F401  (fixtures are found by name)
    PNG_SIGNATURE,
    digit,
    from_browser,
    lenet,
    lenet_keras,
    lenet_torch,
    make,
    png_size,
    recording_comms,
    sent,
)

KERNEL = "kernel x image"
DIGITS = [zoo.sample_image(f"digit{d}") for d in range(10)]


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


@pytest.fixture
def faulty() -> Adapter:
    """A fresh LeNet whose conv1 filter 3 is zeroed, weights and bias: a dead filter."""
    adapter = zoo.load("lenet", framework="torch")
    with torch.no_grad():
        adapter.model.conv1.weight[3] = 0.0
        adapter.model.conv1.bias[3] = 0.0
    return adapter


# --------------------------------------------------------------------------- kernel x image


def test_kernel_x_image_tiles_each_input_channel_and_shows_their_sum_as_detail(
    make: Callable, lenet: Adapter
) -> None:
    viewer = make(Explorer, lenet, digit(3), layer="conv2", channel=5)
    viewer.activation_mode = KERNEL
    viewer.wait()
    expected = cw.filter_responses(lenet, digit(3), "conv2", 5)
    meta = viewer.grid_meta
    assert (viewer.error, viewer.status) == ("", "idle")
    assert meta["mode"] == KERNEL
    assert (meta["shown"], meta["inputs"], meta["channel"]) == (8, 8, 5)
    assert meta["input_channels"] == list(range(8))
    assert meta["text"] == "filter 5 × 8 input channels"
    # Tiles are input channels: no layout, so a click cannot select one as an output channel.
    assert viewer.grid_layout == {}
    assert png_size(viewer.grid) == (meta["width"], meta["height"]) == (32, 32)  # 3x3 of 10
    # The detail is the sum: the filter's output before the bias.
    assert png_size(viewer.detail) == (10, 10)
    stats = viewer.detail_stats
    assert stats["sum_of"] == 8
    assert stats["bias"] == pytest.approx(expected.bias)
    assert stats["min"] == pytest.approx(float(expected.total.min()), rel=1e-5)
    assert stats["max"] == pytest.approx(float(expected.total.max()), rel=1e-5)


def test_kernel_x_image_follows_the_channel_and_is_cached_per_image_layer_and_channel(
    make: Callable, lenet_torch: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    original = lenet_torch.layer_inputs

    def counting(batch: np.ndarray, layers: Any) -> Any:
        calls.append(list(layers))
        return original(batch, layers)

    monkeypatch.setattr(lenet_torch, "layer_inputs", counting)
    viewer = make(ActivationViewer, lenet_torch, digit(3), layer="conv2", activation_mode=KERNEL)
    first = viewer.grid
    viewer.channel = 6  # on the same page: still the whole grid changes (another filter)
    viewer.wait()
    assert viewer.grid != first
    assert viewer.grid_meta["channel"] == 6
    assert len(calls) == 2
    viewer.channel = 0
    viewer.wait()
    assert viewer.grid == first
    assert len(calls) == 2  # from the cache
    viewer.image = digit(4)  # another image: computed anew
    viewer.wait()
    assert len(calls) == 3


def test_kernel_x_image_of_a_layer_with_many_inputs_shows_the_first_page_size(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="conv2", page_size=3)
    viewer.activation_mode = KERNEL
    viewer.wait()
    assert viewer.grid_meta["shown"] == 3
    assert viewer.grid_meta["input_channels"] == [0, 1, 2]
    assert viewer.grid_meta["text"] == "filter 0 × 3 of 8 input channels"


def test_kernel_x_image_on_a_layer_without_filters_says_so_and_the_widget_keeps_working(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="conv2", activation_mode=KERNEL)
    viewer.comm.clear()
    from_browser(viewer, layer="relu2")
    viewer.wait()
    assert viewer.layer == "relu2"
    assert viewer.error.startswith("Explorer: kernel x image needs a convolution")
    assert "'relu2' is a ReLU" in viewer.error and "'conv1', 'conv2'" in viewer.error
    assert viewer.status == "kernel x image: not a conv layer"
    assert viewer.grid == b""  # no picture of another layer under this layer's name
    assert sent(viewer)["error"] == viewer.error
    from_browser(viewer, layer="conv1")
    viewer.wait()
    assert (viewer.error, viewer.status) == ("", "idle")
    assert viewer.grid_meta["text"] == "filter 0 × 1 input channel"


def test_kernel_x_image_of_a_vector_layer_keeps_the_vector_view(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="fc2", activation_mode=KERNEL)
    assert viewer.error == ""
    assert viewer.grid_meta["mode"] == "probabilities"


def test_activation_mode_kernel_x_image_is_writable_from_the_browser(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="conv1")
    from_browser(viewer, activation_mode=KERNEL)
    viewer.wait()
    assert viewer.activation_mode == KERNEL
    assert viewer.grid_meta["mode"] == KERNEL


# --------------------------------------------------------------------------- health


def test_check_health_marks_the_planted_dead_filter_and_follows_the_layer(
    make: Callable, faulty: Adapter
) -> None:
    viewer = make(Explorer, faulty, digit(3), layer="conv1")
    viewer.check_health()
    viewer.wait()
    assert viewer.error == ""
    assert viewer.health_running is False
    assert viewer.health_flags == {"3": ["dead_filter", "dead_channel"]}
    rows = viewer.health_findings
    assert [(r["channel"], r["label"]) for r in rows] == [(3, "dead filter"), (3, "dead channel")]
    assert "weights are all (near) zero" in rows[0]["message"]
    # The current digit, the gray photo "camera" and the ten bundled digits.
    assert viewer.health_summary.startswith("1 flagged channel in 'conv1' · ")
    assert "12 image(s), the current image and matching samples" in viewer.health_summary
    # The report covers every conv layer: a layer change shows that layer's marks at once.
    viewer.layer = "relu2"
    assert viewer.health_flags == {str(c): ["dead_channel"] for c in (4, 6, 9, 10)}
    assert viewer.health_findings[0]["where"] == "relu2"
    viewer.layer = "pool1"
    assert (viewer.health_flags, viewer.health_findings) == ({}, [])
    assert viewer.health_summary.startswith("'pool1' is not a conv layer")


def test_check_health_button_in_the_browser_runs_the_check(make: Callable, faulty: Adapter) -> None:
    viewer = make(FilterViewer, faulty)
    viewer.comm.clear()
    from_browser(viewer, health_run=1)
    viewer.wait()
    assert viewer.health_flags == {"3": ["dead_filter", "dead_channel"]}
    state = sent(viewer)
    assert state["health_flags"] == {"3": ["dead_filter", "dead_channel"]}
    assert state["health_running"] is False
    from_browser(viewer, health_flags={"0": ["forged"]})  # read-only for the browser
    assert viewer.health_flags == {"3": ["dead_filter", "dead_channel"]}


def test_check_health_uses_the_images_when_set_and_new_images_clear_the_old_report(
    make: Callable, faulty: Adapter
) -> None:
    viewer = make(Explorer, faulty, digit(3), layer="conv2")
    viewer.images = DIGITS[:4]
    viewer.check_health()
    viewer.wait()
    assert "(4 image(s), the images set in .images)" in viewer.health_summary
    viewer.images = DIGITS
    assert (viewer.health_flags, viewer.health_findings, viewer.health_summary) == ({}, [], "")


# --------------------------------------------------------------------------- images


def test_images_accepts_a_list_an_array_and_a_folder(
    make: Callable, lenet_torch: Adapter, tmp_path: Path
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3))
    assert (viewer.images, viewer.images_count) == (None, 0)
    viewer.images = DIGITS
    assert viewer.images_count == 10
    viewer.images = np.stack(DIGITS[:5])
    assert viewer.images_count == 5
    for d in range(3):
        Image.fromarray(DIGITS[d]).save(tmp_path / f"{d}.png")
    viewer.images = tmp_path
    assert viewer.images_count == 3
    assert viewer.images.folder == tmp_path
    viewer.images = (digit for digit in DIGITS[:2])  # a generator is read into a list
    assert viewer.images_count == 2
    assert sent(viewer)["images_count"] == 2
    viewer.images = None
    assert (viewer.images, viewer.images_count) == (None, 0)
    assert viewer.error == ""


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "the image set is empty"),
        (42, "images must be a folder path"),
        (np.zeros(5), "an image array must be"),
        ("/no/such/folder", "no image file"),
        ([np.zeros(7)], "expected one image"),
    ],
)
def test_bad_images_land_in_error_and_the_previous_set_is_kept(
    make: Callable, lenet_torch: Adapter, bad: Any, message: str
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3))
    viewer.images = DIGITS[:4]
    kept = viewer.images
    viewer.images = bad
    assert viewer.images is kept
    assert viewer.images_count == 4
    assert viewer.error.startswith("Explorer: ")
    assert message in viewer.error


# --------------------------------------------------------------------------- top images


def test_top_images_strip_shows_the_best_images_of_the_selected_channel_with_scores(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="conv2", channel=3)
    assert (viewer.top_strip, viewer.top_meta) == (b"", {})  # no images: no strip
    viewer.comm.clear()
    viewer.images = DIGITS
    viewer.wait()
    expected = cw.top_images(lenet_torch, "conv2", 3, DIGITS, k=9, progress=False)
    meta = viewer.top_meta
    assert (meta["state"], meta["layer"], meta["channel"]) == ("done", "conv2", 3)
    assert (meta["k"], meta["images"], meta["count"]) == (9, 10, 9)
    assert meta["scores"] == pytest.approx(expected.scores.tolist())
    assert meta["scores"] == sorted(meta["scores"], reverse=True)
    assert meta["indices"] == expected.indices.tolist()
    assert viewer.top_format == "png"
    assert viewer.top_strip.startswith(PNG_SIGNATURE)
    assert png_size(viewer.top_strip) == (meta["width"], meta["height"])
    # The first tile is the best crop; gaps are transparent.
    strip = pixels(viewer.top_strip)
    best = (expected.images[0, ..., 0] * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(strip[: meta["tile_h"], : meta["tile_w"], 0], best)
    assert strip[0, meta["tile_w"], 3] == 0
    # The strip travels as a binary buffer, not base64 in JSON.
    with_strip = [u for u in viewer.comm.updates() if ["top_strip"] in u["buffer_paths"]]
    assert with_strip and all("top_strip" not in u["state"] for u in with_strip)


def test_top_images_follow_the_selection_and_are_cached_per_layer_and_channel(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="conv2", channel=3)
    viewer.images = DIGITS[:5]
    viewer.wait()
    first = viewer.top_strip
    assert viewer.top_meta["k"] == 5  # min(9, N)
    viewer.channel = 4
    viewer.wait()
    assert viewer.top_meta["channel"] == 4
    assert viewer.top_strip != first
    viewer.layer = "conv1"
    viewer.wait()
    assert (viewer.top_meta["layer"], viewer.top_meta["channel"]) == ("conv1", 4)
    calls = viewer.top_images_lane.started
    viewer.layer = "conv2"
    viewer.channel = 3
    viewer.wait()
    assert viewer.top_strip == first
    assert viewer.top_images_lane.started == calls  # both from the cache
    viewer.view = "featureviz"  # beside the feature visualization too
    viewer.channel = 5
    viewer.wait()
    assert viewer.top_meta["channel"] == 5


def test_without_images_nothing_is_ranked(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(3), layer="conv2")
    viewer.channel = 4
    viewer.wait()
    assert viewer.top_images_lane.started == 0
    viewer.images = DIGITS[:3]
    viewer.wait()
    assert viewer.top_images_lane.started == 1
    viewer.images = None
    assert (viewer.top_strip, viewer.top_meta) == (b"", {})


# --------------------------------------------------------------------------- never harm


def test_the_analyses_in_the_widget_leave_the_model_unchanged(
    make: Callable, faulty: Adapter
) -> None:
    faulty.model.train()  # a mode the widget must switch off and restore
    before = faulty.snapshot()
    viewer = make(Explorer, faulty, digit(3), layer="conv2", activation_mode=KERNEL)
    viewer.images = DIGITS[:4]
    viewer.check_health()
    viewer.channel = 7
    viewer.wait()
    assert viewer.error == ""
    assert faulty.same_state(before, faulty.snapshot())
    assert faulty.model.training
