"""Time: dates, windows and their edges, lookback, and the cursor's state.

No other module does millisecond arithmetic. Every instant is an integer count of milliseconds
since the epoch, UTC, as TeleCMI uses; every window is inclusive at both ends.
"""

from __future__ import annotations

import math
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

    `stops` (an incremental read: its end, and its end less the lookback) are instants no window
    crosses. Approaching a stop, windows shrink: each holds at most half of the calls expected
    before it, and the one that ends there holds a page or two (more is probed again, smaller).
    The next sync reads again from the start of the window holding its lookback point, which is
    about there: so it reads again a page or two more than the lookback, not a window of many.
    """

    def __init__(
        self, target_calls: int, most_calls: int, page_calls: Optional[int] = None, stops: Sequence[int] = ()
    ) -> None:
        self.target_calls = target_calls
        self.most_calls = most_calls
        self.page_calls = page_calls or max(1, target_calls // 50)
        self.stops = tuple(sorted(set(stops)))
        self._span = FIRST_WINDOW_MS
        self._density: Optional[float] = None  # calls per ms of the last window

    def expected(self, window: Window) -> Optional[float]:
        """The calls `window` should hold at the density seen so far; None before any window."""
        return None if self._density is None else self._density * window.span

    def next_window(self, first: int, last: int, most_span: Optional[int] = None) -> Window:
        """The next window to probe, starting at `first`, never past `last` nor across a stop, at most `most_span`."""
        span = self._span if most_span is None else min(self._span, most_span)
        limit = next((stop for stop in self.stops if first <= stop <= last), last)
        reach = limit - first + 1
        # More than a page expected before the stop: this window holds half of them at most, a page at least.
        if span >= reach and limit in self.stops and self._density and self._density * reach > self.page_calls:
            span = max(reach // 2, math.ceil(self.page_calls / self._density))
        return Window(first, first + min(span, reach) - 1)

    def too_big(self, window: Window, calls: int) -> bool:
        """Whether a probed window holds too many calls to read as one (or, ending at a stop, to read again cheaply)."""
        if window.span <= 1:
            return False
        return calls > self.most_calls or (window.last in self.stops and calls > 2 * self.page_calls)

    def learn(self, window: Window, calls: int) -> None:
        """Size the next window from what this one held."""
        self._density = calls / window.span
        wanted = window.span * self.target_calls // max(calls, 1)
        low, high = window.span // RESIZE_FACTOR, window.span * RESIZE_FACTOR
        self._span = max(1, min(LONGEST_WINDOW_MS, max(low, min(high, wanted))))


@dataclass(frozen=True)
class Trail:
    """What a stream's state says of the windows its last sync read to their end (epoch ms), for the next sync.

    Each window a sync read to its end has a row in `sync_audit`, and a row of a later sync that
    overlaps it supersedes it. So a sync that reads again part of an audited window must read all
    of it (from its start), and every window after it: then its own rows replace the older rows
    whole, and the rows a window holds in the warehouse are what the newest row covering it counted.
    """

    windows: tuple[tuple[int, int], ...] = ()  # the windows that sync read to their end, sorted (the newest ones)
    read_from: Optional[int] = None  # where it began reading again windows audited before it; None: it did not
    until: Optional[int] = None  # the end of what had been read before it
    landed: bool = True  # whether its audit reached the warehouse (a sync killed before its end printed none)

    def start_for(self, point: int) -> int:
        """Where a sync that must read again from `point` starts: the start of the audited window holding it;
        earlier where the last sync re-read audited windows and left some unfinished, or its audit was lost
        (the records it emitted for them may have landed: every window from where it began is read again)."""
        if not self.landed:
            return point if self.read_from is None else min(point, self.read_from)
        start = next((first for first, last in self.windows if first <= point <= last), point)
        if self.read_from is not None and self.until is not None:
            unfinished = first_uncovered(self.windows, self.read_from, self.until)
            if unfinished is not None:
                start = min(start, unfinished)
        return start


def first_uncovered(windows: Sequence[tuple[int, int]], first: int, last: int) -> Optional[int]:
    """The first instant of [first, last] that none of `windows` holds; None if they hold all of it."""
    position = first
    for a, b in sorted(windows):
        if a > position:
            break
        position = max(position, b + 1)
    return position if position <= last else None


def lookback_point(done: Sequence[tuple[int, int, Optional[int]]], lookback_ms: int) -> Optional[int]:
    """The first instant a sync reads again after the finished ranges `done` (merged, sorted): after the newest
    call of the last range less the lookback (all of that range, less the lookback, if it has no call)."""
    if not done:
        return None
    first_of_last, _, newest = done[-1]
    resume_after = newest if newest is not None else first_of_last - 1
    return resume_after - lookback_ms + 1


def ranges_to_read(
    done: Sequence[tuple[int, int, Optional[int]]],
    start: int,
    end: int,
    lookback_ms: int,
    trail: Optional[Trail] = None,
) -> list[tuple[int, int]]:
    """The ranges of [start, end] a sync has to read, given the finished ranges of the state.

    `done` holds merged, sorted (first, last, newest call seen) ranges. Everything up to the newest
    call of the last range is trusted, less the lookback; after that call the range is read again,
    because a call still ringing when the last sync ran is recorded with a time before its end.
    With a `trail` (a state of 0.4 or later), the read again starts at the start of the audited
    window holding that point (`Trail.start_for`), so that no audited window is left half re-read.
    """
    trusted: list[tuple[int, int]] = []
    point = lookback_point(done, lookback_ms)
    if point is not None:
        cutoff = (point if trail is None else trail.start_for(point)) - 1
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
    most_span: Optional[int] = None,
    discard: Optional[Callable[[T], None]] = None,
) -> Iterator[tuple[Window, T]]:
    """Windows covering [first, last] exactly once, each with its probe, split while too big (the probes of
    windows split are handed to `discard`: their requests were spent for the windows that replace them)."""
    position = first
    while position <= last:
        window = planner.next_window(position, last, most_span)
        probed = probe(window)
        calls = calls_in(probed)
        planner.learn(window, calls)
        if planner.too_big(window, calls):
            if discard is not None:
                discard(probed)
            continue
        yield window, probed
        position = window.last + 1


def windows_for(
    planner: WindowPlanner,
    ranges: Sequence[tuple[int, int]],
    probe: Callable[[Window], T],
    calls_in: Callable[[T], int],
    lookback_ms: Optional[int] = None,
    discard: Optional[Callable[[T], None]] = None,
) -> Iterator[tuple[Window, T]]:
    """Windows covering `ranges` exactly once, each with its probe.

    With `lookback_ms` (an incremental read), the next sync reads again from the start of the
    window holding its lookback point (the newest call less the lookback): a window longer than a
    day must not hold that point, or the next sync would read again more than a day older than
    the lookback. Such a window is held back until a call `lookback_ms` or more after its end
    shows it cannot hold it (the newest call is then later); once every range is probed, a window
    that still may is probed again in windows of a day at most, and the others are handed out.
    """
    held: list[tuple[Window, T]] = []
    newest: Optional[Window] = None  # the latest window with a call: the newest call is in it or 1 ms beside it
    for first, last in ranges:
        for window, probed in iterate_windows(planner, first, last, probe, calls_in, discard=discard):
            if calls_in(probed) > 0:
                newest = window
            if lookback_ms is None:
                yield window, probed
                continue
            waiting = []
            for earlier in held:
                if newest is not None and newest.first - 1 >= earlier[0].last + lookback_ms:
                    yield earlier
                else:
                    waiting.append(earlier)
            held = waiting
            if window.span <= DAY_MS or (newest is not None and newest.first - 1 >= window.last + lookback_ms):
                yield window, probed
            else:
                held.append((window, probed))
    for window, probed in held:
        # Where the newest call may be (1 ms wider: a count covers a window's margins) against where it would have
        # to be for this window to hold the lookback point more than a day after the window's start.
        may_hold = newest is not None and (
            newest.first - 1 <= window.last + (lookback_ms or 0)
            and newest.last + 1 >= window.first + DAY_MS + (lookback_ms or 0)
        )
        if not may_hold:
            yield window, probed
            continue
        if discard is not None:
            discard(probed)
        yield from iterate_windows(planner, window.first, window.last, probe, calls_in, DAY_MS, discard)


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
