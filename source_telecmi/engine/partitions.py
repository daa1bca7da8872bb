"""The CDK partitions of a list: a partition per page of each window, or one for a whole list.

Probing runs a little ahead of page reads (`Backlog`), estimates follow the density probed so far,
and a list TeleCMI refuses through every retry is skipped or fails the sync by the one rule of
`refusals` (skipped if refused before it served anything, a failure after).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

from airbyte_cdk.models import (
    AirbyteEstimateTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    EstimateType,
    TraceType,
    Type,
)
from airbyte_cdk.sources.message import MessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import FinalStateCursor
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.types import Record

from source_telecmi.engine.ledger import PagingError, Probe
from source_telecmi.engine.reading import Lister
from source_telecmi.engine.refusals import Skipped, refusals
from source_telecmi.engine.whole_read import WholeRead
from source_telecmi.engine.window_read import WindowRead
from source_telecmi.telecmi.answers import EndpointMissing
from source_telecmi.timeline.instants import Window
from source_telecmi.timeline.planning import WindowPlanner, estimate_total, windows_for


class Backlog:
    """Bounds how far the probing of windows runs ahead of the reading of their pages.

    Memory stays flat however many records a sync reads, counts are fresh when pages are read, and
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


def records_of(stream: str, batch: list[dict[str, Any]], where: Any) -> Iterator[Record]:
    for data in batch:
        yield Record(data=data, stream_name=stream, associated_slice=where)


def window_records(stream: str, batch: list[dict[str, Any]], read: Any) -> Iterator[Record]:
    """A window's records as they are (a stream of files delivers each file first: `deliveries`)."""
    return records_of(stream, batch, read.slice)


# What a window's records become: the records of a list, or a file delivered before each record.
Emit = Callable[[str, list[dict[str, Any]], Any], Iterable[Record]]
# The read of one window: of one list (`WindowRead`), or of several read together (`group_read.GroupRead`).
MakeRead = Callable[[Any, Window, Any], Any]


class PagePartition(Partition):
    """One page of one window."""

    def __init__(
        self,
        read: WindowRead,
        number: int,
        backlog: Backlog,
        skipped: Optional[Skipped] = None,
        emit: Emit = window_records,
    ) -> None:
        self._read = read
        self._number = number
        self._backlog = backlog
        self._skipped = skipped if skipped is not None else Skipped()
        self._emit = emit

    def read(self) -> Iterable[Record]:
        """Read the page; a refusal fails the sync (its window's probe was served, so the endpoint had served)."""
        window_read = self._read
        stream = window_read.lister.stream
        try:
            with refusals(window_read.lister, self._skipped):
                window_read.read_page(self._number)
                # The last page of a window to finish makes the window add up, then hands on each of its calls
                # once, before the window can be checkpointed.
                if window_read.finish_page():
                    for batch in window_read.records():
                        yield from self._emit(stream, batch, window_read)
        finally:
            self._backlog.done()

    def closed(self) -> None:
        """Called by the stream's cursor once the partition is closed."""
        self._read.page_closed()

    def to_slice(self) -> Optional[dict[str, Any]]:
        return self._read.slice

    def stream_name(self) -> str:
        return self._read.lister.stream

    def __hash__(self) -> int:
        return hash((self._read.lister.stream, self._read.window, self._number))

    def __repr__(self) -> str:
        read = self._read
        return f"PagePartition({read.lister.stream}, {read.window}, page {self._number}/{read.pages})"


class FullRefreshWindows(FinalStateCursor):
    """The cursor of a windowed list read in full refresh: no state but the final one; it tells pages they closed."""

    def close_partition(self, partition: Partition) -> None:
        closed = getattr(partition, "closed", None)
        if closed is not None:
            closed()


class WindowPartitions(PartitionGenerator):
    """Probes windows one after the other and hands out a partition per page.

    With `lookback_ms` (an incremental read), no window longer than a day is left holding the
    next sync's lookback point (`timeline.windows_for`). The requests of a probe let go of (a
    window found too big, probed again smaller) are counted in the next window handed out.
    """

    def __init__(
        self,
        lister: Lister,
        ranges: Callable[[], list[tuple[int, int]]],
        planner: WindowPlanner,
        messages: MessageRepository,
        skipped: Skipped,
        expect: Optional[Callable[[Window, int], None]] = None,
        lookback_ms: Optional[int] = None,
        make_read: MakeRead = WindowRead,
        emit: Emit = window_records,
    ) -> None:
        self._lister = lister
        self._make_read = make_read
        self._emit = emit
        self._lookback_ms = lookback_ms
        self._let_go = 0  # requests of probes let go of, not yet counted in a window
        self._ranges = ranges
        self._planner = planner
        self._messages = messages
        self._skipped = skipped
        self._expect = expect
        self._backlog = Backlog(most_pages=2 * planner.target_calls // lister.page_size.largest)

    def _probe(self, window: Window) -> Probe:
        self._backlog.wait_for_room()
        # Before any window, the planner's target stands for what a window should hold.
        expected = self._planner.expected(window)
        return self._lister.probe(window, self._planner.most_calls, expected or self._planner.target_calls)

    def _let_go_of(self, probe: Probe) -> None:
        self._let_go += probe.sent or len(probe.read)

    def generate(self) -> Iterable[Partition]:
        ranges = self._ranges()
        remaining = sum(last - first + 1 for first, last in ranges)
        covered = known = 0
        windows = windows_for(
            self._planner, ranges, self._probe, lambda probe: probe.calls, self._lookback_ms, discard=self._let_go_of
        )
        with refusals(self._lister, self._skipped):
            for window, probe in windows:
                if window.span == 1 and (probe.first.count or 0) > self._planner.most_calls:
                    raise PagingError(
                        self._lister.stream,
                        window,
                        f"TeleCMI reports {probe.first.count} records in one millisecond",
                    )
                if self._let_go:
                    probe.sent, self._let_go = (probe.sent or len(probe.read)) + self._let_go, 0
                read = self._make_read(self._lister, window, probe)
                covered += window.span
                known += probe.calls
                if known:  # an estimate of 0 from empty first windows says nothing (and shows a stream as done)
                    self._emit_estimate(estimate_total(known, covered, remaining - covered))
                if self._expect is not None:
                    self._expect(window, read.pages)
                self._backlog.add(read.pages)
                for number in range(1, read.pages + 1):
                    yield PagePartition(read, number, self._backlog, self._skipped, self._emit)
            if not known:  # every window was empty: now 0 is what is known
                self._emit_estimate(0)

    def _emit_estimate(self, rows: int) -> None:
        self._messages.emit_message(
            AirbyteMessage(
                type=Type.TRACE,
                trace=AirbyteTraceMessage(
                    type=TraceType.ESTIMATE,
                    emitted_at=time.time() * 1000,
                    estimate=AirbyteEstimateTraceMessage(
                        name=self._lister.stream, type=EstimateType.STREAM, row_estimate=rows
                    ),
                ),
            )
        )


class WholeListPartition(Partition):
    """A list without windows, read whole: from the first of its endpoints that TeleCMI has."""

    def __init__(self, listers: list[Lister], skipped: Skipped) -> None:
        self._listers = listers
        self._skipped = skipped

    def read(self) -> Iterable[Record]:
        for number, lister in enumerate(self._listers, 1):
            reading = WholeRead(lister)
            with refusals(lister, self._skipped) as refusal:
                try:
                    for batch in reading.records():
                        yield from records_of(lister.stream, batch, None)
                    return
                except EndpointMissing:
                    if number == len(self._listers):
                        raise
                    lister.logger.info(
                        "TeleCMI has no %s here; reading %s from %s",
                        lister.endpoint.path,
                        lister.stream,
                        self._listers[number].endpoint.path,
                    )
            if refusal.skipped:
                return

    def to_slice(self) -> Optional[dict[str, Any]]:
        return None

    def stream_name(self) -> str:
        return self._listers[0].stream

    def __hash__(self) -> int:
        return hash(self.stream_name())


class OnePartition(PartitionGenerator):
    def __init__(self, partition: Partition) -> None:
        self._partition = partition

    def generate(self) -> Iterable[Partition]:
        yield self._partition


class Chained(PartitionGenerator):
    """Some partitions first, then those of another generator."""

    def __init__(self, first: list[Partition], then: PartitionGenerator) -> None:
        self._first = first
        self._then = then

    def generate(self) -> Iterable[Partition]:
        yield from self._first
        yield from self._then.generate()
