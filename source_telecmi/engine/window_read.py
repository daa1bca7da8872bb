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

Records are reconciled by the call they are (`ledger.identity`: the key with the time; the content
where there is no key): a call read twice is emitted once, with the newest content TeleCMI answered
(a note added between two pages changes the call, not the count of calls), and a window is complete
only when the distinct calls its requests returned account for the count TeleCMI answered last. Its
calls are handed on once the window adds up, by the partition of its last page.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Optional

from source_telecmi.engine.ledger import Ledger, PagingError, Probe, WindowAudit, split
from source_telecmi.engine.reading import LEAST_REREAD_REQUESTS, REREAD_REQUESTS_PER_PAGE, Lister, Reading, keyed
from source_telecmi.telecmi.page import Page
from source_telecmi.timeline.instants import Window

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
# A window whose pieces add up while the window's own newest count says more is read whole again,
# at most this many times in all, before the sync fails.
WHOLE_WINDOW_READS = 3


class WindowPages:
    """The pages of a window read in parallel partitions: the last to finish settles it, the last to close
    hands its audit on. Needs `pages`, `done`, `lister` and `_lock`; counts from 0."""

    pages: int
    done: Optional[WindowAudit]
    lister: Any
    _lock: Any
    _finished = 0
    _closed = 0

    def finish_page(self) -> bool:
        """Count a page as read; True for the last page of the window to finish."""
        with self._lock:
            self._finished += 1
            return self._finished == self.pages

    def page_closed(self) -> None:
        """A page's partition closed (its records handed on, its state queued); the last one hands on the audit."""
        with self._lock:
            self._closed += 1
            last = self._closed == self.pages
        if last and self.done is not None and self.lister.audit is not None:
            self.lister.audit(self.done)


class WindowRead(WindowPages, Reading):
    """The read of one window, shared by the partitions of its pages."""

    def __init__(self, lister: Lister, window: Window, probe: Probe) -> None:
        super().__init__(lister, window, probe.size)
        self.slice = window.as_slice()
        self.pages = probe.pages
        self.requests = probe.sent or len(probe.read)
        self._budget = max(LEAST_REREAD_REQUESTS, REREAD_REQUESTS_PER_PAGE * probe.pages)
        self._read_already = dict(probe.read)
        self._last_count = probe.first.count or 0  # the newest count TeleCMI answered for the window itself
        self._last_answered = probe.first.answered
        self._asked = probe.asked or probe.size
        self.done: Optional[WindowAudit] = None

    def window_answered(self, page: Page) -> None:
        if page.count is not None and page.answered >= self._last_answered:
            self._last_answered, self._last_count = page.answered, page.count

    def read_page(self, number: int) -> None:
        """Read page `number` (or take the probe's copy of it), holding the calls found."""
        with self._lock:
            page = self._read_already.pop(number, None)
        if page is None:
            page, _ = self.lister.page(self.window, number, self.size)
            with self._lock:
                self.requests += page.sent
        taken = self.lister.intake(page)
        keys, when = keyed(taken)
        if number == 2 and page.records and self.size < self._asked:
            self.lister.page_size.confirm(self.size, self._asked)
        with self._lock:
            self.ledger.take(number, page, keys, when)
            self.window_answered(page)
            self.hold(page.answered, taken)

    def records(self) -> Iterator[list[dict[str, Any]]]:
        """Make the window add up, then hand on each of its calls once (called by its last page to finish)."""
        verdict, shortfall = self.settle()
        yield from self.release()
        self.done = WindowAudit(
            stream=self.lister.stream,
            window=self.window,
            telecmi_count=self._last_count,
            calls_read=self.calls_read,
            records_emitted=self._owned,
            requests=self.requests,
            verdict=verdict,
            shortfall=shortfall,
        )

    def settle(self) -> tuple[str, int]:
        """Read the window again, in smaller pieces if need be, until its calls account for TeleCMI's newest count.

        Returns the verdict and, where repeated reads prove TeleCMI's count wrong, by how much.
        """
        known: Optional[Ledger] = self.ledger
        proven = 0
        for attempt in range(WHOLE_WINDOW_READS + 1):
            count, found = self._last_count, self.found
            if found >= count:
                return "complete", 0
            if attempt == WHOLE_WINDOW_READS and not proven:
                break
            if proven:
                shortfall = count - found
                self.lister.logger.warning(
                    "Stream %s: records %s: TeleCMI counted %d more records than repeated complete reads return, "
                    "read in pieces of one page each, every time the same records: its count is wrong. The "
                    "records read are emitted and the window checkpointed.",
                    self.lister.stream,
                    self.window,
                    shortfall,
                )
                return "count_wrong", shortfall
            anomaly = (known.anomaly or known.stopped_early()) if known is not None else None
            self.lister.logger.warning(
                "Stream %s: records %s: read %d of the %d records TeleCMI counted%s; reading the window again so "
                "that no record is skipped.",
                self.lister.stream,
                self.window,
                found,
                count,
                f" ({anomaly})" if anomaly else "",
            )
            if known is not None:
                known.anomaly = anomaly
            proven = self._settle(self.window, known)
            known = None  # a later attempt starts with a fresh read of the whole window
        raise PagingError(
            self.lister.stream,
            self.where,
            f"TeleCMI's newest count for the window is {self._last_count} calls, but its reads, whole and in pieces, "
            f"return {self.found} different ones",
        )

    def _settle(self, piece: Window, known: Optional[Ledger]) -> int:
        """Make `piece` add up; returns how many records TeleCMI counts there but never returns (its count is wrong)."""
        read = self.read_range(piece)
        if known is None:  # the first read of a piece: enough if it adds up
            if read.complete():
                return 0
            if not read.anomaly:
                known, read = read, self.read_range(piece)
        known = known or read
        found = known.found | read.found
        count = read.count or 0
        if len(found) >= count:
            return 0
        if piece.span <= BUSY_PIECE_SPAN:
            return self._settle_millisecond(piece, found)
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
            shortfall += self._settle(part, None)
        return shortfall

    def _settle_millisecond(self, piece: Window, found: set[Hashable]) -> int:
        """Records that share one millisecond: read again until what they return stops growing."""
        quiet = 0
        count = 0
        for _ in range(MOST_READS_OF_ONE_MS):
            read = self.read_range(piece)
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
