# ruff: noqa: F811  (the fixtures imported from tests.test_widgets are requested by name)
""" "Save GIF" in the feature-visualization view: the frames of the run on screen as an
animated GIF, from the browser (``fv_save_gif`` -> ``fv_gif``) or from Python."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

import cnn_widgets.featureviz as featureviz
from cnn_widgets.backends import Adapter
from cnn_widgets.widgets import FeatureVisualizer
from tests.test_widgets import (  # noqa: F401  (fixtures are found by name)
    from_browser,
    lenet,
    lenet_keras,
    lenet_torch,
    make,
    recording_comms,
)


@pytest.fixture(autouse=True)
def few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(featureviz.MAX_STEPS_ENV, "8")


def gif_frames(data: bytes) -> list[np.ndarray]:
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF"
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("L"), dtype=np.float32) / 255.0)
    return frames


def test_save_gif_from_the_browser_sends_the_run_as_an_animation(
    make: Callable, lenet: Adapter
) -> None:
    widget = make(FeatureVisualizer, lenet)
    assert not widget.fv_gif_ready
    widget.run_feature_viz()
    widget.wait()
    assert widget.fv_gif_ready and widget.fv_gif == b""
    frames = widget.feature_viz_frames()
    assert frames.shape == (8, 8, 28, 28, 1)  # steps 1..8, the page of 8 channels
    # The last frame is the picture on screen (kept as 8-bit levels).
    np.testing.assert_allclose(frames[-1], widget.feature_viz_images, atol=0.5 / 255 + 1e-6)
    assert np.abs(frames[0] - frames[-1]).max() > 0.05  # the run moved: frames differ
    from_browser(widget, fv_save_gif=1)
    pictures = gif_frames(widget.fv_gif)
    assert len(pictures) == 8 and widget.error == ""
    # The GIF's first tile, shrunk back to 28 px, is the first frame's first image.
    scale = pictures[0].shape[0] // 28 // 3  # 8 tiles: 3 rows
    tile = pictures[0][: 28 * scale : scale, : 28 * scale : scale]
    assert np.abs(tile - frames[0, 0, ..., 0]).mean() < 0.02


def test_save_gif_without_a_run_says_so_and_the_widget_keeps_working(
    make: Callable, lenet_torch: Adapter, tmp_path
) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    from_browser(widget, fv_save_gif=1)
    assert "no feature-visualization run on screen" in widget.error
    assert widget.fv_gif == b""
    with pytest.raises(ValueError, match="no feature-visualization run on screen"):
        widget.save_feature_viz_gif(tmp_path / "none.gif")
    widget.run_feature_viz()
    widget.wait()
    widget.save_feature_viz_gif(tmp_path / "run.gif")
    with Image.open(tmp_path / "run.gif") as gif:
        assert gif.n_frames == 8


def test_a_cached_run_keeps_its_frames_and_another_layer_has_none(
    make: Callable, lenet_torch: Adapter
) -> None:
    widget = make(FeatureVisualizer, lenet_torch)
    widget.run_feature_viz()
    widget.wait()
    widget.layer = "conv2"
    assert not widget.fv_gif_ready and widget.feature_viz_frames() is None
    widget.layer = "conv1"
    assert widget.fv_meta["state"] == "cached" and widget.fv_gif_ready
    assert widget.feature_viz_frames().shape[0] == 8
