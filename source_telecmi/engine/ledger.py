"""The ledger of reading a list: what each read of a range returned, and the pure rules that judge it.

A record's identity is the call it is (`identity`: its key and its time), or its content where it
has no key (`fingerprint`); the page size TeleCMI serves is learned
(`PageSize`); each sequential read of a range goes into a `Ledger` (found, counts, times, pages),
which says whether the read fitted on one page, stopped before its count, or met tied milliseconds;
`split` cuts a range into pieces of about a page. No request is made here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Optional

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi.page import Page
from source_telecmi.timeline.instants import Window


class PagingError(AirbyteTracedException):
    """TeleCMI's answers for a range cannot be made to add up: the sync stops rather than skip records."""

    def __init__(self, stream: str, where: Any, problem: str) -> None:
        super().__init__(
            message=f"Stream {stream}: {where}: {problem}. The sync stops rather than skip records; "
            "its last state is safe to resume from.",
            failure_type=FailureType.system_error,
        )


def identity(key: Any, instant: Optional[int], record: dict[str, Any], time_field: Optional[str]) -> Hashable:
    """Which call a record is, within one read: its key with its time, or (no key) its whole content.

    A call whose note changed between two pages is the same call; two calls TeleCMI gives one key at
    different times stay two calls. A time that cannot be read is taken as sent.
    """
    if key is None or key == "":
        return fingerprint(record)
    when: Any = instant
    if when is None and time_field is not None:
        when = repr(record.get(time_field))
    return (str(key), when)


def fingerprint(record: dict[str, Any]) -> bytes:
    """A record's identity: its whole content, as TeleCMI sent it."""
    try:
        content = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits: orjson cannot write it, the standard library can
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
    found: set[Hashable] = field(default_factory=set)  # the calls found, by identity
    counts: list[tuple[int, int]] = field(default_factory=list)  # (when answered, count) of every page
    times: dict[Hashable, int] = field(default_factory=dict)  # when each call found was made
    again: set[int] = field(default_factory=set)  # when records were made that a page served again: their order moves
    lengths: dict[int, int] = field(default_factory=dict)  # page number -> records served
    anomaly: Optional[str] = None

    @property
    def count(self) -> Optional[int]:
        """The count TeleCMI answered last (calls may land while a range is read: the newest count is the truth)."""
        return max(self.counts)[1] if self.counts else None

    def take(self, number: int, page: Page, keys: list[Hashable], when: dict[Hashable, int]) -> bool:
        """Enter page `number`; False if it only repeats records already found (the pages after it cannot be trusted)."""
        if page.count is not None:
            self.counts.append((page.answered, page.count))
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
    sent: int = 0  # the requests probing took (pages it let go of included)

    @property
    def calls(self) -> int:
        """The records the window seems to hold: its count, or what its pages can hold if fewer."""
        return min(self.first.count or 0, self.pages * self.size)


class FileCounts:
    """What a window's records came to as files: records emitted, files downloaded, files pending.

    A file whose earlier sync's record said pending, and that this sync's retry of pending files owns,
    counts as emitted by its window (its row is in the table), neither downloaded nor pending here."""

    def __init__(self) -> None:
        self.emitted = self.downloaded = self.pending = 0
        self._lock = threading.Lock()

    def add(self, status: str) -> None:
        with self._lock:
            self.emitted += 1
            self.downloaded += status == "downloaded"
            self.pending += status == "pending"


@dataclass
class WindowAudit:
    """What reading one window came to, for the sync's audit."""

    stream: str
    window: Window
    telecmi_count: int  # the count TeleCMI answered last for the window's requests, as it answered it
    calls_read: int  # the distinct calls those requests returned (the 1 ms margins each side included)
    records_emitted: int  # the calls of the window emitted, each once
    requests: int
    verdict: str  # "complete" (calls_read >= telecmi_count) or "count_wrong" (proven by repeated reads)
    shortfall: int  # telecmi_count - calls_read where the count is wrong, else 0
    files_downloaded: Optional[int] = None  # a stream of files: the window's files downloaded, and left pending
    files_pending: Optional[int] = None


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
