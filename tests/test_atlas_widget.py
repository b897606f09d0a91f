"""AtlasBrowser: a store browsed without the model, also while it is still being written."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.atlas import layer_dir
from tests.test_widgets import from_browser, recording_comms, sent  # noqa: F401 (fixture)

SMALL = {"layers": ["conv1", "conv2"], "max_channels": 6, "channels_per_unit": 3, "steps": 4,
         "progress": False}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("atlas")
    cw.atlas("lenet", out, **SMALL)
    return out


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_the_browser_lists_the_layers_and_tiles_the_stored_pictures(store: Path) -> None:
    browser = cw.AtlasBrowser(store, page_size=4)
    try:
        assert browser.view == "atlas" and browser.views == ["atlas"]
        names = [entry["name"] for entry in browser.layers]
        assert names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
        done = {entry["name"]: (entry["done"], entry["complete"]) for entry in browser.layers}
        assert done["conv1"] == (6, True) and done["relu1"] == (0, False)
        assert browser.layer == "conv1" and browser.channel_count == 8
        layout = browser.grid_layout
        assert layout["channels"] == [0, 1, 2, 3] and browser.grid_meta["pages"] == 2
        grid = decode(browser.grid)
        for i, channel in enumerate(layout["channels"]):  # each tile is the stored picture
            x = (i % layout["ncols"]) * (layout["tile_w"] + layout["pad"])
            y = (i // layout["ncols"]) * (layout["tile_h"] + layout["pad"])
            tile = grid[y : y + layout["tile_h"], x : x + layout["tile_w"], 0]
            stored = np.asarray(Image.open(browser.root / "conv1" / f"{channel}.png"))
            np.testing.assert_array_equal(tile, stored)
        browser.channel = 5  # page 2: channels 4..7, of which 6 and 7 are not in the atlas
        assert browser.page == 1 and browser.grid_layout["channels"] == [4, 5, 6, 7]
        assert browser.grid_meta["text"] == "2 of 4 here"
        assert browser.detail == (browser.root / "conv1" / "5.png").read_bytes()
        stats = browser.detail_stats
        record = json.loads((browser.root / "conv1" / "5.json").read_text())
        assert stats["activation"] == record["activation"] and 1 <= stats["rank"] <= 6
        browser.channel = 7
        assert browser.detail == b"" and browser.detail_stats["missing"]
    finally:
        browser.close()


def test_the_browser_follows_the_browser_side_and_refuses_bad_values(store: Path) -> None:
    browser = cw.AtlasBrowser(store)
    try:
        from_browser(browser, layer="conv2")
        assert browser.layer == "conv2" and browser.channel_count == 16 and not browser.error
        from_browser(browser, layer="nope")
        assert browser.layer == "conv2" and "no layer 'nope'" in browser.error
        from_browser(browser, channel=99)
        assert browser.channel == 0 and "out of range 0..15" in browser.error
        from_browser(browser, channel=2)
        assert browser.error == "" and browser.detail_stats["channel"] == 2
        assert sent(browser)["detail"] == browser.detail  # binary buffer to the browser
    finally:
        browser.close()
    with pytest.raises(ValueError, match="no layer 'nope'"):
        cw.AtlasBrowser(store, layer="nope")


def test_a_store_still_being_written_shows_what_is_there_and_refresh_shows_more(
    tmp_path: Path,
) -> None:
    cw.atlas("lenet", tmp_path, callback=lambda report: False, **SMALL)  # one unit of four
    browser = cw.AtlasBrowser(tmp_path, page_size=8)
    try:
        assert browser.atlas_info["done"] == 3 and browser.atlas_info["complete"] == 0
        assert browser.grid_meta["text"] == "3 of 8 here"
        cw.atlas("lenet", tmp_path, **SMALL)
        assert browser.atlas_info["done"] == 3  # not re-read on its own ...
        from_browser(browser, atlas_refresh=1)  # ... until "Refresh"
        assert browser.atlas_info["done"] == 12 and browser.atlas_info["complete"] == 2
        assert browser.grid_meta["text"] == "6 of 8 here"
    finally:
        browser.close()


def test_an_out_with_two_atlases_needs_a_fingerprint(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no atlas in"):
        cw.AtlasBrowser(tmp_path)
    (tmp_path / "0123456789abcdef").mkdir()
    (tmp_path / "0123456789abcdef" / "atlas.json").write_text("{}")
    (tmp_path / "fedcba9876543210").mkdir()
    (tmp_path / "fedcba9876543210" / "atlas.json").write_text("{}")
    with pytest.raises(ValueError, match="pass fingerprint= one of 0123456789abcdef"):
        cw.AtlasBrowser(tmp_path)
    empty = cw.AtlasBrowser(tmp_path, "fedcba9876543210")
    assert empty.layers == [] and empty.grid == b"" and empty.status.startswith("empty")
    empty.close()


def test_the_browser_never_loads_a_framework(store: Path) -> None:
    code = (
        "import sys, cnn_widgets as cw\n"
        f"b = cw.AtlasBrowser({str(store)!r}); b.channel = 3\n"
        "assert b.detail, 'no picture'\n"
        "print(sorted(m for m in ('torch', 'keras', 'tensorflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, check=True)
    assert done.stdout.strip() == "[]"


HOSTILE = "<img src=x onerror=\"self['pwned']=1\">/etc/passwd\\x"


def hostile_model() -> torch.nn.Module:
    """A torch model whose layer name is markup with paths in it (torch allows all but ".",
    which nested modules put between names)."""
    layers = OrderedDict([(HOSTILE, torch.nn.Conv2d(1, 2, 3)), ("relu", torch.nn.ReLU())])
    return torch.nn.Sequential(layers).eval()


def test_a_hostile_layer_name_stays_one_directory_and_comes_back_as_text(tmp_path: Path) -> None:
    model = cw.adapt(hostile_model(), input_shape=(1, 12, 12))
    report = cw.atlas(model, tmp_path, steps=2, progress=False)
    assert (report.out / layer_dir(HOSTILE) / "0.png").is_file()
    assert sorted(p.name for p in report.out.iterdir()) == sorted(
        ["atlas.json", layer_dir(HOSTILE), "relu"]
    )
    browser = cw.AtlasBrowser(tmp_path)
    try:
        assert browser.layers[0]["name"] == HOSTILE and browser.layer == HOSTILE
        assert browser.detail_stats["activation"] is not None
    finally:
        browser.close()


def test_refresh_every_rereads_the_store_in_the_background(tmp_path: Path) -> None:
    cw.atlas("lenet", tmp_path, callback=lambda report: False, **SMALL)
    browser = cw.AtlasBrowser(tmp_path, refresh_every=0.05)
    try:
        assert browser.atlas_info["done"] == 3
        cw.atlas("lenet", tmp_path, **SMALL)
        deadline = time.monotonic() + 30  # a deadline for the event, not a timing assertion
        while browser.atlas_info["done"] != 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert browser.atlas_info["done"] == 12
    finally:
        browser.close()
    with pytest.raises(ValueError, match="refresh_every"):
        cw.AtlasBrowser(tmp_path, refresh_every=0)
