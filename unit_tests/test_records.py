"""The Conformer: every declared field in its declared type, every value it cannot convert counted and declared on
its record (meta.changes)."""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from typing import Any

import pytest
from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.models import AirbyteLogMessage, AirbyteMessage, Level, Type
from airbyte_cdk.models.airbyte_protocol import Change, Reason
from airbyte_cdk.sources.types import Record
from airbyte_cdk.sources.utils.record_helper import stream_data_to_airbyte_message
from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader

from source_telecmi.changes import RecordQueue, meta_of, take_changes
from source_telecmi.records import Conformer

ABSENT = object()


def conformer_for(kind: str, **extra: Any) -> Conformer:
    """A Conformer of a schema with one field `f` of type `kind` (plus null)."""
    return Conformer("s", {"type": "object", "properties": {"f": {"type": ["null", kind], **extra}}})


def conform(kind: str, value: Any, **extra: Any) -> tuple[Any, dict[str, int]]:
    """`value` in a field declared `kind`, and what was counted."""
    conformer = conformer_for(kind, **extra)
    out = conformer({"f": value})
    return out["f"], conformer.nulled


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True == 1 == 1.0 in Python)."""
    return type(a) is type(b) and a == b


BIG = 12345678901234567890123  # 23 digits, beyond 64 bits


@pytest.mark.parametrize(
    "value, expected",
    [
        ("919100000000", "919100000000"),
        ("", ""),
        (919100000000, "919100000000"),
        (BIG, "12345678901234567890123"),
        (-7, "-7"),
        (0, "0"),
        (919100000000.0, "919100000000"),
        (1e20, "100000000000000000000"),
        (-3.0, "-3"),
        (0.49, "0.49"),
        (1.5e-7, "1.5e-07"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_to_string(value, expected):
    out, nulled = conform("string", value)
    assert same(out, expected)
    assert nulled == {}


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], math.nan, math.inf, -math.inf])
def test_to_string_sets_objects_lists_and_non_finite_floats_to_null(value):
    assert conform("string", value) == (None, {"f": 1})


@pytest.mark.parametrize(
    "value, expected",
    [
        (12, 12),
        (-12, -12),
        (BIG, BIG),
        (12.0, 12),
        (-0.0, 0),
        (1e20, 100000000000000000000),
        ("12", 12),
        (" 12 ", 12),
        ("+12", 12),
        ("-12", -12),
        ("12.0", 12),
        ("12.000", 12),
        ("007", 7),
        ("12345678901234567890123", BIG),
    ],
)
def test_to_integer(value, expected):
    out, nulled = conform("integer", value)
    assert same(out, expected)
    assert nulled == {}


@pytest.mark.parametrize(
    "value",
    [
        12.5,
        -0.1,
        "12.5",
        "12.01",
        "NA",
        "",
        " ",
        "1e3",
        "1_000",
        "\u0661\u0662",
        "0x10",
        "nan",
        True,
        False,
        {},
        [],
        math.nan,
        math.inf,
    ],
)
def test_to_integer_never_truncates_and_counts_what_it_cannot_read(value):
    assert conform("integer", value) == (None, {"f": 1})


@pytest.mark.parametrize(
    "value, expected",
    [
        (3, 3),
        (BIG, BIG),
        (0.49, 0.49),
        (-1.5, -1.5),
        ("0.49", 0.49),
        (" 3 ", 3.0),
        ("-2.5", -2.5),
        ("+.5", 0.5),
        ("17507.49999999892", 17507.49999999892),
        ("1e3", 1000.0),
        ("2.", 2.0),
    ],
)
def test_to_number(value, expected):
    out, nulled = conform("number", value)
    assert same(out, expected)
    assert nulled == {}


@pytest.mark.parametrize(
    "value",
    ["", "NA", " ", ".", "1,5", "1_000", "nan", "inf", "Infinity", "1e999", True, False, math.nan, math.inf, [], {}],
)
def test_to_number_counts_what_is_not_a_finite_number(value):
    assert conform("number", value) == (None, {"f": 1})


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        (" TRUE ", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        (" no", False),
    ],
)
def test_to_boolean(value, expected):
    out, nulled = conform("boolean", value)
    assert same(out, expected)
    assert nulled == {}


@pytest.mark.parametrize("value", [2, -1, 1.0, 0.5, "", "y", "on", "2", "truth", [], {}])
def test_to_boolean_counts_anything_else(value):
    assert conform("boolean", value) == (None, {"f": 1})


@pytest.mark.parametrize(
    "extra", [{"format": "date-time"}, {"airbyte_type": "timestamp_with_timezone"}, {"format": "date"}]
)
def test_a_formatted_string_is_kept_as_it_is_not_parsed(extra):
    for text in ("2025-12-01T10:00:00.123Z", "not a date", ""):
        assert conform("string", text, **extra) == (text, {})
    assert conform("string", 1764547200000, **extra) == (None, {"f": 1})


@pytest.mark.parametrize("kind", ["string", "integer", "number", "boolean", "object", "array"])
def test_null_stays_null_and_absent_stays_absent(kind):
    conformer = conformer_for(kind)
    assert conformer({"f": None}) == {"f": None}
    assert conformer({}) == {}
    assert conformer({"other": "x"}) == {"other": "x"}
    assert conformer.nulled == {}


def test_undeclared_fields_and_fields_without_a_type_are_kept_as_they_are():
    conformer = Conformer("s", {"type": "object", "properties": {"free": {"description": "anything"}}})
    record = {"free": {"a": [1, "2"]}, "extra": 919100000000, "more": [None, 1.5]}
    assert conformer(record) == record
    assert conformer.nulled == {}


def test_several_types_in_one_field_are_refused_when_compiled():
    with pytest.raises(ValueError, match=r"users.*extension.*integer or string"):
        Conformer("users", {"properties": {"extension": {"type": ["null", "integer", "string"]}}})
    with pytest.raises(ValueError, match="unknown type"):
        Conformer("s", {"properties": {"f": {"type": "date"}}})


# ---------------------------------------------------------------------------- nested values

NESTED = {
    "type": "object",
    "properties": {
        "sip": {
            "type": ["null", "object"],
            "properties": {
                "domain": {"type": ["null", "string"]},
                "port": {"type": ["null", "integer"]},
                "codec": {"type": ["null", "object"], "properties": {"rate": {"type": ["null", "number"]}}},
            },
        },
        "notes": {
            "type": ["null", "array"],
            "items": {
                "type": ["null", "object"],
                "properties": {"date": {"type": ["null", "integer"]}, "agent": {"type": ["null", "string"]}},
            },
        },
        "tags": {"type": ["null", "array"], "items": {"type": "string"}},
        "raw": {"type": ["null", "array"]},
        "grid": {"type": ["null", "array"], "items": {"type": "array", "items": {"type": "integer"}}},
    },
}


def test_objects_are_converted_recursively_and_keep_their_undeclared_keys():
    conformer = Conformer("s", NESTED)
    record = {"sip": {"domain": 5060, "port": "5060", "codec": {"rate": "8000", "name": "pcmu"}, "username": "u"}}
    assert conformer(record) == {
        "sip": {"domain": "5060", "port": 5060, "codec": {"rate": 8000.0, "name": "pcmu"}, "username": "u"}
    }
    assert conformer.nulled == {}


def test_arrays_are_converted_item_by_item():
    conformer = Conformer("s", NESTED)
    record = {
        "notes": [{"date": "1764547200000", "agent": 101, "msg": "hi"}, None, {"date": 1764547200001}],
        "tags": [1, "a", True, None],
        "grid": [[1, "2"], ["3.0"]],
        "raw": [1, "x", {"y": 2}],
    }
    assert conformer(record) == {
        "notes": [{"date": 1764547200000, "agent": "101", "msg": "hi"}, None, {"date": 1764547200001}],
        "tags": ["1", "a", "true", None],
        "grid": [[1, 2], [3]],
        "raw": [1, "x", {"y": 2}],
    }
    assert conformer.nulled == {}


def test_a_wrong_shape_is_set_to_null_and_counted_under_its_path():
    conformer = Conformer("s", NESTED)
    out = conformer(
        {
            "sip": {"domain": "d", "port": "NA", "codec": "pcmu"},
            "notes": [{"date": "yesterday"}, "a note as a string", {"date": 12.5}],
            "tags": ["one", {"two": 2}],
            "grid": [[1, "x"], [2, [3]]],
        }
    )
    assert out == {
        "sip": {"domain": "d", "port": None, "codec": None},
        "notes": [{"date": None}, None, {"date": None}],
        "tags": ["one", None],
        "grid": [[1, None], [2, None]],
    }
    assert conformer.nulled == {
        "sip.port": 1,
        "sip.codec": 1,
        "notes[]": 1,
        "notes[].date": 2,
        "tags[]": 1,
        "grid[][]": 2,
    }
    assert out.changes == [
        ("sip.port", Change.NULLED),
        ("sip.codec", Change.NULLED),
        ("notes[0].date", Change.NULLED),
        ("notes[1]", Change.NULLED),
        ("notes[2].date", Change.NULLED),
        ("tags[1]", Change.NULLED),
        ("grid[0][1]", Change.NULLED),
        ("grid[1][1]", Change.NULLED),
    ]
    sip = conformer({"sip": 5})
    assert conformer.nulled["sip"] == 1
    assert sip == {"sip": None} and sip.changes == [("sip", Change.NULLED)]


def test_a_lone_item_where_a_list_belongs_is_a_list_of_one_converted_by_the_items_schema():
    conformer = Conformer("s", NESTED)
    note = {"date": "1764547200000", "agent": 101, "msg": "call back"}
    out = conformer({"notes": note, "tags": 7, "raw": {"not": "a list"}, "grid": [[1], 3]})
    assert out == {
        "notes": [{"date": 1764547200000, "agent": "101", "msg": "call back"}],
        "tags": ["7"],
        "raw": [{"not": "a list"}],
        "grid": [[1], [3]],
    }
    assert out.changes == [] and conformer.nulled == {}
    assert note == {"date": "1764547200000", "agent": 101, "msg": "call back"}, "the note given is not changed"
    # The lone item's own values are converted, and declared, like any item's: it is item 0.
    out = conformer({"notes": {"date": "soon", "agent": "101_1111112"}, "tags": {"a": 1}})
    assert out == {"notes": [{"date": None, "agent": "101_1111112"}], "tags": [None]}
    assert out.changes == [("notes[0].date", Change.NULLED), ("tags[0]", Change.NULLED)]
    assert conformer.nulled == {"notes[].date": 1, "tags[]": 1}


def test_a_lone_note_of_every_call_stream_is_a_list_of_one():
    for stream in (
        "incoming_answered_calls",
        "incoming_missed_calls",
        "outgoing_answered_calls",
        "outgoing_missed_calls",
    ):
        conformer = Conformer(stream, ResourceSchemaLoader("source_telecmi").get_schema(stream))
        note = {"msg": "Asked for a callback", "date": 1764547200999, "agent": "101_1111112"}
        out = conformer({**right_call(), "notes": note})
        assert out["notes"] == [note] and out.changes == [], stream


def test_changes_are_listed_once_per_value_with_the_index_of_each_item_at_every_depth():
    conformer = Conformer("s", NESTED)
    record = {"notes": [{"date": 1}, None, {"date": "x"}, {"date": "y"}], "grid": [[1, 2], ["a", 3, "b"]], "rate": "NA"}
    out = conformer(record)
    assert out.changes == [
        ("notes[2].date", Change.NULLED),
        ("notes[3].date", Change.NULLED),
        ("grid[1][0]", Change.NULLED),
        ("grid[1][2]", Change.NULLED),
    ]
    assert "rate" not in dict(out.changes), "an undeclared field is kept as it is: no change"
    given: list = [("password", Change.NULLED)]
    assert conformer({"tags": [{}]}, given).changes is given
    assert given == [("password", Change.NULLED), ("tags[0]", Change.NULLED)]


def test_a_record_without_changes_has_an_empty_list_and_compares_as_the_dict_it_is():
    conformer = Conformer("s", NESTED)
    out = conformer({"tags": ["a"]})
    assert out == {"tags": ["a"]} and out.changes == []
    assert isinstance(out, dict) and dict(out) == {"tags": ["a"]}


def test_the_input_is_never_modified():
    conformer = Conformer("s", NESTED)
    record = {"sip": {"port": "1", "codec": {"rate": "2"}}, "notes": [{"date": "3"}], "tags": [4], "grid": [["5"]]}
    before = copy.deepcopy(record)
    out = conformer(record)
    assert record == before
    assert out is not record
    assert out["sip"] is not record["sip"] and out["notes"][0] is not record["notes"][0]
    assert out["grid"][0] is not record["grid"][0]


def test_a_record_already_right_is_returned_equal_as_a_new_dict():
    schema = ResourceSchemaLoader("source_telecmi").get_schema("outgoing_answered_calls")
    conformer = Conformer("outgoing_answered_calls", schema)
    record = right_call()
    out = conformer(record)
    assert out == record and out is not record
    assert all(same(out[key], record[key]) for key in record)
    assert conformer.nulled == {} and conformer.report() == []


# ------------------------------------------------------------------------- counting, report


def test_the_report_has_one_line_per_path_with_a_few_examples():
    conformer = Conformer(
        "s",
        {
            "properties": {
                "rate": {"type": ["null", "number"]},
                "duration": {"type": ["null", "integer"]},
                "notes": {"type": "array", "items": {"properties": {"date": {"type": ["null", "integer"]}}}},
            }
        },
    )
    for value in ["NA", "", "NA", "x" * 50, {"password": "hunter2"}, [1, 2]] + ["0.5"] * 3 + ["-"] * 6:
        conformer({"rate": value})
    conformer({"duration": 12.5, "notes": [{"date": "soon"}]})
    assert conformer.nulled == {"rate": 12, "duration": 1, "notes[].date": 1}
    assert conformer.report() == [
        "duration: 1 value could not be read as a whole number and was set to null (for example 12.5)",
        "notes[].date: 1 value could not be read as a whole number and was set to null (for example 'soon')",
        "rate: 12 values could not be read as a number and were set to null "
        "(for example 'NA', '', 'xxxxxxxxxxxxxxxxxxxx...')",
    ]
    conformer({"rate": {"password": "hunter2"}})
    assert "hunter2" not in "".join(conformer.report())


def test_objects_and_lists_are_described_in_the_report_never_printed():
    conformer = conformer_for("string")
    conformer({"f": {"password": "hunter2", "pin": "4821"}})
    conformer({"f": ["hunter2"]})
    (line,) = conformer.report()
    assert line == (
        "f: 2 values could not be read as a string and were set to null (for example an object of 2 keys, a list of 1 item)"
    )


def test_nulled_is_a_copy():
    conformer = conformer_for("integer")
    conformer({"f": "x"})
    conformer.nulled["f"] = 100
    assert conformer.nulled == {"f": 1}


def test_many_threads_at_once_count_every_value():
    schema = ResourceSchemaLoader("source_telecmi").get_schema("incoming_answered_calls")
    conformer = Conformer("incoming_answered_calls", schema)
    threads, per_thread = 8, 2_000
    record = {**right_call(), "rate": "NA", "duration": "12", "notes": [{"date": "x", "msg": 1}]}
    outputs: list[list[dict[str, Any]]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        start.wait()
        outputs[number] = [conformer(record) for _ in range(per_thread)]

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert conformer.nulled == {"rate": threads * per_thread, "notes[].date": threads * per_thread}
    expected = {**record, "rate": None, "duration": 12, "notes": [{"date": None, "msg": "1"}]}
    assert all(out == expected for outs in outputs for out in outs)
    assert record["notes"] == [{"date": "x", "msg": 1}]


# ------------------------------------------------------------------------- TeleCMI's records


def right_call() -> dict[str, Any]:
    """An outgoing answered call already in its schema's types (15 fields)."""
    return {
        "cmiuid": "5b8e3c1a-2f4d-4e0a-9a63-0c1d2e3f4a5b",
        "time": 1764547200123,
        "started_at": "2025-12-01T00:00:00.123Z",
        "direction": "outgoing",
        "status": "answered",
        "duration": 120,
        "billedsec": 120,
        "rate": 1.0,
        "name": "unknown",
        "from": "919200000000",
        "to": "919876543210",
        "agent": "101_1111112",
        "region": "IN",
        "filename": "1764547200123_0a1b2c3d.mp3",
        "record": "true",
    }


def test_telecmi_call_records_of_every_platform_come_out_in_their_schema_types():
    schema = ResourceSchemaLoader("source_telecmi").get_schema("outgoing_answered_calls")
    conformer = Conformer("outgoing_answered_calls", schema)
    india = {
        "_id": "65b0c0de0123456789abcdef",
        "billedsec": "61",
        "rate": "0.98",
        "from": "101_1111112",
        "to": 919876543210,
    }
    assert conformer(india) == {**india, "billedsec": 61, "rate": 0.98, "to": "919876543210"}
    long_number = {"to": 123456789012345678901, "from": 6500000001, "duration": 7.0}
    assert conformer(long_number) == {"to": "123456789012345678901", "from": "6500000001", "duration": 7}
    assert conformer.nulled == {}


def test_telecmi_users_in_mixed_types_come_out_in_their_schema_types():
    conformer = Conformer("users", ResourceSchemaLoader("source_telecmi").get_schema("users"))
    users = [
        {"agent_id": "101_1", "extension": 101, "phone": 919100000000, "notify": True, "start_time": 9, "end_time": 18},
        {"agent_id": "102_1", "extension": "102", "phone": "919100000001", "notify": "true", "start_time": "9"},
        {"agent_id": "103_1", "extension": 103, "notify": 1, "end_time": "18", "sip": {"password": "p"}},
        {"agent_id": "104_1", "notify": "false"},
        {"agent_id": "105_1", "notify": 0},
    ]
    out = [conformer(user) for user in users]
    assert out == [
        {
            "agent_id": "101_1",
            "extension": "101",
            "phone": "919100000000",
            "notify": True,
            "start_time": 9,
            "end_time": 18,
        },
        {"agent_id": "102_1", "extension": "102", "phone": "919100000001", "notify": True, "start_time": 9},
        {"agent_id": "103_1", "extension": "103", "notify": True, "end_time": 18, "sip": {"password": "p"}},
        {"agent_id": "104_1", "notify": False},
        {"agent_id": "105_1", "notify": False},
    ]
    assert conformer.nulled == {}


def test_speed_is_printed_not_asserted():
    """Records per second on this machine for a 15-field call record (`pytest -s` shows it); a benchmark, not a gate."""
    conformer = Conformer(
        "outgoing_answered_calls", ResourceSchemaLoader("source_telecmi").get_schema("outgoing_answered_calls")
    )
    as_sent = {**right_call(), "from": 919200000000, "to": 919876543210, "rate": "0.49"}
    for label, record in (("already right", right_call()), ("as TeleCMI sends it", as_sent)):
        count, started = 20_000, time.perf_counter()
        for _ in range(count):
            conformer(record)
        print(f"\nConformer, {label}: {count / (time.perf_counter() - started):,.0f} records/s on one core")


def test_each_record_has_its_own_changes_when_many_threads_share_one_conformer():
    conformer = Conformer("s", NESTED)
    threads, per_thread = 8, 500
    results: list[list[Any]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        start.wait()
        for n in range(per_thread):
            bad = number % 3  # which note is wrong differs per thread
            notes = [{"date": 1}, {"date": 2}, {"date": 3}]
            notes[bad] = {"date": f"wrong {number} {n}"}
            results[number].append(conformer({"notes": notes}).changes)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for number, changes in enumerate(results):
        assert all(c == [(f"notes[{number % 3}].date", Change.NULLED)] for c in changes), number
    assert conformer.nulled == {"notes[].date": threads * per_thread}


# --------------------------------------------------------------------- changes to the message's meta


def through_the_cdk(record: Record) -> AirbyteMessage:
    """What the CDK does with a record taken from the queue (concurrent_read_processor.on_record), then `_read_one`."""
    queue = RecordQueue()
    queue.put(record)
    taken = queue.get_nowait()
    message = stream_data_to_airbyte_message(stream_name=taken.stream_name, data_or_message=taken.data)
    take_changes(message)
    return message


def test_a_records_changes_reach_its_message_as_meta_changes():
    conformer = Conformer("s", NESTED)
    shaped = conformer({"notes": {"date": "soon"}, "sip": {"port": "NA"}}, [("password", Change.NULLED)])
    message = through_the_cdk(Record(data=shaped, stream_name="users"))
    assert message.record.data == {"notes": [{"date": None}], "sip": {"port": None}}
    assert all(isinstance(key, str) for key in message.record.data)
    line = json.loads(AirbyteEntrypoint.airbyte_message_to_string(message))
    assert line["record"]["meta"] == {
        "changes": [
            {"field": "password", "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"},
            {"field": "sip.port", "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"},
            {"field": "notes[0].date", "change": "NULLED", "reason": "SOURCE_SERIALIZATION_ERROR"},
        ]
    }
    assert shaped == {"notes": [{"date": None}], "sip": {"port": None}}, "the shaped record is not changed"


def test_a_record_without_changes_has_no_meta_and_passes_the_queue_as_it_is():
    shaped = Conformer("s", NESTED)({"tags": ["a"]})
    record = Record(data=shaped, stream_name="s")
    queue = RecordQueue()
    queue.put(record)
    assert queue.get_nowait() is record
    message = through_the_cdk(record)
    assert message.record.meta is None
    assert "meta" not in json.loads(AirbyteEntrypoint.airbyte_message_to_string(message))["record"]
    plain = through_the_cdk(Record(data={"a": 1}, stream_name="s"))  # a record no shaper made
    assert plain.record.data == {"a": 1} and plain.record.meta is None


def test_other_messages_pass_take_changes_untouched():
    log = AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=Level.INFO, message="hello"))
    take_changes(log)
    assert log.log.message == "hello"
    queue = RecordQueue()
    queue.put(log, block=False)
    assert queue.get_nowait() is log


def test_meta_of_lists_every_change_with_the_protocols_reason():
    meta = meta_of([("rate", Change.NULLED), ("recording_url", Change.TRUNCATED)])
    assert [(c.field, c.change, c.reason) for c in meta.changes] == [
        ("rate", Change.NULLED, Reason.SOURCE_SERIALIZATION_ERROR),
        ("recording_url", Change.TRUNCATED, Reason.SOURCE_SERIALIZATION_ERROR),
    ]


def test_the_shaper_declares_every_change_it_and_the_conformer_make_and_no_other():
    from source_telecmi.shaping import schema_of, shaper
    from source_telecmi.telecmi.platforms import LISTS

    rows = {row.stream: row for row in LISTS}
    row = rows["incoming_answered_calls"]
    shape = shaper(row, Conformer(row.stream, schema_of(row.stream)))
    at = 1764547200123
    shaped = shape({"cmiuid": "c-1", "time": "sometime", "rate": "NA", "token": "call-token-1", "notes": {}}, None)
    assert shaped.get("time") is None and shaped["notes"] == [{}]
    assert shaped.changes == [("token", Change.NULLED), ("time", Change.NULLED), ("rate", Change.NULLED)]
    shaped = shape({"cmiuid": "c-2", "time": str(at), "rate": "0.5"}, at)
    assert shaped["time"] == at and shaped.changes == [], "a time read in another form is no change"
    shaped = shape({"cmiuid": "c-3"}, None)
    assert shaped.changes == [], "a time TeleCMI did not send is not one the connector nulled"
    users = rows["users"]
    user = shaper(users, Conformer("users", schema_of("users")))({"agent_id": "101_1", "password": "p"}, None)
    assert user == {"agent_id": "101_1"} and user.changes == [("password", Change.NULLED)]
