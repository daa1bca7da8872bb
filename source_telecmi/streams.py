"""Streams from rows: a list row (`platforms.LISTS`) becomes a concurrent CDK stream with its schema.

Records are TeleCMI's, less anything named like a secret (at any depth), with the row's constants
and the warehouse fields added, then made to match the stream's schema (`records.Conformer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Optional

from airbyte_cdk.sources.streams.concurrent.cursor import Cursor, CursorField
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader

from source_telecmi.platforms import ListRow
from source_telecmi.records import Conformer
from source_telecmi.secrets import without_secrets
from source_telecmi.timeline import instant_of, iso_ms

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


def shaper(row: ListRow, conform: Conformer) -> Callable[[dict[str, Any], Optional[int]], dict[str, Any]]:
    """The function that makes a TeleCMI record of `row` warehouse-ready."""
    key = row.primary_key[0] if row.primary_key else None

    def shape(record: dict[str, Any], instant: Optional[int]) -> dict[str, Any]:
        out = without_secrets(record)
        if key and row.key_from and out.get(key) is None and out.get(row.key_from) is not None:
            out[key] = str(out[row.key_from])  # India's id, so every platform keys on the same field
        if row.windowed and row.cursor:
            out[row.cursor] = instant
            out[STARTED_AT] = iso_ms(instant) if instant is not None else None
        out.update(row.constants)
        return conform(out)

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
