"""Streams from rows: a list row (`platforms.LISTS`) becomes a concurrent CDK stream with its schema.

Records are TeleCMI's, less anything named like a secret (at any depth), with the row's constants
and the warehouse fields added, then made to match the stream's schema (`records.Conformer`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

from airbyte_cdk.models import SyncMode
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository, MessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import Cursor, CursorField, FinalStateCursor
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.utils.files_directory import get_files_directory

from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.engine.audit import AUDIT_CURSOR, AUDIT_KEY, SYNC_AUDIT, Audit
from source_telecmi.engine.deliveries import Deliveries, PendingFiles, PendingPartition
from source_telecmi.engine.group_read import GroupLister, GroupRead
from source_telecmi.engine.one_answer import DayCursor, DayReading, SinglePartition, balance_extra, days_to_read
from source_telecmi.engine.partitions import (
    Chained,
    FullRefreshWindows,
    OnePartition,
    WholeListPartition,
    WindowPartitions,
)
from source_telecmi.engine.reading import Lister
from source_telecmi.engine.refusals import Skipped
from source_telecmi.recordings import recording_of
from source_telecmi.records import Conformer
from source_telecmi.saved_state import PENDING, readable_state, unreadable_state
from source_telecmi.shaping import identity_for, instant_for, schema_of, shaper
from source_telecmi.state import FileCursor, WindowCursor
from source_telecmi.telecmi.client import TelecmiApi
from source_telecmi.telecmi.platforms import FILE_SOURCES, LISTS, ListRow, StreamKind
from source_telecmi.timeline.instants import day_of, instant_of
from source_telecmi.timeline.planning import WindowPlanner
from source_telecmi.timeline.resuming import ranges_to_read

ROWS = {row.stream: row for row in LISTS}


def build_stream(
    row: ListRow,
    json_schema: Mapping[str, Any],
    partitions: Optional[PartitionGenerator],
    cursor: Cursor,
    logger: logging.Logger,
    files: bool = False,
) -> DefaultStream:
    """A concurrent CDK stream for `row` (`files`: its records may carry files, `is_file_based`)."""
    return DefaultStream(
        partition_generator=partitions,  # type: ignore[arg-type] # none for discover
        name=row.stream,
        json_schema=dict(json_schema),
        primary_key=list(row.primary_key),
        cursor_field=CursorField(row.cursor) if row.cursor else None,
        logger=logger,
        cursor=cursor,
        supports_file_transfer=files,
    )


def planner_for(num_workers: int, page_size: int, stops: Sequence[int] = ()) -> WindowPlanner:
    """Windows big enough to keep every worker busy, small enough to checkpoint often; a page or two at `stops`."""
    target_pages = max(4 * num_workers, 50)
    return WindowPlanner(
        target_calls=target_pages * page_size,
        most_calls=max(5_000, 4 * target_pages * page_size),
        page_calls=page_size,
        stops=stops,
    )


def ranges_for(cursor: Optional[WindowCursor], settings: TelecmiConfig) -> Callable[[], list[tuple[int, int]]]:
    """What a sync reads: the whole range, or (incremental) what the state has not finished, less the lookback,
    from the start of the audited window holding the lookback point (the state's audit trail)."""
    if cursor is None:
        return lambda: [(settings.start, settings.end)]

    def ranges() -> list[tuple[int, int]]:
        found = ranges_to_read(cursor.finished(), settings.start, settings.end, settings.lookback_ms, cursor.trail)
        cursor.reading(found)
        return found

    return ranges


def declared(row: ListRow, logger: logging.Logger) -> DefaultStream:
    """The stream of `row` as discover declares it."""
    return build_stream(
        row,
        schema_of(row.schema_name),
        None,
        FinalStateCursor(row.stream, None, InMemoryMessageRepository()),
        logger,
        files=row.kind is StreamKind.FILES,
    )


class Wiring(NamedTuple):
    """What the streams of one sync share."""

    settings: TelecmiConfig
    logger: logging.Logger
    api: TelecmiApi
    state_manager: ConnectorStateManager
    messages: MessageRepository
    skipped: Skipped
    audit: Audit
    conformers: dict[str, Conformer]
    audited: bool = False  # whether this sync prints sync_audit
    include_files: frozenset[str] = frozenset()  # the streams whose files the catalog asks for
    after: dict[str, Deliveries] = {}  # per sync (give a fresh dict): the files each stream of files delivered

    def wired(self, row: ListRow, mode: SyncMode) -> DefaultStream:
        """The stream of `row`, wired to read in `mode` by the reader of its kind (`READERS`)."""
        schema = schema_of(row.schema_name)
        conform = self.conformers[row.stream] = Conformer(row.stream, schema)
        listers = []  # a stream of files makes its own (`read_files`)
        if row.kind is not StreamKind.FILES:
            shape = shaper(row, conform)
            audit = self.audit.window_done if row.windowed else None
            listers = [
                Lister(row.stream, e, shape, instant_for(row), self.logger, audit, identity_for(row))
                for e in self.api.endpoints(row)
            ]
        incremental = mode == SyncMode.incremental and row.cursor is not None
        partitions, cursor = READERS[row.kind](self, row, listers, incremental)
        return build_stream(row, schema, partitions, cursor, self.logger, files=row.kind is StreamKind.FILES)

    def file_listers(self, row: ListRow, unnamed: Counter[str]) -> list[Lister]:
        """A stream of files reads the lists that name them (`FILE_SOURCES`) its platform has, as its own records;
        `unnamed` counts, per list, the records said to have a file that name none."""
        listers, conform = [], self.conformers[row.stream]
        for source in FILE_SOURCES:
            list_row = ROWS[source.stream]
            keys = (*list_row.primary_key, *((list_row.key_from,) if list_row.key_from else ()))
            shape = recording_of(source, keys if source.kind == "call" else (), conform, unnamed)
            for endpoint in self.api.endpoints(list_row):
                name = f"{row.stream} ({source.stream})"
                listers.append(
                    Lister(name, endpoint, shape, instant_for(list_row), self.logger, None, identity_for(list_row))
                )
        return listers


def read_single(wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool) -> Reader:
    """One answer a sync (the balance): one partition, no state."""
    partition = OnePartition(SinglePartition(listers[0], wiring.skipped, balance_extra))
    return partition, FinalStateCursor(row.stream, None, wiring.messages)


def read_daily(wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool) -> Reader:
    """One answer per day begun (the daily totals); incremental, from the last day read in full."""
    settings, cursor = wiring.settings, None
    saved = wiring.state_manager.get_stream_state(row.stream, None) if incremental else {}
    days = days_to_read(saved, settings.start, settings.end, settings.lookback_days, row.stream)
    if incremental and days:
        cursor = DayCursor(
            row.stream, wiring.messages, day_of(days[-1].first), saved, wiring.skipped, pacing=pacing_of(wiring.api)
        )
    return DayReading(listers[0], days, wiring.skipped), cursor or FinalStateCursor(row.stream, None, wiring.messages)


def read_whole(wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool) -> Reader:
    """The whole list, page after page to its end (the users), from the first endpoint that has it."""
    return OnePartition(WholeListPartition(listers, wiring.skipped)), FinalStateCursor(
        row.stream, None, wiring.messages
    )


def read_windows(
    wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool, files: Optional[Deliveries] = None
) -> Reader:
    """Time windows probed one after the other, a partition per page; incremental, from the state's audit trail.

    With `files` (a stream of files), a window is read on every list of `listers` together, each file is
    delivered before its record, and the state also keeps the files still pending."""
    settings, messages = wiring.settings, wiring.messages
    cursor = window_cursor(row, settings, wiring.state_manager, messages, wiring, files) if incremental else None
    lister: Any = listers[0] if files is None else GroupLister(row.stream, listers, wiring.audit.window_done)
    stops = (settings.end - settings.lookback_ms, settings.end) if incremental else ()
    planner = planner_for(settings.num_workers, lister.page_size.largest, stops)
    expect, lookback = (cursor.expect, settings.lookback_ms) if cursor else (None, None)
    reading: dict[str, Any] = {} if files is None else {"make_read": GroupRead, "emit": files.emit}
    partitions = WindowPartitions(
        lister, ranges_for(cursor, settings), planner, messages, wiring.skipped, expect, lookback, **reading
    )
    if files is not None and cursor is not None and files.pending.saved:
        partitions = Chained([PendingPartition(files)], partitions)
    return partitions, cursor or FullRefreshWindows(row.stream, None, messages)


def read_files(wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool) -> Reader:
    """The files of other lists' records (`read_windows` over them), each delivered when the catalog asks for
    files; the saved state's pending files asked for again first."""
    settings = wiring.settings
    fetcher = wiring.api.file_fetcher(row) if row.stream in wiring.include_files else None
    saved = wiring.state_manager.get_stream_state(row.stream, None) if incremental else {}
    try:
        pending = PendingFiles(
            PendingFiles.readable(saved.get(PENDING)), settings.recording_pending_days, wiring.logger
        )
    except ValueError as unreadable:
        raise unreadable_state(f"stream {row.stream}: {unreadable}") from None
    staging = Path(get_files_directory()) if fetcher is not None else None
    if staging is not None:
        try:
            staging.mkdir(parents=True, exist_ok=True)  # the platform mounts it; elsewhere the CDK's default
        except OSError as error:
            message = f"Stream {row.stream}: cannot make the staging folder {staging} for its files: {error}"
            raise ConfigError(message) from None
    files = Deliveries(row.stream, fetcher, staging, pending, settings.num_workers, wiring.logger)
    wiring.after[row.stream] = files
    return read_windows(wiring, row, wiring.file_listers(row, files.unnamed), incremental, files)


Reader = tuple[PartitionGenerator, Cursor]
# How each kind of list is read: adding a kind is a row here and its reader above.
READERS: dict[StreamKind, Callable[[Wiring, ListRow, list[Lister], bool], Reader]] = {
    StreamKind.SINGLE: read_single,
    StreamKind.DAILY: read_daily,
    StreamKind.WHOLE: read_whole,
    StreamKind.WINDOWED: read_windows,
    StreamKind.FILES: read_files,
}


def window_cursor(
    row: ListRow,
    settings: TelecmiConfig,
    state_manager: Optional[ConnectorStateManager],
    messages: MessageRepository,
    wiring: Optional[Wiring] = None,
    files: Optional[Deliveries] = None,
) -> WindowCursor:
    assert state_manager is not None and row.cursor is not None
    try:
        saved = readable_state(row.stream, state_manager.get_stream_state(row.stream, None))
    except ValueError as unreadable:
        raise ConfigError(str(unreadable)) from None
    # The newest sync_audit the platform kept (its state): a later sync's audit never reached the warehouse.
    landed = state_manager.get_stream_state(SYNC_AUDIT, None).get(AUDIT_CURSOR) if wiring and wiring.audited else None
    extra: dict[str, Any] = {} if files is None else {"pending": files.pending.snapshot}
    return (WindowCursor if files is None else FileCursor)(
        row.stream,
        saved,
        messages,
        state_manager,
        start=settings.start,
        end=settings.end,
        cursor_field=row.cursor,
        lookback_ms=settings.lookback_ms,
        synced_at=instant_of(wiring.audit.synced_at) if wiring else None,
        audit_landed_at=instant_of(landed) if landed is not None else None,
        pacing=pacing_of(wiring.api) if wiring else None,
        **extra,
    )


def pacing_of(api: TelecmiApi) -> Callable[[], Optional[dict[str, Any]]]:
    """What the sync has learned of TeleCMI's rate limit so far, as a state holds it (None: nothing)."""

    def learned() -> Optional[dict[str, Any]]:
        found = api.pacer.learned()
        return found.as_state() if found is not None else None

    return learned


def audit_stream(logger: logging.Logger) -> DefaultStream:
    """The `sync_audit` stream as discover declares it (its records are the audit's, not a list's)."""
    row = ListRow(stream=SYNC_AUDIT, paths={}, primary_key=AUDIT_KEY, cursor=AUDIT_CURSOR)
    return build_stream(
        row, schema_of(SYNC_AUDIT), None, FinalStateCursor(SYNC_AUDIT, None, InMemoryMessageRepository()), logger
    )
