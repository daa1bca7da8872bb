"""Records made to match their stream's schema: one JSON type per field, whatever form TeleCMI sent.

TeleCMI sends the same field as a number on one endpoint and a string on another (phone numbers,
India's `rate`, a user's `notify`); warehouse destinations need one column type per field. The
`Conformer` converts every declared field to its declared type and counts, per field, the values
it could not convert, so that no value is dropped without a word.

Every value changed on the way (set to null here, a field named like a secret dropped, a secret
replaced inside a value: `secrets.py`) is listed on its record as `(field path, Change)`: the
record's `changes`, which reach the RECORD message as its `meta.changes` (the Airbyte protocol's
`AirbyteRecordMessageMeta`; destinations keep it in `_airbyte_meta`). The CDK builds the RECORD
message from a plain copy of the record's data, so `RecordQueue` carries the changes in that data
under a key no JSON has, and `take_changes` moves them to the message's meta.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
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

# A field absent from a record (`dict.get`'s default): absent fields stay absent.
_ABSENT: Any = object()

# ASCII digits only: Python's int() and float() also read "1_000", "١٢" (Arabic-Indic digits), "nan"
# and "infinity", none of which is a number TeleCMI means.
_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# How `report` names what a value could not be read as.
_NOUNS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "formatted": "a string",
}
_EXAMPLES = 3
_EXAMPLE_CHARS = 20

# A change made to a record's value on its way out: the field's path (`rate`, `notes[0].date`,
# `sip.password`) and what was done to it (NULLED: the value is gone; TRUNCATED: part of it is).
FieldChange = tuple[str, Change]
NULLED, TRUNCATED = Change.NULLED, Change.TRUNCATED
# Why, as the protocol names it: the value could not be emitted as TeleCMI sent it.
REASON = Reason.SOURCE_SERIALIZATION_ERROR

# A converter is called with the value and the record's list of changes, to which it adds a
# change for every value it sets to null.
Convert = Callable[[Any, list[FieldChange]], Any]
# One declared field of an object: its key, the exact type that needs no conversion (None: always
# converted), and the converter, called with a value that is present, not null, not of that type.
Field = tuple[str, "type | None", Convert]


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


class Conformer:
    """Makes records of one stream match its JSON schema, one JSON type per field (plus null).

    `Conformer(stream, schema)` compiles one converter per declared field, at every depth, from the
    schema (with its `$ref`s already resolved, as `ResourceSchemaLoader` returns it). Calling it
    with a record returns a new dict; the record is never modified. Nested objects and lists are
    copied only when a value inside them changes, and are never modified in place either.

    Conversions, by the declared type:

    - **string**: a string as is; an integer (any size: a 20-digit phone number keeps every digit)
      as its decimal digits; a float that is a whole number as its digits (`9.1e11` ->
      `"910000000000"`), another float as Python's shortest repr (`0.49` -> `"0.49"`); a boolean
      as `"true"`/`"false"`. NaN, infinities, objects and lists are set to null.
    - **integer**: an integer as is (a boolean is not one); a float that is a whole number, as that
      integer; a string of ASCII digits with an optional sign, surrounding spaces and an optional
      all-zero fraction (`" -12 "`, `"12.0"`). Anything else (`12.5`, `"12.5"`, `"NA"`, `""`, a
      boolean, an object) is set to null: a value is never truncated.
    - **number**: an integer or a finite float as is; a decimal string (`"0.49"`, `" 3 "`, `"1e3"`)
      as a float. Booleans, NaN, infinities and other strings (`""`, `"NA"`) are set to null.
    - **boolean**: a boolean as is; the integers 1 and 0; the strings true/false, 1/0, yes/no (any
      case, surrounding spaces ignored). Anything else is set to null.
    - **object**: a dict, its declared properties converted by these rules and its other keys kept
      as they are. Anything else is set to null.
    - **array**: a list, each item converted by the `items` schema. A lone item where the list
      belongs (one note object, one string) is a list of that one item, converted the same way.
    - A string declared with a `format` or an `airbyte_type` (`started_at`, `day`) is kept as it is,
      not parsed; anything but a string there is set to null.

    Null stays null and an absent field stays absent; a field the schema does not declare, or
    declares without a type, is kept as it is; a field declared with two types besides null is
    refused when the Conformer is built (ValueError). Every value set to null is counted under its
    field's path (`rate`, `notes[].date`, `sip.domain`): `nulled` has the counts and
    `report()` one line per path, with a few of the values (strings and numbers shortened; objects
    and lists only described, never printed). The record returned is a `Changed` whose `changes`
    list every value set to null by its exact path (`notes[0].date`), NULLED: the row says what
    was lost, the warning how often.

    Thread-safe: the compiled converters are read-only; the counts are updated under a lock, and
    only for values that could not be converted. A value already of its field's type is checked
    with one exact type test (`type(value) is str`, which, unlike `isinstance`, does not take a
    boolean for an integer) and never converted.
    """

    def __init__(self, stream: str, schema: Mapping[str, Any]) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._nulled: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}
        self._nouns: dict[str, str] = {}
        self._fields = self._object_fields(schema, "")

    def __call__(self, record: dict[str, Any], changes: Optional[list[FieldChange]] = None) -> Changed:
        """`record` in its schema's types, with `changes` (a new list unless one is given) and what it nulled."""
        out = Changed(record)
        if changes is not None:
            out.changes = changes
        found = out.changes
        for key, exact, convert in self._fields:
            value = out.get(key, _ABSENT)
            if type(value) is exact or value is None or value is _ABSENT:
                continue
            out[key] = convert(value, found)
        return out

    def report(self) -> list[str]:
        """One line per field path with values that could not be converted, by path; empty when none."""
        with self._lock:
            counts = dict(self._nulled)
            examples = {path: list(values) for path, values in self._examples.items()}
        lines = []
        for path in sorted(counts):
            count = counts[path]
            values, were = ("values", "were") if count != 1 else ("value", "was")
            lines.append(
                f"{path}: {count} {values} could not be read as {self._nouns[path]} and {were} set to null "
                f"(for example {', '.join(examples[path])})"
            )
        return lines

    @property
    def nulled(self) -> dict[str, int]:
        """Field path -> how many values were set to null because they could not be converted."""
        with self._lock:
            return dict(self._nulled)

    # ------------------------------------------------------------------------------- compiling

    def _object_fields(self, schema: Mapping[str, Any], prefix: str) -> tuple[Field, ...]:
        properties = schema.get("properties") or {}
        fields = []
        for key, node in properties.items():
            compiled = self._compile(node, f"{prefix}{key}")
            if compiled is not None:
                fields.append((key, *compiled))
        return tuple(fields)

    def _compile(self, node: Any, path: str) -> tuple[type | None, Convert] | None:
        """The exact type that needs no conversion and the converter for one schema node; None: keep as is."""
        kind = _kind(node, path, self.stream)
        if kind is None:
            return None
        nulled = self._counter(path, kind)
        if kind == "object":
            fields = self._object_fields(node, f"{path}.")
            return None, _object_converter(fields, nulled)
        if kind == "array":
            items = self._compile(node.get("items") or {}, f"{path}[]")
            if items is None:
                return list, _lone_item
            return None, _array_converter(path, *items)
        exact, convert = _SCALARS[kind]
        return exact, _scalar_converter(convert, nulled)

    def _counter(self, path: str, kind: str) -> Callable[[Any, list[FieldChange]], None]:
        """The function that counts one value of `path` set to null (and keeps a few as examples)."""
        self._nouns[path] = _NOUNS[kind]

        def nulled(value: Any, changes: list[FieldChange]) -> None:
            changes.append((path, Change.NULLED))  # an item's `[]` is given its index by its list
            example = _example(value)
            with self._lock:
                self._nulled[path] = self._nulled.get(path, 0) + 1
                examples = self._examples.setdefault(path, [])
                if len(examples) < _EXAMPLES and example not in examples:
                    examples.append(example)

        return nulled


def _kind(node: Any, path: str, stream: str) -> str | None:
    """What a schema node declares: one of `_NOUNS`' keys, or None for a node without a type."""
    if not isinstance(node, Mapping):
        return None
    declared = node.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    types = [t for t in types if t != "null"]
    if not types:
        if "properties" in node:
            return "object"
        return "array" if "items" in node else None
    if len(types) > 1:
        raise ValueError(
            f"Stream {stream}: the schema declares {path} as {' or '.join(types)}; a field must have one type (and null)"
        )
    kind = types[0]
    if kind not in _NOUNS:
        raise ValueError(f"Stream {stream}: the schema declares {path} with the unknown type {kind!r}")
    if kind == "string" and ("format" in node or "airbyte_type" in node):
        return "formatted"
    return kind


# ------------------------------------------------------------------------------- converters
# Each returns the converted value, or _FAILED for a value it cannot convert. They are called only
# with a value that is present, not null and not already of the exact type that needs nothing.
# The compiled converters below wrap them: they set what fails to null and add its change.

_FAILED: Any = object()


def _to_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(int(value))
        except ValueError:  # beyond Python's 4300-digit conversion limit
            return _FAILED
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return _FAILED


def _to_integer(value: Any) -> Any:
    if isinstance(value, bool):
        return _FAILED
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else _FAILED
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            try:
                return int(text.partition(".")[0])
            except ValueError:  # beyond Python's 4300-digit conversion limit
                return _FAILED
    return _FAILED


def _to_number(value: Any) -> Any:
    if isinstance(value, bool):
        return _FAILED
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _FAILED
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            number = float(text)
            return number if math.isfinite(number) else _FAILED
    return _FAILED


def _to_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value, _FAILED)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return _FAILED


def _keep_string(value: Any) -> Any:
    return value if isinstance(value, str) else _FAILED


# The exact type a value of each kind needs no conversion in, and the converter for the others. A
# number's floats go through the converter, which sets NaN and the infinities to null.
_SCALARS: dict[str, tuple[type, Convert]] = {
    "string": (str, _to_string),
    "integer": (int, _to_integer),
    "number": (int, _to_number),
    "boolean": (bool, _to_boolean),
    "formatted": (str, _keep_string),
}


Nulled = Callable[[Any, list[FieldChange]], None]


def _scalar_converter(convert: Callable[[Any], Any], nulled: Nulled) -> Convert:
    def conform(value: Any, changes: list[FieldChange]) -> Any:
        converted = convert(value)
        if converted is _FAILED:
            nulled(value, changes)
            return None
        return converted

    return conform


def _object_converter(fields: tuple[Field, ...], nulled: Nulled) -> Convert:
    def conform(value: Any, changes: list[FieldChange]) -> Any:
        if not isinstance(value, dict):
            nulled(value, changes)
            return None
        copy = None
        for key, exact, convert in fields:
            item = value.get(key, _ABSENT)
            if type(item) is exact or item is None or item is _ABSENT:
                continue
            converted = convert(item, changes)
            if converted is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = converted
        return value if copy is None else copy

    return conform


def _array_converter(path: str, exact: type | None, convert: Convert) -> Convert:
    """A list's converter: each item by `convert`; a lone item (not a list) is a list of one."""
    template = f"{path}[]"  # the compiled path of an item, given its index here

    def conform(value: Any, changes: list[FieldChange]) -> Any:
        copy = None
        if not isinstance(value, list):
            value = copy = [value]
        for index, item in enumerate(value):
            if type(item) is exact or item is None:
                continue
            mark = len(changes)
            converted = convert(item, changes)
            if len(changes) > mark:
                _indexed(changes, mark, template, f"{path}[{index}]")
            if converted is not item:
                if copy is None:
                    copy = list(value)
                copy[index] = converted
        return value if copy is None else copy

    return conform


def _indexed(changes: list[FieldChange], mark: int, template: str, at: str) -> None:
    """The changes from `mark` on, made inside one item, with the item's `[]` made its index."""
    for number in range(mark, len(changes)):
        field, change = changes[number]
        if field.startswith(template):
            changes[number] = (at + field[len(template) :], change)


def _lone_item(value: Any, changes: list[FieldChange]) -> Any:
    """An array whose items have no type: a list is kept as it is, a lone item is a list of one."""
    return value if isinstance(value, list) else [value]


def _example(value: Any) -> str:
    """A value as `report` shows it: strings and numbers shortened, objects and lists only described.

    An object or a list may hold anything (a nested password, say): it is never printed.
    """
    if isinstance(value, Mapping):
        return f"an object of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, (list, tuple, set)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, str):
        return repr(value if len(value) <= _EXAMPLE_CHARS else f"{value[:_EXAMPLE_CHARS]}...")
    if isinstance(value, (int, float)):  # bool too
        text = repr(value)
        return text if len(text) <= _EXAMPLE_CHARS else f"{text[:_EXAMPLE_CHARS]}..."
    return f"a {type(value).__name__}"
