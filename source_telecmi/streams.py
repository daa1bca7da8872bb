"""The call-record streams: each is a name, an endpoint path and a schema file.

A stream's range is cut into windows (see `timeline`); the first page of each window is its
count probe, and every page is its own partition, so a busy window is read by all workers at
once. `WindowRead` keeps one window exactly-once whatever order its pages finish in: it drops
calls another page already gave, notices when the count moves under it, and then reads the
window again, one page after the other, until TeleCMI holds still.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import orjson
from airbyte_cdk.models import (
    AirbyteEstimateTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    EstimateType,
    FailureType,
    Level,
    TraceType,
    Type,
)
from airbyte_cdk.sources.message import MessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import Cursor, CursorField
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.types import Record
from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi import PAGE_SIZE, AccessRefused, CdrEndpoint, Page
from source_telecmi.timeline import Window, WindowPlanner, estimate_total, iterate_windows

PRIMARY_KEY = "cmiuid"
CURSOR_FIELD = "time"
# Phone numbers are identifiers: TeleCMI sends some as JSON numbers, the schema says strings.
PHONE_FIELDS = ("from", "to")
# How often a window whose count moves under us is read again before the sync gives up.
MOST_REREADS = 3


@dataclass(frozen=True)
class CallStream:
    """One TeleCMI call-record endpoint as an Airbyte stream."""

    name: str
    path: str

    def schema(self) -> dict[str, Any]:
        return ResourceSchemaLoader("source_telecmi").get_schema(self.name)


CALL_STREAMS: tuple[CallStream, ...] = (
    CallStream("outgoing_missed_calls", "/v2/user/out_missed"),
    CallStream("incoming_missed_calls", "/v2/user/missed"),
    CallStream("incoming_answered_calls", "/v2/user/answered"),
    CallStream("outgoing_answered_calls", "/v2/user/out_answered"),
)


class PagingError(AirbyteTracedException):
    """TeleCMI's paging contradicts itself in a way a re-read cannot mend."""

    def __init__(self, stream: str, window: Window, problem: str) -> None:
        super().__init__(
            message=f"Stream {stream}: TeleCMI's paging is inconsistent for calls {window}: {problem}. "
            "The sync stops rather than skip or repeat calls; its last state is safe to resume from.",
            failure_type=FailureType.system_error,
        )


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """Make the few typed fields match the schema: phone numbers as strings, time as an integer."""
    for field in PHONE_FIELDS:
        value = record.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            record[field] = str(int(value)) if float(value).is_integer() else str(value)
    instant = record.get(CURSOR_FIELD)
    if isinstance(instant, str) and instant.isdigit() or isinstance(instant, float) and instant.is_integer():
        record[CURSOR_FIELD] = int(instant)
    return record


def calls_in(page: Page) -> int:
    """The calls a window holds, judged by its first page: a short first page ends it, whatever the count says."""
    return page.count if len(page.records) >= PAGE_SIZE else len(page.records)


def pages_in(first_page: Page) -> int:
    """How many pages to read for a window, one partition each."""
    return max(1, math.ceil(calls_in(first_page) / PAGE_SIZE))


def _key(record: dict[str, Any]) -> Any:
    return record.get(PRIMARY_KEY) or orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


class WindowRead:
    """The read of one window, shared by the partitions of its pages."""

    def __init__(
        self,
        stream: str,
        window: Window,
        first_page: Page,
        endpoint: CdrEndpoint,
        messages: MessageRepository,
        most_calls: int,
    ) -> None:
        self.stream = stream
        self.window = window
        self.slice = window.as_slice()
        self.count = first_page.count
        self.pages = pages_in(first_page)
        self._first_page: Optional[Page] = first_page
        self._endpoint = endpoint
        self._messages = messages
        self._most_calls = most_calls
        self._lock = threading.Lock()
        self._seen: set[Any] = set()
        self._doubt: Optional[str] = None
        self._short_page: Optional[int] = None
        self._last_with_calls = 0
        self._finished = 0
        self._closed = 0

    def read_page(self, number: int) -> list[dict[str, Any]]:
        """The new calls of page `number` that belong to this window."""
        if number == 1:
            page, self._first_page = self._first_page, None
        elif self._short_page is not None and number > self._short_page:
            return []  # An earlier page was short: TeleCMI has nothing here; the re-read confirms it.
        else:
            page = self._endpoint.page(self.window.request_from, self.window.request_to, number)
        assert page is not None
        with self._lock:
            return self._accept(number, page)

    def _accept(self, number: int, page: Page) -> list[dict[str, Any]]:
        if page.count != self.count:
            self._doubt = f"its count changed from {self.count} to {page.count} between pages"
        keys = [_key(r) for r in page.records]
        fresh = [r for k, r in zip(keys, page.records, strict=True) if k not in self._seen]
        if page.records and not fresh and self._doubt is None:
            raise PagingError(
                self.stream, self.window, f"page {number} repeats calls of another page with an unchanged count"
            )
        if len(fresh) < len(page.records):
            self._doubt = self._doubt or f"page {number} repeats calls of another page"
        if len(page.records) < PAGE_SIZE:
            # A short page ends the window: pages after it are not asked for.
            self._short_page = min(self._short_page or number, number)
        if page.records:
            self._last_with_calls = max(self._last_with_calls, number)
        if self._short_page is not None and self._last_with_calls > self._short_page:
            self._doubt = (
                self._doubt or f"page {self._last_with_calls} has calls after the short page {self._short_page}"
            )
        self._seen.update(keys)
        return self._own(fresh)

    def _own(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The calls, normalised, that belong to this window (not to a neighbour across an edge)."""
        return [r for r in records if self.window.holds(normalise(r).get(CURSOR_FIELD))]

    def finish_page(self) -> bool:
        """Count a page as read; True for the last page of the window to finish."""
        with self._lock:
            self._finished += 1
            return self._finished == self.pages

    def close_page(self) -> bool:
        """Count a page's partition as closed; True once, when the whole window is done."""
        with self._lock:
            self._closed += 1
            return self._closed == self.pages

    @property
    def in_doubt(self) -> bool:
        return self._doubt is not None

    def reread(self) -> Iterator[list[dict[str, Any]]]:
        """Read the window again page by page, yielding calls not given yet, until its count holds still."""
        self._messages.log_message(
            Level.WARN,
            lambda: {
                "message": f"Stream {self.stream}: calls {self.window}: {self._doubt}; "
                "reading the window again so that no call is skipped."
            },
        )
        for _ in range(MOST_REREADS):
            count: Optional[int] = None
            previous: Optional[list[Any]] = None
            number = 1
            while True:
                page = self._endpoint.page(self.window.request_from, self.window.request_to, number)
                if count is None:
                    count = page.count
                    if count > 2 * self._most_calls:
                        raise PagingError(
                            self.stream, self.window, f"TeleCMI reports {count} calls in it and keeps growing"
                        )
                elif page.count != count:
                    break
                keys = [_key(r) for r in page.records]
                if previous is not None and keys and keys == previous:
                    raise PagingError(self.stream, self.window, f"page {number} repeats page {number - 1}")
                with self._lock:
                    fresh = [r for k, r in zip(keys, page.records, strict=True) if k not in self._seen]
                    self._seen.update(keys)
                yield self._own(fresh)
                if len(page.records) < PAGE_SIZE or number * PAGE_SIZE >= count:
                    return
                number += 1
                previous = keys
        raise PagingError(
            self.stream, self.window, f"its count kept changing while it was read {MOST_REREADS} more times"
        )


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
            # The last page of a window to finish reads it again if its pages contradicted each other.
            if window_read.finish_page() and window_read.in_doubt:
                for batch in window_read.reread():
                    yield from self._records(batch)
        finally:
            self._backlog.done()

    def _records(self, calls: list[dict[str, Any]]) -> Iterator[Record]:
        for data in calls:
            yield Record(data=data, stream_name=self._read.stream, associated_slice=self._read.slice)

    def close_page(self) -> bool:
        return self._read.close_page()

    def to_slice(self) -> Optional[dict[str, Any]]:
        return self._read.slice

    def stream_name(self) -> str:
        return self._read.stream

    def __hash__(self) -> int:
        return hash((self._read.stream, self._read.window, self._number))

    def __repr__(self) -> str:
        return f"PagePartition({self._read.stream}, {self._read.window}, page {self._number}/{self._read.pages})"


class WindowPartitions(PartitionGenerator):
    """Probes windows one after the other and hands out a partition per page."""

    def __init__(
        self,
        stream: CallStream,
        endpoint: CdrEndpoint,
        ranges: Callable[[], list[tuple[int, int]]],
        planner: WindowPlanner,
        messages: MessageRepository,
    ) -> None:
        self._stream = stream
        self._endpoint = endpoint
        self._ranges = ranges
        self._planner = planner
        self._messages = messages
        self._backlog = Backlog(most_pages=2 * planner.target_calls // PAGE_SIZE)

    def _probe(self, window: Window) -> Page:
        self._backlog.wait_for_room()
        return self._endpoint.page(window.request_from, window.request_to, 1)

    def generate(self) -> Iterable[Partition]:
        ranges = self._ranges()
        remaining = sum(last - first + 1 for first, last in ranges)
        covered = known = 0
        try:
            for first, last in ranges:
                for window, page in iterate_windows(self._planner, first, last, self._probe, calls_in):
                    if calls_in(page) > self._planner.most_calls:
                        raise PagingError(
                            self._stream.name, window, f"TeleCMI reports {page.count} calls in one millisecond"
                        )
                    read = WindowRead(
                        self._stream.name, window, page, self._endpoint, self._messages, self._planner.most_calls
                    )
                    covered += window.span
                    known += calls_in(page)
                    self._emit_estimate(estimate_total(known, covered, remaining - covered))
                    self._backlog.add(read.pages)
                    for number in range(1, read.pages + 1):
                        yield PagePartition(read, number, self._backlog)
        except AccessRefused as refused:
            warning = (
                f"Stream {self._stream.name} skipped: TeleCMI refuses {self._stream.path} to this user ({refused})."
            )
            self._messages.log_message(Level.WARN, lambda: {"message": warning})

    def _emit_estimate(self, rows: int) -> None:
        self._messages.emit_message(
            AirbyteMessage(
                type=Type.TRACE,
                trace=AirbyteTraceMessage(
                    type=TraceType.ESTIMATE,
                    emitted_at=time.time() * 1000,
                    estimate=AirbyteEstimateTraceMessage(
                        name=self._stream.name, type=EstimateType.STREAM, row_estimate=rows
                    ),
                ),
            )
        )


def build_stream(
    stream: CallStream,
    partitions: WindowPartitions,
    cursor: Cursor,
    logger: logging.Logger,
) -> DefaultStream:
    """The concurrent CDK stream for one call-record endpoint."""
    return DefaultStream(
        partition_generator=partitions,
        name=stream.name,
        json_schema=stream.schema,
        primary_key=[PRIMARY_KEY],
        cursor_field=CursorField(CURSOR_FIELD),
        logger=logger,
        cursor=cursor,
    )
