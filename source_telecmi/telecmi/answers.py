"""What each kind of TeleCMI answer means: tables whose values are the CDK's own `ErrorResolution`.

Every answer goes through `BODY_CODES`, `STATUSES`, `STATUS_WITHOUT_CODE`, `REDIRECT` and
`NETWORK_FAULTS` to one row: the action and failure type the CDK acts on, and a message template
`say` fills in for the answer at hand. Rows with a meaning beyond their action (a refusal, wrong
credentials, a missing path, TeleCMI out of reach, a rate limit) are module constants, told apart by
identity. No other module knows what a TeleCMI error looks like, or which answer is a 429.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Union

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import ErrorResolution, ResponseAction
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.secrets import one_line
from source_telecmi.telecmi.body import body_of, code_of, from_telecmi, is_json, message_of, reason_of


class AccessRefused(Exception):
    """TeleCMI accepted the credentials but refused this endpoint to them, through every retry."""


class EndpointMissing(AirbyteTracedException):
    """A real HTTP 404 without a TeleCMI answer: the path is not there (or api_url is wrong)."""


Lacking = Callable[[Any], Optional[str]]
Answer = Optional[Union[requests.Response, BaseException]]


def _retry(say: str) -> ErrorResolution:
    return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, say)


def _fail(say: str, failure: FailureType = FailureType.system_error) -> ErrorResolution:
    return ErrorResolution(ResponseAction.FAIL, failure, say)


SERVED = ErrorResolution(ResponseAction.SUCCESS)
RETRY_SERVER = _retry("TeleCMI had a server error (HTTP {status}, code {code}): {msg}")
# An answer that lacks what TeleCMI always sends: TeleCMI changed, or api_url is some other JSON service.
LACKS_FIELDS = _retry(
    "TeleCMI's answer lacks {lacking} (TeleCMI changed it, or api_url {api_url} is not its API): {text}"
)
NOT_JSON = _retry(
    "TeleCMI answered HTTP {status} with a body that is not JSON (a maintenance page, or api_url {api_url} "
    "is a web page, not TeleCMI's API): {text}"
)
# The credentials are right, this endpoint is refused to them (for now): retried like a fault, sooner;
# one that lasts through every retry is `AccessRefused` to the caller.
REFUSED = _retry("TeleCMI refused {what} ({reason})")
# The credentials are wrong, or a user token expired (then it is renewed and the request retried).
WRONG_CREDENTIALS = _fail("TeleCMI rejected the credentials ({reason})", FailureType.config_error)
# Waited out by the transport (see `pacing`): a signal to slow down, not a fault that spends a retry.
RATE_LIMITED = ErrorResolution(
    ResponseAction.RATE_LIMITED, FailureType.transient_error, "TeleCMI's rate limit (HTTP {status}, code {code}): {msg}"
)
MALFORMED = _fail("TeleCMI rejected the request as malformed (code 400): {msg}")
UNKNOWN_CODE = _fail("TeleCMI answered code {code} (HTTP {status}): {msg}")
UNKNOWN_STATUS = _fail("TeleCMI answered HTTP {status}: {text}")

# A JSON body with a TeleCMI `code`, whatever the HTTP status says.
BODY_CODES: dict[Any, ErrorResolution] = {
    200: SERVED,
    400: MALFORMED,
    401: REFUSED,
    403: REFUSED,
    404: WRONG_CREDENTIALS,
    407: WRONG_CREDENTIALS,
    429: RATE_LIMITED,
}
# TeleCMI's code for wrong credentials is 404. Sent with HTTP 404 (TeleCMI's own, or a server at an
# api_url with a path too many answering in TeleCMI's envelope), it may mean either: both are named.
ADDRESS_IN_DOUBT = _fail(
    "or api_url {api_url} is not TeleCMI's API address: HTTP 404 for {path}, a path too many or another server",
    FailureType.config_error,
)
PROXY_REFUSED = _fail(
    "{api_url} refused the request (HTTP {status}) before TeleCMI answered: check api_url and any proxy",
    FailureType.config_error,
)
# The CDK hands an ignored answer back to the caller, who raises `EndpointMissing`: the stream is skipped.
ENDPOINT_MISSING = ErrorResolution(
    ResponseAction.IGNORE,
    FailureType.config_error,
    "TeleCMI has no endpoint {path} at api_url {api_url} (HTTP 404): check api_url and region",
)
# An answer without a TeleCMI code: a proxy, a load balancer, a maintenance page, or India's envelope.
STATUS_WITHOUT_CODE: dict[int, ErrorResolution] = {401: PROXY_REFUSED, 403: PROXY_REFUSED, 404: ENDPOINT_MISSING}
# Statuses of a server or proxy that is busy, restarting or cut off from TeleCMI: retried like a 5xx,
# whatever the body says. 408 (request timeout), 425 (too early), 5xx, and the 52x of CDN proxies.
RETRIED_STATUSES = frozenset({408, 425, *range(500, 600)})
RETRY_STATUS = _retry("TeleCMI (or a proxy in front of it) had a server error or timed out (HTTP {status}): {text}")
# Statuses that decide an answer whatever its body says.
STATUSES: dict[int, ErrorResolution] = {429: RATE_LIMITED, **dict.fromkeys(sorted(RETRIED_STATUSES), RETRY_STATUS)}
# A redirect is never followed: a body carrying credentials must not travel to another address.
REDIRECT = _fail(
    "api_url {api_url} redirects (HTTP {status} to {location}): set api_url to that address", FailureType.config_error
)
# No answer at all: name resolution, connection refused. Given up early while TeleCMI never answered.
UNREACHABLE = _retry("Cannot reach TeleCMI at {api_url}: {cause}")
UNUSABLE_URL = _fail("api_url {api_url} is not a usable URL ({cause})", FailureType.config_error)
TIMED_OUT = _retry("TeleCMI did not answer in time ({cause})")
CUT_OFF = _retry("TeleCMI's answer was cut off ({cause})")
REQUEST_FAILED = _retry("The request to TeleCMI failed ({cause})")
# Network faults, most specific first.
NETWORK_FAULTS: tuple[tuple[type[BaseException], ErrorResolution], ...] = (
    (requests.Timeout, TIMED_OUT),
    (requests.exceptions.InvalidURL, UNUSABLE_URL),
    (requests.exceptions.InvalidSchema, UNUSABLE_URL),
    (requests.exceptions.MissingSchema, UNUSABLE_URL),
    (requests.ConnectionError, UNREACHABLE),
    (requests.exceptions.ChunkedEncodingError, CUT_OFF),
    (requests.RequestException, REQUEST_FAILED),
)


def nothing_lacking(body: Any) -> Optional[str]:
    """For answers whose content nobody reads further (the transport's, the backoff's question)."""
    return None


def row_of(
    response: requests.Response,
    lacking: Lacking = nothing_lacking,
    codes: Optional[Mapping[Any, ErrorResolution]] = None,
) -> tuple[ErrorResolution, dict[str, str]]:
    """The row of an HTTP answer, and what the row's message needs beyond the answer itself.

    `lacking(body)` names what a successful answer lacks (`"count"`), or None if it is usable;
    `codes` is the platform's table of body codes (`BODY_CODES` with its own success codes).
    """
    codes = BODY_CODES if codes is None else codes
    body = body_of(response)
    status = response.status_code
    code = code_of(body)
    by_code = _get(codes, code)
    if STATUSES.get(status) is RATE_LIMITED or by_code is RATE_LIMITED:  # a 429, as the status or the code
        return RATE_LIMITED, {}
    server_code = isinstance(code, int) and 500 <= code < 600
    if status in STATUSES:
        return (RETRY_SERVER if server_code else STATUSES[status]), {}
    if code is not None and (status != 404 or from_telecmi(body)):
        if server_code:
            return RETRY_SERVER, {}
        if by_code is None:
            return UNKNOWN_CODE, {}
        return _usable(body, lacking) if by_code is SERVED else (by_code, {})
    if status in STATUS_WITHOUT_CODE:
        return STATUS_WITHOUT_CODE[status], {}
    if 300 <= status < 400:
        return REDIRECT, {}
    if status >= 400:
        return UNKNOWN_STATUS, {}
    if not is_json(body):
        return NOT_JSON, {}
    return _usable(body, lacking)


def resolve(
    answer: Answer,
    lacking: Lacking = nothing_lacking,
    codes: Optional[Mapping[Any, ErrorResolution]] = None,
    **values: Any,
) -> tuple[ErrorResolution, ErrorResolution]:
    """The row of an answer or a network fault, and the resolution it comes to, its message said.

    `values` fill the message in beyond what the answer holds (`api_url`, `what`). A served answer's
    resolution is `SERVED` itself: nothing is said, and nothing of a large page is read to say it.
    """
    if isinstance(answer, requests.Response):
        row, more = row_of(answer, lacking, codes)
        if row.error_message is None:
            return row, row
        return row, ErrorResolution(row.response_action, row.failure_type, say(row, answer, **more, **values))
    row = next((row for kind, row in NETWORK_FAULTS if isinstance(answer, kind)), NETWORK_FAULTS[-1][1])
    values.setdefault("cause", network_cause(answer) if answer is not None else "no answer")
    return row, ErrorResolution(row.response_action, row.failure_type, say(row, None, **values))


def rate_limited(response: requests.Response) -> bool:
    """Whether the table says the answer is a rate limit (a 429, as the HTTP status or as the body's code)."""
    return row_of(response)[0] is RATE_LIMITED


def _get(codes: Mapping[Any, ErrorResolution], code: Any) -> Optional[ErrorResolution]:
    try:
        return codes.get(code)
    except TypeError:  # a code no table could hold (a list, an object): no code TeleCMI knows
        return None


def _usable(body: Any, lacking: Lacking) -> tuple[ErrorResolution, dict[str, str]]:
    missing = lacking(body) if isinstance(body, dict) else "a JSON object"
    return (SERVED, {}) if missing is None else (LACKS_FIELDS, {"lacking": missing})


def address_in_doubt(response: requests.Response) -> bool:
    """Whether an answer that blames the credentials may as well come from a wrong api_url: an HTTP 404."""
    return response.status_code == 404


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


def say(row: ErrorResolution, response: Optional[requests.Response], **values: Any) -> str:
    """A row's message about an answer: status, code, msg, reason, text, path, location filled in from it,
    anything else (api_url, what, cause, lacking) from `values`; TeleCMI's own words masked, on one line."""
    if response is not None:
        body = body_of(response)
        values.setdefault("status", response.status_code)
        values.setdefault("code", code_of(body))
        values.setdefault("msg", message_of(body) or "no message")
        values.setdefault("reason", reason_of(body))
        values.setdefault("text", repr(one_line(response.text, 160)))
        values.setdefault("path", response.request.path_url if response.request else "")
        values.setdefault("location", one_line(response.headers.get("Location", "elsewhere"), 200))
    return one_line((row.error_message or "").format_map(_Blank(values)), 400)


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
