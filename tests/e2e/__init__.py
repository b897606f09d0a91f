"""End-to-end tests: a live JupyterLab server driven by headless Chromium through Playwright."""
