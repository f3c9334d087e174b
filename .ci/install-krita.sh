#!/bin/sh
# Make real Krita available for tests/integration/test_krita.py: kritarunner (headless cases) and
# krita + xvfb-run (the GUI check and the docs screenshot). Debian 12 gives Krita 5.1.5, Debian 13 5.2.
#
# Idempotent: when the three commands are already there it does nothing. Needs root.
set -eu

log() { echo "install-krita: $*" >&2; }

if command -v kritarunner >/dev/null 2>&1 && command -v krita >/dev/null 2>&1 \
    && command -v xvfb-run >/dev/null 2>&1 && command -v xauth >/dev/null 2>&1; then
    log "krita $(dpkg-query -W -f='${Version}' krita 2>/dev/null) and xvfb-run already installed"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# Recommends bring Krita's Python plugins and Qt image formats; xauth is what xvfb-run needs to start X.
apt-get -o DPkg::Lock::Timeout=600 install -y -qq krita xvfb xauth
command -v kritarunner >/dev/null 2>&1 || { log "kritarunner is missing after installing krita"; exit 1; }
log "installed krita $(dpkg-query -W -f='${Version}' krita 2>/dev/null)"
