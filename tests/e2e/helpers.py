"""The live JupyterLab server and the page helpers the end-to-end tests are written with.

A test gets a server and a page from the fixtures in ``conftest.py`` and then speaks in these
helpers::

    def test_button_counts_clicks(jupyter_server, page):
        jupyter_server.add_notebook("counter.ipynb", ["w = Counter()\\nw"])
        open_notebook(page, jupyter_server, "counter.ipynb")
        run_all(page)
        page.locator(".counter").click()
        assert kernel_eval(page, "w.count") == "1"

All waiting is done by polling the JupyterLab application object that the server exposes as
``window.jupyterapp`` (``--LabApp.expose_app_in_browser``): it says exactly when a kernel is
connected and idle, which the toolbar's status text does not (it reads "idle" before a kernel
exists).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nbformat
from playwright.sync_api import Browser, Locator, Page, Playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
SCREENS_DIR = ARTIFACTS_DIR / "screens"

#: The browser the tests (and ``benchmarks/browser_latency.py``) drive: Debian's Chromium, since
#: ``playwright install`` cannot download here (``scripts/install_browser.sh`` installs it).
CHROMIUM = Path(os.environ.get("CNN_WIDGETS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in containers; the sandbox needs user namespaces we may not have
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}

Theme = Literal["light", "dark"]
THEME_NAMES: dict[str, str] = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

# Generous defaults: CI has two cores, and a cold kernel that imports torch or tensorflow takes
# a while. A test that wants to fail faster passes its own timeout.
OPEN_TIMEOUT_MS = 90_000
RUN_TIMEOUT_MS = 180_000
EVAL_TIMEOUT_MS = 60_000

_THEME_SCHEMA = "@jupyterlab/apputils-extension:themes"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Settings every test server starts with. Autosave off: a session-wide server must not write
# outputs of one test's run into a notebook that a later test opens. News off: its "would you
# like to receive news?" toast would sit on top of screenshots, and there is no network anyway.
_START_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class JupyterServerError(RuntimeError):
    """The JupyterLab server failed to start or to answer a REST call."""


class NotebookError(AssertionError):
    """A notebook cell raised, or a ``kernel_eval`` call raised in the kernel.

    An ``AssertionError`` so pytest shows it as a test failure with the kernel's traceback.
    """


def _free_port() -> int:
    # The port is free now; --ServerApp.port_retries=0 makes a lost race fail loudly instead of
    # silently moving the server to a port the tests don't know.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Talk to the local server directly, never through an http(s)_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class JupyterServer:
    """A JupyterLab server running in its own process group on a throw-away root folder.

    Attributes
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:PORT`` (no trailing slash).
    root : Path
        The server's root directory: a copy of the repository's ``notebooks/`` folder. Tests may
        write files here freely; the repository is never touched.
    log_path : Path
        File that receives the server's stdout and stderr.
    process : subprocess.Popen
        The server process.
    """

    url: str
    root: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls, workdir: Path, notebooks: Path = NOTEBOOKS_DIR, timeout_s: float = 90.0
    ) -> JupyterServer:
        """Start ``python -m jupyterlab`` and wait until its REST API answers.

        Parameters
        ----------
        workdir : Path
            An empty folder that receives the server root, its config, settings, workspaces,
            runtime files and log.
        notebooks : Path
            Folder copied into the server root (missing is fine: the root starts empty).
        timeout_s : float
            How long to wait for ``/api/status`` before giving up.

        Returns
        -------
        JupyterServer
            The running server.

        Raises
        ------
        JupyterServerError
            If the server exits or does not answer in time; the message holds its log tail.
        """
        root = workdir / "root"
        if notebooks.is_dir():
            shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        else:
            root.mkdir(parents=True)
        dirs = {
            name: workdir / name
            for name in ("config", "settings", "workspaces", "data", "runtime", "ipython")
        }
        for folder in dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        for name, values in _START_SETTINGS.items():
            settings_file = dirs["settings"] / f"{name}.jupyterlab-settings"
            settings_file.parent.mkdir(parents=True, exist_ok=True)
            settings_file.write_text(json.dumps(values, indent=2))

        env = dict(os.environ)
        # Fresh per-run folders, so neither the user's own Jupyter setup (config, lab settings,
        # user-level kernels and extensions, IPython startup files) nor a previous run leaks in.
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),
            PYTHONUNBUFFERED="1",
        )
        # The unit-test conftest sets MPLBACKEND=Agg; a kernel inheriting it would never show
        # figures inline, unlike a user's.
        env.pop("MPLBACKEND", None)
        # Kernels inherit this: `import cnn_widgets` works even without an (editable) install.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )

        port = _free_port()
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--allow-root",  # containers and CI often run as root; lab refuses it otherwise
            "--ServerApp.disable_check_xsrf=True",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
        ]  # fmt: skip
        log_path = workdir / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so teardown can end it all
            )
        server = cls(url=f"http://127.0.0.1:{port}", root=root, log_path=log_path, process=process)
        try:
            server._wait_until_ready(timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JupyterServerError(
                    f"JupyterLab exited with code {self.process.returncode} while starting.\n"
                    f"--- server log tail ---\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, JupyterServerError):
                self.request("GET", "/api/status")
                return
            time.sleep(0.25)
        raise JupyterServerError(
            f"JupyterLab did not answer /api/status within {timeout_s:.0f} s.\n"
            f"--- server log tail ---\n{self.log_tail()}"
        )

    def request(self, method: str, path: str, body: Any = None, timeout_s: float = 10.0) -> Any:
        """Call the server's REST API and return the decoded JSON answer (None when empty).

        Parameters
        ----------
        method : str
            HTTP method, e.g. ``"GET"``.
        path : str
            Path below the server URL, e.g. ``"/api/sessions"``.
        body : Any
            JSON-serializable request body, or None.
        timeout_s : float
            Socket timeout.

        Returns
        -------
        Any
            The decoded JSON response.

        Raises
        ------
        JupyterServerError
            On an HTTP error status.
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(req, timeout=timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise JupyterServerError(f"{method} {path} -> {error.code}: {detail}") from error
        return json.loads(payload) if payload.strip() else None

    def add_notebook(self, name: str, cells: Sequence[str]) -> Path:
        """Write a notebook with one code cell per string into the server root.

        Parameters
        ----------
        name : str
            Path relative to the root; ``.ipynb`` is appended when missing. Sub-folders are
            created. An existing file is overwritten.
        cells : Sequence[str]
            Source of each code cell, in order.

        Returns
        -------
        Path
            The written notebook.
        """
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        path = self.root / name
        if self.root.resolve() not in path.resolve().parents:
            raise ValueError(f"notebook name must stay inside the server root: {name!r}")
        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(source) for source in cells],
            # Naming the kernel keeps JupyterLab from asking which kernel to start.
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)
        return path

    def set_theme(self, theme: Theme) -> None:
        """Store the JupyterLab theme setting; pages loaded afterwards start in that theme.

        Parameters
        ----------
        theme : {"light", "dark"}
            The theme; ``"light"`` restores the default.
        """
        raw = "{}" if theme == "light" else json.dumps({"theme": THEME_NAMES[theme]})
        self.request("PUT", f"/lab/api/settings/{_THEME_SCHEMA}", {"raw": raw})

    def shutdown_kernels(self) -> None:
        """End every session and kernel, so the next test starts on a fresh kernel.

        Without this, reopening a notebook reconnects to the previous test's kernel and state.
        """
        for session in self.request("GET", "/api/sessions") or []:
            with contextlib.suppress(JupyterServerError):  # already gone
                self.request("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.request("GET", "/api/kernels") or []:
            with contextlib.suppress(JupyterServerError):
                self.request("DELETE", f"/api/kernels/{kernel['id']}")

    def log_tail(self, lines: int = 80) -> str:
        """Return the last ``lines`` lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no server log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """Shut the server down: gracefully first (that also ends its kernels), then by signal.

        Kernels run in process groups of their own, so killing the server's group alone would
        leave them running; the REST shutdown and SIGTERM both make the server end them first.
        """
        if self.process.poll() is None:
            with contextlib.suppress(OSError, JupyterServerError):
                self.request("POST", "/api/shutdown", timeout_s=5.0)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.process.wait(timeout=timeout_s)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
        # Anything the server left behind in its own group (it is the group leader).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5.0)


def launch_chromium(playwright: Playwright) -> Browser:
    """Start headless :data:`CHROMIUM` with :data:`CHROMIUM_ARGS`.

    Parameters
    ----------
    playwright : Playwright
        A started ``sync_playwright()``.

    Returns
    -------
    Browser
        The browser; the caller closes it.

    Raises
    ------
    FileNotFoundError
        If there is no Chromium at :data:`CHROMIUM`.
    """
    if not CHROMIUM.exists():
        raise FileNotFoundError(
            f"Chromium not found at {CHROMIUM}. Run scripts/install_browser.sh "
            "(or set CNN_WIDGETS_CHROMIUM to a Chromium binary)."
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def _notebook_url(server: JupyterServer, name: str) -> str:
    return f"{server.url}/lab/tree/{urllib.request.pathname2url(name)}?reset"


def open_notebook(
    page: Page, server: JupyterServer, name: str, timeout_ms: float = OPEN_TIMEOUT_MS
) -> None:
    """Open a notebook in JupyterLab and wait until its kernel is connected and idle.

    Parameters
    ----------
    page : Page
        A fresh page from the ``page`` fixture.
    server : JupyterServer
        The running server.
    name : str
        Notebook path relative to the server root.
    timeout_ms : float
        How long to wait for the kernel.
    """
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    # `?reset` drops the saved workspace: otherwise JupyterLab reopens earlier tabs and the
    # "current widget" may be some other notebook.
    page.goto(_notebook_url(server, name))
    page.wait_for_function(
        """(path) => {
            const panel = window.jupyterapp?.shell?.currentWidget;
            if (!panel?.context || panel.context.path !== path || !panel.context.isReady) {
                return false;
            }
            const kernel = panel.sessionContext?.session?.kernel;
            return !!kernel && kernel.connectionStatus === 'connected'
                && kernel.status === 'idle';
        }""",
        arg=name,
        timeout=timeout_ms,
        polling=100,
    )
    _wait_for_splash_gone(page, timeout_ms)


def _wait_for_splash_gone(page: Page, timeout_ms: float) -> None:
    # JupyterLab covers the page with its splash screen while it starts and while a theme
    # loads; it fades out after the app is ready, so screenshots taken earlier show only it.
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=timeout_ms)


def run_all(page: Page, timeout_ms: float = RUN_TIMEOUT_MS) -> None:
    """Run every cell of the current notebook and wait until all have run.

    Outputs are cleared first, so execution counts saved in the file can't pass for fresh ones.

    Parameters
    ----------
    page : Page
        A page with a notebook open (see :func:`open_notebook`).
    timeout_ms : float
        How long to wait for the whole notebook.

    Raises
    ------
    NotebookError
        If a cell raised; the message holds the kernel's traceback.
    """
    # The run-all promise is deliberately not returned: `evaluate` would wait for every cell,
    # with no timeout. Completion is polled below instead.
    page.evaluate(
        """async () => {
            const commands = window.jupyterapp.commands;
            await commands.execute('notebook:clear-all-cell-outputs');
            commands.execute('notebook:run-all-cells');
        }"""
    )
    handle = page.wait_for_function(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            for (const cell of panel.content.widgets) {
                if (cell.model.type !== 'code') continue;
                const outputs = cell.model.outputs;
                for (let i = 0; i < outputs.length; i++) {
                    const output = outputs.get(i).toJSON();
                    if (output.output_type === 'error') {
                        return {error: `${output.ename}: ${output.evalue}\\n`
                            + output.traceback.join('\\n')};
                    }
                }
                // JupyterLab gives an empty cell no execution count.
                if (cell.model.sharedModel.getSource().trim() === '') continue;
                if (cell.model.executionCount === null) return false;
            }
            const kernel = panel.sessionContext.session?.kernel;
            return kernel?.status === 'idle' ? {error: null} : false;
        }""",
        timeout=timeout_ms,
        polling=100,
    )
    error = handle.json_value()["error"]
    if error:
        raise NotebookError(f"a notebook cell raised:\n{_ANSI_ESCAPE.sub('', error)}")


def kernel_eval(page: Page, code: str, timeout_ms: float = EVAL_TIMEOUT_MS) -> str:
    """Run Python code in the open notebook's kernel and return what it printed or evaluated to.

    This is how a test reads widget state on the Python side, e.g. ``kernel_eval(page,
    "w.layer")``. The code runs in the notebook's namespace but outside any cell
    (``store_history=False``), so the notebook's cells and execution counts are untouched.

    Parameters
    ----------
    page : Page
        A page with a notebook open.
    code : str
        Python source; its last expression's value is the result.
    timeout_ms : float
        How long to wait for the kernel to answer (it first finishes any running cell).

    Returns
    -------
    str
        The ``text/plain`` repr of the last expression (e.g. ``"'conv1'"`` for a string); when
        there is none, everything printed to stdout, minus one trailing newline.

    Raises
    ------
    NotebookError
        If the code raised in the kernel.
    """
    key = uuid.uuid4().hex
    # Started without returning the promise and then polled, so a busy kernel hits the timeout
    # instead of hanging `evaluate` (which has none).
    page.evaluate(
        """([code, key]) => {
            const results = (window.__e2eKernelEval ??= {});
            const result = {done: false, value: null, stdout: '', error: null};
            results[key] = result;
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const future = kernel.requestExecute(
                {code, silent: false, store_history: false, allow_stdin: false});
            future.onIOPub = (msg) => {
                const content = msg.content;
                switch (msg.header.msg_type) {
                    case 'execute_result':
                        result.value = content.data['text/plain'];
                        break;
                    case 'stream':
                        if (content.name === 'stdout') result.stdout += content.text;
                        break;
                    case 'error':
                        result.error = `${content.ename}: ${content.evalue}\\n`
                            + content.traceback.join('\\n');
                        break;
                }
            };
            future.done.then(
                () => { result.done = true; },
                (reason) => { result.error ??= String(reason); result.done = true; });
        }""",
        [code, key],
    )
    page.wait_for_function(
        "(key) => window.__e2eKernelEval[key].done", arg=key, timeout=timeout_ms, polling=50
    )
    result: dict[str, Any] = page.evaluate(
        """(key) => {
            const result = window.__e2eKernelEval[key];
            delete window.__e2eKernelEval[key];
            return result;
        }""",
        key,
    )
    if result["error"]:
        raise NotebookError(
            f"kernel_eval({code!r}) raised:\n{_ANSI_ESCAPE.sub('', result['error'])}"
        )
    if result["value"] is not None:
        return str(result["value"])
    stdout = str(result["stdout"])
    return stdout[:-1] if stdout.endswith("\n") else stdout


def set_theme(page: Page, theme: Theme, timeout_ms: float = 30_000) -> None:
    """Switch the open JupyterLab page to the light or dark theme and wait until it applies.

    The choice is saved as a user setting on the server; the fixtures restore light after
    each test.

    Parameters
    ----------
    page : Page
        A page with JupyterLab loaded.
    theme : {"light", "dark"}
        The theme to switch to.
    timeout_ms : float
        How long to wait for the theme's stylesheet.
    """
    name = THEME_NAMES[theme]
    page.evaluate(
        """(name) => {
            window.jupyterapp.commands.execute('apputils:change-theme', {theme: name});
        }""",
        name,
    )
    # JupyterLab sets these body attributes only once the theme's stylesheet has loaded.
    page.wait_for_function(
        """(name) => document.body.dataset.jpThemeName === name""",
        arg=name,
        timeout=timeout_ms,
    )
    _wait_for_splash_gone(page, timeout_ms)


def current_theme(page: Page) -> str:
    """Return the name of the theme JupyterLab shows, e.g. ``"JupyterLab Dark"``."""
    return str(page.evaluate("() => document.body.dataset.jpThemeName ?? ''"))


def cell_count(page: Page) -> int:
    """Return the number of cells in the current notebook."""
    return int(page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length"))


def screenshot(page: Page, name: str, target: Locator | None = None) -> Path:
    """Save a PNG of the page (or of one element) to ``tests/artifacts/screens/NAME.png``.

    Parameters
    ----------
    page : Page
        The page.
    name : str
        File name without folder; ``.png`` is appended when missing.
    target : Locator, optional
        Capture just this element instead of the whole viewport.

    Returns
    -------
    Path
        The written file.
    """
    if Path(name).name != name:
        raise ValueError(f"screenshot name must be a plain file name: {name!r}")
    path = SCREENS_DIR / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    (target if target is not None else page).screenshot(path=str(path))
    return path
