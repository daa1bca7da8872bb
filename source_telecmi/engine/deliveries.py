"""Files delivered beside their records: each file whole on disk before its record is handed on, exactly once.

A window's records (the recordings of its answered calls and voicemails) reach here once the
window adds up. With files asked for (the catalog's `include_files`), each file is fetched, in
parallel through the sync's one transport, to `recordings/YYYY/MM/DD/<file>` under the staging
folder, and its record carries a `file_reference` to it; otherwise no request at all, and the
record says `metadata_only`. A file TeleCMI has not published yet is `pending`: its record says
so, and the state keeps it (`PendingFiles`) so that every later sync asks again, however old its
call, until it is delivered or `recording_pending_days` have passed since the call.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from airbyte_cdk.models import AirbyteRecordMessageFileReference
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.types import Record

from source_telecmi.engine.ledger import FileCounts
from source_telecmi.engine.port import FileSource
from source_telecmi.telecmi.page import Fetched
from source_telecmi.timeline.instants import DAY_MS, iso_ms, iso_or_none, now_ms

FOLDER = "recordings"
# What a pending file's entry in the state keeps: enough to make its record again when it is delivered.
KEPT = ("time", "kind", "cmiuid", "call_stream", "agent")
# Warnings naming files that leave the state, at most this many per sync (then how many more).
MOST_NAMED = 20
_UNSAFE = re.compile(r"[\\/\x00-\x1f\x7f]")


def relative_path(name: str, instant: Optional[int]) -> str:
    """Where a file lands: recordings/YYYY/MM/DD/<file> by the UTC date of its call (`unknown` without one).

    A name that would leave its folder (a slash, `..`, a control character) is made safe; the record keeps
    TeleCMI's name in `file`."""
    safe = _UNSAFE.sub("_", name)
    if safe.startswith("."):
        safe = "_" + safe
    day = iso_ms(instant)[:10].replace("-", "/") if instant is not None else "unknown"
    return f"{FOLDER}/{day}/{safe}"


class PendingFiles:
    """The files TeleCMI had not published when asked, kept in the state until delivered or too old.

    `saved` holds the pending files of the saved state: this sync asks for them first (`PendingPartition`),
    and its windows leave them to that (a file is emitted once per sync).
    """

    def __init__(self, saved: Mapping[str, Mapping[str, Any]], days: int, logger: logging.Logger) -> None:
        self._entries = {name: dict(entry) for name, entry in saved.items()}
        self.saved = frozenset(saved)
        self._oldest = now_ms() - days * DAY_MS
        self._days = days
        self._logger = logger
        self._named = 0
        self.expired = 0
        self._lock = threading.Lock()

    @staticmethod
    def readable(value: Any) -> dict[str, dict[str, Any]]:
        """The pending files of a saved state; ValueError saying what is wrong."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(f"pending_files is {type(value).__name__}, not an object of file names")
        for name, entry in value.items():
            instant = entry.get("time") if isinstance(entry, Mapping) else False
            if not (instant is None or (isinstance(instant, int) and not isinstance(instant, bool))):
                raise ValueError(f"pending_files {name!r} has no time in epoch milliseconds")
        return {name: dict(entry) for name, entry in value.items()}

    def keep(self, data: Mapping[str, Any]) -> None:
        """A file found pending: kept for later syncs, unless its call is already too old to wait for."""
        entry = {field: data.get(field) for field in KEPT}
        if self._too_old(entry):
            self._let_go(data["file"], entry)
            return
        with self._lock:
            self._entries[data["file"]] = entry

    def delivered(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def due(self) -> list[tuple[str, dict[str, Any]]]:
        """The saved pending files to ask for again; those whose call is too old leave the state, each named."""
        with self._lock:
            entries = [(name, self._entries[name]) for name in sorted(self.saved) if name in self._entries]
        due = []
        for name, entry in entries:
            if self._too_old(entry):
                self._let_go(name, entry)
                self.delivered(name)
            else:
                due.append((name, entry))
        return due

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: dict(self._entries[name]) for name in sorted(self._entries)}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _too_old(self, entry: Mapping[str, Any]) -> bool:
        return entry.get("time") is not None and entry["time"] < self._oldest

    def _let_go(self, name: str, entry: Mapping[str, Any]) -> None:
        with self._lock:
            self.expired += 1
            self._named += 1
            named = self._named
        if named <= MOST_NAMED:
            when = iso_ms(entry["time"]) if entry.get("time") is not None else "an unknown time"
            self._logger.warning(
                "Stream recordings: the file %s (%s of %s, cmiuid %s) was still not published %d days "
                "(recording_pending_days) after its call: it is not asked for again and leaves the state, "
                "not downloaded",
                name,
                entry.get("call_stream"),
                when,
                entry.get("cmiuid"),
                self._days,
            )
        elif named == MOST_NAMED + 1:
            self._logger.warning("Stream recordings: more pending files leave the state (counted in the summary)")


class Deliveries:
    """Hands on the records of a stream of files, each file delivered first (or no file: metadata only)."""

    def __init__(
        self,
        stream: str,
        fetcher: Optional[FileSource],
        staging: Optional[Path],
        pending: PendingFiles,
        workers: int,
        logger: logging.Logger,
    ) -> None:
        self.stream = stream
        self._fetcher = fetcher
        self._staging = staging
        self.pending = pending
        self._logger = logger
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="files") if fetcher else None
        self._lock = threading.Lock()
        self.counts = FileCounts()
        self.staged_bytes = 0
        self.left_to_pending = 0  # records of this sync's windows whose file the saved state's retry owns
        self._folders: set[Path] = set()
        self.unnamed: Counter[str] = Counter()  # per list: records said to have a file that name none

    def emit(self, stream: str, batch: list[dict[str, Any]], read: Any) -> Iterator[Record]:
        """The records of a window's batch: each file fetched first (in parallel), or metadata only."""
        counts: FileCounts = read.files
        if self._pool is None:
            for data in batch:
                yield self._record(data, Fetched("metadata_only"), None, read.slice, counts)
            return
        todo = []
        for data in batch:
            if data["file"] in self.pending.saved:  # its row is in the table already: counted as the window's
                with self._lock:
                    self.left_to_pending += 1
                counts.add("left to the retry")
                continue
            todo.append(data)
        for data, fetched, where in self._pool.map(self._fetch, todo):
            yield self._record(data, fetched, where, read.slice, counts)

    def retry_pending(self) -> Iterator[Record]:
        """The saved state's pending files, asked for again: a record for each one delivered now."""
        if self._pool is None:
            return
        due = [
            {"file": name, **entry, "started_at": iso_or_none(entry.get("time"))} for name, entry in self.pending.due()
        ]
        for data, fetched, where in self._pool.map(self._fetch, due):
            if fetched.status == "downloaded":
                yield self._record(data, fetched, where, None, None)

    def _fetch(self, data: dict[str, Any]) -> tuple[dict[str, Any], Fetched, str]:
        assert self._fetcher is not None and self._staging is not None
        where = relative_path(data["file"], data.get("time"))
        self._folder(Path(where).parent)
        return data, self._fetcher.fetch(data["file"], self._staging / where), where

    def _folder(self, relative: Path) -> None:
        """Make the folders of `relative` under the staging folder, each readable by the destination's user
        (whatever the umask): it reads the files as another user."""
        assert self._staging is not None
        with self._lock:
            if relative in self._folders:
                return
            for place in reversed((relative, *relative.parents[:-1])):
                folder = self._staging / place
                folder.mkdir(exist_ok=True)
                folder.chmod(0o755)
            self._folders.add(relative)

    def _record(
        self, data: dict[str, Any], fetched: Fetched, where: Optional[str], window: Any, counts: Optional[FileCounts]
    ) -> Record:
        downloaded = fetched.status == "downloaded"
        data = {
            **data,
            "status": fetched.status,
            "file_size_bytes": fetched.size,
            "sha256": fetched.sha256,
            "content_type": fetched.content_type,
            "fetched_at": iso_ms(now_ms()) if downloaded else None,
        }
        reference = None
        if downloaded and where is not None and self._staging is not None:
            reference = AirbyteRecordMessageFileReference(
                staging_file_url=str(self._staging / where),
                source_file_relative_path=where,
                file_size_bytes=fetched.size,
            )
            self.pending.delivered(data["file"])
        elif fetched.status == "pending":
            self._logger.info("Stream recordings: %s is pending: %s", data["file"], fetched.reason)
            self.pending.keep(data)
        with self._lock:
            self.staged_bytes += (fetched.size or 0) if downloaded else 0
        self.counts.add(fetched.status)
        if counts is not None:
            counts.add(fetched.status)
        return Record(data=data, stream_name=self.stream, associated_slice=window, file_reference=reference)

    def warnings(self) -> list[str]:
        """What the stream could not make a record of: calls said to be recorded that name no file."""
        return [
            f"Stream {self.stream}: {n} records of {name} say the call was recorded but name no file: no "
            "recordings record for them"
            for name, n in sorted(self.unnamed.items())
        ]

    def summary(self) -> str:
        """The stream's line on its files: downloaded, bytes staged, pending, let go of."""
        counts = self.counts
        if self._pool is None:
            return f"Stream {self.stream}: {counts.emitted} records, metadata only (include_files is off): no file read"
        return (
            f"Stream {self.stream}: {counts.downloaded} files downloaded, {self.staged_bytes} bytes "
            f"({self.staged_bytes / 2**20:.1f} MiB) staged under {self._staging}; {counts.pending} pending, "
            f"{len(self.pending)} pending files kept in the state, {self.pending.expired} no longer asked for "
            f"(recording_pending_days); {self.left_to_pending} records left to the retry of pending files"
        )

    def close(self) -> None:
        """The sync is over: no download starts, those running stop, no temporary file is left behind."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._fetcher is not None:
            self._fetcher.abandon()


class PendingPartition(Partition):
    """The saved state's pending files, asked for again before the stream's windows are read."""

    def __init__(self, deliveries: Deliveries) -> None:
        self._deliveries = deliveries

    def read(self) -> Iterable[Record]:
        yield from self._deliveries.retry_pending()

    def to_slice(self) -> Optional[Mapping[str, Any]]:
        return None

    def stream_name(self) -> str:
        return self._deliveries.stream

    def __hash__(self) -> int:
        return hash((self._deliveries.stream, "pending files"))
