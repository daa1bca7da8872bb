"""Secrets inside record values: each registered secret long enough, in any encoding, replaced by MASK.

Records are not masked line by line (`secrets.mask`): a short secret masked inside an agent id or
an instant would corrupt them. `replace_secrets` looks, in every string of a record at any depth,
for the secrets `secrets.record_secrets` gives, trimmed, URL-quoted or JSON-escaped once or twice,
and lists every value it changed in the record's changes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Optional

from airbyte_cdk.models.airbyte_protocol import Change

from source_telecmi.secrets import MASK, record_secrets

# Characters that no encoding changes (URL quoting, `+` for spaces, JSON escaping): a run of them in
# a secret is in every form of it, so a value without any such piece holds no secret at all.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.-]+")
PIECE = 16  # the longest piece looked for; a longer run adds nothing to the test
FEW_PIECES = 6  # up to this many pieces, `in` each is faster than one regular expression
_HEX_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def replace_secrets(record: dict[str, Any], changes: list[tuple[str, Change]]) -> None:
    """Replace every registered secret found in a value of `record`, at any depth and in any encoding, by MASK.

    Each value changed is added to `changes` as its path (`recording_url`, `notes[0].msg`) and
    TRUNCATED (the value is kept, less the secret). `record` itself is changed (give a fresh dict);
    objects and lists inside it are copied where a value changes, never changed in place. Secrets
    in records are those registered of `RECORD_SHORTEST` characters or more and not only digits:
    never the app id, which is part of every agent id. Forms replaced: as registered (trimmed),
    URL-quoted (`%2F`, any case of the hex digits, `+` or `%20` for a space), JSON-escaped once or
    twice (`\\"`, `\\u00e9`, any case), and mixes of them.

    Cheap when there is nothing to replace: one search per string for a piece that every form of
    some secret contains (`PIECE` characters of its longest run of characters no encoding changes).
    """
    scrubber = _scrubber()
    if scrubber is None:
        return
    hit = scrubber.hit
    found = None
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            if not hit(value):
                continue
            replaced = scrubber.text(value)
            if replaced == value:
                continue
            changes.append((str(key), Change.TRUNCATED))
        elif kind is dict or kind is list:
            replaced = scrubber.nested(value, str(key), changes)
            if replaced is value:
                continue
        else:
            continue
        found = found or {}
        found[key] = replaced
    if found:
        record.update(found)


class _Scrubber:
    """Finds and replaces a set of secrets (longest first) in strings."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        pieces = [_piece_of(secret) for secret in secrets]
        self.hit = _finder(pieces)
        self._secrets = [
            (piece, re.compile(_every_form(secret))) for piece, secret in zip(pieces, secrets, strict=True)
        ]

    def text(self, value: str) -> str:
        for piece, pattern in self._secrets:
            if piece in value:
                value = pattern.sub(MASK, value)
        return value

    def nested(self, value: Any, path: str, changes: list[tuple[str, Change]]) -> Any:
        """`value` (an object or a list) with its secrets replaced: itself if none, else a copy."""
        if isinstance(value, dict):
            items: Iterable[tuple[Any, Any]] = value.items()
            child = "{}.{}".format
        else:
            items = enumerate(value)
            child = "{}[{}]".format
        copy = None
        for key, item in items:
            if isinstance(item, str):
                if not self.hit(item):
                    continue
                replaced: Any = self.text(item)
                if replaced == item:
                    continue
                changes.append((child(path, key), Change.TRUNCATED))
            elif isinstance(item, (dict, list)):
                replaced = self.nested(item, child(path, key), changes)
                if replaced is item:
                    continue
            else:
                continue
            if copy is None:
                copy = dict(value) if isinstance(value, dict) else list(value)
            copy[key] = replaced
        return value if copy is None else copy


_scrubbing: tuple[Any, Optional[_Scrubber]] = (None, None)


def _scrubber() -> Optional[_Scrubber]:
    """The scrubber of the secrets registered now (`secrets.record_secrets`); None when there is none."""
    global _scrubbing
    key, secrets = record_secrets()
    done, scrubber = _scrubbing
    if done == key:
        return scrubber
    scrubber = _scrubber_of(secrets) if secrets else None
    _scrubbing = (key, scrubber)
    return scrubber


@functools.lru_cache(maxsize=64)
def _scrubber_of(secrets: tuple[str, ...]) -> _Scrubber:
    return _Scrubber(secrets)


def _piece_of(secret: str) -> str:
    """A piece of `secret` that every form of it contains: up to `PIECE` characters of its longest unreserved run."""
    runs = _UNRESERVED.findall(secret)
    return max(runs, key=len)[:PIECE] if runs else ""


def _finder(pieces: list[str]) -> Callable[[str], Any]:
    """Whether a text holds any of `pieces` (truthy): `in` for a few, one search of a trie for more."""
    if len(pieces) > FEW_PIECES:
        return re.compile(_any_of(pieces)).search
    few = tuple(dict.fromkeys(pieces))

    def hit(text: str) -> bool:
        for piece in few:  # noqa: SIM110 - a loop is twice as fast as any() over a generator, once per string
            if piece in text:
                return True
        return False

    return hit


def _any_of(pieces: list[str]) -> str:
    """A regular expression that finds any of `pieces`, as a trie (fast with the hundreds of users' passwords)."""
    trie: dict[str, Any] = {}
    for piece in pieces:
        node = trie
        for char in piece:
            if "" in node:  # a shorter piece ends here: finding it is enough
                break
            node = node.setdefault(char, {})
        else:
            node.clear()
            node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        if "" in node:
            return ""
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return pattern(trie)


def _every_form(secret: str) -> str:
    """A regular expression that matches `secret` in every encoding `replace_secrets` knows, mixed too."""
    return "".join(_forms_of_char(char) for char in secret)


@functools.lru_cache(maxsize=1024)
def _forms_of_char(char: str) -> str:
    if _UNRESERVED.fullmatch(char):
        return re.escape(char)
    forms = {re.escape(char), "".join("%" + _any_case(f"{byte:02X}") for byte in char.encode("utf-8", "surrogatepass"))}
    if char == " ":
        forms.add(re.escape("+"))
    if char == "/":
        forms.update({re.escape("\\/"), re.escape("\\\\/")})
    for once in {json.dumps(char)[1:-1], json.dumps(char, ensure_ascii=False)[1:-1]}:
        forms.add(_json_form(once))
        forms.add(_json_form(json.dumps(once)[1:-1]))
        forms.add(_json_form(json.dumps(once, ensure_ascii=False)[1:-1]))
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


def _json_form(text: str) -> str:
    """A regular expression for a JSON-escaped text, the hex digits of its `\\u` escapes in any case."""
    out, at = [], 0
    for escape in _HEX_ESCAPE.finditer(text):
        out.append(re.escape(text[at : escape.start()]) + re.escape("\\u") + _any_case(escape.group(1)))
        at = escape.end()
    out.append(re.escape(text[at:]))
    return "".join(out)


def _any_case(hex_digits: str) -> str:
    return "".join(f"[{d.upper()}{d.lower()}]" if d.isalpha() else d for d in hex_digits)
