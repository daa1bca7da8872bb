"""Lists that are one answer, not pages: TeleCMI's totals per UTC day, and the account's balance.

`daily_call_totals` asks TeleCMI's analysis once per day, the days in parallel, up to the moment the
sync starts: a day that has not begun (UTC) is neither read nor emitted, whatever end_date says.
Incremental: its state is the last day read in full, a day that had ended (UTC) before the sync
started (as much of it as start_date and end_date take). Today is read and emitted (its totals so
far) but never checkpointed. A later sync reads the new days, today again, and again the last day
of the state and the `lookback_window_days` before it (its totals grow as late calls land), nothing
older. A state day that is not a date is a config error saying that resetting the stream fixes it.
`account_balance` is one answer per sync, a record with the time it was read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import date
from typing import Any, Optional

from airbyte_cdk.sources.message import MessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import FinalStateCursor
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.types import Record

from source_telecmi.config import ConfigError
from source_telecmi.engine.port import Endpoint
from source_telecmi.engine.reading import Lister
from source_telecmi.engine.refusals import Skipped, refusals
from source_telecmi.secrets import one_line
from source_telecmi.telecmi.memory import PACING
from source_telecmi.timeline.instants import (
    DAY_MS,
    Window,
    day_of,
    day_start,
    day_windows,
    instant_of,
    iso_ms,
    iso_or_none,
    now_ms,
)

DAY_FIELD = "day"
DAILY_STREAM = "daily_call_totals"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class DayCursor(FinalStateCursor):
    """The state of `daily_call_totals`: the last day read in full, once every day of the sync was read.

    `last_day` is the last day the sync reads; the state never passes the day before `now` (the
    day the sync started, UTC, has not ended: it is read again next time). The state is emitted
    when the stream is done, which the sync only reaches with every day read, or with the stream
    skipped (TeleCMI refused it): then the state it had stays as it was. Beside the day, `pacing()`
    (if given and not None): what the sync learned of TeleCMI's rate limit (`PACING`, `telecmi.memory`).
    """

    def __init__(
        self,
        stream: str,
        messages: MessageRepository,
        last_day: str,
        saved: Mapping[str, Any],
        skipped: Skipped,
        now: Optional[int] = None,
        pacing: Optional[Callable[[], Optional[dict[str, Any]]]] = None,
    ) -> None:
        super().__init__(stream, None, messages)
        self._last_day = min(last_day, last_ended_day(now_ms() if now is None else now))
        self._saved = dict(saved)
        self._skipped = skipped
        self._pacing = pacing

    @property
    def state(self) -> MutableMapping[str, Any]:
        if self._stream_name in self._skipped.reasons:
            return dict(self._saved)
        learned = self._pacing() if self._pacing is not None else None
        return {DAY_FIELD: self._last_day, **({PACING: learned} if learned is not None else {})}


def last_ended_day(now: int) -> str:
    """The last UTC day that had ended at `now`: yesterday."""
    return day_of(day_start(day_of(now)) - DAY_MS)


def saved_day(state: Any, stream: str = DAILY_STREAM) -> Optional[str]:
    """The day a saved state of `stream` holds (YYYY-MM-DD, a real date), None without one; a config error if
    it holds something else, saying that resetting the stream fixes it."""
    if not state:
        return None
    if isinstance(state, Mapping) and DAY_FIELD not in state:
        return None  # a state of no day (the CDK's own marker): every day is read
    day = state.get(DAY_FIELD) if isinstance(state, Mapping) else state
    if isinstance(day, str) and _DAY.fullmatch(day):
        try:
            date.fromisoformat(day)
            return day
        except ValueError:
            pass
    what = (
        f"its day is {one_line(repr(day), 60)}" if isinstance(state, Mapping) else f"it is {one_line(repr(state), 60)}"
    )
    raise ConfigError(
        f"The saved state of stream {stream} cannot be read: {what}, not a date (YYYY-MM-DD). Reset the stream "
        f"{stream} (its days are read again from start_date) to fix it."
    )


def days_to_read(
    state: Mapping[str, Any],
    start: int,
    end: int,
    lookback_days: int,
    stream: str = DAILY_STREAM,
    now: Optional[int] = None,
) -> list[Window]:
    """The days a sync asks totals for, up to `now` (a day not begun is not read), the last one cut at end or now.

    From start_date's day; after a state, from its day (the last read in full; never later than
    yesterday, whatever an older version saved) less `lookback_days - 1` days.
    """
    now = now_ms() if now is None else now
    first = day_start(day_of(start))
    saved = saved_day(state, stream)
    if saved is not None:
        trusted = min(day_start(saved), day_start(last_ended_day(now)))
        first = max(first, trusted - max(lookback_days - 1, 0) * DAY_MS)
    return day_windows(day_of(first), start, min(end, now))


class DayPartition(Partition):
    """One day's totals."""

    def __init__(self, reading: DayReading, day: Window) -> None:
        self._reading = reading
        self._day = day

    def read(self) -> Iterable[Record]:
        record = self._reading.read(self._day)
        if record is not None:
            yield Record(data=record, stream_name=self._reading.lister.stream, associated_slice=None)

    def to_slice(self) -> Optional[Mapping[str, Any]]:
        return {"day": day_of(self._day.first)}

    def stream_name(self) -> str:
        return self._reading.lister.stream

    def __hash__(self) -> int:
        return hash((self.stream_name(), self._day.first))


class DayReading(PartitionGenerator):
    """The days of one sync, a partition each; a refusal before any day was served skips the stream."""

    def __init__(self, lister: Lister, days: list[Window], skipped: Skipped) -> None:
        self.lister = lister
        self._days = days
        self._skipped = skipped

    def generate(self) -> Iterable[Partition]:
        for day in self._days:
            if self.lister.stream in self._skipped.reasons:
                return
            yield DayPartition(self, day)

    def read(self, day: Window) -> Optional[dict[str, Any]]:
        if self.lister.stream in self._skipped.reasons:
            return None
        answer: dict[str, Any] = {}
        with refusals(self.lister, self._skipped) as refusal:
            answer = self.lister.endpoint.ask((day.first, day.last))
        if refusal.skipped:
            return None
        fields = {name: answer.get(name) for name in self.lister.endpoint.row.fields}
        record = {DAY_FIELD: day_of(day.first), "day_start": day.first, **fields, "read_at": iso_ms(now_ms())}
        return self.lister.owned(None, record, b"")


class SinglePartition(Partition):
    """The one answer of a sync (the balance) as its one record."""

    def __init__(self, lister: Lister, skipped: Skipped, extra: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._lister = lister
        self._skipped = skipped
        self._extra = extra

    def read(self) -> Iterable[Record]:
        endpoint: Endpoint = self._lister.endpoint
        answer: dict[str, Any] = {}
        # Its one request is the endpoint's first of the sync: a refusal comes before it served, and skips it.
        with refusals(self._lister, self._skipped) as refusal:
            answer = endpoint.ask()
        if refusal.skipped:
            return
        record = {name: answer.get(name) for name in endpoint.row.fields}
        record = {**record, **self._extra(record), "read_at": iso_ms(now_ms())}
        shaped = self._lister.owned(None, record, b"")
        if shaped is not None:
            yield Record(data=shaped, stream_name=self._lister.stream, associated_slice=None)

    def to_slice(self) -> Optional[Mapping[str, Any]]:
        return None

    def stream_name(self) -> str:
        return self._lister.stream

    def __hash__(self) -> int:
        return hash(self._lister.stream)


def balance_extra(record: dict[str, Any]) -> dict[str, Any]:
    """When the balance expires, as ISO-8601 UTC to the millisecond (None where TeleCMI sends no usable time)."""
    expire = instant_of(record.get("expire"))
    return {"expires_at": iso_or_none(expire)}
