"""Rate limiters of other shapes than the simulator's own, to check the pacing against limits it did not learn on.

Each has a thread-safe `take() -> bool`: True serves the request, False answers it 429. The simulator
uses any such object in place of its built-in bucket (`Simulator(limiter=...)`); the unit tests drive
them with a fake clock.

- `TokenBucket(rate, burst, refill="continuous")`: `rate` tokens a second, at most `burst` kept, full at
  the start. `refill="per_second"` adds the second's `rate` tokens at once at each whole second
  (a bucket topped up by a cron-like job), still capped at `burst`.
- `FixedWindow(per_second)`: at most `per_second` requests in each clock second, counted afresh at each
  whole second (the common "N per calendar second" counter), whatever came just before.
- `Recorded(limiter)`: any of them, noting when each request reached it and whether it was served.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

REFILLS = ("continuous", "per_second")


class TokenBucket:
    """`rate` a second, bursts of up to `burst`; `refill` "continuous" or "per_second" (whole seconds)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        refill: str = "continuous",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if refill not in REFILLS:
            raise ValueError(f"refill must be one of {REFILLS}, not {refill!r}")
        self.rate = float(rate)
        self.burst = max(1.0, float(rate if burst is None else burst))
        self.refill = refill
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = clock()
        self._second = math.floor(self._last)

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            if self.refill == "continuous":
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
            else:
                second = math.floor(now)
                if second > self._second:
                    self._tokens = min(self.burst, self._tokens + (second - self._second) * self.rate)
                    self._second = second
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst:g}, refill={self.refill!r})"


class FixedWindow:
    """At most `per_second` requests in each whole second of the clock."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second < 1:
            raise ValueError(f"per_second must be at least 1, not {per_second}")
        self.rate = float(per_second)
        self.per_second = int(per_second)
        self._clock = clock
        self._lock = threading.Lock()
        self._second = math.floor(clock())
        self._count = 0

    def take(self) -> bool:
        with self._lock:
            second = math.floor(self._clock())
            if second != self._second:
                self._second, self._count = second, 0
            if self._count < self.per_second:
                self._count += 1
                return True
            return False

    def __repr__(self) -> str:
        return f"FixedWindow(per_second={self.per_second})"


class Recorded:
    """A limiter that notes when each request reached it (its clock) and whether it was served: `takes`."""

    def __init__(self, limiter: TokenBucket | FixedWindow, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = limiter
        self.rate = limiter.rate
        self._clock = clock
        self._lock = threading.Lock()
        self.takes: list[tuple[float, bool]] = []

    def take(self) -> bool:
        with self._lock:
            served = self.limiter.take()
            self.takes.append((self._clock(), served))
            return served

    def shares(self, seconds: float | None = None, allowed_extra: float = 0.0) -> tuple[float, float]:
        """Of the requests in the first `seconds` from the first (None: all): those served over the rate's worth in
        that time (from the first request to the last, if None) plus `allowed_extra`, and those refused over all."""
        with self._lock:
            takes = list(self.takes)
        if not takes:
            return 0.0, 0.0
        start = takes[0][0]
        if seconds is not None:
            takes = [(at, served) for at, served in takes if at < start + seconds]
        span = seconds if seconds is not None else takes[-1][0] - start
        served = sum(1 for _, ok in takes if ok)
        return served / (self.rate * span + allowed_extra), (len(takes) - served) / len(takes)

    def __repr__(self) -> str:
        return f"Recorded({self.limiter!r})"
