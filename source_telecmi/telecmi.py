"""Talking to TeleCMI: its APIs as data, credentials, the transport, and what every answer means.

No other module knows what a TeleCMI request, envelope or error looks like. The three APIs the
connector reads (one user's calls, the whole account's, and India's) differ only in rows of
`CALL_APIS`/`USER_LISTS`; every answer goes through the tables `BODY_CODES`, `STATUS_WITHOUT_CODE`
and `NETWORK_FAULTS` to one decision: success, retry, slow down, or fail (as config or not).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Union
from urllib.parse import quote

import orjson
import requests
import urllib3
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import (
    BackoffStrategy,
    ErrorHandler,
    ErrorResolution,
    ResponseAction,
)
from airbyte_cdk.sources.streams.http.http_client import HttpClient
from airbyte_cdk.utils.airbyte_secrets_utils import add_to_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.pacing import Pacer, RateLimitExhausted

# Tests shorten waits with these; production keeps the defaults.
BACKOFF_SCALE_ENV = "SOURCE_TELECMI_BACKOFF_SCALE"
REQUEST_TIMEOUT_ENV = "SOURCE_TELECMI_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
MAX_RETRIES = 5
CHECK_MAX_RETRIES = 2
FIRST_BACKOFF_S = 5.0
LONGEST_BACKOFF_S = 120.0
# With no answer at all yet, connection failures (a name that does not resolve, a refused
# connection) end the sync after this long instead of spending every retry of every request.
UNREACHABLE_AFTER_S = 60.0
LOGIN_PATH = "/v2/user/login"


def wait_scale() -> float:
    return float(os.environ.get(BACKOFF_SCALE_ENV, "1") or 1)


def request_timeout_s() -> float:
    return float(os.environ.get(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S))


def one_line(text: str, limit: int = 300) -> str:
    """Squash a message onto one line of bounded length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------ secrets


# Fields named like these hold secrets: TeleCMI sends every user's password in plain text.
SECRET_FIELD_MARKS = ("password", "passwd", "secret", "token")


def secret_named(field: Any) -> bool:
    return any(mark in str(field).lower() for mark in SECRET_FIELD_MARKS)


def register_secret(secret: Any) -> None:
    """Mask a secret in every output, in each form it can take there.

    The CDK masks a secret by plain replacement, after some messages were already serialised as
    JSON (DEBUG logs, logged messages): a secret with quotes, backslashes or non-ASCII characters
    then appears escaped, once or twice (a body that TeleCMI echoed, logged as JSON).
    """
    if secret is None:
        return
    text = str(secret)
    forms = {text, text.strip(), quote(text, safe="")}
    for _ in range(2):
        for form in list(forms):
            forms.add(json.dumps(form)[1:-1])
            forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    for form in forms:
        if len(form) >= 3:  # masking every "a" of every message would help nobody
            add_to_secrets(form)


# -------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """What the connector signs in with: a user token, a user login, or the app id and secret."""

    kind: str  # "token", "login" or "app"
    token: Optional[str] = None
    user_id: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    app_id: Optional[int] = None
    app_secret: Optional[str] = field(default=None, repr=False)


class TokenKeeper:
    """The user token: fixed, or obtained by login and renewed whenever TeleCMI stops accepting it.

    When many workers meet a rejected token at once, only the first logs in; the others find the
    token already replaced. A token that served requests and is then rejected has expired: it is
    renewed however often that happens. Tokens fresh from login that TeleCMI rejects before
    accepting any request, twice in a row, mean the login itself is useless: a config error.
    A failed login is remembered, so wrong credentials are tried once per sync, not per stream.
    """

    def __init__(self, credentials: Credentials, log_in: Callable[[], str]) -> None:
        self._credentials = credentials
        self._log_in = log_in
        self._token = credentials.token
        self._accepted: set[str] = set()
        self._fresh_rejections = 0
        self._failure: Optional[BaseException] = None
        self._lock = threading.Lock()
        self.logins = 0

    def current(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._login()
            return self._token

    def accepted(self, token: str) -> None:
        if token not in self._accepted:
            with self._lock:
                self._accepted.add(token)
                self._fresh_rejections = 0

    def renew(self, rejected: str, reason: str) -> None:
        """Replace `rejected`, which TeleCMI just refused; raises a config error if that cannot help."""
        if self._credentials.kind != "login":
            raise config_error(
                f"TeleCMI rejected the user token: it is invalid or expired ({reason}). Generate a new "
                "token, or use login credentials so the connector renews it itself."
            )
        with self._lock:
            if self._token != rejected:
                return  # another worker already renewed it
            if rejected not in self._accepted:
                self._fresh_rejections += 1
                if self._fresh_rejections >= 2:
                    raise config_error(
                        f"TeleCMI rejects the tokens it issues at login of user {self._credentials.user_id} "
                        f"on their first use ({reason}). Check that the user may read call records."
                    )
            self._token = self._login()

    def _login(self) -> str:
        if self._failure is not None:
            raise self._failure
        try:
            token = self._log_in()
        except AirbyteTracedException as failure:
            if failure.failure_type == FailureType.config_error:
                self._failure = failure
            raise
        self.logins += 1
        return token


def config_error(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


# ---------------------------------------------------------------------------------- the APIs as data


@dataclass(frozen=True)
class CallApi:
    """One family of call-record endpoints: how a page is asked for and how the answer is read."""

    name: str
    credential_fields: Mapping[str, str]  # body field -> what goes in it ("token", "app_id", "app_secret")
    range_fields: tuple[str, str]  # the body fields of a window's first and last millisecond
    largest_page: int  # the largest `limit` TeleCMI documents; what it serves is learned
    count_field: str


CALL_APIS: dict[str, CallApi] = {
    "user": CallApi("user", {"token": "token"}, ("from", "to"), 10, "count"),
    "account": CallApi("account", {"appid": "app_id", "secret": "app_secret"}, ("start_date", "end_date"), 20, "count"),
    "india": CallApi("india", {"appid": "app_id", "token": "app_secret"}, ("start_date", "end_date"), 10, "total"),
}


@dataclass(frozen=True)
class UserList:
    """An endpoint listing the account's users."""

    path: str
    largest_page: int


# Per region, the user lists to try in order: the next one when TeleCMI does not have a path.
USER_LISTS: dict[str, tuple[UserList, ...]] = {
    "account": (UserList("/v3/user/list", 20), UserList("/v2/user/list", 10)),
    "india": (UserList("/v1/agent/list", 10),),
}
USER_LIST_CREDENTIALS = {"appid": "app_id", "secret": "app_secret"}
ANALYSIS_PATH = "/v2/analysis"


def api_for(region: str, credentials: Credentials) -> str:
    """Which call API serves these credentials in this region."""
    if credentials.kind == "app":
        return "india" if region == "india" else "account"
    return "user"


# ------------------------------------------------------------------------------------------ answers


@dataclass
class Page:
    """One page of call records and the total TeleCMI reported for the window asked."""

    count: int
    records: list[dict[str, Any]]


class AccessRefused(Exception):
    """TeleCMI accepted the credentials but refuses this endpoint to them (on its first request)."""


class EndpointMissing(AirbyteTracedException):
    """A real HTTP 404 without a TeleCMI answer: the path is not there (or api_url is wrong)."""


_NOT_JSON = object()
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def body_of(response: requests.Response) -> Any:
    """The response's JSON body, parsed once and kept on the response; `_NOT_JSON` if it is not JSON.

    orjson is fast but stricter than JSON itself: a lone surrogate escape (a note cut inside an
    emoji) or bytes that are not UTF-8 are read by the standard parser instead, with the broken
    character replaced, rather than taken for a maintenance page and retried forever.
    """
    cached = getattr(response, "_telecmi_body", None)
    if cached is None:
        try:
            cached = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            try:
                cached = _without_surrogates(json.loads(response.content.decode("utf-8", "replace")))
            except ValueError:
                cached = _NOT_JSON
        response._telecmi_body = cached  # type: ignore[attr-defined]
    return cached


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def code_of(body: Any) -> Any:
    """TeleCMI's body code as a number: "200" and India's "cmi-2000" mean 200; None without one."""
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, str):
        digits = code.strip().lower().removeprefix("cmi-")
        if code.strip().lower() == "cmi-2000":
            return 200
        return int(digits) if digits.isdigit() else code
    return code


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return one_line(str(body.get("msg") or body.get("message") or body.get("error") or ""), 200)
    return ""


def as_count(value: Any) -> Optional[int]:
    """A count TeleCMI sent as a number or a digit string; None if it is not a count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def rate_limited(response: requests.Response) -> bool:
    """A 429, whether as the HTTP status or as the body's code."""
    return response.status_code == 429 or code_of(body_of(response)) == 429


def retry_after_s(response: requests.Response) -> Optional[float]:
    """Retry-After in seconds (a number or an HTTP date); None without a usable one."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


# What each kind of answer means. `Decision.say` is formatted with status, code, msg, text, api_url, path.
@dataclass(frozen=True)
class Decision:
    action: str  # "ok", "retry", "fail", "config", "credentials", "refused", "missing"
    say: str = ""


RETRY_SERVER = Decision("retry", "TeleCMI had a server error (HTTP {status}, code {code}): {msg}")

# A JSON body with a TeleCMI `code`, whatever the HTTP status says.
BODY_CODES: dict[Any, Decision] = {
    200: Decision("ok"),
    400: Decision("fail", "TeleCMI rejected the request as malformed (code 400): {msg}"),
    401: Decision("refused"),
    403: Decision("refused"),
    404: Decision("credentials"),
    407: Decision("credentials"),
}
# An answer without a TeleCMI code: a proxy, a load balancer, a maintenance page, or India's envelope.
STATUS_WITHOUT_CODE: dict[int, Decision] = {
    401: Decision(
        "config", "{api_url} refused the request (HTTP 401) before TeleCMI answered: check api_url and any proxy"
    ),
    403: Decision(
        "config", "{api_url} refused the request (HTTP 403) before TeleCMI answered: check api_url and any proxy"
    ),
    404: Decision(
        "missing", "TeleCMI has no endpoint {path} at api_url {api_url} (HTTP 404): check api_url and region"
    ),
}
# A redirect is never followed: a body carrying credentials must not travel to another address.
REDIRECT = Decision("config", "api_url {api_url} redirects (HTTP {status} to {location}): set api_url to that address")
# Network faults, most specific first.
NETWORK_FAULTS: tuple[tuple[type[BaseException], Decision], ...] = (
    (requests.Timeout, Decision("retry", "TeleCMI did not answer in time ({cause})")),
    (requests.exceptions.InvalidURL, Decision("config", "api_url {api_url} is not a usable URL ({cause})")),
    (requests.exceptions.InvalidSchema, Decision("config", "api_url {api_url} is not a usable URL ({cause})")),
    (requests.exceptions.MissingSchema, Decision("config", "api_url {api_url} is not a usable URL ({cause})")),
    (requests.ConnectionError, Decision("unreachable", "Cannot reach TeleCMI at {api_url}: {cause}")),
    (requests.exceptions.ChunkedEncodingError, Decision("retry", "TeleCMI's answer was cut off ({cause})")),
    (requests.RequestException, Decision("retry", "The request to TeleCMI failed ({cause})")),
)


def decide(response: requests.Response, usable: Callable[[Any], bool]) -> Decision:
    """The decision for an HTTP answer (429s never get here: the transport waits them out)."""
    body = body_of(response)
    code = code_of(body)
    if code is not None:
        if isinstance(code, int) and 500 <= code < 600:
            return RETRY_SERVER
        decision = BODY_CODES.get(code)
        if decision is None:
            return Decision("fail", "TeleCMI answered code {code} (HTTP {status}): {msg}")
        if decision.action == "ok" and not usable(body):
            return Decision("retry", "TeleCMI's answer lacks the expected fields: {text}")
        return decision
    status = response.status_code
    if status in STATUS_WITHOUT_CODE:
        return STATUS_WITHOUT_CODE[status]
    if 300 <= status < 400:
        return REDIRECT
    if status >= 500:
        return Decision("retry", "TeleCMI had a server error (HTTP {status}): {text}")
    if status >= 400:
        return Decision("fail", "TeleCMI answered HTTP {status}: {text}")
    if body is _NOT_JSON:
        return Decision(
            "retry", "TeleCMI answered HTTP {status} with a body that is not JSON (a maintenance page?): {text}"
        )
    if usable(body):
        return Decision("ok")
    return Decision("retry", "TeleCMI's answer lacks the expected fields: {text}")


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


# --------------------------------------------------------------------------------------- transport


class Transport(requests.Session):
    """The one HTTP session of a sync: every request passes the pacer, carries its credentials, and ends in time.

    - Credentials go into the JSON body here, at send time, on a copy of the request: the CDK logs
      request bodies before sending them, and a renewed token reaches a retried request.
    - A 429 (HTTP status or body code) is waited out here and never reaches the error handler: it
      is a signal to slow down (see `pacing`), not a fault that spends a retry.
    - A whole answer must arrive within the request timeout: a body that trickles forever is a timeout.
    - Proxy and CA settings are read from the environment once, not on every request.
    """

    def __init__(self, pacer: Pacer, api_url: str, timeout_s: float) -> None:
        super().__init__()
        self._pacer = pacer
        self._timeout_s = timeout_s
        self._fill: dict[str, tuple[Callable[[], dict[str, Any]], Optional[str]]] = {}
        self.unreachable: Optional[str] = None
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pacer.ceiling + 2)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.proxies.update(requests.utils.get_environ_proxies(api_url))
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.trust_env = False

    def sign(self, url: str, fill: Callable[[], dict[str, Any]], token_field: Optional[str] = None) -> None:
        """Requests to `url` carry the body fields `fill()` gives at the moment they are sent.

        `token_field` names the field holding the user token, which the error handler renews.
        """
        self._fill[url] = (fill, token_field)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.unreachable:
            raise requests.ConnectionError(self.unreachable)
        if request.url in self._fill:
            fill, token_field = self._fill[request.url]
            signed = request.copy()
            credentials = fill()
            signed.prepare_body(data=None, files=None, json={**orjson.loads(request.body or b"{}"), **credentials})
            signed.telecmi_token = credentials.get(token_field) if token_field else None  # type: ignore[attr-defined]
            request = signed
        while True:
            with self._pacer.slot():
                response = self._send_in_time(request, **kwargs)
            if not rate_limited(response):
                self._pacer.answered()
                return response
            try:
                self._pacer.rate_limited(retry_after_s(response))
            except RateLimitExhausted as exhausted:
                raise AirbyteTracedException(
                    message=f"TeleCMI's rate limit: {exhausted}. Try again later, or lower num_workers.",
                    internal_message=str(exhausted),
                    failure_type=FailureType.transient_error,
                ) from None

    def _send_in_time(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        deadline = time.monotonic() + self._timeout_s
        kwargs["timeout"] = (min(CONNECT_TIMEOUT_S, self._timeout_s), self._timeout_s)
        kwargs["stream"] = True
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        chunks = []
        try:
            while chunk := response.raw.read1(65536, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise requests.exceptions.ReadTimeout(
                        f"the answer took more than {self._timeout_s:g} s to arrive", request=request
                    )
        except requests.RequestException:
            response.close()
            raise
        except urllib3.exceptions.ReadTimeoutError as error:
            response.close()
            raise requests.exceptions.ReadTimeout(error, request=request) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            response.close()
            raise requests.exceptions.ChunkedEncodingError(error, request=request) from error
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]
        response.close()
        return response


# ---------------------------------------------------------------------------------- error handling


class AnswerHandler(ErrorHandler):
    """The CDK error handler of one endpoint: `decide` and the tables above, plus what only it can do.

    It renews an expired user token (then RETRY), tells a refused endpoint on its first request
    (the account does not have it: the stream is skipped) from a refusal later (a fault), and
    gives up early when TeleCMI cannot be reached at all.
    """

    def __init__(self, api: TelecmiApi, what: str, usable: Callable[[Any], bool], max_retries: int) -> None:
        self._api = api
        self._what = what
        self._usable = usable
        self._max_retries = max_retries
        self.answered_once = False

    @property
    def max_retries(self) -> Optional[int]:
        return self._max_retries

    @property
    def max_time(self) -> Optional[int]:
        return None

    def interpret_response(self, answer: Optional[Union[requests.Response, Exception]]) -> ErrorResolution:
        if not isinstance(answer, requests.Response):
            return self._network(answer)
        decision = decide(answer, self._usable)
        body = body_of(answer)
        sent_token = getattr(answer.request, "telecmi_token", None)
        if decision.action == "ok":
            # Before the CDK's debug log prints the answer: a login's token, the users' passwords.
            if isinstance(body.get("token"), str) and sent_token is None:
                register_secret(body["token"])
            for user in body.get("agents") or ():
                for name, value in user.items() if isinstance(user, dict) else ():
                    if secret_named(name):
                        register_secret(value)
            self.answered_once = True
            self._api.answered = True
            if sent_token:
                self._api.tokens.accepted(sent_token)
            return ErrorResolution(ResponseAction.SUCCESS)
        message = decision.say.format(
            status=answer.status_code,
            code=code_of(body),
            msg=_message(body) or "no message",
            text=repr(one_line(answer.text, 120)),
            api_url=self._api.api_url,
            path=answer.request.path_url if answer.request else "",
            location=answer.headers.get("Location", "elsewhere"),
        )
        if decision.action == "credentials" or (decision.action == "refused" and self._what == "login"):
            return self._credentials_rejected(sent_token, _message(body) or f"code {code_of(body)}")
        if decision.action == "refused":
            reason = _message(body) or f"code {code_of(body)}"
            if not self.answered_once:
                raise AccessRefused(reason)
            message = f"TeleCMI refused {self._what} after serving it ({reason})"
            return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, message)
        if decision.action == "missing":
            raise EndpointMissing(message=message, internal_message=message, failure_type=FailureType.config_error)
        if decision.action == "retry":
            return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, f"{self._what}: {message}")
        failure = FailureType.config_error if decision.action == "config" else FailureType.system_error
        return ErrorResolution(ResponseAction.FAIL, failure, f"{self._what}: {message}")

    def _credentials_rejected(self, sent_token: Optional[str], reason: str) -> ErrorResolution:
        credentials = self._api.credentials
        if credentials.kind == "app":
            return ErrorResolution(
                ResponseAction.FAIL,
                FailureType.config_error,
                f"TeleCMI rejected app id {credentials.app_id} and its app secret ({reason}). Check both in "
                "the TeleCMI dashboard, and that region matches the account's platform.",
            )
        if sent_token is None:  # the login itself
            return ErrorResolution(
                ResponseAction.FAIL,
                FailureType.config_error,
                f"TeleCMI refused the login of user {credentials.user_id} ({reason}). Check user_id "
                "(extension_appid, like 101_1111112) and password.",
            )
        self._api.tokens.renew(sent_token, reason)
        return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, "TeleCMI's token expired: renewed")

    def _network(self, error: Optional[Exception]) -> ErrorResolution:
        decision = next((d for kind, d in NETWORK_FAULTS if isinstance(error, kind)), NETWORK_FAULTS[-1][1])
        message = decision.say.format(api_url=self._api.api_url, cause=network_cause(error) if error else "no answer")
        if decision.action == "config":
            return ErrorResolution(ResponseAction.FAIL, FailureType.config_error, message)
        if decision.action == "unreachable":
            if self._api.give_up_connecting():
                self._api.transport.unreachable = message
                return ErrorResolution(ResponseAction.FAIL, FailureType.transient_error, message)
            return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, message)
        return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, f"{self._what}: {message}")


class Backoff(BackoffStrategy):
    """Exponential waits for faults; none before retrying with a renewed token."""

    def backoff_time(
        self,
        response_or_exception: Optional[Union[requests.Response, requests.RequestException]],
        attempt_count: int,
    ) -> Optional[float]:
        answer = response_or_exception
        if isinstance(answer, requests.Response) and BODY_CODES.get(code_of(body_of(answer))) == BODY_CODES[404]:
            return 0.001
        wait = min(LONGEST_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(attempt_count - 1, 0))
        return max(wait * wait_scale(), 0.001)


# ------------------------------------------------------------------------------------------ the API


class TelecmiApi:
    """Everything the connector asks TeleCMI, over one transport shared by every worker of a sync."""

    def __init__(
        self,
        api_url: str,
        region: str,
        credentials: Credentials,
        num_workers: int,
        logger: logging.Logger,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.credentials = credentials
        self.call_api = CALL_APIS[api_for(region, credentials)]
        self._region = region
        self._logger = logger
        self._max_retries = max_retries
        self.pacer = Pacer(num_workers, logger, wait_scale=wait_scale())
        self.transport = Transport(self.pacer, self.api_url, request_timeout_s())
        self.tokens = TokenKeeper(credentials, self._log_in)
        self.answered = False
        self._first_unreachable: Optional[float] = None
        self._connect_lock = threading.Lock()
        self._login = self._client("login", lambda body: isinstance(body.get("token"), str) and bool(body["token"]))

    def _client(self, what: str, usable: Callable[[Any], bool]) -> HttpClient:
        return HttpClient(
            name=what,
            logger=self._logger,
            error_handler=AnswerHandler(
                self, what, lambda body: isinstance(body, dict) and usable(body), self._max_retries
            ),
            session=self.transport,
            backoff_strategy=Backoff(),
        )

    def _sign(self, url: str, fields: Mapping[str, str]) -> None:
        """Requests to `url` carry these credential fields, read when sent (a token may have been renewed)."""

        def fill() -> dict[str, Any]:
            return {
                name: self.tokens.current() if what == "token" else getattr(self.credentials, what)
                for name, what in fields.items()
            }

        self.transport.sign(url, fill, next((name for name, what in fields.items() if what == "token"), None))

    def give_up_connecting(self) -> bool:
        """Whether connection failures have lasted long enough, with no answer ever, to stop trying."""
        if self.answered:
            return False
        with self._connect_lock:
            now = time.monotonic()
            self._first_unreachable = self._first_unreachable or now
            return now - self._first_unreachable >= UNREACHABLE_AFTER_S * wait_scale()

    def _post(self, client: HttpClient, path: str, body: Mapping[str, Any]) -> Any:
        _, response = client.send_request("POST", self.api_url + path, request_kwargs={}, json=body)
        return body_of(response)

    def _log_in(self) -> str:
        self.transport.sign(
            self.api_url + LOGIN_PATH,
            lambda: {"id": self.credentials.user_id, "password": self.credentials.password},
        )
        answer = self._post(self._login, LOGIN_PATH, {})
        token = str(answer["token"])
        register_secret(token)
        self._logger.info("Logged in to TeleCMI as user %s", self.credentials.user_id)
        return token

    def sign_in(self) -> None:
        """Verify credentials that can be verified without reading anything (a login): once per sync."""
        if self.credentials.kind == "login":
            self.tokens.current()

    def calls(self, stream: str, path: str) -> CallEndpoint:
        """The call-record endpoint at `path`, read for the stream `stream`."""
        api = self.call_api
        url = self.api_url + path
        self._sign(url, api.credential_fields)

        return CallEndpoint(self, self._client(stream, listing("cdr", api.count_field)), url, api)

    def user_lists(self) -> list[UserListEndpoint]:
        """The endpoints that list the account's users, to try in order."""
        lists = USER_LISTS.get(self.call_api.name, ())
        endpoints = []
        for user_list in lists:
            url = self.api_url + user_list.path
            self._sign(url, USER_LIST_CREDENTIALS)

            endpoints.append(UserListEndpoint(self._client("users", listing("agents", "count")), url, user_list))
        return endpoints

    def prove_app_credentials(self, first: int, last: int) -> None:
        """One cheap request that proves an app id and secret: the account's call totals for a window."""
        url = self.api_url + ANALYSIS_PATH
        self._sign(url, USER_LIST_CREDENTIALS)
        client = self._client("check", lambda body: True)
        self._post(client, ANALYSIS_PATH, {"start_date": first, "end_date": last})


def listing(items: str, count_field: str) -> Callable[[Mapping[str, Any]], bool]:
    """Whether an answer is a usable page: a list of objects under `items`, and a count.

    An empty page may come without its list (`{"count": 0}`); a users list may come without a count.
    """

    def usable(body: Mapping[str, Any]) -> bool:
        found, count = body.get(items), as_count(body.get(count_field))
        if found is None:
            return count == 0
        listed = isinstance(found, list) and all(isinstance(item, dict) for item in found)
        return listed and (count is not None or items == "agents")

    return usable


class CallEndpoint:
    """One call-record endpoint: a page of a window."""

    def __init__(self, api: TelecmiApi, http: HttpClient, url: str, call_api: CallApi) -> None:
        self._http = http
        self.url = url
        self.path = url[len(api.api_url) :]
        self.call_api = call_api

    def page(self, request_from: int, request_to: int, number: int, limit: int) -> Page:
        first, last = self.call_api.range_fields
        body = {first: request_from, last: request_to, "page": number, "limit": limit}
        _, response = self._http.send_request("POST", self.url, request_kwargs={}, json=body)
        answer = body_of(response)
        return Page(count=as_count(answer.get(self.call_api.count_field)) or 0, records=answer.get("cdr") or [])


class UserListEndpoint:
    """One endpoint listing users: a page of them and the total."""

    def __init__(self, http: HttpClient, url: str, user_list: UserList) -> None:
        self._http = http
        self.url = url
        self.largest_page = user_list.largest_page

    def page(self, number: int, limit: int) -> Page:
        _, response = self._http.send_request(
            "POST", self.url, request_kwargs={}, json={"page": number, "limit": limit}
        )
        answer = body_of(response)
        agents = answer.get("agents") or []
        count = as_count(answer.get("count"))
        return Page(count=len(agents) if count is None else count, records=agents)
