"""The e2e harness itself, proven on a tiny anywidget defined inline in a notebook cell.

The counter widget has two buttons: ``.e2e-count`` increments a synced ``count`` trait and
carries ``data-lm-suppress-shortcuts``; ``.e2e-plain`` does nothing and lacks the attribute, so
the shortcut test can show that the attribute, not the button, is what stops the notebook.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (
    REPO_ROOT,
    JupyterServer,
    NotebookError,
    cell_count,
    current_theme,
    kernel_eval,
    open_notebook,
    run_all,
    screenshot,
    set_theme,
)

pytestmark = pytest.mark.e2e

COUNTER_CELL = '''
import anywidget
import traitlets


class Counter(anywidget.AnyWidget):
    _esm = """
    function render({ model, el }) {
      const count = document.createElement("button");
      count.className = "e2e-count";
      count.setAttribute("data-lm-suppress-shortcuts", "");
      const plain = document.createElement("button");
      plain.className = "e2e-plain";
      plain.textContent = "plain";
      const show = () => { count.textContent = `count is ${model.get("count")}`; };
      const increment = () => { model.set("count", model.get("count") + 1); model.save_changes(); };
      show();
      count.addEventListener("click", increment);
      model.on("change:count", show);
      el.append(count, plain);
      return () => model.off("change:count", show);
    }
    export default { render };
    """
    # Theme colours, so the screenshots show whether JupyterLab's variables reach the widget.
    _css = """
    .e2e-count, .e2e-plain {
      font-size: 16px; padding: 6px 14px; margin-right: 8px;
      color: var(--jp-ui-font-color1); background: var(--jp-layout-color2);
      border: 1px solid var(--jp-border-color1);
    }
    """
    count = traitlets.Int(0).tag(sync=True)


w = Counter()
w
'''.strip()


@pytest.fixture(scope="module")
def counter_notebook(jupyter_server: JupyterServer) -> str:
    jupyter_server.add_notebook("e2e_counter.ipynb", [COUNTER_CELL])
    return "e2e_counter.ipynb"


def _open_counter(page: Page, server: JupyterServer, notebook: str) -> None:
    open_notebook(page, server, notebook)
    run_all(page)
    expect(page.locator(".e2e-count")).to_have_text("count is 0")


def test_add_notebook_writes_into_the_server_root_copy(jupyter_server: JupyterServer) -> None:
    path = jupyter_server.add_notebook("sub/extra", ["1 + 1"])
    assert path == jupyter_server.root / "sub" / "extra.ipynb"
    listing = jupyter_server.request("GET", "/api/contents/sub")
    assert [item["name"] for item in listing["content"]] == ["extra.ipynb"]
    assert not (REPO_ROOT / "notebooks" / "sub").exists()


def test_clicking_the_widget_button_updates_the_python_trait(
    jupyter_server: JupyterServer, page: Page, counter_notebook: str
) -> None:
    _open_counter(page, jupyter_server, counter_notebook)
    page.locator(".e2e-count").click()
    expect(page.locator(".e2e-count")).to_have_text("count is 1")
    assert kernel_eval(page, "w.count") == "1"


def test_setting_the_trait_from_python_updates_the_button(
    jupyter_server: JupyterServer, page: Page, counter_notebook: str
) -> None:
    _open_counter(page, jupyter_server, counter_notebook)
    assert kernel_eval(page, "w.count = 5") == ""
    expect(page.locator(".e2e-count")).to_have_text("count is 5")
    assert kernel_eval(page, "print(w.count * 2)") == "10"


def test_failing_cells_and_failing_kernel_eval_raise_with_the_traceback(
    jupyter_server: JupyterServer, page: Page
) -> None:
    jupyter_server.add_notebook("e2e_failing.ipynb", ["x = 1", "1 / 0", "y = 2"])
    open_notebook(page, jupyter_server, "e2e_failing.ipynb")
    with pytest.raises(NotebookError, match="ZeroDivisionError"):
        run_all(page)
    assert kernel_eval(page, "x") == "1"
    with pytest.raises(NotebookError, match="NameError: name 'y' is not defined"):
        kernel_eval(page, "y")


def test_kernel_imports_cnn_widgets_from_this_repo(
    jupyter_server: JupyterServer, page: Page
) -> None:
    jupyter_server.add_notebook("e2e_import.ipynb", ["import cnn_widgets"])
    open_notebook(page, jupyter_server, "e2e_import.ipynb")
    run_all(page)
    package_dir = kernel_eval(page, "import os; print(os.path.dirname(cnn_widgets.__file__))")
    assert Path(package_dir) == REPO_ROOT / "cnn_widgets"


def test_widget_renders_in_light_and_dark_theme(
    jupyter_server: JupyterServer, page: Page, counter_notebook: str
) -> None:
    _open_counter(page, jupyter_server, counter_notebook)
    button = page.locator(".e2e-count")
    assert current_theme(page) == "JupyterLab Light"
    light_background = button.evaluate("el => getComputedStyle(el).backgroundColor")
    light_shot = screenshot(page, "harness_counter_light")

    set_theme(page, "dark")
    dark_background = button.evaluate("el => getComputedStyle(el).backgroundColor")
    dark_shot = screenshot(page, "harness_counter_dark")
    screenshot(page, "harness_counter_dark_widget", target=page.locator(".e2e-count"))

    assert current_theme(page) == "JupyterLab Dark"
    assert light_background != dark_background
    assert light_shot.stat().st_size > 0 and dark_shot.stat().st_size > 0


def test_dark_page_loads_jupyterlab_in_the_dark_theme(
    jupyter_server: JupyterServer, dark_page: Page, counter_notebook: str
) -> None:
    open_notebook(dark_page, jupyter_server, counter_notebook)
    assert current_theme(dark_page) == "JupyterLab Dark"
    assert dark_page.evaluate("() => document.body.dataset.jpThemeLight") == "false"


def test_suppress_shortcuts_attribute_swallows_notebook_shortcuts(
    jupyter_server: JupyterServer, page: Page, counter_notebook: str
) -> None:
    _open_counter(page, jupyter_server, counter_notebook)
    cells = cell_count(page)

    # Control without the attribute: `b` reaches the notebook and inserts a cell below.
    page.locator(".e2e-plain").focus()
    page.keyboard.press("b")
    page.wait_for_function(
        "n => window.jupyterapp.shell.currentWidget.content.widgets.length > n", arg=cells
    )
    cells = cell_count(page)

    # Control with the attribute: the same key is swallowed.
    page.locator(".e2e-count").focus()
    page.keyboard.press("b")
    page.keyboard.press("a")
    # Let a (wrongly) dispatched command land before counting.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 200)))")
    assert cell_count(page) == cells
