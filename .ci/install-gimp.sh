#!/bin/sh
# Make real GIMP 3 available for tests/integration/test_gimp.py.
#
# Debian 12 ships only GIMP 2.10, so GIMP 3 lives in a Debian 13 (trixie) chroot at $IMPASTO_GIMP_ROOT.
# On a Debian 13 host GIMP 3 comes straight from apt and no chroot is needed; the tests then look for
# gimp-console-3.0 on PATH (IMPASTO_GIMP_ROOT=/).
#
# Idempotent: a finished chroot is marked with a stamp file and only its /proc mount is (re)checked, so
# running this again costs a second. Needs root. About 2 minutes and 0.9 GB on a fresh machine.
set -eu

ROOT=${IMPASTO_GIMP_ROOT:-/var/cache/impasto/gimp-root}
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 gir1.2-babl-0.1 xdotool"  # xdotool: the GUI test
STAMP="$ROOT/.impasto-gimp-ready-2"  # -2: PACKAGES gained xdotool; an older chroot gets it added

log() { echo "install-gimp: $*" >&2; }

if [ "$ROOT" = / ]; then
    # Debian 13 host: install into the system itself.
    if ! command -v gimp-console-3.0 >/dev/null 2>&1; then
        case "$(cat /etc/debian_version 2>/dev/null)" in
            12*|11*) log "this host's Debian has no GIMP 3: leave IMPASTO_GIMP_ROOT unset for the chroot"; exit 1 ;;
        esac
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $PACKAGES
    fi
    exit 0
fi

# Use the mirror this machine's apt already uses, so the chroot works behind the same proxy or mirror.
mirror() {
    m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -E '/debian/?( |$)' | head -n1 | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//')
    echo "${m:-http://deb.debian.org/debian}"
}

mount_proc() {
    # GIMP and apt need /proc; /dev/null, /dev/urandom and /dev/shm come from a bind of /dev.
    mountpoint -q "$ROOT/proc" || mount --bind /proc "$ROOT/proc"
    mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
}

if [ -f "$STAMP" ]; then
    mount_proc
    log "GIMP 3 chroot ready at $ROOT"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap
fi

MIRROR=$(mirror)
# A half-made chroot from an interrupted run: debootstrap resumes poorly, so start over.
if [ -d "$ROOT" ] && [ ! -f "$ROOT/usr/bin/apt-get" ]; then
    for m in dev proc; do
        if mountpoint -q "$ROOT/$m" && ! umount "$ROOT/$m"; then
            log "cannot unmount $ROOT/$m; unmount it and remove $ROOT by hand"
            exit 1
        fi
    done
    # --one-file-system: never follow a bind mount of the host's /dev or /proc into the host.
    rm -rf --one-file-system "$ROOT"
fi
if [ ! -f "$ROOT/usr/bin/apt-get" ]; then
    log "debootstrap trixie into $ROOT from $MIRROR"
    mkdir -p "$ROOT"
    debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >/dev/null
fi
mount_proc
log "installing $PACKAGES"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $PACKAGES \
    >/dev/null
chroot "$ROOT" gimp-console-3.0 --version >&2
touch "$STAMP"
log "GIMP 3 chroot ready at $ROOT"
