#!/bin/sh
# Make real Krita available for tests/integration/test_krita.py: kritarunner (headless cases) and
# krita + xvfb-run (the GUI check and the docs screenshot). Debian 12 gives Krita 5.1.5, Debian 13 5.2.9.
# Also the X libraries PyPI's PyQt6 needs on Xvfb (tests/integration/test_krita_qt6.py).
#
# Krita 5.2 on a Debian 12 host: with IMPASTO_KRITA_ROOT=DIR set (.ci/run sets it), Debian 13's Krita is
# installed into a chroot at DIR (about 5 minutes and 1.7 GB the first time), and the kritarunner tests
# run on both Kritas (they copy their files into the chroot; the backend stays outside).
#
# Idempotent: what is already there is left alone. Needs root.
set -eu

log() { echo "install-krita: $*" >&2; }
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
export DEBIAN_FRONTEND=noninteractive

if command -v kritarunner >/dev/null 2>&1 && command -v krita >/dev/null 2>&1 \
    && command -v xvfb-run >/dev/null 2>&1 && command -v xauth >/dev/null 2>&1; then
    log "krita $(dpkg-query -W -f='${Version}' krita 2>/dev/null) and xvfb-run already installed"
else
    apt update -qq
    # Recommends bring Krita's Python plugins and Qt image formats; xauth is what xvfb-run needs.
    apt install -y -qq krita xvfb xauth
    command -v kritarunner >/dev/null 2>&1 || { log "kritarunner is missing after installing krita"; exit 1; }
    log "installed krita $(dpkg-query -W -f='${Version}' krita 2>/dev/null)"
fi

# Qt 6's xcb platform plugin (PyQt6 from PyPI) needs these beyond what Krita's Qt 5 pulls in.
QT6_XCB="libxcb-cursor0 libxkbcommon-x11-0 libegl1"
# shellcheck disable=SC2086
if [ "$(dpkg-query -W -f='${Status}\n' $QT6_XCB 2>/dev/null | grep -c 'install ok installed')" -eq 3 ]; then
    log "Qt 6 xcb libraries already installed"
else
    apt update -qq
    apt install -y -qq $QT6_XCB
fi

ROOT=${IMPASTO_KRITA_ROOT:-}
if [ -n "$ROOT" ] && [ "$ROOT" != / ]; then
    STAMP="$ROOT/.impasto-krita-ready"
    if [ ! -f "$STAMP" ]; then
        command -v debootstrap >/dev/null 2>&1 || apt install -y -qq debootstrap
        # The mirror this machine's apt already uses, so the chroot works behind the same proxy.
        MIRROR=$(grep -rhoE '(URIs:|^deb) *https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list \
            /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^ ]*' | head -n 1)
        [ -d "$ROOT/usr" ] || debootstrap --variant=minbase trixie "$ROOT" "${MIRROR:-http://deb.debian.org/debian}"
        mountpoint -q "$ROOT/proc" || mount --bind /proc "$ROOT/proc"
        chroot "$ROOT" apt-get update -qq
        chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            krita python3-pyqt5
        touch "$STAMP"
    fi
    mountpoint -q "$ROOT/proc" || mount --bind /proc "$ROOT/proc"
    log "krita $(chroot "$ROOT" dpkg-query -W -f='${Version}' krita) in $ROOT"
fi
