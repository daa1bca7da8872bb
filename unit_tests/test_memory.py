"""What a sync learned of TeleCMI's rate limit: kept in the states, read back, chosen across streams, aged out."""

import logging

import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository
from airbyte_cdk.sources.types import Record

from source_telecmi.engine.one_answer import DayCursor
from source_telecmi.engine.refusals import Skipped
from source_telecmi.saved_state import TRAIL, learned_pacing, readable_state
from source_telecmi.state import WindowCursor
from source_telecmi.telecmi.memory import DAY_MS, MAX_AGE_DAYS, PACING, Learned, learned_of
from source_telecmi.timeline.instants import Window

LOGGER = logging.getLogger("test_memory")
STREAM = "outgoing_missed_calls"
JAN_1 = 1_704_067_200_000  # 2024-01-01
NOW = JAN_1 + 40 * DAY_MS
LEARNED = {"allowed_rate": 19.6, "margin_ms": 2.5, "confirmed_at": NOW - DAY_MS}
SLICES = {"state_type": "date-range", "slices": [{"start": JAN_1 - 1, "end": JAN_1 + DAY_MS}]}


def test_an_estimate_reads_back_as_it_was_written():
    learned = Learned(19.6, NOW, 2.5)
    assert learned_of(learned.as_state()) == learned
    assert learned_of({"allowed_rate": 5, "confirmed_at": NOW}) == Learned(5.0, NOW, 0.0)  # no margin: none


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([19.6], "not an object"),
        ({**LEARNED, "burst": 3}, "burst"),
        ({**LEARNED, "allowed_rate": "fast"}, "allowed_rate"),
        ({**LEARNED, "allowed_rate": 0}, "allowed_rate"),
        ({**LEARNED, "allowed_rate": float("nan")}, "allowed_rate"),
        ({**LEARNED, "allowed_rate": True}, "allowed_rate"),
        ({**LEARNED, "margin_ms": -1}, "margin_ms"),
        ({**LEARNED, "confirmed_at": "yesterday"}, "confirmed_at"),
        ({**LEARNED, "confirmed_at": 10**20}, "confirmed_at"),
        ({"allowed_rate": 19.6}, "confirmed_at"),
    ],
)
def test_garbage_is_no_estimate(value, says):
    with pytest.raises(ValueError, match=says):
        learned_of(value)


def test_an_estimate_is_fresh_for_a_week():
    assert MAX_AGE_DAYS == 7
    learned = Learned(19.6, NOW)
    assert learned.fresh(NOW) and learned.fresh(NOW + 7 * DAY_MS)
    assert not learned.fresh(NOW + 7 * DAY_MS + 1)
    assert not learned.fresh(NOW - 2 * DAY_MS)  # confirmed in the future: a clock that was wrong


def test_the_saved_state_reader_keeps_an_estimate_and_drops_an_unreadable_one():
    assert readable_state(STREAM, {**SLICES, PACING: LEARNED})[PACING] == LEARNED
    assert PACING not in readable_state(STREAM, {**SLICES, PACING: {"allowed_rate": "fast"}})
    assert PACING not in readable_state(STREAM, SLICES)  # 0.3's state: none


def test_the_most_recently_confirmed_estimate_of_the_streams_is_taken(caplog):
    older = {**LEARNED, "allowed_rate": 10.0, "confirmed_at": NOW - 2 * DAY_MS}
    states = [("a", {**SLICES, PACING: older}), ("b", {**SLICES, PACING: LEARNED}), ("c", SLICES), ("d", {})]
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        assert learned_pacing(states, NOW, LOGGER) == Learned(19.6, NOW - DAY_MS, 2.5)
    assert "Pacing from the rate limit an earlier sync learned: 19.6 requests a second" in caplog.text


def test_an_old_estimate_is_probed_again_and_an_unreadable_one_is_a_warning(caplog):
    old = {**LEARNED, "confirmed_at": NOW - 8 * DAY_MS}
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        assert learned_pacing([("a", {**SLICES, PACING: old})], NOW, LOGGER) is None
        assert learned_pacing([("a", {**SLICES, PACING: "fast"}), ("b", SLICES)], NOW, LOGGER) is None
        assert learned_pacing([("a", SLICES), ("b", {"day": "2024-01-02"})], NOW, LOGGER) is None  # 0.3's states
    assert "is older than 7 days: it is probed again" in caplog.text
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith("Stream a: the saved state's pacing cannot be read (it is str")


class _Page:
    def __init__(self, window):
        self._slice = window.as_slice()

    def to_slice(self):
        return self._slice

    def stream_name(self):
        return STREAM


def window_cursor(repo, state, pacing):
    return WindowCursor(
        STREAM,
        state,
        repo,
        ConnectorStateManager(),
        start=JAN_1,
        end=JAN_1 + 10 * DAY_MS,
        synced_at=JAN_1 + 99,
        pacing=pacing,
    )


def close(cursor, day):
    window = Window(JAN_1 + day * DAY_MS, JAN_1 + (day + 1) * DAY_MS - 1)
    cursor.expect(window, 1)
    cursor.observe(Record(data={"time": window.first + 5}, stream_name=STREAM, associated_slice=window.as_slice()))
    cursor.close_partition(_Page(window))


def states(repo):
    return [m.state.stream.stream_state for m in repo.consume_queue() if m.type == Type.STATE]


def test_each_checkpoint_of_a_windowed_stream_holds_what_the_pacer_knows_then():
    repo, now = InMemoryMessageRepository(), [None]
    cursor = window_cursor(repo, {}, lambda: now[0])
    close(cursor, 0)
    now[0] = LEARNED
    close(cursor, 1)
    now[0] = {**LEARNED, "allowed_rate": 18.0}
    close(cursor, 2)
    emitted = states(repo)
    assert [getattr(s, PACING, None) for s in emitted] == [None, LEARNED, {**LEARNED, "allowed_rate": 18.0}]
    assert getattr(emitted[-1], TRAIL)["windows"]  # beside the trail, which it leaves as it is
    saved = readable_state(STREAM, cursor.state)
    assert saved[PACING] == {**LEARNED, "allowed_rate": 18.0}  # and it reads back


def test_an_estimate_the_pacer_no_longer_has_leaves_the_state_and_one_without_a_pacer_stays():
    saved = readable_state(STREAM, {**SLICES, PACING: LEARNED})
    repo = InMemoryMessageRepository()
    cursor = window_cursor(repo, dict(saved), lambda: None)
    close(cursor, 3)
    assert PACING not in states(repo)[-1].__dict__
    repo = InMemoryMessageRepository()
    cursor = window_cursor(repo, dict(saved), None)
    close(cursor, 3)
    assert getattr(states(repo)[-1], PACING) == LEARNED


def test_the_daily_totals_state_holds_it_beside_the_day():
    day = DayCursor(STREAM, InMemoryMessageRepository(), "2024-01-05", {}, Skipped(), NOW, pacing=lambda: LEARNED)
    assert day.state == {"day": "2024-01-05", PACING: LEARNED}
    day = DayCursor(STREAM, InMemoryMessageRepository(), "2024-01-05", {}, Skipped(), NOW, pacing=lambda: None)
    assert day.state == {"day": "2024-01-05"}
    assert learned_pacing([("daily_call_totals", {"day": "2024-01-05", PACING: LEARNED})], NOW, LOGGER) is not None
