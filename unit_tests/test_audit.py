"""The sync's audit (`sync_audit`): a row per window read to its end, taken only once the window is done on
stdout, with TeleCMI's count as it answered it, the calls read, the records emitted, the verdict, the shortfall."""

import copy

from airbyte_cdk.models import AirbyteStream, AirbyteStreamStatus, Level, SyncMode, Type
from airbyte_cdk.sources.message import InMemoryMessageRepository
from test_windows import STREAM, T0, WINDOW, FakeEndpoint, call, lister_of, read_window, spread

from source_telecmi.engine.audit import AUDIT_CURSOR, SYNC_AUDIT, Audit
from source_telecmi.engine.ledger import WindowAudit
from source_telecmi.shaping import schema_of
from source_telecmi.timeline.instants import Window, iso_ms

# A row has exactly the fields discover declares for sync_audit.
ROW_FIELDS = set(schema_of(SYNC_AUDIT)["properties"])


def audited(endpoint, log, window=WINDOW):
    """Read `window` as the partitions do, then take its row as the main thread does when it reaches the marker."""
    messages = InMemoryMessageRepository()
    audit = Audit(messages)
    read_window(lister_of(endpoint, log, audit.window_done), window)
    (marker,) = messages.consume_queue()
    assert audit.take(marker)
    (row,) = audit.rows(STREAM)
    return audit, row


def done(window, verdict="complete", shortfall=0, stream=STREAM, emitted=10):
    return WindowAudit(stream, window, emitted + shortfall, emitted, emitted, 1, verdict, shortfall)


# ----------------------------------------------------------------------------------- a window's row


def test_a_window_read_in_full_is_one_row_saying_so(log):
    endpoint = FakeEndpoint(spread(45, step=5))
    audit, row = audited(endpoint, log)
    assert set(row) == ROW_FIELDS
    assert row == {
        "sync_id": audit.sync_id,
        "synced_at": audit.synced_at,
        "stream": STREAM,
        "window_start": T0,
        "window_end": T0 + 999,
        "window_start_at": "2025-12-01T00:00:00.000Z",
        "window_end_at": "2025-12-01T00:00:00.999Z",
        "telecmi_count": 45,
        "calls_read": 45,
        "records_emitted": 45,
        "requests": 5,
        "verdict": "complete",
        "shortfall": 0,
        "files_downloaded": None,  # a list of calls has no files
        "files_pending": None,
    }
    assert row["requests"] == len(endpoint.requests)


def test_calls_in_the_margins_are_read_and_counted_but_emitted_by_their_own_window(log):
    # A window's requests reach one millisecond past each end: TeleCMI counts and returns the calls there too.
    calls = [call(900, at=T0 - 1), *spread(8, step=100), call(901, at=T0 + 1000)]
    _, row = audited(FakeEndpoint(calls), log)
    assert (row["telecmi_count"], row["calls_read"], row["records_emitted"]) == (10, 10, 8)
    assert (row["verdict"], row["shortfall"]) == ("complete", 0)


def test_a_count_proven_wrong_is_count_wrong_with_its_shortfall_and_the_count_as_telecmi_answered_it(log):
    endpoint = FakeEndpoint(spread(45, step=5), phantoms=[T0 + 100, T0 + 500])
    _, row = audited(endpoint, log)
    assert (row["telecmi_count"], row["calls_read"], row["records_emitted"]) == (47, 45, 45)
    assert (row["verdict"], row["shortfall"]) == ("count_wrong", 2)
    assert row["requests"] == len(endpoint.requests) > 5


def test_the_count_is_the_newest_telecmi_answered_while_the_window_was_read(log):
    calls = spread(25, step=10)

    class Landing(FakeEndpoint):
        """A call lands in the window between its first page and the next."""

        def page(self, number, limit, span=None):
            if number == 2 and len(self.calls) == 25:
                self.calls.append(call(999, at=T0 + 995))
            return super().page(number, limit, span)

    _, row = audited(Landing(calls), log)
    assert (row["telecmi_count"], row["calls_read"], row["records_emitted"]) == (26, 26, 26)
    assert row["verdict"] == "complete"


# ------------------------------------------------------------------------ taken once done on stdout


def test_a_row_is_taken_only_when_the_main_thread_reaches_its_marker(log):
    messages = InMemoryMessageRepository()
    audit = Audit(messages)
    first, second = Window(T0, T0 + 999), Window(T0 + 1000, T0 + 1999)
    audit.window_done(done(first))
    audit.window_done(done(second, "count_wrong", 3))
    markers = list(messages.consume_queue())
    assert [(m.type, m.log.level) for m in markers] == [(Type.LOG, Level.DEBUG)] * 2
    assert audit.rows() == [], "no row before its marker is reached"
    assert not audit.take(copy.copy(markers[0])), "only the marker itself, not a message like it"
    assert audit.take(markers[0]) and not audit.take(markers[0])
    assert [r["window_start"] for r in audit.rows()] == [T0]
    assert audit.take(markers[1])
    assert [(r["window_start"], r["verdict"], r["shortfall"]) for r in audit.rows(STREAM)] == [
        (T0, "complete", 0),
        (T0 + 1000, "count_wrong", 3),
    ]


def test_rows_are_per_stream_and_every_row_of_a_sync_carries_its_id():
    messages = InMemoryMessageRepository()
    audit, later = Audit(messages), Audit(InMemoryMessageRepository())
    audit.window_done(done(WINDOW, stream="a"))
    audit.window_done(done(WINDOW, stream="b"))
    for marker in messages.consume_queue():
        audit.take(marker)
    assert [r["stream"] for r in audit.rows("a")] == ["a"] and audit.rows("c") == []
    assert sorted(r["stream"] for r in audit.rows()) == ["a", "b"]
    assert {r["sync_id"] for r in audit.rows()} == {audit.sync_id} != {later.sync_id}
    assert {r["synced_at"] for r in audit.rows()} == {audit.synced_at}


# --------------------------------------------------------------------------------------- its summary


def taken(*windows_done):
    messages = InMemoryMessageRepository()
    audit = Audit(messages)
    for window_done in windows_done:
        audit.window_done(window_done)
    for marker in messages.consume_queue():
        audit.take(marker)
    return audit


def test_the_summary_of_a_stream_every_window_complete():
    audit = taken(done(Window(T0, T0 + 999), emitted=7), done(Window(T0 + 1000, T0 + 1999), emitted=5))
    assert audit.summary(STREAM) == f"Stream {STREAM}: 2 windows, 12 records, every window complete"
    assert audit.summary("users") is None


def test_the_summary_names_the_windows_whose_count_is_wrong_five_at_most():
    windows = [Window(T0 + n * 1000, T0 + n * 1000 + 999) for n in range(8)]
    audit = taken(*(done(w, "count_wrong", n + 1) if n else done(w) for n, w in enumerate(windows)))
    summary = audit.summary(STREAM)
    assert summary.startswith(f"Stream {STREAM}: 8 windows, 80 records; 7 windows where TeleCMI's count is wrong")
    assert f"{iso_ms(windows[1].first)} .. {iso_ms(windows[1].last)} short by 2" in summary
    assert "short by 6" in summary and "short by 7" not in summary
    assert summary.endswith("and 2 more")


# ---------------------------------------------------------------------------------- the stream itself


def stream_of():
    return AirbyteStream(name=SYNC_AUDIT, json_schema={}, supported_sync_modes=[SyncMode.incremental])


def test_the_audit_stream_is_its_rows_then_its_state_between_started_and_complete():
    audit = taken(done(WINDOW), done(Window(T0 + 1000, T0 + 1999), "count_wrong", 1))
    out = list(audit.messages(stream_of()))
    statuses = [m.trace.stream_status.status for m in out if m.type == Type.TRACE]
    assert statuses == [AirbyteStreamStatus.STARTED, AirbyteStreamStatus.RUNNING, AirbyteStreamStatus.COMPLETE]
    assert [m.type for m in out] == [Type.TRACE, Type.TRACE, Type.RECORD, Type.RECORD, Type.STATE, Type.TRACE]
    records = [m.record for m in out if m.type == Type.RECORD]
    assert {r.stream for r in records} == {SYNC_AUDIT}
    assert [r.data for r in records] == audit.rows()
    (state,) = [m.state for m in out if m.type == Type.STATE]
    assert state.stream.stream_descriptor.name == SYNC_AUDIT
    assert vars(state.stream.stream_state) == {AUDIT_CURSOR: audit.synced_at}


def test_an_audit_of_no_window_is_started_and_complete_with_its_state_and_no_row():
    audit = Audit(InMemoryMessageRepository())
    out = list(audit.messages(stream_of()))
    assert [m.type for m in out] == [Type.TRACE, Type.STATE, Type.TRACE]
