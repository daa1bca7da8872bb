"""The body of a TeleCMI answer: its JSON read once, and the fields of TeleCMI's envelope.

Kept apart from `answers` (what an answer means) because reading a body well is a craft of its own:
orjson's speed without its strictness, every digit of a long number, a count however TeleCMI wrote it.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from typing import Any, Optional

import orjson
import requests

from source_telecmi.secrets import one_line

_NOT_JSON = object()
_UNREAD = object()
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# orjson reads an integer of 20 digits or more as a float, changing its digits: such a body is read
# by the standard parser, which keeps every digit.
_LONG_INTEGER = re.compile(rb"\d{20}")
# The bodies already read, by answer: the handler, the backoff and the caller each ask for the body of
# the same answer, and a page can be large. Held weakly, so a body goes with its answer; kept here
# rather than on the answer, which belongs to requests.
_BODIES: weakref.WeakKeyDictionary[requests.Response, Any] = weakref.WeakKeyDictionary()
_BODIES_LOCK = threading.Lock()


def body_of(response: requests.Response) -> Any:
    """The response's JSON body, parsed once per response; `_NOT_JSON` if it is not JSON.

    orjson is fast but stricter than JSON itself: a lone surrogate escape (a note cut inside an
    emoji) or bytes that are not UTF-8 are read by the standard parser instead, with the broken
    character replaced, rather than taken for a maintenance page and retried forever.
    """
    with _BODIES_LOCK:
        body = _BODIES.get(response, _UNREAD)
    if body is _UNREAD:
        parsed = parse_json(response.content)  # outside the lock: workers read their pages at once
        with _BODIES_LOCK:
            body = _BODIES.setdefault(response, parsed)
    return body


def parse_json(content: bytes) -> Any:
    """JSON text as Python values, every number as TeleCMI wrote it; `_NOT_JSON` if it is not JSON."""
    try:
        if not _LONG_INTEGER.search(content):
            return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:
        return _without_surrogates(json.loads(content.decode("utf-8", "replace")))
    except ValueError:
        return _NOT_JSON


def is_json(body: Any) -> bool:
    return body is not _NOT_JSON


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


# ASCII digits, as many as Python's int() reads: str.isdigit() also says yes to "²" and "١", which int()
# refuses or reads as another number, and int() refuses more than 4,300 digits.
_DIGITS = re.compile(r"[0-9]{1,4000}", re.ASCII)


def digits_of(text: str) -> Optional[int]:
    """The number ASCII digits (spaces around them allowed) write, or None if `text` is anything else."""
    text = text.strip()
    return int(text) if _DIGITS.fullmatch(text) else None


def code_of(body: Any) -> Any:
    """TeleCMI's body code as a number: "200" is 200, India's "cmi-2000" is 2000; None without one."""
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, str):
        number = digits_of(code.strip().lower().removeprefix("cmi-"))
        return number if number is not None else code
    return code


def message_of(body: Any) -> str:
    """TeleCMI's message in an answer (masked, on one line), or ''."""
    if isinstance(body, dict):
        said = next((body[k] for k in ("msg", "message", "error") if isinstance(body.get(k), str) and body[k]), "")
        return one_line(said, 200)
    return ""


def reason_of(body: Any) -> str:
    """Why TeleCMI said no, in its words: its message, or its code where it sends no message."""
    return message_of(body) or f"code {code_of(body)}"


def from_telecmi(body: Any) -> bool:
    """Whether a JSON body is TeleCMI's own envelope (`code` with `msg`), not a gateway's `{"message": ...}`."""
    return isinstance(body, dict) and code_of(body) is not None and ("msg" in body or "error" in body)


def as_count(value: Any) -> Optional[int]:
    """A count TeleCMI sent as a number or a digit string; None if it is not a count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        return digits_of(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def whole(response: requests.Response, content: bytes) -> requests.Response:
    """`response` with its body read: `content` (the connection is let go)."""
    response._content = content
    response._content_consumed = True  # type: ignore[attr-defined]
    response.close()
    return response


def is_whole(response: requests.Response) -> bool:
    """Whether the body of `response` has been read (else it is still being streamed: a file)."""
    return bool(response._content_consumed)  # type: ignore[attr-defined]
