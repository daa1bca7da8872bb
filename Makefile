# source-telecmi: `make demo` shows it working, `make test` proves it. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := .venv/bin/python
STAMP := .venv/.installed-stamp

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

unit: venv
	$(PY) -m pytest unit_tests

integration: venv
	$(PY) -m pytest integration_tests

test: lint
	$(PY) -m pytest unit_tests integration_tests
	bash scripts/image_test.sh
	bash scripts/pyairbyte_test.sh
	bash scripts/connector_test.sh

demo: venv
	$(PY) scripts/demo.py

bench: venv
	$(PY) scripts/bench.py
	$(PY) scripts/bench_lists.py

image-test: venv
	bash scripts/image_test.sh

pyairbyte-test: venv
	bash scripts/pyairbyte_test.sh

connector-test: venv
	bash scripts/connector_test.sh

clean:
	rm -rf .venv .venv-pyairbyte .demo build *.egg-info
