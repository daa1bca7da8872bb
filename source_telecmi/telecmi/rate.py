"""The pacer's rate: how many requests may start a second, none until TeleCMI refuses one.

Set from what the limiter was seen to grant between refusals, restarted just under that estimate
and grown as a cubic of the time (as TCP CUBIC); before a round is known, doubling. Every rule and
why: docs/pacing.md. Not thread-safe on its own: the pacer calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Optional


class Rate:
    """The rate R and everything its estimate of the allowed rate is made of."""

    # Doubling, it doubles every DOUBLING_S, by at most MAX_STEP (or one request a second) from one answer to
    # the next. After a round, the anchor is ANCHOR of the estimated allowed rate, and at least the pacer's
    # decrease of the rate refused; R restarts at BACKOFF of the anchor, or at the lower bound if less but never
    # under FIRST_CUT of the rate refused; the cubic is back at the anchor after PROBE_S.
    DOUBLING_S = 0.5
    MAX_STEP = 0.2
    PROBE_S = 20.0
    ANCHOR = 0.98
    BACKOFF = 0.95
    FIRST_CUT = 0.5
    RATE_WINDOW_S = 1.0  # the rate before the first 429 is the requests of this last window
    RECENT_S, RECENT_SERVED = 2.0, 8  # "what was served just before a 429": this long, or this many requests
    EARLY = 0.9  # a lone 429 under this share of the rates refused before is a request that arrived early
    NO_BURST = 2  # served before the first 429: this many are no sign of a burst (sequential requests, refills)
    MIN_RATE = 0.05  # requests per second: one every 20 s

    def __init__(self, clock: Callable[[], float], decrease: float) -> None:
        self._clock = clock
        self._decrease = (
            decrease  # the pacer's cut of its level on a round: the anchor is at least this of a refused rate
        )
        self._rate: Optional[float] = None
        self._anchor: Optional[float] = None  # the cubic's centre; None while the rate doubles
        self._restart = 0.0  # the rate the cubic started from
        self._anchored_at = 0.0  # when it started: the end of the last round's pause
        self._grown_at = -math.inf  # when the doubling rate last grew
        self.last_start = -math.inf  # while there is a rate, the next request starts 1/rate after this
        self._starts: deque[float] = deque()  # until the first 429: when the requests of the last second started
        self._served: deque[float] = deque()  # after it: when the requests answered in the last 10 s started
        self._burst_max = math.inf  # at most what the limiter held at the start: what it served before refusing
        self._refused_seq = -1  # the latest-sent request answered 429 ...
        self._refused_start: Optional[float] = None  # ... and when it was sent
        self.paused_until = -math.inf  # the end of the pause before the current one
        self._refused_peak = 0.0  # the highest rate refused since the rate last doubled

    @property
    def value(self) -> Optional[float]:
        """The requests a second that may start; None until TeleCMI refuses one."""
        return self._rate

    def wait(self, now: float) -> float:
        """How long the next request waits for the rate (0 or less: none)."""
        return -math.inf if self._rate is None else self.last_start + 1.0 / self._rate - now

    def started(self, now: float) -> None:
        """A request starts now."""
        self.last_start = now
        if self._rate is None:
            self._starts.append(now)
            while self._starts[0] <= now - self.RATE_WINDOW_S:
                self._starts.popleft()

    def served(self, start: Optional[float]) -> None:
        """The request started at `start` was served."""
        if self._rate is not None and start is not None:
            self._served.append(start)
            while len(self._served) > 4096 or self._served[0] < start - 10.0:
                self._served.popleft()

    def grow(self) -> None:
        """A request of this round was served: doubling, or along the cubic back to the anchor and past it."""
        if self._rate is None:
            return
        now = self._clock()
        if self._anchor is not None and self._rate >= 2 * self._anchor:
            self._anchor, self._grown_at = None, now  # twice the anchor without a 429: the limit may have gone
            self._refused_peak = 0.0
        if self._anchor is None:
            elapsed = min(max(0.0, now - self._grown_at), self.RATE_WINDOW_S)
            self._grown_at = max(self._grown_at, now)
            self._rate *= min(2.0 ** (elapsed / self.DOUBLING_S), 1.0 + self._max_step(self._rate))
            return
        x = (max(0.0, now - self._anchored_at) - self.PROBE_S) / self.PROBE_S
        self._rate = max(self._rate, self._anchor + (self._anchor - self._restart) * x**3)

    def _max_step(self, rate: float) -> float:
        """Doubling, how much the rate may grow from one answer to the next: a share, or one request a second."""
        return max(self.MAX_STEP, 1.0 / rate)

    def _step(self, rate: float) -> float:
        """Doubling, how much the rate grows from one request to the next, which come 1/rate apart."""
        return rate * (min(2.0 ** (1.0 / (rate * self.DOUBLING_S)), 1.0 + self._max_step(rate)) - 1.0)

    def _slope(self, rate: float) -> float:
        """How fast the rate grew when it was `rate`, in requests a second per second."""
        if self._anchor is None:
            return min(math.log(2.0) / self.DOUBLING_S, math.log1p(self._max_step(rate)) * rate) * rate
        x = (max(0.0, self._clock() - self._anchored_at) - self.PROBE_S) / self.PROBE_S
        return 3.0 * (self._anchor - self._restart) * x * x / self.PROBE_S

    def restart(self, estimate: Optional[tuple[float, Optional[float]]], at: float) -> None:
        """A new round: restart from `estimate` (`refused`'s), the cubic anchored at `at`, the end of the pause."""
        self.last_start = -math.inf  # the pause spaces the first request after it, not the rate
        if estimate is not None:
            restart, anchor = estimate
            self._anchor = anchor
            if anchor is not None:
                restart = min(restart, self.BACKOFF * anchor)
            self._rate = self._restart = max(self.MIN_RATE, restart)
        self._grown_at = self._anchored_at = at

    def refused(
        self, seq: Optional[int], start: Optional[float], sent_at: Optional[float], new_round: bool, first_round: bool
    ) -> Optional[tuple[float, Optional[float]]]:
        """Note a refused request (numbered `seq`, started at `start` when the rate was `sent_at`); on a new round,
        the rate to restart from and the anchor (None: doubling). In the first round every request sent before
        its earliest refused one was served."""
        if seq is None or start is None:
            return None
        if first_round:
            self._burst_max = min(self._burst_max, seq)
        if seq <= self._refused_seq:
            return None  # sent before a 429 already read: the epoch it closes is gone
        since_seq, since = self._refused_seq, self._refused_start
        self._refused_seq, self._refused_start = seq, start
        if not new_round:
            return None
        served = seq - since_seq - 1  # all sent between the two refused requests were served
        if self._rate is None:  # the first round: the start was too fast, by how much nobody knows
            sent = sum(1 for t in self._starts if start - self.RATE_WINDOW_S < t <= start)
            return self.FIRST_CUT * sent / self.RATE_WINDOW_S, None
        if served == 0 or since is None:
            return None  # nothing served: an outage or a storm of 429s, which tells nothing of the rate
        hi = sent_at or self._rate  # the rate that spaced the refused request
        peak, self._refused_peak = self._refused_peak, max(self._refused_peak, hi)
        if (
            self._anchor is not None
            and hi <= min(self._anchor, self.EARLY * peak)
            and start - since >= self.PROBE_S / 2
        ):
            # a lone refusal long after the last, under the anchor and well under the rates refused before: a
            # request that arrived early (a client's timing is never exact, and a strict limiter minds), not a
            # lower limit, which would refuse again soon
            anchor = self.ANCHOR * self._anchor
            return self.BACKOFF * anchor, anchor
        resume = min(start, max(since, self.paused_until))
        lo = served / (start - since) if start > since else 0.0
        if start > resume:
            lo = max(lo, (served - self._burst_max) / (start - resume))
        # A rate that crossed the limit while growing (rather than restarted above it: then the first request
        # after the pause, which the refill serves, is the only one served) was refused within a step (taken
        # at its middle) and sqrt(slope * burst) of the crossing.
        if sum(1 for t in self._served if resume <= t < start) >= 2:
            step = self._step(hi) if self._anchor is None else 0.0
            hidden = math.sqrt(self._slope(hi) * max(0.0, self._burst_max - self.NO_BURST))
            lo = max(lo, hi - step / 2 - hidden)
        lo = min(lo, hi)
        recent = lo
        window_from = max(resume, start - max(self.RECENT_S, self.RECENT_SERVED / hi))
        count = sum(1 for t in self._served if window_from <= t < start)
        if count >= 3 and start > window_from:
            recent = max(lo, count / (start - window_from))
        return max(lo, self.FIRST_CUT * hi), self.ANCHOR * max(min(hi, recent), self._decrease * hi)
