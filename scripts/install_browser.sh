#!/usr/bin/env bash
# Headless browser for the end-to-end UI test (tests/plugins/test_ui_e2e.py): Debian's `chromium`
# and `chromium-driver`, installed with apt-get only when missing (nothing is downloaded outside the
# package registry). Prints the paths of the browser and of the driver, one per line.
# Needs root (or sudo) when the packages are missing.
set -euo pipefail

browser="$(command -v chromium || true)"
driver="$(command -v chromedriver || true)"
if [[ -z "$browser" || -z "$driver" ]]; then
    sudo=""
    if [[ "$(id -u)" != "0" ]]; then
        if ! command -v sudo >/dev/null; then
            echo "install_browser.sh: chromium/chromium-driver missing and not root (no sudo)" >&2
            exit 1
        fi
        sudo="sudo -n"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists only when the install cannot find the packages without it.
    if ! $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver >/tmp/install_browser.log 2>&1; then
        $sudo apt-get update -q >>/tmp/install_browser.log 2>&1 || true
        if ! $sudo apt-get install -y -q --no-install-recommends chromium chromium-driver >>/tmp/install_browser.log 2>&1; then
            echo "install_browser.sh: apt-get install chromium chromium-driver failed:" >&2
            tail -n 30 /tmp/install_browser.log >&2
            exit 1
        fi
    fi
    browser="$(command -v chromium)"
    driver="$(command -v chromedriver)"
fi
echo "$browser"
echo "$driver"
