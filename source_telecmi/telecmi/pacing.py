"""Adaptive pacing of TeleCMI requests: a concurrency level (AIMD, as TCP) and, once TeleCMI refuses, a rate.

TeleCMI documents no rate limit, so the connector finds it. The level bounds the requests in flight
(down to 0.7 of itself on a round of 429s, up by about one a round); the rate, none until the first
429, bounds how many start per second: set from what the limiter was seen to grant between
refusals, restarted just under that estimate and grown as a cubic of the time (as TCP CUBIC). A 429
also pauses every worker; TeleCMI's Retry-After wins when it is a real hint. The whole design, with
why each rule is there: docs/pacing.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

from source_telecmi.telecmi.rate import Rate


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
        self._cond = threading.Condition()
        # .seq, .start, .rate: the number of the request this thread sent last, when, and the rate then
        self._local = threading.local()
        self._level = float(ceiling)
        self._in_flight = 0
        self._sent = 0  # the number the next request gets
        self._round_start = 0  # requests numbered below this were sent before the last decrease
        self._resume_at = -math.inf
        self._next_pause_s = self._first_pause_s
        self._limited_since: Optional[float] = None  # the first 429 since the last answer
        self._last_log_at = -math.inf
        self._unlogged = 0
        self._counts = {"answered": 0, "rate_limited": 0, "decreases": 0}
        self._lowest = float(ceiling)
        self._limit_seen: Optional[float] = None  # the level at the last decrease
        self._rates = Rate(clock, self.DECREASE)

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
        pause = self._resume_at - now
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
        self._rates.started(now)
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
        """A 429 was read: lower L and R once per round and pause every worker. Returns the pause left, in seconds."""
        with self._cond:
            now = self._clock()
            self._counts["rate_limited"] += 1
            if self._limited_since is None:
                self._limited_since = now
            self._check_patience(now)
            new_round = self._this_round()
            if retry_after_s is not None and 0.0 < retry_after_s <= self.MAX_RETRY_AFTER_S:
                pause = retry_after_s * self._wait_scale
            elif new_round:  # no Retry-After, or one that is no hint: our own pause
                pause = self._next_pause_s
                self._next_pause_s = min(self._longest_pause_s, pause * 2)
            else:
                pause = 0.0  # a late 429 of the round already paused for
            self._rates.paused_until = self._resume_at
            self._resume_at = max(self._resume_at, now + pause)
            local = self._local
            estimate = self._rates.refused(
                getattr(local, "seq", None),
                getattr(local, "start", None),
                getattr(local, "rate", None),
                new_round,
                first_round=self._counts["decreases"] == (0 if new_round else 1),
            )
            if new_round:
                before = self._level
                self._limit_seen = self._level
                self._level = max(1.0, self._level * self.DECREASE)
                self._round_start = self._sent
                self._counts["decreases"] += 1
                self._lowest = min(self._lowest, self._level)
                self._rates.restart(estimate, at=self._resume_at)
                self._log_change(before, f"TeleCMI is rate limiting (HTTP 429); pausing {pause:.1f} s")
            return max(0.0, self._resume_at - now)

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
