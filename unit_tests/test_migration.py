"""The config migration: a config saved by 0.2 is written back upgraded, its CONTROL message emitted, once."""

import json
import logging
from pathlib import Path

import pytest
from airbyte_cdk.connector import BaseConnector
from airbyte_cdk.models import OrchestratorType, Type
from jsonschema import Draft7Validator

import source_telecmi
from source_telecmi.config import upgraded
from source_telecmi.migration import changes, migrate, migrated

SECRET = "app-s3cret-of-the-migration"
OLD = {
    "credentials": {"auth_type": "app", "app_id": 1111112, "app_secret": SECRET},
    "start_date": "2024-01-01",
    "num_workers": 2,
}
NEW = {**OLD, "credentials": {**OLD["credentials"], "app_id": "1111112"}}
SPEC = json.loads((Path(source_telecmi.__file__).parent / "spec.json").read_text())["connectionSpecification"]


def with_app_id(app_id):
    return {**OLD, "credentials": {**OLD["credentials"], "app_id": app_id}}


@pytest.fixture
def saved(tmp_path):
    def save(config):
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return path

    return save


@pytest.fixture
def emitted():
    return []


def test_an_integer_app_id_is_migrated_to_its_digits():
    assert migrated(OLD) == NEW == upgraded(OLD)
    assert list(Draft7Validator(SPEC).iter_errors(OLD)), "the spec refuses 0.2's integer"
    assert not list(Draft7Validator(SPEC).iter_errors(NEW))


@pytest.mark.parametrize(
    "config",
    [
        NEW,  # nothing to upgrade
        {**OLD, "credentials": {"auth_type": "token", "token": SECRET}},
        with_app_id(0),  # upgraded, still refused by the spec (no app is 0): left for its run to name
        with_app_id(-5),
        with_app_id(2**2000),  # too long to write: not upgraded
        with_app_id(True),
        with_app_id(1111112.0),
        {**OLD, "num_workers": 0},  # refused for another reason: the platform never stores a config the spec refuses
        {key: value for key, value in OLD.items() if key != "start_date"},
        "a config that is no object",
        [],
    ],
)
def test_nothing_to_migrate(config):
    assert migrated(config) is None


def test_changes_name_the_field_and_its_json_types_never_its_value():
    assert changes(OLD, NEW) == ["credentials.app_id is now a string (it was saved as a number)"]
    assert changes(NEW, NEW) == []
    assert changes({"a": {"b": 1}}, {"a": {"b": 2, "c": None}}) == ["a.b is changed", "a.c is added"]
    assert changes({"a": True}, {"a": 1}) == ["a is now a number (it was saved as a boolean)"]


def test_migrate_writes_the_file_back_emits_one_control_message_and_says_so(saved, emitted, caplog):
    path = saved(OLD)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        assert migrate(str(path), emitted.append, logging.getLogger("airbyte.test"))
    assert json.loads(path.read_text()) == NEW == BaseConnector.read_config(str(path))
    (message,) = emitted
    assert message.type == Type.CONTROL and message.control.type == OrchestratorType.CONNECTOR_CONFIG
    assert message.control.connectorConfig.config == NEW, "the whole config, the secret as it is"
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert "saved config was updated" in record.getMessage()
    assert "credentials.app_id is now a string" in record.getMessage()
    assert SECRET not in record.getMessage() and "1111112" not in record.getMessage()

    caplog.clear()
    assert not migrate(str(path), emitted.append, logging.getLogger("airbyte.test")), "a second run: nothing to do"
    assert len(emitted) == 1 and not caplog.records


def test_a_config_that_needs_nothing_is_not_written(saved, emitted):
    path = saved(NEW)
    text, written = path.read_text(), path.stat().st_mtime_ns
    assert not migrate(str(path), emitted.append, logging.getLogger("airbyte.test"))
    assert not emitted and path.read_text() == text and path.stat().st_mtime_ns == written


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]"])
def test_a_config_file_missing_or_unreadable_is_left_to_the_entrypoint(tmp_path, emitted, content):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert not migrate(str(path), emitted.append, logging.getLogger("airbyte.test"))
    assert not migrate(None, emitted.append, logging.getLogger("airbyte.test"))
    assert not emitted


def test_a_file_that_cannot_be_rewritten_is_restored_and_the_config_still_emitted(saved, emitted, caplog, monkeypatch):
    path = saved(OLD)
    text = path.read_text()

    def half_written(config, config_path):
        Path(config_path).write_text('{"credentials": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BaseConnector, "write_config", staticmethod(half_written))
    with caplog.at_level(logging.INFO, logger="airbyte"):
        assert migrate(str(path), emitted.append, logging.getLogger("airbyte.test"))
    assert path.read_text() == text, "the saved config is as it was, not half written"
    (message,) = emitted
    assert message.control.connectorConfig.config == NEW
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "credentials.app_id is now a string" in record.getMessage()
    assert "No space left on device" in record.getMessage() and SECRET not in record.getMessage()
