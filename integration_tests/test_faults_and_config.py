"""Faults from TeleCMI are retried or end the sync with a cause; bad config fails check in one line; no secret is printed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from integration_tests.conftest import ENDPOINTS, PASSWORD, STREAM, TOKEN, catalog, config_for, login_credentials
from integration_tests.harness import endpoints
from integration_tests.telecmi_simulator import OUT_MISSED, Simulator

TRANSIENT = ["429", "500", "502", "503", "body_5xx", "html_200", "garbage", "drop", "stall"]


@pytest.mark.parametrize("kind", ["token", "app", "india"])
@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_faults_are_retried_on_every_stream_and_the_sync_completes(connector, sim, fault, kind):
    streams = endpoints(kind)
    for endpoint in streams.values():
        sim.inject(fault, times=1, endpoint=endpoint, retry_after=0, seconds=3)
    connector.env["SOURCE_TELECMI_REQUEST_TIMEOUT"] = "1"
    run = connector.run("read", config_for(sim, kind, num_workers=4), catalog("incremental", *streams))
    assert run.returncode == 0, run.stdout[-2000:]
    assert sim.stats.faults_served == len(streams)
    for stream, endpoint in streams.items():
        got = sorted(r["cmiuid"] for r in run.records_of(stream))
        assert got == sorted(c.get("cmiuid") or c["_id"] for c in sim.records(endpoint))


@pytest.mark.parametrize(
    "fault, cause, stream",
    [
        ("html_200", "not JSON", "outgoing_missed_calls"),
        ("503", "server error", "incoming_missed_calls"),
        ("drop", "connection", "incoming_answered_calls"),
        ("stall", "did not answer in time", "outgoing_answered_calls"),
        ("429", "rate limit", "outgoing_missed_calls"),
    ],
)
def test_a_fault_that_persists_ends_the_sync_with_an_error_naming_it(connector, sim, fault, cause, stream):
    sim.inject(fault, times=-1, endpoint=ENDPOINTS[stream], retry_after=0, seconds=3)
    connector.env["SOURCE_TELECMI_REQUEST_TIMEOUT"] = "1"
    run = connector.run("read", config_for(sim, num_workers=2), catalog("incremental", stream), timeout=180)
    assert run.returncode != 0
    assert run.errors, "the sync ends with an error trace"
    text = " ".join(e["message"] + " " + (e.get("internal_message") or "") for e in run.errors)
    assert cause.lower() in text.lower()
    assert stream in json.dumps(run.errors)


def test_pages_that_all_repeat_page_one_are_read_in_smaller_pieces_and_nothing_is_lost(connector, sim, calls):
    # TeleCMI ignoring `page`: every page is page 1. Smaller windows need fewer pages, down to one.
    sim.inject("ignore_page", times=-1, endpoint=OUT_MISSED)
    run = connector.run("read", config_for(sim), catalog(), timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert sorted(r["cmiuid"] for r in run.records) == sorted(c["cmiuid"] for c in calls)
    assert any("reading the window again" in log for log in run.logs("WARN"))


def test_an_inflated_count_does_not_page_forever(connector, sim, calls):
    sim.inject("inflate_count", times=-1, endpoint=OUT_MISSED, extra=1000)
    run = connector.run("read", config_for(sim), catalog(), timeout=120)
    assert run.returncode == 0
    assert sorted(r["cmiuid"] for r in run.records) == sorted(c["cmiuid"] for c in calls)


def test_a_rejected_fixed_token_ends_the_sync_as_a_config_error(connector, sim):
    run = connector.run(
        "read", config_for(sim, credentials={"auth_type": "token", "token": "expired-token"}), catalog()
    )
    assert run.returncode != 0
    error = run.errors[0]
    assert error["failure_type"] == "config_error"
    assert "invalid or expired" in error["message"]


@pytest.mark.parametrize("placement", ["body", "status"])
def test_check_fails_in_one_line_for_a_bad_token_wherever_telecmi_puts_the_error(connector, calls, placement):
    with Simulator(calls={OUT_MISSED: calls}, tokens=[TOKEN], error_placement=placement) as sim:
        run = connector.run("check", config_for(sim, credentials={"auth_type": "token", "token": "nope"}))
    assert_failed(run, "invalid or expired")


def test_check_fails_for_a_wrong_password(connector, sim):
    # Not "wrong-password": any 8+ character piece that ends a secret is masked, "password" too.
    credentials = {**login_credentials(), "password": "wrong-pw-9q2"}
    assert_failed(connector.run("check", config_for(sim, credentials=credentials)), "Invalid user id or password")


def test_check_fails_for_an_unreachable_api(connector, sim):
    run = connector.run("check", config_for(sim, api_url="http://127.0.0.1:9"))
    assert_failed(run, "connection")


def test_check_fails_for_a_proxy_page_instead_of_telecmi(connector, sim):
    run = connector.run("check", config_for(sim, api_url=sim.base_url + "/some/proxy/prefix"))
    assert_failed(run, "no endpoint /some/proxy/prefix")


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"start_date": "12/01/2025"}, "start_date '12/01/2025' is not a date in the form YYYY-MM-DD"),
        ({"end_date": "2026-01-01T25:00:00Z"}, "end_date"),
        ({"num_workers": 33}, "num_workers must be from 1 to 32"),
        ({"region": "mars"}, "region"),
        ({"credentials": {"auth_type": "app", "app_id": "abc", "app_secret": "x"}}, "credentials.app_id"),
        ({"start_date": "2025-02-30T00:00:00Z"}, "start_date"),
        ({"end_date": "2025-11-01T00:00:00Z"}, "before start_date"),
        ({"api_url": "http://rest.telecmi.com"}, "https"),
        ({"num_workers": 0}, "num_workers"),
        ({"lookback_window_days": -1}, "lookback_window_days"),
    ],
)
def test_check_fails_in_one_line_for_bad_config(connector, sim, overrides, reason):
    assert_failed(connector.run("check", config_for(sim, **overrides)), reason)


def test_check_survives_transient_faults_without_raising(connector, sim):
    sim.inject("503", times=-1)
    run = connector.run("check", config_for(sim))
    assert_failed(run, "server error")


def test_check_succeeds_with_token_and_with_login(connector, sim):
    assert connector.run("check", config_for(sim)).connection_status["status"] == "SUCCEEDED"
    run = connector.run("check", config_for(sim, credentials=login_credentials()))
    assert run.connection_status["status"] == "SUCCEEDED"


def assert_failed(run, reason):
    assert run.returncode == 0, run.stdout[-2000:]
    status = run.connection_status
    assert status["status"] == "FAILED"
    assert reason.lower() in status["message"].lower()
    assert "\n" not in status["message"] and len(status["message"]) < 400


def test_no_secret_is_printed_even_in_debug_logs(connector, sim, calls):
    sim.inject("expire_token", endpoint=OUT_MISSED)
    sim.inject("500", endpoint=OUT_MISSED)
    config = config_for(sim, credentials=login_credentials())
    outputs = [
        connector.run("check", config, debug=True),
        connector.run("read", config, catalog(), debug=True),
        connector.run(
            "read", config_for(sim, credentials={"auth_type": "token", "token": TOKEN}), catalog(), debug=True
        ),
        connector.run(
            "read", config_for(sim, credentials={"auth_type": "token", "token": "bad-token-123"}), catalog(), debug=True
        ),
    ]
    issued = sim.valid_tokens() - {TOKEN}
    assert issued, "login issued tokens"
    for run in outputs:
        text = run.stdout + run.stderr
        for secret in [PASSWORD, TOKEN, "bad-token-123", *issued]:
            assert secret not in text
    assert "Making outbound API request" in outputs[1].stdout, "debug logs were on"
    assert outputs[1].records and outputs[1].returncode == 0


def test_spec_and_discover(connector, sim):
    spec = connector.run("spec").of("SPEC")[0]["spec"]["connectionSpecification"]
    assert spec["required"] == ["credentials", "start_date"]
    options = spec["properties"]["credentials"]["oneOf"]
    assert options[0]["properties"]["auth_type"]["const"] == "app", "the form shows the team's credentials first"
    secrets = {name for option in options for name, prop in option["properties"].items() if prop.get("airbyte_secret")}
    assert secrets == {"token", "password", "app_id", "app_secret"}, "app_id too: the acceptance suite's rule"
    assert options[0]["properties"]["app_id"]["type"] == "string", "one type per field: the form's"
    bounds = {
        name: (spec["properties"][name]["minimum"], spec["properties"][name]["maximum"])
        for name in ("num_workers", "lookback_window_days")
    }
    assert bounds == {"num_workers": (1, 32), "lookback_window_days": (0, 3650)}
    assert "format" not in spec["properties"]["start_date"], "a date-time format would refuse the bare dates accepted"
    streams = connector.run("discover", config_for(sim)).of("CATALOG")[0]["catalog"]["streams"]
    assert {s["name"] for s in streams} == {*ENDPOINTS, "sync_audit"}
    for stream in (s for s in streams if s["name"] in ENDPOINTS):
        assert stream["source_defined_primary_key"] == [["cmiuid"]]
        assert stream["default_cursor_field"] == ["time"]
        assert set(stream["supported_sync_modes"]) == {"full_refresh", "incremental"}
        assert "$ref" not in json.dumps(stream["json_schema"])


@pytest.mark.parametrize(
    "date", ["2025-12-01", "2025-12-01T00:00:00Z", "2025-12-01T00:00:00.000Z", "2025-12-01T00:00:00+00:00"]
)
def test_start_date_in_every_documented_form_passes_check(connector, sim, date):
    assert connector.run("check", config_for(sim, start_date=date)).connection_status["status"] == "SUCCEEDED"


def test_a_value_out_of_the_spec_bounds_names_its_field(connector, sim):
    assert_failed(connector.run("check", config_for(sim, lookback_window_days=4000)), "lookback_window_days")


def test_a_wrong_password_is_tried_once_per_sync_not_once_per_stream(connector, sim):
    credentials = {**login_credentials(), "password": "wrong-pw-9q2"}
    run = connector.run("read", config_for(sim, credentials=credentials), catalog("incremental", *ENDPOINTS))
    assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
    assert "Invalid user id or password" in run.errors[0]["message"]
    assert sim.stats.by_path == {"/v2/user/login": 1}


@pytest.mark.parametrize(
    "api_url, cause", [("http://127.0.0.1:9", "Connection refused"), ("https://telecmi.invalid", "telecmi.invalid")]
)
def test_an_unreachable_api_ends_the_read_soon_naming_the_cause(connector, sim, api_url, cause):
    connector.env["SOURCE_TELECMI_BACKOFF_SCALE"] = "0.1"  # 60 s of patience become 6 s
    started = time.monotonic()
    run = connector.run("read", config_for(sim, api_url=api_url), catalog("incremental", *ENDPOINTS), timeout=120)
    took = time.monotonic() - started
    assert run.returncode != 0
    assert cause in run.errors[0]["message"] and "Cannot reach TeleCMI" in run.errors[0]["message"]
    assert took < 40, f"{took:.0f} s"


def test_codes_sent_as_strings_mean_what_the_numbers_mean(connector, sim):
    sim.inject("string_code", times=-1)
    assert_failed(
        connector.run("check", config_for(sim, credentials={"auth_type": "token", "token": "nope"})),
        "invalid or expired",
    )
    assert connector.run("check", config_for(sim)).connection_status["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "stream_state, problem",
    [
        ({"state_type": "date-range", "slices": [{"start": 0}]}, "slice 1 has no start or no end"),
        ({"state_type": "date-range", "slices": [{"start": 0, "end": "soon"}]}, "slice 1 end is 'soon'"),
        ({"time": [1]}, "time is [1]"),
        ({"cursor": 5}, "not 'time' or 'slices'"),
    ],
)
def test_an_unreadable_state_is_a_config_error_saying_reset_fixes_it(connector, sim, stream_state, problem):
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": STREAM}, "stream_state": stream_state}}]
    run = connector.run("read", config_for(sim), catalog(), state)
    assert run.returncode != 0
    (error, *_) = run.errors
    assert error["failure_type"] == "config_error"
    assert STREAM in error["message"] and problem in error["message"] and "Reset the stream" in error["message"]


def test_a_state_with_iso_instants_is_migrated(connector, sim, calls):
    cursor = sorted(c["time"] for c in calls)[300]
    iso = datetime.fromtimestamp(cursor / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": STREAM}, "stream_state": {"time": iso}}}]
    run = connector.run("read", config_for(sim), catalog(), state)
    assert run.returncode == 0, run.errors
    assert sorted(r["cmiuid"] for r in run.records) == sorted(c["cmiuid"] for c in calls if c["time"] > cursor)


def test_check_tries_the_next_stream_when_telecmi_refuses_one(connector, sim):
    sim.refuse_endpoint(ENDPOINTS[STREAM])
    assert connector.run("check", config_for(sim)).connection_status["status"] == "SUCCEEDED"
    for endpoint in ENDPOINTS.values():
        sim.refuse_endpoint(endpoint, msg="Not for you")
    run = connector.run("check", config_for(sim))
    assert_failed(run, "refuses every call-record endpoint")


def test_check_logs_in_once(connector, sim):
    run = connector.run("check", config_for(sim, credentials=login_credentials()))
    assert run.connection_status["status"] == "SUCCEEDED"
    assert sim.stats.logins == 1


def test_a_password_with_quotes_backslashes_spaces_and_accents_is_never_printed_in_any_form(connector, sim):
    password = ' p"a\\ss wörd€ '
    sim.add_user("102_1111112", password)
    credentials = {"auth_type": "login", "user_id": "102_1111112", "password": password}
    sim.inject("echo_secret", times=1, endpoint="/v2/user/out_missed", after=2)
    runs = [
        connector.run("check", config_for(sim, credentials=credentials), debug=True),
        connector.run("read", config_for(sim, credentials=credentials), catalog("incremental", *ENDPOINTS), debug=True),
        connector.run("read", config_for(sim, credentials={**credentials, "password": "wrong"}), catalog(), debug=True),
    ]
    assert runs[0].connection_status["status"] == "SUCCEEDED"
    forms = {password, password.strip(), json.dumps(password)[1:-1], json.dumps(password, ensure_ascii=False)[1:-1]}
    forms |= {json.dumps(form)[1:-1] for form in set(forms)}
    for run in runs:
        text = run.stdout + run.stderr
        for secret in forms | (sim.valid_tokens() - {TOKEN}):
            assert secret not in text
    assert "Making outbound API request" in runs[1].stdout, "debug logs were on"
