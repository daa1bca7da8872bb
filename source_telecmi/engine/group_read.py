"""Several lists read in the same windows, as one stream: the recordings of the answered calls and voicemails.

A window of the group is the same window of each list: probed on each, its pages those of every
list, each made to add up by its own `WindowRead` (the same engine as the lists' own streams),
and done when the last page of all of them is. So the group's state is one window cursor like any
windowed stream's, and its audit one row per window: the counts of its lists added up, complete
only when each list's window is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

from source_telecmi.engine.ledger import FileCounts, Probe, WindowAudit
from source_telecmi.engine.reading import Lister
from source_telecmi.engine.window_read import WindowPages, WindowRead
from source_telecmi.telecmi.page import Page
from source_telecmi.timeline.instants import Window


@dataclass
class GroupEndpoint:
    """The group's endpoints, as the refusal rule sees one: served if any served."""

    listers: list[Lister]

    @property
    def served(self) -> bool:
        return any(lister.endpoint.served for lister in self.listers)

    @property
    def path(self) -> str:
        return ", ".join(lister.endpoint.path for lister in self.listers)


class GroupLister:
    """The lists of a group, with the stream's name, its audit, and the page size of the largest."""

    def __init__(
        self, stream: str, listers: list[Lister], audit: Optional[Callable[[WindowAudit], None]] = None
    ) -> None:
        self.stream = stream
        self.listers = listers
        self.audit = audit
        self.logger = listers[0].logger
        self.endpoint = GroupEndpoint(listers)
        self.page_size = max((lister.page_size for lister in listers), key=lambda size: size.largest)

    def probe(self, window: Window, most_calls: int, expected: Optional[float] = None) -> GroupProbe:
        share = expected / len(self.listers) if expected is not None else None
        return GroupProbe([lister.probe(window, most_calls, share) for lister in self.listers])


class GroupProbe:
    """The probes of one window on each list of the group."""

    def __init__(self, probes: list[Probe]) -> None:
        self.probes = probes
        self.read: dict[int, Page] = {n: p for probe in probes for n, p in probe.read.items()}
        self.sent = sum(probe.sent or len(probe.read) for probe in probes)
        self.first = Page(count=sum(probe.first.count or 0 for probe in probes), records=[], sent=0)

    @property
    def calls(self) -> int:
        return sum(probe.calls for probe in self.probes)


class GroupRead(WindowPages):
    """The read of one window of every list of the group, shared by the partitions of its pages."""

    def __init__(self, group: GroupLister, window: Window, probe: GroupProbe) -> None:
        self.lister = group
        self.window = window
        self.slice = window.as_slice()
        extra = probe.sent - sum(p.sent or len(p.read) for p in probe.probes)  # probes let go of, counted here
        self.reads = [WindowRead(lister, window, p) for lister, p in zip(group.listers, probe.probes, strict=True)]
        self.reads[0].requests += max(0, extra)
        self.pages = sum(read.pages for read in self.reads)
        self._pages = [(read, number) for read in self.reads for number in range(1, read.pages + 1)]
        self.files = FileCounts()
        self.done: Optional[WindowAudit] = None
        self._lock = threading.Lock()

    def read_page(self, number: int) -> None:
        read, page = self._pages[number - 1]
        read.read_page(page)

    def records(self) -> Iterator[list[dict[str, Any]]]:
        """Make each list's window add up, then hand on its records (called by the last page of all to finish)."""
        for read in self.reads:
            yield from read.records()
        done = [read.done for read in self.reads if read.done is not None]
        self.done = WindowAudit(
            stream=self.lister.stream,
            window=self.window,
            telecmi_count=sum(d.telecmi_count for d in done),
            calls_read=sum(d.calls_read for d in done),
            records_emitted=self.files.emitted,
            requests=sum(d.requests for d in done),
            verdict="complete" if all(d.verdict == "complete" for d in done) else "count_wrong",
            shortfall=sum(d.shortfall for d in done),
            files_downloaded=self.files.downloaded,
            files_pending=self.files.pending,
        )
