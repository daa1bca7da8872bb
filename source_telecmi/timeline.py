"""Time: dates, windows and their edges, lookback, and the cursor's state.

No other module does millisecond arithmetic. Every instant is an integer count of milliseconds
since the epoch, UTC, as TeleCMI uses; every window is inclusive at both ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Optional, TypeVar

from airbyte_cdk.sources.types import StreamSlice

SECOND_MS = 1_000
DAY_MS = 86_400 * SECOND_MS

# The first window of a range; later windows grow or shrink with the density TeleCMI reports.
FIRST_WINDOW_MS = DAY_MS
# TeleCMI documents no maximum window; its own sample spans 61 days. Stay well inside that.
LONGEST_WINDOW_MS = 30 * DAY_MS
# How far one window may grow or shrink relative to the one before it.
RESIZE_FACTOR = 4

T = TypeVar("T")


def now_ms() -> int:
    """The current instant in epoch milliseconds."""
    return int(time.time() * SECOND_MS)


def days_ms(days: int) -> int:
    """A whole number of days in milliseconds."""
    return days * DAY_MS


DATE_FORMS_HUMAN = "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (fractional seconds and +00:00 allowed)"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?[0-5]\d)?$", re.IGNORECASE | re.ASCII
)


def parse_utc(value: Any, field: str) -> int:
    """Parse a config date into epoch ms; ValueError names the field and the accepted forms.

    Dates without an offset are UTC; an offset other than UTC is converted.
    """
    if not isinstance(value, str) or not (_DATE.match(value.strip()) or _DATE_TIME.match(value.strip())):
        raise ValueError(f"{field} {value!r} is not a date in the form {DATE_FORMS_HUMAN}")
    try:
        return iso_to_ms(value.strip())
    except ValueError:
        raise ValueError(f"{field} {value!r} is not a real date ({DATE_FORMS_HUMAN})") from None


def iso_to_ms(text: str) -> int:
    """An ISO-8601 date or date-time (UTC unless it says otherwise) as epoch ms; ValueError if it is not one."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:  # Python 3.11 reads at most 6 fractional digits
        digits = re.match(r"\d*", rest).group(0)  # type: ignore[union-attr]
        text = f"{head}.{(digits + '000000')[:6]}{rest[len(digits) :]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000 + (0.5 if parsed.timestamp() >= 0 else -0.5))


# Epoch values below this are seconds, not milliseconds (it is 1973 in ms, 5138 in seconds).
_SECONDS_BELOW = 100_000_000_000


def instant_of(value: Any) -> Optional[int]:
    """A call's `time` as epoch ms: TeleCMI sends integers, but digit strings, floats (ms, or seconds
    when too small to be ms) and ISO-8601 strings are read too. None if it is no time at all."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if text.replace(".", "", 1).lstrip("-").isdigit() else iso_to_ms(text)
        except ValueError:
            return None
    if isinstance(value, int):
        return value if abs(value) >= _SECONDS_BELOW or value == 0 else value * SECOND_MS
    if isinstance(value, float) and value == value and abs(value) < 1e16:
        return int(value) if abs(value) >= _SECONDS_BELOW else int(value * SECOND_MS)
    return None


def iso_ms(instant: int) -> str:
    """An epoch-ms instant as ISO-8601 UTC to the millisecond: 2025-12-01T10:00:00.123Z."""
    seconds, millis = divmod(instant, SECOND_MS)
    return f"{datetime.fromtimestamp(seconds, tz=UTC).strftime('%Y-%m-%dT%H:%M:%S')}.{millis:03d}Z"


def format_ms(instant: int) -> str:
    """An epoch-ms instant as a readable UTC date, for messages."""
    return iso_ms(instant)


@dataclass(frozen=True)
class Window:
    """The calls made from `first` to `last` milliseconds, both included."""

    first: int
    last: int

    @property
    def request_from(self) -> int:
        """The `from` sent to TeleCMI: one ms early, in case TeleCMI's `from` is exclusive."""
        return self.first - 1

    @property
    def request_to(self) -> int:
        """The `to` sent to TeleCMI: one ms late, in case TeleCMI's `to` is exclusive."""
        return self.last + 1

    def holds(self, instant: Any) -> bool:
        """Whether a call made at `instant` belongs to this window (and so to no other)."""
        return isinstance(instant, int) and self.first <= instant <= self.last

    @property
    def span(self) -> int:
        return self.last - self.first + 1

    def as_slice(self) -> StreamSlice:
        """The window as the slice the cursor records when the window is done."""
        return StreamSlice(partition={}, cursor_slice={"start": self.first, "end": self.last})

    def __str__(self) -> str:
        return f"{format_ms(self.first)} .. {format_ms(self.last)}"


def check_window(start: int, end: int) -> Window:
    """The last day of the configured range (all of it if shorter): one page of it proves access."""
    return Window(max(start, end - DAY_MS + 1), end)


class WindowPlanner:
    """Cuts a range into windows whose size follows the call density TeleCMI reports.

    A window is sized so that it holds about `target_calls`: enough pages to keep every worker
    busy, few enough that a checkpoint follows soon and a re-read stays cheap.
    """

    def __init__(self, target_calls: int, most_calls: int) -> None:
        self.target_calls = target_calls
        self.most_calls = most_calls
        self._span = FIRST_WINDOW_MS
        self._density: Optional[float] = None  # calls per ms of the last window

    def expected(self, window: Window) -> Optional[float]:
        """The calls `window` should hold at the density seen so far; None before any window."""
        return None if self._density is None else self._density * window.span

    def next_window(self, first: int, last: int) -> Window:
        """The next window to probe, starting at `first` and never past `last`."""
        return Window(first, min(last, first + self._span - 1))

    def too_big(self, window: Window, calls: int) -> bool:
        """Whether a probed window holds too many calls to read as one and is to be split."""
        return calls > self.most_calls and window.span > 1

    def learn(self, window: Window, calls: int) -> None:
        """Size the next window from what this one held."""
        self._density = calls / window.span
        wanted = window.span * self.target_calls // max(calls, 1)
        low, high = window.span // RESIZE_FACTOR, window.span * RESIZE_FACTOR
        self._span = max(1, min(LONGEST_WINDOW_MS, max(low, min(high, wanted))))


def ranges_to_read(
    done: Sequence[tuple[int, int, Optional[int]]], start: int, end: int, lookback_ms: int
) -> list[tuple[int, int]]:
    """The ranges of [start, end] a sync has to read, given the finished ranges of the state.

    `done` holds merged, sorted (first, last, newest call seen) ranges. Everything up to the newest
    call of the last range is trusted, less the lookback; after that call the range is read again,
    because a call still ringing when the last sync ran is recorded with a time before its end.
    """
    trusted: list[tuple[int, int]] = []
    if done:
        first_of_last, _, newest = done[-1]
        resume_after = newest if newest is not None else first_of_last - 1
        cutoff = resume_after - lookback_ms
        trusted = [(a, min(b, cutoff)) for a, b, _ in done if a <= cutoff]
    ranges: list[tuple[int, int]] = []
    position = start
    for a, b in trusted:
        if b < position:
            continue
        if a > position:
            ranges.append((position, min(a - 1, end)))
        position = max(position, b + 1)
        if position > end:
            break
    if position <= end:
        ranges.append((position, end))
    return [(a, b) for a, b in ranges if a <= b]


def estimate_total(known_calls: int, covered_ms: int, remaining_ms: int) -> int:
    """Extrapolate the calls of a whole sync from the density of the windows probed so far."""
    if covered_ms <= 0:
        return known_calls
    return known_calls + known_calls * max(remaining_ms, 0) // covered_ms


def iterate_windows(
    planner: WindowPlanner,
    first: int,
    last: int,
    probe: Callable[[Window], T],
    calls_in: Callable[[T], int],
) -> Iterator[tuple[Window, T]]:
    """Windows covering [first, last] exactly once, each with its probe, split while too big."""
    position = first
    while position <= last:
        window = planner.next_window(position, last)
        probed = probe(window)
        calls = calls_in(probed)
        planner.learn(window, calls)
        if planner.too_big(window, calls):
            continue
        yield window, probed
        position = window.last + 1


def day_of(instant: int) -> str:
    """The UTC day of an epoch-ms instant: 2025-12-01."""
    return datetime.fromtimestamp(instant // SECOND_MS, tz=UTC).strftime("%Y-%m-%d")


def day_start(day: str) -> int:
    """The first millisecond of a UTC day given as YYYY-MM-DD."""
    return iso_to_ms(day)


def day_windows(first_day: str, start: int, end: int) -> list[Window]:
    """The UTC days from `first_day` to the day of `end`, each its first to its last millisecond, the last one
    cut at `end` (its totals so far), the first one starting no earlier than `start`'s day."""
    first = max(day_start(first_day), day_start(day_of(start)))
    windows = []
    while first <= end:
        windows.append(Window(first, min(first + DAY_MS - 1, end)))
        first += DAY_MS
    return windows


def day_before(day: str, days: int) -> str:
    """The day `days` before `day` (YYYY-MM-DD)."""
    return day_of(day_start(day) - days * DAY_MS)
