#!/usr/bin/env bash
# Runs the connector the way a PyAirbyte user does: integration_tests/pyairbyte/ (two reads into
# DuckDB, the second incremental; a lookback re-read) and the docs' PyAirbyte snippet and SQL, as
# written (integration_tests/test_docs.py), against the simulator, offline.
#
# PyAirbyte (~800 MB) lives in its own venv, .venv-pyairbyte, with pytest and this checkout
# installed editable; it is made once and reused while Python, setup.py and the checkout's folder
# are the same. Environment: PYAIRBYTE_PYTHON (a Python 3.11), PYTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$PWD/.venv-pyairbyte"
BASE_PY="${PYAIRBYTE_PYTHON:-$(command -v python3.11 || command -v python3)}"
"$BASE_PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' || { echo "pyairbyte test: Python 3.11 needed" >&2; exit 1; }
REQUIREMENTS=("airbyte>=0.71.3,<0.72" "pytest>=8,<10")
STAMP="$("$BASE_PY" --version) ${REQUIREMENTS[*]} $(sha256sum setup.py | cut -c1-16) $PWD"

exec 9>"/tmp/pyairbyte-venv-$(echo "$VENV" | sha256sum | cut -c1-12).lock" && flock 9 # one maker at a time
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" = "$STAMP" ] && "$VENV/bin/python" -c 'import airbyte, source_telecmi' 2>/dev/null; then
    echo "pyairbyte test: reusing $VENV"
else
    echo "pyairbyte test: making $VENV (PyAirbyte is large: about a minute)"
    rm -rf "$VENV" && "$BASE_PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" -e . >"$VENV/pip.log" 2>&1 \
        || { tail -25 "$VENV/pip.log" >&2; echo "pyairbyte test: pip install failed (log: $VENV/pip.log)" >&2; exit 1; }
    echo "$STAMP" >"$VENV/.stamp"
fi
exec 9>&-

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Offline: no registry look-up, no telemetry; logs and caches in a scratch folder. PYAIRBYTE_TEST=1
# turns a missing PyAirbyte into an error instead of a skip.
export AIRBYTE_OFFLINE_MODE=1 DO_NOT_TRACK=1 NO_LIVE_PROGRESS=1 PYAIRBYTE_TEST=1 PYTHONDONTWRITEBYTECODE=1
export AIRBYTE_LOGGING_ROOT="$WORK/logs" AIRBYTE_PROJECT_DIR="$WORK/project" AIRBYTE_CACHE_ROOT="$WORK/cache"
# shellcheck disable=SC2086 # PYTEST_ARGS is split on purpose
"$VENV/bin/python" -m pytest integration_tests/pyairbyte integration_tests/test_docs.py -k "pyairbyte or python" ${PYTEST_ARGS:-}
