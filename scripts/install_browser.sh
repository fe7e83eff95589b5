#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages chromium, chromium-driver) for the
# browser test of the HTML reports (tests/evaluation/test_html_browser.py). Nothing to do when both
# are on PATH already. Needs root (CI runs as root); elsewhere it says what to install and fails.
# Usage: bash scripts/install_browser.sh   (scripts/test.sh calls it under CI or when chromium is missing)
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium / chromedriver not found and cannot install them here (needs root and apt-get):" \
    "install the Debian packages 'chromium' and 'chromium-driver'" >&2
  exit 1
fi
echo "installing Chromium and chromedriver (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
