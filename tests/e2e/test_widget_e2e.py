"""The Explorer of the quickstart notebook, used through a live JupyterLab in headless Chromium.

The tests of :class:`TestQuickstartExplorer` share one page on which the quickstart notebook
has run (opening JupyterLab and running it costs ~20 s, paid once); before each test the
widget is put back to a baseline from Python, so every test starts from the same state and
can fail on its own. Each test checks both sides:

* Python: the widget's traits, read in the notebook's kernel with ``kernel_eval``;
* the page: the pictures the browser shows are exactly the bytes Python published last
  (compared by size through their blob URLs), decoded (``img.decode()``) with a natural size,
  and their object URL changed when the picture should have.

The hostile-layer-name test runs last, on a page of its own (its teardown ends all kernels).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import _CONSOLE_KEY  # the failure report's browser-console section
from tests.e2e.helpers import (
    REPO_ROOT,
    VIEWPORT,
    JupyterServer,
    current_theme,
    kernel_eval,
    open_notebook,
    run_all,
    screenshot,
    set_theme,
)

pytestmark = pytest.mark.e2e

QUICKSTART = "quickstart.ipynb"
#: The README's screenshot, rewritten by every run of the screenshot test.
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "explorer.png"
FIRST_LAYER = "_conv_stem"  # 32 channels of 112 x 112: one page, a 6 x 6 grid
SYNC_TIMEOUT_S = 60.0  # a layer nobody has looked at yet needs a forward pass on 2 cores

# Defined once in the kernel: put the widget back to the notebook's initial state, and
# describe what it last published (the browser must end up showing exactly that).
KERNEL_HELPERS = f'''
def _e2e_reset():
    explorer.view = "activations"
    explorer.image = image
    explorer.layer = "{FIRST_LAYER}"
    explorer.channel = 0
    explorer.normalization, explorer.colormap = "layer", "viridis"
    explorer.activation_mode = "grid"
    explorer.wait()
    explorer.error = ""


def _e2e_published():
    import json
    explorer.wait()
    meta = explorer.grid_meta
    return json.dumps({{
        "grid": len(explorer.grid), "detail": len(explorer.detail),
        "image": len(explorer.image_png),
        "width": meta.get("width", 0), "height": meta.get("height", 0),
    }})
'''

# What each picture of the widget shows: its object URL, its byte size, its decoded size.
# Null while a picture is being replaced (then the caller asks again).
SHOWN_JS = """async (root) => {
    const out = {};
    for (const role of ['grid', 'detail', 'input-image']) {
        const img = root.querySelector(`[data-role='${role}']`);
        const src = img.getAttribute('src');
        if (img.hidden || !src) {
            out[role] = {src: '', bytes: 0, width: 0, height: 0};
            continue;
        }
        try {
            await img.decode();  // decoded and ready to paint, or it throws
            const blob = await (await fetch(src)).blob();
            if (img.getAttribute('src') !== src) return null;
            out[role] = {src, bytes: blob.size, width: img.naturalWidth, height: img.naturalHeight};
        } catch (error) {
            return null;  // the URL was revoked by a newer picture
        }
    }
    return out;
}"""

# Count the src changes of the widget's pictures from now on (read with COUNT_SRC_CHANGES_JS).
WATCH_SRC_CHANGES_JS = """(root) => {
    window.__e2eSrcChanges?.observer.disconnect();
    const counts = {grid: 0, detail: 0, 'input-image': 0};
    const observer = new MutationObserver((records) => {
        for (const record of records) counts[record.target.getAttribute('data-role')] += 1;
    });
    for (const role of Object.keys(counts)) {
        const img = root.querySelector(`[data-role='${role}']`);
        observer.observe(img, {attributes: true, attributeFilter: ['src']});
    }
    window.__e2eSrcChanges = {observer, counts};
}"""
COUNT_SRC_CHANGES_JS = "() => ({...window.__e2eSrcChanges.counts})"

# RGBA of one pixel of a picture (natural coordinates; null for the centre), via a canvas.
PIXEL_JS = """(img, point) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const [x, y] = point ?? [Math.floor(img.naturalWidth / 2), Math.floor(img.naturalHeight / 2)];
    return Array.from(context.getImageData(x, y, 1, 1).data);
}"""

# WCAG contrast of an element's text against the first opaque background behind it.
CONTRAST_JS = """(el) => {
    const parse = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
        const channel = (v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        };
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    };
    let node = el, background = null;
    while (node && node.nodeType === 1) {
        const rgba = parse(getComputedStyle(node).backgroundColor);
        if (rgba.length >= 3 && (rgba.length < 4 || rgba[3] > 0.5)) {
            background = rgba;
            break;
        }
        node = node.parentElement;
    }
    background ??= [255, 255, 255];
    const fg = luminance(parse(getComputedStyle(el).color));
    const bg = luminance(background);
    return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""


# --------------------------------------------------------------------------- helpers


def role(page: Page, name: str) -> Locator:
    """The widget's element with ``data-role=name`` (the page holds one widget)."""
    return page.locator(f".cnnw-root [data-role='{name}']")


def view_button(page: Page, view: str) -> Locator:
    """The button of the view switch that shows ``view``."""
    return page.locator(f".cnnw-root [data-role='view'][data-view='{view}']")


def published(page: Page) -> dict[str, int]:
    """What the kernel's ``explorer`` published last (after its worker finished)."""
    return json.loads(kernel_eval(page, "print(_e2e_published())"))


def grid_layout(page: Page) -> dict[str, Any]:
    """The tile geometry of the grid Python published last."""
    return json.loads(kernel_eval(page, "import json; print(json.dumps(explorer.grid_layout))"))


def shown(page: Page) -> dict[str, dict[str, Any]] | None:
    """What the page shows now (see ``SHOWN_JS``); None while a picture is being replaced."""
    return page.locator(".cnnw-root").evaluate(SHOWN_JS)


def wait_in_sync(page: Page, timeout_s: float = SYNC_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Wait until the page shows, decoded, exactly the pictures Python published last."""
    deadline = time.monotonic() + timeout_s
    expected = published(page)
    while True:
        now = shown(page)
        if now is not None and all(
            now[role_name]["bytes"] == expected[key]
            for role_name, key in (("grid", "grid"), ("detail", "detail"), ("input-image", "image"))
        ):
            assert now["grid"]["width"] == expected["width"], (now, expected)
            assert now["grid"]["height"] == expected["height"], (now, expected)
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the page shows {now}, but Python published {expected}")
        time.sleep(0.1)


def wait_for_python(page: Page, expression: str, expected: str, timeout_s: float = 30.0) -> None:
    """Poll ``kernel_eval(expression)`` until it reads ``expected`` (browser input is async)."""
    deadline = time.monotonic() + timeout_s
    while (value := kernel_eval(page, expression)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} is {value}, expected {expected}")
        time.sleep(0.1)


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    """A PNG file of one colour."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[...] = color
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def save_docs_screenshot(source: Path, target: Path) -> None:
    """Write a screenshot for the docs as a 256-colour PNG: a quarter of the bytes of the
    lossless capture and no visible difference (the repository keeps it, rewritten each run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as shot:
        palette = shot.convert("RGB").quantize(
            256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
    palette.save(target, format="PNG", optimize=True)


# --------------------------------------------------------------------------- the quickstart


@pytest.fixture(scope="module")
def quickstart(browser: Browser, jupyter_server: JupyterServer) -> Iterator[tuple[Page, list[str]]]:
    """A page on which the quickstart notebook has run, and its browser console."""
    jupyter_server.set_theme("light")
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(30_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"[{message.type}] {message.text}"))
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    try:
        open_notebook(page, jupyter_server, QUICKSTART)
        run_all(page)
        kernel_eval(page, KERNEL_HELPERS)
        yield page, console
    finally:
        context.close()
        jupyter_server.shutdown_kernels()
        jupyter_server.set_theme("light")


class TestQuickstartExplorer:
    """``explorer = cw.Explorer(model, image)``: EfficientNet-Lite0 and the chelsea photo."""

    @pytest.fixture
    def page(
        self, request: pytest.FixtureRequest, quickstart: tuple[Page, list[str]]
    ) -> Iterator[Page]:
        """The shared quickstart page, with the Explorer back at its baseline and in sync."""
        page, console = quickstart
        request.node.stash[_CONSOLE_KEY] = console
        if current_theme(page) != "JupyterLab Light":
            set_theme(page, "light")
        kernel_eval(page, "_e2e_reset()")
        wait_in_sync(page)
        expect(role(page, "layer")).to_have_value(FIRST_LAYER)
        expect(role(page, "channel-slider")).to_have_value("0")
        expect(page.locator(".cnnw-root")).to_have_attribute("data-view", "activations")
        yield page

    def test_quickstart_explorer_paints_the_first_convolution_for_the_photo(
        self, page: Page
    ) -> None:
        assert kernel_eval(page, "explorer.view") == "'activations'"
        assert kernel_eval(page, "explorer.layer") == f"'{FIRST_LAYER}'"
        assert kernel_eval(page, "explorer.error") == "''"
        now = wait_in_sync(page)
        assert all(now[name]["width"] > 0 for name in ("grid", "detail", "input-image"))
        expect(role(page, "page-info")).to_have_text("32 of 32 shown")
        expect(role(page, "detail-stats")).to_contain_text("channel 0")
        expect(role(page, "status")).to_have_text("idle")
        expect(role(page, "error")).to_be_hidden()

    def test_picking_a_layer_in_the_menu_shows_its_feature_maps(self, page: Page) -> None:
        before = shown(page)
        assert before is not None
        page.locator(".cnnw-root").evaluate(WATCH_SRC_CHANGES_JS)
        role(page, "layer").select_option("_blocks.2._relu0")

        wait_for_python(page, "explorer.layer", "'_blocks.2._relu0'")
        assert kernel_eval(page, "explorer.channel_count") == "144"
        now = wait_in_sync(page)
        assert now["grid"]["src"] != before["grid"]["src"]
        assert now["grid"]["width"] > 0
        expect(role(page, "page-info")).to_contain_text("64 of 144 shown")
        assert page.evaluate(COUNT_SRC_CHANGES_JS) == {"grid": 1, "detail": 1, "input-image": 0}
        expect(role(page, "channel-slider")).to_have_attribute("max", "143")

    def test_moving_the_channel_slider_redraws_only_the_selected_channel(self, page: Page) -> None:
        before = shown(page)
        assert before is not None
        slider = role(page, "channel-slider")
        page.locator(".cnnw-root").evaluate(WATCH_SRC_CHANGES_JS)
        slider.fill("17")  # sets the value and dispatches input + change, as a drag does

        wait_for_python(page, "explorer.channel", "17")
        now = wait_in_sync(page)
        assert now["detail"]["src"] != before["detail"]["src"]
        assert now["grid"]["src"] == before["grid"]["src"]  # same page: the grid stays
        # One new picture is one new object URL (one load, one decode), however many change
        # events its update fires.
        assert page.evaluate(COUNT_SRC_CHANGES_JS) == {"grid": 0, "detail": 1, "input-image": 0}
        expect(role(page, "detail-stats")).to_contain_text("channel 17")
        expect(role(page, "channel-number")).to_have_value("17")

        slider.focus()
        slider.press("ArrowRight")
        slider.press("ArrowRight")
        wait_for_python(page, "explorer.channel", "19")
        after = wait_in_sync(page)
        assert after["detail"]["src"] != now["detail"]["src"]
        expect(role(page, "detail-stats")).to_contain_text("channel 19")
        expect(role(page, "highlight")).to_be_visible()

    def test_a_channel_on_screen_is_previewed_from_its_tile_without_the_kernel(
        self, page: Page
    ) -> None:
        # Hold the kernel busy: the slider's message waits in its queue, so whatever the
        # detail shows meanwhile was drawn by the browser alone, from the grid's tile.
        page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
                .requestExecute({code: 'import time; time.sleep(3)', store_history: false})"""
        )
        role(page, "channel-slider").fill("21")  # on the first page: its tile is on screen
        figure = role(page, "detail-figure")
        expect(figure).to_have_attribute("data-state", "provisional", timeout=1500)
        expect(role(page, "detail-preview")).to_be_visible()
        expect(role(page, "detail-stats")).to_contain_text("channel 21 · preview")
        # Once the kernel answers, its exact picture replaces the preview.
        wait_for_python(page, "explorer.channel", "21")
        wait_in_sync(page)
        expect(figure).to_have_attribute("data-state", "exact")
        expect(role(page, "detail-preview")).to_be_hidden()
        expect(role(page, "detail-stats")).to_contain_text("channel 21")

    def test_clicking_a_grid_tile_selects_its_channel(self, page: Page) -> None:
        layout = grid_layout(page)
        channel = 10  # row 1, column 4 of the 6-column grid
        index = channel - layout["offset"]
        column, row = index % layout["ncols"], index // layout["ncols"]
        grid = role(page, "grid")
        box = grid.bounding_box()
        assert box is not None
        scale_x, scale_y = box["width"] / layout["width"], box["height"] / layout["height"]
        x = (column * (layout["tile_w"] + layout["pad"]) + layout["tile_w"] / 2) * scale_x
        y = (row * (layout["tile_h"] + layout["pad"]) + layout["tile_h"] / 2) * scale_y
        grid.click(position={"x": x, "y": y})

        wait_for_python(page, "explorer.channel", str(channel))
        wait_in_sync(page)
        expect(role(page, "channel-slider")).to_have_value(str(channel))
        expect(role(page, "detail-stats")).to_contain_text(f"channel {channel}")
        # The highlight frame sits on the clicked tile.
        frame = role(page, "highlight").bounding_box()
        assert frame is not None
        assert frame["x"] <= box["x"] + x <= frame["x"] + frame["width"]
        assert frame["y"] <= box["y"] + y <= frame["y"] + frame["height"]

    def test_view_buttons_switch_to_the_filters_and_back(self, page: Page) -> None:
        before = shown(page)
        assert before is not None
        view_button(page, "filters").click()

        wait_for_python(page, "explorer.view", "'filters'")
        assert kernel_eval(page, "explorer.layer") == f"'{FIRST_LAYER}'"
        now = wait_in_sync(page)
        assert now["grid"]["src"] != before["grid"]["src"]
        expect(page.locator(".cnnw-root")).to_have_attribute("data-view", "filters")
        expect(role(page, "input-image")).to_be_hidden()  # filters do not depend on the image
        expect(role(page, "detail-stats")).to_contain_text("filter 0")
        expect(view_button(page, "filters")).to_have_attribute("aria-pressed", "true")
        # The first convolution's filters are drawn in RGB; the gaps between them are
        # transparent, so a dark theme shows through instead of white bars.
        layout = grid_layout(page)
        assert role(page, "grid").evaluate(PIXEL_JS, [layout["tile_w"], 0])[3] == 0
        assert role(page, "grid").evaluate(PIXEL_JS, [0, 0])[3] == 255

        view_button(page, "activations").click()
        wait_for_python(page, "explorer.view", "'activations'")
        wait_in_sync(page)
        expect(role(page, "input-image")).to_be_visible()

    def test_layer_table_lists_every_layer_and_a_row_click_selects_it(self, page: Page) -> None:
        before = shown(page)
        assert before is not None
        view_button(page, "table").click()

        wait_for_python(page, "explorer.view", "'table'")
        expect(role(page, "layer-table")).to_be_visible()
        expect(role(page, "grid")).to_be_hidden()
        assert role(page, "table-row").count() == int(kernel_eval(page, "len(explorer.layers)"))

        target = "_blocks.1._expand_conv"
        page.locator(f".cnnw-root [data-role='table-row'][data-layer='{target}']").click()
        wait_for_python(page, "explorer.layer", f"'{target}'")
        # A row click goes back to the picture view the user came from.
        assert kernel_eval(page, "explorer.view") == "'activations'"
        now = wait_in_sync(page)
        assert now["grid"]["src"] != before["grid"]["src"]
        expect(role(page, "layer")).to_have_value(target)
        expect(role(page, "layer-table")).to_be_hidden()
        row = page.locator(f".cnnw-root [data-role='table-row'][data-layer='{target}']")
        expect(row).to_have_attribute("aria-selected", "true")

    def test_picking_a_sample_image_feeds_it_to_the_model(self, page: Page) -> None:
        before = shown(page)
        assert before is not None
        role(page, "sample").select_option("astronaut")

        wait_for_python(page, "explorer.sample", "'astronaut'")
        now = wait_in_sync(page)
        assert now["input-image"]["src"] != before["input-image"]["src"]
        assert now["grid"]["src"] != before["grid"]["src"]  # new feature maps
        assert kernel_eval(page, "explorer.error") == "''"

    def test_uploading_a_png_makes_it_the_input_image(self, page: Page) -> None:
        before = shown(page)
        assert before is not None
        role(page, "upload").set_input_files(
            files=[{"name": "red.png", "mimeType": "image/png", "buffer": png_bytes((255, 0, 0))}]
        )

        wait_for_python(page, "explorer.upload_name", "'red.png'")
        wait_for_python(page, "len(explorer.upload)", "0")  # consumed
        assert kernel_eval(page, "explorer.error") == "''"
        assert kernel_eval(page, "explorer.sample") == "''"
        now = wait_in_sync(page)
        assert now["input-image"]["src"] != before["input-image"]["src"]
        assert now["grid"]["src"] != before["grid"]["src"]
        assert role(page, "input-image").evaluate(PIXEL_JS, None) == [255, 0, 0, 255]
        expect(role(page, "error")).to_be_hidden()

    def test_uploading_a_text_file_shows_an_error_and_keeps_the_image(self, page: Page) -> None:
        image_digest = "import hashlib; hashlib.sha1(explorer.image_png).hexdigest()"
        digest = kernel_eval(page, image_digest)
        before = shown(page)
        assert before is not None
        role(page, "upload").set_input_files(
            files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture\n"}]
        )

        wait_for_python(page, "bool(explorer.error)", "True")
        error = kernel_eval(page, "print(explorer.error)")
        assert error.startswith("Explorer: cannot use the uploaded file 'notes.txt'"), error
        assert kernel_eval(page, image_digest) == digest
        expect(role(page, "error")).to_be_visible()
        expect(role(page, "error")).to_contain_text("cannot use the uploaded file 'notes.txt'")
        now = wait_in_sync(page)
        assert now["input-image"]["src"] == before["input-image"]["src"]
        assert now["grid"]["src"] == before["grid"]["src"]
        assert now["input-image"]["width"] > 0

    def test_widget_is_readable_in_light_and_dark_theme(self, page: Page) -> None:
        # A state that shows every part of the feature-map view; it also makes the README's
        # screenshot.
        kernel_eval(page, 'explorer.layer = "_blocks.1._relu0"; explorer.channel = 21')
        wait_for_python(page, "explorer.channel", "21")
        wait_in_sync(page)
        widget = page.locator(".cnnw-root")
        texts = [
            role(page, "layer"),
            role(page, "detail-stats"),
            role(page, "page-info"),
            page.locator(".cnnw-root .cnnw-label").first,
            view_button(page, "filters"),
            view_button(page, "activations"),
        ]

        # Tall enough that the notebook panel does not clip the widget in the screenshots.
        page.set_viewport_size({"width": VIEWPORT["width"], "height": 1600})
        light_background = widget.evaluate("el => getComputedStyle(el).backgroundColor")
        light = screenshot(page, "explorer_light", target=widget)
        save_docs_screenshot(light, DOCS_SCREENSHOT)
        light_contrast = [text.evaluate(CONTRAST_JS) for text in texts]

        set_theme(page, "dark")
        try:
            dark_background = widget.evaluate("el => getComputedStyle(el).backgroundColor")
            screenshot(page, "explorer_dark", target=widget)
            dark_contrast = [text.evaluate(CONTRAST_JS) for text in texts]
            # The error box too (its colours are a tint of the theme's error colour).
            kernel_eval(page, 'explorer.layer = "no such layer"')
            expect(role(page, "error")).to_be_visible()
            error_contrast = role(page, "error").evaluate(CONTRAST_JS)
            screenshot(page, "explorer_dark_error", target=role(page, "error"))
        finally:
            set_theme(page, "light")
            page.set_viewport_size(VIEWPORT)

        assert light_background != dark_background
        # WCAG AA asks 4.5 for body text; 3 is the floor for large or secondary text.
        assert min(light_contrast) >= 3.0, light_contrast
        assert min(dark_contrast) >= 3.0, dark_contrast
        assert error_contrast >= 3.0, error_contrast


# --------------------------------------------------------------------------- hostile names

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_CELL = f"""
from torch import nn
import cnn_widgets as cw

HOSTILE = {HOSTILE!r}


class Hostile(nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module(HOSTILE, nn.Conv2d(3, 4, 3))

    def forward(self, x):
        return getattr(self, HOSTILE)(x)


hostile = cw.Explorer(Hostile())
hostile
""".strip()


def test_hostile_layer_name_is_shown_as_text_and_never_run(
    jupyter_server: JupyterServer, page: Page
) -> None:
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    jupyter_server.add_notebook("e2e_hostile.ipynb", [HOSTILE_CELL])
    open_notebook(page, jupyter_server, "e2e_hostile.ipynb")
    run_all(page)
    assert kernel_eval(page, "hostile.layer") == repr(HOSTILE)
    expect(role(page, "grid")).to_be_visible()

    # Everywhere the name is shown: the layer menu, the tooltip, the table.
    expect(role(page, "layer").locator("option")).to_contain_text([HOSTILE])
    role(page, "grid").hover(position={"x": 5, "y": 5})
    expect(role(page, "tooltip")).to_contain_text(HOSTILE)
    view_button(page, "table").click()
    expect(page.locator(".cnnw-root td", has_text=HOSTILE)).to_be_visible()
    row = role(page, "table-row")
    expect(row).to_have_attribute("data-layer", HOSTILE)

    # Let a wrongly inserted <img> fail to load and run its handler before looking.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 300)))")
    assert page.locator("img[src='x']").count() == 0
    # Only the widget's own pictures (some hidden in this view), each with its role.
    roles = page.locator(".cnnw-root img").evaluate_all("(ns) => ns.map((n) => n.dataset.role)")
    assert sorted(roles) == [
        "attr-picture",
        "detail",
        "grid",
        "input-image",
        "monitor-filters",
        "monitor-maps",
        "top-strip",
    ]
    assert dialogs == []
