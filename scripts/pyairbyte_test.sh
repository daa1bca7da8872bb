#!/usr/bin/env bash
# Runs the connector the way a PyAirbyte user does: integration_tests/pyairbyte/test_pyairbyte.py
# reads the TeleCMI simulator through `airbyte.get_source("source-telecmi", local_executable=...)`
# into a DuckDB cache, then reads again incrementally from the state PyAirbyte kept.
#
#   bash scripts/pyairbyte_test.sh
#
# PyAirbyte (PyPI `airbyte`, ~800 MB) lives in its own venv, .venv-pyairbyte, with pytest and this
# checkout installed editable (`pip install -e .`), so the venv has its own `source-telecmi`. The
# venv is made once and reused while it is up to date (same Python, same requirements, same
# setup.py, same checkout folder); otherwise it is brought up to date, or made anew if it is
# broken or belongs to another folder. Nothing reaches beyond this machine once it is installed:
# PyAirbyte runs offline (AIRBYTE_OFFLINE_MODE=1, DO_NOT_TRACK=1) and the test refuses any
# connection of its own to a non-loopback address.
#
# Environment:
#   PYAIRBYTE_PYTHON   Python 3.11 to make the venv with (default: python3.11 on PATH)
#   PYAIRBYTE_VENV     the venv's folder (default: .venv-pyairbyte in the checkout)
#   PYAIRBYTE_SPEC     the PyAirbyte requirement (default: airbyte>=0.71.3,<0.72)
#   PYTEST_ARGS        extra pytest arguments (e.g. "-x" or "-k lookback")
#
# Exits 0 only when every test of the file ran and passed (none skipped, at least one run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$(realpath -m "${PYAIRBYTE_VENV:-$ROOT/.venv-pyairbyte}")"
AIRBYTE_SPEC="${PYAIRBYTE_SPEC:-airbyte>=0.71.3,<0.72}"
PYTEST_SPEC="pytest>=8,<10"
TEST_FILE="integration_tests/pyairbyte/test_pyairbyte.py"
STAMP="$VENV/.pyairbyte-stamp"
VPY="$VENV/bin/python"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0="$(now)"
step() { printf '[%6ss] %s\n' "$(since "$T0")" "$*"; }
fail() {
    echo "pyairbyte test FAILED: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- the Python to make the venv with
BASE_PY="${PYAIRBYTE_PYTHON:-}"
if [ -z "$BASE_PY" ]; then
    BASE_PY="$(command -v python3.11 || command -v python3 || true)"
fi
[ -n "$BASE_PY" ] || fail "no python3.11 found (set PYAIRBYTE_PYTHON)"
"$BASE_PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
    || fail "$BASE_PY is not Python 3.11 (set PYAIRBYTE_PYTHON to a Python 3.11)"
BASE_VERSION="$("$BASE_PY" -c 'import sys; print(sys.version.split()[0])')"

# ---------------------------------------------------------------- the venv: reuse, update or make
setup_hash="$(sha256sum setup.py | cut -d' ' -f1)"
wanted_stamp="$(printf 'python %s\nairbyte %s\npytest %s\nsetup.py %s\ncheckout %s\nvenv %s\n' \
    "$BASE_VERSION" "$AIRBYTE_SPEC" "$PYTEST_SPEC" "$setup_hash" "$ROOT" "$VENV")"

venv_works() {
    # The venv runs, has PyAirbyte and pytest, and its source-telecmi is this checkout's.
    [ -x "$VPY" ] && [ -x "$VENV/bin/source-telecmi" ] || return 1
    # Its launcher runs this venv's Python (a venv moved from elsewhere would run another one).
    # pip writes "#!<python>", or a /bin/sh stub that execs "<python>" when the path has a space.
    case "$(head -n 2 "$VENV/bin/source-telecmi")" in
        "#!$VPY"* | *"exec' \"$VPY\""*) ;;
        *) return 1 ;;
    esac
    # -I: the checkout itself is not on sys.path, so what is found is what the venv installed.
    "$VPY" -I - "$ROOT" <<'PYCHECK' >/dev/null 2>&1
import importlib.util
import os
import sys

# Found, not imported: importing PyAirbyte takes seconds, and the test imports it anyway.
assert importlib.util.find_spec("airbyte") and importlib.util.find_spec("pytest")
connector = importlib.util.find_spec("source_telecmi")
root = os.path.realpath(sys.argv[1])
assert connector and os.path.realpath(connector.origin).startswith(root + os.sep), connector
PYCHECK
}

stamp_matches() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted_stamp" ]
}

stamp_line() { # stamp_line KEY: that line's value in the venv's stamp, if any
    if [ -f "$STAMP" ]; then sed -n "s/^$1 //p" "$STAMP"; fi
}

# One maker at a time on this machine for this venv; another run waits, then reuses it.
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/pyairbyte-venv-$(printf '%s' "$VENV" | sha256sum | cut -c1-16).lock"
    exec 9>"$LOCK"
    flock 9
fi

INSTALL_SECONDS="0.0"
if stamp_matches && venv_works; then
    VENV_ACTION="reused"
    step "venv: reusing $VENV (up to date)"
else
    T_INSTALL="$(now)"
    recreate=""
    if [ ! -x "$VPY" ] || ! "$VPY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
        recreate="it is missing or has no working Python 3.11"
    elif [ -f "$STAMP" ] && { [ "$(stamp_line checkout)" != "$ROOT" ] || [ "$(stamp_line venv)" != "$VENV" ]; }; then
        recreate="it was made for another folder"
    elif [ -f "$STAMP" ] && [ "$(stamp_line python)" != "$BASE_VERSION" ]; then
        recreate="it was made with Python $(stamp_line python), not $BASE_VERSION"
    fi
    if [ -n "$recreate" ]; then
        VENV_ACTION="created"
        step "venv: making $VENV ($recreate)"
        rm -rf "$VENV"
        "$BASE_PY" -m venv "$VENV" || fail "could not make the venv $VENV"
    else
        VENV_ACTION="updated"
        step "venv: bringing $VENV up to date"
    fi
    rm -f "$STAMP"
    LOG="$VENV/pip-install.log"
    step "pip install '$AIRBYTE_SPEC' '$PYTEST_SPEC' -e . (PyAirbyte is large: about a minute the first time)"
    if ! "$VPY" -m pip install --disable-pip-version-check --no-input \
        "$AIRBYTE_SPEC" "$PYTEST_SPEC" -e "$ROOT" >"$LOG" 2>&1; then
        grep -v '^WARNING: Location' "$LOG" | tail -n 25 >&2
        fail "pip install into $VENV failed (full log: $LOG)"
    fi
    venv_works || fail "after pip install, $VENV still lacks airbyte, pytest or this checkout's source-telecmi"
    printf '%s\n' "$wanted_stamp" >"$STAMP"
    INSTALL_SECONDS="$(since "$T_INSTALL")"
    step "venv: $VENV_ACTION in ${INSTALL_SECONDS}s"
fi
if command -v flock >/dev/null 2>&1; then
    flock -u 9
    exec 9>&-
fi

PYAIRBYTE_VERSION="$("$VPY" -c 'from importlib.metadata import version; print(version("airbyte"))')"
CDK_VERSION="$("$VPY" -c 'from importlib.metadata import version; print(version("airbyte-cdk"))')"
step "PyAirbyte $PYAIRBYTE_VERSION, airbyte-cdk $CDK_VERSION, $("$VPY" --version)"

# ---------------------------------------------------------------- run the test
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pyairbyte-test.XXXXXX")"
cleanup() {
    local rc=$?
    if [ "$rc" -eq 0 ]; then
        rm -rf "$WORK"
    else
        echo "(PyAirbyte and connector logs kept in $WORK/logs)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export AIRBYTE_OFFLINE_MODE=1 # no connector registry look-up; also turns telemetry off
export DO_NOT_TRACK=1         # PyAirbyte's documented telemetry opt-out
export NO_LIVE_PROGRESS=1     # plain progress lines, not a live display
unset COLAB_RELEASE_TAG
export AIRBYTE_LOGGING_ROOT="$WORK/logs"
export AIRBYTE_PROJECT_DIR="$WORK/project"
export AIRBYTE_CACHE_ROOT="$WORK/cache"
export PYAIRBYTE_TEST=1 # the folder's conftest.py: a missing `airbyte` is an error, not a skip
export PYAIRBYTE_TEST_SUMMARY="$WORK/summary.json"
export PYTHONDONTWRITEBYTECODE=1

step "pytest $TEST_FILE"
T_TEST="$(now)"
set +e
# shellcheck disable=SC2086  # PYTEST_ARGS is word-split on purpose
"$VPY" -m pytest "$TEST_FILE" -v --junitxml="$WORK/junit.xml" ${PYTEST_ARGS:-}
PYTEST_RC=$?
set -e
TEST_SECONDS="$(since "$T_TEST")"

# ---------------------------------------------------------------- summary
COUNTS="$("$VPY" - "$WORK/junit.xml" <<'PYCOUNT' 2>/dev/null || echo "0 0 0 0"
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(total["tests"], total["failures"], total["errors"], total["skipped"])
PYCOUNT
)"
read -r TESTS FAILURES ERRORS SKIPPED <<<"$COUNTS"
PASSED=$((TESTS - FAILURES - ERRORS - SKIPPED))
FAILED=$((FAILURES + ERRORS))

echo
echo "================ PyAirbyte test summary ================"
echo "checkout:        $ROOT"
echo "venv:            $VENV ($VENV_ACTION; install ${INSTALL_SECONDS}s)"
echo "PyAirbyte:       $PYAIRBYTE_VERSION (airbyte-cdk $CDK_VERSION)"
echo "tests:           $TESTS run: $PASSED passed, $FAILED failed, $SKIPPED skipped (${TEST_SECONDS}s)"
if [ -s "$PYAIRBYTE_TEST_SUMMARY" ]; then
    "$VPY" - "$PYAIRBYTE_TEST_SUMMARY" <<'PYSUMMARY' || true
import json
import sys

facts = json.load(open(sys.argv[1]))
def show(label, key):
    if key in facts:
        print(f"{label:<17}{facts[key]}")

show("sync mode:", "sync_mode")
show("dest sync mode:", "destination_sync_mode")
show("write method:", "auto_write_method")
show("1st read:", "first_read_records")
show("2nd read:", "second_read_records")
show("2nd read calls:", "second_read_requests")
show("rows after 2nd:", "rows_after_second_read")
show("lookback reread:", "lookback_rereads")
state = facts.get("state_after_second_read")
if state is not None:
    print(f"{'kept state:':<17}{json.dumps(state)[:300]}")
PYSUMMARY
fi
echo "total:           $(since "$T0")s"
echo "========================================================"

if [ "$PYTEST_RC" -ne 0 ]; then
    fail "pytest exited $PYTEST_RC"
fi
if [ "$TESTS" -lt 1 ] || [ "$SKIPPED" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
    fail "expected every test to run and pass; got $TESTS run, $SKIPPED skipped, $FAILED failed"
fi
echo "pyairbyte: $PASSED passed, $FAILED failed, $SKIPPED skipped"
