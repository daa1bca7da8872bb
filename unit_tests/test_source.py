"""The source in-process, TeleCMI mocked with the CDK's HttpMocker: spec, discover, check, read."""

import json
import logging
import sys

import pytest
from airbyte_cdk.models import (
    AirbyteStreamStatus,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
    SyncMode,
)
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import discover, read
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse
from airbyte_cdk.test.state_builder import StateBuilder

from source_telecmi import SourceTelecmi
from source_telecmi.config import ConfigError
from source_telecmi.run import TelecmiEntrypoint, run

API = "https://rest.telecmi.com"
INDIA = "https://piopiy.telecmi.com"
START_MS = 1704067200000  # 2024-01-01T00:00:00Z
END_MS = START_MS + 3_600_000  # 2024-01-01T01:00:00Z: one window
APP_ID = 1111112
SECRET = "app-s3cret-value"
TOKEN = {"auth_type": "token", "token": "unit-token"}
APP = {"auth_type": "app", "app_id": APP_ID, "app_secret": SECRET}
LOGIN = {"auth_type": "login", "user_id": "101_1111112", "password": "pw-101"}
CONFIG = {
    "credentials": TOKEN,
    "start_date": "2024-01-01T00:00:00Z",
    "end_date": "2024-01-01T01:00:00Z",
    "lookback_window_days": 0,
    "num_workers": 2,
}
CALL_STREAM_NAMES = {
    "incoming_answered_calls",
    "incoming_missed_calls",
    "outgoing_answered_calls",
    "outgoing_missed_calls",
}
APP_STREAM_NAMES = {"users", "voicemails", "daily_call_totals", "account_balance", "recordings", "sync_audit"}
LOGGER = logging.getLogger("airbyte")


def config(**overrides):
    return {**CONFIG, **overrides}


def user_page(page, limit=10, path="/v2/user/out_missed", request_from=START_MS - 1, request_to=END_MS + 1):
    body = {"token": "unit-token", "from": request_from, "to": request_to, "page": page, "limit": limit}
    return HttpRequest(url=API + path, body=body)


def app_page(page, limit=20, path="/v2/out_missed"):
    body = {
        "appid": APP_ID,
        "secret": SECRET,
        "start_date": START_MS - 1,
        "end_date": END_MS + 1,
        "page": page,
        "limit": limit,
    }
    return HttpRequest(url=API + path, body=body)


def call(i, **fields):
    return {"cmiuid": f"call-{i:02d}", "time": END_MS - 1000 * i, "from": "6500", "to": 919100000000 + i, **fields}


def answer(count, records, **envelope):
    return HttpResponse(body=json.dumps({"count": count, "cdr": records, "code": 200, **envelope}))


def refusal(code, msg):
    return HttpResponse(body=json.dumps({"code": code, "error": True, "msg": msg}))


def catalog(*names, sync_mode=SyncMode.incremental):
    builder = CatalogBuilder()
    for name in names or ("outgoing_missed_calls",):
        builder = builder.with_stream(name, sync_mode)
    return builder.build()


def output_text(output):
    """Everything the connector printed: records, state, traces and logs."""
    return "\n".join(str(m) for m in [*output.records, *output.state_messages, *output.trace_messages, *output.logs])


# ------------------------------------------------------------------------------------------------- spec


def test_spec_bounds_and_the_recommended_credentials_first():
    spec = SourceTelecmi().spec(LOGGER).connectionSpecification
    properties = spec["properties"]
    assert (properties["num_workers"]["minimum"], properties["num_workers"]["maximum"]) == (1, 32)
    assert properties["num_workers"]["default"] == 8
    assert (properties["lookback_window_days"]["minimum"], properties["lookback_window_days"]["maximum"]) == (0, 3650)
    options = properties["credentials"]["oneOf"]
    assert [o["properties"]["auth_type"]["const"] for o in options] == ["app", "login", "token"]
    secrets = {name for o in options for name, field in o["properties"].items() if field.get("airbyte_secret")}
    assert secrets == {"app_id", "app_secret", "password", "token"}  # the app id is a secret too
    assert properties["region"]["enum"] == ["global", "india"]


def test_a_config_error_names_the_field_before_the_spec_check():
    spec = SourceTelecmi().spec(LOGGER)
    with pytest.raises(ConfigError, match="^num_workers must be from 1 to 32, got 0$"):
        TelecmiEntrypoint.validate_connection(spec, config(num_workers=0))
    with pytest.raises(ConfigError, match="^start_date '2024/01/01' is not a date"):
        TelecmiEntrypoint.validate_connection(spec, config(start_date="2024/01/01"))
    TelecmiEntrypoint.validate_connection(spec, config(start_date="2024-01-01"))


# --------------------------------------------------------------------------------------------- discover


def test_discover_lists_the_call_streams_for_one_user():
    streams = {s.name: s for s in discover(SourceTelecmi(), CONFIG).catalog.catalog.streams}
    assert set(streams) == CALL_STREAM_NAMES | {"sync_audit"}
    for stream in (streams[name] for name in CALL_STREAM_NAMES):
        assert stream.source_defined_primary_key == [["cmiuid"]]
        assert stream.default_cursor_field == ["time"]
        assert SyncMode.incremental in stream.supported_sync_modes


def test_discover_lists_the_users_with_app_credentials():
    streams = {s.name: s for s in discover(SourceTelecmi(), config(credentials=APP)).catalog.catalog.streams}
    assert set(streams) == CALL_STREAM_NAMES | APP_STREAM_NAMES
    users = streams["users"]
    assert users.source_defined_primary_key == [["agent_id"]]
    assert users.supported_sync_modes == [SyncMode.full_refresh]
    assert "password" not in users.json_schema["properties"]


# ------------------------------------------------------------------------------------------------ check


def analysis():
    body = {"appid": APP_ID, "secret": SECRET, "start_date": START_MS, "end_date": END_MS}
    return HttpRequest(url=API + "/v2/analysis", body=body)


def test_check_with_app_credentials_asks_for_the_call_totals(http_mocker):
    request = analysis()
    http_mocker.post(request, HttpResponse(body=json.dumps({"code": 200, "total": 4, "answered": 3, "missed": 1})))
    assert SourceTelecmi().check(LOGGER, config(credentials=APP)).status == Status.SUCCEEDED
    http_mocker.assert_number_of_calls(request, 1)


def test_check_with_a_wrong_app_secret_names_the_fields_never_their_values(http_mocker):
    request = analysis()
    http_mocker.post(request, refusal(404, "Authentication Failed"))
    status = SourceTelecmi().check(LOGGER, config(credentials=APP))
    assert status.status == Status.FAILED
    assert "credentials.app_id, credentials.app_secret" in status.message and "Authentication Failed" in status.message
    assert SECRET not in status.message and str(APP_ID) not in status.message and "\n" not in status.message
    http_mocker.assert_number_of_calls(request, 1)


def test_check_with_app_credentials_reads_a_page_of_calls_where_the_analysis_is_refused():
    body = {
        "appid": APP_ID,
        "secret": SECRET,
        "start_date": START_MS - 1,
        "end_date": END_MS + 1,
        "page": 1,
        "limit": 1,
    }
    with HttpMocker() as http_mocker:  # not the fixture: its check that every request was asked would fail too
        http_mocker.post(analysis(), refusal(403, "Not enabled"))
        http_mocker.post(HttpRequest(url=API + "/v2/answered", body=body), answer(0, []))
        status = SourceTelecmi().check(LOGGER, config(credentials=APP))
    assert status.status == Status.SUCCEEDED, status.message


def test_check_with_a_token_reads_one_call(http_mocker):
    http_mocker.post(user_page(1, limit=1, path="/v2/user/answered"), answer(0, []))
    assert SourceTelecmi().check(LOGGER, CONFIG).status == Status.SUCCEEDED


def test_check_fails_in_one_line_with_a_bad_token(http_mocker):
    http_mocker.post(
        user_page(1, limit=1, path="/v2/user/answered"),
        refusal(404, "Invalid user token, Failed to authenticate token"),
    )
    status = SourceTelecmi().check(LOGGER, CONFIG)
    assert status.status == Status.FAILED
    assert "invalid or expired" in status.message and "\n" not in status.message


def test_check_with_a_login_logs_in_then_reads_one_call(http_mocker):
    http_mocker.post(
        HttpRequest(url=API + "/v2/user/login", body={"id": "101_1111112", "password": "pw-101"}),
        HttpResponse(body=json.dumps({"code": 200, "msg": "ok", "token": "unit-token"})),
    )
    http_mocker.post(user_page(1, limit=1, path="/v2/user/answered"), answer(0, []))
    assert SourceTelecmi().check(LOGGER, config(credentials=LOGIN)).status == Status.SUCCEEDED


def test_check_fails_when_every_call_record_endpoint_is_refused(http_mocker):
    for path in ("/v2/user/answered", "/v2/user/missed", "/v2/user/out_answered", "/v2/user/out_missed"):
        http_mocker.post(user_page(1, limit=1, path=path), refusal(403, f"Not enabled {path}"))
    status = SourceTelecmi().check(LOGGER, CONFIG)
    assert status.status == Status.FAILED and "\n" not in status.message
    assert "refuses every call-record endpoint" in status.message
    assert "incoming_answered_calls: Not enabled /v2/user/answered" in status.message


def test_check_tries_the_next_stream_when_one_is_refused(http_mocker):
    http_mocker.post(user_page(1, limit=1, path="/v2/user/answered"), refusal(403, "Not enabled"))
    http_mocker.post(user_page(1, limit=1, path="/v2/user/missed"), answer(0, []))
    assert SourceTelecmi().check(LOGGER, CONFIG).status == Status.SUCCEEDED


def test_check_in_india_asks_for_the_call_totals_with_the_app_credentials(http_mocker):
    body = {"appid": APP_ID, "token": SECRET, "start_date": START_MS, "end_date": END_MS}
    request = HttpRequest(url=INDIA + "/v1/analysis", body=body)
    http_mocker.post(request, HttpResponse(body=json.dumps({"code": "cmi-2000", "total": 0})))
    assert SourceTelecmi().check(LOGGER, config(credentials=APP, region="india")).status == Status.SUCCEEDED
    http_mocker.assert_number_of_calls(request, 1)


def test_check_in_india_reads_one_call_where_there_is_no_analysis(http_mocker):
    analysis_body = {"appid": APP_ID, "token": SECRET, "start_date": START_MS, "end_date": END_MS}
    http_mocker.post(
        HttpRequest(url=INDIA + "/v1/analysis", body=analysis_body),
        HttpResponse(body=json.dumps({"message": "Not found"}), status_code=404),
    )
    body = {"appid": APP_ID, "token": SECRET, "start_date": START_MS - 1, "end_date": END_MS + 1, "page": 1, "limit": 1}
    http_mocker.post(
        HttpRequest(url=INDIA + "/v1/answered", body=body), HttpResponse(body=json.dumps({"total": 0, "cdr": []}))
    )
    assert SourceTelecmi().check(LOGGER, config(credentials=APP, region="india")).status == Status.SUCCEEDED


def test_check_in_india_with_a_user_token_says_to_use_the_app_credentials():
    status = SourceTelecmi().check(LOGGER, config(region="india"))
    assert status.status == Status.FAILED
    assert "Indian platform" in status.message and "app" in status.message


def test_check_with_a_bad_config_names_the_field():
    status = SourceTelecmi().check(LOGGER, config(lookback_window_days=9999))
    assert status.status == Status.FAILED
    assert status.message.startswith("lookback_window_days")


# ------------------------------------------------------------------------------------------------- read


def test_read_with_user_credentials_pages_a_window_and_checkpoints_it(http_mocker):
    calls = [call(i) for i in range(12)]
    http_mocker.post(user_page(1), answer(12, calls[:10]))
    http_mocker.post(user_page(2), answer(12, calls[10:]))
    output = read(SourceTelecmi(), CONFIG, catalog(), debug=True)
    records = [m.record.data for m in output.records]
    assert sorted(r["cmiuid"] for r in records) == sorted(c["cmiuid"] for c in calls)
    assert all(isinstance(r["to"], str) for r in records)
    assert all((r["direction"], r["status"]) == ("outgoing", "missed") for r in records)
    assert records[0]["started_at"].endswith("Z")
    state = output.most_recent_state.stream_state.__dict__
    assert state["state_type"] == "date-range"
    assert state["slices"] == [{"start": START_MS - 1, "end": END_MS, "most_recent_cursor_value": END_MS}]
    estimates = [m.trace.estimate.row_estimate for m in output.trace_messages if m.trace.estimate]
    assert estimates == [12]
    assert "unit-token" not in output_text(output)


def test_a_full_refresh_read_of_calls_reads_the_whole_range_and_no_window_state(http_mocker):
    calls = [call(i) for i in range(12)]
    http_mocker.post(user_page(1), answer(12, calls[:10]))
    http_mocker.post(user_page(2), answer(12, calls[10:]))
    state = StateBuilder().with_stream_state("outgoing_missed_calls", {"time": START_MS + 1_800_000}).build()
    output = read(SourceTelecmi(), CONFIG, catalog(sync_mode=SyncMode.full_refresh), state)
    assert sorted(m.record.data["cmiuid"] for m in output.records) == sorted(c["cmiuid"] for c in calls)
    assert [m.state.stream.stream_state.__dict__ for m in output.state_messages] == [
        {"__ab_no_cursor_state_message": True}
    ]
    assert output.get_stream_statuses("outgoing_missed_calls")[-1] == AirbyteStreamStatus.COMPLETE


def test_incremental_read_starts_after_the_newest_call_of_the_state(http_mocker):
    newest = START_MS + 1_800_000
    http_mocker.post(user_page(1, request_from=newest, request_to=END_MS + 1), answer(1, [call(1)]))
    state = StateBuilder().with_stream_state("outgoing_missed_calls", {"time": newest}).build()
    output = read(SourceTelecmi(), CONFIG, catalog(), state)
    assert [m.record.data["cmiuid"] for m in output.records] == ["call-01"]


def test_a_stream_refused_on_its_first_request_is_skipped_with_a_warning(http_mocker):
    http_mocker.post(user_page(1, path="/v2/user/answered"), refusal(403, "Not enabled for this user"))
    http_mocker.post(user_page(1), answer(1, [call(3)]))
    output = read(SourceTelecmi(), CONFIG, catalog("outgoing_missed_calls", "incoming_answered_calls"))
    assert not output.errors
    assert [m.record.data["cmiuid"] for m in output.records] == ["call-03"]
    assert output.is_in_logs("incoming_answered_calls skipped.*Not enabled for this user")
    # Skipped is not complete: its table was not brought up to date.
    statuses = output.get_stream_statuses("incoming_answered_calls")
    assert statuses[-1] == AirbyteStreamStatus.INCOMPLETE and AirbyteStreamStatus.COMPLETE not in statuses
    assert output.get_stream_statuses("outgoing_missed_calls")[-1] == AirbyteStreamStatus.COMPLETE


def test_a_refusal_is_retried_before_the_stream_is_skipped(http_mocker):
    refused = user_page(1, path="/v2/user/answered")
    http_mocker.post(refused, [refusal(403, "Not enabled"), answer(1, [call(4)])])
    output = read(SourceTelecmi(), CONFIG, catalog("incoming_answered_calls"))
    assert [m.record.data["cmiuid"] for m in output.records] == ["call-04"]
    assert output.get_stream_statuses("incoming_answered_calls")[-1] == AirbyteStreamStatus.COMPLETE


def test_a_stream_refused_after_it_served_fails_the_sync(http_mocker):
    calls = [call(i) for i in range(12)]
    http_mocker.post(user_page(1), answer(12, calls[:10]))
    http_mocker.post(user_page(2), refusal(403, "Not enabled"))
    output = read(SourceTelecmi(), CONFIG, catalog(), expecting_exception=True)
    assert output.errors
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.transient_error
    assert "after serving it" in error.message
    assert output.get_stream_statuses("outgoing_missed_calls")[-1] == AirbyteStreamStatus.INCOMPLETE


def test_streams_are_read_one_at_a_time(http_mocker):
    for path, first in (("/v2/user/out_missed", 0), ("/v2/user/answered", 20)):
        calls = [call(first + i) for i in range(12)]
        http_mocker.post(user_page(1, path=path), answer(12, calls[:10]))
        http_mocker.post(user_page(2, path=path), answer(12, calls[10:]))
    output = read(SourceTelecmi(), CONFIG, catalog("outgoing_missed_calls", "incoming_answered_calls"))
    order = []
    for message in output.records_and_state_messages:
        stream = message.record.stream if message.record else message.state.stream.stream_descriptor.name
        if not order or order[-1] != stream:
            order.append(stream)
    assert order == ["incoming_answered_calls", "outgoing_missed_calls"]  # each whole, records and states together


def test_a_stream_that_fails_ends_the_sync_at_once(http_mocker):
    http_mocker.post(user_page(1, path="/v2/user/answered"), refusal(400, "Parameter missing"))
    output = read(
        SourceTelecmi(), CONFIG, catalog("outgoing_missed_calls", "incoming_answered_calls"), expecting_exception=True
    )
    # incoming_answered_calls is read first (the catalog's order is the rows'); its error ends the sync:
    # outgoing_missed_calls is never asked (HttpMocker would fail on an unexpected request).
    # The stream's error, and the sync's end with it (printed once by the console script: test_run).
    assert {e.trace.error.message for e in output.errors} == {
        "incoming_answered_calls: TeleCMI rejected the request as malformed (code 400): Parameter missing"
    }
    assert output.get_stream_statuses("incoming_answered_calls")[-1] == AirbyteStreamStatus.INCOMPLETE
    assert output.get_stream_statuses("outgoing_missed_calls") == []
    assert not output.records


def test_values_that_do_not_fit_the_schema_are_null_and_reported(http_mocker):
    http_mocker.post(user_page(1), answer(2, [call(1, rate="NA"), call(2, rate="")]))
    output = read(SourceTelecmi(), CONFIG, catalog())
    assert [m.record.data.get("rate", "absent") for m in output.records] == ["absent", "absent"]  # null: omitted
    assert output.is_in_logs("outgoing_missed_calls: rate: 2 values could not be read as a number")


def test_the_sync_audit_has_a_row_per_window_read(http_mocker):
    calls = [call(i) for i in range(12)]
    http_mocker.post(user_page(1), answer(12, calls[:10]))
    http_mocker.post(user_page(2), answer(12, calls[10:]))
    output = read(SourceTelecmi(), CONFIG, catalog("outgoing_missed_calls", "sync_audit"))
    (row,) = [m.record.data for m in output.records if m.record.stream == "sync_audit"]
    assert (row["stream"], row["window_start"], row["window_end"]) == ("outgoing_missed_calls", START_MS, END_MS)
    assert (row["telecmi_count"], row["records_emitted"], row["verdict"], row["shortfall"]) == (12, 12, "complete", 0)
    assert output.is_in_logs("Stream outgoing_missed_calls: 1 windows, 12 records, every window complete")


def test_read_with_app_credentials_asks_for_20_and_reads_what_is_served(http_mocker):
    calls = [call(i, agent=f"{101 + i % 3}_1111112") for i in range(15)]
    http_mocker.post(app_page(1, limit=20), answer(15, calls[:10]))  # TeleCMI serves 10 when 20 are asked
    http_mocker.post(app_page(2, limit=10), answer(15, calls[10:]))
    output = read(SourceTelecmi(), config(credentials=APP), catalog(), debug=True)
    records = [m.record.data for m in output.records]
    assert sorted(r["cmiuid"] for r in records) == sorted(c["cmiuid"] for c in calls)
    assert {r["agent"] for r in records} == {"101_1111112", "102_1111112", "103_1111112"}
    assert output.is_in_logs("serves pages of 10 records")
    assert SECRET not in output_text(output)


def test_read_in_india_sends_the_secret_as_token_and_keys_on_the_id(http_mocker):
    body = {
        "appid": APP_ID,
        "token": SECRET,
        "start_date": START_MS - 1,
        "end_date": END_MS + 1,
        "page": 1,
        "limit": 10,
    }
    india_calls = [
        {
            "_id": "65f1c0ffee00000000000001",
            "time": END_MS - 10,
            "rate": "0.49",
            "from": "101_1111112",
            "to": 919100000001,
        },
        {
            "_id": "65f1c0ffee00000000000002",
            "time": END_MS - 20,
            "rate": "1.5",
            "from": "102_1111112",
            "to": 919100000002,
        },
    ]
    http_mocker.post(
        HttpRequest(url=INDIA + "/v1/outanswered", body=body),
        HttpResponse(body=json.dumps({"total": 2, "cdr": india_calls})),
    )
    output = read(SourceTelecmi(), config(credentials=APP, region="india"), catalog("outgoing_answered_calls"))
    records = sorted((m.record.data for m in output.records), key=lambda r: r["cmiuid"])
    assert [r["cmiuid"] for r in records] == ["65f1c0ffee00000000000001", "65f1c0ffee00000000000002"]
    assert [r["rate"] for r in records] == [0.49, 1.5]
    assert records[0]["to"] == "919100000001"
    assert not output.errors


def test_users_are_read_from_v2_where_v3_is_missing_and_never_carry_a_password(http_mocker):
    credentials = {"appid": APP_ID, "secret": SECRET}
    http_mocker.post(
        HttpRequest(url=API + "/v3/user/list", body={**credentials, "page": 1, "limit": 20}),
        HttpResponse(body="<html><pre>Cannot POST /v3/user/list</pre></html>", status_code=404),
    )
    agents = [
        {"agent_id": "101_1111112", "name": "Ann", "extension": 101, "password": "pw-of-ann-101"},
        {"agent_id": "102_1111112", "name": "Bob", "extension": 102, "password": "pw-of-bob-102"},
    ]
    http_mocker.post(
        HttpRequest(url=API + "/v2/user/list", body={**credentials, "page": 1, "limit": 10}),
        HttpResponse(body=json.dumps({"code": 200, "status": "success", "count": 2, "agents": agents})),
    )
    output = read(
        SourceTelecmi(), config(credentials=APP), catalog("users", sync_mode=SyncMode.full_refresh), debug=True
    )
    records = [m.record.data for m in output.records]
    assert sorted(r["agent_id"] for r in records) == ["101_1111112", "102_1111112"]
    assert all("password" not in r for r in records)
    text = output_text(output)
    assert "pw-of-ann-101" not in text and "pw-of-bob-102" not in text


def test_users_asked_for_with_a_user_token_is_a_config_error():
    output = read(SourceTelecmi(), CONFIG, catalog("users", sync_mode=SyncMode.full_refresh), expecting_exception=True)
    assert output.errors
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "users" in error.message and "app id and secret" in error.message


def test_a_state_that_cannot_be_read_is_a_config_error_saying_how_to_fix_it():
    state = StateBuilder().with_stream_state("outgoing_missed_calls", {"slices": [{"start": START_MS}]}).build()
    output = read(SourceTelecmi(), CONFIG, catalog(), state, expecting_exception=True)
    assert output.errors
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "outgoing_missed_calls" in error.message and "Reset the stream" in error.message
    assert "Something went wrong" not in error.message


# -------------------------------------------------------------------------------- the console script


def run_command(monkeypatch, capsys, *args):
    """`source-telecmi` as the platform runs it; its stdout, one JSON message a line."""
    monkeypatch.setattr(sys, "argv", ["source-telecmi", *args])
    run()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_the_command_prints_the_records_as_they_are_whatever_the_secrets(http_mocker, monkeypatch, tmp_path, capsys):
    # TeleCMI users pick their passwords: a PIN such as 1111 is a secret to mask, not a reason to change data.
    agents = [{"agent_id": "101_1111112", "name": "Ann", "extension": 101, "password": "1111"}]
    http_mocker.post(
        HttpRequest(url=API + "/v3/user/list", body={"appid": APP_ID, "secret": SECRET, "page": 1, "limit": 20}),
        HttpResponse(body=json.dumps({"code": 200, "status": "success", "count": 1, "agents": agents})),
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config(credentials=APP)))
    catalog_file = tmp_path / "catalog.json"
    users = catalog("users", sync_mode=SyncMode.full_refresh)
    catalog_file.write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(users)))
    messages = run_command(monkeypatch, capsys, "read", "--config", str(config_file), "--catalog", str(catalog_file))
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    # The extension is the string its schema declares (one JSON type per field); the password is gone.
    assert records == [{"agent_id": "101_1111112", "name": "Ann", "extension": "101"}]


def test_check_with_app_credentials_reads_a_page_of_calls_where_there_is_no_analysis(http_mocker):
    http_mocker.post(analysis(), HttpResponse(body="<html>Cannot POST /v2/analysis</html>", status_code=404))
    body = {
        "appid": APP_ID,
        "secret": SECRET,
        "start_date": START_MS - 1,
        "end_date": END_MS + 1,
        "page": 1,
        "limit": 1,
    }
    http_mocker.post(HttpRequest(url=API + "/v2/answered", body=body), answer(0, []))
    assert SourceTelecmi().check(LOGGER, config(credentials=APP)).status == Status.SUCCEEDED


def test_a_login_refused_with_401_is_a_wrong_login_not_a_skipped_stream(http_mocker):
    login = HttpRequest(url=API + "/v2/user/login", body={"id": "101_1111112", "password": "unit-password"})
    http_mocker.post(login, refusal(401, "Unauthorized"))
    credentials = {"auth_type": "login", "user_id": "101_1111112", "password": "unit-password"}
    status = SourceTelecmi().check(LOGGER, config(credentials=credentials))
    assert status.status == Status.FAILED and "refused the login of user 101_1111112" in status.message
