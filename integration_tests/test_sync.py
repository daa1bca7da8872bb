"""Syncs through the real command: every call exactly once, across syncs, crashes and window edges."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections import Counter
from datetime import datetime

import pytest

from integration_tests.conftest import (
    DAY_MS,
    END_MS,
    ENDPOINTS,
    START_MS,
    STREAM,
    TOKEN,
    catalog,
    config_for,
    login_credentials,
    state_messages,
)
from integration_tests.harness import reread_from
from integration_tests.telecmi_simulator import ANSWERED, Simulator, generate_calls, make_call
from source_telecmi.state import finished_ranges


def ids(records):
    return [r["cmiuid"] for r in records]


def assert_exactly(records, calls):
    counts = Counter(ids(records))
    assert not [k for k, n in counts.items() if n > 1], "a call was emitted twice"
    assert set(counts) == {c["cmiuid"] for c in calls}


def stream_state(state_message):
    return state_message["stream"]["stream_state"]


@pytest.mark.parametrize("workers", [1, 8])
def test_full_refresh_returns_every_call_exactly_once(connector, sim, stream, calls, workers):
    run = connector.run("read", config_for(sim, num_workers=workers), catalog("full_refresh", stream))
    assert run.returncode == 0, run.stderr
    assert_exactly(run.records, calls)
    assert all(isinstance(r["from"], str) and isinstance(r.get("to", ""), str) for r in run.records)
    assert max(b["limit"] for b in sim.stats.bodies if b["path"] != "/v2/user/login") == 10
    assert sim.stats.max_in_flight <= workers


def test_records_are_telecmis_records_with_warehouse_fields_added(connector, sim, stream, calls):
    run = connector.run("read", config_for(sim), catalog("full_refresh", stream))
    by_id = {c["cmiuid"]: c for c in calls}
    assert len(run.records) == len(calls)
    direction, status = stream.split("_")[:2]
    for record in run.records:
        original = dict(by_id[record["cmiuid"]])
        for phone in ("from", "to"):
            if phone in original:
                original[phone] = str(original[phone])
        started = datetime.fromisoformat(record["started_at"].replace("Z", "+00:00"))
        assert int(started.timestamp() * 1000) == original["time"]
        assert record == {**original, "direction": direction, "status": status, "started_at": record["started_at"]}


def test_two_incremental_syncs_lose_nothing_and_repeat_only_the_last_window(connector, sim, stream, endpoint, calls):
    """The second sync reads again the first sync's window holding the point after its newest call (lookback 0), a
    page or two: from its start, so that its audit row covers the window whole."""
    first = connector.run("read", config_for(sim), catalog("incremental", stream))
    assert first.returncode == 0, first.stderr
    assert_exactly(first.records, calls)
    resume = reread_from(stream_state(state_messages(first)[0]))
    again = [c for c in calls if c["time"] >= resume]
    assert 1 <= len(again) <= 20, f"{len(again)} calls read again: more than the last window's page or two"
    new = generate_calls(40, END_MS, END_MS + DAY_MS // 2, seed=99, endpoint=endpoint)
    # Calls made after the first sync, and one made before it ended but recorded late.
    late = make_call(END_MS - 5, endpoint=endpoint)
    sim.add_calls(endpoint, new + [late])
    second = connector.run(
        "read", config_for(sim, end_date="2026-01-02T00:00:00Z"), catalog("incremental", stream), state_messages(first)
    )
    assert second.returncode == 0, second.stderr
    assert_exactly(second.records, again + new + [late])


def test_lookback_rereads_recent_calls_to_catch_new_notes(connector, sim, stream, calls):
    first = connector.run("read", config_for(sim), catalog("incremental", stream))
    newest = max(c["time"] for c in calls)
    second = connector.run(
        "read", config_for(sim, lookback_window_days=2), catalog("incremental", stream), state_messages(first)
    )
    resume = reread_from(stream_state(state_messages(first)[0]), 2 * DAY_MS)
    assert newest - 2 * DAY_MS - DAY_MS <= resume <= newest - 2 * DAY_MS + 1, "never more than a day older"
    expected = [c for c in calls if c["time"] >= resume]
    assert_exactly(second.records, expected)


def test_lookback_zero_rereads_only_the_last_window(connector, sim, stream, calls):
    """Lookback 0: the first sync's window holding the point after its newest call is read again, a page or two."""
    first = connector.run("read", config_for(sim), catalog("incremental", stream))
    assert_exactly(first.records, calls)
    second = connector.run("read", config_for(sim), catalog("incremental", stream), state_messages(first))
    assert second.returncode == 0
    resume = reread_from(stream_state(state_messages(first)[0]))
    again = [c for c in calls if c["time"] >= resume]
    assert 1 <= len(again) <= 20 and resume > max(c["time"] for c in calls) - DAY_MS
    assert_exactly(second.records, again)
    assert second.states, "every sync checkpoints"


def test_a_sequential_state_resumes_after_its_cursor(connector, sim, calls):
    # The state a one-stream-at-a-time version would have written: {"time": newest call read}.
    cursor = sorted(c["time"] for c in calls)[300]
    legacy = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": STREAM}, "stream_state": {"time": cursor}}}]
    run = connector.run("read", config_for(sim), catalog(), legacy)
    assert_exactly(run.records, [c for c in calls if c["time"] > cursor])


@pytest.mark.parametrize("workers", [1, 6])
def test_a_sync_killed_mid_way_resumes_with_nothing_lost(connector, stream, endpoint, workers):
    many = generate_calls(3000, START_MS, END_MS - 1, seed=3, endpoint=endpoint)
    with Simulator(calls={endpoint: many}, tokens=[TOKEN], latency_ms=15) as sim:
        config = config_for(sim, num_workers=workers)
        emitted, states = connector.killed_after(3, config, catalog("incremental", stream))
        assert len(states) == 3 and len(emitted) < len(many), "the sync should be killed mid-way"
        resumed = connector.run("read", config, catalog("incremental", stream), [states[-1]])
        assert resumed.returncode == 0, resumed.stderr
    # Nothing lost: every call is in one run or the other.
    assert {c["cmiuid"] for c in many} == set(ids(emitted)) | set(ids(resumed.records))
    # The resumed sync re-reads only what the state had not finished (from the start of the window holding the
    # point after its newest call), and nothing twice itself.
    finished = finished_ranges(stream_state(states[-1]))
    resume = reread_from(stream_state(states[-1]))
    for record in resumed.records:
        assert not any(a <= record["time"] <= b and record["time"] < resume for a, b, _ in finished)
    assert len(set(ids(resumed.records))) == len(resumed.records)


@pytest.mark.parametrize("edges", ["inclusive", "exclusive"])
def test_calls_exactly_on_window_edges_are_read_once(connector, stream, endpoint, edges):
    # Calls on every millisecond around day boundaries, where windows meet.
    edge_calls = []
    for day in range(0, 31):
        boundary = START_MS + day * DAY_MS
        edge_calls += [
            make_call(boundary + delta, endpoint=endpoint)
            for delta in (-1, 0, 1)
            if START_MS <= boundary + delta < END_MS
        ]
    edge_calls += [make_call(START_MS, endpoint=endpoint), make_call(END_MS, endpoint=endpoint)]
    with Simulator(calls={endpoint: edge_calls}, tokens=[TOKEN], edges=edges) as sim:
        run = connector.run("read", config_for(sim), catalog("incremental", stream))
        assert run.returncode == 0, run.stderr
        windows = {(b["from"], b["to"]) for b in sim.stats.bodies if b.get("page") == 1}
    assert_exactly(run.records, edge_calls)
    assert len(windows) > 1, "the range was read in several windows"


@pytest.mark.parametrize("workers", [1, 8])
def test_a_call_arriving_mid_window_shifts_pages_but_nothing_is_skipped(connector, stream, endpoint, workers):
    busy = generate_calls(300, START_MS, START_MS + DAY_MS // 4, seed=5, endpoint=endpoint)
    late = [make_call(START_MS + DAY_MS // 8 + i, endpoint=endpoint) for i in range(3)]
    with Simulator(calls={endpoint: busy}, tokens=[TOKEN], latency_ms=5) as sim:
        sim.insert_after(4, endpoint, late)
        run = connector.run("read", config_for(sim, num_workers=workers), catalog("incremental", stream))
    assert run.returncode == 0, run.stderr
    assert_exactly(run.records, busy + late)
    assert any("reading the window again" in log for log in run.logs("WARN"))


@pytest.mark.parametrize("workers", [1, 8])
def test_login_renews_an_expired_token_once_without_losing_or_repeating(
    connector, sim, stream, endpoint, calls, workers
):
    sim.inject("expire_token", endpoint=endpoint)
    sim.set_latency(5)
    config = config_for(sim, credentials=login_credentials(), num_workers=workers)
    run = connector.run("read", config, catalog("incremental", stream))
    assert run.returncode == 0, run.stderr
    assert_exactly(run.records, calls)
    assert sim.stats.logins == 2


def test_progress_estimates_and_stream_statuses(connector, sim, stream, calls):
    run = connector.run("read", config_for(sim), catalog("incremental", stream))
    estimates = [t["estimate"] for t in run.traces("ESTIMATE")]
    assert estimates and estimates[-1]["name"] == stream and estimates[-1]["type"] == "STREAM"
    assert estimates[-1]["row_estimate"] == len(calls)
    statuses = [t["stream_status"]["status"] for t in run.traces("STREAM_STATUS")]
    assert statuses[0] == "STARTED" and statuses[-1] == "COMPLETE"


def test_all_streams_in_one_sync_each_exactly_once(connector, sim, calls_by_endpoint):
    run = connector.run("read", config_for(sim, num_workers=8), catalog("incremental", *ENDPOINTS))
    assert run.returncode == 0, run.stderr
    for stream, endpoint in ENDPOINTS.items():
        records = [m["record"]["data"] for m in run.of("RECORD") if m["record"]["stream"] == stream]
        assert_exactly(records, calls_by_endpoint[endpoint])
        assert [s for s in run.states if s["stream"]["stream_descriptor"]["name"] == stream]
    assert sim.stats.max_in_flight <= 8


def test_a_stream_telecmi_refuses_is_skipped_and_the_others_are_read(connector, sim, calls_by_endpoint):
    sim.refuse_endpoint(ANSWERED, code=403, msg="Call recordings are not enabled for this user")
    run = connector.run("read", config_for(sim), catalog("incremental", *ENDPOINTS))
    assert run.returncode == 0, run.stdout[-2000:]
    assert not run.errors
    warnings = [log for log in run.logs("WARN") if "incoming_answered_calls" in log]
    assert warnings and "Call recordings are not enabled for this user" in warnings[0]
    for stream, endpoint in ENDPOINTS.items():
        records = [m["record"]["data"] for m in run.of("RECORD") if m["record"]["stream"] == stream]
        assert_exactly(records, [] if endpoint == ANSWERED else calls_by_endpoint[endpoint])


def test_a_429_pauses_every_worker_not_only_the_one_that_got_it(connector, stream, endpoint):
    many = generate_calls(4000, START_MS, END_MS - 1, seed=11, endpoint=endpoint)
    with Simulator(calls={endpoint: many}, tokens=[TOKEN], latency_ms=5) as sim:
        connector.env["SOURCE_TELECMI_BACKOFF_SCALE"] = "1"
        process = connector.start("read", config_for(sim, num_workers=8), catalog("incremental", stream))
        # Drain stdout as a destination would, so the connector never waits on its own output.
        output = concurrent.futures.ThreadPoolExecutor(1).submit(process.stdout.readlines)
        deadline = time.monotonic() + 30
        while sim.stats.requests < 40 and time.monotonic() < deadline:
            time.sleep(0.005)
        sim.inject("429", endpoint=endpoint, retry_after=2)
        while sim.stats.faults_served == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.3)  # requests already on their way when the 429 came land now
        before = sim.stats.requests
        time.sleep(1.0)
        during_pause = sim.stats.requests - before
        assert process.wait(timeout=60) == 0
        records = [json.loads(line) for line in output.result()]
        assert sim.stats.faults_served == 1
    # For the 2 s the 429 asked for, no worker sends anything (unpaused, the rest of the sync would).
    assert during_pause == 0
    got = [m["record"]["data"] for m in records if m["type"] == "RECORD"]
    assert_exactly(got, many)
