"""Time: dates, instants, windows and their edges, lookback, the cursor and its state."""

import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import CursorField
from airbyte_cdk.sources.types import Record

from source_telecmi.saved_state import TRAIL, readable_state
from source_telecmi.state import MillisecondStateConverter, WindowCursor, finished_ranges, trail_of
from source_telecmi.timeline.instants import (
    DAY_MS,
    Window,
    check_window,
    day_of,
    day_start,
    day_windows,
    instant_of,
    iso_ms,
    parse_utc,
)
from source_telecmi.timeline.planning import (
    LONGEST_WINDOW_MS,
    WindowPlanner,
    estimate_total,
    iterate_windows,
    windows_for,
)
from source_telecmi.timeline.resuming import Trail, first_uncovered, lookback_point, ranges_to_read

JAN_1 = 1704067200000  # 2024-01-01T00:00:00Z
STREAM = "outgoing_missed_calls"


# -------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "text, instant",
    [
        ("2024-01-01", JAN_1),
        ("2024-01-01T00:00:00Z", JAN_1),
        ("2024-01-02T00:00:01Z", JAN_1 + DAY_MS + 1000),
        ("2024-01-01T00:00:00.123Z", JAN_1 + 123),
        ("2024-01-01T00:00:00.123456789Z", JAN_1 + 123),
        ("2024-01-01T00:00:00.5Z", JAN_1 + 500),
        ("2024-01-01T00:00:00+00:00", JAN_1),
        ("2024-01-01T00:00:00.250+00:00", JAN_1 + 250),
        ("2024-01-01T05:30:00+05:30", JAN_1),
        ("2023-12-31T19:00:00-05:00", JAN_1),
        (" 2024-01-01T00:00:00Z ", JAN_1),
    ],
)
def test_parse_utc_accepts_the_documented_forms(text, instant):
    assert parse_utc(text, "start_date") == instant


@pytest.mark.parametrize(
    "bad",
    ["2024/01/01", "01-01-2024", "2024-13-01T00:00:00Z", "2024-02-30", "yesterday", "", "1704067200000", 17, None],
)
def test_parse_utc_names_the_field_and_the_forms(bad):
    with pytest.raises(ValueError) as error:
        parse_utc(bad, "end_date")
    message = str(error.value)
    assert message.startswith("end_date ")
    assert "YYYY-MM-DD" in message and "YYYY-MM-DDTHH:MM:SSZ" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------------------- instants


@pytest.mark.parametrize(
    "value, instant",
    [
        (1764583200123, 1764583200123),  # TeleCMI's own form
        ("1764583200123", 1764583200123),
        (" 1764583200123 ", 1764583200123),
        (1764583200123.0, 1764583200123),
        ("1764583200123.0", 1764583200123),
        (1764583200.123, 1764583200123),  # seconds
        (1764583200, 1764583200000),
        ("1764583200", 1764583200000),
        ("2025-12-01T10:00:00.123Z", 1764583200123),
        ("2025-12-01T10:00:00Z", 1764583200000),
        ("2025-12-01T15:30:00.123+05:30", 1764583200123),
        (0, 0),
    ],
)
def test_instant_of_reads_every_form_of_time(value, instant):
    assert instant_of(value) == instant


@pytest.mark.parametrize(
    "value", [None, True, False, "", "yesterday", "1.2.3", "12:00", [], {}, float("nan"), float("inf"), 1e20]
)
def test_instant_of_garbage_is_none(value):
    assert instant_of(value) is None


def test_iso_ms():
    assert iso_ms(1764583200123) == "2025-12-01T10:00:00.123Z"
    assert iso_ms(JAN_1) == "2024-01-01T00:00:00.000Z"
    assert instant_of(iso_ms(1764583200007)) == 1764583200007


# ------------------------------------------------------------------------------------------ windows


def test_window_asks_one_millisecond_wider_and_holds_only_its_own_calls():
    window = Window(100, 200)
    assert (window.request_from, window.request_to) == (99, 201)
    assert window.holds(100) and window.holds(200)
    assert not window.holds(99) and not window.holds(201)
    assert not window.holds("150") and not window.holds(None)
    assert window.span == 101
    assert window.as_slice() == {"start": 100, "end": 200}


def test_check_window_is_the_last_day_or_the_whole_range():
    assert check_window(JAN_1, JAN_1 + 10 * DAY_MS) == Window(JAN_1 + 9 * DAY_MS + 1, JAN_1 + 10 * DAY_MS)
    assert check_window(JAN_1, JAN_1 + 5) == Window(JAN_1, JAN_1 + 5)


def test_planner_grows_quiet_windows_and_shrinks_busy_ones():
    planner = WindowPlanner(target_calls=500, most_calls=5000)
    window = planner.next_window(0, 10**15)
    assert window.span == DAY_MS
    planner.learn(window, 0)
    assert planner.next_window(0, 10**15).span == 4 * DAY_MS
    planner.learn(Window(0, 4 * DAY_MS - 1), 1000)
    assert planner.next_window(0, 10**15).span == 2 * DAY_MS
    for _ in range(10):
        planner.learn(planner.next_window(0, 10**15), 0)
    assert planner.next_window(0, 10**15).span == LONGEST_WINDOW_MS
    assert planner.next_window(5, 10).span == 6


def test_iterate_windows_covers_a_range_exactly_once_and_splits_busy_windows():
    calls_at = list(range(0, 3 * DAY_MS, 1000))[:20000]  # 20,000 calls in the first ~5.5 hours
    probes = []

    def probe(window):
        probes.append(window)
        return sum(1 for t in calls_at if window.first <= t <= window.last)

    planner = WindowPlanner(target_calls=500, most_calls=5000)
    windows = [w for w, _ in iterate_windows(planner, 0, 3 * DAY_MS - 1, probe, lambda n: n)]
    assert windows[0].first == 0 and windows[-1].last == 3 * DAY_MS - 1
    assert all(a.last + 1 == b.first for a, b in zip(windows, windows[1:], strict=False))
    assert all(probe(w) <= 5000 for w in windows)
    assert len(probes) > len(windows)  # the first, too-busy day was split


def test_estimate_extrapolates_the_density_seen_so_far():
    assert estimate_total(100, 10, 30) == 400
    assert estimate_total(100, 0, 30) == 100
    assert estimate_total(100, 10, 0) == 100


# ------------------------------------------------------------------------------------ what to read


def test_no_state_reads_everything():
    assert ranges_to_read([], 10, 100, 0) == [(10, 100)]
    # The marker a fresh cursor starts with claims nothing.
    assert ranges_to_read([(9, 9, None)], 10, 100, 0) == [(10, 100)]


def test_lookback_zero_rereads_nothing_already_read():
    assert ranges_to_read([(9, 60, 50)], 10, 100, 0) == [(51, 100)]


def test_lookback_counts_back_from_the_newest_call_read():
    assert ranges_to_read([(9, 60, 50)], 10, 100, 20) == [(31, 100)]
    # ...but never before the start date.
    assert ranges_to_read([(9, 60, 50)], 10, 100, 1000) == [(10, 100)]


def test_holes_left_by_a_crash_are_read_and_finished_windows_are_not():
    done = [(9, 30, 25), (41, 60, 55), (71, 80, 79)]
    assert ranges_to_read(done, 10, 100, 0) == [(31, 40), (61, 70), (80, 100)]


def test_an_earlier_start_date_reads_the_new_past():
    assert ranges_to_read([(49, 60, 58)], 10, 100, 0) == [(10, 48), (59, 100)]


def test_an_end_date_before_the_state_reads_nothing_more():
    assert ranges_to_read([(9, 60, 58)], 10, 40, 0) == []


def test_a_last_window_without_calls_is_read_again():
    # No call seen in it: nothing says how far TeleCMI had recorded calls when it was read.
    assert ranges_to_read([(9, 60, 50), (61, 90, None)], 10, 100, 0) == [(61, 100)]


# -------------------------------------------------------------------------------------------- state


def test_no_state_is_no_state():
    assert readable_state(STREAM, {}) == {}


@pytest.mark.parametrize(
    "legacy, instant",
    [
        (JAN_1 + 500, JAN_1 + 500),
        (str(JAN_1 + 500), JAN_1 + 500),
        (float(JAN_1 + 500), JAN_1 + 500),
        ("2024-01-01T00:00:00.500Z", JAN_1 + 500),
    ],
)
def test_a_legacy_cursor_is_read_in_every_form(legacy, instant):
    assert readable_state(STREAM, {"time": legacy}) == {"time": instant}


def test_a_date_range_state_with_iso_and_string_values_is_migrated():
    state = {
        "state_type": "date-range",
        "slices": [
            {"start": "2023-12-31T23:59:59.999Z", "end": str(JAN_1 + 900), "most_recent_cursor_value": JAN_1 + 800},
            {"start": JAN_1 + 2000, "end": "2024-01-01T00:00:03Z"},
        ],
    }
    assert readable_state(STREAM, state) == {
        "state_type": "date-range",
        "slices": [
            {"start": JAN_1 - 1, "end": JAN_1 + 900, "most_recent_cursor_value": JAN_1 + 800},
            {"start": JAN_1 + 2000, "end": JAN_1 + 3000},
        ],
    }


def test_a_date_range_state_is_kept_as_it_is():
    state = {
        "state_type": "date-range",
        "slices": [{"start": JAN_1 - 1, "end": JAN_1 + 9, "most_recent_cursor_value": JAN_1 + 5}],
    }
    assert readable_state(STREAM, state)["slices"] == state["slices"]


@pytest.mark.parametrize(
    "state",
    [
        {"state_type": "date-range", "slices": [{"start": JAN_1}]},
        {"slices": [{"end": JAN_1}]},
        {"slices": ["2024-01-01"]},
        {"slices": "2024-01-01"},
        {"slices": [{"start": "soon", "end": JAN_1}]},
        {"slices": [{"start": JAN_1, "end": [JAN_1]}]},
        {"slices": [{"start": JAN_1 + 10, "end": JAN_1}]},
        {"slices": [{"start": JAN_1, "end": JAN_1, "most_recent_cursor_value": "later"}]},
        {"time": "yesterday"},
        {"time": True},
        {"time": None},
        {"cursor": JAN_1},
        {"time": JAN_1, "page": 3},
    ],
)
def test_a_state_that_cannot_be_read_says_what_is_wrong_and_that_a_reset_fixes_it(state):
    with pytest.raises(ValueError) as error:
        readable_state(STREAM, state)
    message = str(error.value)
    assert STREAM in message
    assert "Reset the stream" in message
    assert "\n" not in message


def test_converter_starts_with_a_marker_and_reads_a_legacy_state():
    converter = MillisecondStateConverter()
    start, state = converter.convert_from_sequential_state(CursorField("time"), {}, JAN_1)
    assert start == JAN_1
    assert state == {"state_type": "date-range", "slices": [{"start": JAN_1 - 1, "end": JAN_1 - 1}]}
    _, state = converter.convert_from_sequential_state(CursorField("time"), {"time": JAN_1 + 500}, JAN_1)
    assert finished_ranges(state) == [(JAN_1 - 1, JAN_1 + 500, JAN_1 + 500)]
    # A legacy cursor before the start date says nothing about the configured range.
    _, state = converter.convert_from_sequential_state(CursorField("time"), {"time": JAN_1 - 500}, JAN_1)
    assert finished_ranges(state) == [(JAN_1 - 1, JAN_1 - 1, None)]


def test_converter_round_trips_epoch_milliseconds():
    converter = MillisecondStateConverter()
    state = {
        "state_type": "date-range",
        "slices": [{"start": JAN_1, "end": JAN_1 + 9, "most_recent_cursor_value": JAN_1 + 7}],
    }
    assert converter.convert_to_state_message(CursorField("time"), converter.deserialize(state)) == state
    assert converter.increment(JAN_1) == JAN_1 + 1


def test_finished_ranges_merges_adjacent_windows():
    state = {
        "slices": [
            {"start": 20, "end": 29, "most_recent_cursor_value": 25},
            {"start": 9, "end": 19, "most_recent_cursor_value": 15},
            {"start": 50, "end": 60},
        ]
    }
    assert finished_ranges(state) == [(9, 29, 25), (50, 60, None)]


# --------------------------------------------------------------------------------------------- days


def test_days_of_instants():
    assert day_of(JAN_1) == "2024-01-01"
    assert day_of(JAN_1 + DAY_MS - 1) == "2024-01-01"
    assert day_of(JAN_1 + DAY_MS) == "2024-01-02"
    assert day_start("2024-01-02") == JAN_1 + DAY_MS


def test_day_windows_cover_each_utc_day_and_cut_the_last_at_the_end():
    end = JAN_1 + 2 * DAY_MS + 5
    assert day_windows("2024-01-01", JAN_1 + 10, end) == [
        Window(JAN_1, JAN_1 + DAY_MS - 1),
        Window(JAN_1 + DAY_MS, JAN_1 + 2 * DAY_MS - 1),
        Window(JAN_1 + 2 * DAY_MS, end),
    ]
    # Never before start_date's day, whatever day is asked first.
    assert day_windows("2023-12-25", JAN_1 + DAY_MS, JAN_1 + DAY_MS + 1) == [Window(JAN_1 + DAY_MS, JAN_1 + DAY_MS + 1)]
    assert day_windows("2024-01-05", JAN_1, JAN_1 + DAY_MS) == []


# ------------------------------------------------------------------------------------------- cursor


class _Partition:
    """A page of a window, as the cursor sees it."""

    def __init__(self, window):
        self._slice = window.as_slice()

    def to_slice(self):
        return self._slice

    def stream_name(self):
        return STREAM


def _cursor(state=None, repo=None):
    return WindowCursor(
        STREAM,
        state or {},
        repo or InMemoryMessageRepository(),
        ConnectorStateManager(),
        start=JAN_1,
        end=JAN_1 + 10 * DAY_MS,
    )


def _states(repo):
    return [m for m in repo.consume_queue() if m.type == Type.STATE]


def test_a_window_of_three_pages_is_checkpointed_when_the_third_closes():
    repo = InMemoryMessageRepository()
    cursor = _cursor(repo=repo)
    window = Window(JAN_1, JAN_1 + DAY_MS - 1)
    cursor.expect(window, 3)
    page = _Partition(window)
    cursor.observe(Record(data={"time": JAN_1 + 5}, stream_name=STREAM, associated_slice=page.to_slice()))
    cursor.close_partition(page)
    cursor.close_partition(page)
    assert _states(repo) == []
    assert ranges_to_read(cursor.finished(), JAN_1, JAN_1 + 10 * DAY_MS, 0)[0][0] == JAN_1
    cursor.close_partition(page)
    assert len(_states(repo)) == 1
    assert cursor.finished() == [(JAN_1 - 1, JAN_1 + DAY_MS - 1, JAN_1 + 5)]


def test_every_page_is_told_it_closed_after_the_windows_state_is_queued():
    repo = InMemoryMessageRepository()
    cursor = _cursor(repo=repo)
    window = Window(JAN_1, JAN_1 + DAY_MS - 1)
    cursor.expect(window, 2)
    told = []

    class Page(_Partition):
        def closed(self):
            told.append(len(_states(repo)))

    cursor.close_partition(Page(window))
    cursor.close_partition(Page(window))
    assert told == [0, 1]  # the last page hears of it once the window's state is out
    cursor.close_partition(_Partition(Window(JAN_1 + DAY_MS, JAN_1 + 2 * DAY_MS - 1)))  # no `closed`: fine


def test_a_window_nobody_announced_closes_with_its_one_partition():
    repo = InMemoryMessageRepository()
    cursor = _cursor(repo=repo)
    window = Window(JAN_1, JAN_1 + 99)
    cursor.close_partition(_Partition(window))
    assert len(_states(repo)) == 1
    assert cursor.finished() == [(JAN_1 - 1, JAN_1 + 99, None)]


def test_windows_finished_out_of_order_are_all_remembered():
    cursor = _cursor()
    later = Window(JAN_1 + DAY_MS, JAN_1 + 2 * DAY_MS - 1)
    cursor.expect(later, 1)
    cursor.observe(Record(data={"time": later.first + 7}, stream_name=STREAM, associated_slice=later.as_slice()))
    cursor.close_partition(_Partition(later))
    assert ranges_to_read(cursor.finished(), JAN_1, JAN_1 + 3 * DAY_MS, 0) == [
        (JAN_1, JAN_1 + DAY_MS - 1),
        (later.first + 8, JAN_1 + 3 * DAY_MS),
    ]
    # The state survives a round trip through the platform.
    assert _cursor(cursor.state).finished() == cursor.finished()


def test_a_legacy_state_resumes_after_its_cursor():
    cursor = _cursor({"time": JAN_1 + 500})
    assert ranges_to_read(cursor.finished(), JAN_1, JAN_1 + 1000, 0) == [(JAN_1 + 501, JAN_1 + 1000)]


def test_a_migrated_state_resumes_where_it_says():
    state = readable_state(
        STREAM,
        {
            "slices": [
                {"start": "2023-12-31T23:59:59.999Z", "end": JAN_1 + 900, "most_recent_cursor_value": "1704067200800"}
            ]
        },
    )
    assert ranges_to_read(_cursor(state).finished(), JAN_1, JAN_1 + 1000, 0) == [(JAN_1 + 801, JAN_1 + 1000)]


# ------------------------------------------------------------------------ windows that end at a stop


def _probe_of(calls_at):
    def probe(window):
        return sum(1 for t in calls_at if window.first <= t <= window.last)

    return probe


def test_no_window_crosses_a_stop_and_the_one_ending_there_holds_a_page_or_two():
    calls_at = list(range(0, 10 * DAY_MS, 60_000))  # a call a minute for ten days
    stop, end = 7 * DAY_MS - 1, 10 * DAY_MS - 1
    planner = WindowPlanner(target_calls=1000, most_calls=5000, page_calls=20, stops=(stop, end))
    windows = [w for w, _ in iterate_windows(planner, 0, end, _probe_of(calls_at), lambda n: n)]
    assert windows[0].first == 0 and windows[-1].last == end
    assert all(a.last + 1 == b.first for a, b in zip(windows, windows[1:], strict=False))
    assert not [w for w in windows if w.first <= stop < w.last], "a window crosses the stop"
    count = _probe_of(calls_at)
    for at in (stop, end):
        (ending,) = [w for w in windows if w.last == at]
        assert count(ending) <= 40, f"the window ending at {at} holds {count(ending)} calls"
    # Approaching a stop, windows shrink (each at most about half of what is left before it)...
    before_end = [count(w) for w in windows if w.first > stop]
    assert before_end[-3:] == sorted(before_end[-3:], reverse=True)
    # ...and far from one they are sized by the target.
    assert max(count(w) for w in windows) > 500


def test_a_window_ending_at_a_stop_with_many_pages_is_probed_again_smaller():
    planner = WindowPlanner(target_calls=1000, most_calls=5000, page_calls=20, stops=(DAY_MS - 1,))
    assert planner.too_big(Window(0, DAY_MS - 1), 41)
    assert not planner.too_big(Window(0, DAY_MS - 1), 40)
    assert not planner.too_big(Window(0, DAY_MS - 2), 41), "only a window that ends at a stop"
    assert not planner.too_big(Window(DAY_MS - 1, DAY_MS - 1), 500), "one millisecond cannot be split"
    probes, let_go = [], []

    def probe(window):
        probes.append(window)
        return 300 if window.last == DAY_MS - 1 and window.span > DAY_MS // 4 else 30

    windows = list(iterate_windows(planner, 0, DAY_MS - 1, probe, lambda n: n, discard=let_go.append))
    assert let_go == [300], "the first window (the whole day, no density known) was let go of"
    assert windows[-1][0].last == DAY_MS - 1 and len(probes) == len(windows) + 1


def test_without_stops_the_planner_is_as_before():
    planner = WindowPlanner(target_calls=500, most_calls=5000)
    assert planner.next_window(0, 10**15) == Window(0, DAY_MS - 1)
    assert planner.page_calls == 10 and planner.stops == ()


# ------------------------------------------------------------------ no long window holds the lookback point


def _windows_for(calls_at, first, last, lookback_ms, target=100):
    probes = []
    count = _probe_of(calls_at)

    def probe(window):
        probes.append(window)
        return count(window)

    planner = WindowPlanner(target_calls=target, most_calls=5000, page_calls=10, stops=(last - lookback_ms, last))
    let_go = []
    windows = list(windows_for(planner, [(first, last)], probe, lambda n: n, lookback_ms, discard=let_go.append))
    return [w for w, _ in windows], probes, let_go


def _holding(windows, point):
    (window,) = [w for w in windows if w.first <= point <= w.last]
    return window


@pytest.mark.parametrize("lookback_days", [0, 1, 3])
@pytest.mark.parametrize("quiet_days", [0, 2, 12])
def test_the_window_holding_the_next_lookback_point_starts_at_most_a_day_before_it(lookback_days, quiet_days):
    """Calls every 30 minutes for 40 days, then none for `quiet_days` before the end: however quiet the end, the next
    sync reads again from no more than a day before its lookback point."""
    end = 40 * DAY_MS - 1
    calls_at = list(range(0, end - quiet_days * DAY_MS, 1_800_000))
    lookback = lookback_days * DAY_MS
    windows, probes, let_go = _windows_for(calls_at, 0, end, lookback)
    ordered = sorted(windows, key=lambda w: w.first)
    assert ordered[0].first == 0 and ordered[-1].last == end
    assert all(a.last + 1 == b.first for a, b in zip(ordered, ordered[1:], strict=False)), "not a tiling"
    point = max(calls_at) - lookback + 1
    assert _holding(ordered, point).first >= point - 1 - DAY_MS
    assert len(probes) == len(windows) + len(let_go), "every probe is a window or was let go of"


def test_a_long_window_that_a_later_call_proves_safe_is_kept_whole():
    # Quiet for 20 days, then busy: the long quiet windows cannot hold the lookback point (the newest call is later).
    calls_at = [5 * DAY_MS, *range(20 * DAY_MS, 30 * DAY_MS, 60_000)]
    windows, _, _ = _windows_for(calls_at, 0, 30 * DAY_MS - 1, 0, target=1000)
    quiet = [w for w in windows if w.last < 20 * DAY_MS]
    assert len(quiet) <= 4 and max(w.span for w in quiet) > DAY_MS, "the quiet stretch was cut into days"


def test_a_long_last_window_with_the_newest_call_is_read_in_days():
    # A call a day for ten days, none after: the window with the newest call would be long; it is cut into days.
    end = 30 * DAY_MS - 1
    calls_at = list(range(DAY_MS // 2, 10 * DAY_MS, DAY_MS))
    windows, _, let_go = _windows_for(calls_at, 0, end, 0)
    assert let_go, "a long window was probed again in days"
    newest = max(calls_at)
    assert _holding(windows, newest + 1).span <= DAY_MS
    assert max(w.span for w in windows) > DAY_MS, "windows without the point stay long"


def test_windows_for_without_a_lookback_is_iterate_windows_over_each_range():
    calls_at = list(range(0, 10 * DAY_MS, 3_600_000))
    planner = WindowPlanner(target_calls=50, most_calls=5000)
    found = [w for w, _ in windows_for(planner, [(0, DAY_MS - 1), (3 * DAY_MS, 10 * DAY_MS)], _probe_of(calls_at), int)]
    assert found[0].first == 0 and found[-1].last == 10 * DAY_MS
    assert sum(w.span for w in found) == DAY_MS + 7 * DAY_MS + 1


# --------------------------------------------------------------------------------- the audit trail


def test_first_uncovered():
    assert first_uncovered([(10, 19), (20, 29)], 10, 29) is None
    assert first_uncovered([(10, 19), (25, 29)], 10, 29) == 20
    assert first_uncovered([(10, 19)], 10, 29) == 20
    assert first_uncovered([], 10, 29) == 10
    assert first_uncovered([(5, 40)], 10, 29) is None


def test_a_sync_reads_again_from_the_start_of_the_audited_window_holding_its_point():
    trail = Trail(windows=((100, 199), (200, 249), (250, 300)))
    assert trail.start_for(230) == 200
    assert trail.start_for(200) == 200
    assert trail.start_for(301) == 301, "after every audited window: from the point itself"
    assert trail.start_for(50) == 50


def test_a_sync_left_unfinished_is_read_again_from_its_first_unfinished_window():
    # The last sync began reading again at 100 what was read up to 300, and finished 100..149 and 200..249 only.
    trail = Trail(windows=((100, 149), (200, 249)), read_from=100, until=300)
    assert trail.start_for(230) == 150
    # Finished all it re-read: no unfinished window.
    assert Trail(windows=((100, 149), (150, 320)), read_from=100, until=300).start_for(310) == 150


def test_a_sync_whose_audit_never_landed_is_read_again_from_where_it_began():
    trail = Trail(windows=((100, 149), (150, 320)), read_from=100, until=300, landed=False)
    assert trail.start_for(310) == 100
    assert Trail(windows=((400, 500),), read_from=None, landed=False).start_for(450) == 450


def test_ranges_to_read_with_a_trail_starts_at_a_window_start():
    done = [(9, 300, 280)]
    trail = Trail(windows=((100, 199), (200, 260), (261, 300)))
    assert ranges_to_read(done, 10, 400, 0, trail) == [(261, 400)]
    assert ranges_to_read(done, 10, 400, 30, trail) == [(200, 400)]
    # 0.3's state (no trail): from the point itself, as before.
    assert ranges_to_read(done, 10, 400, 30, None) == [(251, 400)]
    # Holes left by a crash are read as they are.
    assert ranges_to_read([(9, 50, 40), (71, 300, 280)], 10, 400, 0, trail) == [(51, 70), (261, 400)]
    assert lookback_point(done, 30) == 251 and lookback_point([], 30) is None
    assert lookback_point([(9, 60, None)], 0) == 9


def _close(cursor, window, newest=None):
    cursor.expect(window, 1)
    if newest is not None:
        cursor.observe(Record(data={"time": newest}, stream_name=STREAM, associated_slice=window.as_slice()))
    cursor.close_partition(_Partition(window))


def test_the_state_carries_the_trail_of_the_windows_read_and_reads_back():
    repo = InMemoryMessageRepository()
    cursor = WindowCursor(
        STREAM, {}, repo, ConnectorStateManager(), start=JAN_1, end=JAN_1 + 10 * DAY_MS, synced_at=JAN_1 + 99
    )
    cursor.reading([(JAN_1, JAN_1 + 10 * DAY_MS)])
    windows = [Window(JAN_1 + i * DAY_MS, JAN_1 + (i + 1) * DAY_MS - 1) for i in range(10)]
    for window in windows:
        _close(cursor, window, window.first + 5)
    trail = cursor.state[TRAIL]
    # From a day before the next lookback point (after the newest call, lookback 0) on: the last two windows.
    assert trail == {
        "synced_at": JAN_1 + 99,
        "read_from": None,
        "until": JAN_1 - 1,
        "windows": [[w.first, w.last] for w in windows[-2:]],
    }
    assert _states(repo)[-1].state.stream.stream_state.audit_trail == trail
    saved = readable_state(STREAM, cursor.state)
    again = _cursor(saved)
    kept = ((windows[-2].first, windows[-2].last), (windows[-1].first, windows[-1].last))
    assert again.trail == Trail(windows=kept, until=JAN_1 - 1)
    # The next sync reads again from the start of the last window (it holds the point after the newest call).
    assert ranges_to_read(again.finished(), JAN_1, JAN_1 + 11 * DAY_MS, 0, again.trail)[0][0] == windows[-1].first


def test_the_trail_keeps_every_window_of_what_a_sync_read_again():
    state = {
        "state_type": "date-range",
        "slices": [{"start": JAN_1 - 1, "end": JAN_1 + 5 * DAY_MS, "most_recent_cursor_value": JAN_1 + 5 * DAY_MS}],
    }
    cursor = WindowCursor(
        STREAM,
        state,
        InMemoryMessageRepository(),
        ConnectorStateManager(),
        start=JAN_1,
        end=JAN_1 + 9 * DAY_MS,
        synced_at=JAN_1 + 99,
    )
    cursor.reading([(JAN_1 + 2 * DAY_MS, JAN_1 + 9 * DAY_MS)])  # reads again from day 2, read up to day 5
    assert cursor.state[TRAIL]["read_from"] == JAN_1 + 2 * DAY_MS and cursor.state[TRAIL]["until"] == JAN_1 + 5 * DAY_MS
    for i in range(2, 9):
        _close(cursor, Window(JAN_1 + i * DAY_MS, JAN_1 + (i + 1) * DAY_MS - 1), JAN_1 + (i + 1) * DAY_MS - 10)
    kept = cursor.state[TRAIL]["windows"]
    assert kept[0] == [JAN_1 + 2 * DAY_MS, JAN_1 + 3 * DAY_MS - 1], "a window re-read is kept, to find what was not"
    assert [JAN_1 + 6 * DAY_MS, JAN_1 + 7 * DAY_MS - 1] not in kept, "between them and the lookback point: not needed"


def test_an_audit_that_never_landed_is_told_by_synced_at():
    saved = {"synced_at": 200, "read_from": 10, "until": 50, "windows": [[10, 60]]}
    assert trail_of(saved, None).landed
    assert trail_of(saved, 200).landed
    assert trail_of(saved, 300).landed
    assert not trail_of(saved, 100).landed
    assert trail_of(None, 100) is None


@pytest.mark.parametrize(
    "trail",
    [
        "windows",
        {"windows": "none"},
        {"windows": [[1, 2, 3]]},
        {"windows": [[5, 1]]},
        {"windows": [["a", 2]]},
        {"windows": [], "read_from": "soon"},
        {"windows": [], "synced_at": True},
    ],
)
def test_a_trail_that_cannot_be_read_says_so_and_that_a_reset_fixes_it(trail):
    state = {"state_type": "date-range", "slices": [{"start": JAN_1, "end": JAN_1 + 5}], TRAIL: trail}
    with pytest.raises(ValueError) as error:
        readable_state(STREAM, state)
    assert TRAIL in str(error.value) and "Reset the stream" in str(error.value)
