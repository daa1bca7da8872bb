"""Streams from rows: their schemas, the shape of their records, and the CDK stream of each row."""

import logging

import pytest
from airbyte_cdk.models import SyncMode
from airbyte_cdk.sources.message import InMemoryMessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import FinalStateCursor

from source_telecmi.records import Conformer
from source_telecmi.secrets import mask
from source_telecmi.shaping import STARTED_AT, instant_for, schema_of, shaper
from source_telecmi.streams import build_stream
from source_telecmi.telecmi.platforms import CALL_LISTS, LISTS, USERS_LIST

ROWS = {row.stream: row for row in LISTS}
AT = 1764583200123  # 2025-12-01T10:00:00.123Z
LOGGER = logging.getLogger("airbyte.test_streams")


def conformer(name):
    return Conformer(name, schema_of(name))


def shape_call(name, conform=None):
    row = ROWS[name]
    return shaper(row, conform or conformer(name))


# ------------------------------------------------------------------------------------------ schemas


@pytest.mark.parametrize("name", sorted(row.stream for row in CALL_LISTS))
def test_call_schemas_are_resolved_and_declare_what_records_carry(name):
    schema = schema_of(name)
    assert "$ref" not in str(schema)
    properties = schema["properties"]
    for field in ("cmiuid", "time", "agent", "direction", "status", "started_at", "rate", "from", "_id"):
        assert field in properties, field
    assert "integer" in properties["time"]["type"]
    assert "number" in properties["rate"]["type"]
    assert properties["notes"]["items"]["properties"]["agent"]["type"] == ["null", "string"]
    assert "additionalProperties" not in schema  # TeleCMI's new fields are kept, not dropped


def test_users_schema_never_declares_a_password():
    properties = schema_of("users")["properties"]
    assert "agent_id" in properties
    assert not any("password" in field or "secret" in field or "token" in field for field in properties)


# ------------------------------------------------------------------------------------------- shaping


def test_shape_call_adds_what_a_warehouse_needs_and_keeps_everything_else():
    record = {
        "cmiuid": "c-1",
        "time": str(AT),
        "from": 919200000000,
        "to": 61400000000,
        "agent": "101_1111112",
        "notes": [{"msg": "call back", "date": AT, "agent": "101_1111112"}],
        "duration": 12,
        "a_field_telecmi_adds_later": {"x": 1},
    }
    shaped = shape_call("outgoing_answered_calls")(dict(record), AT)
    assert shaped == {
        **record,
        "time": AT,
        "from": "919200000000",
        "to": "61400000000",
        "direction": "outgoing",
        "status": "answered",
        "started_at": "2025-12-01T10:00:00.123Z",
    }


def test_shaping_never_changes_the_record_it_is_given():
    record = {"cmiuid": "c-1", "time": str(AT), "password": "pw-x", "from": 9}
    shape_call("outgoing_answered_calls")(record, AT)
    assert record == {"cmiuid": "c-1", "time": str(AT), "password": "pw-x", "from": 9}


@pytest.mark.parametrize(
    "name, direction, status",
    [
        ("incoming_answered_calls", "incoming", "answered"),
        ("incoming_missed_calls", "incoming", "missed"),
        ("outgoing_answered_calls", "outgoing", "answered"),
        ("outgoing_missed_calls", "outgoing", "missed"),
    ],
)
def test_direction_and_status_come_from_the_stream(name, direction, status):
    shaped = shape_call(name)({"cmiuid": "c", "time": AT}, AT)
    assert (shaped["direction"], shaped["status"]) == (direction, status)
    # Whatever TeleCMI sends under those names: the stream's are the truth.
    shaped = shape_call(name)({"cmiuid": "c", "direction": "sideways", "status": "ringing"}, AT)
    assert (shaped["direction"], shaped["status"]) == (direction, status)


def test_phone_numbers_become_strings_and_text_is_left_alone():
    shape = shape_call("outgoing_missed_calls")
    assert shape({"from": 9.192e11, "to": None}, AT)["from"] == "919200000000"
    assert shape({"from": 9.192e11, "to": None}, AT)["to"] is None
    shaped = shape({"from": "101_1111112", "to": "+61 400"}, AT)
    assert (shaped["from"], shaped["to"]) == ("101_1111112", "+61 400")
    # A boolean where a number is expected is now a string too: one JSON type per field.
    assert shape({"from": True}, AT)["from"] == "true"


def test_a_phone_number_of_20_digits_keeps_every_digit():
    assert shape_call("outgoing_missed_calls")({"to": 919100000000000000000001}, AT)["to"] == "919100000000000000000001"


def test_india_records_key_on_cmiuid_and_carry_rate_as_a_number():
    india = {"_id": "65f1c0ffee0000000000abcd", "time": AT, "rate": "0.49", "from": "101_1111112", "to": 919100000001}
    shaped = shape_call("outgoing_answered_calls")(dict(india), AT)
    assert shaped["cmiuid"] == "65f1c0ffee0000000000abcd"
    assert shaped["_id"] == "65f1c0ffee0000000000abcd"
    assert shaped["rate"] == 0.49
    assert shaped["to"] == "919100000001"


def test_an_india_id_that_is_a_number_keys_as_a_string():
    assert shape_call("incoming_missed_calls")({"_id": 1234}, AT)["cmiuid"] == "1234"


@pytest.mark.parametrize("rate", ["", "NA", "n/a", "free", True])
def test_a_rate_that_is_not_a_number_is_null_and_counted(rate):
    conform = conformer("incoming_answered_calls")
    assert shape_call("incoming_answered_calls", conform)({"rate": rate}, AT)["rate"] is None
    assert conform.nulled == {"rate": 1}
    assert shape_call("incoming_answered_calls", conform)({"rate": 0.3}, AT)["rate"] == 0.3
    assert shape_call("incoming_answered_calls", conform)({"rate": " 3 "}, AT)["rate"] == 3.0
    assert conform.nulled == {"rate": 1}


def test_a_cmiuid_is_never_replaced_by_an_id():
    shaped = shape_call("incoming_missed_calls")({"cmiuid": "real", "_id": "other"}, AT)
    assert shaped["cmiuid"] == "real"


def test_a_call_without_a_time_is_shaped_without_one():
    shaped = shape_call("incoming_missed_calls")({"cmiuid": "c", "time": "garbage"}, None)
    assert shaped["time"] is None and shaped["started_at"] is None
    assert STARTED_AT == "started_at"


def test_secrets_are_dropped_at_any_depth_and_masked_from_then_on():
    record = {
        "cmiuid": "c",
        "token": "call-token-value-1",
        "notes": [{"msg": "hi", "agent_password": "note-pw-value-2"}],
        "sip": {"secret": "sip-secret-value-3", "domain": "d"},
    }
    shaped = shape_call("incoming_answered_calls")(record, AT)
    assert "token" not in shaped and shaped["notes"] == [{"msg": "hi"}] and shaped["sip"] == {"domain": "d"}
    assert mask("call-token-value-1 note-pw-value-2 sip-secret-value-3") == "**** **** ****"


def test_users_are_shaped_without_a_cursor_or_constants():
    conform = conformer("users")
    shape = shaper(USERS_LIST, conform)
    agent = {"agent_id": "101_1111112", "name": "Ann", "extension": 101, "password": "pw-of-ann", "notify": "1"}
    assert shape(agent, None) == {"agent_id": "101_1111112", "name": "Ann", "extension": "101", "notify": True}


def test_the_instant_of_a_record_is_read_from_the_rows_cursor():
    call_instant = instant_for(ROWS["incoming_missed_calls"])
    assert call_instant({"time": AT}) == AT
    assert call_instant({"time": str(AT)}) == AT
    assert call_instant({"time": "2025-12-01T10:00:00.123Z"}) == AT
    assert call_instant({"time": "garbage"}) is None
    assert call_instant({}) is None
    assert instant_for(USERS_LIST)({"time": AT}) is None  # the users have no cursor


# -------------------------------------------------------------------------------------------- streams


def stream_of(row):
    cursor = FinalStateCursor(row.stream, None, InMemoryMessageRepository())
    return build_stream(row, schema_of(row.schema_name), None, cursor, LOGGER).as_airbyte_stream()


@pytest.mark.parametrize("row", CALL_LISTS, ids=lambda row: row.stream)
def test_a_call_list_is_an_incremental_stream_keyed_on_cmiuid(row):
    stream = stream_of(row)
    assert stream.name == row.stream
    assert stream.source_defined_primary_key == [["cmiuid"]]
    assert stream.default_cursor_field == ["time"]
    assert SyncMode.incremental in stream.supported_sync_modes
    assert stream.json_schema == schema_of(row.stream)


def test_the_users_are_a_full_refresh_stream_keyed_on_agent_id():
    stream = stream_of(USERS_LIST)
    assert stream.source_defined_primary_key == [["agent_id"]]
    assert stream.supported_sync_modes == [SyncMode.full_refresh]
    assert not stream.default_cursor_field


def test_only_windowed_lists_have_an_instant_and_a_started_at():
    voicemails = ROWS["voicemails"]
    assert instant_for(voicemails)({"time": AT}) == AT
    shaped = shaper(voicemails, conformer("voicemails"))({"voicename": "v-1", "time": str(AT)}, AT)
    assert (shaped["time"], shaped[STARTED_AT]) == (AT, "2025-12-01T10:00:00.123Z")
    totals = ROWS["daily_call_totals"]
    assert instant_for(totals)({"day": "2025-12-01"}) is None
    shaped = shaper(totals, conformer("daily_call_totals"))({"day": "2025-12-01", "total": 3}, None)
    assert shaped["day"] == "2025-12-01" and STARTED_AT not in shaped


def test_a_list_without_a_primary_key_is_shaped():
    balance = ROWS["account_balance"]
    shaped = shaper(balance, conformer("account_balance"))({"balance": "12.5", "token": "balance-token-1"}, None)
    assert "token" not in shaped and shaped["balance"] == 12.5
