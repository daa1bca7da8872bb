"""Reading a list: what the reads of one list share (`Lister`), and one read of a range (`Reading`).

Every read of a range goes page after page into a `ledger.Ledger`. Each page comes in through one
intake (`Lister.intake`: each record's time parsed once, its identity made once). A range holds
what its reads found, one entry per call (`ledger.identity`), the newest content TeleCMI answered
replacing an older one, and hands each call on once, when the range adds up (`Reading.release`).
The reads of a window, and how they are made to add up, are in `window_read`; a list without
windows read whole, in `whole_read`.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Optional

from source_telecmi.engine.ledger import (
    Ledger,
    PageSize,
    PagingError,
    Probe,
    WindowAudit,
    calls_in,
    fingerprint,
    page_size_of,
)
from source_telecmi.engine.port import Endpoint
from source_telecmi.telecmi.page import Page
from source_telecmi.timeline.instants import Window

# A window that does not add up may spend this many requests (at least) on being read again:
# enough to split it into pieces of one page each (64 at most per split), read every piece twice
# (two requests a read where a short first page has to be told from a page size), and read a few
# busy milliseconds until they settle.
LEAST_REREAD_REQUESTS = 600
REREAD_REQUESTS_PER_PAGE = 8
# Pages of a list without a count, at most: a server that ignores `page` and never runs dry.
MOST_PAGES_WITHOUT_COUNT = 10_000

# Records handed on at a time once a range adds up: the queue to stdout keeps moving.
RELEASE_BATCH = 500

Shape = Callable[[dict[str, Any], Optional[int]], dict[str, Any]]
Identify = Callable[[dict[str, Any], Optional[int]], Hashable]
# A record of a page as it came in: the record, its identity, when it was made (None: no usable time).
Taken = tuple[dict[str, Any], Hashable, Optional[int]]
# The order of TeleCMI's answers in this process: which of two contents of a call, or counts, is newer.
_ANSWERS = itertools.count(1)


def keyed(taken: list[Taken]) -> tuple[list[Hashable], dict[Hashable, int]]:
    """What a `Ledger` takes of a page taken in: its identities in order, and when each call with a usable time was made."""
    return [key for _, key, _ in taken], {key: instant for _, key, instant in taken if instant is not None}


def by_content(record: dict[str, Any], instant: Optional[int]) -> Hashable:
    """The identity of a record of a list without a key: its content."""
    return fingerprint(record)


class Lister:
    """What the reads of one list share: the endpoint, the page size, the shaping of records, the audit."""

    def __init__(
        self,
        stream: str,
        endpoint: Endpoint,
        shape: Shape,
        instant: Callable[[dict[str, Any]], Optional[int]],
        logger: logging.Logger,
        audit: Optional[Callable[[WindowAudit], None]] = None,
        identify: Identify = by_content,
    ) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.page_size = PageSize(endpoint.largest_page, stream, logger)
        self.logger = logger
        self.audit = audit
        self._shape = shape
        self._instant = instant
        self._identify = identify
        self._timeless: set[Hashable] = set()
        self._lock = threading.Lock()

    def page(self, piece: Optional[Window], number: int, limit: Optional[int] = None) -> tuple[Page, int]:
        asked = limit or self.page_size.size
        span = (piece.request_from, piece.request_to) if piece is not None else None
        page = self.endpoint.page(number, asked, span)
        page.answered = next(_ANSWERS)
        self.page_size.served_in_full(asked, len(page.records))
        return page, asked

    def intake(self, page: Page) -> list[Taken]:
        """The records of a page with their identity and when they were made: each time parsed once, here."""
        taken = []
        for record in page.records:
            instant = self._instant(record)
            taken.append((record, self._identify(record, instant), instant))
        return taken

    def probe(self, window: Window, most_calls: int, expected: Optional[float] = None) -> Probe:
        """Page 1 of a window and, when its count is far above what the windows before it held, its last page.

        A count no page reaches is found out before it is paged: if the last page the count asks
        for is empty, the last page with records is searched for (a count inflated by a thousand
        then costs ten requests, not a hundred); otherwise the last page is read here once, not again.
        """
        first, asked = self.page(window, 1)
        size = page_size_of(first, asked, self.page_size.size)
        pages = max(1, math.ceil(calls_in(first, size) / size))
        probe = Probe(first, size, pages, {1: first}, asked, first.sent)
        usual = expected is not None and (first.count or 0) <= 1.5 * expected + size
        if pages == 1 or (first.count or 0) > most_calls or usual:
            return probe
        low, high = 1, pages  # page `low` has records; is `high` the last one?
        last, _ = self.page(window, high, size)
        probe.read[high] = last
        probe.sent += last.sent
        if last.records:
            return probe
        while high - low > 1:
            middle = (low + high) // 2
            page, _ = self.page(window, middle, size)
            probe.read[middle] = page
            probe.sent += page.sent
            low, high = (middle, high) if page.records else (low, middle)
        probe.pages = low
        probe.read = {n: p for n, p in probe.read.items() if n <= low}
        return probe

    def owned(
        self, window: Optional[Window], record: dict[str, Any], key: Hashable, instant: Optional[int] = None
    ) -> Optional[dict[str, Any]]:
        """The record, shaped, if this window is the one to emit it (a whole list owns all); None otherwise."""
        if window is None:
            return self._shape(record, instant)
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
    """The read of one range (a window, or a whole list): the calls it found, and reading it again until it adds up."""

    def __init__(self, lister: Lister, window: Optional[Window], size: int) -> None:
        self.lister = lister
        self.window = window
        self.size = size
        self.ledger = Ledger(size)  # what requests for the range itself returned
        self.requests = 0
        self.calls_read = 0  # distinct calls found, once released
        self._held: dict[Hashable, tuple[int, dict[str, Any], Optional[int]]] = {}  # identity -> newest content
        self._owned = 0
        self._budget = LEAST_REREAD_REQUESTS
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"records {self.window}" if self.window is not None else "the whole list"

    @property
    def found(self) -> int:
        """The distinct calls every read of this range found so far."""
        with self._lock:
            return len(self._held)

    def hold(self, answered: int, taken: list[Taken]) -> None:
        """Call under self._lock: keep each call found, its newest content answered replacing an older one."""
        held = self._held
        for record, key, instant in taken:
            kept = held.get(key)
            if kept is None or kept[0] <= answered:
                held[key] = (answered, record, instant)

    def release(self) -> Iterator[list[dict[str, Any]]]:
        """The calls this range owns, shaped, each once with its newest content, in batches."""
        with self._lock:
            held, self._held = self._held, {}
            self.calls_read = len(held)
        batch: list[dict[str, Any]] = []
        for key, (_, record, instant) in held.items():
            shaped = self.lister.owned(self.window, record, key, instant)
            if shaped is None:
                continue
            batch.append(shaped)
            if self.window is None or self.window.holds(instant):
                self._owned += 1
            if len(batch) >= RELEASE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def read_range(self, piece: Optional[Window]) -> Ledger:
        """Read every page of `piece` one after the other, holding the calls found; returns the ledger."""
        ledger = Ledger(self.lister.page_size.size)
        number = 1
        first_asked = ledger.size
        while True:
            self._spend()
            page, asked = self.lister.page(piece, number, ledger.size)
            with self._lock:
                self.requests += page.sent
            taken = self.lister.intake(page)
            keys, when = keyed(taken)
            if not ledger.take(number, page, keys, when):
                break  # the pages after it cannot be trusted either: smaller pieces will do
            with self._lock:
                if piece == self.window:
                    self.ledger.found.update(keys)
                    self.window_answered(page)
                self.hold(page.answered, taken)
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

    def window_answered(self, page: Page) -> None:
        """Call under self._lock: a page of the range itself was answered (a window keeps its newest count)."""

    def _spend(self) -> None:
        with self._lock:
            self._budget -= 1
            if self._budget >= 0:
                return
        raise PagingError(
            self.lister.stream,
            self.where,
            f"{len(self.ledger.found)} of the {self.ledger.count} records TeleCMI counted could be read, and "
            "reading it again in smaller pieces did not find the rest",
        )
