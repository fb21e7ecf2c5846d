#!/usr/bin/env bash
# Make a working Docker Engine available on this machine.
#
#  - exits 0 at once when `docker info` already answers;
#  - installs docker.io with apt-get when dockerd is missing;
#  - starts dockerd in the background, detached from the calling shell
#    (log: /var/log/cmdexec-dockerd.log), trying the default flags first and
#    then fallbacks (no iptables, vfs storage driver) for restricted sandboxes;
#  - waits until `docker info` answers.
#
# Environment:
#   CMDEXEC_DOCKERD_FLAGS   force these dockerd flags (no fallbacks tried)
#   CMDEXEC_DOCKER_TIMEOUT  seconds to wait for one dockerd start (default 60)
#   CMDEXEC_CACHE_DIR       where the flags that worked are remembered
#                           (default /var/cache/cmdexec)
set -euo pipefail

PROG="$(basename "$0")"
LOG=/var/log/cmdexec-dockerd.log
TIMEOUT="${CMDEXEC_DOCKER_TIMEOUT:-60}"
CACHE_DIR="${CMDEXEC_CACHE_DIR:-/var/cache/cmdexec}"
FLAGS_FILE="$CACHE_DIR/dockerd-flags"
LOCK_FILE=/run/cmdexec-ensure-docker.lock

say() { echo "$PROG: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

docker_ok() {
    command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

# Fast path.
if docker_ok; then
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "docker is not answering and starting dockerd needs root"

# Serialise concurrent callers (fd 9 is closed for dockerd below, so the
# daemon does not keep holding the lock).
exec 9>"$LOCK_FILE"
flock 9
if docker_ok; then
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

apt_install() {
    wait_for_apt
    export DEBIAN_FRONTEND=noninteractive
    say "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    say "apt-get install $*"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >&2
}

# 1. Install the engine when missing.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "dockerd/docker not found; installing docker.io"
    apt_install docker.io
    command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"
fi

# 2. A dockerd may already be running (e.g. still starting up): give it a chance.
running_dockerd() { pgrep -x dockerd 2>/dev/null | head -n1; }

wait_docker() {
    # wait_docker PID SECONDS: 0 when docker answers, 1 on timeout, 2 when PID died
    local pid="$1" limit="$2" t=0
    while [ "$t" -lt "$limit" ]; do
        if docker_ok; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 1
        t=$((t + 1))
    done
    docker_ok
}

stop_dockerd() {
    local pid="$1" t=0
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$t" -lt 20 ]; do
        sleep 1
        t=$((t + 1))
    done
    kill -9 "$pid" 2>/dev/null || true
    # a containerd started by this dockerd may be left behind after a crash
    local cpidf=/var/run/docker/containerd/containerd.pid
    if [ -s "$cpidf" ]; then
        local cpid
        cpid="$(cat "$cpidf" 2>/dev/null || true)"
        if [ -n "$cpid" ] && [ "$(cat "/proc/$cpid/comm" 2>/dev/null || true)" = containerd ]; then
            kill "$cpid" 2>/dev/null || true
            sleep 1
        fi
    fi
    rm -f /var/run/docker.pid
}

pid="$(running_dockerd || true)"
if [ -n "$pid" ]; then
    say "dockerd is already running (pid $pid); waiting up to ${TIMEOUT}s for it to answer"
    if wait_docker "$pid" "$TIMEOUT"; then
        say "Docker Engine is ready"
        exit 0
    fi
    say "running dockerd (pid $pid) does not answer; stopping it"
    stop_dockerd "$pid"
fi

# 3. Candidate flag sets: the remembered one first, then default and fallbacks.
candidates=()
if [ -n "${CMDEXEC_DOCKERD_FLAGS:-}" ]; then
    candidates+=("$CMDEXEC_DOCKERD_FLAGS")
else
    if [ -s "$FLAGS_FILE" ]; then
        candidates+=("$(head -n1 "$FLAGS_FILE")")
    fi
    noipt="--iptables=false"
    if dockerd --help 2>&1 | grep -q -- '--ip6tables'; then
        noipt="$noipt --ip6tables=false"
    fi
    candidates+=(
        ""
        "$noipt"
        "--storage-driver=vfs"
        "$noipt --storage-driver=vfs"
    )
fi

mkdir -p "$(dirname "$LOG")"
tried=()
for flags in "${candidates[@]}"; do
    # skip duplicates (the remembered set is also in the list)
    dup=0
    for t in ${tried[@]+"${tried[@]}"}; do
        if [ "$t" = "x$flags" ]; then dup=1; fi
    done
    [ "$dup" -eq 1 ] && continue
    tried+=("x$flags")

    label="${flags:-<default>}"
    say "starting dockerd with flags: $label"
    rm -f /var/run/docker.pid
    {
        echo "===== $(date -u +%Y-%m-%dT%H:%M:%SZ) $PROG: dockerd $flags ====="
    } >>"$LOG"
    # Detached: own session, no stdin, output to the log, lock fd closed.
    # shellcheck disable=SC2086  # flags are intentionally word-split
    setsid nohup dockerd $flags </dev/null >>"$LOG" 2>&1 9>&- &
    pid=$!
    disown "$pid" 2>/dev/null || true

    rc=0
    wait_docker "$pid" "$TIMEOUT" || rc=$?
    if [ "$rc" -eq 0 ]; then
        mkdir -p "$CACHE_DIR"
        printf '%s\n' "$flags" >"$FLAGS_FILE"
        say "Docker Engine is ready (dockerd pid $pid, flags: $label, log: $LOG)"
        exit 0
    fi
    if [ "$rc" -eq 2 ]; then
        say "dockerd with flags '$label' exited; last log lines:"
    else
        say "dockerd with flags '$label' did not answer within ${TIMEOUT}s; last log lines:"
    fi
    tail -n 5 "$LOG" | sed "s/^/$PROG:   /" >&2
    stop_dockerd "$pid"
done

say "could not start a working dockerd; tail of $LOG:"
tail -n 40 "$LOG" >&2 || true
exit 1
