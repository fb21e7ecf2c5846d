#!/usr/bin/env bash
# Install the servers of the deployment tests (tests/deployment/) from Debian packages, if missing:
#
#  - postgresql  (the metadata DB and Celery's result backend; the tests run initdb/postgres
#                 themselves, as the `postgres` user, in a temporary folder on their own port)
#  - redis-server (Celery's broker; started by the tests on their own port)
#
# Nothing is started or enabled here: the Debian packages' own services are not needed.
# Idempotent: exits at once when both are installed.
set -euo pipefail

PROG="$(basename "$0")"
say() { echo "$PROG: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && id postgres >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }

if have_postgres && have_redis; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
command -v apt-get >/dev/null 2>&1 || die "postgresql/redis-server are missing and there is no apt-get"

wait_for_apt() {
    local waited=0
    while pgrep -x apt-get >/dev/null 2>&1 || pgrep -x apt >/dev/null 2>&1 \
        || pgrep -x dpkg >/dev/null 2>&1 || pgrep -x unattended-upgr >/dev/null 2>&1; do
        [ "$waited" -eq 0 ] && say "another apt-get/dpkg is running; waiting for it to finish"
        [ "$waited" -ge 1800 ] && die "apt-get/dpkg still busy after ${waited}s"
        sleep 5
        waited=$((waited + 5))
    done
}

packages=()
have_postgres || packages+=(postgresql)
have_redis || packages+=(redis-server)
say "installing ${packages[*]}"
wait_for_apt
"${SUDO[@]}" apt-get update -qq
wait_for_apt
# policy-rc.d 101: the packages' init scripts must not start system-wide servers (the tests start
# their own on private ports). The file is removed again unless it was there before.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
fi
trap 'if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi' EXIT
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"

have_postgres || die "postgresql was installed but no /usr/lib/postgresql/*/bin/initdb or postgres user exists"
have_redis || die "redis-server was installed but is not on PATH"
say "ok"
