"""Instants and days: TeleCMI's epoch milliseconds (UTC), the config's dates, a window's edges, UTC days.

Every instant is an integer count of milliseconds since the epoch, UTC, as TeleCMI uses; every
window is inclusive at both ends.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Optional

from airbyte_cdk.sources.types import StreamSlice

SECOND_MS = 1_000


DAY_MS = 86_400 * SECOND_MS


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


def iso_or_none(instant: Optional[int]) -> Optional[str]:
    """`iso_ms` of an instant that may be missing (None stays None)."""
    return iso_ms(instant) if instant is not None else None


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
