"""What a sync learned of TeleCMI's rate limit, kept in the state so that the next sync starts from it.

A stream's state may hold, beside its own keys, `"pacing": {"allowed_rate": <requests a second>,
"margin_ms": <ms>, "confirmed_at": <epoch ms>}`: the pacer's estimate of the allowed rate, the margin
it adds between two starts for the client's own timing, and when a 429 last confirmed them. At the
start of a read, the most recently confirmed of the streams' estimates is taken, if it is at most
`MAX_AGE_DAYS` old; an older one, or none, and the pacer probes as if it had never met the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

PACING = "pacing"
# An estimate not confirmed by a 429 for this long is not used: TeleCMI may have changed its limit (either way),
# and probing again costs a few refused requests.
MAX_AGE_DAYS = 7
DAY_MS = 86_400_000
# The allowed rates an estimate may hold (requests a second), and the margins (ms).
LOWEST_RATE, HIGHEST_RATE = 0.01, 100_000.0
HIGHEST_MARGIN_MS = 10_000.0
LAST_INSTANT_MS = 253_402_300_799_999  # the end of year 9999


class Learned(NamedTuple):
    """An estimate of TeleCMI's allowed rate, and when a 429 last confirmed it."""

    allowed_rate: float  # requests a second
    confirmed_at: int  # epoch ms
    margin_ms: float = 0.0  # added between two starts: the client's timing is never exact

    def as_state(self) -> dict[str, Any]:
        return {"allowed_rate": self.allowed_rate, "margin_ms": self.margin_ms, "confirmed_at": self.confirmed_at}

    def fresh(self, now_ms: int) -> bool:
        """Whether it was confirmed at most `MAX_AGE_DAYS` before `now_ms` (and not in the future)."""
        return now_ms - MAX_AGE_DAYS * DAY_MS <= self.confirmed_at <= now_ms + DAY_MS


def learned_of(value: Any) -> Learned:
    """The estimate a state's `PACING` value holds; ValueError saying what is wrong if it holds none."""
    if not isinstance(value, Mapping):
        raise ValueError(f"it is {type(value).__name__}, not an object")
    unknown = set(value) - {"allowed_rate", "margin_ms", "confirmed_at"}
    if unknown:
        raise ValueError(f"it has {sorted(unknown)}, not only allowed_rate, margin_ms and confirmed_at")
    rate, margin, at = value.get("allowed_rate"), value.get("margin_ms", 0.0), value.get("confirmed_at")
    if not _number(rate) or not LOWEST_RATE <= rate <= HIGHEST_RATE:
        raise ValueError(f"allowed_rate is {rate!r:.40}, not a number of requests a second")
    if not _number(margin) or not 0.0 <= margin <= HIGHEST_MARGIN_MS:
        raise ValueError(f"margin_ms is {margin!r:.40}, not a number of milliseconds")
    if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at <= LAST_INSTANT_MS:
        raise ValueError(f"confirmed_at is {at!r:.40}, not an instant (epoch milliseconds)")
    return Learned(float(rate), at, float(margin))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
