#!/usr/bin/env bash
# Make Debian's Chromium available for the browser tests (tests/test_ui_browser.py), idempotently.
#
#  - exits 0 at once when /usr/bin/chromium exists and runs (`chromium --version`);
#  - otherwise installs the `chromium` package with apt-get (no browser download by Playwright:
#    the tests drive this system browser), after waiting for any other apt-get/dpkg to finish;
#  - serialised with a lock, so parallel callers install once.
#
# Environment:
#   CMDEXEC_CHROMIUM   the browser binary to check (default /usr/bin/chromium)
set -euo pipefail

PROG="$(basename "$0")"
CHROMIUM="${CMDEXEC_CHROMIUM:-/usr/bin/chromium}"
LOCK_FILE=/run/cmdexec-ensure-browser.lock

say() { echo "$PROG: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

chromium_ok() {
    [ -x "$CHROMIUM" ] && timeout 60 "$CHROMIUM" --version >/dev/null 2>&1
}

# Fast path.
if chromium_ok; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "$CHROMIUM is missing and installing it needs root (or sudo)"
    SUDO="sudo"
    LOCK_FILE="${TMPDIR:-/tmp}/cmdexec-ensure-browser.lock"
fi

exec 9>"$LOCK_FILE"
flock 9
if chromium_ok; then
    exit 0
fi

wait_for_apt() {
    local waited=0
    while pgrep -x apt-get >/dev/null 2>&1 || pgrep -x apt >/dev/null 2>&1 \
        || pgrep -x dpkg >/dev/null 2>&1 || pgrep -x unattended-upgr >/dev/null 2>&1; do
        if [ "$waited" -eq 0 ]; then
            say "another apt-get/dpkg is running; waiting for it to finish"
        fi
        if [ "$waited" -ge 1800 ]; then
            die "apt-get/dpkg still busy after ${waited}s"
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

wait_for_apt
say "installing chromium with apt-get"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends chromium >&2

chromium_ok || die "$CHROMIUM does not run after installing chromium"
say "ready: $("$CHROMIUM" --version 2>/dev/null | tail -n1)"
