#!/usr/bin/env bash
# `make test` after lint: every suite CI runs, at once.
#
# pytest (unit_tests and integration_tests, in WORKERS parallel workers) runs in the foreground, its
# output as it comes. Beside it run scripts/image_test.sh, scripts/pyairbyte_test.sh and
# scripts/connector_test.sh, niced so that pytest (the longest, and the one with timing checks) keeps
# the CPU it needs; each writes to its own log, build/test-logs/NAME.log, printed whole once pytest is
# done and the script has ended. The last lines sum up every part; the exit code is 1 if any part
# failed (0 only if all four passed), given once all have ended. The logs are kept.
#
# The scripts share nothing with pytest that needs turns, except the standard tests' simulator port:
# scripts/connector_test.sh waits for the lock test_standard.py holds while it serves that port.
# Environment: WORKERS (pytest's workers, default 4; 0 runs pytest in one process), PYTEST_ARGS.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOGS=build/test-logs
WORKERS="${WORKERS:-4}"
SCRIPTS=(image_test pyairbyte_test connector_test)
declare -A PID NAME=([image_test]="image test" [pyairbyte_test]="PyAirbyte test" [connector_test]="connector test")

rm -rf "$LOGS" && mkdir -p "$LOGS" || exit 1
stop() {
    trap - INT TERM
    for script in "${SCRIPTS[@]}"; do
        [ -z "${PID[$script]:-}" ] || kill -TERM -- "-${PID[$script]}" 2>/dev/null
    done
    exit 130
}
trap stop INT TERM

for script in "${SCRIPTS[@]}"; do
    # Each in a process group of its own (setsid), so that an interrupt stops its children too.
    setsid nice -n 10 bash -c 'started=$SECONDS; bash "scripts/$1.sh"; rc=$?
        echo "scripts/$1.sh: exit $rc after $((SECONDS - started)) s"; exit $rc' _ "$script" \
        >"$LOGS/$script.log" 2>&1 </dev/null &
    PID[$script]=$!
done
echo "make test: pytest here; ${SCRIPTS[*]/%/.sh} running beside it, logs in $LOGS/"

XDIST=()
[ "$WORKERS" = 0 ] || XDIST=(-n "$WORKERS" --dist loadgroup)
started=$SECONDS
# shellcheck disable=SC2086 # PYTEST_ARGS is split on purpose
"$PY" -m pytest "${XDIST[@]}" unit_tests integration_tests ${PYTEST_ARGS:-}
PYTEST_RC=$?
SUMMARY=("pytest: exit $PYTEST_RC after $((SECONDS - started)) s")
FAILED=$((PYTEST_RC != 0))

for script in "${SCRIPTS[@]}"; do
    wait "${PID[$script]}"
    rc=$?
    echo
    echo "======== scripts/$script.sh (${NAME[$script]}), exit $rc: $LOGS/$script.log ========"
    cat "$LOGS/$script.log"
    SUMMARY+=("${NAME[$script]}: $(tail -n 1 "$LOGS/$script.log")")
    [ "$rc" = 0 ] || FAILED=1
done
trap - INT TERM

echo
echo "======== make test, after $SECONDS s ========"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" != 0 ]; then
    echo "make test FAILED" >&2
    exit 1
fi
echo "make test: all passed"
