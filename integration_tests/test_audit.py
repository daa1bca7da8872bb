"""`sync_audit` through the real command against the simulator: the engine's ledger of every window it read.

One row per window each windowed stream of the catalog read to its end (the four call lists, the
voicemails), in full refresh and incremental syncs, for every kind of credentials: the windows tile
the range read, each row's `records_emitted` is what the RECORD messages of the same sync hold for
that window, `telecmi_count` what the simulator holds there, and a count that is really wrong is
`count_wrong` with its shortfall. The audit comes after the streams it audits, costs no request,
is absent when not selected, is never emitted by a killed sync and covers only the windows a failing
sync printed. Every run's stdout lines are validated as AirbyteMessages and every record against
its discovered schema (harness).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from integration_tests.conftest import DAY_MS, END_MS, START_MS, config_for
from integration_tests.harness import (
    catalog_of,
    endpoints,
    last_states,
    merged_slices,
    reread_from,
    simulator,
)
from integration_tests.telecmi_simulator import (
    GLOBAL_VOICEMAIL,
    INDIA_VOICEMAIL,
    generate_calls,
    generate_voicemails,
    make_call,
    make_voicemail,
)

AUDIT, VOICEMAILS = "sync_audit", "voicemails"
KINDS = ["token", "app", "india"]
VOICEMAIL_PATH = {"app": GLOBAL_VOICEMAIL, "india": INDIA_VOICEMAIL}
END2, END2_MS = "2026-01-02T00:00:00Z", END_MS + DAY_MS
ROW_FIELDS = {
    "sync_id",
    "synced_at",
    "stream",
    "window_start",
    "window_end",
    "window_start_at",
    "window_end_at",
    "telecmi_count",
    "calls_read",
    "records_emitted",
    "requests",
    "verdict",
    "shortfall",
}


def iso(instant: int) -> str:
    seconds, millis = divmod(instant, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def ms_of(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


def resumed_ranges(state, start=START_MS, end=END_MS):
    """What a sync resuming from `state` reads (lookback 0): every gap of the state, and all after its newest record
    from the start of the window (of the state's audit trail) holding the point after it."""
    finished = merged_slices(state)
    if not finished:
        return [(start, end)]
    cutoff = reread_from(state) - 1
    ranges, position = [], start
    for a, b, _ in finished:
        if a > cutoff or position > end:
            break
        if a > position:
            ranges.append((position, min(a - 1, end)))
        position = max(position, min(b, cutoff) + 1)
    if position <= end:
        ranges.append((position, end))
    return ranges


def windowed(kind: str) -> dict[str, str]:
    """The windowed streams of a kind of config and their paths: the call lists, and the voicemails with app credentials."""
    paths = dict(endpoints(kind))
    if kind in VOICEMAIL_PATH:
        paths[VOICEMAILS] = VOICEMAIL_PATH[kind]
    return paths


def key_of(record: dict) -> str:
    return record["cmiuid"] if "cmiuid" in record else record["voicename"]


def statuses(run, stream):
    return [
        t["stream_status"]["status"]
        for t in run.traces("STREAM_STATUS")
        if t["stream_status"]["stream_descriptor"]["name"] == stream
    ]


def data_for(kind: str, n: int = 120, seed: int = 21, start_ms: int = START_MS, end_ms: int = END_MS - 1):
    """`n` records on every windowed path of `kind`, with a busy millisecond of 25 on each."""
    paths = windowed(kind)
    held = {}
    for i, (stream, path) in enumerate(paths.items()):
        busy = start_ms + (i + 2) * DAY_MS + 12_345
        if stream == VOICEMAILS:
            india = kind == "india"
            records = generate_voicemails(n, start_ms, end_ms, seed=seed + i, india=india)
            records += [make_voicemail(busy, india=india) for _ in range(25)]
        else:
            records = generate_calls(n, start_ms, end_ms, seed=seed + i, endpoint=path)
            records += [make_call(busy, endpoint=path) for _ in range(25)]
        held[path] = records
    return held


def spans(windows):
    """Windows (first, last) merged where they meet: the ranges they cover."""
    merged: list[list[int]] = []
    for first, last in sorted(windows):
        if merged and first == merged[-1][1] + 1:
            merged[-1][1] = last
        else:
            merged.append([first, last])
    return [tuple(span) for span in merged]


def assert_audit(run, sim, kind, ranges, true_counts=True, unfinished=()):
    """The audit of `run`: a row per window of each stream of `ranges` (stream -> the ranges it read), none other.

    The windows of a stream tile its ranges; each row matches the RECORD messages of the same sync;
    with `true_counts`, TeleCMI's count (the simulator's store) is what each window holds. Streams
    `unfinished` (a failing sync's) may have emitted records of windows they did not finish.
    """
    rows = run.records_of(AUDIT)
    assert all(set(row) == ROW_FIELDS for row in rows)
    (sync_id,) = {row["sync_id"] for row in rows}
    assert str(uuid.UUID(sync_id)) == sync_id
    (synced_at,) = {row["synced_at"] for row in rows}
    assert ms_of(synced_at) <= min(m["record"]["emitted_at"] for m in run.of("RECORD")), "synced_at is the start"
    assert len({(r["sync_id"], r["stream"], r["window_start"]) for r in rows}) == len(rows), "primary key repeated"
    assert {row["stream"] for row in rows} == set(ranges), "audited streams are the windowed ones of the catalog"
    paths = windowed(kind)
    for stream, read in ranges.items():
        mine = sorted((row for row in rows if row["stream"] == stream), key=lambda row: row["window_start"])
        assert spans([(r["window_start"], r["window_end"]) for r in mine]) == spans(read), f"{stream}: no tiling"
        assert all(a["window_end"] < b["window_start"] for a, b in zip(mine, mine[1:], strict=False)), "overlap"
        emitted = {key_of(r): r["time"] for r in run.records_of(stream)}
        for row in mine:
            first, last = row["window_start"], row["window_end"]
            assert first <= last and row["window_start_at"] == iso(first) and row["window_end_at"] == iso(last)
            held = sum(1 for at in emitted.values() if first <= at <= last)
            assert row["records_emitted"] == held, f"{stream} {iso(first)}: audit says {row['records_emitted']}"
            # What was observed: TeleCMI's count for the window's requests (1 ms wider each side), and the
            # distinct calls they returned; the window's own calls are among those.
            assert row["records_emitted"] <= row["calls_read"]
            assert row["verdict"] in ("complete", "count_wrong")
            assert (row["verdict"] == "complete") == (row["calls_read"] >= row["telecmi_count"])
            assert row["shortfall"] == max(0, row["telecmi_count"] - row["calls_read"])
            assert row["requests"] >= 1
            if true_counts:
                assert row["verdict"] == "complete"
                asked = len(sim.records(paths[stream], first - 1, last + 1))
                assert row["telecmi_count"] == row["calls_read"] == asked
        if stream not in unfinished:
            assert sum(r["records_emitted"] for r in mine) == len(emitted), f"{stream}: records outside every window"
            assert len(run.records_of(stream)) == len(emitted), f"{stream}: a record emitted twice"
        if stream not in unfinished and all(r["verdict"] == "complete" for r in mine):
            line = f"Stream {stream}: {len(mine)} windows, {len(emitted)} records, every window complete"
            assert line in run.logs("INFO"), f"no summary line for {stream}"
    audited = [
        i
        for i, m in enumerate(run.messages)
        if (m["type"] == "RECORD" and m["record"]["stream"] in ranges)
        or (m["type"] == "STATE" and m["state"]["stream"]["stream_descriptor"]["name"] in ranges)
    ]
    first_row = next(i for i, m in enumerate(run.messages) if m["type"] == "RECORD" and m["record"]["stream"] == AUDIT)
    assert max(audited) < first_row, "an audit row came before the records or states it audits"
    return rows


def whole(streams, first=START_MS, last=END_MS):
    return {stream: [(first, last)] for stream in streams}


# ----------------------------------------------------------------------------- a row per window


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["full_refresh", "incremental"])
def test_the_audit_has_a_row_per_window_read_matching_the_records_of_the_same_sync(connector, kind, mode):
    data = data_for(kind)
    streams = list(windowed(kind))
    others = ["daily_call_totals", "users"] if kind != "token" else []  # not windowed: never audited
    with simulator(data) as sim:
        cfg = config_for(sim, kind, num_workers=2)
        first = connector.run("read", cfg, catalog_of(kind, mode, *streams, *others, AUDIT)).ok()
        rows = assert_audit(first, sim, kind, whole(streams))
        assert len(rows) > 2 * len(streams), "each stream was read in several windows"
        assert statuses(first, AUDIT)[-1] == "COMPLETE"
        if mode == "full_refresh":
            return
        (state,) = [
            s["stream"]["stream_state"] for s in first.states if s["stream"]["stream_descriptor"]["name"] == AUDIT
        ]
        assert state == {"synced_at": rows[0]["synced_at"]}
        # A later sync reads what came since (lookback 0): its own audit, of that range only.
        for path in data:
            if path in VOICEMAIL_PATH.values():
                sim.add_calls(path, generate_voicemails(15, END_MS + 1, END2_MS - 1, seed=5, india=kind == "india"))
            else:
                sim.add_calls(path, generate_calls(15, END_MS + 1, END2_MS - 1, seed=5, endpoint=path))
        second = connector.run(
            "read", {**cfg, "end_date": END2}, catalog_of(kind, mode, *streams, *others, AUDIT), last_states(first)
        ).ok()
        # Read again from the start of the first sync's window holding the point after its newest call: a window of
        # the first sync is never read again in part.
        states = {s["stream"]["stream_descriptor"]["name"]: s["stream"]["stream_state"] for s in last_states(first)}
        resume = {s: reread_from(states[s]) for s in streams}
        again = assert_audit(second, sim, kind, {s: [(resume[s], END2_MS)] for s in streams})
        assert again[0]["sync_id"] != rows[0]["sync_id"]
        for stream in streams:
            newest = max(r["time"] for r in first.records_of(stream))
            starts = {r["window_start"] for r in rows if r["stream"] == stream}
            assert resume[stream] in starts and newest - DAY_MS <= resume[stream] <= newest + 1, stream


def test_the_audit_of_a_sync_selecting_some_streams_covers_those_only(connector):
    streams = ["incoming_missed_calls", VOICEMAILS]
    with simulator(data_for("app")) as sim:
        run = connector.run("read", config_for(sim, "app"), catalog_of("app", "incremental", *streams, AUDIT)).ok()
        assert_audit(run, sim, "app", whole(streams))


# ----------------------------------------------------------------------------- faults and wrong counts


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("token", "shuffle_ties"),
        ("app", "shuffle_ties"),
        ("app", "short_page"),
        ("india", "short_page"),
        ("app", "offset_cap"),
        ("india", "offset_cap"),
    ],
)
def test_the_audit_matches_the_records_whatever_the_paging_does(connector, kind, fault):
    streams = list(windowed(kind))
    with simulator(data_for(kind, n=200), offset_cap=60 if fault == "offset_cap" else None) as sim:
        if fault == "shuffle_ties":
            sim.inject("shuffle_ties", times=-1)
        elif fault == "short_page":
            sim.inject("short_page", times=6, after=3, drop=3)
        run = connector.run(
            "read", config_for(sim, kind, num_workers=2), catalog_of(kind, "incremental", *streams, AUDIT)
        )
        run.ok()
        if fault != "offset_cap":
            assert sim.stats.faults_served >= 6
        assert_audit(run, sim, kind, whole(streams))


@pytest.mark.parametrize(("kind", "wrong"), [("app", "incoming_missed_calls"), ("india", VOICEMAILS)])
def test_a_count_telecmi_keeps_inflating_is_audited_count_wrong_with_its_shortfall(connector, kind, wrong):
    """Every answer of one list counts 2 more records than it serves: each of its windows is count_wrong by 2."""
    right = "outgoing_missed_calls"
    paths = windowed(kind)
    data = data_for(kind, n=100)
    data = {paths[wrong]: data[paths[wrong]], paths[right]: data[paths[right]]}
    with simulator(data) as sim:
        sim.inject("inflate_count", times=-1, endpoint=paths[wrong], extra=2)
        run = connector.run(
            "read", config_for(sim, kind, num_workers=2), catalog_of(kind, "incremental", wrong, right, AUDIT)
        )
        run.ok()
        rows = assert_audit(run, sim, kind, whole([wrong, right]), true_counts=False)
        bad = [row for row in rows if row["stream"] == wrong]
        for row in bad:
            held = len(sim.records(paths[wrong], row["window_start"], row["window_end"]))
            asked = len(sim.records(paths[wrong], row["window_start"] - 1, row["window_end"] + 1))
            assert (row["verdict"], row["shortfall"], row["records_emitted"]) == ("count_wrong", 2, held)
            assert (row["telecmi_count"], row["calls_read"]) == (asked + 2, asked)  # as TeleCMI answered it
        for row in rows:
            if row["stream"] == right:
                assert row["verdict"] == "complete"
                asked = len(sim.records(paths[right], row["window_start"] - 1, row["window_end"] + 1))
                assert row["telecmi_count"] == row["calls_read"] == asked
    assert len({key_of(r) for r in run.records_of(wrong)}) == len(data[paths[wrong]]), "a record was lost"
    (line,) = [log for log in run.logs("INFO") if log.startswith(f"Stream {wrong}: {len(bad)} windows")]
    assert f"{len(bad)} windows where TeleCMI's count is wrong" in line and "short by 2" in line
    assert [log for log in run.logs("WARN") if wrong in log and "its count is wrong" in log]


# ----------------------------------------------------------------------------- what the audit costs


@pytest.mark.parametrize("kind", ["token", "app"])
def test_the_audit_costs_no_request_and_is_absent_when_not_selected(connector, kind):
    streams = list(windowed(kind))
    requests = []
    for selected in ([], [AUDIT]):
        with simulator(data_for(kind)) as sim:
            run = connector.run(
                "read", config_for(sim, kind, num_workers=2), catalog_of(kind, "incremental", *streams, *selected)
            )
            run.ok()
            requests.append(dict(sim.stats.by_path))
            if selected:
                rows = assert_audit(run, sim, kind, whole(streams))
                for stream, path in windowed(kind).items():  # every request of a stream belongs to one of its windows
                    assert sum(r["requests"] for r in rows if r["stream"] == stream) == sim.stats.by_path[path]
            else:
                assert not run.records_of(AUDIT) and not statuses(run, AUDIT)
                assert not [s for s in run.states if s["stream"]["stream_descriptor"]["name"] == AUDIT]
    assert requests[0] == requests[1], "selecting sync_audit changed the requests"


def test_a_catalog_of_the_audit_alone_sends_no_request_and_audits_nothing(connector):
    with simulator(data_for("app")) as sim:
        run = connector.run("read", config_for(sim, "app"), catalog_of("app", "incremental", AUDIT)).ok()
        assert sim.stats.requests == 0
    assert not run.records_of(AUDIT) and statuses(run, AUDIT)[-1] == "COMPLETE"


def test_the_requests_of_a_window_include_its_retries(connector):
    stream = "outgoing_missed_calls"
    path = endpoints("token")[stream]
    with simulator(data_for("token")) as sim:
        sim.inject("503", times=2, endpoint=path, after=2)
        run = connector.run(
            "read", config_for(sim, "token", num_workers=2), catalog_of("token", "incremental", stream, AUDIT)
        )
        rows = assert_audit(run.ok(), sim, "token", whole([stream]))
        assert sim.stats.faults_served == 2
        assert sum(row["requests"] for row in rows) == sim.stats.by_path[path]


# ----------------------------------------------------------------------------- crashes and failures


def test_a_killed_sync_emits_no_audit_and_the_resumed_sync_audits_what_it_read(connector):
    stream = VOICEMAILS
    held = generate_voicemails(500, START_MS, END_MS - 1, seed=8)
    with simulator({GLOBAL_VOICEMAIL: held}, latency_ms=15) as sim:
        cfg = config_for(sim, "app", num_workers=2)
        emitted, states = connector.killed_after(2, cfg, catalog_of("app", "incremental", stream, AUDIT))
        assert len(states) == 2 and len(emitted) < len(held), "the sync should be killed mid-way"
        assert not [record for record in emitted if "sync_id" in record], "the killed sync emitted audit rows"
        resumed = connector.run("read", cfg, catalog_of("app", "incremental", stream, AUDIT), [states[-1]]).ok()
        state = states[-1]["stream"]["stream_state"]
        read = resumed_ranges(state)
        assert_audit(resumed, sim, "app", {stream: read})
    assert {v["voicename"] for v in held} == {r["voicename"] for r in emitted} | {
        r["voicename"] for r in resumed.records_of(stream)
    }


def test_a_failing_sync_audits_only_the_windows_whose_records_and_state_it_printed(connector):
    kind = "app"
    paths = windowed(kind)
    order = list(paths)  # read one at a time: incoming answered, incoming missed, outgoing answered, ...
    failing = "outgoing_answered_calls"
    data = data_for(kind, n=300)
    with simulator(data) as sim:
        sim.inject("echo_cut", times=-1, endpoint=paths[failing], after=6)  # a 400 no retry helps
        run = connector.run(
            "read", config_for(sim, kind, num_workers=2), catalog_of(kind, "incremental", *order, AUDIT)
        )
        assert run.returncode != 0 and run.errors
        rows = run.records_of(AUDIT)
        first_row = next(
            i for i, m in enumerate(run.messages) if m["type"] == "RECORD" and m["record"]["stream"] == AUDIT
        )
        printed = [m["state"] for m in run.messages[:first_row] if m["type"] == "STATE"]
        done_before = {"incoming_answered_calls", "incoming_missed_calls"}
        assert {row["stream"] for row in rows} == done_before | {failing}, "audited streams the sync never read"
        last = [s for s in printed if s["stream"]["stream_descriptor"]["name"] == failing][-1]
        finished = [(max(a, START_MS), b) for a, b, _ in merged_slices(last["stream"]["stream_state"]) if b >= START_MS]
        ranges = {**whole(done_before), failing: finished}
        assert_audit(run, sim, kind, ranges, unfinished={failing})
        assert sum(r["records_emitted"] for r in rows if r["stream"] == failing) < len(sim.records(paths[failing]))
