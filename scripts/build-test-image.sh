#!/usr/bin/env bash
# Build the local Docker test image without any registry:
#   debootstrap (Debian bookworm, minbase) -> trimmed rootfs -> `docker import`.
#
# Usage: scripts/build-test-image.sh [TAG]        (default TAG: cmdexec-test:bookworm)
#
# The image gets python3, ruby, curl, bash, tar and gzip.
# Caches:
#   - the image itself: exits at once when `docker image inspect TAG` succeeds;
#   - the rootfs tarball under ${CMDEXEC_CACHE_DIR:-/var/cache/cmdexec}/, so that a
#     re-import after the Docker data dir was wiped needs no new debootstrap.
# The Debian mirror is read from this machine's apt sources at run time
# (override with CMDEXEC_DEBIAN_MIRROR).
set -euo pipefail

PROG="$(basename "$0")"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG="${1:-cmdexec-test:bookworm}"
SUITE=bookworm
VARIANT=minbase
INCLUDE="python3-minimal,python3,ruby,curl,ca-certificates,bash,tar,gzip"
# Bump when the way the rootfs is made or trimmed changes (invalidates the tarball cache).
RECIPE_VERSION=2
CACHE_DIR="${CMDEXEC_CACHE_DIR:-/var/cache/cmdexec}"
START=$SECONDS

say() { echo "$PROG: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# 1. Docker Engine first.
"$SCRIPT_DIR/ensure-docker.sh"

# 2. Image already there?
if docker image inspect "$TAG" >/dev/null 2>&1; then
    say "image $TAG already present"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the rootfs needs root"

mkdir -p "$CACHE_DIR"
# Serialise concurrent builds.
exec 8>"$CACHE_DIR/build-test-image.lock"
flock 8
if docker image inspect "$TAG" >/dev/null 2>&1; then
    say "image $TAG already present (built by a concurrent run)"
    exit 0
fi

ARCH="$(dpkg --print-architecture 2>/dev/null || uname -m)"
KEY="$(printf '%s|%s|%s|%s|%s' "$SUITE" "$VARIANT" "$INCLUDE" "$ARCH" "$RECIPE_VERSION" \
    | sha256sum | cut -c1-12)"
TARBALL="$CACHE_DIR/rootfs-$SUITE-$VARIANT-$ARCH-$KEY.tar.gz"

ROOTFS=""
TMP_TARBALL=""
cleanup() {
    if [ -n "$ROOTFS" ] && [ -d "$ROOTFS" ]; then
        # debootstrap may leave /proc, /sys, ... mounted after a failure:
        # unmount everything below the rootfs (deepest first) before removing it.
        local m
        awk -v p="$ROOTFS" '$2 == p || index($2, p "/") == 1 { print $2 }' /proc/mounts \
            | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$ROOTFS"
    fi
    if [ -n "$TMP_TARBALL" ]; then
        rm -f "$TMP_TARBALL"
    fi
}
trap cleanup EXIT

# Debian mirror from the apt sources (deb822 *.sources first, then sources.list).
find_mirror() {
    local f
    # deb822: the URIs of a stanza with Types: deb whose Suites list $SUITE itself.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (uris != "" && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                uris = ""; types = ""; suites = ""; enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            {
                line = $0
                key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { if (!found) flush() }
        ' "$f"
    done
    # one-line format: deb [options] URI suite components...
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i }
            }
        ' "$f"
    done
}

# 3. Rootfs tarball: from the cache, or made with debootstrap.
if [ -s "$TARBALL" ] && gzip -t "$TARBALL" 2>/dev/null; then
    say "using cached rootfs $TARBALL"
else
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "debootstrap not found; installing it"
        waited=0
        while pgrep -x apt-get >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1; do
            [ "$waited" -eq 0 ] && say "another apt-get/dpkg is running; waiting"
            [ "$waited" -ge 1800 ] && die "apt-get/dpkg still busy after ${waited}s"
            sleep 5
            waited=$((waited + 5))
        done
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
            debootstrap debian-archive-keyring >&2
    fi

    MIRROR="${CMDEXEC_DEBIAN_MIRROR:-$(find_mirror | head -n1)}"
    [ -n "$MIRROR" ] || die "no Debian mirror for '$SUITE' found in /etc/apt/sources.list{,.d/*} (set CMDEXEC_DEBIAN_MIRROR)"
    MIRROR="${MIRROR%/}"

    ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    chmod 755 "$ROOTFS"
    say "debootstrap --variant=$VARIANT $SUITE from $MIRROR (this takes about a minute)"
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$CACHE_DIR/debootstrap.log" 2>&1; then
        tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
        if [ -f "$ROOTFS/debootstrap/debootstrap.log" ]; then
            tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
        fi
        die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
    fi
    say "debootstrap done after $((SECONDS - START))s"

    # Sanity check inside the chroot.
    for tool in python3 ruby curl bash tar gzip; do
        chroot "$ROOTFS" /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            sh -c "command -v $tool" >/dev/null || die "$tool missing in the rootfs"
    done

    # Trim: apt lists and caches, docs, man/info pages, translations, logs.
    rm -rf "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/var/cache/apt/archives/*.deb \
        "$ROOTFS"/var/cache/debconf/*-old \
        "$ROOTFS"/var/lib/dpkg/*-old \
        "$ROOTFS"/usr/share/doc/* \
        "$ROOTFS"/usr/share/man/* \
        "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/usr/share/lintian/* \
        "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
        "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
    # message translations (keep locale.alias)
    find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    # Keep later `apt-get install` in the container from bringing docs back.
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-cmdexec-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    # Docker provides these at run time.
    : >"$ROOTFS/etc/resolv.conf"
    : >"$ROOTFS/etc/hostname"

    TMP_TARBALL="$(mktemp "$CACHE_DIR/.rootfs.XXXXXX.tar.gz")"
    say "packing rootfs into $TARBALL"
    tar --numeric-owner --xattrs -C "$ROOTFS" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -c . | gzip -1 >"$TMP_TARBALL"
    mv -f "$TMP_TARBALL" "$TARBALL"
    TMP_TARBALL=""
    chmod 644 "$TARBALL"
    # older tarballs of other recipes are no longer needed
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-*.tar.gz" ! -path "$TARBALL" -delete
    rm -rf --one-file-system "$ROOTFS"
    ROOTFS=""
fi

# 4. Import.
say "importing $TARBALL as $TAG"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG" <"$TARBALL" >/dev/null

# 5. Smoke test (also checks that host networking works).
if ! out="$(docker run --rm --network host "$TAG" \
    sh -c 'python3 --version && ruby --version && curl --version | head -n1 && bash --version | head -n1 && tar --version | head -n1 && gzip --version | head -n1' 2>&1)"; then
    say "smoke test of $TAG failed:"
    printf '%s\n' "$out" | sed "s/^/$PROG:   /" >&2
    docker image rm "$TAG" >/dev/null 2>&1 || true
    die "image $TAG is not usable (removed); the cached rootfs is kept at $TARBALL"
fi
printf '%s\n' "$out" | sed "s/^/$PROG:   /" >&2

SIZE="$(docker image inspect -f '{{.Size}}' "$TAG")"
say "built $TAG ($((SIZE / 1024 / 1024)) MiB) in $((SECONDS - START))s"
