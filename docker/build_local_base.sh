#!/usr/bin/env bash
# Build a local Docker base image (Debian bookworm + CPython 3.11 + venv) with debootstrap, for
# machines that reach Debian's archive and PyPI but no image registry. It stands in for the
# Dockerfile's default base, python:3.11-slim-bookworm (Debian + a CPython under /usr/local).
#
#   docker/build_local_base.sh [TAG]          # default TAG: airbnb-dl-localbase:bookworm
#
# Python: Debian bookworm ships CPython 3.11.2, but constraints.txt is resolved on a newer 3.11
# (e.g. soupsieve 4.1.3 needs Python >= 3.11.5). When the host's python3 is a source-built
# CPython 3.11 (pyenv and the like; not Debian's /usr), its interpreter and standard library
# (site-packages left out) are copied to /usr/local of the image, as in the python:3.11 images.
# HOST_PYTHON=/path/to/python3 picks another interpreter; HOST_PYTHON=none keeps Debian's 3.11.2.
#
# The image carries the host's CA bundle and a pip.conf pointing at it, so `pip install` inside
# `docker build --network host` reaches PyPI through the same TLS setup as the host.
# Cached: an existing image is reused; otherwise the root-filesystem tarball in $CACHE_DIR
# is re-imported; only when neither exists does debootstrap run (a few minutes).
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), SUITE (bookworm),
#              AIRBNB_DL_DOCKER_CACHE (cache dir), FORCE=1 to rebuild everything.
set -euo pipefail

TAG="${1:-airbnb-dl-localbase:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${AIRBNB_DL_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airbnb-dl/docker}"
HOST_CA="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
HOST_PYTHON="${HOST_PYTHON:-$(command -v python3 || echo none)}"

# Which interpreter goes to /usr/local: PREFIX and VERSION of a non-Debian CPython 3.11, or none.
PY_PREFIX="" PY_VERSION=""
if [[ "$HOST_PYTHON" != none ]]; then
    read -r PY_PREFIX PY_VERSION < <("$HOST_PYTHON" -c '
import platform, sys
print(sys.base_prefix, platform.python_version())' 2>/dev/null) || true
    if [[ "$PY_PREFIX" == /usr || "$PY_VERSION" != 3.11.* || ! -x "$PY_PREFIX/bin/python3.11" ]]; then
        PY_PREFIX="" PY_VERSION=""
    fi
fi
TARBALL="$CACHE_DIR/localbase-$SUITE-py${PY_VERSION:-debian}.tar"

log() { printf '[build_local_base] %s\n' "$*" >&2; }

want_version="${PY_VERSION:-3.11.2}"
if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    have_version="$(docker run --rm "$TAG" python3 -c 'import platform; print(platform.python_version())' || true)"
    if [[ "$have_version" == "$want_version" ]]; then
        log "image $TAG (Python $have_version) exists: reused (FORCE=1 rebuilds)"
        exit 0
    fi
    log "image $TAG has Python ${have_version:-?}, want $want_version: re-importing"
fi

mkdir -p "$CACHE_DIR"
if [[ "${FORCE:-0}" == 1 || ! -s "$TARBALL" ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install -y debootstrap"; exit 1; }
    [[ $(id -u) == 0 ]] || { log "debootstrap needs root"; exit 1; }
    ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS"' EXIT
    log "debootstrap $SUITE from $MIRROR into $ROOTFS"
    mkdir -p "$CACHE_DIR/debs"
    debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debs" \
        --include=python3,python3-venv,ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libuuid1,libgdbm6,tzdata \
        "$SUITE" "$ROOTFS" "$MIRROR"

    if [[ -n "$PY_PREFIX" ]]; then
        log "CPython $PY_VERSION from $PY_PREFIX -> /usr/local (site-packages left out)"
        mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib" "$ROOTFS/usr/local/include"
        cp -a "$PY_PREFIX/bin/python3.11" "$ROOTFS/usr/local/bin/"
        cp -a "$PY_PREFIX"/lib/libpython3* "$ROOTFS/usr/local/lib/"
        [[ -d "$PY_PREFIX/include/python3.11" ]] && cp -a "$PY_PREFIX/include/python3.11" "$ROOTFS/usr/local/include/"
        tar -C "$PY_PREFIX/lib" --exclude='python3.11/site-packages/*' --exclude='python3.11/test' \
            -cf - python3.11 | tar -C "$ROOTFS/usr/local/lib" -xf -
        ln -sf python3.11 "$ROOTFS/usr/local/bin/python3"
        ln -sf python3.11 "$ROOTFS/usr/local/bin/python"
        chroot "$ROOTFS" ldconfig   # /usr/local/lib is on Debian's default library path
    fi

    # TLS: the host's CA bundle (it may carry a proxy's CA that PyPI traffic goes through).
    if [[ -s "$HOST_CA" ]]; then
        cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    fi
    # pip: the CA bundle, plus the host's index settings when they are http(s) URLs. Local-path
    # settings of the host (constraint files, find-links, file:// indexes) do not exist in the
    # image and are left out.
    {
        echo "[global]"
        echo "cert = /etc/ssl/certs/ca-certificates.crt"
        if [[ -r /etc/pip.conf ]]; then
            grep -E '^\s*(index-url|extra-index-url|trusted-host)\s*=\s*' /etc/pip.conf \
                | grep -v 'file://' || true
        fi
    } > "$ROOTFS/etc/pip.conf"

    # Slim the image: apt lists, docs and caches are not needed at run time.
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
           "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/tmp/*
    chmod 1777 "$ROOTFS/tmp"

    log "packing $TARBALL"
    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
fi

log "docker import $TARBALL as $TAG"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$TAG" >/dev/null
docker run --rm "$TAG" python3 -c 'import sys, venv, ssl; print("local base:", sys.version.split()[0])'
