"""Records made to match their stream's schema: one JSON type per field, whatever form TeleCMI sent.

TeleCMI sends the same field as a number on one endpoint and a string on another (phone numbers,
India's `rate`, a user's `notify`); warehouse destinations need one column type per field. The
`Conformer` converts every declared field to its declared type and counts, per field, the values
it could not convert, so that no value is dropped without a word.

Every value set to null is listed on its record (`changes.py`, which takes it to the RECORD's
`meta.changes`); the converters are in `conversions.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Optional

from airbyte_cdk.models.airbyte_protocol import (
    Change,
)

from source_telecmi.changes import Changed, FieldChange
from source_telecmi.conversions import (
    ABSENT,
    SCALARS,
    Convert,
    Field,
    array_converter,
    lone_item,
    object_converter,
    scalar_converter,
    shown_as,
)

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
            value = out.get(key, ABSENT)
            if type(value) is exact or value is None or value is ABSENT:
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
            return None, object_converter(fields, nulled)
        if kind == "array":
            items = self._compile(node.get("items") or {}, f"{path}[]")
            if items is None:
                return list, lone_item
            return None, array_converter(path, *items)
        exact, convert = SCALARS[kind]
        return exact, scalar_converter(convert, nulled)

    def _counter(self, path: str, kind: str) -> Callable[[Any, list[FieldChange]], None]:
        """The function that counts one value of `path` set to null (and keeps a few as examples)."""
        self._nouns[path] = _NOUNS[kind]

        def nulled(value: Any, changes: list[FieldChange]) -> None:
            changes.append((path, Change.NULLED))  # an item's `[]` is given its index by its list
            example = shown_as(value)
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
