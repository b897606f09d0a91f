"""The notebook widgets without a kernel or a browser.

The comm layer is replaced by a recording comm, so every message a widget would send to the
browser is kept and inspected; browser input is fed through ``_handle_msg`` exactly as the
kernel would deliver it. Work on the worker thread is awaited with ``viewer.wait()`` or
explicit events, never with sleeps.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import comm
import numpy as np
import pytest
import traitlets
from comm.base_comm import BaseComm
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image

import cnn_widgets.zoo as zoo
from cnn_widgets import adapt
from cnn_widgets.backends import Adapter
from cnn_widgets.widgets import ActivationViewer, Explorer, FilterViewer
from cnn_widgets.widgets.frames import jsonable
from cnn_widgets.widgets.picture import CACHE_SIZE
from cnn_widgets.widgets.runner import Cancelled, Runner

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- fixtures


class RecordingComm(BaseComm):
    """A comm that keeps what it would publish to the browser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: dict | None = None,
        metadata: dict | None = None,
        buffers: list | None = None,
        **keys: Any,
    ) -> None:
        self.messages.append(
            {"msg_type": msg_type, "data": data or {}, "buffers": [bytes(b) for b in buffers or []]}
        )

    def updates(self) -> list[dict[str, Any]]:
        """``update`` messages: ``{"state", "buffer_paths", "buffers"}``."""
        return [
            {**m["data"], "buffers": m["buffers"]}
            for m in self.messages
            if m["msg_type"] == "comm_msg" and m["data"].get("method") == "update"
        ]

    def clear(self) -> None:
        self.messages.clear()


@pytest.fixture(autouse=True)
def recording_comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    created: list[RecordingComm] = []

    def create_comm(*args: Any, **kwargs: Any) -> RecordingComm:
        channel = RecordingComm(*args, **kwargs)
        created.append(channel)
        return channel

    monkeypatch.setattr(comm, "create_comm", create_comm)
    return created


@pytest.fixture(scope="module")
def lenet_torch() -> Adapter:
    return zoo.load("lenet", framework="torch")


@pytest.fixture(scope="module")
def lenet_keras() -> Adapter:
    return zoo.load("lenet", framework="keras")


@pytest.fixture(params=["torch", "keras"])
def lenet(request: pytest.FixtureRequest) -> Adapter:
    return request.getfixturevalue(f"lenet_{request.param}")


@pytest.fixture
def make() -> Iterator[Callable[..., Any]]:
    """Build widgets and close them (and their worker threads) after the test."""
    widgets: list[Any] = []

    def build(cls: type, *args: Any, **kwargs: Any) -> Any:
        widget = cls(*args, **kwargs)
        widgets.append(widget)
        return widget

    yield build
    for widget in widgets:
        widget.close()


def digit(d: int) -> np.ndarray:
    return zoo.sample_image(f"digit{d}")


def from_browser(widget: Any, **state: Any) -> None:
    """Deliver a state update as the kernel receives it from the front end."""
    stripped, paths, buffers = _remove_buffers(state)
    message = {
        "content": {"data": {"method": "update", "state": stripped, "buffer_paths": paths}},
        "buffers": [memoryview(b) for b in buffers],
    }
    widget._handle_msg(message)


def sent(widget: Any) -> dict[str, Any]:
    """Everything sent to the browser in update messages, merged, buffers put back in."""
    merged: dict[str, Any] = {}
    for update in widget.comm.updates():
        state = dict(update["state"])
        for path, buffer in zip(update["buffer_paths"], update["buffers"], strict=True):
            state[path[0]] = buffer
        merged.update(state)
    return merged


class CountingActivations:
    """Wraps ``adapter.activations``: counts forward passes, can block or fail on demand."""

    def __init__(self, adapter: Adapter) -> None:
        self.original = adapter.activations
        self.layers: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_with: BaseException | None = None

    def __call__(self, batch: np.ndarray, layers: Any = None) -> dict[str, np.ndarray]:
        self.layers.append(list(layers or []))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        return self.original(batch, layers)

    def block(self) -> threading.Event:
        """Make the next forward passes wait for the returned gate."""
        self.entered.clear()
        self.gate = threading.Event()
        return self.gate

    @property
    def calls(self) -> int:
        return len(self.layers)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch, lenet_torch: Adapter) -> CountingActivations:
    counter = CountingActivations(lenet_torch)
    monkeypatch.setattr(lenet_torch, "activations", counter)
    return counter


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


# --------------------------------------------------------------------------- construction


def test_unknown_keyword_arguments_raise_type_error_naming_the_valid_ones(
    lenet_torch: Adapter,
) -> None:
    with pytest.raises(TypeError, match=r"'colourmap'.*valid options: channel, colormap"):
        FilterViewer(lenet_torch, colourmap="gray")
    with pytest.raises(TypeError, match="'sample'"):
        FilterViewer(lenet_torch, sample="digit3")  # filters need no image


def test_constructor_arguments_raise_when_wrong(lenet_torch: Adapter) -> None:
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        Explorer(lenet_torch, layer="conv9")
    with pytest.raises(ValueError, match="expected one image"):
        ActivationViewer(lenet_torch, image=np.zeros(5))
    with pytest.raises(traitlets.TraitError, match="normalization must be one of"):
        Explorer(lenet_torch, normalization="minmax")


def test_each_widget_offers_its_views_and_a_sensible_start(make: Callable, lenet: Adapter) -> None:
    filters = make(FilterViewer, lenet)
    assert (filters.views, filters.view, filters.layer) == (["filters"], "filters", "conv1")
    acts = make(ActivationViewer, lenet, digit(7))
    assert (acts.views, acts.view, acts.layer) == (["activations"], "activations", "conv1")
    explorer = make(Explorer, lenet, digit(7), layer="conv2")
    assert explorer.views == ["filters", "activations", "featureviz", "attribution", "table"]
    assert (explorer.view, explorer.layer) == ("activations", "conv2")
    for widget in (filters, acts, explorer):
        assert widget.error == ""
        assert widget.status == "idle"
        assert widget.grid.startswith(PNG_SIGNATURE)


def test_default_image_is_a_bundled_sample_that_suits_the_model(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(ActivationViewer, lenet_torch)
    assert png_size(viewer.image_png) == (28, 28)
    assert viewer.image.shape == (28, 28, 1)
    assert viewer.grid_meta["text"] == "8 of 8 shown"


def test_layers_and_table_describe_every_layer(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(1))
    names = [layer["name"] for layer in viewer.layers]
    assert names == [info.name for info in lenet_torch.layers()]
    conv1 = viewer.layers[0]
    assert conv1 == {
        "index": 0,
        "name": "conv1",
        "type": "Conv2d",
        "shape": [8, 28, 28],
        "kind": "conv2d",
        "has_filters": True,
        "ran": True,
        "vector": False,
        "views": ["filters", "activations", "featureviz", "attribution", "table"],
    }
    row = viewer.table[0]
    assert row["shape_text"] == "(8, 28, 28)"
    assert row["num_params"] == 8 * 25 + 8
    assert "weight(8, 1, 5, 5)" in row["params"]


def test_repr_is_cheap_and_informative(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(1))
    assert repr(viewer) == "<Explorer Sequential view='activations' layer='conv1' channel=0>"


# --------------------------------------------------------------------------- the wire


def test_image_goes_to_the_browser_as_png_bytes_in_a_binary_buffer(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(2))
    viewer.comm.clear()
    viewer.image = digit(5)
    with_image = [u for u in viewer.comm.updates() if ["image_png"] in u["buffer_paths"]]
    assert len(with_image) == 1
    update = with_image[0]
    assert "image_png" not in update["state"]  # not inlined as text (no base64 in JSON)
    buffer = update["buffers"][update["buffer_paths"].index(["image_png"])]
    assert buffer.startswith(PNG_SIGNATURE)
    assert buffer == viewer.image_png
    assert png_size(buffer) == (28, 28)


def test_grid_is_sent_at_natural_size_in_one_update_with_its_layout(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(3), layer="conv2")
    viewer.comm.clear()
    viewer.layer = "conv1"
    viewer.wait()
    grid_updates = [u for u in viewer.comm.updates() if ["grid"] in u["buffer_paths"]]
    assert len(grid_updates) == 1
    # Picture, layout and meta travel in one message (hold_sync): the browser never maps a
    # click through the layout of another picture.
    update = grid_updates[0]
    assert ["detail"] in update["buffer_paths"]
    assert {"grid_layout", "grid_meta", "detail_stats", "status", "busy"} <= set(update["state"])
    width, height = png_size(viewer.grid)
    layout = viewer.grid_layout
    assert (width, height) == (layout["width"], layout["height"]) == (86, 86)  # 3x3 tiles of 28
    assert (viewer.grid_meta["width"], viewer.grid_meta["height"]) == (86, 86)
    assert layout["offset"] == 0
    assert png_size(viewer.detail) == (28, 28)


def test_traits_set_in_python_reach_the_browser(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(4))
    viewer.comm.clear()
    viewer.normalization = "channel"
    viewer.channel = 3
    state = sent(viewer)
    assert state["normalization"] == "channel"
    assert state["channel"] == 3
    assert state["detail_stats"] == viewer.detail_stats


def test_browser_input_sets_traits_and_rerenders(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(4))
    before = viewer.grid
    from_browser(viewer, colormap="diverging", normalization="symmetric")
    assert (viewer.colormap, viewer.normalization) == ("diverging", "symmetric")
    assert viewer.grid != before
    assert viewer.grid_meta["colormap"] == "diverging"


def test_browser_cannot_write_what_python_renders(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(4))
    grid = viewer.grid
    from_browser(viewer, grid=b"forged", error="forged", layers=[])
    assert viewer.grid == grid
    assert viewer.error == ""
    assert len(viewer.layers) == 10


def test_synced_dicts_hold_no_nan_which_json_parse_would_reject() -> None:
    assert jsonable({"a": (1.0, float("nan")), "b": np.float32(np.inf), "c": np.int64(3)}) == {
        "a": [1.0, None],
        "b": None,
        "c": 3,
    }


# --------------------------------------------------------------------------- errors


def test_bad_layer_lands_in_error_and_the_layer_stays(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(6))
    grid = viewer.grid
    viewer.layer = "conv3"
    assert viewer.layer == "conv1"
    assert viewer.error.startswith(
        "Explorer: no layer named 'conv3'. Did you mean 'conv2', 'conv1'"
    )
    assert viewer.grid == grid
    viewer.layer = "conv2"  # and the widget keeps working
    viewer.wait()
    assert (viewer.error, viewer.grid_meta["layer"]) == ("", "conv2")


def test_bad_layer_from_the_browser_is_refused_and_the_real_value_sent_back(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(6))
    viewer.comm.clear()
    from_browser(viewer, layer="nope", channel=3)
    assert (viewer.layer, viewer.channel) == ("conv1", 3)  # the good part of the message is kept
    assert viewer.error.startswith("Explorer: no layer named 'nope'")
    assert sent(viewer)["layer"] == "conv1"


def test_bad_settings_raise_in_python_and_land_in_error_from_the_browser(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(6))
    with pytest.raises(traitlets.TraitError, match="colormap must be one of"):
        viewer.colormap = "jet"
    viewer.comm.clear()
    from_browser(viewer, colormap="jet")
    assert viewer.colormap == "viridis"
    assert viewer.error.startswith("Explorer: ") and "colormap must be one of" in viewer.error
    assert sent(viewer)["colormap"] == "viridis"


def test_channel_out_of_range_is_refused(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(6), channel=2)
    viewer.channel = 8  # conv1 has 8 channels: 0..7
    assert viewer.channel == 2
    assert viewer.error == "Explorer: channel 8 is out of range: valid 0..7"
    from_browser(viewer, channel=-1)
    assert viewer.channel == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(7), "expected one image"),
        (b"not an image", "cannot read"),
        ("/no/such/file.png", "no image file"),
        (np.zeros((20, 20, 2, 2)), "expected one image"),
    ],
)
def test_bad_image_lands_in_error_and_the_previous_image_is_kept(
    make: Callable, lenet_torch: Adapter, bad: Any, message: str
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(8))
    image, png, grid = viewer.image, viewer.image_png, viewer.grid
    viewer.image = bad
    assert np.array_equal(viewer.image, image) and viewer.image_png is png
    assert viewer.grid == grid
    assert viewer.error.startswith("ActivationViewer: ")
    assert message in viewer.error


@pytest.mark.parametrize("kind", ["array", "float array", "pil", "path", "bytes"])
def test_image_accepts_arrays_pil_images_paths_and_file_bytes(
    make: Callable, lenet_torch: Adapter, tmp_path: Any, kind: str
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(0))
    new = digit(1)
    pil = Image.fromarray(new)
    path = tmp_path / "one.png"
    pil.save(path)
    value = {
        "array": new,
        "float array": new / 255.0,
        "pil": pil,
        "path": path,
        "bytes": path.read_bytes(),
    }[kind]
    viewer.image = value
    viewer.wait()
    assert viewer.error == ""
    with Image.open(io.BytesIO(viewer.image_png)) as shown:
        assert np.array_equal(np.asarray(shown), new)


def test_uploaded_file_replaces_the_image_and_the_upload_is_cleared(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(0), sample="")
    buffer = io.BytesIO()
    Image.fromarray(digit(9)).save(buffer, format="PNG")
    viewer.comm.clear()
    from_browser(viewer, upload_name="nine.png", upload=buffer.getvalue())
    viewer.wait()
    assert viewer.error == ""
    assert viewer.upload == b""
    with Image.open(io.BytesIO(viewer.image_png)) as shown:
        assert np.array_equal(np.asarray(shown), digit(9))
    assert sent(viewer)["upload"] == b""


def test_bad_upload_names_the_file_and_keeps_the_previous_image(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(0))
    png = viewer.image_png
    from_browser(viewer, upload_name="notes.txt", upload=b"hello")
    assert viewer.image_png is png
    assert viewer.error.startswith("ActivationViewer: cannot use the uploaded file 'notes.txt'")
    assert viewer.upload == b""


def test_exception_on_the_worker_thread_lands_in_error_and_the_widget_keeps_working(
    make: Callable, lenet_torch: Adapter, counting: CountingActivations
) -> None:
    viewer = make(Explorer, lenet_torch, digit(2))
    counting.fail_with = RuntimeError("device fell off")
    viewer.layer = "conv2"
    viewer.wait()
    assert viewer.error == "Explorer: RuntimeError: device fell off"
    assert (viewer.status, viewer.busy) == ("error", False)
    viewer.layer = "pool2"
    viewer.wait()
    assert (viewer.error, viewer.status) == ("", "idle")
    assert viewer.grid_meta["layer"] == "pool2"


def test_filters_view_of_a_layer_without_filters_says_which_layers_have_them(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(2), view="filters")
    viewer.layer = "relu1"
    assert viewer.error.startswith("Explorer: layer 'relu1' is a ReLU layer")
    assert "'conv1', 'conv2'" in viewer.error


# --------------------------------------------------------------------------- behaviour


def test_channel_change_rerenders_only_the_detail_from_the_cache(
    make: Callable, lenet_torch: Adapter, counting: CountingActivations
) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(3))
    assert counting.calls == 1
    viewer.comm.clear()
    details = set()
    for channel in range(8):
        viewer.channel = channel
        details.add(viewer.detail)
        assert viewer.detail_stats["shape"] == [28, 28]
    assert counting.calls == 1  # no new forward pass
    assert len(details) == 8
    assert not any(["grid"] in u["buffer_paths"] for u in viewer.comm.updates())


def test_activations_are_cached_per_image_and_layer_in_a_bounded_lru(
    make: Callable, lenet_torch: Adapter, counting: CountingActivations
) -> None:
    viewer = make(Explorer, lenet_torch, digit(3))
    spatial = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    for name in spatial:
        viewer.layer = name
        viewer.wait()
    assert counting.calls == len(spatial)
    viewer.layer = "conv1"  # cached: no forward pass
    viewer.wait()
    assert counting.calls == len(spatial)
    viewer.image = digit(4)  # another image: new keys
    viewer.wait()
    second = ["fc1", "relu3", "fc2", "flatten", *spatial]
    assert len(second) > CACHE_SIZE
    for name in second:
        viewer.layer = name
        viewer.wait()
    before = counting.calls
    viewer.layer = "conv1"  # cached for this image: among the last CACHE_SIZE
    viewer.wait()
    assert counting.calls == before
    viewer.image = digit(3)  # back to the first image: its maps were evicted, one pass
    viewer.wait()
    assert counting.calls == before + 1


def test_layer_change_runs_on_the_worker_with_busy_status(
    make: Callable, lenet_torch: Adapter, counting: CountingActivations
) -> None:
    viewer = make(Explorer, lenet_torch, digit(5))
    seen: list[tuple[bool, str]] = []
    viewer.observe(lambda change: seen.append((viewer.busy, viewer.status)), names="busy")
    gate = counting.block()
    viewer.layer = "conv2"  # returns at once: the forward pass waits on the gate
    assert viewer.busy is True
    assert viewer.status == "busy: computing the feature maps of 'conv2'"
    assert counting.entered.wait(10)
    assert viewer.grid_meta["layer"] == "conv1"  # the old picture stays meanwhile
    gate.set()
    viewer.wait()
    assert (viewer.busy, viewer.status) == (False, "idle")
    assert viewer.grid_meta["layer"] == "conv2"
    assert [busy for busy, _ in seen] == [True, False]


def test_latest_request_wins(
    make: Callable, lenet_torch: Adapter, counting: CountingActivations
) -> None:
    viewer = make(Explorer, lenet_torch, digit(5))
    published: list[str] = []
    viewer.observe(lambda change: published.append(change["new"].get("layer")), "grid_meta")
    gate = counting.block()
    viewer.layer = "conv2"
    assert counting.entered.wait(10)  # the worker is inside conv2's forward pass
    viewer.layer = "pool1"  # waits ...
    viewer.layer = "relu2"  # ... and is replaced
    gate.set()
    viewer.wait()
    assert counting.layers[1:] == [["conv2"], ["relu2"]]  # pool1 never ran
    assert published == ["relu2"]  # conv2 finished but was superseded: never shown
    assert viewer.layer == viewer.grid_meta["layer"] == "relu2"
    assert viewer.picture_lane.superseded == 1


def test_paging_shows_page_size_channels_and_follows_the_channel(make: Callable) -> None:
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            OrderedDict(conv=torch.nn.Conv2d(3, 100, 3), relu=torch.nn.ReLU())
        ).eval()
    adapter = adapt(model, input_shape=(3, 12, 12))
    viewer = make(Explorer, adapter, np.full((12, 12, 3), 0.5, np.float32), page_size=64)
    assert viewer.channel_count == 100
    assert viewer.grid_meta["text"] == "64 of 100 shown"
    assert (viewer.grid_meta["page"], viewer.grid_meta["pages"]) == (0, 2)
    from_browser(viewer, page=1)
    viewer.wait()
    assert (viewer.page, viewer.channel) == (1, 64)
    assert viewer.grid_meta["text"] == "36 of 100 shown"
    assert viewer.grid_layout["offset"] == 64
    assert viewer.grid_layout["channels"][0] == 64
    viewer.channel = 10  # back to the first page
    viewer.wait()
    assert viewer.page == 0
    assert viewer.grid_meta["first"] == 0
    viewer.page_size = 16
    viewer.wait()
    assert viewer.grid_meta["text"] == "16 of 100 shown"
    assert (viewer.page, viewer.grid_meta["pages"]) == (0, 7)


def test_switching_to_filters_picks_the_nearest_convolution(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(2), layer="pool2")
    viewer.view = "filters"
    assert viewer.layer == "conv2"
    assert viewer.grid_meta["kind"] == "filters"
    assert viewer.grid_meta["in_channels"] == 8
    assert viewer.grid_meta["text"] == "16 of 16 shown"
    viewer.view = "table"
    assert viewer.grid_meta["kind"] == "filters"  # the table needs no picture


def test_dense_output_layer_shows_top_k_labels(make: Callable, lenet: Adapter) -> None:
    viewer = make(ActivationViewer, lenet, digit(7), layer="fc2", top_k=3)
    assert viewer.error == ""
    assert viewer.grid_meta["mode"] == "probabilities"
    assert viewer.grid_layout == {}
    assert viewer.predictions[0]["label"] == "7"
    assert len(viewer.predictions) == 3
    viewer.vector_mode = "dense"
    assert viewer.grid_meta["text"] == "10 values"
    assert viewer.predictions == []
    viewer.channel = 7
    assert viewer.detail_stats["label"] == "7"


def test_sum_and_mean_modes_draw_one_picture(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(7))
    viewer.activation_mode = "sum"
    assert viewer.grid_layout == {}
    assert png_size(viewer.grid) == (28, 28)
    assert viewer.grid_meta["text"] == "sum of 8 channels"


def test_sample_loads_a_bundled_image(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(ActivationViewer, lenet_torch, digit(0))
    assert {"digit3", "chelsea"} <= set(viewer.samples)
    viewer.sample = "digit3"
    viewer.wait()
    assert viewer.sample == "digit3"
    with Image.open(io.BytesIO(viewer.image_png)) as shown:
        assert np.array_equal(np.asarray(shown), digit(3))
    viewer.sample = "digit33"
    assert viewer.sample == "digit3"
    assert "no sample image named 'digit33'" in viewer.error
    viewer.image = digit(4)  # an image from elsewhere is no sample
    assert viewer.sample == ""


def test_observe_with_names_sees_changes(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(FilterViewer, lenet_torch)
    changes: list[Any] = []
    viewer.observe(lambda change: changes.append(change["new"]), names=["channel"])
    viewer.channel = 5
    from_browser(viewer, channel=2)
    assert changes == [5, 2]


def test_filter_viewer_input_channel_choices(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(FilterViewer, lenet_torch, layer="conv2")
    viewer.input_channel = 3
    assert viewer.input_channel == "3"
    assert viewer.grid_meta["input_channel"] == 3
    viewer.input_channel = "rgb"  # conv2 sees 8 channels
    assert "input_channel='rgb' needs filters with 3 input channels" in viewer.error
    viewer.layer = "conv1"  # a new layer starts from "auto" again
    assert (viewer.input_channel, viewer.error) == ("auto", "")


# --------------------------------------------------------------------------- outputs


def test_save_png_writes_the_current_view_enlarged_with_sharp_pixels(
    make: Callable, lenet: Adapter, tmp_path: Any
) -> None:
    viewer = make(Explorer, lenet, digit(7))
    viewer.layer = "conv2"
    viewer.wait()
    natural = (viewer.grid_layout["width"], viewer.grid_layout["height"])
    assert natural == (4 * 10 + 3, 4 * 10 + 3)  # 16 tiles of 10x10
    target = viewer.save_png(tmp_path / "view.png")
    assert target.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(target) as saved:
        factor = saved.size[0] // natural[0]
        assert saved.size == (natural[0] * factor, natural[1] * factor)
        assert max(saved.size) >= 512  # readable in an image viewer
        block = np.asarray(saved.convert("RGB"))[:factor, :factor]
        assert (block == block[0, 0]).all()  # each pixel a uniform square: nearest neighbour
    with Image.open(viewer.save_png(tmp_path / "natural.png", scale=1)) as saved:
        assert saved.size == natural


def test_repr_mimebundle_carries_a_readable_png_of_the_current_view(
    make: Callable, lenet_torch: Adapter
) -> None:
    viewer = make(Explorer, lenet_torch, digit(7))
    data, _ = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    png = base64.b64decode(data["image/png"])
    assert png.startswith(PNG_SIGNATURE)
    width, height = png_size(png)
    assert width == height and width % 86 == 0 and width >= 512  # 3x3 tiles of 28, enlarged
    assert data["text/plain"] == repr(viewer)
    viewer.colormap = "gray"
    assert base64.b64decode(viewer._repr_mimebundle_()[0]["image/png"]) != png


def test_model_is_unchanged_after_use(make: Callable, lenet: Adapter) -> None:
    before = lenet.snapshot()
    viewer = make(Explorer, lenet, digit(1))
    for layer in ("conv2", "fc2", "pool1"):
        viewer.layer = layer
        viewer.wait()
    viewer.view = "filters"
    viewer.channel = 3
    viewer.image = digit(2)
    viewer.wait()
    assert viewer.error == ""
    assert lenet.same_state(before, lenet.snapshot())


def test_close_stops_the_worker_thread(make: Callable, lenet_torch: Adapter) -> None:
    viewer = make(Explorer, lenet_torch, digit(1))
    viewer.layer = "conv2"
    thread = viewer.picture_lane.thread
    viewer.close()
    assert thread is not None and not thread.is_alive()


# --------------------------------------------------------------------------- the runner


def test_runner_runs_only_the_latest_pending_job_and_stops_the_running_one() -> None:
    errors: list[BaseException] = []
    runner = Runner(errors.append)
    started, release = threading.Event(), threading.Event()
    stops: list[bool] = []
    done: list[str] = []

    def first(stop: threading.Event) -> None:
        started.set()
        assert release.wait(10)
        stops.append(stop.is_set())
        done.append("first")

    runner.submit(first)
    assert started.wait(10)
    runner.submit(lambda stop: done.append("second"))
    runner.submit(lambda stop: done.append("third"))
    release.set()
    assert runner.wait(10)
    runner.close()
    assert done == ["first", "third"]
    assert stops == [True]  # the running job was asked to stop
    assert (runner.superseded, errors) == (1, [])


def test_runner_delivers_exceptions_to_the_callback_and_keeps_running() -> None:
    errors: list[BaseException] = []
    runner = Runner(errors.append)
    results: list[int] = []

    def cancelled(stop: threading.Event) -> None:
        raise Cancelled

    def broken(stop: threading.Event) -> None:
        raise KeyError("lost?")

    for job in (broken, cancelled, lambda stop: results.append(1)):
        runner.submit(job)
        assert runner.wait(10)
    runner.close()
    assert [type(e) for e in errors] == [KeyError]  # Cancelled is not an error
    assert results == [1]


def test_runner_logs_when_the_error_callback_fails_too(caplog: pytest.LogCaptureFixture) -> None:
    def bad_callback(exc: BaseException) -> None:
        raise RuntimeError("callback broke")

    runner = Runner(bad_callback)

    def broken(stop: threading.Event) -> None:
        raise ValueError("original")

    runner.submit(broken)
    assert runner.wait(10)
    runner.close()
    assert "original" in caplog.text


def test_runner_wait_from_its_own_thread_raises_instead_of_deadlocking() -> None:
    errors: list[BaseException] = []
    runner = Runner(errors.append)
    runner.submit(lambda stop: runner.wait(1))
    assert runner.wait(10)
    runner.close()
    assert len(errors) == 1 and "wait for itself" in str(errors[0])
