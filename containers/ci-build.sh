#!/usr/bin/env bash
# Build the CPU image of harness on a machine without a registry (CI, a workstation).
#
#   bash containers/ci-build.sh            # prints `export DOCKER_HOST=...` and the image id last
#
# 1. installs docker.io and debootstrap when missing (apt-get, needs root)
# 2. starts a private dockerd: its own data root ($HARNESS_DOCKER_ROOT, default
#    /var/lib/harness-docker), exec root and socket; reuses one that already answers
# 3. imports the base image local/debian:bookworm (debootstrap minbase + python3.11),
#    from a cached tar in $HARNESS_DOCKER_CACHE (default /var/cache/harness-docker)
# 4. builds the wheelhouse on the host (torch==2.13.0+cpu + constraints.txt), cached
#    in the same folder by a hash of constraints.txt and the project's dependencies
# 5. builds the image ($IMAGE:$TAG, default harness:cpu) with BuildKit, target cpu
# Every step prints its time; every step is skipped when its product is already there.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_ROOT=${HARNESS_DOCKER_ROOT:-/var/lib/harness-docker}
CACHE=${HARNESS_DOCKER_CACHE:-/var/cache/harness-docker}
RUN_DIR=${HARNESS_DOCKER_RUN:-/run/harness-docker}
SOCKET=$RUN_DIR/docker.sock
# an engine named by DOCKER_HOST is used as is; otherwise the private one below
export DOCKER_HOST=${DOCKER_HOST:-unix://$SOCKET}
IMAGE=${IMAGE:-harness}
TAG=${TAG:-cpu}
BASE=${BASE_IMAGE:-local/debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PYTHON:-$REPO/.venv/bin/python}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
DOCKER=/usr/bin/docker   # Debian's client: the one first on PATH may lack buildx/BuildKit

ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( ($1 % 1000) / 100 )); }
t0=$(ms)
step_start=$t0
step() {  # step NAME: prints the time of the previous step
    local now; now=$(ms)
    if [ -n "${STEP:-}" ]; then printf '[ci-build] %-12s %6s s\n' "$STEP" "$(secs $((now - step_start)))" >&2; fi
    STEP=$1; step_start=$now
}
log() { echo "[ci-build] $*" >&2; }

# 1. packages ------------------------------------------------------------------
step packages
missing=()
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# 2. dockerd -------------------------------------------------------------------
step dockerd
mkdir -p "$DATA_ROOT" "$RUN_DIR" "$CACHE"
if ! "$DOCKER" info >/dev/null 2>&1; then
    if [ "$DOCKER_HOST" != "unix://$SOCKET" ]; then log "DOCKER_HOST=$DOCKER_HOST does not answer"; exit 3; fi
    log "starting dockerd (data root $DATA_ROOT, socket $SOCKET)"
    nohup dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/dockerd.pid" \
        --host "$DOCKER_HOST" >"$RUN_DIR/dockerd.log" 2>&1 &
    for _ in $(seq 1 150); do
        "$DOCKER" info >/dev/null 2>&1 && break
        if ! kill -0 $! 2>/dev/null; then tail -20 "$RUN_DIR/dockerd.log" >&2; log "dockerd exited"; exit 3; fi
        sleep 0.2
    done
    "$DOCKER" info >/dev/null 2>&1 || { tail -20 "$RUN_DIR/dockerd.log" >&2; log "dockerd does not answer"; exit 3; }
fi

# 3. base image ----------------------------------------------------------------
step base
BASE_TAR=$CACHE/debian-bookworm-python3.tar
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    if [ ! -s "$BASE_TAR" ]; then
        log "debootstrap bookworm (minbase + python3) from $MIRROR"
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" >/dev/null
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
        tar -C "$rootfs" -cf "$BASE_TAR.part" . && mv "$BASE_TAR.part" "$BASE_TAR"
        rm -rf "$rootfs"
    fi
    log "importing $BASE_TAR as $BASE"
    "$DOCKER" import - "$BASE" <"$BASE_TAR" >/dev/null
fi

# 4. wheelhouse ----------------------------------------------------------------
step wheelhouse
# keyed by what decides the resolution: constraints.txt and the project's dependencies
key=$( { cat "$REPO/constraints.txt"; sed -n '/^dependencies = \[/,/^\]/p' "$REPO/pyproject.toml"; } | sha256sum | cut -c1-12)
WHEELHOUSE=$CACHE/wheelhouse-$key
if [ ! -f "$WHEELHOUSE/.complete" ]; then
    log "building the wheelhouse $WHEELHOUSE"
    rm -rf "$WHEELHOUSE"; mkdir -p "$WHEELHOUSE"
    # torch pinned to the CPU build: only the local CPU wheel carries that version
    "$PY" -m pip wheel -q -w "$WHEELHOUSE" --find-links "$TORCH_WHEELS" -c "$REPO/constraints.txt" \
        "torch==2.13.0+cpu" "setuptools>=68" wheel "$REPO" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
    rm -f "$WHEELHOUSE"/harness-*.whl   # the project is built from the checkout in the image
    touch "$WHEELHOUSE/.complete"
fi
# the build context is the checkout: a hard-linked copy of the wheelhouse lives there (git-ignored)
ln_dir=$REPO/containers/wheelhouse
if [ "$(cat "$ln_dir/.key" 2>/dev/null)" != "$key" ]; then
    rm -rf "$ln_dir"
    cp -al "$WHEELHOUSE" "$ln_dir" 2>/dev/null || cp -a "$WHEELHOUSE" "$ln_dir"
    echo "$key" >"$ln_dir/.key"
fi

# 5. image ---------------------------------------------------------------------
step image
commit=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
DOCKER_BUILDKIT=1 "$DOCKER" build -q --build-arg VARIANT=cpu -f "$REPO/containers/Dockerfile" \
    --build-arg CPU_BASE="$BASE" --build-arg GIT_COMMIT="$commit" --build-arg IMAGE_REF="$IMAGE:$TAG" \
    -t "$IMAGE:$TAG" "$REPO" >/dev/null
step done
printf '[ci-build] %-12s %6s s\n' total "$(secs $(( $(ms) - t0 )))" >&2
echo "export DOCKER_HOST=$DOCKER_HOST"
"$DOCKER" image inspect --format '{{.Id}}' "$IMAGE:$TAG"
