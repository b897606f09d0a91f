"""The training monitor in a live JupyterLab and headless Chromium: frames arrive while a
training cell keeps the kernel busy, and the timeline scrubs through them without it."""

from __future__ import annotations

import re

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

NOTEBOOK = "e2e_monitor.ipynb"
CELL = """
import time
import torch
import cnn_widgets as cw
from cnn_widgets.zoo.lenet import build_torch, mnist_5k

torch.manual_seed(0)
images, labels = mnist_5k()
x = torch.from_numpy(images[:2000]).float().div(255).unsqueeze(1)
y = torch.from_numpy(labels[:2000])
model = build_torch(pretrained=False)
with torch.no_grad():
    model.conv1.weight.mul_(0.1)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
monitor = cw.TrainingMonitor(cw.adapt(model, input_shape=(1, 28, 28)), every=4, max_fps=5)
monitor
""".strip()

# Started without waiting for it: the kernel stays busy with it while the test watches.
TRAIN = """
model.train()
with monitor.watch(optimizer):
    for batch in torch.arange(2000).split(32):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        monitor.record(loss=loss)
        time.sleep(0.06)
"""

START_JS = """(code) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    window.__e2eTraining = kernel.requestExecute({code, store_history: false}).done;
}"""


def role(name: str) -> str:
    return f".cnnw-root [data-role='{name}']"


def shown_step(page: Page) -> int:
    text = page.locator(role("monitor-step")).text_content() or ""
    found = re.match(r"step (\d+)", text)
    return int(found.group(1)) if found else -1


def test_frames_arrive_during_training_and_the_timeline_scrubs_them(
    page: Page, jupyter_server: JupyterServer
) -> None:
    jupyter_server.add_notebook(NOTEBOOK, [CELL])
    open_notebook(page, jupyter_server, NOTEBOOK)
    run_all(page)
    root = page.locator(".cnnw-root")
    expect(root).to_have_attribute("data-view", "monitor")
    expect(page.locator(role("monitor-step"))).to_contain_text("step 0 · frame 1 of 1")

    page.evaluate(START_JS, TRAIN)
    # Frames arrive while the kernel is busy with the training cell.
    seen: set[int] = set()
    for _ in range(200):
        seen.add(shown_step(page))
        if len(seen - {0, -1}) >= 3:
            break
        page.wait_for_timeout(50)
    assert len(seen - {0, -1}) >= 3, seen
    # The timeline goes back to the first frame while training still runs: no kernel needed.
    timeline = page.locator(role("monitor-timeline"))
    timeline.fill("0")
    expect(page.locator(role("monitor-step"))).to_contain_text("step 0 · frame 1 of")
    assert kernel_busy(page)
    screenshot(page, "monitor-training", root)

    page.wait_for_function("() => window.__e2eTraining.then(() => true)", timeout=120_000)
    assert kernel_eval(page, "monitor.recorder.steps") == "63"
    page.wait_for_timeout(500)  # the last frame goes out within 1 / max_fps
    last = int(timeline.get_attribute("max") or 0)
    assert last >= 4
    timeline.fill(str(last))
    expect(page.locator(role("monitor-step"))).to_contain_text("step 60 · frame")
    expect(page.locator(role("monitor-filters"))).to_be_visible()
    expect(page.locator(role("monitor-maps"))).to_be_visible()
    page.locator(role("layer")).select_option("conv2")
    expect(page.locator(role("monitor-maps-text"))).to_contain_text("of 16 channels")
    for theme in ("light", "dark"):
        set_theme(page, theme)
        screenshot(page, f"monitor-{theme}", root)


def kernel_busy(page: Page) -> bool:
    return bool(
        page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            " === 'busy'"
        )
    )
