"""Odd answers and odd surroundings, each through the real command against the simulator (from the second review).

Nothing lost or changed while the sync exits 0 (an offset cap, a list without a count, a passing
refusal, 20-digit numbers, odd rates), no secret in any cut of any message, no process outliving
its sync, hints and statuses from the wild, and messages a person can act on. Every run's stdout
lines are validated as AirbyteMessages and every record against its discovered schema (harness).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import pytest

from integration_tests.conftest import APP_SECRET, PASSWORD, TOKEN, catalog, config_for
from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    ALL_ENDPOINTS,
    APP_ID,
    DAY_MS,
    END_MS,
    START_MS,
    USERS,
    calls_for,
    endpoints,
    simulator,
)
from integration_tests.telecmi_simulator import DEFAULT_USER_ID, generate_agents, generate_calls

KINDS = ["token", "app", "india"]


def read_all(connector, sim, kind, mode="incremental", *more, **overrides):
    streams = [*endpoints(kind), *more]
    return connector.run("read", config_for(sim, kind, **overrides), catalog(mode, *streams), timeout=300)


def assert_every_call_once(run, sim, kind):
    assert run.returncode == 0 and not run.errors, f"{run.errors or run.stderr[-2000:]}"
    for stream, path in endpoints(kind).items():
        got = Counter(r["cmiuid"] for r in run.records_of(stream))
        assert not [k for k, n in got.items() if n > 1], f"{stream}: a call emitted twice"
        held = {c.get("cmiuid") or c["_id"] for c in sim.records(path)}
        assert set(got) == held, f"{stream}: {len(got)} of {len(held)} calls emitted"


def statuses(run, stream):
    return [
        t["stream_status"]["status"]
        for t in run.traces("STREAM_STATUS")
        if t["stream_status"]["stream_descriptor"]["name"] == stream
    ]


# ----------------------------------------------------------------------------- nothing lost, nothing changed


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["full_refresh", "incremental"])
def test_an_offset_cap_loses_no_call_and_never_blames_the_count(connector, kind, mode):
    """Pages past an offset come back empty while the count says more: windows are read in smaller pieces."""
    calls = calls_for(list(endpoints(kind).values()), 1500, seed=11, start_ms=START_MS, end_ms=START_MS + 2 * DAY_MS)
    with simulator(calls, offset_cap=100) as sim:
        run = read_all(connector, sim, kind, mode)
        assert_every_call_once(run, sim, kind)
        assert not [log for log in run.logs("WARN") if "count is wrong" in log]


@pytest.mark.parametrize("kind", ["app", "india"])
@pytest.mark.parametrize("with_count", [True, False])
def test_every_user_is_read_whatever_the_list_says_of_its_count(connector, kind, with_count):
    agents = generate_agents(45, app_id=APP_ID, seed=4)
    with simulator({}, agents=agents, users_count=with_count) as sim:
        run = connector.run("read", config_for(sim, kind), catalog("full_refresh", USERS))
        assert run.returncode == 0, run.errors
        assert sorted(u["agent_id"] for u in run.records_of(USERS)) == sorted(a["agent_id"] for a in agents)


@pytest.mark.parametrize("kind", KINDS)
def test_a_passing_refusal_of_a_first_request_is_retried_and_the_stream_completes(connector, sim, kind):
    for path in endpoints(kind).values():
        sim.inject("refuse", times=1, endpoint=path, code=403)
    run = read_all(connector, sim, kind)
    assert_every_call_once(run, sim, kind)
    for stream in endpoints(kind):
        assert statuses(run, stream)[-1] == "COMPLETE"


@pytest.mark.parametrize("sync_mode", ["full_refresh", "incremental"])
def test_a_lasting_refusal_skips_the_stream_as_incomplete_never_complete(connector, sim, sync_mode):
    path = ACCOUNT_ENDPOINTS["incoming_answered_calls"]
    sim.refuse_endpoint(path, code=403, msg="Recordings are not enabled for this account")
    run = read_all(connector, sim, "app", sync_mode, USERS)
    assert run.returncode == 0 and not run.errors
    assert statuses(run, "incoming_answered_calls")[-1] == "INCOMPLETE"
    assert "COMPLETE" not in statuses(run, "incoming_answered_calls")
    warning = [log for log in run.logs("WARN") if "incoming_answered_calls" in log and "skipped" in log]
    assert warning and "Recordings are not enabled for this account" in warning[0]
    assert not run.records_of("incoming_answered_calls")
    for stream in ("incoming_missed_calls", "outgoing_answered_calls", "outgoing_missed_calls", USERS):
        assert statuses(run, stream)[-1] == "COMPLETE" and run.records_of(stream)


@pytest.mark.parametrize("kind", KINDS)
def test_numbers_of_twenty_digits_and_more_keep_every_digit(connector, kind):
    calls = calls_for(list(endpoints(kind).values()), 80, seed=5, long_numbers=True)
    with simulator(calls) as sim:
        run = read_all(connector, sim, kind)
        assert_every_call_once(run, sim, kind)
        for stream, path in endpoints(kind).items():
            sent = {c.get("cmiuid") or c["_id"]: c for c in calls[path]}
            long = 0
            for record in run.records_of(stream):
                call = sent[record["cmiuid"]]
                for field in ("from", "to"):
                    if isinstance(call.get(field), int) and call[field] >= 10**19:
                        long += 1
                        assert record[field] == str(call[field]), f"{stream}.{field} changed"
            assert long, f"{stream}: no 20-digit number to check"


def test_india_rates_that_are_not_numbers_become_null_counted_and_every_record_matches_its_schema(connector, sim):
    for path in endpoints("india").values():
        sim.inject("odd_rates", times=-1, endpoint=path, forms=("", "NA"))
    run = read_all(connector, sim, "india")  # the harness validates every record against its schema
    assert_every_call_once(run, sim, "india")
    rates = [r.get("rate") for stream in endpoints("india") for r in run.records_of(stream)]
    assert None in rates and all(rate is None or isinstance(rate, float | int) for rate in rates)
    assert [log for log in run.logs("WARN") if "rate" in log and "null" in log]


# ----------------------------------------------------------------------------- secrets


def pieces(secret):
    """Every piece of a secret the review counts as the secret: its 8+ character prefixes and suffixes."""
    return {secret[:n] for n in range(8, len(secret) + 1)} | {secret[-n:] for n in range(8, len(secret) + 1)}


def assert_no_piece_of(run, *secrets):
    text = run.stdout + run.stderr
    for secret in secrets:
        leaked = [piece for piece in pieces(secret) if piece in text or json.dumps(piece)[1:-1] in text]
        assert not leaked, f"a piece of a secret is printed: {leaked[0][:4]}..."


@pytest.mark.parametrize("kind", ["token", "login", "app", "india"])
@pytest.mark.parametrize("length", [200, 120, 60])
@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize("form", ["json", "text"])
def test_an_echo_of_the_request_cut_at_any_length_prints_no_piece_of_a_secret(
    connector, sim, kind, length, status, form
):
    path = list(endpoints(kind).values())[0]
    sim.inject("echo_cut", times=1, endpoint=path, length=length, status=status, form=form)
    run = connector.run("read", config_for(sim, kind), catalog("incremental", *endpoints(kind)), debug=True)
    assert sim.stats.faults_served == 1
    assert_no_piece_of(run, TOKEN, PASSWORD, APP_SECRET, *sim.valid_tokens())


@pytest.mark.parametrize("status", [200, 500])
def test_check_with_an_echo_cut_prints_no_piece_of_the_app_secret(connector, sim, status):
    sim.inject("echo_cut", times=-1, length=120, status=status)
    run = connector.run("check", config_for(sim, "app"))
    assert run.connection_status["status"] == "FAILED"
    assert_no_piece_of(run, APP_SECRET)


def test_a_password_with_double_spaces_echoed_and_cut_is_never_printed(connector, sim):
    password = "two  spaces  and\ttabs  in  it-4471"
    sim.add_user(DEFAULT_USER_ID, password)
    sim.inject("echo_cut", times=1, length=200, status=200)
    credentials = {"auth_type": "login", "user_id": DEFAULT_USER_ID, "password": password}
    run = connector.run("check", config_for(sim, "token", credentials=credentials), debug=True)
    assert_no_piece_of(run, password, " ".join(password.split()))


@pytest.mark.parametrize("kind", ["app", "india"])
def test_users_secrets_at_any_depth_never_reach_a_record_or_a_line(connector, kind):
    agents = generate_agents(30, app_id=APP_ID, seed=8, nested_secrets=True)
    with simulator({}, agents=agents) as sim:
        run = connector.run("read", config_for(sim, kind), catalog("full_refresh", USERS), debug=True)
        assert run.returncode == 0, run.errors
        users = run.records_of(USERS)
        assert len(users) == 30

        def names(value, path=""):
            if isinstance(value, dict):
                for key, item in value.items():
                    yield f"{path}.{key}"
                    yield from names(item, f"{path}.{key}")
            elif isinstance(value, list):
                for item in value:
                    yield from names(item, f"{path}[]")

        found = {name for user in users for name in names(user)}
        assert not [n for n in found if any(w in n.lower() for w in ("password", "pin", "token", "secret"))], found
        secrets = {
            value
            for agent in agents
            for value in (
                agent["password"],
                agent["sip"]["password"],
                agent["settings"]["voicemail_pin"],
                agent["settings"]["api_token"],
                *(device["password"] for device in agent["devices"]),
            )
        }
        text = run.stdout + run.stderr
        assert not [s for s in secrets if str(s) in text]


# ----------------------------------------------------------------------------- the process ends with the sync


def test_the_process_ends_within_seconds_of_a_closed_stdout_and_sends_nothing_more(connector, calls_by_endpoint):
    with simulator(calls_by_endpoint, latency_ms=300) as sim:
        process = connector.start(
            "read", config_for(sim, "app", num_workers=2), catalog("incremental", *endpoints("app"))
        )
        for line in process.stdout:
            if '"type":"RECORD"' in line:
                break
        process.stdout.close()
        closed_at = time.monotonic()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the connector outlived its closed stdout by 5 s")
        time.sleep(1)
        late = [t for t in sim.stats.request_times if t > closed_at + 2]
        assert not late, f"{len(late)} requests sent after stdout closed"


def test_a_failed_sync_ends_at_once_not_after_its_workers_retry_waits(connector, calls_by_endpoint):
    """A failure while other workers sleep in retry waits (real backoff: 5 s and more) ends the process now."""
    path = ACCOUNT_ENDPOINTS["outgoing_missed_calls"]
    busy_day = {path: generate_calls(600, START_MS, START_MS + DAY_MS - 1, seed=9, endpoint=path)}
    with simulator(busy_day) as sim:
        sim.inject("503", times=3, endpoint=path, after=1)
        sim.inject("echo_cut", times=1, endpoint=path)  # code 400: a fault no retry helps
        connector.fast = False
        started = time.monotonic()
        run = connector.run(
            "read", config_for(sim, "app", num_workers=4), catalog("incremental", "outgoing_missed_calls")
        )
        took = time.monotonic() - started
        assert run.returncode != 0 and run.errors
        assert took < 4.5, f"the process lived {took:.1f} s: its workers' 5 s retry waits were waited out"
        time.sleep(1)
        assert sim.stats.last_request_time < started + took, "a request went out after the process ended"
        assert sim.stats.faults_served == 4, "the pages answered 503 were not retried before the end"


# ----------------------------------------------------------------------------- hints and statuses from the wild


@pytest.mark.parametrize("status", [408, 425, 502, 503, 504, 520, 521, 522, 523, 524])
def test_a_busy_or_cut_off_proxy_status_is_retried_and_nothing_is_lost(connector, sim, status):
    for path in endpoints("app").values():
        sim.inject("http", times=2, endpoint=path, status=status, body="html")
    run = read_all(connector, sim, "app")
    assert_every_call_once(run, sim, "app")


@pytest.mark.parametrize("retry_after", ["0", "-5", "soon", "99999999"])
def test_a_retry_after_that_is_no_hint_loses_nothing(connector, sim, retry_after):
    sim.inject("429", times=6, retry_after=retry_after)
    run = read_all(connector, sim, "app")
    assert_every_call_once(run, sim, "app")


# ----------------------------------------------------------------------------- messages a person can act on


@pytest.mark.parametrize(
    "state",
    [
        [{"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": []}}],
        {"outgoing_missed_calls": {"time": START_MS}},
    ],
    ids=["global-empty-shared-state", "an-object-not-a-list"],
)
def test_a_state_this_connector_never_writes_is_a_config_error_saying_reset_fixes_it(connector, sim, state):
    run = connector.run("read", config_for(sim), catalog("incremental"), state=state)
    assert run.returncode != 0
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    assert "state" in error["message"] and "reset" in error["message"].lower()


@pytest.mark.parametrize("kind", ["token", "login", "app"])
def test_a_gateway_404_says_no_endpoint_at_api_url_not_bad_credentials(connector, sim, kind):
    sim.inject("http", times=-1, status=404, body="json")
    status = connector.run("check", config_for(sim, kind)).connection_status
    assert status["status"] == "FAILED"
    assert "no endpoint" in status["message"] and "api_url" in status["message"]
    assert "password" not in status["message"].lower() and "token" not in status["message"].lower()


def test_an_answer_that_keeps_lacking_its_count_names_the_field(connector, sim):
    sim.inject("no_count", times=-1, endpoint=ACCOUNT_ENDPOINTS["incoming_missed_calls"])
    run = connector.run("read", config_for(sim, "app"), catalog("incremental", "incoming_missed_calls"))
    assert run.returncode != 0
    assert "'count'" in json.dumps(run.errors)


def test_an_app_id_saved_as_a_number_by_0_2_still_works(connector, sim):
    credentials = {"auth_type": "app", "app_id": APP_ID, "app_secret": APP_SECRET}
    assert connector.run("check", config_for(sim, "app", credentials=credentials)).connection_status == {
        "status": "SUCCEEDED"
    }
    run = read_all(connector, sim, "app", credentials=credentials)
    assert_every_call_once(run, sim, "app")


def test_every_call_of_every_platform_on_one_simulator(connector):
    """All four platforms' paths served at once, no fault: the baseline the tests above start from."""
    calls = calls_for(ALL_ENDPOINTS, 100, seed=3)
    with simulator(calls) as sim:
        for kind in KINDS:
            assert_every_call_once(read_all(connector, sim, kind), sim, kind)


def test_calls_at_the_last_millisecond_of_the_range(connector):
    path = ACCOUNT_ENDPOINTS["incoming_missed_calls"]
    calls = {path: generate_calls(30, END_MS - 1000, END_MS - 1, seed=2, endpoint=path)}
    with simulator(calls) as sim:
        assert_every_call_once(read_all(connector, sim, "app"), sim, "app")
