"""The pacer's rate: how many requests may start a second, none until TeleCMI refuses one (or a sync learned it).

Set from what the limiter was seen to grant between refusals, restarted just under that estimate
and grown as a cubic of the time (as TCP CUBIC); before a round is known, doubling. Requests start
1/rate apart plus a margin for the client's own timing, widened by a refusal that came early and
narrowed while none does. Every rule and why: docs/pacing.md. Not thread-safe on its own: the pacer
calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Optional

# What a refusal tells `restart`: the rate to restart from and the anchor (None: doubling); None: nothing (a
# storm); KEEP: the estimate stands (a request that arrived early: the margin was widened instead).
Estimate = Optional[tuple[float, Optional[float]]]
KEEP = (math.nan, None)


class Rate:
    """The rate R, the margin, and everything their estimate of the allowed rate is made of."""

    # Doubling, it doubles every DOUBLING_S, by at most MAX_STEP (or one request a second) from one answer to
    # the next. After a round, the anchor is ANCHOR of the estimated allowed rate, and at least the pacer's
    # decrease of the rate refused; R restarts at BACKOFF of the anchor, or at the lower bound if less but never
    # under FIRST_CUT of the rate refused; the cubic is back at the anchor after PROBE_S. A learned estimate
    # restarts at RESUME of itself.
    DOUBLING_S = 0.5
    MAX_STEP = 0.2
    PROBE_S = 20.0
    ANCHOR = 0.98
    BACKOFF = 0.95
    RESUME = 0.99
    FIRST_CUT = 0.5
    RATE_WINDOW_S = 1.0  # the rate before the first 429 is the requests of this last window
    RECENT_S, RECENT_SERVED = 2.0, 8  # "what was served just before a 429": this long, or this many requests
    NO_BURST = 2  # served before the first 429: this many are no sign of a burst (sequential requests, refills)
    MIN_RATE = 0.05  # requests per second: one every 20 s
    # A refusal at most EARLY_ABOVE of the anchor while refusals are seldom (`_seldom`) is a request that arrived
    # early: the margin widens by MARGIN_STEP_S (up to MAX_MARGIN of the interval) and narrows back by
    # MARGIN_STEP_S * MARGIN_TARGET per answer, which makes about one early refusal every 1 / MARGIN_TARGET
    # requests; past the anchor, the cubic restarts at EARLY_BACKOFF of it. Refused again before EARLY_AFTER
    # answers, it was no accident.
    EARLY_ABOVE = 1.03
    EARLY_WINDOW, EARLY_MOST = 50, 2
    EARLY_S, EARLY_SHARE = 3.0, 0.8
    EARLY_BACKOFF = 0.99
    EARLY_AFTER = 8
    MARGIN_STEP_S = 0.001
    MARGIN_TARGET = 0.005
    MAX_MARGIN = 0.25

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
        self.margin_s = 0.0  # added to 1/rate between two starts: the client's timing is never exact
        self.last_start = -math.inf  # while there is a rate, the next request starts 1/rate + margin after this
        self._starts: deque[float] = deque()  # until the first 429: when the requests of the last second started
        self._served: deque[float] = deque()  # after it: when the requests answered in the last 10 s started
        self._burst_max = math.inf  # at most what the limiter held at the start: what it served before refusing
        self._refused_seq = -1  # the latest-sent request answered 429 ...
        self._refused_start: Optional[float] = None  # ... and when it was sent
        self._refusals: deque[int] = deque()  # the numbers of the requests refused lately
        # the last refusal taken for early, until the next: the answers before it, the refusal before those, and the
        # end of the pause before it
        self._early: Optional[tuple[int, float, float]] = None
        self._widened: deque[tuple[int, float]] = deque()  # lately: the margin each refusal taken for early added
        self.paused_until = -math.inf  # the end of the pause before the current one

    @property
    def value(self) -> Optional[float]:
        """The requests a second that may start; None until TeleCMI refuses one."""
        return self._rate

    @property
    def anchor(self) -> Optional[float]:
        """The estimate of the allowed rate the cubic is centred on; None without one (no 429 yet, or doubling)."""
        return self._anchor

    def wait(self, now: float) -> float:
        """How long the next request waits for the rate (0 or less: none)."""
        return -math.inf if self._rate is None else self.last_start + 1.0 / self._rate + self.margin_s - now

    def started(self, now: float) -> float:
        """A request starts now; returns the time since the one before."""
        gap, self.last_start = now - self.last_start, now
        if self._rate is None:
            self._starts.append(now)
            while self._starts[0] <= now - self.RATE_WINDOW_S:
                self._starts.popleft()
        return gap

    def served(self, start: Optional[float]) -> None:
        """The request started at `start` was served."""
        if self._rate is not None and start is not None:
            self._served.append(start)
            while len(self._served) > 4096 or self._served[0] < start - 10.0:
                self._served.popleft()

    def resume(self, allowed: float, margin_s: float, at: float) -> None:
        """Start from what an earlier sync learned: just under `allowed`, along the cubic anchored there."""
        self._anchor = max(self.MIN_RATE, allowed)
        self._rate = self._restart = max(self.MIN_RATE, self.RESUME * self._anchor)
        self.margin_s = min(max(0.0, margin_s), self.MAX_MARGIN / self._anchor)
        self._grown_at = self._anchored_at = at
        self._refused_start = at  # what is served from now on was granted from now on (but a burst)

    def grow(self) -> None:
        """A request of this round was served: doubling, or along the cubic back to the anchor and past it."""
        if self._rate is None:
            return
        self.margin_s = max(0.0, self.margin_s - self.MARGIN_STEP_S * self.MARGIN_TARGET)
        now = self._clock()
        if self._anchor is not None and self._rate >= 2 * self._anchor:
            self._anchor, self._grown_at = None, now  # twice the anchor without a 429: the limit may have gone
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

    def restart(self, estimate: Estimate, at: float) -> None:
        """A new round: restart from `estimate` (`refused`'s), the cubic anchored at `at`, the end of the pause."""
        self.last_start = -math.inf  # the pause spaces the first request after it, not the rate
        if estimate is KEEP:
            return  # the cubic goes on
        if estimate is not None:
            restart, self._anchor = estimate
            self._rate = self._restart = max(self.MIN_RATE, restart)
        self._grown_at = self._anchored_at = at

    def refused(
        self,
        seq: Optional[int],
        start: Optional[float],
        sent_at: Optional[float],
        new_round: bool,
        first_round: bool,
        gap: Optional[float] = None,
    ) -> Estimate:
        """Note a refused request (numbered `seq`, started at `start`, `gap` after the one before, when the rate
        was `sent_at`); on a new round, what to restart from (`Estimate`). In the first round every request sent
        before its earliest refused one was served."""
        if seq is None or start is None:
            return None
        if first_round:
            self._burst_max = min(self._burst_max, seq)
        self._refusals.append(seq)
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
        hi = sent_at or self._rate  # the rate that spaced the refused request
        early, self._early = self._early, None
        if early is not None and served < self.EARLY_AFTER:
            # refused again right after one taken for early: the limiter had little left, so that one was no
            # accident; the two epochs it split are one
            served_before, since, self.paused_until = early
            return self._crossed(seq, served_before + served, start, since, hi, gap)
        if served == 0 or since is None:
            return None  # nothing served: an outage or a storm of 429s, which tells nothing of the rate
        resume = min(start, max(since, self.paused_until))
        if not any(resume <= t < start for t in self._served):
            return None  # the first request after a pause, which the rate did not space: the pause was too short
        if self._anchor is not None and hi <= self.EARLY_ABOVE * self._anchor and self._seldom(seq, start, hi):
            # under the estimate (or just past it), and refusals seldom: a request that arrived early (a client's
            # timing is never exact, and a strict limiter minds), not a lower limit, which refuses more; the
            # margin widens, and the estimate stands
            widened = max(0.0, min(self.MARGIN_STEP_S, self.MAX_MARGIN / hi - self.margin_s))
            self.margin_s += widened
            self._widened.append((seq, widened))
            while self._widened[0][0] <= seq - self.EARLY_WINDOW:
                self._widened.popleft()
            self._early = (served, since, self.paused_until)
            if hi <= self._anchor:
                return KEEP
            return self.EARLY_BACKOFF * self._anchor, self._anchor  # probing past the anchor: not yet
        return self._crossed(seq, served, start, since, hi, gap)

    def _crossed(self, seq: int, served: int, start: float, since: float, hi: float, gap: Optional[float]) -> Estimate:
        """The rate crossed the limit: the estimate from `_bounds`; the margin the last EARLY_WINDOW requests added is
        taken back (those refusals were the limit's, not early arrivals)."""
        while self._widened:
            number, widened = self._widened.pop()
            if number > seq - self.EARLY_WINDOW:
                self.margin_s = max(0.0, self.margin_s - widened)
        return self._bounds(served, start, since, hi, gap)

    def _seldom(self, seq: int, start: float, hi: float) -> bool:
        """Whether refusals are seldom up to request `seq`, started at `start` at the rate `hi`: at most EARLY_MOST
        of the last EARLY_WINDOW requests sent, and what was served in the last EARLY_S seconds at least
        EARLY_SHARE of what the rate and the margin let start (a limiter that throttles serves less)."""
        while self._refusals and (self._refusals[0] <= seq - self.EARLY_WINDOW or len(self._refusals) > 64):
            self._refusals.popleft()
        if sum(1 for n in self._refusals if seq - self.EARLY_WINDOW < n <= seq) > self.EARLY_MOST:
            return False
        served = sum(1 for t in self._served if start - self.EARLY_S <= t < start)
        return served / self.EARLY_S >= self.EARLY_SHARE / (1.0 / hi + self.margin_s)

    def _bounds(self, served: int, start: float, since: float, hi: float, gap: Optional[float]) -> Estimate:
        """The estimate of a round from what was served between the last two refusals (see docs/pacing.md)."""
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
        if self._burst_max <= self.NO_BURST and gap is not None and gap > 0:
            # no burst to hide behind: the refused request itself, 1/gap after the one before, went too fast
            recent = max(recent, 1.0 / gap)
        anchor = self.ANCHOR * max(min(hi, recent), self._decrease * hi)
        return min(max(lo, self.FIRST_CUT * hi), self.BACKOFF * anchor), anchor
