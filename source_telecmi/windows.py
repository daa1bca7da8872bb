"""Reading a window of calls exactly once, whatever TeleCMI's paging does.

A window is the unit of truth: it is checkpointed only when the calls TeleCMI returned for it
account for the `count` it reported. Its first page is the count probe; every page is its own
partition, read in parallel. TeleCMI's paging is not trusted: the page size is learned from the
answers (it may serve 10 when 20 were asked), and the order is not promised (calls that share a
millisecond may come back in another order on every request, so pages overlap and leave gaps).
When a window's pages fall short of its count, the window is read again, then in smaller pieces
(split by time, so that each piece needs fewer pages; a millisecond holding many calls is read
again until what it returns stops growing), within a bounded number of requests. What still does
not add up ends the sync with an error, unless repeated complete reads agree with each other: then
TeleCMI's count is what is wrong, and the window is accepted with a warning that says so.

Records are reconciled by content, not by key: the same call read twice is emitted once, two
records that share a `cmiuid` but differ are both emitted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import orjson
from airbyte_cdk.models import (
    AirbyteEstimateTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    EstimateType,
    FailureType,
    TraceType,
    Type,
)
from airbyte_cdk.sources.message import MessageRepository
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.types import Record
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi import AccessRefused, CallEndpoint, Page
from source_telecmi.timeline import Window, WindowPlanner, estimate_total, iterate_windows

# A window that does not add up may spend this many requests (at least) on being read again.
LEAST_REREAD_REQUESTS = 200
REREAD_REQUESTS_PER_PAGE = 8
# A busy millisecond is read as a piece of this span, with a millisecond of margin on each side: a
# piece's request reaches one millisecond past each end (see timeline.Window), so its neighbours'
# requests must not reach the busy millisecond itself.
BUSY_PIECE_SPAN = 3
# A busy millisecond is read again at most this often, and is settled once this many reads in a row
# add nothing. Its calls come back in a new order on every request: with 37 calls in pages of 10, a
# read misses a given call about 28% of the time, so 3 quiet reads would blame the count for a
# call merely not drawn yet about 2% of the time; 8 quiet reads, 0.004%.
MOST_READS_OF_ONE_MS = 60
STABLE_READS = 8

Shape = Callable[[dict[str, Any], Optional[int]], dict[str, Any]]


class PagingError(AirbyteTracedException):
    """TeleCMI's answers for a window cannot be made to add up: the sync stops rather than skip calls."""

    def __init__(self, stream: str, window: Window, problem: str) -> None:
        super().__init__(
            message=f"Stream {stream}: calls {window}: {problem}. The sync stops rather than skip calls; "
            "its last state is safe to resume from.",
            failure_type=FailureType.system_error,
        )


def fingerprint(record: dict[str, Any]) -> bytes:
    """A record's identity: its whole content, as TeleCMI sent it."""
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class PageSize:
    """The page size TeleCMI serves on one endpoint, learned from its answers.

    A page shorter than the `limit` asked while the count says more calls follow shows the size
    TeleCMI really serves; later pages are asked with that size, so that page N starts where N-1
    ended whichever way TeleCMI counts its offsets.
    """

    def __init__(self, largest: int, name: str, logger: logging.Logger) -> None:
        self.largest = largest
        self._served: Optional[int] = None
        self._name = name
        self._logger = logger
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._served or self.largest

    def learn(self, asked: int, page: Page, number: int) -> None:
        """Learn from page `number`: only a first page tells the size (a later one may be the last)."""
        served = len(page.records)
        if (
            number == 1
            and 0 < served < asked
            and served < page.count
            and (self._served is None or served > self._served)
        ):
            with self._lock:
                if self._served is None or served > self._served:
                    self._served = served
                    self._logger.info(
                        "Stream %s: TeleCMI serves pages of %d calls (asked for %d); reading pages of %d",
                        self._name,
                        served,
                        asked,
                        served,
                    )


@dataclass
class RangeRead:
    """What one complete sequential read of a range returned."""

    found: set[bytes]
    count: int
    anomaly: Optional[str]
    times: dict[bytes, int]  # when each call found was made
    again: set[int]  # when calls were made that one page served again after another: their order moves


@dataclass
class Probe:
    """What probing a window found: its first page, the page size, how many pages hold calls, pages read."""

    first: Page
    size: int
    pages: int
    read: dict[int, Page]

    @property
    def calls(self) -> int:
        """The calls the window seems to hold: its count, or what its pages can hold if fewer."""
        return min(self.first.count, self.pages * self.size)


class StreamReader:
    """What the windows of one stream share: the endpoint, the page size, the shaping of records."""

    def __init__(
        self,
        stream: str,
        endpoint: CallEndpoint,
        shape: Shape,
        instant: Callable[[dict[str, Any]], Optional[int]],
        logger: logging.Logger,
    ) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.page_size = PageSize(endpoint.call_api.largest_page, stream, logger)
        self.logger = logger
        self._shape = shape
        self._instant = instant
        self._timeless: set[bytes] = set()
        self._lock = threading.Lock()

    def instant(self, record: dict[str, Any]) -> Optional[int]:
        return self._instant(record)

    def page(self, window: Window, number: int, limit: Optional[int] = None) -> tuple[Page, int]:
        asked = limit or self.page_size.size
        page = self.endpoint.page(window.request_from, window.request_to, number, asked)
        self.page_size.learn(asked, page, number)
        return page, asked

    def probe(self, window: Window, most_calls: int, expected: Optional[float] = None) -> Probe:
        """Page 1 of a window and, when its count is far above what the windows before it held, its last page.

        A count no page reaches is found out before it is paged: if the last page the count asks
        for is empty, the last page with calls is searched for (a count inflated by a thousand then
        costs ten requests, not a hundred); otherwise the last page is read here once, not again.
        """
        first, asked = self.page(window, 1)
        size = page_size_of(first, asked, self.page_size.size)
        pages = max(1, math.ceil(calls_in(first, size) / size))
        probe = Probe(first, size, pages, {1: first})
        usual = expected is not None and first.count <= 1.5 * expected + size
        if pages == 1 or first.count > most_calls or usual:
            return probe
        low, high = 1, pages  # page `low` has calls; is `high` the last one?
        last, _ = self.page(window, high, size)
        probe.read[high] = last
        if last.records:
            return probe
        while high - low > 1:
            middle = (low + high) // 2
            page, _ = self.page(window, middle, size)
            probe.read[middle] = page
            low, high = (middle, high) if page.records else (low, middle)
        probe.pages = low
        probe.read = {n: p for n, p in probe.read.items() if n <= low}
        return probe

    def owned(self, window: Window, record: dict[str, Any], key: bytes) -> Optional[dict[str, Any]]:
        """The record, shaped, if this window is the one to emit it; None if another window owns it."""
        instant = self._instant(record)
        if instant is None:
            with self._lock:
                if key in self._timeless:
                    return None
                self._timeless.add(key)
                seen = len(self._timeless)
            self.logger.warning(
                "Stream %s: a call read in %s has no usable time (%r): emitted once, without a cursor value "
                "(%d such calls so far)",
                self.stream,
                window,
                record.get("time"),
                seen,
            )
            return self._shape(record, None)
        return self._shape(record, instant) if window.holds(instant) else None


class WindowRead:
    """The read of one window, shared by the partitions of its pages."""

    def __init__(self, reader: StreamReader, window: Window, probe: Probe) -> None:
        self.reader = reader
        self.window = window
        self.slice = window.as_slice()
        self.size = probe.size
        self.pages = probe.pages
        self._read_already = dict(probe.read)
        self._counts = {probe.first.count}
        self._found: set[bytes] = set()  # returned by requests for this window's own range
        self._emitted: set[bytes] = set()
        self._anomaly: Optional[str] = None
        self._lengths: dict[int, int] = {}
        self._times: dict[bytes, int] = {}
        self._again: set[int] = set()
        self._lock = threading.Lock()
        self._finished = 0

    def read_page(self, number: int) -> list[dict[str, Any]]:
        """The calls of page `number` to emit (new, and owned by this window)."""
        with self._lock:
            page = self._read_already.pop(number, None)
        if page is None:
            page, _ = self.reader.page(self.window, number, self.size)
        with self._lock:
            self._counts.add(page.count)
            self._lengths[number] = len(page.records)
            keys = [fingerprint(r) for r in page.records]
            if page.records and all(k in self._found for k in keys):
                self._anomaly = self._anomaly or f"page {number} repeats calls of other pages"
            when = instants(self.reader, page.records, keys)
            self._again.update(t for k, t in when.items() if k in self._found)
            self._found.update(keys)
            self._times.update(when)
            return self._emit(page.records, keys)

    def _emit(self, records: list[dict[str, Any]], keys: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for record, key in zip(records, keys, strict=True):
            if key not in self._emitted:
                self._emitted.add(key)
                shaped = self.reader.owned(self.window, record, key)
                if shaped is not None:
                    out.append(shaped)
        return out

    def finish_page(self) -> bool:
        """Count a page as read; True for the last page of the window to finish."""
        with self._lock:
            self._finished += 1
            return self._finished == self.pages

    def settle(self) -> Iterator[list[dict[str, Any]]]:
        """Read the window again, in smaller pieces if need be, until it adds up; yields calls not emitted yet."""
        count = max(self._counts)
        if len(self._found) >= count:
            return
        self.reader.logger.warning(
            "Stream %s: calls %s: read %d of the %d calls TeleCMI counted%s; reading the window again so that "
            "no call is skipped.",
            self.reader.stream,
            self.window,
            len(self._found),
            count,
            f" ({self._anomaly})" if self._anomaly else "",
        )
        budget = [max(LEAST_REREAD_REQUESTS, REREAD_REQUESTS_PER_PAGE * self.pages)]
        first = RangeRead(set(self._found), count, self._anomaly or self._gap(), self._times, self._again)
        shortfall = yield from self._settle(self.window, first, budget)
        if shortfall:
            self.reader.logger.warning(
                "Stream %s: calls %s: TeleCMI counted %d more calls than repeated complete reads return, every "
                "time the same calls: its count is wrong. The calls read are emitted and the window checkpointed.",
                self.reader.stream,
                self.window,
                shortfall,
            )

    def _gap(self) -> Optional[str]:
        """A page shorter than the page size with calls on a later page: calls were skipped between them."""
        short = [n for n, length in self._lengths.items() if length < self.size]
        later = [n for n, length in self._lengths.items() if length > 0]
        if short and later and min(short) < max(later):
            return f"page {min(short)} is shorter than {self.size} calls and page {max(later)} has calls"
        return None

    def _settle(self, piece: Window, known: Optional[RangeRead], budget: list[int]) -> Generator[Any, None, int]:
        """Make `piece` add up; returns how many calls TeleCMI counts there but never returns (its count is wrong)."""
        read = yield from self._read_range(piece, budget)
        if known is None:  # the first read of a piece: enough if it adds up
            if len(read.found) >= read.count:
                return 0
            if not read.anomaly:
                known, read = read, (yield from self._read_range(piece, budget))
        known = known or read
        found = known.found | read.found
        if len(found) >= read.count:
            return 0
        if piece.span <= BUSY_PIECE_SPAN:
            return (yield from self._settle_millisecond(piece, found, budget))
        times = {**known.times, **read.times}
        # A millisecond is tied if two calls were found at it, or one call was served twice (it
        # changed places with a call that was not served at all).
        again = known.again | read.again
        tied = len(set(times.values())) < len(times) or bool(again)
        if read.found == known.found and read.count == known.count and not (read.anomaly or known.anomaly or tied):
            return read.count - len(found)  # two complete reads agree: the count is what is wrong
        # Calls that share a millisecond may swap places between reads and hide a call from both: such
        # milliseconds are read on their own before the count can be blamed.
        size = self.reader.page_size.size
        busy_at = 2 if tied and read.found == known.found else None
        shortfall = 0
        for part in split(piece, [*times.values(), *again, *again], read.count, size, busy_at):
            shortfall += yield from self._settle(part, None, budget)
        return shortfall

    def _settle_millisecond(self, piece: Window, found: set[bytes], budget: list[int]) -> Generator[Any, None, int]:
        """Calls that share one millisecond: read again until what they return stops growing."""
        quiet = 0
        for _ in range(MOST_READS_OF_ONE_MS):
            read = yield from self._read_range(piece, budget)
            grown = read.found - found
            found |= read.found
            if len(found) >= read.count:
                return 0
            quiet = 0 if grown else quiet + 1
            if quiet >= STABLE_READS:
                return read.count - len(found)
        raise PagingError(
            self.reader.stream,
            self.window,
            f"TeleCMI counts {read.count} calls at {piece} but returns a different {len(found)} of them on every read",
        )

    def _read_range(self, piece: Window, budget: list[int]) -> Generator[list[dict[str, Any]], None, RangeRead]:
        """Read every page of `piece` one after the other; yields the calls to emit."""
        found: set[bytes] = set()
        counts: list[int] = []
        times: dict[bytes, int] = {}
        again: set[int] = set()
        lengths: list[int] = []
        anomaly = None
        number = 1
        size = self.reader.page_size.size
        while True:
            budget[0] -= 1
            if budget[0] < 0:
                raise PagingError(
                    self.reader.stream,
                    self.window,
                    f"{len(self._found)} of the {max(self._counts)} calls TeleCMI counted could be read, and "
                    "reading the window again in smaller pieces did not find the rest",
                )
            page, asked = self.reader.page(piece, number, size)
            counts.append(page.count)
            keys = [fingerprint(r) for r in page.records]
            if page.records and all(k in found for k in keys):
                anomaly = f"page {number} repeats calls of other pages"
                break  # the pages after it cannot be trusted either: smaller pieces will do
            when = instants(self.reader, page.records, keys)
            again.update(t for k, t in when.items() if k in found)
            found.update(keys)
            lengths.append(len(page.records))
            times.update(when)
            with self._lock:
                if piece == self.window:
                    self._found.update(keys)
                emit = self._emit(page.records, keys)
            if emit:
                yield emit
            if number == 1:
                size = page_size_of(page, asked, size)
            if not page.records or number * size >= max(counts):
                break
            number += 1
        short = [n for n, length in enumerate(lengths) if length < size]
        if short and any(lengths[short[0] + 1 :]):
            anomaly = anomaly or f"page {short[0] + 1} is shorter than {size} calls and a later page has calls"
        return RangeRead(found, max(counts), anomaly, times, again)


def instants(reader: StreamReader, records: list[dict[str, Any]], keys: list[bytes]) -> dict[bytes, int]:
    """When each call was made, by its fingerprint (calls without a usable time left out)."""
    found = {}
    for record, key in zip(records, keys, strict=True):
        instant = reader.instant(record)
        if instant is not None:
            found[key] = instant
    return found


def calls_in(first: Page, size: int) -> int:
    """The calls a window seems to hold, judged by its first page.

    A first page shorter than the page size probably ends the window, whatever the count says:
    its other pages are not read in parallel (the window is read again, one page after the other,
    if the count is not reached, so a short page in the middle loses nothing).
    """
    served = len(first.records)
    return served if served < size else first.count


def page_size_of(first: Page, asked: int, learned: int) -> int:
    """The page size to read a range with, from its first page: shorter than asked while more follow is what TeleCMI serves."""
    served = len(first.records)
    return served if 0 < served < asked and served < first.count else max(1, min(asked, learned))


def split(piece: Window, times: list[int], count: int, page_size: int, busy_at: Optional[int] = None) -> list[Window]:
    """Cut `piece` into windows that need about one page each, a busy millisecond apart.

    A millisecond holding `busy_at` of the calls seen (half a page unless said) is a piece of its own, with a millisecond of
    margin each side (its calls can only be told apart by reading it again); the rest is cut into
    equal spans, as many as the count needs pages. There are always at least two parts.
    """
    inside = [t for t in times if piece.first <= t <= piece.last]
    busy_at = busy_at or max(2, page_size // 2)
    tally: dict[int, int] = {}
    for instant in inside:
        tally[instant] = tally.get(instant, 0) + 1
    busy = sorted(t for t, n in tally.items() if n >= busy_at)
    if not busy and len(tally) == 1:
        busy = list(tally)
    parts: list[Window] = []

    def spans(first: int, last: int, least: int) -> None:
        if first > last:
            return
        share = count * (last - first + 1) // piece.span
        pieces = min(last - first + 1, max(least, min(64, math.ceil(share / max(1, page_size)))))
        step = math.ceil((last - first + 1) / pieces)
        parts.extend(Window(a, min(last, a + step - 1)) for a in range(first, last + 1, step))

    start = piece.first
    for at in busy:
        low, high = max(at - 1, start), min(at + 1, piece.last)
        if low > high:
            continue
        spans(start, low - 1, 1)
        parts.append(Window(low, high))
        start = high + 1
    spans(start, piece.last, 1 if parts else 2)
    return parts


class Backlog:
    """Bounds how far the probing of windows runs ahead of the reading of their pages.

    Memory stays flat however many calls a sync reads, counts are fresh when pages are read, and
    checkpoints follow each other closely. If no page finishes for `patience_s` (the readers are
    gone: the sync is failing), probing goes on rather than block.
    """

    def __init__(self, most_pages: int, patience_s: float = 30.0) -> None:
        self._most_pages = most_pages
        self._patience_s = patience_s
        self._pending = 0
        self._changed = threading.Condition()

    def add(self, pages: int) -> None:
        with self._changed:
            self._pending += pages

    def done(self) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()

    def wait_for_room(self) -> None:
        with self._changed:
            while self._pending > self._most_pages:
                if not self._changed.wait(timeout=self._patience_s):
                    return


class PagePartition(Partition):
    """One page of one window."""

    def __init__(self, read: WindowRead, number: int, backlog: Backlog) -> None:
        self._read = read
        self._number = number
        self._backlog = backlog

    def read(self) -> Iterable[Record]:
        window_read = self._read
        try:
            yield from self._records(window_read.read_page(self._number))
            # The last page of a window to finish makes the window add up before it can be checkpointed.
            if window_read.finish_page():
                for batch in window_read.settle():
                    yield from self._records(batch)
        finally:
            self._backlog.done()

    def _records(self, calls: list[dict[str, Any]]) -> Iterator[Record]:
        for data in calls:
            yield Record(data=data, stream_name=self._read.reader.stream, associated_slice=self._read.slice)

    def to_slice(self) -> Optional[dict[str, Any]]:
        return self._read.slice

    def stream_name(self) -> str:
        return self._read.reader.stream

    def __hash__(self) -> int:
        return hash((self._read.reader.stream, self._read.window, self._number))

    def __repr__(self) -> str:
        read = self._read
        return f"PagePartition({read.reader.stream}, {read.window}, page {self._number}/{read.pages})"


class WindowPartitions(PartitionGenerator):
    """Probes windows one after the other and hands out a partition per page."""

    def __init__(
        self,
        reader: StreamReader,
        ranges: Callable[[], list[tuple[int, int]]],
        planner: WindowPlanner,
        messages: MessageRepository,
        expect: Optional[Callable[[Window, int], None]] = None,
    ) -> None:
        self._reader = reader
        self._ranges = ranges
        self._planner = planner
        self._messages = messages
        self._expect = expect
        self._backlog = Backlog(most_pages=2 * planner.target_calls // reader.page_size.largest)

    def _probe(self, window: Window) -> Probe:
        self._backlog.wait_for_room()
        # Before any window, the planner's target stands for what a window should hold.
        expected = self._planner.expected(window)
        return self._reader.probe(window, self._planner.most_calls, expected or self._planner.target_calls)

    def generate(self) -> Iterable[Partition]:
        ranges = self._ranges()
        remaining = sum(last - first + 1 for first, last in ranges)
        covered = known = 0
        try:
            for first, last in ranges:
                for window, probe in iterate_windows(self._planner, first, last, self._probe, Probe.calls.fget):
                    if window.span == 1 and probe.first.count > self._planner.most_calls:
                        raise PagingError(
                            self._reader.stream, window, f"TeleCMI reports {probe.first.count} calls in one millisecond"
                        )
                    read = WindowRead(self._reader, window, probe)
                    covered += window.span
                    known += probe.calls
                    self._emit_estimate(estimate_total(known, covered, remaining - covered))
                    if self._expect is not None:
                        self._expect(window, read.pages)
                    self._backlog.add(read.pages)
                    for number in range(1, read.pages + 1):
                        yield PagePartition(read, number, self._backlog)
        except AccessRefused as refused:
            self._reader.logger.warning(
                "Stream %s skipped: TeleCMI refuses %s to these credentials (%s).",
                self._reader.stream,
                self._reader.endpoint.path,
                refused,
            )

    def _emit_estimate(self, rows: int) -> None:
        self._messages.emit_message(
            AirbyteMessage(
                type=Type.TRACE,
                trace=AirbyteTraceMessage(
                    type=TraceType.ESTIMATE,
                    emitted_at=time.time() * 1000,
                    estimate=AirbyteEstimateTraceMessage(
                        name=self._reader.stream, type=EstimateType.STREAM, row_estimate=rows
                    ),
                ),
            )
        )
