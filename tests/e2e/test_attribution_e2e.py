"""The attribution view in a live JupyterLab and headless Chromium: a click on a class changes
the overlay, compare mode shows several maps, and class labels (hostile ones too) are text."""

from __future__ import annotations

from typing import Any

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

HOSTILE = "<img src=x onerror=alert(1)>"
NOTEBOOK = "e2e_attribution.ipynb"
CELL = f"""
import numpy as np
import torch
from torch import nn
import cnn_widgets as cw

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
).eval()
labels = [{HOSTILE!r} + f" {{i}}" for i in range(10)]
adapter = cw.adapt(model, input_shape=(3, 32, 32), labels=labels)
image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
viewer = cw.AttributionViewer(adapter, image)
viewer
""".strip()


def role(name: str) -> str:
    return f".cnnw-root [data-role='{name}']"


def test_click_a_class_compare_and_hostile_labels_in_the_browser(
    page: Page, jupyter_server: JupyterServer
) -> None:
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    jupyter_server.add_notebook(NOTEBOOK, [CELL])
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_all(page)
    root = page.locator(".cnnw-root")
    expect(root).to_have_attribute("data-view", "attribution")
    classes = page.locator(role("attr-class"))
    expect(classes).to_have_count(5, timeout=60_000)
    picture = page.locator(role("attr-picture"))
    expect(picture).to_be_visible()

    # The labels are text: every button shows the hostile string, no <img src=x> appeared.
    expect(classes.first).to_contain_text(HOSTILE)
    expect(page.locator(role("attr-line"))).to_contain_text(HOSTILE)
    first = int(classes.first.get_attribute("data-class") or -1)
    assert classes.first.get_attribute("aria-pressed") == "true"
    screenshot(page, "attribution-light", root)

    # A click on the second class: the overlay is recomputed for it.
    before = picture.get_attribute("src")
    second = classes.nth(1)
    index = int(second.get_attribute("data-class") or -1)
    assert index not in (-1, first)
    second.click()
    expect(second).to_have_attribute("aria-pressed", "true", timeout=60_000)
    expect(picture).not_to_have_attribute("src", before or "", timeout=60_000)
    assert kernel_eval(page, "viewer.attr_meta['target']") == str(index)
    assert kernel_eval(page, "viewer.attributions[0].target") == str(index)

    # Compare mode: the quick methods side by side, one caption each.
    page.locator(role("attr-compare")).check()
    captions = page.locator(role("attr-captions") + " > span")
    expect(captions).to_have_count(4, timeout=60_000)
    expect(captions.first).to_contain_text("Grad-CAM")
    assert kernel_eval(page, "len(viewer.attributions)") == "4"
    screenshot(page, "attribution-compare-light", root)
    set_theme(page, "dark")
    expect(captions).to_have_count(4)
    screenshot(page, "attribution-compare-dark", root)

    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 300)))")
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == []
