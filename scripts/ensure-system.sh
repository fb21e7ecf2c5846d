#!/usr/bin/env bash
# Install, in ONE apt-get run, every Debian package the test suite needs that is missing:
#   ruby (rb> tasks), docker.io + debootstrap (the Docker engine and the test image), chromium (the
#   browser tests), postgresql + redis-server (the deployment tests).
# Each ensure-*.sh script still installs its own part if needed; doing it here first saves an
# `apt-get update` and a dpkg run per script (minutes on a fresh CI machine). Nothing is started:
# the packages' own services are kept from starting (the tests start their own on private ports).
set -euo pipefail

PROG="$(basename "$0")"
say() { echo "$PROG: $*" >&2; }

missing=()
command -v ruby >/dev/null 2>&1 || missing+=(ruby)
command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] && SUDO=() || SUDO=(sudo)

while pgrep -x apt-get >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1; do sleep 2; done
say "installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
fi
trap 'if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi' EXIT
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
say "installed"
