"""Dates, windows, edges, lookback and the cursor's state."""

import pytest
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository
from airbyte_cdk.sources.types import Record

from source_telecmi.timeline import (
    DAY_MS,
    LONGEST_WINDOW_MS,
    MillisecondStateConverter,
    Window,
    WindowCursor,
    WindowPlanner,
    check_window,
    estimate_total,
    finished_ranges,
    iterate_windows,
    parse_utc,
    ranges_to_read,
)

JAN_1 = 1704067200000  # 2024-01-01T00:00:00Z


def test_parse_utc_reads_the_documented_form():
    assert parse_utc("2024-01-01T00:00:00Z", "start_date") == JAN_1
    assert parse_utc("2024-01-02T00:00:01Z", "start_date") == JAN_1 + DAY_MS + 1000


@pytest.mark.parametrize("bad", ["2024-01-01", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "yesterday", 17, None])
def test_parse_utc_names_the_field_and_the_form(bad):
    with pytest.raises(ValueError) as error:
        parse_utc(bad, "end_date")
    assert "end_date" in str(error.value)
    assert "\n" not in str(error.value)


def test_window_asks_one_millisecond_wider_and_keeps_only_its_own_calls():
    window = Window(100, 200)
    assert (window.request_from, window.request_to) == (99, 201)
    assert window.holds(100) and window.holds(200)
    assert not window.holds(99) and not window.holds(201)
    assert not window.holds("150") and not window.holds(None)
    assert window.span == 101


def test_check_window_is_the_last_day_or_the_whole_range():
    assert check_window(JAN_1, JAN_1 + 10 * DAY_MS) == Window(JAN_1 + 9 * DAY_MS + 1, JAN_1 + 10 * DAY_MS)
    assert check_window(JAN_1, JAN_1 + 5) == Window(JAN_1, JAN_1 + 5)


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


def test_converter_starts_with_a_marker_and_reads_a_legacy_state():
    converter = MillisecondStateConverter()
    start, state = converter.convert_from_sequential_state(_cursor_field(), {}, JAN_1)
    assert start == JAN_1
    assert state["slices"] == [{"start": JAN_1 - 1, "end": JAN_1 - 1}]
    _, state = converter.convert_from_sequential_state(_cursor_field(), {"time": JAN_1 + 500}, JAN_1)
    assert finished_ranges(state) == [(JAN_1 - 1, JAN_1 + 500, JAN_1 + 500)]
    # A legacy cursor before the start date says nothing about the configured range.
    _, state = converter.convert_from_sequential_state(_cursor_field(), {"time": JAN_1 - 500}, JAN_1)
    assert finished_ranges(state) == [(JAN_1 - 1, JAN_1 - 1, None)]


def test_a_legacy_sequential_state_resumes_after_its_cursor():
    cursor = _cursor({"time": JAN_1 + 500})
    assert ranges_to_read(cursor.finished(), JAN_1, JAN_1 + 1000, 0) == [(JAN_1 + 501, JAN_1 + 1000)]


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


class _Page:
    def __init__(self, window, pages):
        self.slice = window.as_slice()
        self._pages = pages
        self._closed = 0

    def close_page(self):
        self._closed += 1
        return self._closed == self._pages

    def to_slice(self):
        return self.slice


def _cursor_field():
    from airbyte_cdk.sources.streams.concurrent.cursor import CursorField

    return CursorField("time")


def _cursor(state=None, repo=None):
    return WindowCursor(
        "calls",
        state or {},
        repo or InMemoryMessageRepository(),
        ConnectorStateManager(),
        start=JAN_1,
        end=JAN_1 + 10 * DAY_MS,
    )


def test_cursor_checkpoints_a_window_only_when_its_last_page_closes():
    repo = InMemoryMessageRepository()
    cursor = _cursor(repo=repo)
    window = Window(JAN_1, JAN_1 + DAY_MS - 1)
    page = _Page(window, pages=3)
    cursor.observe(Record(data={"time": JAN_1 + 5}, stream_name="calls", associated_slice=page.slice))
    cursor.close_partition(page)
    cursor.close_partition(page)
    assert list(repo.consume_queue()) == []
    assert ranges_to_read(cursor.finished(), JAN_1, JAN_1 + 10 * DAY_MS, 0)[0][0] == JAN_1
    cursor.close_partition(page)
    states = list(repo.consume_queue())
    assert len(states) == 1
    assert cursor.finished() == [(JAN_1 - 1, JAN_1 + DAY_MS - 1, JAN_1 + 5)]


def test_cursor_remembers_windows_finished_out_of_order():
    cursor = _cursor()
    later = Window(JAN_1 + DAY_MS, JAN_1 + 2 * DAY_MS - 1)
    cursor.observe(Record(data={"time": later.first + 7}, stream_name="calls", associated_slice=later.as_slice()))
    cursor.close_partition(_Page(later, pages=1))
    assert ranges_to_read(cursor.finished(), JAN_1, JAN_1 + 3 * DAY_MS, 0) == [
        (JAN_1, JAN_1 + DAY_MS - 1),
        (later.first + 8, JAN_1 + 3 * DAY_MS),
    ]
    # The state survives a round trip through the platform.
    resumed = _cursor(cursor.state)
    assert resumed.finished() == cursor.finished()
