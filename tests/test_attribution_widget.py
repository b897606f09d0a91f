"""The attribution panel: AttributionViewer and the Explorer's "attribution" view, for both
frameworks, driven as the browser drives them (``set_state``)."""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.attribution import attribution
from cnn_widgets.widgets.attribution import COMPARE_METHODS
from tests.cases import case

FRAMEWORKS = ["torch", "keras"]




def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((32, 32, 3), dtype=np.float32)


@pytest.fixture(params=FRAMEWORKS)
def viewer(request) -> Any:
    _, adapter = case(request.param)
    widget = cw.AttributionViewer(adapter, image())
    widget.wait()
    yield widget
    widget.close()


def test_the_viewer_shows_the_top_class_map_and_the_classes(viewer) -> None:
    assert viewer.view == "attribution" and viewer.error == ""
    classes = viewer.attr_classes
    assert len(classes) == 5
    probabilities = [c["probability"] for c in classes]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-9
    meta = viewer.attr_meta
    assert meta["state"] == "done" and meta["target"] == classes[0]["index"]
    assert viewer.attr_picture.startswith(b"\x89PNG")
    (shown,) = viewer.attributions
    expected = attribution(viewer.adapter, image(), method="gradcam")
    assert shown.target == expected.target and np.allclose(shown.map, expected.map)
    assert viewer.attr_layers and meta["tiles"][0]["layer"] in viewer.attr_layers


def test_clicking_a_class_changes_the_overlay(viewer) -> None:
    before = viewer.attr_picture
    other = viewer.attr_classes[1]["index"]
    viewer.set_state({"attr_target": other})
    viewer.wait()
    assert viewer.error == ""
    assert viewer.attr_meta["target"] == other
    assert viewer.attributions[0].target == other
    assert viewer.attr_picture != before


def test_compare_mode_shows_several_methods_for_one_target(viewer) -> None:
    viewer.set_state({"attr_compare": True})
    viewer.wait()
    meta = viewer.attr_meta
    assert [t["method"] for t in meta["tiles"]] == list(COMPARE_METHODS)
    assert meta["count"] == len(COMPARE_METHODS)
    assert meta["width"] == len(COMPARE_METHODS) * 32 + (len(COMPARE_METHODS) - 1) * 2
    targets = {r.target for r in viewer.attributions}
    assert targets == {viewer.attr_classes[0]["index"]}
    cached = viewer.attribution_lane.started
    viewer.set_state({"attr_compare": False})
    viewer.wait()
    assert viewer.attribution_lane.started == cached  # back from the cache, no work


def test_the_opacity_redraws_without_the_model_and_save_png_saves_it(viewer, tmp_path) -> None:
    started = viewer.attribution_lane.started
    viewer.set_state({"attr_alpha": 0.0})
    assert viewer.attribution_lane.started == started
    path = viewer.save_png(tmp_path / "attr.png", scale=1)
    from PIL import Image

    saved = np.asarray(Image.open(path).convert("RGB"))
    # opacity 0 is the image as the model saw it
    assert np.array_equal(saved, np.rint(image() * 255).astype(np.uint8))
    viewer.set_state({"attr_alpha": 0.7})
    assert not np.array_equal(np.asarray(Image.open(viewer.save_png(path, scale=1))), saved)


def test_bad_input_shows_in_place_and_the_widget_stays_usable(viewer) -> None:
    viewer.set_state({"attr_target": 99})
    viewer.wait()
    assert "target class 99 is out of range" in viewer.error and viewer.status == "error"
    viewer.set_state({"attr_method": "gradkam"})
    assert "gradcam" in viewer.error and viewer.attr_method == "gradcam"
    viewer.set_state({"attr_layer": "nope"})
    assert "attr_layer" in viewer.error and viewer.attr_layer == ""
    viewer.set_state({"attr_alpha": 3})
    assert "opacity" in viewer.error and viewer.attr_alpha == 0.5
    viewer.set_state({"attr_target": 2, "attr_method": "saliency"})
    viewer.wait()
    assert viewer.error == "" and viewer.attr_meta["target"] == 2
    assert viewer.attributions[0].method == "saliency"


def test_a_cam_layer_can_be_chosen(viewer) -> None:
    layer = viewer.attr_layers[0]
    viewer.set_state({"attr_layer": layer})
    viewer.wait()
    assert viewer.error == "" and viewer.attributions[0].layer == layer
    assert viewer.attributions[0].raw.shape == (32, 32)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_stop_ends_a_long_method_and_leaves_the_model_untouched(framework, monkeypatch) -> None:
    panel = importlib.import_module("cnn_widgets.widgets.attribution")
    _, adapter = case(framework)
    widget = cw.AttributionViewer(adapter, image())
    widget.wait()
    before = adapter.snapshot()
    started, release = threading.Event(), threading.Event()

    def slow(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        progress(1, 4)
        started.set()
        release.wait(30)
        progress(2, 4)  # Stop was pressed: this leaves
        raise AssertionError("not stopped")

    monkeypatch.setattr(panel, "attribution", slow)
    widget.set_state({"attr_method": "smoothgrad"})
    assert started.wait(30) and widget.attr_running
    widget.set_state({"attr_stop": 1})
    release.set()
    widget.wait()
    assert widget.status == "stopped" and not widget.attr_running and widget.error == ""
    assert widget.attr_meta["state"] == "stopped"
    assert adapter.same_state(before, adapter.snapshot())
    monkeypatch.undo()
    widget.set_state({"attr_method": "saliency"})  # usable after a stop
    widget.wait()
    assert widget.attr_meta["state"] == "done" and widget.attributions[0].method == "saliency"
    widget.close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_explorer_has_an_attribution_view(framework) -> None:
    _, adapter = case(framework)
    widget = cw.Explorer(adapter, image(), attr_method="layercam")
    before = adapter.snapshot()
    assert "attribution" in widget.views
    assert ["attribution", "Attribution"] in widget.choices["view"]
    widget.set_state({"view": "attribution"})
    widget.wait()
    assert widget.error == "" and widget.attributions[0].method == "layercam"
    widget.set_state({"view": "activations"})
    widget.wait()
    assert widget.error == ""
    assert adapter.same_state(before, adapter.snapshot())
    widget.close()


def test_unknown_options_are_refused() -> None:
    _, adapter = case("torch")
    with pytest.raises(TypeError, match="attr_method"):
        cw.AttributionViewer(adapter, image(), attr_methd="gradcam")
