"""Talking to TeleCMI: the POST envelope, the token (fixed or from login), and what every answer means.

`classify` is the one table that turns an answer (HTTP status *and* the body's `code`, since TeleCMI
may say HTTP 200 with `{"code": 404, ...}`) or a network fault into retry, rate-limited, or fail.
No other module knows what a TeleCMI error looks like.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Union

import orjson
import requests
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

PAGE_SIZE = 10  # TeleCMI's documented maximum; never ask for more.
LOGIN_PATH = "/v2/user/login"

# Tests shorten waits with these; production keeps the defaults.
BACKOFF_SCALE_ENV = "SOURCE_TELECMI_BACKOFF_SCALE"
REQUEST_TIMEOUT_ENV = "SOURCE_TELECMI_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
MAX_RETRIES = 5
CHECK_MAX_RETRIES = 2
FIRST_BACKOFF_S = 5.0
LONGEST_BACKOFF_S = 120.0
DEFAULT_RATE_LIMIT_WAIT_S = 30.0


class TokenRejected(Exception):
    """TeleCMI said the token (or, at login, the user id and password) is not valid."""


class AccessRefused(Exception):
    """TeleCMI accepted the token but refuses this endpoint to this user."""


def one_line(text: str, limit: int = 300) -> str:
    """Squash a message onto one line of bounded length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _backoff_scale() -> float:
    return float(os.environ.get(BACKOFF_SCALE_ENV, "1") or 1)


def _request_timeout() -> tuple[float, float]:
    read = float(os.environ.get(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S))
    return min(CONNECT_TIMEOUT_S, read), read


_NOT_JSON = object()


def body_of(response: requests.Response) -> Any:
    """The response's JSON body, parsed once and kept on the response; `_NOT_JSON` if it is not JSON."""
    cached = getattr(response, "_telecmi_body", None)
    if cached is None:
        try:
            cached = orjson.loads(response.content)
        except (orjson.JSONDecodeError, ValueError):
            cached = _NOT_JSON
        response._telecmi_body = cached  # type: ignore[attr-defined]
    return cached


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return one_line(str(body.get("msg") or body.get("message") or body.get("error") or ""))
    return ""


def _retry(message: str) -> ErrorResolution:
    return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, message)


def _fail(message: str, failure: FailureType = FailureType.system_error) -> ErrorResolution:
    return ErrorResolution(ResponseAction.FAIL, failure, message)


_SUCCESS = ErrorResolution(ResponseAction.SUCCESS, None, None)


def classify(answer: Optional[Union[requests.Response, Exception]], api_url: str, expects: str) -> ErrorResolution:
    """What one answer from TeleCMI means. `expects` is "cdr" for call records, "token" for login.

    Raises TokenRejected or AccessRefused for the answers the caller must act on itself.
    """
    if isinstance(answer, requests.Timeout):
        return _retry(f"TeleCMI did not answer in time ({one_line(str(answer), 160)})")
    if isinstance(answer, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return _retry(f"The connection to TeleCMI at {api_url} failed or dropped ({one_line(str(answer), 160)})")
    if isinstance(
        answer, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema)
    ):
        return _fail(f"api_url {api_url} is not a usable URL: {answer}", FailureType.config_error)
    if isinstance(answer, Exception) or answer is None:
        return _retry(f"Request to TeleCMI failed: {one_line(repr(answer), 160)}")

    status = answer.status_code
    body = body_of(answer)
    code = body.get("code") if isinstance(body, dict) else None
    message = _message(body)
    if _rate_limited(answer):
        return ErrorResolution(
            ResponseAction.RATE_LIMITED,
            FailureType.transient_error,
            f"TeleCMI is rate limiting requests (HTTP {status}) {message}".strip(),
        )
    if status >= 500 or (isinstance(code, int) and code >= 500):
        detail = message or one_line(answer.text, 120)
        return _retry(f"TeleCMI had a server error (HTTP {status}, code {code}): {detail}")
    if code is None:
        if status == 404:
            return _fail(
                f"The TeleCMI endpoint {answer.request.path_url if answer.request else ''} was not found at "
                f"api_url {api_url} (HTTP 404 without a TeleCMI answer): check api_url",
                FailureType.config_error,
            )
        if status in (401, 403):
            return _fail(
                f"{api_url} refused the request with HTTP {status} before TeleCMI answered: check api_url "
                "and any proxy in between",
                FailureType.config_error,
            )
        if status >= 400:
            return _fail(f"TeleCMI answered HTTP {status}: {message or one_line(answer.text, 200)}")
        if body is _NOT_JSON:
            return _retry(
                f"TeleCMI answered HTTP {status} with a body that is not JSON (a maintenance page?): "
                f"{one_line(answer.text, 80)!r}"
            )
        if isinstance(body, dict) and expects in body:
            return _check_shape(body, expects)
        return _retry(f"TeleCMI answered HTTP {status} without the expected fields: {one_line(answer.text, 120)!r}")
    if code == 200 and status < 400:
        return _check_shape(body, expects)
    if code == 404:
        raise TokenRejected(message or "Failed to authenticate")
    if code in (401, 403):
        raise AccessRefused(message or f"code {code}")
    if code == 400:
        return _fail(f"TeleCMI rejected the request (code 400): {message}")
    return _fail(f"TeleCMI answered code {code} (HTTP {status}): {message}")


def _check_shape(body: Mapping[str, Any], expects: str) -> ErrorResolution:
    if expects == "cdr":
        count, cdr = body.get("count"), body.get("cdr")
        if isinstance(count, int) and count >= 0 and isinstance(cdr, list) and all(isinstance(r, dict) for r in cdr):
            return _SUCCESS
        return _retry(
            f"TeleCMI answered without a usable count and cdr list (count={count!r}, cdr is {type(cdr).__name__})"
        )
    if isinstance(body.get("token"), str) and body["token"]:
        return _SUCCESS
    return _retry("TeleCMI's login answer carried no token")


class TelecmiErrorHandler(ErrorHandler):
    """The CDK error handler over `classify`; a 429 pauses every worker the moment it is read."""

    def __init__(self, api_url: str, expects: str, gate: RequestGate, max_retries: int = MAX_RETRIES) -> None:
        self._api_url = api_url
        self._expects = expects
        self._gate = gate
        self._max_retries = max_retries

    @property
    def max_retries(self) -> Optional[int]:
        return self._max_retries

    @property
    def max_time(self) -> Optional[int]:
        return 900

    def interpret_response(self, response: Optional[Union[requests.Response, Exception]]) -> ErrorResolution:
        resolution = classify(response, self._api_url, self._expects)
        if resolution.response_action == ResponseAction.RATE_LIMITED and isinstance(response, requests.Response):
            self._gate.pause(rate_limit_wait(response))
        if self._expects == "token" and resolution.response_action == ResponseAction.SUCCESS:
            # Masked before anything (the CDK's debug log of this very response included) can print it.
            add_to_secrets(body_of(response)["token"])  # type: ignore[arg-type]
        return resolution


class RequestGate:
    """Bounds the requests in flight across all workers, and pauses them all after a 429."""

    def __init__(self, most_in_flight: int) -> None:
        self._slots = threading.BoundedSemaphore(most_in_flight)
        self._resume_at = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        """No worker sends a request for the next `seconds`."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def __enter__(self) -> RequestGate:
        self._slots.acquire()
        while (wait := self._resume_at - time.monotonic()) > 0:
            time.sleep(wait)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._slots.release()


class GatedSession(requests.Session):
    """A requests session whose every send passes through the shared gate.

    Proxy and CA-bundle settings are read from the environment once, here, rather than on every
    request (requests re-scans the whole environment per request, a fifth of the CPU of a sync).
    """

    def __init__(self, gate: RequestGate, pool_size: int, api_url: str) -> None:
        super().__init__()
        self._gate = gate
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.proxies.update(requests.utils.get_environ_proxies(api_url))
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.trust_env = False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        with self._gate:
            return super().send(request, **kwargs)


class TelecmiBackoff(BackoffStrategy):
    """Exponential backoff; after a 429, Retry-After (every worker is paused as long by the error handler)."""

    def backoff_time(
        self,
        response_or_exception: Optional[Union[requests.Response, requests.RequestException]],
        attempt_count: int,
    ) -> Optional[float]:
        if isinstance(response_or_exception, requests.Response) and _rate_limited(response_or_exception):
            return max(rate_limit_wait(response_or_exception), 0.001)
        wait = min(LONGEST_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(attempt_count - 1, 0))
        return max(wait * _backoff_scale(), 0.001)


def _rate_limited(response: requests.Response) -> bool:
    body = body_of(response)
    return response.status_code == 429 or (isinstance(body, dict) and body.get("code") == 429)


def rate_limit_wait(response: requests.Response) -> float:
    """How long to wait after a 429: its Retry-After (seconds or an HTTP date), else a default; scaled for tests."""
    value = response.headers.get("Retry-After")
    wait = DEFAULT_RATE_LIMIT_WAIT_S
    if value:
        try:
            wait = max(0.0, float(value))
        except ValueError:
            try:
                wait = max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                wait = DEFAULT_RATE_LIMIT_WAIT_S
    return wait * _backoff_scale()


@dataclass(frozen=True)
class Credentials:
    """A fixed user token, or a user id and password to log in with."""

    token: Optional[str] = None
    user_id: Optional[str] = None
    password: Optional[str] = None

    @property
    def logs_in(self) -> bool:
        return self.token is None


class TokenKeeper:
    """Holds the token; with login credentials, logs in lazily and again when TeleCMI rejects it.

    When many workers meet an expired token at once, only the first logs in: the others see the
    token has changed since they sent theirs and retry with the new one.
    """

    def __init__(self, credentials: Credentials, login: Callable[[], str]) -> None:
        self._credentials = credentials
        self._login = login
        self._token = credentials.token
        self._lock = threading.Lock()
        self.logins = 0

    def current(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._log_in()
            return self._token

    def renew(self, rejected: str, reason: str) -> str:
        """A token to retry with after TeleCMI rejected `rejected`; raises a config error if there is none."""
        if not self._credentials.logs_in:
            raise AirbyteTracedException(
                message=f"TeleCMI rejected the user token: it is invalid or expired ({reason}). "
                "Generate a new token, or configure login credentials so the connector renews it.",
                internal_message=f"Token rejected: {reason}",
                failure_type=FailureType.config_error,
            )
        with self._lock:
            if self._token == rejected:
                self._token = self._log_in()
            return self._token

    def _log_in(self) -> str:
        token = self._login()
        self.logins += 1
        return token


@dataclass
class Page:
    """One page of call records and the window's total count as TeleCMI reported it."""

    count: int
    records: list[dict[str, Any]]


class TelecmiApi:
    """Everything the connector asks TeleCMI, over one gated session shared by all workers."""

    def __init__(
        self,
        api_url: str,
        credentials: Credentials,
        num_workers: int,
        logger: logging.Logger,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.gate = RequestGate(num_workers)
        self._session = GatedSession(self.gate, pool_size=num_workers + 2, api_url=self.api_url)
        self._logger = logger
        self._max_retries = max_retries
        self._credentials = credentials
        self._login_client = self._http_client("login", "token")
        self.tokens = TokenKeeper(credentials, self._log_in)

    def _http_client(self, name: str, expects: str) -> HttpClient:
        return HttpClient(
            name=name,
            logger=self._logger,
            error_handler=TelecmiErrorHandler(self.api_url, expects, self.gate, self._max_retries),
            session=self._session,
            backoff_strategy=TelecmiBackoff(),
            request_timeout=_request_timeout(),
        )

    def _log_in(self) -> str:
        body = {"id": self._credentials.user_id, "password": self._credentials.password}
        try:
            _, response = self._login_client.send_request(
                "POST", self.api_url + LOGIN_PATH, request_kwargs={}, json=body
            )
        except (TokenRejected, AccessRefused) as refused:
            raise AirbyteTracedException(
                message=f"TeleCMI refused the login of user {self._credentials.user_id}: {refused}. "
                "Check user_id (extension_appid, like 101_1111112) and password.",
                internal_message=f"Login refused: {refused}",
                failure_type=FailureType.config_error,
            ) from None
        self._logger.info("Logged in to TeleCMI as user %s", self._credentials.user_id)
        return str(body_of(response)["token"])

    def endpoint(self, stream_name: str, path: str) -> CdrEndpoint:
        """The call-record endpoint at `path`, named after the stream that reads it."""
        return CdrEndpoint(self, self._http_client(stream_name, "cdr"), self.api_url + path)


class CdrEndpoint:
    """One call-record endpoint: pages of a window, with the token renewed when TeleCMI rejects it."""

    def __init__(self, api: TelecmiApi, http: HttpClient, url: str) -> None:
        self._api = api
        self._http = http
        self.url = url

    def page(self, request_from: int, request_to: int, page: int) -> Page:
        body = {"from": request_from, "to": request_to, "page": page, "limit": PAGE_SIZE}
        token = self._api.tokens.current()
        renewed = False
        while True:
            try:
                _, response = self._http.send_request(
                    "POST", self.url, request_kwargs={}, json={"token": token, **body}
                )
            except TokenRejected as rejected:
                if renewed:
                    raise AirbyteTracedException(
                        message=f"TeleCMI rejected the token it had just issued at login ({rejected}).",
                        internal_message=f"Fresh token rejected: {rejected}",
                        failure_type=FailureType.config_error,
                    ) from None
                token = self._api.tokens.renew(token, str(rejected))
                renewed = True
                continue
            answer = body_of(response)
            return Page(count=answer["count"], records=answer["cdr"])
