"""More of the account through the real command against the simulator: voicemails, daily call totals, balance.

`voicemails` is read like the call lists (windows, exactly once, across edges, ties, paging faults,
two syncs, a crash); `daily_call_totals` is TeleCMI's analysis once per UTC day, equal to what the
simulator's four call stores hold that day, the days in parallel, a later sync re-reading only the
lookback days; `account_balance` is one typed row per sync. A lasting refusal of one of them skips
that stream only. Every run's stdout lines are validated as AirbyteMessages and every record
against its discovered schema (harness).
"""

from __future__ import annotations

import time
from collections import Counter
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
    ANALYSIS_PATH,
    BALANCE_PATH,
    GLOBAL_VOICEMAIL,
    INDIA_ANALYSIS_PATH,
    INDIA_BALANCE_PATH,
    INDIA_VOICEMAIL,
    generate_calls,
    generate_voicemails,
    make_call,
    make_voicemail,
)

APP_KINDS = ["app", "india"]
VOICEMAILS, TOTALS, BALANCE, AUDIT = "voicemails", "daily_call_totals", "account_balance", "sync_audit"
ACCOUNT_LISTS = (VOICEMAILS, TOTALS, BALANCE)
VOICEMAIL_PATH = {"app": GLOBAL_VOICEMAIL, "india": INDIA_VOICEMAIL}
ANALYSIS = {"app": ANALYSIS_PATH, "india": INDIA_ANALYSIS_PATH}
BALANCE_PATHS = {"app": BALANCE_PATH, "india": INDIA_BALANCE_PATH}
PATH_OF = {
    kind: {VOICEMAILS: VOICEMAIL_PATH[kind], TOTALS: ANALYSIS[kind], BALANCE: BALANCE_PATHS[kind]} for kind in APP_KINDS
}
HOUR_MS = 3_600_000


def iso(instant: int) -> str:
    """Epoch ms as ISO-8601 UTC to the millisecond, computed here (not with the connector's helper)."""
    seconds, millis = divmod(instant, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def ms_of(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def day_ms(day: int) -> int:
    """The first millisecond of December `day` (1-based; 32 is 2026-01-01)."""
    return START_MS + (day - 1) * DAY_MS


def statuses(run, stream):
    return [
        t["stream_status"]["status"]
        for t in run.traces("STREAM_STATUS")
        if t["stream_status"]["stream_descriptor"]["name"] == stream
    ]


def states_of(run, stream):
    return [s["stream"]["stream_state"] for s in run.states if s["stream"]["stream_descriptor"]["name"] == stream]


# ----------------------------------------------------------------------------- discover


@pytest.mark.parametrize("kind", ["token", "login", "app", "india"])
def test_discover_lists_the_account_lists_only_with_app_credentials_and_the_audit_always(connector, kind):
    with simulator({}) as sim:
        streams = {s["name"]: s for s in connector.run("discover", config_for(sim, kind)).ok().streams}
    audit = streams[AUDIT]
    assert audit["source_defined_primary_key"] == [["sync_id"], ["stream"], ["window_start"]]
    assert audit["default_cursor_field"] == ["synced_at"] and audit["source_defined_cursor"]
    if kind in ("token", "login"):
        assert not set(ACCOUNT_LISTS) & set(streams), sorted(streams)
        return
    assert set(ACCOUNT_LISTS) <= set(streams), sorted(streams)
    voicemails, totals, balance = (streams[name] for name in ACCOUNT_LISTS)
    assert sorted(voicemails["supported_sync_modes"]) == ["full_refresh", "incremental"]
    assert voicemails["source_defined_primary_key"] == [["voicename"]]
    assert voicemails["default_cursor_field"] == ["time"] and voicemails["source_defined_cursor"]
    assert {"voicename", "time", "from", "started_at"} <= set(voicemails["json_schema"]["properties"])
    assert sorted(totals["supported_sync_modes"]) == ["full_refresh", "incremental"]
    assert totals["source_defined_primary_key"] == [["day"]] and totals["default_cursor_field"] == ["day"]
    assert set(totals["json_schema"]["properties"]) == {"day", "day_start", "total", "answered", "missed", "read_at"}
    assert balance["supported_sync_modes"] == ["full_refresh"]
    assert not balance.get("source_defined_primary_key")
    assert set(balance["json_schema"]["properties"]) == {"balance", "sms", "expire", "expires_at", "read_at"}


# ----------------------------------------------------------------------------- voicemails


def voicemails_at_edges(kind, n=200, seed=1):
    """Voicemails in December, plus one on each side of every day boundary and two busy milliseconds.

    The busy milliseconds (more than a page each) sit on the two sides of the first window's end.
    The range is start_date to end_date, both included: the ones a millisecond outside are not read.
    """
    india = kind == "india"
    held = generate_voicemails(n, START_MS, END_MS - 1, seed=seed, india=india)
    for day in range(1, 33):
        held += [make_voicemail(day_ms(day) + delta, india=india) for delta in (-1, 0, 1)]
    for busy in (day_ms(2) - 1, day_ms(2)):
        held += [make_voicemail(busy, india=india) for _ in range(12)]
    return held


def in_range(held, first=START_MS, last=END_MS):
    return [v for v in held if first <= v["time"] <= last]


def assert_voicemails_exactly(records, expected):
    """Every voicemail once, as TeleCMI sent it but for `from` as a string and `started_at` added."""
    got = Counter(r["voicename"] for r in records)
    assert not [name for name, n in got.items() if n > 1], "a voicemail was emitted twice"
    assert set(got) == {v["voicename"] for v in expected}, f"{len(got)} of {len(expected)} voicemails emitted"
    sent = {v["voicename"]: v for v in expected}
    for record in records:
        original = sent[record["voicename"]]
        assert record == {**original, "from": str(original["from"]), "started_at": iso(original["time"])}


@pytest.mark.parametrize("kind", APP_KINDS)
@pytest.mark.parametrize(
    ("mode", "edges"), [("full_refresh", "inclusive"), ("incremental", "inclusive"), ("incremental", "exclusive")]
)
def test_voicemails_each_exactly_once_across_window_edges_and_ties(connector, kind, mode, edges):
    held = voicemails_at_edges(kind)
    path = VOICEMAIL_PATH[kind]
    with simulator({path: held}, edges=edges) as sim:
        run = connector.run("read", config_for(sim, kind, num_workers=2), catalog_of(kind, mode, VOICEMAILS)).ok()
        bodies = sim.stats.bodies_for(path)
    assert_voicemails_exactly(run.records_of(VOICEMAILS), in_range(held))
    assert {b["limit"] for b in bodies} == {10}, "voicemails come in pages of 10"
    assert all(isinstance(b["start_date"], int) and isinstance(b["end_date"], int) for b in bodies)
    windows = {(b["start_date"], b["end_date"]) for b in bodies if b["page"] == 1}
    assert len(windows) > 2, "the range was read in several windows"
    assert statuses(run, VOICEMAILS)[-1] == "COMPLETE"
    if mode == "incremental":
        (finished,) = merged_slices(states_of(run, VOICEMAILS)[-1])
        assert finished[0] <= START_MS and finished[1] == END_MS and finished[2] == END_MS
    else:
        assert not [s for s in states_of(run, VOICEMAILS) if s.get("slices")]


def busy_days(kind, seed=4):
    """Two busy days: 300 voicemails, a millisecond with 25 of them."""
    india = kind == "india"
    held = generate_voicemails(300, day_ms(3), day_ms(5) - 1, seed=seed, india=india)
    return held + [make_voicemail(day_ms(4) + 777, india=india) for _ in range(25)]


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("app", "shuffle_ties"),
        ("india", "shuffle_ties"),
        ("app", "short_page"),
        ("india", "page_cap"),
        ("app", "offset_cap"),
        ("india", "offset_cap"),
    ],
)
def test_voicemails_each_exactly_once_whatever_the_paging_does(connector, kind, fault):
    held = busy_days(kind)
    path = VOICEMAIL_PATH[kind]
    options = {"page_cap": {"page_cap": 4}, "offset_cap": {"offset_cap": 50}}.get(fault, {})
    with simulator({path: held}, **options) as sim:
        if fault == "shuffle_ties":
            sim.inject("shuffle_ties", times=-1, endpoint=path)
        elif fault == "short_page":
            sim.inject("short_page", times=4, endpoint=path, after=2, drop=3)
        run = connector.run("read", config_for(sim, kind, num_workers=2), catalog_of(kind, "incremental", VOICEMAILS))
        run.ok()
        if fault in ("shuffle_ties", "short_page"):
            assert sim.stats.faults_served >= 4
    assert_voicemails_exactly(run.records_of(VOICEMAILS), held)
    assert not [log for log in run.logs("WARN") if "count is wrong" in log]
    if fault == "page_cap":
        assert [log for log in run.logs("INFO") if "serves pages of 4" in log]


@pytest.mark.parametrize("kind", APP_KINDS)
def test_two_incremental_voicemail_syncs_lose_nothing_and_repeat_only_the_lookback_from_a_window_start(connector, kind):
    india = kind == "india"
    path = VOICEMAIL_PATH[kind]
    held = generate_voicemails(150, START_MS, END_MS - 1, seed=6, india=india)
    with simulator({path: held}) as sim:
        # The lookback is the connection's setting, the same in both syncs: the first sync's last windows are cut
        # so that the second reads again from a window start at most a day before its lookback point.
        first = connector.run(
            "read", config_for(sim, kind, lookback_window_days=1), catalog_of(kind, "incremental", VOICEMAILS)
        ).ok()
        assert_voicemails_exactly(first.records_of(VOICEMAILS), held)
        newest = max(v["time"] for v in held)
        # Left after the first sync, or while it ran but recorded late (between its newest and its end).
        new = generate_voicemails(20, END_MS + 1, END_MS + DAY_MS // 2, seed=7, india=india)
        late = [make_voicemail(newest + 1, india=india), make_voicemail(END_MS, india=india)]
        sim.add_calls(path, new + late)
        second = connector.run(
            "read",
            config_for(sim, kind, end_date="2026-01-02T00:00:00Z", lookback_window_days=1),
            catalog_of(kind, "incremental", VOICEMAILS),
            last_states(first),
        ).ok()
    # The lookback day, from the start of the first sync's window holding its first instant (at most a day before).
    (state,) = [
        s["stream"]["stream_state"]
        for s in last_states(first)
        if s["stream"]["stream_descriptor"]["name"] == VOICEMAILS
    ]
    resume = reread_from(state, DAY_MS)
    assert newest - 2 * DAY_MS <= resume <= newest - DAY_MS + 1
    reread = [v for v in held if v["time"] >= resume]
    assert reread, "the lookback day holds voicemails to read again"
    assert_voicemails_exactly(second.records_of(VOICEMAILS), reread + new + late)


@pytest.mark.parametrize("kind", APP_KINDS)
def test_a_voicemail_sync_killed_mid_way_resumes_with_nothing_lost(connector, kind):
    path = VOICEMAIL_PATH[kind]
    held = generate_voicemails(500, START_MS, END_MS - 1, seed=8, india=kind == "india")
    with simulator({path: held}, latency_ms=15) as sim:
        cfg = config_for(sim, kind, num_workers=2)
        emitted, states = connector.killed_after(2, cfg, catalog_of(kind, "incremental", VOICEMAILS))
        assert len(states) == 2 and len(emitted) < len(held), "the sync should be killed mid-way"
        resumed = connector.run("read", cfg, catalog_of(kind, "incremental", VOICEMAILS), [states[-1]]).ok()
    names = [v["voicename"] for v in emitted] + [r["voicename"] for r in resumed.records]
    assert set(names) == {v["voicename"] for v in held}, "a voicemail was lost across the crash"
    finished = merged_slices(states[-1]["stream"]["stream_state"])
    resume = reread_from(states[-1]["stream"]["stream_state"])  # the window holding the point after the newest
    for record in resumed.records:
        assert not any(a <= record["time"] <= min(b, resume - 1) for a, b, _ in finished), (
            "a finished window read again"
        )
    assert len(set(r["voicename"] for r in resumed.records)) == len(resumed.records)


# ----------------------------------------------------------------------------- daily call totals

TOTALS_START, TOTALS_END = "2025-12-03T15:00:00Z", "2025-12-12T06:30:00.250Z"
TOTALS_END_MS = day_ms(12) + 6 * HOUR_MS + 30 * 60_000 + 250


def calls_at_day_edges(kind, days=range(1, 17), n=40, seed=12):
    """Calls of every list of the platform: random ones, and on the first and last millisecond of each day."""
    held = {}
    for i, path in enumerate(endpoints(kind).values()):
        calls = generate_calls(n, day_ms(1), day_ms(17) - 1, seed=seed + i, endpoint=path)
        calls += [make_call(day_ms(day) + delta, endpoint=path) for day in days for delta in (-1, 0)]
        calls += [make_call(at, endpoint=path) for at in (TOTALS_END_MS, TOTALS_END_MS + 1)]
        held[path] = calls
    return held


def totals_of(sim, kind, first, last):
    """What TeleCMI's analysis should answer for [first, last]: counted from the simulator's four call stores."""
    paths = endpoints(kind)

    def count(*streams):
        return sum(len(sim.records(paths[s], first, last)) for s in streams)

    answered = count("incoming_answered_calls", "outgoing_answered_calls")
    missed = count("incoming_missed_calls", "outgoing_missed_calls")
    return {"total": answered + missed, "answered": answered, "missed": missed}


def day_name(instant):
    return iso(instant)[:10]


def asked_days(sim, kind):
    """The (day, start_date, end_date) of every analysis request, in order."""
    return sorted(
        (day_name(b["start_date"]), b["start_date"], b["end_date"]) for b in sim.stats.bodies_for(ANALYSIS[kind])
    )


def expected_days(first_day, last_day, end_ms):
    """Each day from December `first_day` to `last_day`, its first and last millisecond, the last cut at `end_ms`."""
    return [(day_name(day_ms(d)), day_ms(d), min(day_ms(d + 1) - 1, end_ms)) for d in range(first_day, last_day + 1)]


def now_ms():
    return int(time.time() * 1000)


def assert_rows_are_telecmis_totals(rows, sim, kind, days, read_between):
    by_day = Counter(r["day"] for r in rows)
    assert not [d for d, n in by_day.items() if n > 1], "a day emitted twice"
    assert sorted(by_day) == [d for d, _, _ in days]
    for row in rows:
        (_, first, last) = next(d for d in days if d[0] == row["day"])
        assert set(row) == {"day", "day_start", "total", "answered", "missed", "read_at"}
        assert row["day_start"] == first
        assert {k: row[k] for k in ("total", "answered", "missed")} == totals_of(sim, kind, first, last), row["day"]
        assert row["read_at"].endswith("Z") and read_between[0] <= ms_of(row["read_at"]) <= read_between[1]


@pytest.mark.parametrize("kind", APP_KINDS)
@pytest.mark.parametrize("mode", ["full_refresh", "incremental"])
def test_daily_totals_are_telecmis_per_utc_day_read_in_parallel_the_last_day_cut_at_end_date(connector, kind, mode):
    with simulator(calls_at_day_edges(kind), latency_ms=60) as sim:
        cfg = config_for(sim, kind, start_date=TOTALS_START, end_date=TOTALS_END, num_workers=4)
        started = now_ms()
        run = connector.run("read", cfg, catalog_of(kind, mode, TOTALS)).ok()
        ended = now_ms()
        days = expected_days(3, 12, TOTALS_END_MS)
        assert asked_days(sim, kind) == days, "one request per day, its first to last millisecond, cut at end_date"
        assert sim.stats.max_in_flight > 1, "the days were read one after the other"
        assert_rows_are_telecmis_totals(run.records_of(TOTALS), sim, kind, days, (started, ended))
        last = next(r for r in run.records_of(TOTALS) if r["day"] == "2025-12-12")
        assert last["total"] < totals_of(sim, kind, day_ms(12), day_ms(13) - 1)["total"], "the last day is not cut"
        for row in run.records_of(TOTALS):
            assert isinstance(row["total"], int) and isinstance(row["answered"], int) and isinstance(row["missed"], int)
    assert statuses(run, TOTALS)[-1] == "COMPLETE"
    if mode == "incremental":
        assert states_of(run, TOTALS)[-1] == {"day": "2025-12-12"}


@pytest.mark.parametrize(("kind", "lookback"), [("app", 0), ("app", 2), ("india", 3)])
def test_a_later_sync_reads_the_new_days_and_again_only_the_lookback_days(connector, kind, lookback):
    paths = list(endpoints(kind).values())
    with simulator(calls_at_day_edges(kind)) as sim:
        cfg = config_for(sim, kind, start_date="2025-12-01", end_date="2025-12-10T12:00:00Z", num_workers=2)
        first = connector.run("read", cfg, catalog_of(kind, "incremental", TOTALS)).ok()
        assert states_of(first, TOTALS)[-1] == {"day": "2025-12-10"}
        assert len(first.records_of(TOTALS)) == 10
        # Calls that reach TeleCMI late: on the last day read, on the lookback days, and on an older day.
        for day, at in ((10, 11 * HOUR_MS), (10, 20 * HOUR_MS), (9, 5 * HOUR_MS), (8, HOUR_MS), (4, HOUR_MS)):
            sim.add_calls(paths[day % 4], [make_call(day_ms(day) + at, endpoint=paths[day % 4])])
        sim.stats.reset()
        later = {**cfg, "end_date": "2025-12-13T12:00:00Z", "lookback_window_days": lookback}
        started = now_ms()
        second = connector.run("read", later, catalog_of(kind, "incremental", TOTALS), last_states(first)).ok()
        ended = now_ms()
        days = expected_days(10 - max(lookback - 1, 0), 13, day_ms(13) + 12 * HOUR_MS)
        assert asked_days(sim, kind) == days, f"lookback {lookback}: the days asked again"
        assert_rows_are_telecmis_totals(second.records_of(TOTALS), sim, kind, days, (started, ended))
    assert states_of(second, TOTALS)[-1] == {"day": "2025-12-13"}


# ----------------------------------------------------------------------------- balance


@pytest.mark.parametrize("kind", APP_KINDS)
def test_the_balance_is_one_row_typed_as_declared_on_both_platforms(connector, kind):
    balance = {"balance": 17507.49999999892, "sms": 10969, "expire": 1798761600123}
    with simulator({}, balance=balance) as sim:
        started = now_ms()
        run = connector.run("read", config_for(sim, kind), catalog_of(kind, "incremental", BALANCE)).ok()
        ended = now_ms()
        assert sim.stats.by_path == {BALANCE_PATHS[kind]: 1}
    (row,) = run.records_of(BALANCE)
    read_at = row.pop("read_at")
    assert row == {**balance, "expires_at": "2027-01-01T00:00:00.123Z"}
    assert type(row["balance"]) is float and type(row["sms"]) is int and type(row["expire"]) is int
    assert read_at.endswith("Z") and started <= ms_of(read_at) <= ended
    assert statuses(run, BALANCE)[-1] == "COMPLETE"


# ----------------------------------------------------------------------------- refusals

REFUSAL_END = "2025-12-05T00:00:00Z"


def refused_sync(connector, sim, kind, refused, *streams):
    """A sync of `streams` while TeleCMI refuses `refused`'s path through every retry: skipped, the others read."""
    sim.refuse_endpoint(PATH_OF[kind][refused], code=403, msg="This feature is not enabled for this account")
    cfg = config_for(sim, kind, end_date=REFUSAL_END)
    run = connector.run("read", cfg, catalog_of(kind, "incremental", refused, *streams)).ok()
    assert statuses(run, refused)[-1] == "INCOMPLETE" and "COMPLETE" not in statuses(run, refused)
    warning = [log for log in run.logs("WARN") if refused in log and "skipped" in log]
    assert warning and "This feature is not enabled for this account" in warning[0]
    assert not run.records_of(refused)
    for other in streams:
        assert statuses(run, other)[-1] == "COMPLETE" and run.records_of(other), other
    sim.allow_endpoint(PATH_OF[kind][refused])
    return run, cfg


def account_data(kind):
    held = generate_voicemails(60, START_MS, END_MS - 1, seed=9, india=kind == "india")
    return {**calls_at_day_edges(kind, days=range(1, 4), n=20), VOICEMAIL_PATH[kind]: held}


@pytest.mark.parametrize(("kind", "refused"), [("app", VOICEMAILS), ("india", TOTALS), ("india", BALANCE)])
def test_a_lasting_refusal_of_an_account_list_skips_it_only_reported_incomplete(connector, kind, refused):
    others = [name for name in ACCOUNT_LISTS if name != refused] + ["incoming_missed_calls"]
    data = account_data(kind)
    with simulator(data) as sim:
        run, cfg = refused_sync(connector, sim, kind, refused, *others)
        if refused == VOICEMAILS:  # once the account has them, the next sync reads them all: none was claimed read
            again = connector.run("read", cfg, catalog_of(kind, "incremental", VOICEMAILS), last_states(run)).ok()
            expected = in_range(data[VOICEMAIL_PATH[kind]], last=ms_of(REFUSAL_END))
            assert_voicemails_exactly(again.records_of(VOICEMAILS), expected)


def test_after_a_refusal_of_the_daily_totals_the_next_sync_reads_every_day(connector):
    with simulator(account_data("app")) as sim:
        run, cfg = refused_sync(connector, sim, "app", TOTALS)
        assert not [s for s in states_of(run, TOTALS) if s], "a state claims days read while none was"
        again = connector.run("read", cfg, catalog_of("app", "incremental", TOTALS), last_states(run)).ok()
    assert sorted(r["day"] for r in again.records_of(TOTALS)) == [f"2025-12-0{d}" for d in range(1, 6)]
