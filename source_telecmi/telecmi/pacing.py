"""Adaptive pacing of TeleCMI requests: a concurrency level (AIMD, as TCP) and, once TeleCMI refuses, a rate.

TeleCMI documents no rate limit, so the connector finds it. The level bounds the requests in flight
(down to 0.7 of itself on a round of 429s, up by about one a round); the rate, none until the first
429 (or what an earlier sync learned), bounds how many start per second: set from what the limiter
was seen to grant between refusals, restarted just under that estimate and grown as a cubic of the
time (as TCP CUBIC), with a margin between starts for the client's own timing. A lone 429 while
answers flow costs one interval of the rate, and its Retry-After holds only the refused request;
while 429s keep coming, every worker pauses, and TeleCMI's Retry-After wins when it is a real hint.
The whole design, with why each rule is there: docs/pacing.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

from source_telecmi.telecmi.memory import Learned
from source_telecmi.telecmi.pacing_log import Snapshot
from source_telecmi.telecmi.rate import KEEP, Rate


class RateLimitExhausted(Exception):
    """TeleCMI rate limited us for longer than our patience: failing beats waiting forever."""


class Pacer:
    """The shared level and rate, the requests in flight, and the pause after a 429; safe under many threads.

    Callers report each answer from the thread that sent the request (`answered` or `rate_limited`):
    the pacer remembers per thread which request it sent last, when, and at what rate, to tell this
    round's answers from the answers to requests sent before the last decrease, and to estimate the
    rate TeleCMI allows.
    """

    _POLL_S = 0.5  # a waiting thread re-checks at least this often, so a missed wake-up cannot hang it
    # On a 429 the level is multiplied by this: gentler than halving, since the level counts whole
    # requests in flight and 3 -> 1.5 would run at one request where two fit.
    DECREASE = 0.7
    # Near the level of the last 429, the level grows this many times slower: probing the limit
    # again costs a refused request, so it is done rarely once the limit is known.
    SLOW_NEAR_LIMIT = 8
    # A Retry-After longer than this (in TeleCMI's seconds, before `wait_scale`) is no hint. Rate limits
    # count per second or per minute; ten minutes is two thirds of the patience (15 minutes), so one odd
    # header would fail the sync; such a value is likelier a unit misread (milliseconds) or the end of a
    # daily quota, which no pause within patience outlasts anyway.
    MAX_RETRY_AFTER_S = 600.0
    # A 429 after this many answers since the last round, once there is a rate, is lone: it pauses every
    # worker for LONE_PAUSE intervals of the rate only (at most the first pause), and its Retry-After holds
    # the refused request only.
    LONE_SERVED = 8
    LONE_PAUSE = 1.0

    def __init__(
        self,
        ceiling: int,
        logger: logging.Logger,
        *,
        patience_s: float = 900.0,
        first_pause_s: float = 1.0,
        longest_pause_s: float = 30.0,
        wait_scale: float = 1.0,
        log_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"The concurrency ceiling must be at least 1, not {ceiling}")
        self._ceiling = ceiling
        self._logger = logger
        self._patience_s = patience_s * wait_scale
        self._first_pause_s = first_pause_s * wait_scale
        self._longest_pause_s = longest_pause_s * wait_scale
        self._wait_scale = wait_scale
        self._log_interval_s = log_interval_s
        self._clock = clock
        self._sleep = sleep
        self._wall_ms = wall_ms
        self._cond = threading.Condition()
        # .seq, .start, .rate: the number of the request this thread sent last, when, and the rate then
        self._local = threading.local()
        self._level = float(ceiling)
        self._in_flight = 0
        self._sent = 0  # the number the next request gets
        self._round_start = 0  # requests numbered below this were sent before the last decrease
        self._round_served = 0  # answers of this round
        self._round_lone = False  # whether this round began with a lone 429
        self._resume_at = -math.inf
        self._next_pause_s = self._first_pause_s
        self._limited_since: Optional[float] = None  # the first 429 since the last answer
        self._last_log_at = -math.inf
        self._unlogged = 0
        self._counts = {"answered": 0, "rate_limited": 0, "decreases": 0}
        self._lowest = float(ceiling)
        self._limit_seen: Optional[float] = None  # the level at the last decrease
        self._rates = Rate(clock, self.DECREASE)
        self._confirmed_ms: Optional[int] = None  # when a 429 last confirmed the estimate (epoch ms)
        self._paused_s = 0.0

    @property
    def level(self) -> float:
        return self._level

    @property
    def rate(self) -> Optional[float]:
        """The requests a second that may start; None until TeleCMI refuses one."""
        return self._rates.value

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def ceiling(self) -> int:
        return self._ceiling

    def stats(self) -> dict:
        with self._cond:
            return {**self._counts, "lowest_level": self._lowest}

    def snapshot(self) -> Snapshot:
        with self._cond:
            return Snapshot(self._sent, self._counts["rate_limited"], self._paused_s, self._rates.anchor)

    def resume(self, learned: Optional[Learned]) -> None:
        """Start from what an earlier sync learned (None: nothing, probe as without)."""
        if learned is None:
            return
        with self._cond:
            self._rates.resume(learned.allowed_rate, learned.margin_ms / 1000.0, self._clock())
            self._confirmed_ms = learned.confirmed_at

    def learned(self) -> Optional[Learned]:
        """What this sync knows of the allowed rate, for the next: None while there is no estimate."""
        with self._cond:
            anchor = self._rates.anchor
            if anchor is None or self._confirmed_ms is None:
                return None
            return Learned(round(anchor, 4), self._confirmed_ms, round(self._rates.margin_s * 1000.0, 3))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the floor(L) slots while sending a request; waits out any pause, and the rate, first."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _acquire(self) -> None:
        while True:
            with self._cond:
                wait = self._try_acquire()
                if wait is None:
                    return
                if math.isinf(wait):
                    self._cond.wait(self._POLL_S)  # woken by a release or a rise of the level
                    continue
            self._sleep(wait)  # outside the lock: a pause or the rate is a wall-clock wait, not a slot wait

    def _try_acquire(self) -> Optional[float]:
        """Take a slot now and return None, or return how long to wait (inf: until a slot is released)."""
        now = self._clock()
        self._check_patience(now)
        pause = max(self._resume_at, getattr(self._local, "held_until", -math.inf)) - now
        if pause > 0:
            if self._limited_since is not None:  # wake in time to give up, not after a long Retry-After
                pause = min(pause, self._limited_since + self._patience_s - now)  # > 0: patience is not over
            return pause
        if self._in_flight >= int(self._level):  # L >= 1, so one request always gets through
            return math.inf
        wait = self._rates.wait(now)  # of the rate now: a rise applies at once
        if wait > 0:
            return min(wait, self._POLL_S)
        self._in_flight += 1
        self._local.seq, self._local.start, self._local.rate = self._sent, now, self._rates.value
        self._local.gap = self._rates.started(now)
        self._sent += 1
        return None

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def answered(self) -> None:
        """A request got a usable (non-429) answer: patience restarts, and this round's answers raise L and R."""
        with self._cond:
            self._counts["answered"] += 1
            self._limited_since = None
            self._rates.served(getattr(self._local, "start", None))
            if not self._this_round():
                return  # sent before the last decrease: its success says nothing about the new level
            self._next_pause_s = self._first_pause_s
            self._round_served += 1
            self._rates.grow()
            if self._level < self._ceiling:
                before = self._level
                step = 1.0 / self._level
                if self._limit_seen is not None and self._level + 1.0 >= self._limit_seen:
                    step /= self.SLOW_NEAR_LIMIT
                self._level = min(float(self._ceiling), self._level + step)
                self._log_change(before, "answers flowing")
                self._cond.notify_all()

    def rate_limited(self, retry_after_s: Optional[float]) -> float:
        """A 429 was read: lower L and R once per round, and pause. Returns the pause left for this thread, in seconds.

        A lone 429 (answers flowed since the last round, and there is a rate) pauses every worker for an interval
        of the rate, and its Retry-After holds this thread only; otherwise every worker pauses,
        for TeleCMI's Retry-After when it is a real hint, else for the pacer's own pause, doubling while 429s
        continue."""
        with self._cond:
            now = self._clock()
            self._counts["rate_limited"] += 1
            if self._limited_since is None:
                self._limited_since = now
            self._check_patience(now)
            new_round = self._this_round()
            hint = None
            if retry_after_s is not None and 0.0 < retry_after_s <= self.MAX_RETRY_AFTER_S:
                hint = retry_after_s * self._wait_scale
            if new_round:
                self._round_lone = self._rates.value is not None and self._round_served >= self.LONE_SERVED
            local = self._local
            self._rates.paused_until = self._resume_at
            estimate = self._rates.refused(
                getattr(local, "seq", None),
                getattr(local, "start", None),
                getattr(local, "rate", None),
                new_round,
                first_round=self._counts["decreases"] == (0 if new_round else 1),
                gap=getattr(local, "gap", None),
            )
            if self._round_lone:  # a lone 429, or a late one of its round
                rate = self._rates.value or 1.0
                pause = min(self._first_pause_s, self.LONE_PAUSE / rate) if new_round else 0.0
                if hint is not None:
                    local.held_until = now + hint
            elif hint is not None:
                pause = hint
            elif new_round:  # no Retry-After, or one that is no hint: our own pause
                pause = self._next_pause_s
                self._next_pause_s = min(self._longest_pause_s, pause * 2)
            else:
                pause = 0.0  # a late 429 of the round already paused for
            self._paused_s += max(0.0, now + pause - max(now, self._resume_at))
            self._resume_at = max(self._resume_at, now + pause)
            if new_round:
                before = self._level
                self._limit_seen = self._level
                self._level = max(1.0, self._level * self.DECREASE)
                self._round_start = self._sent
                self._round_served = 0
                self._counts["decreases"] += 1
                self._lowest = min(self._lowest, self._level)
                self._rates.restart(estimate, at=self._resume_at)
                if estimate is KEEP or (estimate is not None and self._rates.anchor is not None):
                    self._confirmed_ms = self._wall_ms()
                self._log_change(before, f"TeleCMI is rate limiting (HTTP 429); pausing {pause:.1f} s")
            return max(0.0, max(self._resume_at, getattr(local, "held_until", -math.inf)) - now)

    def _this_round(self) -> bool:
        """Whether this thread's last request was sent after the last decrease (or it sent none through us)."""
        seq = getattr(self._local, "seq", None)
        return seq is None or seq >= self._round_start

    def _check_patience(self, now: float) -> None:
        if self._limited_since is not None and now >= self._limited_since + self._patience_s:
            lasted = round(now - self._limited_since, 1)
            raise RateLimitExhausted(
                f"TeleCMI kept answering 429 (rate limited) for {lasted:g} s without serving a request"
            )

    def _log_change(self, before: float, why: str) -> None:
        """One INFO line per whole step of L, at most one every `log_interval_s`; skipped lines are counted."""
        if int(before) == int(self._level):
            return
        now = self._clock()
        if now - self._last_log_at < self._log_interval_s:
            self._unlogged += 1
            return
        skipped = f" ({self._unlogged} earlier changes not logged)" if self._unlogged else ""
        self._logger.info("Concurrency %d -> %d: %s%s", int(before), int(self._level), why, skipped)
        self._last_log_at, self._unlogged = now, 0
