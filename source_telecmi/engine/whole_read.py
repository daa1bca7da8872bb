"""A list without windows (the users), read whole: page after page, again if it falls short of its count.

Kept apart from the reads of windows because its rules differ: no count may be sent (it is read until a
short or empty page), and a count no complete read reaches is judged wrong only when reads agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from source_telecmi.engine.ledger import Ledger, PagingError
from source_telecmi.engine.reading import Lister, Reading

# A whole list (no windows) is read at most this many times before its count is judged.
WHOLE_LIST_READS = 3


class WholeRead(Reading):
    """A list without windows (the users): read page after page, again if it falls short of its count."""

    def __init__(self, lister: Lister) -> None:
        super().__init__(lister, None, lister.page_size.size)

    def records(self) -> Iterator[list[dict[str, Any]]]:
        """Read the list until it adds up, then hand on each of its records once."""
        self._read_whole()
        yield from self.release()

    def _read_whole(self) -> None:
        reads: list[Ledger] = []
        for _ in range(WHOLE_LIST_READS):
            read = self.read_range(None)
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
