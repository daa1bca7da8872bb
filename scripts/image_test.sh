#!/usr/bin/env bash
# Builds the connector image from ./Dockerfile and proves it against the TeleCMI simulator, as a
# non-root user: spec, check, discover and an incremental read, no secret in any output, and with a
# staging folder mounted at /staging/files as Airbyte does, every recording staged whole and readable
# by another user (the checks are `python -m integration_tests.harness image`).
#
# Builder: a Docker engine where one runs; else buildah (as root) with a stand-in for Airbyte's
# base image, made once with debootstrap and buildah and then reused. With neither it says SKIP
# and why, except under CI=true, where it installs buildah (and debootstrap) with apt-get.
# Environment: IMAGE_TEST_PYTHON (default .venv/bin/python), IMAGE_TEST_TAG.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${IMAGE_TEST_PYTHON:-.venv/bin/python}"
IMAGE="${IMAGE_TEST_TAG:-localhost/source-telecmi:image-test}"
STANDIN="localhost/python-connector-base-standin:bookworm"
say() { printf '[%4ss] %s\n' "$SECONDS" "$*"; }
fail() {
    echo "image test FAILED: $*" >&2
    exit 1
}
need() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "needs $*: as root, apt-get install $*"
    say "installing $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
        || fail "apt-get install $* failed"
}

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    BUILDER=docker
elif command -v buildah >/dev/null && [ "$(id -u)" = 0 ]; then
    BUILDER=buildah
elif [ "${CI:-}" = true ]; then
    need buildah
    BUILDER=buildah
else
    echo "SKIP image test: no Docker engine, and no buildah run as root (as root: apt-get install buildah)"
    exit 0
fi
WORK="$(mktemp -d)"
CTR=""
trap '[ -z "$CTR" ] || buildah rm "$CTR" >/dev/null; rm -rf "$WORK"' EXIT
mkdir "$WORK/data"
# Airbyte mounts a staging folder the source writes files to and the destination reads them from, as another user.
install -d -m 0777 "$WORK/staging"
say "builder: $BUILDER"

make_standin() { # Airbyte's base image alike: Debian bookworm, Python 3.11, pip, user airbyte (uid 1000)
    command -v debootstrap >/dev/null || need debootstrap
    local rootfs="$WORK/rootfs" mirror c
    mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    say "stand-in base image: debootstrap bookworm from ${mirror:=http://deb.debian.org/debian} (once)"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates,tzdata \
        bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 || fail "debootstrap: $(tail -5 "$WORK/debootstrap.log")"
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf python3 "$rootfs/usr/bin/python"
    for name in python python3 pip pip3; do ln -sf "/usr/bin/$name" "$rootfs/usr/local/bin/$name"; done
    mkdir -p "$rootfs/airbyte/integration_code"
    chroot "$rootfs" useradd --uid 1000 --create-home airbyte
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -cf "$WORK/rootfs.tar" . && rm -rf "$rootfs"
    c="$(buildah from scratch)"
    buildah add "$c" "$WORK/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/bin:/usr/bin:/bin --workingdir /airbyte/integration_code "$c"
    buildah commit --quiet "$c" "$STANDIN" >/dev/null && buildah rm "$c" >/dev/null
}

not_root() {
    case "$USER_NAME" in "" | root | root:* | 0 | 0:*) fail "the image's USER is '$USER_NAME': it must not be root" ;; esac
}

if [ "$BUILDER" = docker ]; then
    say "building $IMAGE"
    docker build -t "$IMAGE" . >"$WORK/build.log" 2>&1 || fail "docker build: $(tail -20 "$WORK/build.log")"
    USER_NAME="$(docker image inspect --format '{{.Config.User}}' "$IMAGE")"
    not_root
    RUN_UID="$(docker run --rm --entrypoint id "$IMAGE" -u)"
    RUNNER=(docker run --rm --network host -v "$WORK/data:/data:ro" -v "$WORK/staging:/staging/files" "$IMAGE")
else
    exec 9>/tmp/python-connector-base-standin.lock && flock 9 # one maker at a time; others reuse it
    if buildah inspect --type image "$STANDIN" >/dev/null 2>&1; then say "stand-in base image: reusing $STANDIN"; else make_standin; fi
    exec 9>&-
    say "building $IMAGE on $STANDIN"
    certs=/etc/ssl/certs/ca-certificates.crt # pip in the build trusts what this host trusts
    buildah bud --isolation=chroot --network=host --layers --force-rm --pull=never --build-arg "BASE_IMAGE=$STANDIN" \
        -v "$certs:$certs:ro" -t "$IMAGE" . >"$WORK/build.log" 2>&1 || fail "buildah bud: $(tail -20 "$WORK/build.log")"
    USER_NAME="$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
    not_root
    read -ra ENTRYPOINT <<<"$(buildah inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$IMAGE")"
    [ "${#ENTRYPOINT[@]}" -gt 0 ] || fail "the image has no ENTRYPOINT"
    CTR="$(buildah from --pull=never --quiet "$IMAGE")"
    IN=(buildah run --isolation=chroot --network=host --user "$USER_NAME" -v "$WORK/data:/data:ro" -v "$WORK/staging:/staging/files" "$CTR" --)
    RUN_UID="$("${IN[@]}" id -u)"
    RUNNER=("${IN[@]}" "${ENTRYPOINT[@]}")
fi
[ "$RUN_UID" != 0 ] || fail "the connector runs as uid 0: it must not run as root"
say "built $IMAGE; the connector runs as $USER_NAME (uid $RUN_UID)"
"$PY" -m integration_tests.harness image --workdir "$WORK/data" --staging "$WORK/staging" -- "${RUNNER[@]}" || fail "see above"
say "image test passed ($BUILDER)"
