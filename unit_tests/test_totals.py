"""daily_call_totals: the days a sync reads (none not begun), its state (never past the last day read in
full), and saved states that are no date (a config error saying that a reset fixes it)."""

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.message import InMemoryMessageRepository

from source_telecmi.config import ConfigError
from source_telecmi.engine.one_answer import DayCursor, days_to_read, last_ended_day, saved_day
from source_telecmi.engine.refusals import Skipped
from source_telecmi.timeline import DAY_MS, Window

JAN_1 = 1704067200000  # 2024-01-01T00:00:00Z
HOUR_MS = 3_600_000
NOW = JAN_1 + 40 * DAY_MS + 10 * HOUR_MS  # 2024-02-10T10:00:00Z
TODAY = JAN_1 + 40 * DAY_MS


def day(number: int) -> int:
    """The first millisecond of the `number`th day from 2024-01-01 (0-based)."""
    return JAN_1 + number * DAY_MS


def whole(number: int) -> Window:
    return Window(day(number), day(number + 1) - 1)


def test_last_ended_day_is_yesterday_utc():
    assert last_ended_day(NOW) == "2024-02-09"
    assert last_ended_day(TODAY) == "2024-02-09"  # at midnight today has begun, not ended
    assert last_ended_day(TODAY - 1) == "2024-02-08"


# ------------------------------------------------------------------------------------- the days read


def test_an_end_date_ahead_reads_up_to_now_and_no_day_not_begun():
    days = days_to_read({}, day(38), NOW + 120 * DAY_MS, 1, now=NOW)
    assert days == [whole(38), whole(39), Window(TODAY, NOW)]


def test_an_end_date_in_the_past_cuts_its_day_at_it():
    end = day(20) + 12 * HOUR_MS
    assert days_to_read({}, day(18), end, 1, now=NOW) == [whole(18), whole(19), Window(day(20), end)]


def test_a_start_that_has_not_begun_reads_no_day():
    assert days_to_read({}, TODAY + DAY_MS, TODAY + 3 * DAY_MS, 1, now=NOW) == []


@pytest.mark.parametrize(("lookback", "first"), [(0, 30), (1, 30), (2, 29), (3, 28)])
def test_after_a_state_its_day_and_the_lookback_before_it_are_read_again(lookback, first):
    days = days_to_read({"day": "2024-01-31"}, JAN_1, NOW, lookback, now=NOW)
    assert days[0] == whole(first) and days[-1] == Window(TODAY, NOW)
    assert len(days) == 40 - first + 1


def test_a_state_day_after_yesterday_is_trusted_only_up_to_yesterday():
    # 0.3.0 saved the end_date's day, 120 days ahead: today and yesterday are read again, not skipped.
    for saved in ("2024-02-10", "2024-06-09", "9999-12-31"):
        assert days_to_read({"day": saved}, JAN_1, NOW, 1, now=NOW) == [whole(39), Window(TODAY, NOW)]


def test_a_state_day_before_start_date_reads_from_start_date():
    assert days_to_read({"day": "2023-06-01"}, day(39), NOW, 3, now=NOW) == [whole(39), Window(TODAY, NOW)]


@pytest.mark.parametrize("state", [{}, {"__ab_no_cursor_state_message": True}, None])
def test_a_state_of_no_day_reads_from_start_date(state):
    assert saved_day(state) is None
    assert days_to_read(state, day(38), NOW, 1, now=NOW)[0] == whole(38)


# ------------------------------------------------------------------------------------ the state


def cursor(last_day, saved=None, skipped=None, now=NOW):
    return DayCursor("daily_call_totals", InMemoryMessageRepository(), last_day, saved or {}, skipped or Skipped(), now)


def test_the_state_is_never_today_a_day_not_finished():
    assert cursor("2024-02-10").state == {"day": "2024-02-09"}
    assert cursor("2024-06-09").state == {"day": "2024-02-09"}


def test_a_day_that_had_ended_is_the_state_even_cut_at_end_date():
    assert cursor("2024-02-09").state == {"day": "2024-02-09"}
    assert cursor("2024-01-21").state == {"day": "2024-01-21"}


def test_a_skipped_stream_keeps_the_state_it_had():
    skipped = Skipped()
    skipped.add("daily_call_totals", "refused")
    assert cursor("2024-02-10", {"day": "2024-01-03"}, skipped).state == {"day": "2024-01-03"}


def test_two_syncs_on_one_day_read_today_both_times():
    first = days_to_read({}, day(38), NOW + 120 * DAY_MS, 1, now=NOW)
    state = cursor("2024-02-10").state
    later = NOW + 2 * HOUR_MS
    second = days_to_read(state, day(38), later + 120 * DAY_MS, 1, now=later)
    assert first[-1] == Window(TODAY, NOW) and second[-1] == Window(TODAY, later)
    assert second == [whole(39), Window(TODAY, later)]


# ----------------------------------------------------------------------- saved states that are no day

BAD_DAYS = [
    "yesterday",
    "2026-02-30",
    "2026-2-3",
    "2026-02-03T00:00:00Z",
    " 2026-02-03",
    "\uff12\uff10\uff12\uff16-02-03",
    "0000-01-01",
    "",
    17,
    1767225600000,
    2.5,
    True,
    None,
    {},
    {"day": "2026-02-03"},
    ["2026-02-03"],
]


@pytest.mark.parametrize("value", BAD_DAYS, ids=[repr(v)[:30] for v in BAD_DAYS])
def test_a_state_day_that_is_not_a_date_is_a_config_error_saying_a_reset_fixes_it(value):
    with pytest.raises(ConfigError) as error:
        days_to_read({"day": value}, JAN_1, NOW, 1, stream="daily_call_totals", now=NOW)
    message = error.value.message
    assert error.value.failure_type == FailureType.config_error
    assert "\n" not in message and len(message) < 300
    assert "The saved state of stream daily_call_totals cannot be read" in message
    assert "Reset the stream daily_call_totals" in message


def test_a_state_that_is_not_an_object_is_a_config_error_too():
    with pytest.raises(ConfigError, match="it is 'yesterday', not a date"):
        saved_day("yesterday")


@pytest.mark.parametrize("value", ["2024-02-29", "1999-12-31", "2024-01-31"])
def test_a_real_day_is_read(value):
    assert saved_day({"day": value}) == value
