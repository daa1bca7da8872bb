"""The one HTTP session of a sync: pacing, credentials put in at send time, and answers that end in time."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import orjson
import requests
import urllib3
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi.answers import rate_limited, retry_after_s
from source_telecmi.telecmi.body import is_whole, whole
from source_telecmi.telecmi.pacing import Pacer, RateLimitExhausted
from source_telecmi.telecmi.session import Reachability, SyncEnded

# Tests shorten waits with these; production keeps the defaults.
REQUEST_TIMEOUT_ENV = "SOURCE_TELECMI_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0


def request_timeout_s() -> float:
    return float(os.environ.get(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S))


class Transport(requests.Session):
    """The one HTTP session of a sync: every request passes the pacer, carries its credentials, and ends in time.

    - Credentials go into the JSON body here, at send time, on a copy of the request: the CDK logs
      request bodies before sending them, and a renewed token reaches a retried request.
    - An answer `answers` calls a rate limit (a 429, as HTTP status or body code) is waited out here
      and never reaches the error handler: a signal to slow down (see `pacing`), not a fault that
      spends a retry.
    - A whole answer must arrive within the request timeout: a body that trickles forever is a timeout.
    - Proxy and CA settings are read from the environment once, not on every request.
    - Once `reachability` gave up on an address that never answered, no request goes out.
    """

    def __init__(
        self, pacer: Pacer, api_url: str, timeout_s: float, reachability: Optional[Reachability] = None
    ) -> None:
        super().__init__()
        self._pacer = pacer
        self._timeout_s = timeout_s
        self._reachability = reachability
        self._fill: dict[str, tuple[Callable[[], dict[str, Any]], Optional[str]]] = {}
        # The user token the request of each answer carried, for the error handler to renew that very
        # token; held weakly, so it goes with its answer, and kept here rather than on requests' objects.
        self._tokens: weakref.WeakKeyDictionary[requests.Response, str] = weakref.WeakKeyDictionary()
        self._tokens_lock = threading.Lock()
        self.ended: Optional[str] = None
        self._sent = threading.local()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=2 * pacer.ceiling + 4
        )  # lists and files
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.proxies.update(requests.utils.get_environ_proxies(api_url))
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.trust_env = False

    def end(self, why: str) -> None:
        """Send no further request: every request from now on fails at once with `why`."""
        self.ended = why

    def sign(self, url: str, fill: Callable[[], dict[str, Any]], token_field: Optional[str] = None) -> None:
        """Requests to `url` carry the body fields `fill()` gives at the moment they are sent.

        `token_field` names the field holding the user token, which the error handler renews.
        """
        self._fill[url] = (fill, token_field)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.ended:
            raise SyncEnded(self.ended)
        if self._reachability is not None and self._reachability.unreachable:
            raise requests.ConnectionError(self._reachability.unreachable)
        token: Optional[str] = None
        if request.url in self._fill:
            fill, token_field = self._fill[request.url]
            signed = request.copy()
            credentials = fill()
            signed.prepare_body(data=None, files=None, json={**orjson.loads(request.body or b"{}"), **credentials})
            token = credentials.get(token_field) if token_field else None
            request = signed
        response, _ = self._paced(request, self._send_in_time, **kwargs)
        if token is not None:
            with self._tokens_lock:
                self._tokens[response] = token
        return response

    def open(self, request: requests.PreparedRequest) -> tuple[requests.Response, bytes]:
        """Send a request whose body may be large (a file): paced like any, its 429s waited out, the body left
        unread but for its first piece (returned); an answer that is a small JSON object comes whole, read."""
        if self.ended:
            raise SyncEnded(self.ended)
        if self._reachability is not None and self._reachability.unreachable:
            raise requests.ConnectionError(self._reachability.unreachable)
        return self._paced(request, self._send_streamed)

    def _paced(
        self, request: requests.PreparedRequest, send: Callable[..., tuple[requests.Response, bytes]], **kwargs: Any
    ) -> tuple[requests.Response, bytes]:
        try:
            while True:
                with self._pacer.slot():
                    if self.ended:  # the sync ended while this request waited for its turn
                        raise SyncEnded(self.ended)
                    response, first = send(request, **kwargs)
                if not (response.status_code == 429 or (is_whole(response) and rate_limited(response))):  # type: ignore[attr-defined]
                    self._pacer.answered()
                    return response, first
                response.close()
                self._pacer.rate_limited(retry_after_s(response))
        except RateLimitExhausted as exhausted:
            raise AirbyteTracedException(
                message=f"TeleCMI's rate limit: {exhausted}. Try again later, or lower num_workers.",
                internal_message=str(exhausted),
                failure_type=FailureType.transient_error,
            ) from None

    def token_sent(self, response: requests.Response) -> Optional[str]:
        """The user token the request of `response` carried; None if it carried none."""
        with self._tokens_lock:
            return self._tokens.get(response)

    def sent_here(self) -> int:
        """How many requests this thread has sent (retries and refused ones included)."""
        return getattr(self._sent, "count", 0)

    def _headers_in(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self._sent.count = self.sent_here() + 1
        kwargs["timeout"] = (min(CONNECT_TIMEOUT_S, self._timeout_s), self._timeout_s)
        kwargs["stream"] = True
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)

    def _send_in_time(self, request: requests.PreparedRequest, **kwargs: Any) -> tuple[requests.Response, bytes]:
        deadline = time.monotonic() + self._timeout_s
        response = self._headers_in(request, **kwargs)
        chunks = []
        with read_faults(response, request):
            while chunk := response.raw.read1(65536, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise requests.exceptions.ReadTimeout(
                        f"the answer took more than {self._timeout_s:g} s to arrive", request=request
                    )
        return whole(response, b"".join(chunks)), b""

    def _send_streamed(self, request: requests.PreparedRequest) -> tuple[requests.Response, bytes]:
        response = self._headers_in(request)
        with read_faults(response, request):
            first = response.raw.read1(SMALL_ANSWER, decode_content=True)
            if first.lstrip()[:1] != b"{":
                return response, first
            while len(first) <= SMALL_ANSWER and (chunk := response.raw.read1(SMALL_ANSWER, decode_content=True)):
                first += chunk
            if len(first) > SMALL_ANSWER:  # not an answer of TeleCMI's: the caller judges the body
                return response, first
        return whole(response, first), b""


# An answer at most this long that opens with "{" is read whole, as an answer of TeleCMI's (JSON).
SMALL_ANSWER = 65536


@contextmanager
def read_faults(response: requests.Response, request: requests.PreparedRequest) -> Iterator[None]:
    """Reading a body: any fault closes the answer and becomes requests' own exception (which the handlers know)."""
    try:
        yield
    except requests.RequestException:
        response.close()
        raise
    except urllib3.exceptions.ReadTimeoutError as error:
        response.close()
        raise requests.exceptions.ReadTimeout(error, request=request) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        response.close()
        raise requests.exceptions.ChunkedEncodingError(error, request=request) from error
