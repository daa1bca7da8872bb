"""Cutting a range into windows sized by the call density TeleCMI reports, exactly once each, and
keeping no long window where the next sync's lookback point may fall."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Optional, TypeVar

from source_telecmi.timeline.instants import DAY_MS, Window

# The first window of a range; later windows grow or shrink with the density TeleCMI reports.
FIRST_WINDOW_MS = DAY_MS


# TeleCMI documents no maximum window; its own sample spans 61 days. Stay well inside that.
LONGEST_WINDOW_MS = 30 * DAY_MS


# How far one window may grow or shrink relative to the one before it.
RESIZE_FACTOR = 4


T = TypeVar("T")


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
