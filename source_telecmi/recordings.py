"""The recordings stream's records: one per file TeleCMI holds, made from the records of the lists that name files.

An answered call (incoming or outgoing) whose `record` is true (`"true"` or `true`) and that has a
`filename`, and every voicemail (`voicename`), is a file. Its record says which file, of which call
or voicemail, when, and (once `engine.deliveries` has fetched it) what came of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Optional

from source_telecmi.records import Conformer
from source_telecmi.secret_values import replace_secrets
from source_telecmi.telecmi.platforms import FileSource
from source_telecmi.timeline.instants import iso_or_none


def has_file(source: FileSource, record: Mapping[str, Any], unnamed: Optional[Counter[str]] = None) -> Optional[str]:
    """The name of the file a record of `source` has, if it has one; one said to have a file that names none
    is counted in `unnamed` (by its list), for the stream's warning."""
    if source.flag_field is not None:
        flag = record.get(source.flag_field)
        if not (flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")):
            return None
    name = record.get(source.name_field)
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if isinstance(name, str) and name.strip():
        return name
    if unnamed is not None:
        unnamed.update([source.stream])
    return None


def recording_of(
    source: FileSource, key_fields: tuple[str, ...], conform: Conformer, unnamed: Optional[Counter[str]] = None
) -> Callable[[dict[str, Any], Optional[int]], Optional[dict[str, Any]]]:
    """The shape of a record of `source` as a recording (None: it has no file); `key_fields` find a call's key."""

    def shape(record: dict[str, Any], instant: Optional[int]) -> Optional[dict[str, Any]]:
        name = has_file(source, record, unnamed)
        if name is None:
            return None
        key = next((record[f] for f in key_fields if record.get(f) is not None), None) if key_fields else None
        out = {
            "file": name,
            "kind": source.kind,
            "cmiuid": key,
            "call_stream": source.stream,
            "time": instant,
            "started_at": iso_or_none(instant),
            "agent": record.get("agent"),
        }
        changes: list[Any] = []
        shaped = conform(out, changes)
        replace_secrets(shaped, changes)
        return shaped

    return shape
