"""The analyses of the Explorer in a live JupyterLab and headless Chromium: kernel x image,
the channel health check with its marks and list, and the strip of top-activating images."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (
    JupyterServer,
    kernel_eval,
    open_notebook,
    run_all,
    screenshot,
    set_theme,
)

pytestmark = pytest.mark.e2e

NOTEBOOK = "e2e_analysis.ipynb"
CELL = """
import cnn_widgets as cw
explorer = cw.Explorer(cw.zoo.load("lenet"), cw.zoo.sample_image("digit3"), layer="conv2")
explorer.images = [cw.zoo.sample_image(f"digit{i}") for i in range(10)]
explorer
""".strip()

# The natural size of a decoded picture, or null when it cannot be decoded.
NATURAL_SIZE_JS = """(img) => img.decode()
    .then(() => [img.naturalWidth, img.naturalHeight])
    .catch(() => null)"""


def role(name: str) -> str:
    return f".cnnw-root [data-role='{name}']"


def test_kernel_x_image_health_marks_and_top_images_in_the_browser(
    page: Page, jupyter_server: JupyterServer
) -> None:
    jupyter_server.add_notebook(NOTEBOOK, [CELL])
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_all(page)
    root = page.locator(".cnnw-root")
    expect(root).to_have_attribute("data-view", "activations")

    # The strip of the images that excite the selected channel most, with its scores.
    expect(page.locator(role("top-caption"))).to_contain_text(
        "top 9 of 10 images for channel 0 · max activation", timeout=60_000
    )
    strip = page.locator(role("top-strip"))
    expect(strip).to_be_visible()
    assert strip.evaluate(NATURAL_SIZE_JS) == [9 * 14 + 8 * 2, 14]  # nine 14-px crops

    # Kernel x image of filter 0: eight input channels, and their sum as the detail.
    page.locator(role("activation-mode")).select_option("kernel x image")
    expect(page.locator(role("page-info"))).to_have_text(
        "filter 0 × 8 input channels", timeout=60_000
    )
    expect(page.locator(role("detail-stats"))).to_contain_text("Σ of 8 inputs × filter 0")
    assert page.locator(role("grid")).evaluate(NATURAL_SIZE_JS) == [32, 32]  # 3x3 tiles of 10
    assert page.locator(role("detail")).evaluate(NATURAL_SIZE_JS) == [10, 10]
    assert kernel_eval(page, "explorer.activation_mode") == "'kernel x image'"
    screenshot(page, "analysis-kernel-x-image", root)

    # The health check runs on the widget's worker; its findings are listed as text.
    page.locator(role("health-run")).click()
    expect(page.locator(role("health-list"))).to_contain_text(
        "channel 4: dead channel — channel 4 is exactly 0", timeout=60_000
    )
    expect(page.locator(role("health-summary"))).to_contain_text("4 flagged channels in 'conv2'")
    expect(page.locator(role("health-run"))).to_be_enabled()
    # Back to the grid of channels: the flagged tiles are marked.
    page.locator(role("activation-mode")).select_option("grid")
    marks = page.locator(role("health-flag"))
    expect(marks).to_have_count(4, timeout=60_000)
    assert marks.evaluate_all("(ms) => ms.map((m) => m.dataset.channel)") == ["4", "6", "9", "10"]
    grid_box = page.locator(role("grid")).bounding_box()
    mark_box = marks.first.bounding_box()
    assert grid_box is not None and mark_box is not None
    assert grid_box["x"] <= mark_box["x"] < grid_box["x"] + grid_box["width"]
    screenshot(page, "analysis-light", root)

    set_theme(page, "dark")
    expect(marks).to_have_count(4)
    screenshot(page, "analysis-dark", root)
