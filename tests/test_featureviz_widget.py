# ruff: noqa: F811  (the fixtures imported from tests.test_widgets are requested by name)
"""Feature visualization in the widgets, without a kernel or a browser.

As in ``test_widgets.py`` the comm is a recording one and browser input goes through
``_handle_msg``. Runs are capped with ``CNN_WIDGETS_MAX_STEPS``; a wrapper around
``feature_viz`` pauses a run at a chosen step (through its callback) so that stopping and
superseding land at a known point, without sleeps or timing asserts.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import traitlets
from PIL import Image

import cnn_widgets.featureviz as featureviz
import cnn_widgets.zoo as zoo
from cnn_widgets.backends import Adapter
from cnn_widgets.widgets import Explorer, FeatureVisualizer
from cnn_widgets.widgets import featureviz as featureviz_panel
from cnn_widgets.widgets.fvframes import Throttle, fv_picture
from tests.test_widgets import (  # noqa: F401  (fixtures are found by name)
    PNG_SIGNATURE,
    RecordingComm,
    from_browser,
    lenet,
    lenet_keras,
    lenet_torch,
    make,
    recording_comms,
)

JPEG_SIGNATURE = b"\xff\xd8\xff"


@pytest.fixture(autouse=True)
def few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "8")


class GatedFeatureViz:
    """Wraps ``feature_viz``: counts runs, pauses one at a step, or fails on demand."""

    def __init__(self) -> None:
        self.original = featureviz.feature_viz
        self.calls = 0
        self.pause_at: int | None = None
        self.reached = threading.Event()
        self.gate = threading.Event()
        self.fail_with: BaseException | None = None
        self.fail_at_step: int | None = None

    def __call__(self, *args: Any, callback: Any = None, **kwargs: Any) -> np.ndarray:
        self.calls += 1
        if self.fail_with is not None and self.fail_at_step is None:
            error, self.fail_with = self.fail_with, None
            raise error

        def wrapped(step: int, images: np.ndarray, values: np.ndarray) -> Any:
            result = callback(step, images, values) if callback is not None else None
            if step == self.fail_at_step and self.fail_with is not None:
                error, self.fail_with = self.fail_with, None
                raise error
            if step == self.pause_at:
                self.pause_at = None
                self.reached.set()
                assert self.gate.wait(10), "test gate never opened"
            return result

        return self.original(*args, callback=wrapped, **kwargs)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> GatedFeatureViz:
    wrapper = GatedFeatureViz()
    monkeypatch.setattr(featureviz, "feature_viz", wrapper)
    return wrapper


@pytest.fixture
def every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """No throttling: every step's frame is sent (the throttle has its own test)."""
    monkeypatch.setattr(featureviz_panel, "FRAME_INTERVAL", 0.0)


def fv_frames(widget: Any) -> list[tuple[bytes, dict[str, Any]]]:
    """Each ``fv_image`` sent, in order, with the state merged up to that message."""
    frames = []
    merged: dict[str, Any] = {}
    for update in widget.comm.updates():
        state = dict(update["state"])
        for path, buffer in zip(update["buffer_paths"], update["buffers"], strict=True):
            state[path[0]] = buffer
        merged.update(state)
        if state.get("fv_image"):
            frames.append((state["fv_image"], dict(merged)))
    return frames


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA"))


# --------------------------------------------------------------------------- streaming


def test_run_streams_jpeg_frames_and_ends_with_a_png(
    make: Callable, lenet_torch: Adapter, every_frame: None
) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    assert (widget.views, widget.view, widget.layer) == (["featureviz"], "featureviz", "conv1")
    widget.comm.clear()
    widget.run_feature_viz()
    widget.wait()
    frames = fv_frames(widget)
    kinds = [data[:3] == JPEG_SIGNATURE for data, _ in frames]
    assert len(frames) == 8  # steps 1..7 streamed, step 8 is the final picture
    assert all(kinds[:-1]) and frames[-1][0].startswith(PNG_SIGNATURE)
    assert [state["fv_step"] for _, state in frames] == list(range(1, 9))
    assert widget.fv_meta["state"] == "done"
    assert widget.fv_meta["channels"] == list(range(8))
    assert (widget.fv_running, widget.fv_progress, widget.status) == (False, 1.0, "idle")
    assert widget.fv_layout["channels"] == list(range(8))
    assert widget.fv_layout["tile_w"] == 28  # lenet's own input size


def test_throttle_lets_one_frame_through_per_interval() -> None:
    now = [0.0]
    throttle = Throttle(0.1, clock=lambda: now[0])
    passed = []
    for _ in range(25):
        passed.append(throttle.ready())
        now[0] += 0.02
    assert sum(passed) == 5  # 0.5 s of steps at 20 ms, one frame per 100 ms
    assert passed[0]


def test_gray_models_give_gray_tiles_and_rgb_models_colour() -> None:
    rng = np.random.default_rng(0)
    gray = fv_picture(rng.random((3, 10, 10, 1)), (0, 1, 2))
    pixels = decode(gray[1])
    tile_ = pixels[:10, :10]
    assert (tile_[..., 0] == tile_[..., 1]).all() and (tile_[..., 1] == tile_[..., 2]).all()
    assert (pixels[:, 10, 3] == 0).all()  # transparent gap between tiles
    colour = decode(fv_picture(rng.random((2, 10, 10, 3)), (4, 5))[1])
    assert (colour[:10, :10, 0] != colour[:10, :10, 1]).any()
    kind, data, layout = fv_picture(rng.random((2, 10, 10, 3)), (4, 5), fmt="jpeg")
    assert (kind, data[:3], layout["channels"]) == ("jpeg", JPEG_SIGNATURE, [4, 5])


# --------------------------------------------------------------------------- stop and supersede


def test_stop_from_the_browser_keeps_the_partial_picture_and_says_stopped(
    make: Callable, lenet_torch: Adapter, gated: GatedFeatureViz, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "50")
    widget = make(FeatureVisualizer, lenet_torch, fv_steps=50)
    gated.pause_at = 3
    from_browser(widget, fv_run=1)
    assert gated.reached.wait(10)
    assert widget.fv_running and widget.status.startswith("busy: feature visualization")
    from_browser(widget, fv_stop=1)
    gated.gate.set()
    widget.wait()
    assert widget.status == "stopped"
    assert widget.fv_running is False
    assert widget.fv_meta["state"] == "stopped"
    assert widget.fv_meta["step"] == 3 and widget.fv_step == 3
    assert widget.fv_image.startswith(PNG_SIGNATURE)
    assert widget.feature_viz_images is not None
    assert widget.error == ""
    # A stopped run is not a result: nothing is cached for it.
    widget.layer = "conv2"
    widget.layer = "conv1"
    assert widget.fv_image == b""


def test_a_second_run_stops_the_first_and_only_the_second_is_shown(
    make: Callable, lenet_torch: Adapter, gated: GatedFeatureViz, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "50")
    widget = make(FeatureVisualizer, lenet_torch, fv_steps=50)
    gated.pause_at = 2
    widget.run_feature_viz()
    assert gated.reached.wait(10)
    widget.fv_recipe = "naive"
    widget.run_feature_viz()
    widget.comm.clear()
    gated.gate.set()
    widget.wait()
    assert gated.calls == 2
    states = [state["fv_meta"]["state"] for _, state in fv_frames(widget)]
    assert "stopped" not in states  # the first run's last picture was dropped
    assert states[-1] == "done"
    assert (widget.fv_meta["recipe"], widget.fv_meta["step"], widget.status) == (
        "naive",
        50,
        "idle",
    )


# --------------------------------------------------------------------------- errors


def test_an_exception_in_the_run_lands_in_error_and_the_widget_keeps_working(
    make: Callable, lenet_torch: Adapter, gated: GatedFeatureViz
) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    gated.fail_with = RuntimeError("out of memory")
    widget.run_feature_viz()
    widget.wait()
    assert widget.error == "FeatureVisualizer: RuntimeError: out of memory"
    assert (widget.status, widget.fv_running) == ("error", False)
    widget.run_feature_viz()
    widget.wait()
    assert (widget.error, widget.status, widget.fv_meta["state"]) == ("", "idle", "done")


def test_bad_settings_land_in_error_and_the_widget_stays_usable(
    make: Callable, lenet_torch: Adapter
) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    from_browser(widget, fv_steps=0)
    assert "fv_steps must be in 1..100000; got 0" in widget.error
    assert widget.fv_steps == 256
    from_browser(widget, fv_size=3)
    assert "fv_size must be 0 (automatic) or in 8..1024" in widget.error
    assert widget.fv_size == 0
    with pytest.raises(traitlets.TraitError):
        widget.fv_recipe = "fancy"
    widget.fv_objective = "neuron"
    widget.layer = "fc1"
    assert "objective 'neuron' needs a layer with a spatial output" in widget.error
    widget.run_feature_viz()
    assert "objective 'neuron'" in widget.error and not widget.fv_running
    widget.fv_objective = "class"
    widget.layer = "fc2"
    widget.run_feature_viz(channels=[12])
    widget.wait()
    assert "class 12 is out of range" in widget.error
    widget.layer = "conv2"
    widget.fv_objective = "channel"
    widget.fv_size = 8
    widget.run_feature_viz()
    widget.wait()
    assert "smallest size" in widget.error
    widget.fv_size = 0
    widget.run_feature_viz()
    widget.wait()
    assert (widget.error, widget.fv_meta["state"]) == ("", "done")


# --------------------------------------------------------------------------- cache and model


def test_a_finished_run_is_cached_so_coming_back_is_instant(
    make: Callable, lenet_torch: Adapter, gated: GatedFeatureViz
) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    widget.run_feature_viz()
    widget.wait()
    first = widget.fv_image
    widget.layer = "conv2"
    assert (widget.fv_image, widget.fv_meta) == (b"", {})
    widget.layer = "conv1"
    assert widget.featureviz_lane.requested == 1  # shown inline, no optimization started
    assert gated.calls == 1
    assert widget.fv_meta["state"] == "cached"
    assert decode(widget.fv_image).shape == decode(first).shape
    # Another setting is another result; the picture of the same channels stays meanwhile.
    widget.fv_steps = 100
    assert widget.fv_image and gated.calls == 1


def test_selecting_a_channel_shows_its_image_enlarged(make: Callable, lenet_torch: Adapter) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    widget.run_feature_viz()
    widget.wait()
    assert decode(widget.fv_detail).shape[:2] == (28, 28)
    before = widget.fv_detail
    from_browser(widget, channel=5)
    assert widget.fv_detail != before and widget.fv_detail.startswith(PNG_SIGNATURE)


def test_model_is_unchanged_after_a_run_a_stop_and_an_error(
    make: Callable, lenet: Adapter, gated: GatedFeatureViz
) -> None:
    before = lenet.snapshot()
    widget = make(FeatureVisualizer, lenet)
    widget.run_feature_viz()
    widget.wait()
    gated.pause_at = 2
    widget.run_feature_viz(channels=[0, 1])
    assert gated.reached.wait(30)
    widget.stop_feature_viz()
    gated.gate.set()
    widget.wait()
    assert widget.status == "stopped"
    gated.fail_with, gated.fail_at_step = RuntimeError("boom"), 2
    widget.layer = "conv2"
    widget.run_feature_viz()
    widget.wait()
    assert widget.error.endswith("RuntimeError: boom")
    assert lenet.same_state(before, lenet.snapshot())


# --------------------------------------------------------------------------- in the Explorer


def test_explorer_has_a_feature_viz_view_run_from_the_browser(
    make: Callable, lenet_torch: Adapter, tmp_path: Any
) -> None:
    explorer = make(Explorer, lenet_torch, zoo.sample_image("digit3"))
    assert explorer.views == ["filters", "activations", "featureviz", "attribution", "table"]
    from_browser(explorer, view="featureviz", fv_objective="layer")
    assert explorer.fv_image == b"" and explorer.status == "idle"
    from_browser(explorer, fv_run=1)
    explorer.wait()
    assert explorer.fv_meta["objective"] == "layer"
    assert explorer.fv_layout["count"] == 1  # DeepDream: one image for the whole layer
    path = explorer.save_png(tmp_path / "fv.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    bundle = explorer._repr_mimebundle_()
    assert bundle is not None and "image/png" in bundle[0]


def test_leaving_for_a_view_that_needs_the_worker_stops_the_run(
    make: Callable, lenet_torch: Adapter, gated: GatedFeatureViz, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "50")
    explorer = make(Explorer, lenet_torch, zoo.sample_image("digit3"), view="featureviz")
    gated.pause_at = 2
    explorer.run_feature_viz()
    assert gated.reached.wait(10)
    explorer.view = "activations"
    explorer.layer = "conv2"
    gated.gate.set()
    explorer.wait()
    assert explorer.fv_running is False
    assert (explorer.status, explorer.grid_meta["layer"]) == ("idle", "conv2")


def test_a_view_that_needs_the_model_never_blocks_the_kernel_behind_a_running_run(
    make: Callable, lenet_torch: Adapter, gated: GatedFeatureViz, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "50")
    explorer = make(Explorer, lenet_torch, zoo.sample_image("digit3"), view="featureviz")
    gated.pause_at = 2
    explorer.run_feature_viz()
    assert gated.reached.wait(10)  # the run holds the model, paused inside a step
    explorer.view = "filters"  # returns at once: the weights wait on the lane, not the kernel
    assert explorer.busy is True and explorer.fv_running is False
    gated.gate.set()
    explorer.wait()
    assert (explorer.status, explorer.grid_meta["kind"]) == ("idle", "filters")
    assert explorer.featureviz_lane.dropped == 1  # its last frame came after it was retired
