#!/usr/bin/env bash
# End-to-end container check on a machine without an image registry (`nox -s docker-smoke`):
#   1. start dockerd if no daemon answers;
#   2. build the local Debian base image (docker/build_local_base.sh, cached);
#   3. docker build the project image on it (CPU TensorFlow from PyPI: TF_EXTRAS is empty);
#   4. docker run the given command as the calling user, with the repository mounted at
#      /work/project and the dataset mounted read-only at /data.
#
#   docker/smoke.sh        # runs: nox -s deliverable1 -- --smoke --out test-artifacts/docker-smoke/deliverable1
#   docker/smoke.sh nox -s tests -- -q -x tests/test_devices.py
#
# Environment: AIRBNB_DATA_DIR (default /work/shared/data/airbnb-madrid, else ../shared/data/
# airbnb-madrid), IMAGE (default airbnb-dl:smoke), BASE_IMAGE (default the local base),
# SKIP_BUILD=1 to reuse an already built IMAGE.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-airbnb-dl:smoke}"
BASE_IMAGE="${BASE_IMAGE:-airbnb-dl-localbase:bookworm}"
CACHE_DIR="${AIRBNB_DL_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airbnb-dl/docker}"
if [[ $# -eq 0 ]]; then
    # The smoke report lands in test-artifacts/ (gitignored) of the mounted checkout, to look at.
    set -- nox -s deliverable1 -- --smoke --out test-artifacts/docker-smoke/deliverable1
fi

log() { printf '[docker-smoke] %s\n' "$*" >&2; }

# 1. Docker daemon --------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || {
        log "no Docker daemon and no dockerd: apt-get update && apt-get install -y docker.io"
        exit 1
    }
    mkdir -p "$CACHE_DIR"
    log "starting dockerd (log: $CACHE_DIR/dockerd.log)"
    setsid nohup dockerd >"$CACHE_DIR/dockerd.log" 2>&1 < /dev/null &
    echo $! > "$CACHE_DIR/dockerd.pid"
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up:"; tail -20 "$CACHE_DIR/dockerd.log" >&2; exit 1; }
fi

# 2-3. Images ---------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    if [[ "$BASE_IMAGE" == airbnb-dl-localbase:* ]]; then
        "$REPO/docker/build_local_base.sh" "$BASE_IMAGE"
    fi
    log "docker build $IMAGE on $BASE_IMAGE"
    start=$SECONDS
    docker build --network host --force-rm \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg TF_EXTRAS= \
        -t "$IMAGE" "$REPO"
    log "image built in $((SECONDS - start)) s"
fi

# 4. Run ----------------------------------------------------------------------------------------
DATA_DIR="${AIRBNB_DATA_DIR:-}"
if [[ -z "$DATA_DIR" ]]; then
    for candidate in /work/shared/data/airbnb-madrid "$REPO/../shared/data/airbnb-madrid"; do
        [[ -d "$candidate" ]] && { DATA_DIR="$candidate"; break; }
    done
fi
mounts=(-v "$REPO:/work/project")
if [[ -n "$DATA_DIR" && -d "$DATA_DIR" ]]; then
    DATA_DIR="$(cd "$DATA_DIR" && pwd)"
    mounts+=(-v "$DATA_DIR:/data:ro")
    log "data: $DATA_DIR -> /data (read-only)"
else
    log "no dataset directory found (set AIRBNB_DATA_DIR): running without /data"
fi

log "docker run $IMAGE $*"
start=$SECONDS
docker run --rm --network host "${mounts[@]}" -e AIRBNB_DATA_DIR=/data \
    --user "$(id -u):$(id -g)" "$IMAGE" "$@"
log "command finished in $((SECONDS - start)) s"
