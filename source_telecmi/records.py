"""Records made to match their stream's schema: one JSON type per field, whatever form TeleCMI sent.

TeleCMI sends the same field as a number on one endpoint and a string on another (phone numbers,
India's `rate`, a user's `notify`); warehouse destinations need one column type per field. The
`Conformer` converts every declared field to its declared type and counts, per field, the values
it could not convert, so that no value is dropped without a word.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

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

Convert = Callable[[Any], Any]
# One declared field of an object: its key, the exact type that needs no conversion (None: always
# converted), and the converter, called with a value that is present, not null, not of that type.
Field = tuple[str, "type | None", Convert]


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
    - **array**: a list, each item converted by the `items` schema. Anything else is set to null.
    - A string declared with a `format` or an `airbyte_type` (`started_at`, `day`) is kept as it is,
      not parsed; anything but a string there is set to null.

    Null stays null and an absent field stays absent; a field the schema does not declare, or
    declares without a type, is kept as it is; a field declared with two types besides null is
    refused when the Conformer is built (ValueError). Every value set to null is counted under its
    field's path (`rate`, `notes[].date`, `sip.domain`): `nulled` has the counts and
    `report()` one line per path, with a few of the values (strings and numbers shortened; objects
    and lists only described, never printed).

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

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        out = dict(record)
        for key, exact, convert in self._fields:
            value = out.get(key, _ABSENT)
            if type(value) is exact or value is None or value is _ABSENT:
                continue
            out[key] = convert(value)
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
                return list, _not_a_list(nulled)
            return None, _array_converter(*items, nulled)
        exact, convert = _SCALARS[kind]
        return exact, _scalar_converter(convert, nulled)

    def _counter(self, path: str, kind: str) -> Callable[[Any], None]:
        """The function that counts one value of `path` set to null (and keeps a few as examples)."""
        self._nouns[path] = _NOUNS[kind]

        def nulled(value: Any) -> None:
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


def _scalar_converter(convert: Convert, nulled: Callable[[Any], None]) -> Convert:
    def conform(value: Any) -> Any:
        converted = convert(value)
        if converted is _FAILED:
            nulled(value)
            return None
        return converted

    return conform


def _object_converter(fields: tuple[Field, ...], nulled: Callable[[Any], None]) -> Convert:
    def conform(value: Any) -> Any:
        if not isinstance(value, dict):
            nulled(value)
            return None
        copy = None
        for key, exact, convert in fields:
            item = value.get(key, _ABSENT)
            if type(item) is exact or item is None or item is _ABSENT:
                continue
            converted = convert(item)
            if converted is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = converted
        return value if copy is None else copy

    return conform


def _array_converter(exact: type | None, convert: Convert, nulled: Callable[[Any], None]) -> Convert:
    def conform(value: Any) -> Any:
        if not isinstance(value, list):
            nulled(value)
            return None
        copy = None
        for index, item in enumerate(value):
            if type(item) is exact or item is None:
                continue
            converted = convert(item)
            if converted is not item:
                if copy is None:
                    copy = list(value)
                copy[index] = converted
        return value if copy is None else copy

    return conform


def _not_a_list(nulled: Callable[[Any], None]) -> Convert:
    """An array whose items have no type: a list is kept as it is (it reaches here only if not exactly a list)."""

    def conform(value: Any) -> Any:
        if isinstance(value, list):
            return value
        nulled(value)
        return None

    return conform


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
