# source-telecmi: `make demo` shows it working, `make test` proves it. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := .venv/bin/python
STAMP := .venv/.installed-stamp
# pytest's parallel workers (pytest-xdist) for the integration tests, which mostly wait (on the
# connector's processes, the simulators' latency, the retries' pauses) rather than compute: more
# workers than cores. WORKERS=0 runs pytest in one process. `make unit` runs in one process: its
# tests are quick, and on 2 cores every worker's start-up (importing the CDK, collecting) costs more
# than it saves.
WORKERS ?= 4
export WORKERS
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup)

.PHONY: venv test lint unit integration demo bench image-test pyairbyte-test connector-test clean

$(STAMP): setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip -e '.[tests]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check --exclude "*.md" .

# The unit tests but the long simulations (marked slow), which `make test` runs too.
unit: venv
	$(PY) -m pytest -m "not slow" unit_tests

integration: venv
	$(PY) -m pytest $(XDIST) integration_tests

# Everything CI runs: lint, then at once pytest (unit and integration tests, in WORKERS workers), the
# image test, the PyAirbyte test and the airbyte-cdk connector test; see scripts/test_all.sh.
test: lint
	bash scripts/test_all.sh

demo: venv
	$(PY) scripts/demo.py

bench: venv
	$(PY) scripts/bench.py
	$(PY) scripts/bench_lists.py
	$(PY) scripts/bench_files.py

image-test: venv
	bash scripts/image_test.sh

pyairbyte-test: venv
	bash scripts/pyairbyte_test.sh

connector-test: venv
	bash scripts/connector_test.sh

clean:
	rm -rf .venv .venv-pyairbyte .demo build *.egg-info
