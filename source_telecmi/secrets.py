"""Secrets: which fields hold one, every form a secret can take in output, and masking as the last step.

A secret is masked wherever it appears, in each form it can take there (trimmed, JSON-escaped once
or twice, URL-quoted), and so is any part of it of `PARTIAL_MS` characters or more that starts or
ends it: a message that TeleCMI (or anyone) cut to a length still holds a recognisable piece of
the secret, and that piece is masked like the whole. Masking runs before any message is cut or its
whitespace collapsed (`one_line`), and once more on every line the connector prints (`run.py`).

Records are not masked line by line (a short secret masked inside an agent id or an instant would
corrupt them): a record loses every field named like a secret (`without_secrets`), and a secret
found inside one of its values, in any encoding, is replaced there (`secret_values.py`); both are
listed in the record's changes (`records.py`), so the row says what was taken out of it.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterable
from typing import Any, Optional
from urllib.parse import quote

from airbyte_cdk.models.airbyte_protocol import Change
from airbyte_cdk.utils.airbyte_secrets_utils import add_to_secrets, filter_secrets

MASK = "****"
# A piece of a secret at least this long, at its start or its end, is masked like the whole secret.
PARTIAL_MS = 8
# Shorter forms are not masked on their own: masking every "a" of every message would help nobody.
SHORTEST = 3

# Words that name a secret in a field name (TeleCMI sends users' passwords in plain text, at any depth).
SECRET_WORDS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "pin", "passcode", "passphrase", "apikey", "otp"}
)
# Marks that name a secret inside a longer word too ("sippassword", "accesstoken").
SECRET_MARKS = ("password", "passwd", "secret", "token", "passcode", "apikey", "privatekey", "accesskey")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_DIGITS = re.compile(r"[0-9]+")

_forms: set[str] = set()
_ordered: list[str] = []  # longest first, so a form inside a longer one never leaves a piece of it
_lock = threading.Lock()

# A secret is replaced inside record values only when it is this long and not only digits: shorter
# ones, and digits (the app id, part of every agent id; a numeric PIN), are the very characters of
# ids, phone numbers and instants, which replacing them would corrupt. They are masked in logs.
RECORD_SHORTEST = 8
_raw: dict[str, None] = {}  # every secret long enough for records, trimmed, in the order registered
_version = 0  # grows with every secret registered (see `_scrubber`)


def secret_named(field: Any) -> bool:
    """Whether a field's name says it holds a secret: `password`, `sip_pass`, `voicemailPin`, `api_token`."""
    return _secret_name(str(field))


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    compact = re.sub(r"[^a-z0-9]", "", name.lower())  # api_key, API-KEY, x-api-key: apikey
    if any(mark in compact for mark in SECRET_MARKS):
        return True
    return any(word.lower() in SECRET_WORDS for word in _WORDS.findall(name))


def forms_of(secret: Any) -> set[str]:
    """Every form a secret can take in output: as given, trimmed, URL-quoted, JSON-escaped once and twice."""
    text = str(secret)
    forms = {text, text.strip(), quote(text, safe="")}
    for _ in range(2):
        for form in list(forms):
            forms.add(json.dumps(form)[1:-1])
            forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    return {form for form in forms if len(form) >= SHORTEST}


def register_secret(secret: Any) -> None:
    """Mask `secret` in every output from now on, in each form it can take there."""
    if secret is None or isinstance(secret, bool):
        return
    new = forms_of(secret) - _forms
    if not new:
        return
    global _version
    trimmed = str(secret).strip()
    with _lock:
        for form in new:
            if form not in _forms:
                _forms.add(form)
                add_to_secrets(form)  # the CDK's own log formatter masks whole forms too
        _ordered[:] = sorted(_forms, key=len, reverse=True)
        if len(trimmed) >= RECORD_SHORTEST and not _DIGITS.fullmatch(trimmed):
            _raw[trimmed] = None
        _version += 1


def mask(text: str) -> str:
    """`text` with every registered secret masked, whole or as a piece of `PARTIAL_MS`+ characters that starts or ends it.

    Longest first, so that a short secret inside a longer one never leaves a piece of the longer one;
    then the CDK's own list (the spec's secrets), already masked where they are ours too.
    """
    ordered = list(_ordered)
    for form in ordered:  # every whole secret first: a piece of one must not cut into another whole one
        if form in text:
            text = text.replace(form, MASK)
    for form in ordered:
        if len(form) > PARTIAL_MS:
            text = _mask_pieces(text, form)
    return filter_secrets(text)


def _mask_pieces(text: str, secret: str) -> str:
    """Mask each run of `text` that is a piece of `secret`, `PARTIAL_MS`+ characters long, starting or ending it."""
    head, tail = secret[:PARTIAL_MS], secret[-PARTIAL_MS:]
    spans = []
    at = text.find(head)
    while at != -1:
        stop = at + PARTIAL_MS
        while stop < len(text) and stop - at < len(secret) and text[stop] == secret[stop - at]:
            stop += 1
        spans.append((at, stop))
        at = text.find(head, at + 1)
    at = text.find(tail)
    while at != -1:
        begin, stop = at, at + PARTIAL_MS
        while begin > 0 and stop - begin < len(secret) and text[begin - 1] == secret[-(stop - begin) - 1]:
            begin -= 1
        spans.append((begin, stop))
        at = text.find(tail, at + 1)
    if not spans:
        return text
    out, position = [], 0
    for begin, stop in sorted(spans):
        if stop <= position:
            continue
        if begin >= position:
            out.append(text[position:begin])
            out.append(MASK)
        position = stop
    out.append(text[position:])
    return "".join(out)


def one_line(text: Any, limit: int = 300) -> str:
    """A message on one line of bounded length: secrets masked first, then whitespace collapsed, then cut."""
    flat = " ".join(mask(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def without_secrets(value: Any, register: bool = True, changes: Optional[list[tuple[str, Change]]] = None) -> Any:
    """`value` less every field named like a secret, at any depth (objects within objects and lists).

    What is dropped is registered for masking first: TeleCMI sent it, so a later message may echo it.
    Each field dropped that held a value (not null) is added to `changes`, if given, as its path
    (`password`, `sip.password`, `devices[0].pin`) and NULLED: the value never reaches the record.
    """
    return _without(value, register, changes, "")


def _without(value: Any, register: bool, changes: Optional[list[tuple[str, Change]]], path: str) -> Any:
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if secret_named(key):
                if register:
                    _register_all(item)
                if changes is not None and item is not None:
                    changes.append((f"{path}.{key}" if path else str(key), Change.NULLED))
            elif isinstance(item, (dict, list)):
                kept[key] = _without(item, register, changes, f"{path}.{key}" if path else str(key))
            else:
                kept[key] = item
        return kept
    if isinstance(value, list):
        return [
            _without(item, register, changes, f"{path}[{index}]") if isinstance(item, (dict, list)) else item
            for index, item in enumerate(value)
        ]
    return value


# ------------------------------------------------------------------------- secrets inside record values


def record_secrets() -> tuple[tuple[int, int], tuple[str, ...]]:
    """The secrets to replace inside record values now (longest first), and a key that changes with them.

    They change when a secret is registered (`_version`) or forms are taken back (the unit tests
    restore `_forms` after each test: a secret whose forms are gone is no longer looked for).
    """
    key = (len(_forms), _version)
    with _lock:
        return key, tuple(sorted((s for s in _raw if s in _forms), key=len, reverse=True))


def register_named(value: Any) -> None:
    """Register for masking every value of `value` held under a field named like a secret, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if secret_named(key):
                _register_all(item)
            elif isinstance(item, (dict, list)):
                register_named(item)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                register_named(item)


def _register_all(value: Any) -> None:
    if isinstance(value, dict):
        _register_each(value.values())
    elif isinstance(value, list):
        _register_each(value)
    elif value not in (None, ""):
        register_secret(value)


def _register_each(values: Iterable[Any]) -> None:
    for value in values:
        _register_all(value)
