"""Lists that are one answer: daily_call_totals (the days a sync reads, none not begun; each day's totals as
TeleCMI answered them; its state, never past the last day read in full; saved states that are no date, a
config error saying that a reset fixes it) and account_balance (one record a sync); and both refused."""

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.message import InMemoryMessageRepository
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.config import ConfigError
from source_telecmi.engine.one_answer import (
    DayCursor,
    DayReading,
    SinglePartition,
    balance_extra,
    days_to_read,
    last_ended_day,
    saved_day,
)
from source_telecmi.engine.reading import Lister
from source_telecmi.engine.refusals import Skipped
from source_telecmi.records import Conformer
from source_telecmi.shaping import schema_of, shaper
from source_telecmi.telecmi.answers import AccessRefused
from source_telecmi.telecmi.platforms import BALANCE, DAILY_TOTALS
from source_telecmi.timeline.instants import DAY_MS, Window, iso_ms, now_ms

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


# ------------------------------------------------------------------------- reading one answer a day


class OneAnswer:
    """An endpoint whose every answer is one record: `answer(span)`; refuses every request after `serve` answers."""

    path = "/v2/analysis"
    url = "https://telecmi.test/v2/analysis"
    largest_page = 1

    def __init__(self, row, answer, serve=None):
        self.row = row
        self.asked = []
        self.served = False
        self._answer = answer
        self._serve = serve

    def ask(self, span=None):
        self.asked.append(span)
        if self._serve is not None and len(self.asked) > self._serve:
            raise AccessRefused("Not enabled for this account")
        self.served = True
        return self._answer(span)

    def page(self, number, limit, span=None):
        raise AssertionError("a list that is one answer is never paged")


def totals(span):
    first, _ = span
    number = (first - JAN_1) // DAY_MS
    return {"total": 10 + number, "answered": 7 + number, "missed": 3, "code": 200}


def one_answer_lister(row, endpoint, log):
    return Lister(
        row.stream, endpoint, shaper(row, Conformer(row.stream, schema_of(row.stream))), lambda r: None, log.logger
    )


def day_reading(endpoint, log, days, skipped=None):
    return DayReading(one_answer_lister(DAILY_TOTALS, endpoint, log), days, skipped or Skipped())


def test_each_day_is_asked_for_its_own_range_and_is_its_totals_as_telecmi_answered_them(log):
    endpoint = OneAnswer(DAILY_TOTALS, totals)
    days = [whole(3), Window(day(4), day(4) + 5 * HOUR_MS)]
    before = now_ms()
    records = [r.data for p in day_reading(endpoint, log, days).generate() for r in p.read()]
    assert endpoint.asked == [(day(3), day(4) - 1), (day(4), day(4) + 5 * HOUR_MS)]
    assert [{k: v for k, v in r.items() if k != "read_at"} for r in records] == [
        {"day": "2024-01-04", "day_start": day(3), "total": 13, "answered": 10, "missed": 3},
        {"day": "2024-01-05", "day_start": day(4), "total": 14, "answered": 11, "missed": 3},
    ]
    assert all(iso_ms(before) <= r["read_at"] <= iso_ms(now_ms()) for r in records)


def test_a_total_telecmi_leaves_out_is_null_not_made_up(log):
    endpoint = OneAnswer(DAILY_TOTALS, lambda span: {"total": 5, "answered": 5})
    (partition,) = day_reading(endpoint, log, [whole(0)]).generate()
    (record,) = [r.data for r in partition.read()]
    assert (record["total"], record["answered"], record["missed"]) == (5, 5, None)


def test_a_day_partition_names_its_stream_and_day(log):
    first, second = day_reading(OneAnswer(DAILY_TOTALS, totals), log, [whole(0), whole(1)]).generate()
    assert first.stream_name() == "daily_call_totals"
    assert (first.to_slice(), second.to_slice()) == ({"day": "2024-01-01"}, {"day": "2024-01-02"})
    assert hash(first) != hash(second)
    (record,) = list(second.read())
    assert record.stream_name == "daily_call_totals" and record.associated_slice is None


def test_days_refused_before_any_was_served_skip_the_stream_and_ask_no_more(log):
    skipped = Skipped()
    endpoint = OneAnswer(DAILY_TOTALS, totals, serve=0)
    reading = day_reading(endpoint, log, [whole(0), whole(1), whole(2)], skipped)
    partitions = reading.generate()
    first = next(partitions)
    already = DayReading(reading.lister, [whole(5)], skipped)  # a partition handed out before the refusal
    (late,) = already.generate()
    assert list(first.read()) == []
    assert skipped.reasons == {"daily_call_totals": "Not enabled for this account"}
    assert list(partitions) == [], "no day is handed out once the stream is skipped"
    assert reading.read(whole(1)) is None and list(late.read()) == []
    assert len(endpoint.asked) == 1
    warning = next(m for m in log.warnings() if "skipped" in m)
    assert "daily_call_totals" in warning and "INCOMPLETE" in warning and "/v2/analysis" in warning


def test_days_refused_after_one_was_served_fail_the_sync_rather_than_skip(log):
    skipped = Skipped()
    first, second = day_reading(OneAnswer(DAILY_TOTALS, totals, serve=1), log, [whole(0), whole(1)], skipped).generate()
    assert len(list(first.read())) == 1
    with pytest.raises(AirbyteTracedException) as error:
        list(second.read())
    assert not isinstance(error.value, AccessRefused)
    assert error.value.failure_type == FailureType.transient_error
    assert "daily_call_totals" in error.value.message and "after serving it" in error.value.message
    assert skipped.reasons == {}


def test_a_skipped_stream_keeps_the_state_it_had_and_no_other_streams_skip_touches_it():
    skipped = Skipped()
    skipped.add("account_balance", "refused")
    assert cursor("2024-02-09", {"day": "2024-01-03"}, skipped).state == {"day": "2024-02-09"}


# ------------------------------------------------------------------------------------ the balance

EXPIRE = JAN_1 + 366 * DAY_MS + 1234  # 2025-01-01T00:00:01.234Z


def balance(span):
    assert span is None, "the balance is asked for with no range"
    return {"balance": 12.5, "sms": 40, "expire": EXPIRE, "code": 200}


def read_balance(endpoint, log, skipped=None):
    partition = SinglePartition(one_answer_lister(BALANCE, endpoint, log), skipped or Skipped(), balance_extra)
    assert partition.stream_name() == "account_balance" and partition.to_slice() is None
    return [r.data for r in partition.read()]


def test_the_balance_is_one_record_with_when_it_expires_and_when_it_was_read(log):
    endpoint = OneAnswer(BALANCE, balance)
    before = now_ms()
    (record,) = read_balance(endpoint, log)
    assert endpoint.asked == [None]
    assert {k: v for k, v in record.items() if k != "read_at"} == {
        "balance": 12.5,
        "sms": 40,
        "expire": EXPIRE,
        "expires_at": "2025-01-01T00:00:01.234Z",
    }
    assert iso_ms(before) <= record["read_at"] <= iso_ms(now_ms())


@pytest.mark.parametrize("expire", [None, "soon", ""])
def test_a_balance_without_a_usable_expiry_has_no_expires_at(expire):
    assert balance_extra({"expire": expire}) == {"expires_at": None}
    assert balance_extra({}) == {"expires_at": None}


def test_the_balance_refused_is_skipped_with_a_warning(log):
    skipped = Skipped()
    assert read_balance(OneAnswer(BALANCE, balance, serve=0), log, skipped) == []
    assert skipped.reasons == {"account_balance": "Not enabled for this account"}
    assert any("account_balance skipped" in m and "INCOMPLETE" in m for m in log.warnings())
