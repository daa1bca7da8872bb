"""A config saved by 0.2 (`credentials.app_id` a number) through the real command: migrated once.

check, discover and read each emit one CONTROL message of type CONNECTOR_CONFIG holding the whole
upgraded config, secrets as they are (the platform stores it), valid against the spec; the config
file is rewritten, so the next run emits none; no other line holds a secret. A config that needs
nothing is neither migrated nor written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

import source_telecmi
from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    APP_ID,
    APP_SECRET,
    SECRETS,
    STREAM,
    calls_for,
    catalog,
    config_for,
    simulator,
)
from source_telecmi.config import upgraded

SPEC = json.loads((Path(source_telecmi.__file__).parent / "spec.json").read_text())["connectionSpecification"]
UPDATED = "saved config was updated"


@pytest.fixture
def sim():
    with simulator(calls_for(ACCOUNT_ENDPOINTS.values(), 40, seed=5)) as running:
        yield running


def saved_by_0_2(sim, kind="app"):
    """An app config as 0.2 saved it: the app id a number."""
    cfg = config_for(sim, kind)
    return {**cfg, "credentials": {**cfg["credentials"], "app_id": APP_ID}}


def spec_errors(config):
    return [error.message for error in Draft7Validator(SPEC).iter_errors(config)]


def run_of(connector, verb, config):
    run = connector.run(verb, config, catalog("full_refresh", STREAM) if verb == "read" else None)
    return run.ok()


@pytest.mark.parametrize("verb", ["check", "discover", "read"])
def test_a_config_saved_by_0_2_is_migrated_once_by_every_command(connector, sim, verb):
    old = saved_by_0_2(sim)
    assert spec_errors(old), "the spec refuses 0.2's integer app id"
    run = run_of(connector, verb, old)
    (control,) = run.of("CONTROL")
    assert control["control"]["type"] == "CONNECTOR_CONFIG"
    stored = control["control"]["connectorConfig"]["config"]
    assert stored == upgraded(old) and stored["credentials"]["app_id"] == str(APP_ID)
    assert stored["credentials"]["app_secret"] == APP_SECRET, "the real secret: a mask would be stored as the mask"
    assert not spec_errors(stored)
    written = json.loads((connector.workdir / "config.json").read_text())
    assert written == stored, "the config file is rewritten"
    (said,) = [line for line in run.logs("INFO", "WARN") if UPDATED in line]
    assert "credentials.app_id is now a string" in said and APP_SECRET not in said and str(APP_ID) not in said
    assert not [s for s in SECRETS if s in run.outside_config_control], "a secret outside the CONTROL message"
    if verb != "read":  # a read's records hold the app id inside agent ids, as TeleCMI sends them
        assert str(APP_ID) not in run.outside_config_control
    else:
        assert run.records

    again = run_of(connector, verb, written)
    assert not again.of("CONTROL") and not [line for line in again.logs() if UPDATED in line]
    assert json.loads((connector.workdir / "config.json").read_text()) == written
    assert not [s for s in SECRETS if s in again.stdout + again.stderr]


def test_a_config_saved_by_0_2_for_india_is_migrated_too(connector, sim):
    old = saved_by_0_2(sim, "india")
    run = run_of(connector, "check", old)
    assert run.connection_status["status"] == "SUCCEEDED"
    (control,) = run.of("CONTROL")
    assert control["control"]["connectorConfig"]["config"] == upgraded(old) and old["region"] == "india"


def test_a_config_that_needs_nothing_is_neither_migrated_nor_written(connector, sim):
    cfg = config_for(sim, "app")
    run = run_of(connector, "check", cfg)
    assert run.connection_status["status"] == "SUCCEEDED"
    assert not run.of("CONTROL") and not [line for line in run.logs() if UPDATED in line]
    assert (connector.workdir / "config.json").read_text() == json.dumps(cfg, indent=1), "the file as it was written"
    assert not [s for s in SECRETS if s in run.stdout + run.stderr]
