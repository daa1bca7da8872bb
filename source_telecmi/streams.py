"""Streams from rows: a list row (`platforms.LISTS`) becomes a concurrent CDK stream with its schema.

Records are TeleCMI's, less anything named like a secret (at any depth), with the row's constants
and the warehouse fields added, then made to match the stream's schema (`records.Conformer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

from airbyte_cdk.models import SyncMode
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository, MessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import Cursor, CursorField, FinalStateCursor
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader

from source_telecmi.changes import NULLED
from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.engine.audit import AUDIT_CURSOR, AUDIT_KEY, SYNC_AUDIT, Audit
from source_telecmi.engine.ledger import identity
from source_telecmi.engine.one_answer import DayCursor, DayReading, SinglePartition, balance_extra, days_to_read
from source_telecmi.engine.partitions import FullRefreshWindows, OnePartition, WholeListPartition, WindowPartitions
from source_telecmi.engine.reading import Identify, Lister, by_content
from source_telecmi.engine.refusals import Skipped
from source_telecmi.records import Conformer
from source_telecmi.saved_state import readable_state
from source_telecmi.secret_values import replace_secrets
from source_telecmi.secrets import without_secrets
from source_telecmi.state import WindowCursor
from source_telecmi.telecmi.client import TelecmiApi
from source_telecmi.telecmi.platforms import ListRow, StreamKind
from source_telecmi.timeline.instants import day_of, instant_of, iso_ms
from source_telecmi.timeline.planning import WindowPlanner
from source_telecmi.timeline.resuming import ranges_to_read

STARTED_AT = "started_at"


def schema_of(name: str) -> dict[str, Any]:
    """A stream's JSON schema, its shared parts resolved."""
    return ResourceSchemaLoader("source_telecmi").get_schema(name)


def instant_for(row: ListRow) -> Callable[[Mapping[str, Any]], Optional[int]]:
    """When a record of `row` was made, in epoch ms, whatever form TeleCMI sent its cursor in."""
    cursor = row.cursor if row.windowed else None

    def instant(record: Mapping[str, Any]) -> Optional[int]:
        return instant_of(record.get(cursor)) if cursor else None

    return instant


def identity_for(row: ListRow) -> Identify:
    """Which call a record of `row` is, within one read: its key (India's `_id` where it has no other) and its time."""
    key = row.primary_key[0] if row.primary_key else None
    if key is None:
        return by_content
    fallback = row.key_from
    time_field = row.cursor if row.windowed else None

    def identify(record: dict[str, Any], instant: Optional[int]) -> Hashable:
        value = record.get(key)
        if value is None and fallback is not None:
            value = record.get(fallback)
        return identity(value, instant, record, time_field)

    return identify


def shaper(row: ListRow, conform: Conformer) -> Callable[[dict[str, Any], Optional[int]], dict[str, Any]]:
    """The function that makes a TeleCMI record of `row` warehouse-ready."""
    key = row.primary_key[0] if row.primary_key else None

    def shape(record: dict[str, Any], instant: Optional[int]) -> dict[str, Any]:
        changes: list[Any] = []  # every value changed on the way: the record's meta.changes (records.py)
        out = without_secrets(record, changes=changes)
        if key and row.key_from and out.get(key) is None and out.get(row.key_from) is not None:
            out[key] = str(out[row.key_from])  # India's id, so every platform keys on the same field
        if row.windowed and row.cursor:
            if instant is None and out.get(row.cursor) is not None:
                changes.append((row.cursor, NULLED))  # a time read in no form: null, and said so on the row
            out[row.cursor] = instant
            out[STARTED_AT] = iso_ms(instant) if instant is not None else None
        out.update(row.constants)
        shaped = conform(out, changes)
        replace_secrets(shaped, changes)
        return shaped

    return shape


def build_stream(
    row: ListRow,
    json_schema: Mapping[str, Any],
    partitions: Optional[PartitionGenerator],
    cursor: Cursor,
    logger: logging.Logger,
) -> DefaultStream:
    """A concurrent CDK stream for `row`."""
    return DefaultStream(
        partition_generator=partitions,  # type: ignore[arg-type] # none for discover
        name=row.stream,
        json_schema=dict(json_schema),
        primary_key=list(row.primary_key),
        cursor_field=CursorField(row.cursor) if row.cursor else None,
        logger=logger,
        cursor=cursor,
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
        row, schema_of(row.schema_name), None, FinalStateCursor(row.stream, None, InMemoryMessageRepository()), logger
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

    def wired(self, row: ListRow, mode: SyncMode) -> DefaultStream:
        """The stream of `row`, wired to read in `mode` by the reader of its kind (`READERS`)."""
        schema = schema_of(row.schema_name)
        conform = self.conformers[row.stream] = Conformer(row.stream, schema)
        shape = shaper(row, conform)
        audit = self.audit.window_done if row.windowed else None
        listers = [
            Lister(row.stream, e, shape, instant_for(row), self.logger, audit, identity_for(row))
            for e in self.api.endpoints(row)
        ]
        incremental = mode == SyncMode.incremental and row.cursor is not None
        partitions, cursor = READERS[row.kind](self, row, listers, incremental)
        return build_stream(row, schema, partitions, cursor, self.logger)


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
        cursor = DayCursor(row.stream, wiring.messages, day_of(days[-1].first), saved, wiring.skipped)
    return DayReading(listers[0], days, wiring.skipped), cursor or FinalStateCursor(row.stream, None, wiring.messages)


def read_whole(wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool) -> Reader:
    """The whole list, page after page to its end (the users), from the first endpoint that has it."""
    return OnePartition(WholeListPartition(listers, wiring.skipped)), FinalStateCursor(
        row.stream, None, wiring.messages
    )


def read_windows(wiring: Wiring, row: ListRow, listers: list[Lister], incremental: bool) -> Reader:
    """Time windows probed one after the other, a partition per page; incremental, from the state's audit trail."""
    settings, messages = wiring.settings, wiring.messages
    cursor = window_cursor(row, settings, wiring.state_manager, messages, wiring) if incremental else None
    lister = listers[0]
    stops = (settings.end - settings.lookback_ms, settings.end) if incremental else ()
    planner = planner_for(settings.num_workers, lister.page_size.largest, stops)
    expect, lookback = (cursor.expect, settings.lookback_ms) if cursor else (None, None)
    partitions = WindowPartitions(
        lister, ranges_for(cursor, settings), planner, messages, wiring.skipped, expect, lookback
    )
    return partitions, cursor or FullRefreshWindows(row.stream, None, messages)


Reader = tuple[PartitionGenerator, Cursor]
# How each kind of list is read: adding a kind is a row here and its reader above.
READERS: dict[StreamKind, Callable[[Wiring, ListRow, list[Lister], bool], Reader]] = {
    StreamKind.SINGLE: read_single,
    StreamKind.DAILY: read_daily,
    StreamKind.WHOLE: read_whole,
    StreamKind.WINDOWED: read_windows,
}


def window_cursor(
    row: ListRow,
    settings: TelecmiConfig,
    state_manager: Optional[ConnectorStateManager],
    messages: MessageRepository,
    wiring: Optional[Wiring] = None,
) -> WindowCursor:
    assert state_manager is not None and row.cursor is not None
    try:
        saved = readable_state(row.stream, state_manager.get_stream_state(row.stream, None))
    except ValueError as unreadable:
        raise ConfigError(str(unreadable)) from None
    # The newest sync_audit the platform kept (its state): a later sync's audit never reached the warehouse.
    landed = state_manager.get_stream_state(SYNC_AUDIT, None).get(AUDIT_CURSOR) if wiring and wiring.audited else None
    return WindowCursor(
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
    )


def audit_stream(logger: logging.Logger) -> DefaultStream:
    """The `sync_audit` stream as discover declares it (its records are the audit's, not a list's)."""
    row = ListRow(stream=SYNC_AUDIT, paths={}, primary_key=AUDIT_KEY, cursor=AUDIT_CURSOR)
    return build_stream(
        row, schema_of(SYNC_AUDIT), None, FinalStateCursor(SYNC_AUDIT, None, InMemoryMessageRepository()), logger
    )
