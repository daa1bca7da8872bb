"""Reading a list exactly once, whatever TeleCMI's paging does: the one engine every list goes through.

A list with a cursor is read in time windows; a window is the unit of truth: it is checkpointed
only when the records TeleCMI returned for it account for the `count` it reported. Its first page
is the count probe; every page is its own partition, read in parallel. A list without a cursor
(the users) is read whole, one page after the other, and reconciled the same way (a list without
a count is read until a page comes back shorter than the page size learned, or empty).

TeleCMI's paging is not trusted: the page size is learned from the answers (it may serve 10 when
20 were asked), the order is not promised (records that share a millisecond may come back in
another order on every request, so pages overlap and leave gaps), and a server may stop serving
past an offset while its count says more follow. Every read of a range goes into a `Ledger`.
When a window's pages fall short of its count, the window is read again, then in smaller pieces
(split by time until each piece fits on one page, a millisecond holding many records read again
until what it returns stops growing), within a bounded number of requests. Only when complete
reads at that finest split agree with each other is TeleCMI's count taken to be wrong: the window
is accepted with a warning that says so. Anything else that does not add up ends the sync.

Records are reconciled by content, not by key: the same record read twice is emitted once, two
records that share a key but differ are both emitted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi import ListEndpoint, Page
from source_telecmi.timeline import Window

# A window that does not add up may spend this many requests (at least) on being read again:
# enough to split it into pieces of one page each (64 at most per split), read every piece twice
# (two requests a read where a short first page has to be told from a page size), and read a few
# busy milliseconds until they settle.
LEAST_REREAD_REQUESTS = 600
REREAD_REQUESTS_PER_PAGE = 8
# A busy millisecond is read as a piece of this span, with a millisecond of margin on each side: a
# piece's request reaches one millisecond past each end (see timeline.Window), so its neighbours'
# requests must not reach the busy millisecond itself.
BUSY_PIECE_SPAN = 3
# A busy millisecond is read again at most this often, and is settled once this many reads in a row
# add nothing. Its records come back in a new order on every request: with 37 calls in pages of 10,
# a read misses a given call about 28% of the time, so 3 quiet reads would blame the count for a
# call merely not drawn yet about 2% of the time; 8 quiet reads, 0.004%.
MOST_READS_OF_ONE_MS = 60
STABLE_READS = 8
# A whole list (no windows) is read at most this many times before its count is judged.
WHOLE_LIST_READS = 3
# Pages of a list without a count, at most: a server that ignores `page` and never runs dry.
MOST_PAGES_WITHOUT_COUNT = 10_000

Shape = Callable[[dict[str, Any], Optional[int]], dict[str, Any]]


class PagingError(AirbyteTracedException):
    """TeleCMI's answers for a range cannot be made to add up: the sync stops rather than skip records."""

    def __init__(self, stream: str, where: Any, problem: str) -> None:
        super().__init__(
            message=f"Stream {stream}: {where}: {problem}. The sync stops rather than skip records; "
            "its last state is safe to resume from.",
            failure_type=FailureType.system_error,
        )


def fingerprint(record: dict[str, Any]) -> bytes:
    """A record's identity: its whole content, as TeleCMI sent it."""
    try:
        content = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits: orjson cannot write it, the standard library can
        import json

        content = json.dumps(record, sort_keys=True).encode()
    return hashlib.blake2b(content, digest_size=16).digest()


class PageSize:
    """The page size TeleCMI serves on one endpoint, learned from its answers.

    A first page shorter than the `limit` asked while the count says more records follow may show
    the size TeleCMI really serves (10 when 20 were asked), or a count that is wrong. The size is
    taken as served only once the next page, asked at that size, brings more records: later pages
    are then asked at that size, so that page N starts where N-1 ended whichever way TeleCMI counts
    its offsets.
    """

    def __init__(self, largest: int, name: str, logger: logging.Logger) -> None:
        self.largest = largest
        self._served: Optional[int] = None
        self._honoured: set[int] = set()
        self._name = name
        self._logger = logger
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._served or self.largest

    def served_in_full(self, asked: int, served: int) -> None:
        """A page came with all `asked` records: TeleCMI honours that size, a shorter first page is the range's end."""
        if served == asked and asked not in self._honoured:
            with self._lock:
                self._honoured.add(asked)

    def honours(self, asked: int) -> bool:
        return asked in self._honoured

    def confirm(self, served: int, asked: int) -> None:
        """TeleCMI served `served` records on a first page asked for `asked`, and more on the next page."""
        if not 0 < served < asked or (self._served is not None and served <= self._served):
            return
        with self._lock:
            if self._served is None or served > self._served:
                self._served = served
                self._logger.info(
                    "Stream %s: TeleCMI serves pages of %d records (asked for %d); reading pages of %d",
                    self._name,
                    served,
                    asked,
                    served,
                )


@dataclass
class Ledger:
    """What one read of a range returned, page after page: the one ledger every list is reconciled through."""

    size: int
    found: set[bytes] = field(default_factory=set)
    counts: list[int] = field(default_factory=list)
    times: dict[bytes, int] = field(default_factory=dict)  # when each record found was made
    again: set[int] = field(default_factory=set)  # when records were made that a page served again: their order moves
    lengths: dict[int, int] = field(default_factory=dict)  # page number -> records served
    anomaly: Optional[str] = None

    @property
    def count(self) -> Optional[int]:
        return max(self.counts) if self.counts else None

    def take(self, number: int, page: Page, keys: list[bytes], when: dict[bytes, int]) -> bool:
        """Enter page `number`; False if it only repeats records already found (the pages after it cannot be trusted)."""
        if page.count is not None:
            self.counts.append(page.count)
        self.lengths[number] = len(page.records)
        if page.records and all(k in self.found for k in keys):
            self.anomaly = self.anomaly or f"page {number} repeats records of other pages"
            return False
        self.again.update(t for k, t in when.items() if k in self.found)
        self.found.update(keys)
        self.times.update(when)
        return True

    def complete(self) -> bool:
        count = self.count
        return count is None or len(self.found) >= count

    def fits_one_page(self) -> bool:
        """Whether the range's records all came on its first page (shorter than the page size)."""
        return self.lengths.get(1, 0) < self.size

    def stopped_early(self) -> Optional[str]:
        """A page after the first that is short or empty while the count says more follow, or that has records after a short one."""
        count = self.count
        short = sorted(n for n, length in self.lengths.items() if length < self.size)
        later = [n for n, length in self.lengths.items() if length > 0]
        for number in short:
            if later and number < max(later):
                return f"page {number} is shorter than {self.size} records and page {max(later)} has records"
            if number > 1 and count is not None and number * self.size < count:
                return (
                    f"page {number} has {self.lengths[number]} records while TeleCMI counts {count}: it stopped "
                    "serving pages before its count"
                )
        return None

    def cut_off(self) -> bool:
        """Whether a full page was followed by an empty one while the count says more follow (an offset cap)."""
        count = self.count
        for number, length in self.lengths.items():
            if length == 0 and number > 1 and self.lengths.get(number - 1) == self.size:
                return count is not None and (number - 1) * self.size < count
        return False

    def tied(self) -> bool:
        """Whether two records were found at one millisecond, or one record was served twice (its order moves)."""
        return len(set(self.times.values())) < len(self.times) or bool(self.again)


@dataclass
class Probe:
    """What probing a window found: its first page, the page size, how many pages hold records, pages read."""

    first: Page
    size: int
    pages: int
    read: dict[int, Page]
    asked: int = 0  # the limit page 1 was asked for

    @property
    def calls(self) -> int:
        """The records the window seems to hold: its count, or what its pages can hold if fewer."""
        return min(self.first.count or 0, self.pages * self.size)


@dataclass
class WindowAudit:
    """What reading one window came to, for the sync's audit."""

    stream: str
    window: Window
    telecmi_count: int
    records_emitted: int
    requests: int
    verdict: str  # "complete" or "count_wrong"
    shortfall: int


class Lister:
    """What the reads of one list share: the endpoint, the page size, the shaping of records, the audit."""

    def __init__(
        self,
        stream: str,
        endpoint: ListEndpoint,
        shape: Shape,
        instant: Callable[[dict[str, Any]], Optional[int]],
        logger: logging.Logger,
        audit: Optional[Callable[[WindowAudit], None]] = None,
    ) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.page_size = PageSize(endpoint.largest_page, stream, logger)
        self.logger = logger
        self.audit = audit
        self._shape = shape
        self._instant = instant
        self._timeless: set[bytes] = set()
        self._lock = threading.Lock()

    def instant(self, record: dict[str, Any]) -> Optional[int]:
        return self._instant(record)

    def page(self, piece: Optional[Window], number: int, limit: Optional[int] = None) -> tuple[Page, int]:
        asked = limit or self.page_size.size
        span = (piece.request_from, piece.request_to) if piece is not None else None
        page = self.endpoint.page(number, asked, span)
        self.page_size.served_in_full(asked, len(page.records))
        return page, asked

    def probe(self, window: Window, most_calls: int, expected: Optional[float] = None) -> Probe:
        """Page 1 of a window and, when its count is far above what the windows before it held, its last page.

        A count no page reaches is found out before it is paged: if the last page the count asks
        for is empty, the last page with records is searched for (a count inflated by a thousand
        then costs ten requests, not a hundred); otherwise the last page is read here once, not again.
        """
        first, asked = self.page(window, 1)
        size = page_size_of(first, asked, self.page_size.size)
        pages = max(1, math.ceil(calls_in(first, size) / size))
        probe = Probe(first, size, pages, {1: first}, asked)
        usual = expected is not None and (first.count or 0) <= 1.5 * expected + size
        if pages == 1 or (first.count or 0) > most_calls or usual:
            return probe
        low, high = 1, pages  # page `low` has records; is `high` the last one?
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

    def owned(self, window: Optional[Window], record: dict[str, Any], key: bytes) -> Optional[dict[str, Any]]:
        """The record, shaped, if this window is the one to emit it (a whole list owns all); None otherwise."""
        if window is None:
            return self._shape(record, self._instant(record))
        instant = self._instant(record)
        if instant is None:
            with self._lock:
                if key in self._timeless:
                    return None
                self._timeless.add(key)
                seen = len(self._timeless)
            self.logger.warning(
                "Stream %s: a record read in %s has no usable time (%r): emitted once, without a cursor value "
                "(%d such records so far)",
                self.stream,
                window,
                record.get("time"),
                seen,
            )
            return self._shape(record, None)
        return self._shape(record, instant) if window.holds(instant) else None


class Reading:
    """The read of one range (a window, or a whole list): what it emitted, and reading it again until it adds up."""

    def __init__(self, lister: Lister, window: Optional[Window], size: int) -> None:
        self.lister = lister
        self.window = window
        self.size = size
        self.ledger = Ledger(size)  # what requests for the range itself returned
        self.requests = 0
        self._emitted: set[bytes] = set()
        self._owned = 0
        self._budget = LEAST_REREAD_REQUESTS
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"records {self.window}" if self.window is not None else "the whole list"

    def _emit(self, records: list[dict[str, Any]], keys: list[bytes]) -> list[dict[str, Any]]:
        """Call under self._lock: the records not emitted yet that this range owns, shaped."""
        out = []
        for record, key in zip(records, keys, strict=True):
            if key not in self._emitted:
                self._emitted.add(key)
                shaped = self.lister.owned(self.window, record, key)
                if shaped is not None:
                    out.append(shaped)
                    if self.window is None or self.window.holds(self.lister.instant(record)):
                        self._owned += 1
        return out

    def read_range(self, piece: Optional[Window]) -> Generator[list[dict[str, Any]], None, Ledger]:
        """Read every page of `piece` one after the other; yields the records to emit, returns the ledger."""
        ledger = Ledger(self.lister.page_size.size)
        number = 1
        first_asked = ledger.size
        while True:
            self._spend()
            page, asked = self.lister.page(piece, number, ledger.size)
            keys = [fingerprint(r) for r in page.records]
            when = instants(self.lister, page.records, keys)
            if not ledger.take(number, page, keys, when):
                break  # the pages after it cannot be trusted either: smaller pieces will do
            with self._lock:
                if piece == self.window:
                    self.ledger.found.update(keys)
                emit = self._emit(page.records, keys)
            if emit:
                yield emit
            if number == 1 and not self.lister.page_size.honours(asked):
                first_asked, ledger.size = asked, page_size_of(page, asked, ledger.size)
            elif number == 2 and ledger.size < first_asked:
                if not page.records:  # page 1 was short, not a page size: the count will judge
                    ledger.size = first_asked
                    ledger.lengths.pop(2, None)
                    break
                self.lister.page_size.confirm(ledger.size, first_asked)
            if len(page.records) < ledger.size:
                break  # a short page ends a read: where the count says more follow, the count will judge
            if ledger.count is not None and number * ledger.size >= ledger.count:
                break
            if ledger.count is None and number >= MOST_PAGES_WITHOUT_COUNT:
                raise PagingError(self.lister.stream, self.where, f"TeleCMI served {number} full pages and no end")
            number += 1
        ledger.anomaly = ledger.anomaly or ledger.stopped_early()
        return ledger

    def _spend(self) -> None:
        with self._lock:
            self.requests += 1
            self._budget -= 1
            if self._budget >= 0:
                return
        raise PagingError(
            self.lister.stream,
            self.where,
            f"{len(self.ledger.found)} of the {self.ledger.count} records TeleCMI counted could be read, and "
            "reading it again in smaller pieces did not find the rest",
        )


class WholeRead(Reading):
    """A list without windows (the users): read page after page, again if it falls short of its count."""

    def __init__(self, lister: Lister) -> None:
        super().__init__(lister, None, lister.page_size.size)

    def records(self) -> Iterator[list[dict[str, Any]]]:
        reads: list[Ledger] = []
        for _ in range(WHOLE_LIST_READS):
            read = yield from self.read_range(None)
            reads.append(read)
            found = set().union(*(r.found for r in reads))
            if read.count is None and read.anomaly:
                raise PagingError(
                    self.lister.stream,
                    self.where,
                    f"TeleCMI sends no count and {read.anomaly}: the list cannot be read to its end",
                )
            if read.count is None or len(found) >= read.count:
                return
            if len(reads) >= 2 and reads[-1].found == reads[-2].found and not (read.anomaly or reads[-2].anomaly):
                self.lister.logger.warning(
                    "Stream %s: TeleCMI counts %d records but complete reads return the same %d every time: its "
                    "count is wrong; the records read are emitted.",
                    self.lister.stream,
                    read.count,
                    len(found),
                )
                return
        raise PagingError(
            self.lister.stream,
            self.where,
            f"TeleCMI counts {reads[-1].count} records but its pages return "
            + ", then ".join(str(len(r.found)) for r in reads)
            + " different ones",
        )


class WindowRead(Reading):
    """The read of one window, shared by the partitions of its pages."""

    def __init__(self, lister: Lister, window: Window, probe: Probe) -> None:
        super().__init__(lister, window, probe.size)
        self.slice = window.as_slice()
        self.pages = probe.pages
        self.requests = len(probe.read)
        self._budget = max(LEAST_REREAD_REQUESTS, REREAD_REQUESTS_PER_PAGE * probe.pages)
        self._read_already = dict(probe.read)
        self._finished = 0
        self._closed = 0
        self._last_count = probe.first.count or 0
        self._asked = probe.asked or probe.size
        self.done: Optional[WindowAudit] = None

    def read_page(self, number: int) -> list[dict[str, Any]]:
        """The records of page `number` to emit (new, and owned by this window)."""
        with self._lock:
            page = self._read_already.pop(number, None)
        if page is None:
            page, _ = self.lister.page(self.window, number, self.size)
            with self._lock:
                self.requests += 1
        keys = [fingerprint(r) for r in page.records]
        when = instants(self.lister, page.records, keys)
        if number == 2 and page.records and self.size < self._asked:
            self.lister.page_size.confirm(self.size, self._asked)
        with self._lock:
            self.ledger.take(number, page, keys, when)
            return self._emit(page.records, keys)

    def finish_page(self) -> bool:
        """Count a page as read; True for the last page of the window to finish."""
        with self._lock:
            self._finished += 1
            return self._finished == self.pages

    def settle(self) -> Iterator[list[dict[str, Any]]]:
        """Read the window again, in smaller pieces if need be, until it adds up; yields records not emitted yet."""
        first = self.ledger
        count = first.count or 0
        shortfall = 0
        if len(first.found) < count:
            first.anomaly = first.anomaly or first.stopped_early()
            self.lister.logger.warning(
                "Stream %s: records %s: read %d of the %d records TeleCMI counted%s; reading the window again so "
                "that no record is skipped.",
                self.lister.stream,
                self.window,
                len(first.found),
                count,
                f" ({first.anomaly})" if first.anomaly else "",
            )
            shortfall = yield from self._settle(self.window, first)
            # What the window's own latest complete read counted bounds what it can lack.
            shortfall = min(shortfall, max(0, self._last_count - len(self.ledger.found)))
            if shortfall:
                self.lister.logger.warning(
                    "Stream %s: records %s: TeleCMI counted %d more records than repeated complete reads return, "
                    "read in pieces of one page each, every time the same records: its count is wrong. The "
                    "records read are emitted and the window checkpointed.",
                    self.lister.stream,
                    self.window,
                    shortfall,
                )
        self.done = WindowAudit(
            stream=self.lister.stream,
            window=self.window,
            telecmi_count=self._owned + shortfall,
            records_emitted=self._owned,
            requests=self.requests,
            verdict="count_wrong" if shortfall else "complete",
            shortfall=shortfall,
        )

    def page_closed(self) -> None:
        """A page's partition closed (its records handed on, its state queued); the last one hands on the audit."""
        with self._lock:
            self._closed += 1
            last = self._closed == self.pages
        if last and self.done is not None and self.lister.audit is not None:
            self.lister.audit(self.done)

    def _settle(self, piece: Window, known: Optional[Ledger]) -> Generator[Any, None, int]:
        """Make `piece` add up; returns how many records TeleCMI counts there but never returns (its count is wrong)."""
        read = yield from self.read_range(piece)
        if piece == self.window and read.count is not None and not read.anomaly:
            self._last_count = read.count
        if known is None:  # the first read of a piece: enough if it adds up
            if read.complete():
                return 0
            if not read.anomaly:
                known, read = read, (yield from self.read_range(piece))
        known = known or read
        found = known.found | read.found
        count = read.count or 0
        if len(found) >= count:
            return 0
        if piece.span <= BUSY_PIECE_SPAN:
            return (yield from self._settle_millisecond(piece, found))
        times = {**known.times, **read.times}
        tied = known.tied() or read.tied() or len(set(times.values())) < len(times)
        agree = read.found == known.found and read.count == known.count
        finest = read.fits_one_page() and known.fits_one_page()
        if agree and finest and not (read.anomaly or known.anomaly or tied):
            return count - len(found)  # complete reads of a piece on one page agree: the count is what is wrong
        # Records that share a millisecond may swap places between reads and hide a record from both: such
        # milliseconds are read on their own before the count can be blamed.
        busy_at = 2 if tied and agree else None
        # Pieces of about half a page of what was found (or of the count, if lower): a count that is
        # wrong does not multiply the pieces, and where TeleCMI stopped serving early (an offset cap)
        # the pieces hold less than it served, and split again if still too many. When every read
        # fitted on one page, the split only sets busy milliseconds apart.
        size = self.lister.page_size.size
        sizing = len(found) if finest else min(count, 2 * len(found) + size)
        shortfall = 0
        again = known.again | read.again
        for part in split(piece, [*times.values(), *again, *again], sizing, size, busy_at):
            shortfall += yield from self._settle(part, None)
        return shortfall

    def _settle_millisecond(self, piece: Window, found: set[bytes]) -> Generator[Any, None, int]:
        """Records that share one millisecond: read again until what they return stops growing."""
        quiet = 0
        count = 0
        for _ in range(MOST_READS_OF_ONE_MS):
            read = yield from self.read_range(piece)
            count = read.count or 0
            grown = read.found - found
            found |= read.found
            if len(found) >= count:
                return 0
            quiet = 0 if grown else quiet + 1
            if quiet >= STABLE_READS:
                if read.cut_off():  # no finer split can get past an offset cap: fail, never exit short
                    raise PagingError(
                        self.lister.stream,
                        self.where,
                        f"TeleCMI counts {count} records in the one millisecond {piece} but stops serving its "
                        f"pages after {len(read.found)} ({read.anomaly}); no smaller piece can be asked for",
                    )
                return count - len(found)
        raise PagingError(
            self.lister.stream,
            self.where,
            f"TeleCMI counts {count} records at {piece} but returns a different {len(found)} of them on every read",
        )


def instants(lister: Lister, records: list[dict[str, Any]], keys: list[bytes]) -> dict[bytes, int]:
    """When each record was made, by its fingerprint (records without a usable time left out)."""
    found = {}
    for record, key in zip(records, keys, strict=True):
        instant = lister.instant(record)
        if instant is not None:
            found[key] = instant
    return found


def calls_in(first: Page, size: int) -> int:
    """The records a window seems to hold, judged by its first page.

    A first page shorter than the page size probably ends the window, whatever the count says:
    its other pages are not read in parallel (the window is read again, one page after the other,
    if the count is not reached, so a short page in the middle loses nothing).
    """
    served = len(first.records)
    return served if served < size else (first.count or 0)


def page_size_of(first: Page, asked: int, learned: int) -> int:
    """The page size to read a range with, from its first page: shorter than asked while more follow is what TeleCMI serves."""
    served = len(first.records)
    more = first.count is None or served < first.count
    return served if 0 < served < asked and more and first.count is not None else max(1, min(asked, learned))


def split(piece: Window, times: list[int], count: int, page_size: int, busy_at: Optional[int] = None) -> list[Window]:
    """Cut `piece` into windows that need about one page each, a busy millisecond apart.

    A millisecond holding `busy_at` of the records seen (half a page unless said) is a piece of its
    own, with a millisecond of margin each side (its records can only be told apart by reading it
    again); the rest is cut into equal spans, as many as the count needs pages. There are always at
    least two parts.
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
