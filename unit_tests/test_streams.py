"""The streams as rows, the shape of their records, and the users list."""

import random

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.streams import (
    CALL_STREAMS,
    UsersPartition,
    call_instant,
    read_user_list,
    shape_call,
    users_schema,
    without_secrets,
)
from source_telecmi.telecmi import CALL_APIS, AccessRefused, EndpointMissing, Page

STREAMS = {stream.name: stream for stream in CALL_STREAMS}
AT = 1764583200123  # 2025-12-01T10:00:00.123Z


# -------------------------------------------------------------------------------------- the rows


def test_the_four_call_streams_and_their_endpoints():
    assert {name: dict(stream.paths) for name, stream in STREAMS.items()} == {
        "incoming_answered_calls": {"user": "/v2/user/answered", "account": "/v2/answered", "india": "/v1/answered"},
        "incoming_missed_calls": {"user": "/v2/user/missed", "account": "/v2/missed", "india": "/v1/missed"},
        "outgoing_answered_calls": {
            "user": "/v2/user/out_answered",
            "account": "/v2/out_answered",
            "india": "/v1/outanswered",
        },
        "outgoing_missed_calls": {"user": "/v2/user/out_missed", "account": "/v2/out_missed", "india": "/v1/outmissed"},
    }
    assert all(set(stream.paths) == set(CALL_APIS) for stream in CALL_STREAMS)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_call_schemas_are_resolved_and_declare_what_records_carry(name):
    schema = STREAMS[name].schema()
    assert "$ref" not in str(schema)
    properties = schema["properties"]
    for field in ("cmiuid", "time", "agent", "direction", "status", "started_at", "rate", "from", "_id"):
        assert field in properties, field
    assert "integer" in properties["time"]["type"]
    assert "number" in properties["rate"]["type"]
    assert properties["notes"]["items"]["properties"]["agent"]["type"] == ["null", "string"]
    assert "additionalProperties" not in schema  # TeleCMI's new fields are kept, not dropped


def test_users_schema_never_declares_a_password():
    properties = users_schema()["properties"]
    assert "agent_id" in properties
    assert not any("password" in field or "secret" in field for field in properties)


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
    shaped = shape_call(STREAMS["outgoing_answered_calls"])(dict(record), AT)
    assert shaped == {
        **record,
        "time": AT,
        "from": "919200000000",
        "to": "61400000000",
        "direction": "outgoing",
        "status": "answered",
        "started_at": "2025-12-01T10:00:00.123Z",
    }


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
    shaped = shape_call(STREAMS[name])({"cmiuid": "c", "time": AT}, AT)
    assert (shaped["direction"], shaped["status"]) == (direction, status)


def test_phone_numbers_become_strings_and_text_is_left_alone():
    shape = shape_call(STREAMS["outgoing_missed_calls"])
    assert shape({"from": 9.192e11, "to": None}, AT)["from"] == "919200000000"
    shaped = shape({"from": "101_1111112", "to": "+61 400"}, AT)
    assert (shaped["from"], shaped["to"]) == ("101_1111112", "+61 400")
    assert shape({"from": True}, AT)["from"] is True


def test_india_records_key_on_cmiuid_and_carry_rate_as_a_number():
    india = {"_id": "65f1c0ffee0000000000abcd", "time": AT, "rate": "0.49", "from": "101_1111112", "to": 919100000001}
    shaped = shape_call(STREAMS["outgoing_answered_calls"])(dict(india), AT)
    assert shaped["cmiuid"] == "65f1c0ffee0000000000abcd"
    assert shaped["_id"] == "65f1c0ffee0000000000abcd"
    assert shaped["rate"] == 0.49
    assert shaped["to"] == "919100000001"


def test_a_rate_that_is_not_a_number_is_kept_as_sent():
    assert shape_call(STREAMS["incoming_answered_calls"])({"rate": "n/a"}, AT)["rate"] == "n/a"
    assert shape_call(STREAMS["incoming_answered_calls"])({"rate": 0.3}, AT)["rate"] == 0.3


def test_a_cmiuid_is_never_replaced_by_an_id():
    shaped = shape_call(STREAMS["incoming_missed_calls"])({"cmiuid": "real", "_id": "other"}, AT)
    assert shaped["cmiuid"] == "real"


def test_a_call_without_a_time_is_shaped_without_one():
    shaped = shape_call(STREAMS["incoming_missed_calls"])({"cmiuid": "c", "time": "garbage"}, None)
    assert shaped["time"] is None and shaped["started_at"] is None


def test_call_instant_reads_the_time_field():
    assert call_instant({"time": AT}) == AT
    assert call_instant({"time": "2025-12-01T10:00:00.123Z"}) == AT
    assert call_instant({}) is None


# -------------------------------------------------------------------------------------------- users


def user(n, **fields):
    return {"agent_id": f"{100 + n}_1111112", "name": f"User {n}", "password": f"pw-{n}", **fields}


def test_without_secrets_removes_passwords_and_anything_named_like_a_secret():
    agent = user(1, extension=101, phone=919100000001, Password2="x", app_secret="y", token="z", passwd="w")
    assert without_secrets(agent) == {
        "agent_id": "101_1111112",
        "name": "User 1",
        "extension": 101,
        "phone": 919100000001,
    }


class FakeUserList:
    """TeleCMI's user list: LIMIT/OFFSET pages, options for what it has been seen doing."""

    def __init__(self, users, largest_page=20, cap=None, extra_count=0, subsets=False, seed=0):
        self.users = users
        self.largest_page = largest_page
        self.url = "https://rest.telecmi.com/v3/user/list"
        self.requests = []
        self._cap = cap
        self._extra_count = extra_count
        self._subsets = subsets
        self._random = random.Random(seed)

    def page(self, number, limit):
        self.requests.append((number, limit))
        assert len(self.requests) < 1000, "the reader never stops asking"
        size = min(limit, self._cap or limit)
        records = self.users[(number - 1) * size : number * size]
        if self._subsets:
            records = [u for u in self.users if self._random.random() < 0.5][:size]
        return Page(len(self.users) + self._extra_count, [dict(u) for u in records])


def agent_ids(users):
    return sorted(u["agent_id"] for u in users)


def test_user_list_pages_until_the_count(log):
    users = [user(n) for n in range(45)]
    endpoint = FakeUserList(users)
    assert agent_ids(read_user_list(endpoint, log.logger)) == agent_ids(users)
    assert endpoint.requests == [(1, 20), (2, 20), (3, 20)]
    assert not log.warnings()


def test_user_list_learns_the_page_size_served(log):
    users = [user(n) for n in range(25)]
    endpoint = FakeUserList(users, cap=10)
    assert agent_ids(read_user_list(endpoint, log.logger)) == agent_ids(users)
    assert endpoint.requests == [(1, 20), (2, 10), (3, 10)]
    assert any("serves pages of 10" in m for m in log.messages())


def test_user_list_with_a_wrong_count_is_read_with_a_warning(log):
    users = [user(n) for n in range(25)]
    endpoint = FakeUserList(users, extra_count=3)
    assert agent_ids(read_user_list(endpoint, log.logger)) == agent_ids(users)
    assert any("count is wrong" in m and "28" in m for m in log.warnings())
    assert len(endpoint.requests) < 20


def test_user_list_that_falls_short_differently_on_every_read_is_an_error(log):
    users = [user(n) for n in range(25)]
    with pytest.raises(AirbyteTracedException) as error:
        read_user_list(FakeUserList(users, extra_count=1, subsets=True, seed=1), log.logger)
    assert "users" in error.value.message and "counts 26 users" in error.value.message


def test_an_empty_user_list_is_fine(log):
    assert read_user_list(FakeUserList([]), log.logger) == []


class Missing(FakeUserList):
    def page(self, number, limit):
        self.requests.append((number, limit))
        raise EndpointMissing(message="TeleCMI has no endpoint /v3/user/list")


class Refused(FakeUserList):
    def page(self, number, limit):
        raise AccessRefused("not allowed")


def test_users_come_from_the_next_list_when_the_first_is_missing_and_never_carry_a_password(log):
    users = [user(n) for n in range(3)]
    v2 = FakeUserList(users, largest_page=10)
    v2.url = "https://rest.telecmi.com/v2/user/list"
    records = list(UsersPartition([Missing([]), v2], log.logger).read())
    assert agent_ids(r.data for r in records) == agent_ids(users)
    assert all("password" not in r.data for r in records)
    assert all(r.stream_name == "users" for r in records)
    assert any("/v2/user/list" in m for m in log.messages())


def test_users_fail_when_no_list_is_there(log):
    with pytest.raises(EndpointMissing):
        list(UsersPartition([Missing([]), Missing([])], log.logger).read())


def test_users_refused_are_skipped_with_a_warning(log):
    assert list(UsersPartition([Refused([])], log.logger).read()) == []
    assert any("users skipped" in m and "not allowed" in m for m in log.warnings())
