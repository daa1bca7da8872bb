#!/usr/bin/env bash
# `airbyte-cdk connector test`: the airbyte-cdk CLI runs the CDK's standard tests for this connector
# (the scenarios of acceptance-test-config.yml), against the TeleCMI simulator served here.
#
# The CLI writes its own test file (.tmp/integration_tests/test_airbyte_standards.py) and runs
# only that one, so integration_tests/test_standard.py and its simulator fixture are not loaded:
# this script serves the simulator itself at the configs' api_url (integration_tests/standard/),
# holding the lock test_standard.py takes for that port, so the two take turns.
# The CLI names the suite, and imports the connector, after the folder's name; a checkout may be
# named anything, so the CLI is given a copy of the working tree in a temporary folder named
# after the image (source-telecmi). The copy also keeps the CLI's .tmp/ and build/ out of the
# checkout. The connector code it runs is the checkout's, installed in the venv.
#
# Deselected: the CDK's image tests (marked image_tests). They build the image from the Dockerfile
# templates of Airbyte's own repository (docker-images/ in airbyte), not from ./Dockerfile, and
# need a Docker engine: they can only run inside Airbyte's repository. scripts/image_test.sh
# builds this connector's image and proves it instead.
# Environment: CONNECTOR_TEST_PYTHON (default .venv/bin/python), CONNECTOR_TEST_LOCK_WAIT_S (default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${CONNECTOR_TEST_PYTHON:-.venv/bin/python}"
CDK="$(dirname "$PY")/airbyte-cdk"
say() { printf '[%4ss] %s\n' "$SECONDS" "$*"; }
fail() {
    echo "connector test FAILED: $*" >&2
    exit 1
}
[ -x "$CDK" ] || fail "no $CDK (make venv)"
NAME="$("$PY" -c 'import yaml; print(yaml.safe_load(open("metadata.yaml"))["data"]["dockerRepository"].split("/")[-1])')"
WORK="$(mktemp -d)"
SIM=""
stop_simulator() {
    if [ -n "$SIM" ]; then
        kill "$SIM" 2>/dev/null || true
        wait "$SIM" 2>/dev/null || true
        SIM=""
    fi
}
trap 'stop_simulator; rm -rf "$WORK"' EXIT

# The working tree, without what git ignores (the venvs, build output, caches, secrets).
COPY="$WORK/$NAME"
mkdir "$COPY"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
        | "$PY" -c 'import os, sys; sys.stdout.write("".join(p + "\0" for p in sys.stdin.read().split("\0") if os.path.isfile(p)))' \
        | tar --null -T - -cf - | tar -xf - -C "$COPY"
else
    tar --exclude=./.git --exclude=./.venv --exclude='./.venv-*' --exclude=./build --exclude=./.demo --exclude=./secrets \
        -cf - . | tar -xf - -C "$COPY"
fi
say "copied the working tree to $COPY"

# The simulator the standard configs point at, with the data of test_standard.py's fixture plus
# voicemails (basic_read wants records from every discovered stream), until SIGTERM.
"$PY" - "$WORK/ready" >"$WORK/simulator.log" 2>&1 <<'SIMULATOR' &
import fcntl, json, signal, sys, tempfile, time
from pathlib import Path
from urllib.parse import urlsplit

from integration_tests.harness import ALL_ENDPOINTS, END_MS, START_MS, calls_for, simulator
from integration_tests.telecmi_simulator import GLOBAL_VOICEMAIL, INDIA_VOICEMAIL, generate_voicemails

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # also while waiting for the lock
urls = {json.loads(p.read_text())["api_url"] for p in Path("integration_tests/standard").glob("*.json")}
if len(urls) != 1:
    sys.exit(f"the standard configs point at {len(urls)} api_urls, not one: {sorted(urls)}")
url = urlsplit(urls.pop())
with open(Path(tempfile.gettempdir()) / f"source-telecmi-standard-{url.port}.lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # test_standard.py serves the same port under the same lock
    voicemails = {
        GLOBAL_VOICEMAIL: generate_voicemails(60, START_MS, END_MS - 1, seed=20251201),
        INDIA_VOICEMAIL: generate_voicemails(60, START_MS, END_MS - 1, seed=20251202, india=True),
    }
    calls = calls_for(ALL_ENDPOINTS, 300, seed=20251201)
    try:
        sim = simulator(calls, voicemails=voicemails, host=url.hostname, port=url.port).start()
    except OSError as error:
        sys.exit(f"{url.geturl()}, the standard configs' api_url, is taken by another program: {error}")
    try:
        Path(sys.argv[1]).write_text(sim.base_url)
        while True:
            time.sleep(1)
    finally:
        sim.stop()
SIMULATOR
SIM=$!
# `make test` runs this beside pytest, whose test_standard.py holds the port's lock while its module
# runs: wait for it as long as that may take.
LOCK_WAIT_S="${CONNECTOR_TEST_LOCK_WAIT_S:-1800}"
for _ in $(seq $((LOCK_WAIT_S * 10))); do
    [ -s "$WORK/ready" ] && break
    kill -0 "$SIM" 2>/dev/null || fail "the simulator did not start: $(tail -5 "$WORK/simulator.log")"
    sleep 0.1
done
[ -s "$WORK/ready" ] || fail "the simulator was not serving after $LOCK_WAIT_S s (another run holding its port's lock?)"
say "simulator on $(cat "$WORK/ready")"

say "SKIP the CDK's image tests (deselected, -m 'not image_tests'): they build the image from the Dockerfile" \
    "templates of Airbyte's own repository with a Docker engine, so they run only inside Airbyte's repository;" \
    "scripts/image_test.sh builds and proves this connector's image instead"
say "airbyte-cdk connector test $COPY"
RC=0
"$CDK" connector test "$COPY" --pytest-arg=-m --pytest-arg="not image_tests" || RC=$?
stop_simulator

# The CLI's JUnit report: a run that passed nothing (all skipped, or nothing collected) fails too.
COUNTED=0
SUMMARY="$("$PY" - "$COPY/build/test-results/standard-tests-junit.xml" <<'REPORT'
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError) as error:
    print(f"no JUnit report ({error})")
    sys.exit(1)
suites = [root] if root.tag == "testsuite" else list(root)
total = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
print(f"{passed} passed, {total['failures']} failed, {total['errors']} errors, {total['skipped']} skipped")
sys.exit(1 if total["failures"] or total["errors"] or passed < 1 else 0)
REPORT
)" || COUNTED=$?
if [ "$COUNTED" != 0 ] && [ "$RC" = 0 ]; then
    RC=1
fi
say "airbyte-cdk connector test: $SUMMARY (exit $RC)"
[ "$RC" = 0 ] || fail "see above"
