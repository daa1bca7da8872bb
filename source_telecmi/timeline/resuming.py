"""Where a sync starts: what a saved state has finished, less the lookback, from the start of the
audited window holding that point (the last sync's trail)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional


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
