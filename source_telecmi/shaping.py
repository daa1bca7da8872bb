"""Records made warehouse-ready: each stream's schema, when a record was made, which call it is, and its shape.

Records are TeleCMI's, less anything named like a secret (at any depth), with the row's constants
and the warehouse fields added, then made to match the stream's schema (`records.Conformer`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Optional

from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader

from source_telecmi.changes import NULLED
from source_telecmi.engine.ledger import identity
from source_telecmi.engine.reading import Identify, by_content
from source_telecmi.records import Conformer
from source_telecmi.secret_values import replace_secrets
from source_telecmi.secrets import without_secrets
from source_telecmi.telecmi.platforms import ListRow
from source_telecmi.timeline.instants import instant_of, iso_or_none

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
            out[STARTED_AT] = iso_or_none(instant)
        out.update(row.constants)
        shaped = conform(out, changes)
        replace_secrets(shaped, changes)
        return shaped

    return shape
