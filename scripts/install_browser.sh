#!/usr/bin/env bash
# Install the headless browser the end-to-end tests drive: Debian's chromium package.
#
# Playwright's own browser download (`playwright install`) needs internet access that CI and
# sandboxed machines lack, so the tests use the distribution's Chromium through
# `executable_path` instead. Idempotent: does nothing when the browser is already there.
#
# Usage: scripts/install_browser.sh        (the Makefile's test target calls it)
# Env:   CNN_WIDGETS_CHROMIUM  path of the browser binary (default /usr/bin/chromium)
set -euo pipefail

browser="${CNN_WIDGETS_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$browser" ]; then
    echo "install_browser: $browser already present, nothing to do."
    exit 0
fi

fail() {
    echo "install_browser: ERROR: $*" >&2
    echo "install_browser: the e2e tests (tests/e2e) need Chromium at $browser." >&2
    echo "install_browser: install it by hand (Debian/Ubuntu: apt-get install -y chromium)," >&2
    echo "install_browser: or point CNN_WIDGETS_CHROMIUM at an existing Chromium binary." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; this script only knows Debian-like systems."

# Root runs apt directly (containers often have no sudo); everyone else needs sudo.
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    fail "not root and sudo is not available."
fi

echo "install_browser: installing chromium with apt-get (about a minute)..."
export DEBIAN_FRONTEND=noninteractive
${as_root[@]+"${as_root[@]}"} apt-get update -q || fail "apt-get update failed."
${as_root[@]+"${as_root[@]}"} apt-get install -y -q chromium || fail "apt-get install chromium failed."

[ -x "$browser" ] || fail "chromium was installed but $browser does not exist."
echo "install_browser: installed $("$browser" --version 2>/dev/null || echo "$browser")."
