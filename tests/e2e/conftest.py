"""Fixtures for end-to-end tests: one JupyterLab server and one headless Chromium per session.

- ``jupyter_server``: a :class:`~tests.e2e.helpers.JupyterServer` on a copy of ``notebooks/``.
- ``browser``: Debian's Chromium driven by Playwright (``scripts/install_browser.sh``).
- ``page``: a fresh browser context per test, light theme; parametrize it indirectly with
  ``"dark"`` or take ``dark_page`` for a JupyterLab that loads in the dark theme.

After each test its kernels are shut down and the theme is reset, so tests don't see each
other's state. A failing test gets the server log tail, the browser console and a screenshot
(``tests/artifacts/failures/``) attached to its report.

Every test in this folder carries the ``e2e`` marker: ``pytest -m "not e2e"`` skips them.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.helpers import (
    ARTIFACTS_DIR,
    CHROMIUM,
    VIEWPORT,
    JupyterServer,
    Theme,
    launch_chromium,
)

PAGE_TIMEOUT_MS = 30_000

_E2E_DIR = Path(__file__).parent
_CONSOLE_KEY = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test in a live JupyterLab + headless Chromium (slow)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A safety net for modules that forget `pytestmark = pytest.mark.e2e`, so `-m "not e2e"`
    # reliably leaves out everything that needs a browser.
    for item in items:
        if _E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A JupyterLab server shared by all e2e tests, rooted in a temporary copy of notebooks/."""
    server = JupyterServer.start(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the system (``playwright install`` cannot download here)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Run scripts/install_browser.sh "
            "(or set CNN_WIDGETS_CHROMIUM to a Chromium binary).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def _themed_page(
    request: pytest.FixtureRequest, browser: Browser, server: JupyterServer, theme: Theme
) -> Generator[Page, None, None]:
    if theme not in ("light", "dark"):
        raise ValueError(f"page theme must be 'light' or 'dark', not {theme!r}")
    server.set_theme(theme)
    # A new context is a fresh profile: no cookies, storage or cache from other tests.
    context = browser.new_context(viewport=VIEWPORT, color_scheme=theme)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    console: list[str] = []
    request.node.stash[_CONSOLE_KEY] = console
    page.on("console", lambda message: console.append(f"[{message.type}] {message.text}"))
    page.on("pageerror", lambda error: console.append(f"[pageerror] {error}"))
    try:
        yield page
    finally:
        context.close()
        server.shutdown_kernels()
        server.set_theme("light")


@pytest.fixture
def page(
    request: pytest.FixtureRequest, browser: Browser, jupyter_server: JupyterServer
) -> Iterator[Page]:
    """A fresh page in the light theme (``indirect`` parametrization with "dark" flips it)."""
    yield from _themed_page(request, browser, jupyter_server, getattr(request, "param", "light"))


@pytest.fixture
def dark_page(
    request: pytest.FixtureRequest, browser: Browser, jupyter_server: JupyterServer
) -> Iterator[Page]:
    """A fresh page on which JupyterLab loads in its dark theme."""
    yield from _themed_page(request, browser, jupyter_server, "dark")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Runs before fixture teardown, so the page is still open for a screenshot.
    if report.failed and report.when in ("setup", "call"):
        _attach_diagnostics(item, report)
    return report


def _attach_diagnostics(item: pytest.Item, report: pytest.TestReport) -> None:
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    server = funcargs.get("jupyter_server")
    if isinstance(server, JupyterServer):
        report.sections.append(("jupyter server log (tail)", server.log_tail()))
    console = item.stash.get(_CONSOLE_KEY, None)
    if console:
        report.sections.append(("browser console", "\n".join(console[-100:])))
    for name in ("page", "dark_page"):
        page = funcargs.get(name)
        if not isinstance(page, Page) or page.is_closed():
            continue
        path = ARTIFACTS_DIR / "failures" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(path), timeout=10_000)
        except Exception as error:  # a broken page must not hide the real failure
            report.sections.append(("failure screenshot", f"not taken: {error}"))
        else:
            report.sections.append(("failure screenshot", str(path)))
