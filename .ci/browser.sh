#!/usr/bin/env bash
# Debian's headless Chromium and its matching driver, for the dashboard's browser test
# (tests/test_history.py); installed with apt-get where missing (as root).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "browser.sh: chromium and chromedriver are missing; install Debian's chromium and chromium-driver" >&2
    exit 2
fi
echo "browser.sh: installing chromium chromium-driver" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
