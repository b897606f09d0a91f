"""The feature-visualization view of the Explorer in a live JupyterLab and headless Chromium.

Run, watch frames arrive (the picture's object URL changes with every frame), Stop, and the
kernel keeps answering while the optimization runs on the widget's worker thread.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import JupyterServer, kernel_eval, open_notebook, run_all, screenshot

pytestmark = pytest.mark.e2e

NOTEBOOK = "e2e_featureviz.ipynb"
# Many steps, so that Stop surely lands while the run is going (lenet: ~10 ms a step).
CELL = """
import cnn_widgets as cw
explorer = cw.Explorer(
    cw.zoo.load("lenet"), cw.zoo.sample_image("digit3"), view="featureviz", fv_steps={steps}
)
explorer
""".strip()

# Records every src the big picture takes (each streamed frame is a new object URL).
RECORD_SOURCES_JS = """(root) => {
    const grid = root.querySelector("[data-role='grid']");
    window.__fvSources = [];
    new MutationObserver(() => {
        const src = grid.getAttribute("src");
        if (src && window.__fvSources.at(-1) !== src) window.__fvSources.push(src);
    }).observe(grid, { attributes: true, attributeFilter: ["src"] });
}"""


def role(page: Page, name: str) -> str:
    return f".cnnw-root [data-role='{name}']"


def _open(page: Page, server: JupyterServer, steps: int) -> None:
    server.add_notebook(NOTEBOOK, [CELL.format(steps=steps)])
    open_notebook(page, server, NOTEBOOK)
    run_all(page)
    expect(page.locator(".cnnw-root")).to_have_attribute("data-view", "featureviz")
    expect(page.locator(role(page, "fv-hint"))).to_be_visible()


def test_run_streams_frames_stop_says_stopped_and_the_kernel_stays_responsive(
    page: Page, jupyter_server: JupyterServer
) -> None:
    _open(page, jupyter_server, steps=3000)
    page.locator(".cnnw-root").evaluate(RECORD_SOURCES_JS)
    page.locator(role(page, "fv-run")).click()
    page.wait_for_function("() => window.__fvSources.length >= 3", timeout=60_000)
    # The kernel answers while the optimization runs (it runs on the worker thread).
    assert kernel_eval(page, "explorer.fv_running") == "True"
    assert int(kernel_eval(page, "explorer.fv_step")) > 0
    expect(page.locator(role(page, "fv-stop"))).to_be_enabled()
    screenshot(page, "featureviz-running", page.locator(".cnnw-root"))
    page.locator(role(page, "fv-stop")).click()
    expect(page.locator(role(page, "status-text"))).to_have_text("stopped", timeout=30_000)
    expect(page.locator(role(page, "fv-stop"))).to_be_disabled()
    assert kernel_eval(page, "explorer.fv_running") == "False"
    assert kernel_eval(page, "explorer.fv_meta['state']") == "'stopped'"
    step = int(kernel_eval(page, "explorer.fv_step"))
    assert 0 < step < 3000
    # The last picture is the stopped run's PNG, decoded in the page.
    expect(page.locator(role(page, "fv-progress-text"))).to_contain_text(
        f"step {step} of 3000 · stopped"
    )
    natural = page.locator(role(page, "grid")).evaluate(
        "(img) => img.decode().then(() => [img.naturalWidth, img.naturalHeight])"
    )
    assert natural == [86, 86]  # 8 tiles of 28 px, 3 x 3 with 1-pixel gaps
    screenshot(page, "featureviz-stopped", page.locator(".cnnw-root"))


def test_a_finished_run_in_the_dark_theme(dark_page: Page, jupyter_server: JupyterServer) -> None:
    page = dark_page
    _open(page, jupyter_server, steps=150)
    page.locator(role(page, "fv-run")).click()
    expect(page.locator(role(page, "fv-progress-text"))).to_contain_text(
        "step 150 of 150 · done", timeout=60_000
    )
    expect(page.locator(role(page, "status-text"))).to_have_text("idle")
    # Selecting a tile shows that channel's image enlarged.
    grid = page.locator(role(page, "grid"))
    box = grid.bounding_box()
    assert box is not None
    grid.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.15})
    expect(page.locator(role(page, "detail-stats"))).to_contain_text("channel 1")
    assert kernel_eval(page, "explorer.channel") == "1"
    screenshot(page, "featureviz-dark", page.locator(".cnnw-root"))
