"""The stream schemas: as discover declares them, one type per field, shared parts defined once."""

from __future__ import annotations

import ast
import copy
import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader
from jsonschema import Draft7Validator

from source_telecmi.records import Conformer

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "source_telecmi" / "schemas"
STREAMS = sorted(path.stem for path in SCHEMAS.glob("*.json"))
CALL_STREAMS = ("incoming_answered_calls", "incoming_missed_calls", "outgoing_answered_calls", "outgoing_missed_calls")
SHARED_CALL = json.loads((SCHEMAS / "shared" / "call.json").read_text())
DATE_TIME = ("string", "date-time", "timestamp_with_timezone")
# What Airbyte's acceptance tests (TestDiscovery.test_catalog_has_supported_data_types) accept.
VALID_TYPES = {"null", "string", "number", "integer", "boolean", "object", "array"}
VALID_FORMATS = {"date-time": {"string"}, "date": {"string"}}
VALID_AIRBYTE_TYPES = {
    "timestamp_with_timezone": {"string"},
    "timestamp_without_timezone": {"string"},
    "integer": {"integer", "number"},
}


def load(name: str) -> dict[str, Any]:
    return ResourceSchemaLoader("source_telecmi").get_schema(name)


def raw(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, definition) of every property at every depth: `notes[].date`, `sip.domain`."""
    for name, prop in (node.get("properties") or {}).items():
        here = f"{path}{name}"
        yield here, prop
        yield from fields(prop, f"{here}.")
        items = prop.get("items")
        while isinstance(items, dict):
            yield from fields(items, f"{here}[].")
            items = items.get("items")


def keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from keys(value)


def non_null_types(prop: dict[str, Any]) -> list[str]:
    declared = prop.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    return [t for t in types if t != "null"]


def shape(prop: dict[str, Any]) -> tuple[str, ...]:
    """A field's type, with its format and airbyte_type when it has them."""
    return tuple(x for x in (non_null_types(prop)[0], prop.get("format"), prop.get("airbyte_type")) if x is not None)


# ------------------------------------------------------------------------------ every schema


def test_there_is_a_schema_for_every_stream():
    assert set(STREAMS) == {
        *CALL_STREAMS,
        "users",
        "voicemails",
        "daily_call_totals",
        "account_balance",
        "recordings",
        "sync_audit",
    }


@pytest.mark.parametrize("name", STREAMS)
def test_every_schema_loads_with_no_ref_left_and_is_a_draft7_object_schema(name):
    schema = load(name)
    assert "$ref" not in set(keys(schema)), "the standard tests reject an unresolved $ref"
    assert "definitions" not in schema
    Draft7Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["properties"]
    assert schema.get("description")


@pytest.mark.parametrize("name", STREAMS)
def test_no_schema_forbids_additional_properties(name):
    """additionalProperties false breaks the catalog of every existing connection when a field is added."""
    schema = load(name)
    values = [
        node["additionalProperties"] for _, node in [("", schema), *fields(schema)] if "additionalProperties" in node
    ]
    assert all(value is True for value in values)


@pytest.mark.parametrize("name", STREAMS)
def test_every_field_has_one_type_plus_null_and_a_description(name):
    for path, prop in fields(load(name)):
        assert len(non_null_types(prop)) == 1, f"{name}.{path}: {prop.get('type')}"
        assert isinstance(prop.get("description"), str) and prop["description"].strip(), f"{name}.{path}"
        items = prop.get("items")
        if items is not None:
            assert len(non_null_types(items)) == 1, f"{name}.{path}[]: {items.get('type')}"


@pytest.mark.parametrize("name", STREAMS)
def test_every_type_format_and_airbyte_type_is_one_airbyte_supports(name):
    for path, prop in fields(load(name)):
        types = set(non_null_types(prop))
        assert types <= VALID_TYPES, f"{name}.{path}"
        if "format" in prop:
            assert types <= VALID_FORMATS.get(prop["format"], set()), f"{name}.{path}: format {prop['format']}"
        if "airbyte_type" in prop:
            allowed = VALID_AIRBYTE_TYPES.get(prop["airbyte_type"], set())
            assert types <= allowed, f"{name}.{path}: airbyte_type {prop['airbyte_type']}"


@pytest.mark.parametrize("name", STREAMS)
def test_an_enum_lists_only_values_of_its_type(name):
    for path, prop in fields(load(name)):
        if "enum" in prop:
            assert non_null_types(prop) == ["string"] and all(isinstance(v, str) for v in prop["enum"]), path


@pytest.mark.parametrize("name", STREAMS)
def test_a_conformer_compiles_for_every_schema(name):
    conformer = Conformer(name, load(name))
    assert conformer({}) == {}


# Passwords, pins and tokens: whole name parts for the short ones ("pin", not "shipping").
SECRET_PARTS = ("password", "passwd", "passcode", "secret", "token", "pwd", "apikey", "credential")
SECRET_WORDS = {"pass", "pin", "pincode", "key", "otp", "hash"}


def secret_like(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SECRET_PARTS) or bool(SECRET_WORDS & set(re.split(r"[^a-z0-9]+", lowered)))


@pytest.mark.parametrize("name", STREAMS)
def test_no_schema_declares_a_password_like_field(name):
    assert [
        path for path, _ in fields(load(name)) if any(secret_like(part) for part in re.split(r"[.\[\]]+", path))
    ] == []


@pytest.mark.parametrize(
    "name, secret",
    [("password", True), ("sip_pass", True), ("voicemail_pin", True), ("api_token", True), ("PWD", True)]
    + [("shipping", False), ("spinner", False), ("passenger", False), ("agent_id", False), ("phone", False)],
)
def test_secret_like_names(name, secret):
    assert secret_like(name) is secret


def test_every_schema_file_is_packaged():
    """setup.py's package_data must carry every schema file into the wheel and the image."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    globs = package_data["source_telecmi"]
    for path in SCHEMAS.rglob("*.json"):
        relative = path.relative_to(ROOT / "source_telecmi").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in globs), relative


# ------------------------------------------------------------------------------- call streams


@pytest.mark.parametrize("name", CALL_STREAMS)
def test_every_call_field_is_a_reference_to_its_one_definition_in_shared_call_json(name):
    for field, prop in raw(name)["properties"].items():
        assert prop == {"$ref": f"call.json#/properties/{field}"}, f"{name}.{field} is defined in place"
    shared = shared_call_fields()
    assert load(name)["properties"] == {field: shared[field] for field in raw(name)["properties"]}


def shared_call_fields() -> dict[str, Any]:
    """shared/call.json's definitions with note.json in place of its reference, as a call stream must show them."""
    definitions = copy.deepcopy(SHARED_CALL["properties"])
    definitions["notes"]["items"] = json.loads((SCHEMAS / "shared" / "note.json").read_text())
    return definitions


def test_the_four_call_streams_share_their_fields_and_answered_calls_add_the_recording():
    common = {
        "cmiuid",
        "_id",
        "time",
        "started_at",
        "direction",
        "status",
        "duration",
        "billedsec",
        "rate",
        "name",
        "from",
        "to",
        "agent",
        "region",
        "notes",
    }
    assert set(SHARED_CALL["properties"]) == common | {"filename", "record"}
    for name in CALL_STREAMS:
        extra = {"filename", "record"} if "_answered_" in name else set()
        assert set(load(name)["properties"]) == common | extra, name


@pytest.mark.parametrize("name", CALL_STREAMS)
def test_call_field_types(name):
    types = {field: shape(prop) for field, prop in load(name)["properties"].items()}
    expected = {
        "cmiuid": ("string",),
        "_id": ("string",),
        "time": ("integer",),
        "started_at": DATE_TIME,
        "direction": ("string",),
        "status": ("string",),
        "duration": ("integer",),
        "billedsec": ("integer",),
        "rate": ("number",),
        "name": ("string",),
        "from": ("string",),
        "to": ("string",),
        "agent": ("string",),
        "region": ("string",),
        "notes": ("array",),
        "filename": ("string",),
        "record": ("string",),
    }
    assert types == {field: expected[field] for field in types}
    notes = load(name)["properties"]["notes"]["items"]
    assert {field: shape(prop) for field, prop in notes["properties"].items()} == {
        "msg": ("string",),
        "date": ("integer",),
        "agent": ("string",),
    }
    assert load(name)["properties"]["direction"]["enum"] == ["incoming", "outgoing"]
    assert load(name)["properties"]["status"]["enum"] == ["answered", "missed"]


def test_the_note_is_defined_once_and_referenced():
    assert SHARED_CALL["properties"]["notes"]["items"] == {"$ref": "note.json"}
    note = json.loads((SCHEMAS / "shared" / "note.json").read_text())
    assert load("incoming_missed_calls")["properties"]["notes"]["items"] == note


# ---------------------------------------------------------------------------- other streams


def test_users_field_types_and_no_password():
    types = {field: shape(prop) for field, prop in load("users")["properties"].items()}
    assert types == {
        "agent_id": ("string",),
        "user_id": ("string",),
        "first_name": ("string",),
        "last_name": ("string",),
        "name": ("string",),
        "extension": ("string",),
        "phone": ("string",),
        "notify": ("boolean",),
        "start_time": ("integer",),
        "end_time": ("integer",),
    }
    assert not any(secret_like(field) for field, _ in fields(load("users")))


NEW_STREAMS = {
    "voicemails": {
        "time": ("integer",),
        "from": ("string",),
        "voicename": ("string",),
        "_id": ("string",),
        "started_at": DATE_TIME,
    },
    "daily_call_totals": {
        "day": ("string", "date"),
        "day_start": ("integer",),
        "total": ("integer",),
        "answered": ("integer",),
        "missed": ("integer",),
        "read_at": DATE_TIME,
    },
    "account_balance": {
        "balance": ("number",),
        "sms": ("integer",),
        "expire": ("integer",),
        "expires_at": DATE_TIME,
        "read_at": DATE_TIME,
    },
    "sync_audit": {
        "sync_id": ("string",),
        "synced_at": DATE_TIME,
        "stream": ("string",),
        "window_start": ("integer",),
        "window_end": ("integer",),
        "window_start_at": DATE_TIME,
        "window_end_at": DATE_TIME,
        "telecmi_count": ("integer",),
        "calls_read": ("integer",),
        "records_emitted": ("integer",),
        "requests": ("integer",),
        "verdict": ("string",),
        "shortfall": ("integer",),
        "files_downloaded": ("integer",),
        "files_pending": ("integer",),
    },
    "recordings": {
        "file": ("string",),
        "kind": ("string",),
        "cmiuid": ("string",),
        "call_stream": ("string",),
        "time": ("integer",),
        "started_at": DATE_TIME,
        "agent": ("string",),
        "status": ("string",),
        "file_size_bytes": ("integer",),
        "sha256": ("string",),
        "content_type": ("string",),
        "fetched_at": DATE_TIME,
    },
}


@pytest.mark.parametrize("name", NEW_STREAMS)
def test_the_new_streams_declare_exactly_their_interface(name):
    assert {field: shape(prop) for field, prop in load(name)["properties"].items()} == NEW_STREAMS[name]


def test_the_audit_verdict_is_one_of_two():
    assert load("sync_audit")["properties"]["verdict"]["enum"] == ["complete", "count_wrong"]


@pytest.mark.parametrize(
    "name, key, cursor",
    [
        *((name, "cmiuid", "time") for name in CALL_STREAMS),
        ("users", "agent_id", None),
        ("voicemails", "voicename", "time"),
    ],
)
def test_keys_and_cursors_are_declared(name, key, cursor):
    properties = load(name)["properties"]
    assert non_null_types(properties[key]) == ["string"]
    if cursor:
        assert non_null_types(properties[cursor]) == ["integer"]
