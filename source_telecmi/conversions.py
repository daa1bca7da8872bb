"""Converters of TeleCMI's values to a schema's types, compiled once per stream by `records.Conformer`.

Each scalar converter returns the converted value, or `FAILED` for a value it cannot convert; the
compiled converters wrap them: they set what fails to null and add its change to the record's list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from source_telecmi.changes import FieldChange

_EXAMPLE_CHARS = 20  # how much of a value `shown_as` shows

# A field absent from a record (`dict.get`'s default): absent fields stay absent.
ABSENT: Any = object()


# ASCII digits only: Python's int() and float() also read "1_000", "١٢" (Arabic-Indic digits), "nan"
# and "infinity", none of which is a number TeleCMI means.
_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


# A converter is called with the value and the record's list of changes, to which it adds a
# change for every value it sets to null.
Convert = Callable[[Any, list[FieldChange]], Any]
# One declared field of an object: its key, the exact type that needs no conversion (None: always
# converted), and the converter, called with a value that is present, not null, not of that type.
Field = tuple[str, "type | None", Convert]


# ------------------------------------------------------------------------------- converters
# Each returns the converted value, or FAILED for a value it cannot convert. They are called only
# with a value that is present, not null and not already of the exact type that needs nothing.
# The compiled converters below wrap them: they set what fails to null and add its change.

FAILED: Any = object()


def _to_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(int(value))
        except ValueError:  # beyond Python's 4300-digit conversion limit
            return FAILED
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return FAILED


def _to_integer(value: Any) -> Any:
    if isinstance(value, bool):
        return FAILED
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else FAILED
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            try:
                return int(text.partition(".")[0])
            except ValueError:  # beyond Python's 4300-digit conversion limit
                return FAILED
    return FAILED


def _to_number(value: Any) -> Any:
    if isinstance(value, bool):
        return FAILED
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else FAILED
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            number = float(text)
            return number if math.isfinite(number) else FAILED
    return FAILED


def _to_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value, FAILED)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return FAILED


def _keep_string(value: Any) -> Any:
    return value if isinstance(value, str) else FAILED


# The exact type a value of each kind needs no conversion in, and the converter for the others. A
# number's floats go through the converter, which sets NaN and the infinities to null.
SCALARS: dict[str, tuple[type, Convert]] = {
    "string": (str, _to_string),
    "integer": (int, _to_integer),
    "number": (int, _to_number),
    "boolean": (bool, _to_boolean),
    "formatted": (str, _keep_string),
}


Nulled = Callable[[Any, list[FieldChange]], None]


def scalar_converter(convert: Callable[[Any], Any], nulled: Nulled) -> Convert:
    def conform(value: Any, changes: list[FieldChange]) -> Any:
        converted = convert(value)
        if converted is FAILED:
            nulled(value, changes)
            return None
        return converted

    return conform


def object_converter(fields: tuple[Field, ...], nulled: Nulled) -> Convert:
    def conform(value: Any, changes: list[FieldChange]) -> Any:
        if not isinstance(value, dict):
            nulled(value, changes)
            return None
        copy = None
        for key, exact, convert in fields:
            item = value.get(key, ABSENT)
            if type(item) is exact or item is None or item is ABSENT:
                continue
            converted = convert(item, changes)
            if converted is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = converted
        return value if copy is None else copy

    return conform


def array_converter(path: str, exact: type | None, convert: Convert) -> Convert:
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


def lone_item(value: Any, changes: list[FieldChange]) -> Any:
    """An array whose items have no type: a list is kept as it is, a lone item is a list of one."""
    return value if isinstance(value, list) else [value]


def shown_as(value: Any) -> str:
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
