#!/bin/sh
# Make a real headless browser available for tests/integration/test_study_browser.py (the `impasto study`
# page): Debian's chromium and chromium-driver, driven by Selenium (the `test` extra). Selenium's own driver
# download (Selenium Manager) is never used: the test names /usr/bin/chromedriver.
#
# Idempotent: what is already there is left alone. Needs root.
set -eu

log() { echo "install-chromium: $*" >&2; }
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
export DEBIAN_FRONTEND=noninteractive

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    log "chromium $(dpkg-query -W -f='${Version}' chromium 2>/dev/null) and chromedriver already installed"
else
    apt update -qq
    apt install -y -qq chromium chromium-driver
    command -v chromedriver >/dev/null 2>&1 || { log "chromedriver is missing after installing chromium-driver"; exit 1; }
    log "installed chromium $(dpkg-query -W -f='${Version}' chromium 2>/dev/null)"
fi
