"""The atlas browser in a live JupyterLab and headless Chromium: a store that is still being
written shows what is there, "Refresh" shows more, a hostile layer name stays text."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import JupyterServer, kernel_eval, open_notebook, run_all, screenshot

pytestmark = pytest.mark.e2e

HOSTILE = "<img src=x onerror=alert(1)>"
CELL = f"""
import tempfile
from collections import OrderedDict
from torch import nn
import cnn_widgets as cw

HOSTILE = {HOSTILE!r}
model = cw.adapt(
    nn.Sequential(OrderedDict([(HOSTILE, nn.Conv2d(1, 2, 3)), ("relu", nn.ReLU())])).eval(),
    input_shape=(1, 16, 16),
)
out = tempfile.mkdtemp()
options = dict(channels_per_unit=1, steps=2, progress=False)
first = cw.atlas(model, out, callback=lambda report: False, **options)  # one unit of four
browser = cw.AtlasBrowser(out)
browser
""".strip()


def role(page: Page, name: str) -> Any:
    return page.locator(f".cnnw-root [data-role='{name}']")


def test_the_browser_shows_a_growing_store_and_names_as_text(
    jupyter_server: JupyterServer, page: Page
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    jupyter_server.add_notebook("e2e_atlas.ipynb", [CELL])
    open_notebook(page, jupyter_server, "e2e_atlas.ipynb")
    run_all(page)
    expect(page.locator(".cnnw-root")).to_have_attribute("data-view", "atlas")
    expect(role(page, "atlas-summary")).to_contain_text("1 of 4 channels")
    expect(role(page, "layer").locator("option")).to_contain_text([HOSTILE, "relu"])
    expect(role(page, "grid")).to_be_visible()
    expect(role(page, "detail-stats")).to_contain_text("channel 0 · activation")

    kernel_eval(page, "cw.atlas(model, out, **options)")  # the rest, as another run would
    expect(role(page, "atlas-summary")).to_contain_text("1 of 4 channels")  # until asked
    role(page, "atlas-refresh").click()
    expect(role(page, "atlas-summary")).to_contain_text("4 of 4 channels · 2 of 2 layers")
    role(page, "layer").select_option("relu")
    assert kernel_eval(page, "browser.layer") == "'relu'"
    expect(role(page, "detail-stats")).to_contain_text("rank")
    screenshot(page, "atlas-browser", page.locator(".cnnw-root"))

    # A wrongly inserted <img> would have failed to load and run its handler by now.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 300)))")
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == []
