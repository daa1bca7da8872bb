"""The changes made to a record's values on their way out, and how they reach its RECORD message.

Every value changed (set to null by `records.Conformer`, a field named like a secret dropped, a
secret replaced inside a value: `secrets.py`) is listed on its record as `(field path, Change)`: the
record's `changes`, which reach the RECORD message as its `meta.changes` (the Airbyte protocol's
`AirbyteRecordMessageMeta`; destinations keep it in `_airbyte_meta`). The CDK builds the RECORD
message from a plain copy of the record's data, so `RecordQueue` carries the changes in that data
under a key no JSON has, and `take_changes` moves them to the message's meta.
"""

from __future__ import annotations

from queue import Queue
from typing import Any, Optional

from airbyte_cdk.models import AirbyteMessage, Type
from airbyte_cdk.models.airbyte_protocol import (
    AirbyteRecordMessageMeta,
    AirbyteRecordMessageMetaChange,
    Change,
    Reason,
)
from airbyte_cdk.sources.types import Record

# A change made to a record's value on its way out: the field's path (`rate`, `notes[0].date`,
# `sip.password`) and what was done to it (NULLED: the value is gone; TRUNCATED: part of it is).
FieldChange = tuple[str, Change]
NULLED, TRUNCATED = Change.NULLED, Change.TRUNCATED
# Why, as the protocol names it: the value could not be emitted as TeleCMI sent it.
REASON = Reason.SOURCE_SERIALIZATION_ERROR


class Changed(dict):  # type: ignore[type-arg]
    """A record (a plain dict for everything that reads it) and the changes made to it: `changes`."""

    __slots__ = ("changes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changes: list[FieldChange] = []


def meta_of(changes: list[FieldChange]) -> AirbyteRecordMessageMeta:
    """The protocol's record meta for these changes, in the order they were made."""
    return AirbyteRecordMessageMeta(
        changes=[AirbyteRecordMessageMetaChange(field=field, change=change, reason=REASON) for field, change in changes]
    )


class _ChangesKey:
    """The key a record's changes travel under in its data: no JSON key is anything but a string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the record's changes>"


_CHANGES = _ChangesKey()


class RecordQueue(Queue):  # type: ignore[type-arg]
    """The concurrent reader's queue: a record with changes enters it carrying them in its data.

    The CDK makes the RECORD message from `dict(record.data)`, which keeps no attribute of a
    `Changed`; a key of its data survives the copy. `take_changes` removes it again before the
    message is printed (and a key that is no string fails the printing loudly if it ever were not).
    """

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if isinstance(item, Record):
            changes = getattr(item.data, "changes", None)
            if changes:
                item = Record(
                    data={**item.data, _CHANGES: list(changes)},
                    stream_name=item.stream_name,
                    associated_slice=item.associated_slice,
                    file_reference=item.file_reference,
                )
        super().put(item, block, timeout)


def take_changes(message: AirbyteMessage) -> None:
    """A RECORD message's changes, carried in its data by `RecordQueue`, moved to its `meta.changes`."""
    if message.type == Type.RECORD and message.record is not None:
        changes = message.record.data.pop(_CHANGES, None)
        if changes:
            message.record.meta = meta_of(changes)
