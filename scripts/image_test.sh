#!/usr/bin/env bash
# Builds the connector image from ./Dockerfile and proves it against the TeleCMI simulator:
# spec, check, discover and an incremental read of outgoing_missed_calls, as a non-root user,
# without the token appearing in any output.
#
#   bash scripts/image_test.sh
#
# With a running Docker daemon it uses `docker build` / `docker run` and the real base image.
# Otherwise it uses buildah (chroot isolation) with a local stand-in for the base image, made
# once with debootstrap and then reused (see shared/container-images.md). With neither it
# skips, except under CI=true, where it installs buildah first (scripts/install_image_tools.sh).
#
# Environment:
#   IMAGE_TEST_PYTHON  Python for the simulator and the checks (default .venv/bin/python)
#   IMAGE_TEST_TAG     tag of the built image (default localhost/source-telecmi:image-test)
#   IMAGE_TEST_TIMEOUT seconds allowed to each connector command (default 300)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STANDIN="localhost/python-connector-base-standin:bookworm"
IMAGE="${IMAGE_TEST_TAG:-localhost/source-telecmi:image-test}"
TIMEOUT="${IMAGE_TEST_TIMEOUT:-300}"
STREAM="outgoing_missed_calls"
TOKEN="demo-token"
CALLS=50

T0=$SECONDS
fail() {
    echo "image test FAILED: $*" >&2
    exit 1
}
step() {
    printf '[%4ss] %s\n' "$((SECONDS - T0))" "$*"
}

# ---------------------------------------------------------------- pick a builder
BUILDER=""
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    BUILDER=docker
elif command -v buildah >/dev/null 2>&1; then
    BUILDER=buildah
elif [ "${CI:-}" = "true" ]; then
    step "CI=true and no container builder: installing buildah"
    bash "$ROOT/scripts/install_image_tools.sh" || fail "could not install the image tools"
    BUILDER=buildah
else
    echo "SKIP image test: no container builder (docker daemon or buildah)"
    exit 0
fi
if [ "$BUILDER" = buildah ] && [ "${CI:-}" = "true" ]; then
    # Idempotent and quick when all is there; brings podman/debootstrap for the stand-in.
    bash "$ROOT/scripts/install_image_tools.sh" >/dev/null || fail "could not install the image tools"
fi
step "builder: $BUILDER"

# ---------------------------------------------------------------- python for simulator/checks
PY="${IMAGE_TEST_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then
        PY="$ROOT/.venv/bin/python"
    else
        PY="$(command -v python3 || true)"
    fi
fi
{ [ -n "$PY" ] && [ -x "$PY" ]; } || fail "no Python found for the simulator (run 'make venv' first)"
"$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
    || fail "$PY is older than Python 3.11 (run 'make venv' first)"

# ---------------------------------------------------------------- scratch space and cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/image-test.XXXXXX")"
DATA="$WORK/data"
OUT="$WORK/out"
mkdir -p "$DATA" "$OUT"
SIM_PID=""
CTR=""
cleanup() {
    local rc=$?
    if [ -n "$SIM_PID" ]; then
        kill "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
    if [ -n "$CTR" ]; then
        buildah rm "$CTR" >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ -d "$OUT" ]; then
        echo "--- last output (kept in $WORK) ---" >&2
        for f in "$OUT"/*; do
            [ -f "$f" ] || continue
            echo "== $(basename "$f")" >&2
            tail -n 15 "$f" | cut -c1-400 >&2
        done
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- stand-in base image (buildah)
image_exists() {
    buildah inspect --type image "$1" >/dev/null 2>&1
}

apt_mirror() {
    local m=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        m="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m="$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)"
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

make_standin() {
    local missing=()
    for tool in debootstrap podman; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [ "${#missing[@]}" -ne 0 ]; then
        fail "the stand-in base image needs ${missing[*]}: run 'bash scripts/install_image_tools.sh' as root"
    fi
    [ "$(id -u)" -eq 0 ] || fail "making the stand-in base image with debootstrap needs root"
    local rootfs="$WORK/rootfs" mirror
    mirror="$(apt_mirror)"
    step "stand-in: debootstrap bookworm from $mirror (once, about a minute)"
    debootstrap --variant=minbase \
        --include=python3,python3-pip,python3-venv,ca-certificates,tzdata \
        bookworm "$rootfs" "$mirror" >"$OUT/debootstrap.log" 2>&1 \
        || fail "debootstrap failed (see $OUT/debootstrap.log)"
    # Like python:3.11-slim / airbyte/python-connector-base: pip usable system-wide, Python and
    # pip on /usr/local/bin, UTC, /airbyte/integration_code and the user airbyte (uid 1000).
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf python3 "$rootfs/usr/bin/python"
    for name in python python3 pip pip3; do
        ln -sf "/usr/bin/$name" "$rootfs/usr/local/bin/$name"
    done
    ln -snf /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
    mkdir -p "$rootfs/airbyte/integration_code"
    chroot "$rootfs" useradd --uid 1000 --create-home --shell /bin/bash airbyte
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c . | podman import \
        --change 'WORKDIR /airbyte/integration_code' \
        --change 'CMD ["/bin/bash"]' \
        - "$STANDIN" >"$OUT/import.log" 2>&1 \
        || fail "podman import of the stand-in failed (see $OUT/import.log)"
    rm -rf "$rootfs"
}

if [ "$BUILDER" = buildah ]; then
    if image_exists "$STANDIN"; then
        step "stand-in base image: reusing $STANDIN"
    else
        # One maker at a time on this machine; a second waits and then reuses it.
        exec 9>"${TMPDIR:-/tmp}/python-connector-base-standin.lock"
        flock 9
        if image_exists "$STANDIN"; then
            step "stand-in base image: reusing $STANDIN (made meanwhile)"
        else
            make_standin
            image_exists "$STANDIN" || fail "stand-in $STANDIN missing after import"
            step "stand-in base image: made $STANDIN"
        fi
        flock -u 9
        exec 9>&-
    fi
fi

# ---------------------------------------------------------------- build the connector image
step "building $IMAGE from Dockerfile"
if [ "$BUILDER" = docker ]; then
    docker build -t "$IMAGE" -f Dockerfile . >"$OUT/build.log" 2>&1 \
        || fail "docker build failed (see $OUT/build.log)"
    SIZE="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
    SIZE="$((SIZE / 1000000)) MB"
    IMAGE_USER="$(docker image inspect --format '{{.Config.User}}' "$IMAGE")"
else
    build_args=(--isolation=chroot --network=host --layers --pull=never
        --build-arg "BASE_IMAGE=$STANDIN" -f Dockerfile -t "$IMAGE")
    # pip inside the build must trust what the host trusts to reach the package index.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        build_args+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    fi
    buildah bud "${build_args[@]}" . >"$OUT/build.log" 2>&1 \
        || fail "buildah bud failed (see $OUT/build.log)"
    SIZE="$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)"
    IMAGE_USER="$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
fi
step "built $IMAGE ($SIZE), image user '${IMAGE_USER:-<none>}'"
case "${IMAGE_USER:-}" in
    "" | root | 0 | 0:* | root:*) fail "the image's USER is '${IMAGE_USER:-<none>}': the connector must not run as root" ;;
esac

# ---------------------------------------------------------------- run commands in the image
if [ "$BUILDER" = buildah ]; then
    # buildah 1.28's --format has no json function: read the whole inspect document.
    buildah inspect --type image "$IMAGE" >"$WORK/inspect.json" || fail "buildah inspect $IMAGE failed"
    mapfile -t ENTRYPOINT < <("$PY" -c '
import json, sys
config = json.load(open(sys.argv[1]))["OCIv1"].get("config") or {}
for arg in config.get("Entrypoint") or []:
    print(arg)
' "$WORK/inspect.json")
    [ "${#ENTRYPOINT[@]}" -gt 0 ] || fail "the image has no ENTRYPOINT"
    CTR="$(buildah from --pull=never --quiet "$IMAGE")"
fi

# in_image NAME ARGS...: runs the image's entrypoint with ARGS, /data mounted read-only;
# stdout to $OUT/NAME.out, stderr to $OUT/NAME.err.
in_image() {
    local name="$1"
    shift
    if [ "$BUILDER" = docker ]; then
        timeout "$TIMEOUT" docker run --rm --network host -v "$DATA:/data:ro" "$IMAGE" "$@" \
            >"$OUT/$name.out" 2>"$OUT/$name.err"
    else
        timeout "$TIMEOUT" buildah run --isolation=chroot --network=host --user "$IMAGE_USER" \
            -v "$DATA:/data:ro" "$CTR" -- "${ENTRYPOINT[@]}" "$@" \
            >"$OUT/$name.out" 2>"$OUT/$name.err"
    fi
}
# uid_in_image: the uid the connector's commands run as.
uid_in_image() {
    if [ "$BUILDER" = docker ]; then
        docker run --rm --entrypoint id "$IMAGE" -u
    else
        buildah run --isolation=chroot --network=host --user "$IMAGE_USER" "$CTR" -- id -u
    fi
}

RUN_UID="$(uid_in_image)" || fail "could not run 'id -u' in the image"
[ "$RUN_UID" != "0" ] || fail "the connector runs as root (uid 0) in the image"
step "runs as uid $RUN_UID (user ${IMAGE_USER:-?}), not root"

# ---------------------------------------------------------------- the simulator
"$PY" -c 'import integration_tests.telecmi_simulator' 2>/dev/null \
    || fail "integration_tests/telecmi_simulator cannot be imported by $PY"
"$PY" -m integration_tests.telecmi_simulator --port 0 --port-file "$WORK/port" --calls "$CALLS" \
    >"$OUT/simulator.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/port" ] && break
    kill -0 "$SIM_PID" 2>/dev/null || fail "the simulator exited at start (see $OUT/simulator.log)"
    sleep 0.1
done
[ -s "$WORK/port" ] || fail "the simulator wrote no port file within 10 s"
PORT="$(tr -d '[:space:]' <"$WORK/port")"
step "simulator on http://127.0.0.1:$PORT ($CALLS calls)"

printf '{"credentials": {"auth_type": "token", "token": "%s"}, "start_date": "2025-12-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z", "api_url": "http://127.0.0.1:%s"}\n' \
    "$TOKEN" "$PORT" >"$DATA/config.json"
chmod 755 "$WORK" "$DATA"
chmod 644 "$DATA/config.json"

# check_messages KIND FILE [ARGS]: asserts on the Airbyte messages in FILE; prints a summary.
check_messages() {
    "$PY" - "$@" <<'PYCHECK'
import json
import sys

kind, path, *rest = sys.argv[1:]
messages = []
with open(path, encoding="utf-8") as f:
    for line in f:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue
by_type = {}
for m in messages:
    by_type.setdefault(m.get("type"), []).append(m)


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


if kind == "spec":
    specs = by_type.get("SPEC", [])
    if not specs:
        die("no SPEC message")
    props = specs[0]["spec"]["connectionSpecification"].get("properties", {})
    print(f"SPEC with {len(props)} properties")
elif kind == "check":
    statuses = [m["connectionStatus"]["status"] for m in by_type.get("CONNECTION_STATUS", [])]
    if statuses != ["SUCCEEDED"]:
        die(f"CONNECTION_STATUS is {statuses}, want ['SUCCEEDED']")
    print("CONNECTION_STATUS SUCCEEDED")
elif kind == "discover":
    stream, out = rest
    catalogs = by_type.get("CATALOG", [])
    if not catalogs:
        die("no CATALOG message")
    streams = {s["name"]: s for s in catalogs[0]["catalog"]["streams"]}
    if stream not in streams:
        die(f"CATALOG lacks {stream}: {sorted(streams)}")
    s = streams[stream]
    if "incremental" not in s.get("supported_sync_modes", []):
        die(f"{stream} does not support incremental")
    configured = {
        "streams": [
            {
                "stream": s,
                "sync_mode": "incremental",
                "destination_sync_mode": "append",
                "cursor_field": s.get("default_cursor_field") or [],
                "primary_key": s.get("source_defined_primary_key") or [],
            }
        ]
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(configured, f)
    print(f"CATALOG with {len(streams)} stream(s): {', '.join(sorted(streams))}")
elif kind == "read":
    stream, want = rest
    records = [m for m in by_type.get("RECORD", []) if m["record"]["stream"] == stream]
    others = len(by_type.get("RECORD", [])) - len(records)
    states = by_type.get("STATE", [])
    if len(records) != int(want) or others:
        die(f"{len(records)} RECORD messages for {stream} (and {others} for others), want {want}")
    if not states:
        die("no STATE message")
    errors = [
        m for m in by_type.get("TRACE", []) if m.get("trace", {}).get("type") == "ERROR"
    ]
    if errors:
        die(f"{len(errors)} error TRACE message(s): {errors[0]['trace']['error'].get('message')}")
    print(f"{len(records)} RECORD and {len(states)} STATE messages")
else:
    die(f"unknown check {kind}")
PYCHECK
}

# ---------------------------------------------------------------- spec, check, discover, read
in_image spec spec || fail "spec exited non-zero"
summary="$(check_messages spec "$OUT/spec.out")" || fail "spec output is wrong"
step "spec: $summary"

in_image check check --config /data/config.json || fail "check exited non-zero"
summary="$(check_messages check "$OUT/check.out")" || fail "check output is wrong"
step "check: $summary"

in_image discover discover --config /data/config.json || fail "discover exited non-zero"
summary="$(check_messages discover "$OUT/discover.out" "$STREAM" "$DATA/catalog.json")" \
    || fail "discover output is wrong"
chmod 644 "$DATA/catalog.json"
step "discover: $summary"

in_image read read --config /data/config.json --catalog /data/catalog.json || fail "read exited non-zero"
summary="$(check_messages read "$OUT/read.out" "$STREAM" "$CALLS")" || fail "read output is wrong"
step "read: $summary"

# ---------------------------------------------------------------- no secret in any output
leaks="$(grep -lF -- "$TOKEN" "$OUT"/spec.* "$OUT"/check.* "$OUT"/discover.* "$OUT"/read.* || true)"
[ -z "$leaks" ] || fail "the token appears in: $(echo "$leaks" | xargs -n1 basename | tr '\n' ' ')"
step "secrets: token in no output of spec/check/discover/read"

echo "image test passed ($BUILDER, $IMAGE, $SIZE, ${SECONDS}s)"
