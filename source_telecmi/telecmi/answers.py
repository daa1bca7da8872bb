"""TeleCMI's answers: the envelope of every answer, and what each kind of answer means.

Every answer goes through the tables `BODY_CODES`, `STATUS_WITHOUT_CODE`, `RETRIED_STATUSES` and
`NETWORK_FAULTS` to one `Decision`: success, retry, fail (as config or not), bad credentials, a
refusal, or a path that is not there. No other module knows what a TeleCMI error looks like.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Optional

import orjson
import requests
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.secrets import one_line


class AccessRefused(Exception):
    """TeleCMI accepted the credentials but refused this endpoint to them, through every retry."""


class EndpointMissing(AirbyteTracedException):
    """A real HTTP 404 without a TeleCMI answer: the path is not there (or api_url is wrong)."""


_NOT_JSON = object()
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# orjson reads an integer of 20 digits or more as a float, changing its digits: such a body is read
# by the standard parser, which keeps every digit.
_LONG_INTEGER = re.compile(rb"\d{20}")


def body_of(response: requests.Response) -> Any:
    """The response's JSON body, parsed once and kept on the response; `_NOT_JSON` if it is not JSON.

    orjson is fast but stricter than JSON itself: a lone surrogate escape (a note cut inside an
    emoji) or bytes that are not UTF-8 are read by the standard parser instead, with the broken
    character replaced, rather than taken for a maintenance page and retried forever.
    """
    cached = getattr(response, "_telecmi_body", None)
    if cached is None:
        cached = parse_json(response.content)
        response._telecmi_body = cached  # type: ignore[attr-defined]
    return cached


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


def rate_limited(response: requests.Response) -> bool:
    """A 429, whether as the HTTP status or as the body's code."""
    return response.status_code == 429 or code_of(body_of(response)) == 429


def retry_after_s(response: requests.Response) -> Optional[float]:
    """Retry-After in seconds (a number or an HTTP date); None without a usable one (the pacer judges the value)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if seconds == seconds else None  # NaN is no number of seconds


class Action(enum.Enum):
    """What an answer means for the request that got it."""

    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"
    CONFIG = "config"
    CREDENTIALS = "credentials"  # the credentials are wrong (or a user token expired)
    REFUSED = "refused"  # the credentials are right, this endpoint is refused to them (for now)
    MISSING = "missing"  # no such path at api_url
    UNREACHABLE = "unreachable"  # no answer at all: name resolution, connection refused


@dataclass(frozen=True)
class Decision:
    """An action and what to say; `say` is formatted with status, code, msg, text, api_url, path, location, cause."""

    action: Action
    say: str = ""


RETRY_SERVER = Decision(Action.RETRY, "TeleCMI had a server error (HTTP {status}, code {code}): {msg}")
SERVED = Decision(Action.OK)
# An answer that lacks what TeleCMI always sends: TeleCMI changed, or api_url is some other JSON service.
LACKS_FIELDS = Decision(
    Action.RETRY, "TeleCMI's answer lacks {lacking} (TeleCMI changed it, or api_url {api_url} is not its API): {text}"
)

# A JSON body with a TeleCMI `code`, whatever the HTTP status says.
BODY_CODES: dict[Any, Decision] = {
    200: SERVED,
    400: Decision(Action.FAIL, "TeleCMI rejected the request as malformed (code 400): {msg}"),
    401: Decision(Action.REFUSED, "{msg}"),
    403: Decision(Action.REFUSED, "{msg}"),
    404: Decision(Action.CREDENTIALS, "{msg}"),
    407: Decision(Action.CREDENTIALS, "{msg}"),
}
# TeleCMI's code for wrong credentials is 404. Sent with HTTP 404 (TeleCMI's own, or a server at an
# api_url with a path too many answering in TeleCMI's envelope), it may mean either: both are named.
ADDRESS_IN_DOUBT = Decision(
    Action.CREDENTIALS,
    "or api_url {api_url} is not TeleCMI's API address: HTTP 404 for {path}, a path too many or another server",
)
_PROXY_REFUSED = "{api_url} refused the request (HTTP {status}) before TeleCMI answered: check api_url and any proxy"
# An answer without a TeleCMI code: a proxy, a load balancer, a maintenance page, or India's envelope.
STATUS_WITHOUT_CODE: dict[int, Decision] = {
    401: Decision(Action.CONFIG, _PROXY_REFUSED),
    403: Decision(Action.CONFIG, _PROXY_REFUSED),
    404: Decision(
        Action.MISSING, "TeleCMI has no endpoint {path} at api_url {api_url} (HTTP 404): check api_url and region"
    ),
}
# Statuses of a server or proxy that is busy, restarting or cut off from TeleCMI: retried like a 5xx,
# whatever the body says. 408 (request timeout), 425 (too early), 5xx, and the 52x of CDN proxies.
RETRIED_STATUSES = frozenset({408, 425, *range(500, 600)})
RETRY_STATUS = Decision(
    Action.RETRY, "TeleCMI (or a proxy in front of it) had a server error or timed out (HTTP {status}): {text}"
)
# A redirect is never followed: a body carrying credentials must not travel to another address.
REDIRECT = Decision(
    Action.CONFIG, "api_url {api_url} redirects (HTTP {status} to {location}): set api_url to that address"
)
# Network faults, most specific first.
NETWORK_FAULTS: tuple[tuple[type[BaseException], Decision], ...] = (
    (requests.Timeout, Decision(Action.RETRY, "TeleCMI did not answer in time ({cause})")),
    (requests.exceptions.InvalidURL, Decision(Action.CONFIG, "api_url {api_url} is not a usable URL ({cause})")),
    (requests.exceptions.InvalidSchema, Decision(Action.CONFIG, "api_url {api_url} is not a usable URL ({cause})")),
    (requests.exceptions.MissingSchema, Decision(Action.CONFIG, "api_url {api_url} is not a usable URL ({cause})")),
    (requests.ConnectionError, Decision(Action.UNREACHABLE, "Cannot reach TeleCMI at {api_url}: {cause}")),
    (requests.exceptions.ChunkedEncodingError, Decision(Action.RETRY, "TeleCMI's answer was cut off ({cause})")),
    (requests.RequestException, Decision(Action.RETRY, "The request to TeleCMI failed ({cause})")),
)


def decide(
    response: requests.Response,
    lacking: Callable[[Any], Optional[str]],
    codes: Optional[Mapping[Any, Decision]] = None,
) -> Decision:
    """The decision for an HTTP answer (429s never get here: the transport waits them out).

    `lacking(body)` names what a successful answer lacks (`"count"`), or None if it is usable;
    `codes` is the platform's table of body codes (`BODY_CODES` with its own success codes).
    """
    codes = BODY_CODES if codes is None else codes
    body = body_of(response)
    status = response.status_code
    code = code_of(body)
    server_code = isinstance(code, int) and 500 <= code < 600
    if status in RETRIED_STATUSES:
        return RETRY_SERVER if server_code else RETRY_STATUS
    if code is not None and (status != 404 or from_telecmi(body)):
        if server_code:
            return RETRY_SERVER
        decision = codes.get(code)
        if decision is None:
            return Decision(Action.FAIL, "TeleCMI answered code {code} (HTTP {status}): {msg}")
        if decision.action is Action.OK:
            return _usable(body, lacking)
        return decision
    if status in STATUS_WITHOUT_CODE:
        return STATUS_WITHOUT_CODE[status]
    if 300 <= status < 400:
        return REDIRECT
    if status >= 400:
        return Decision(Action.FAIL, "TeleCMI answered HTTP {status}: {text}")
    if not is_json(body):
        return Decision(
            Action.RETRY,
            "TeleCMI answered HTTP {status} with a body that is not JSON (a maintenance page, or api_url {api_url} "
            "is a web page, not TeleCMI's API): {text}",
        )
    return _usable(body, lacking)


def address_in_doubt(response: requests.Response) -> bool:
    """Whether an answer that blames the credentials may as well come from a wrong api_url: an HTTP 404."""
    return response.status_code == 404


def _usable(body: Any, lacking: Callable[[Any], Optional[str]]) -> Decision:
    missing = lacking(body) if isinstance(body, dict) else "a JSON object"
    return SERVED if missing is None else Decision(LACKS_FIELDS.action, LACKS_FIELDS.say.replace("{lacking}", missing))


def say(decision: Decision, response: Optional[requests.Response], **values: Any) -> str:
    """What a decision says about an answer, with TeleCMI's own words masked and on one line."""
    if response is not None:
        body = body_of(response)
        values.setdefault("status", response.status_code)
        values.setdefault("code", code_of(body))
        values.setdefault("msg", message_of(body) or "no message")
        values.setdefault("text", repr(one_line(response.text, 160)))
        values.setdefault("path", response.request.path_url if response.request else "")
        values.setdefault("location", one_line(response.headers.get("Location", "elsewhere"), 200))
    return one_line(decision.say.format_map(_Blank(values)), 400)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def network_cause(error: BaseException) -> str:
    """The innermost reason of a network failure, short: 'Name or service not known', 'Connection refused'."""
    reasons = []
    seen: set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reasons.append(str(current))
        current = getattr(current, "reason", None) or current.__cause__ or current.__context__
        if current is not None and not isinstance(current, BaseException):
            reasons.append(str(current))
            break
    for reason in reversed(reasons):
        found = re.search(r"\[Errno -?\d+\] ([^')\]]+)", reason)
        if found:
            host = re.search(r"host='([^']+)'", reasons[0])
            return f"{found.group(1).strip()}" + (f" (host {host.group(1)})" if host else "")
    return one_line(reasons[-1] if reasons else repr(error), 160)
