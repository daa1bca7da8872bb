"""An in-process HTTP simulator of the TeleCMI REST API (global user, account-wide and India paths).

Standard library only. One ``ThreadingHTTPServer`` on 127.0.0.1, HTTP/1.1 keep-alive,
records stored per path sorted by ``(time, id)`` so a window query is two bisections
and a page is a slice. Faults are a table of small handlers (``_FAULT_HANDLERS``).
"""

from __future__ import annotations

import bisect
import contextlib
import http
import json
import random
import re
import selectors
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple, Self
from urllib.parse import quote, quote_plus

from .audio import audio_chunks, audio_sha256, audio_size, content_type
from .data import (
    ACCOUNT_ENDPOINTS,
    CDR_ENDPOINTS,
    DROP,
    GLOBAL_VOICEMAIL,
    INDIA_ENDPOINTS,
    INDIA_VOICEMAIL,
    USER_ENDPOINTS,
    VOICEMAIL_PATHS,
    normalize_endpoint,
    record_id,
)

LOGIN_PATH = "/v2/user/login"
ANALYSIS_PATH = "/v2/analysis"
INDIA_ANALYSIS_PATH = "/v1/analysis"
BALANCE_PATH = "/v2/balance"
INDIA_BALANCE_PATH = "/v1/balance"
USERS_V3_PATH = "/v3/user/list"
USERS_V2_PATH = "/v2/user/list"
INDIA_USERS_PATH = "/v1/agent/list"
PLAY_PATH = "/v2/play"  # GET: a recording's audio (global)
INDIA_PLAY_PATH = "/v1/play"  # GET: India's
PLAY_PATHS: tuple[str, ...] = (PLAY_PATH, INDIA_PLAY_PATH)

MSG_LOGIN_OK = "Login successful"
MSG_LOGIN_FAILED = "Invalid user id or password, authentication failed"
MSG_BAD_TOKEN = "Invalid user token, Failed to authenticate token"
MSG_APP_AUTH = "Authentication Failed"
MSG_INDIA_AUTH = "Invalid app id or secret, authentication failed"
MSG_PARAM_MISSING = "Parameter missing"
MSG_FORBIDDEN = "You are not authorized to access this resource"
MSG_INTERNAL = "Internal server error"
MSG_TOO_MANY = "Too many requests, please try again later"
MSG_PLAY_AUTH = "Invalid app id or secret"
MSG_FILE_NOT_FOUND = "File not found"

DEFAULT_LIMIT = 10
BODIES_CAP = 200_000  # also bounds stats.request_times
DEFAULT_BALANCE: dict[str, Any] = {"balance": 1765.5, "sms": 10969, "expire": 1798761600000}

#: Paths holding records (add_calls, records, insert_after): every call list and the voicemails.
STORE_PATHS: tuple[str, ...] = (*CDR_ENDPOINTS, *VOICEMAIL_PATHS)
_LIST_PATHS = frozenset(STORE_PATHS)  # the paths the *calls* faults match with endpoint=None

_HTML_404 = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Error</title>\n</head>\n<body>\n<pre>Cannot {method} {path}</pre>\n"
    "</body>\n</html>\n"
)
_HTML_5XX = {
    status: (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    for status, reason in (
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Temporarily Unavailable"),
    )
}
# Cloudflare's own 52x statuses (a proxy in front of the API)
_CLOUDFLARE_REASONS = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
    525: "SSL handshake failed",
    526: "Invalid SSL certificate",
    527: "Railgun Listener to Origin Error",
    530: "Origin DNS error",
}


def _reason(status: int) -> str:
    if status in _CLOUDFLARE_REASONS:
        return _CLOUDFLARE_REASONS[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Error"


def _proxy_html(status: int) -> bytes:
    """The HTML page a proxy in front of the API would send with ``status``."""
    reason = _reason(status)
    if status in _CLOUDFLARE_REASONS:
        return (
            '<!DOCTYPE html>\n<html lang="en-US">\n<head>\n<meta charset="UTF-8" />\n'
            f"<title>rest.telecmi.com | {status}: {reason}</title>\n</head>\n<body>\n"
            f'<div id="cf-error-details"><h1>{reason}</h1><span>Error code {status}</span>\n'
            "<p>Cloudflare Ray ID: 8f1c2a3b4d5e6f70</p></div>\n</body>\n</html>\n"
        ).encode()
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


_HTML_MAINTENANCE = (
    b"<!DOCTYPE html>\n<html>\n<head><title>TeleCMI - Scheduled maintenance</title>"
    b"</head>\n<body>\n<h1>We'll be back soon!</h1>\n<p>TeleCMI is undergoing "
    b"scheduled maintenance. Please try again in a few minutes.</p>\n</body>\n</html>\n"
)
_GARBAGE = b'{"count": 57, "cdr": [{"cmiuid": "834a35bb-733a-4839-8338-99391'

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _dumps_raw(obj: Any) -> bytes:
    """UTF-8 as is; surrogate escapes ``\\udc80``-``\\udcff`` become raw (invalid) bytes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")


def _error(code: int, msg: str, india: bool = False) -> dict[str, Any]:
    return {"code": code, "msg": msg} if india else {"code": code, "error": True, "msg": msg}


_TOO_MANY = _dumps(_error(429, MSG_TOO_MANY))
# rate_limit_form -> (HTTP status, headers) of the answer to a request over the rate
RATE_LIMIT_FORMS: dict[str, tuple[int, dict[str, str] | None]] = {
    "retry_after": (429, {"Retry-After": "1"}),
    "no_retry_after": (429, None),
    "body": (200, None),
    "retry_after_zero": (429, {"Retry-After": "0"}),
}


class _Invalid(Exception):
    pass


class _Reject(Exception):
    """An error answer (body code and msg), in the envelope of the path that raised it."""

    def __init__(self, code: int, msg: str) -> None:
        self.code, self.msg = code, msg


def _as_int(value: Any) -> int:
    """Lenient int parsing of a body field (ints, integral floats, digit strings)."""
    if isinstance(value, bool):
        raise _Invalid
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _Invalid from None
    raise _Invalid


def _opt_int(value: Any, default: int) -> int:
    return default if value is None else _as_int(value)


# --------------------------------------------------------------------------- stats


class Stats:
    """Request counters, thread-safe. Read the attributes directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_path: dict[str, int] = {}
            self.logins = 0  # successful logins (tokens issued); attempts are in by_path
            self.max_in_flight = self.in_flight
            self.bodies: list[dict[str, Any]] = []
            self.bodies_dropped = 0  # bodies not kept once BODIES_CAP is reached
            self.request_times: list[float] = []  # time.monotonic() at each arrival (first BODIES_CAP)
            self.request_times_dropped = 0
            self.last_request_time: float | None = None  # the latest arrival, even past the cap
            self.faults_served = 0
            self.rate_limited = 0  # 429s served by the rate limiter (not by faults)
            self.files_served: list[str] = []  # play: each file sent whole, in order (first BODIES_CAP)
            self.bytes_sent = 0  # play: audio bytes written, whole files or not
            self.unpublished_served = 0  # play: 502 envelopes for files not yet published

    def bodies_for(self, path: str) -> list[dict[str, Any]]:
        """The recorded bodies sent to one path (``"out_missed"`` or a full path)."""
        path = normalize_endpoint(path)
        with self._lock:
            return [b for b in self.bodies if b.get("path") == path]

    # internal -----------------------------------------------------------------
    def _begin(self, path: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self.request_times) < BODIES_CAP:
                self.request_times.append(now)
            else:
                self.request_times_dropped += 1
            self.last_request_time = now
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _end(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _body(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self.bodies) < BODIES_CAP:
                self.bodies.append(entry)
            else:
                self.bodies_dropped += 1

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def _served(self, name: str, undo: bool = False) -> None:
        with self._lock:
            if undo:
                if name in self.files_served:
                    del self.files_served[len(self.files_served) - 1 - self.files_served[::-1].index(name)]
            elif len(self.files_served) < BODIES_CAP:
                self.files_served.append(name)

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, by_path={self.by_path}, "
            f"logins={self.logins}, max_in_flight={self.max_in_flight}, "
            f"faults_served={self.faults_served}, rate_limited={self.rate_limited})"
        )


# --------------------------------------------------------------------------- store


class _Store:
    """Records of one path, ascending by (time, id); newest first = reversed."""

    __slots__ = ("keys", "recs", "times")

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []
        self.times: list[int] = []
        self.recs: list[dict[str, Any]] = []

    @staticmethod
    def _key(rec: dict[str, Any]) -> tuple[int, str]:
        try:
            t = int(rec["time"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"record without an integer 'time': {rec!r}") from None
        return (t, record_id(rec))

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        new = [(self._key(r), r) for r in records]
        if len(new) <= 32:
            for key, rec in new:
                i = bisect.bisect_right(self.keys, key)
                self.keys.insert(i, key)
                self.times.insert(i, key[0])
                self.recs.insert(i, rec)
            return
        merged = list(zip(self.keys, self.recs, strict=True)) + new
        merged.sort(key=itemgetter(0))
        self.keys = [k for k, _ in merged]
        self.times = [k[0] for k in self.keys]
        self.recs = [r for _, r in merged]

    def upsert(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace each stored record of the same (time, id) with its new content; add the others."""
        for rec in records:
            key = self._key(rec)
            i = bisect.bisect_left(self.keys, key)
            if i < len(self.keys) and self.keys[i] == key:
                self.recs[i] = rec
            else:
                self.add([rec])

    def bounds(self, lo_ms: int, hi_ms: int, exclusive: bool) -> tuple[int, int]:
        if exclusive:
            lo = bisect.bisect_right(self.times, lo_ms)
            hi = bisect.bisect_left(self.times, hi_ms)
        else:
            lo = bisect.bisect_left(self.times, lo_ms)
            hi = bisect.bisect_right(self.times, hi_ms)
        return lo, max(lo, hi)

    def page(self, lo: int, hi: int, start: int, limit: int, shuffle: bool) -> list[dict[str, Any]]:
        """Items [start, start+limit) of the window [lo, hi) in newest-first order.

        ``shuffle``: records sharing a millisecond are in a fresh random order, as
        under ORDER BY time without a unique tie-breaker.
        """
        top = hi - start  # exclusive upper ascending index
        bottom = max(lo, top - limit)
        if top <= bottom:
            return []
        if not shuffle:
            return self.recs[bottom:top][::-1]
        # widen to whole groups of equal times, shuffle each group, cut the page back out
        a = max(lo, bisect.bisect_left(self.times, self.times[bottom]))
        b = min(hi, bisect.bisect_right(self.times, self.times[top - 1]))
        out: list[dict[str, Any]] = []
        for _, group in groupby(zip(self.times[a:b][::-1], self.recs[a:b][::-1], strict=True), itemgetter(0)):
            recs = [r for _, r in group]
            random.shuffle(recs)
            out += recs
        return out[b - top : b - bottom]


class _Bucket:
    """Token bucket: ``rate`` per second, burst ``max(1, rate)``, full at start."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


# --------------------------------------------------------------------------- http


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never join handler threads (idle keep-alive ones block)
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], sim: Simulator) -> None:
        self.simulator = sim
        self.connections: set[socket.socket] = set()
        self.reset_sockets: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # client went away (stall + client timeout, drop...)
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            reset = request in self.reset_sockets
            self.reset_sockets.discard(request)
        if reset:  # SO_LINGER 0 + close without FIN: the peer sees a RST
            self.close_request(request)
        else:
            super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "nginx"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.simulator._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    # helpers used by Simulator ------------------------------------------------
    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    released = True

    def release(self) -> None:
        """Leave the in-flight count; called right before the answer is written.

        Done *before* writing: a client can only send its next request once it has
        the answer, so counting until after the write would let a sequential client
        show up as two requests in flight.
        """
        if not self.released:
            self.released = True
            self.server.simulator.stats._end()

    def _head(
        self, status: int, length: int, content_type: str, headers: dict[str, str] | None, reason: str | None = None
    ) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.release()
        self.end_headers()

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = _JSON,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        self._head(status, len(body), content_type, headers, reason)
        self.wfile.write(body)

    def trickle(self, seconds: float, interval: float, status: int, body: bytes, content_type: str) -> None:
        """Headers at once, then the body one byte per ``interval``; never all of it.

        Padded with trailing spaces so it cannot end within ``seconds``; after
        ``seconds`` (or as soon as the client goes away) the connection is closed.
        """
        body = body.ljust(int(seconds / interval) + 2)
        self._head(status, len(body), content_type, None)
        sock = self.connection
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as sel, contextlib.suppress(OSError):
            sel.register(sock, selectors.EVENT_READ)
            for i in range(len(body) - 1):
                if time.monotonic() >= deadline:
                    break
                sock.sendall(body[i : i + 1])
                if sel.select(interval) and not sock.recv(1, socket.MSG_PEEK):
                    break  # the client closed its end
        self.drop()

    def drop(self, reset: bool = False) -> None:
        self.close_connection = True
        self.release()
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with self.server.conn_lock:
                    self.server.reset_sockets.add(self.connection)
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Req:
    """One request being answered; faults adjust how (page, transforms, encoding, sending)."""

    __slots__ = ("body", "encode", "h", "ignore_page", "path", "raw", "send", "shuffle", "transforms")

    def __init__(self, h: _Handler, path: str, body: dict[str, Any], raw: bytes = b"") -> None:
        self.h = h
        self.path = path
        self.body = body
        self.raw = raw  # the request body as received
        self.ignore_page = False
        self.shuffle = False
        self.transforms: list[Callable[[dict[str, Any]], None]] = []
        self.encode: Callable[[Any], bytes] = _dumps
        self.send: Callable[[int, bytes, str], None] = h.respond


class _Api(NamedTuple):
    """How one family of paths reads its body."""

    secret: str  # body key of the credential: a user token, or the app secret (with app=True)
    app: bool  # appid + secret checked against `apps`; else `secret` is a user token
    window: tuple[str, str] | None  # body keys of the time window, epoch ms
    max_limit: int
    india: bool = False  # India's error envelope (no "error" key)
    items: str = "cdr"  # the key of the records in a list answer
    auth_msg: str | None = None  # the msg of a credential failure, if not the family's usual one


_WINDOW = ("start_date", "end_date")
_LOGIN_API = _Api("password", False, None, sys.maxsize)
_USER_API = _Api("token", False, ("from", "to"), 10)
_ACCOUNT_API = _Api("secret", True, _WINDOW, 20)
_ANALYSIS_API = _Api("secret", True, _WINDOW, sys.maxsize)
_INDIA_API = _Api("token", True, _WINDOW, 10, india=True)
_INDIA_ANALYSIS_API = _Api("token", True, _WINDOW, sys.maxsize, india=True)
_USERS_V3_API = _Api("secret", True, None, 20)
_USERS_V2_API = _Api("secret", True, None, 10)
_INDIA_USERS_API = _Api("secret", True, None, 10, india=True)
_VOICEMAIL_API = _Api("secret", True, _WINDOW, 10, items="voicemail")
_INDIA_VOICEMAIL_API = _Api("token", True, _WINDOW, 10, india=True, items="voicemail")
_BALANCE_API = _Api("secret", True, None, sys.maxsize, auth_msg=MSG_INDIA_AUTH)
_INDIA_BALANCE_API = _Api("token", True, None, sys.maxsize, india=True)


# --------------------------------------------------------------------------- faults
# A handler gets (simulator, request, options) and returns True once it has answered
# the request itself, False to let the normal answer go out (maybe adjusted).


def _fault_429(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    retry_after = o.get("retry_after", 1)
    req.h.respond(429, _TOO_MANY, _JSON, None if retry_after is None else {"Retry-After": str(retry_after)})
    return True


def _fault_http(status: int, sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    if o.get("body", "json" if status == 500 else "html") == "json":
        req.h.respond(status, _dumps(_error(status, MSG_INTERNAL)))
    else:
        req.h.respond(status, _HTML_5XX[status], _HTML)
    return True


def _fault_any_http(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    status = int(o.get("status", 502))
    retry_after = o.get("retry_after")
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    if o.get("body", "html") == "json":  # a gateway's JSON, without TeleCMI's `code`
        req.h.respond(status, _dumps({"message": _reason(status)}), _JSON, headers, _reason(status))
    else:
        req.h.respond(status, _proxy_html(status), _HTML, headers, _reason(status))
    return True


def _fault_canned(payload: bytes, content_type: str, sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    req.h.respond(200, payload, content_type)
    return True


def _fault_drop(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    req.h.drop(reset=bool(o.get("reset", False)))
    return True


def _fault_stall(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    time.sleep(float(o.get("seconds", 5)))
    return False


def _fault_expire_token(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    sim.expire_tokens()
    sim._send_error(req, 404, MSG_BAD_TOKEN)
    return True


def _fault_refuse(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    sim._send_error(req, int(o.get("code", 403)), str(o.get("msg", MSG_FORBIDDEN)))
    return True


_ECHO = (
    ("password", "Invalid password {}"),
    ("secret", "Authentication Failed for {}"),
    ("token", "Invalid user token {}"),
)


def _fault_echo_secret(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    key, template = next(((k, t) for k, t in _ECHO if k in req.body), _ECHO[-1])
    sim._send_error(req, 404, template.format(req.body.get(key, "")))
    return True


def _fault_echo_cut(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    echo = req.raw.decode("utf-8", "replace")[: max(0, int(o.get("length", 200)))]
    status = sim._error_status(400) if o.get("status") is None else int(o["status"])
    if o.get("form", "json") == "text":
        req.h.respond(status, f"Bad request: {echo}".encode(), _TEXT)
        return True
    route = sim._routes.get(req.path)
    india = route is not None and route[1].india
    sim._send(req, status, _error(400, f"Invalid parameters: {echo}", india))
    return True


def _fault_trickle(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    req.send = partial(req.h.trickle, float(o.get("seconds", 30)), float(o.get("interval", 0.2)))
    return False


def _fault_flag(name: str, sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    setattr(req, name, True)
    return False


def _iso(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms // 1000, UTC):%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


_TIME_FORMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "string": lambda r: {**r, "time": str(r["time"])},
    "float": lambda r: {**r, "time": float(r["time"])},
    "iso": lambda r: {**r, "time": _iso(r["time"])},
    "missing": lambda r: {k: v for k, v in r.items() if k != "time"},
    "unreadable": lambda r: {**r, "time": "not a time"},
}

# answer transforms: they change the fresh answer dict in place, never a stored record

_ITEMS_KEYS = ("cdr", "voicemail")


def _items_key(answer: dict[str, Any]) -> str | None:
    """The key of the records of a list answer (calls or voicemails), if it is one."""
    return next((k for k in _ITEMS_KEYS if isinstance(answer.get(k), list)), None)


def _inflate(extra: int, answer: dict[str, Any]) -> None:
    for key in ("count", "total"):
        if key in answer:
            answer[key] += extra


def _no_count(answer: dict[str, Any]) -> None:
    answer.pop("count", None)
    answer.pop("total", None)


def _short_page(drop: int, answer: dict[str, Any]) -> None:
    key = _items_key(answer)
    if key:
        answer[key] = answer[key][: max(0, len(answer[key]) - drop)]


def _time_as(form: Callable[[dict[str, Any]], dict[str, Any]], answer: dict[str, Any]) -> None:
    key = _items_key(answer)
    if key:
        answer[key] = [form(r) for r in answer[key]]


def _name_suffix(suffix: str, answer: dict[str, Any]) -> None:
    key = _items_key(answer)
    if key and answer[key]:
        first = dict(answer[key][0])
        field = "name" if key == "cdr" else "voicename"  # voicemails have no caller name
        first[field] = str(first.get(field, "")) + suffix
        answer[key] = [first, *answer[key][1:]]


def _record_hash(rec: dict[str, Any]) -> int:
    """Stable across requests and processes (not Python's salted hash())."""
    return zlib.crc32(f"{record_id(rec)}|{rec.get('time')}".encode())


def _odd_rates(forms: tuple[Any, ...], every: int, answer: dict[str, Any]) -> None:
    key = _items_key(answer)
    if not key or not forms:
        return
    out = []
    for rec in answer[key]:
        h = _record_hash(rec)
        if "rate" in rec and h % every == 0:
            rec = {**rec, "rate": forms[(h // every) % len(forms)]}
        out.append(rec)
    answer[key] = out


def _lone_note(answer: dict[str, Any]) -> None:
    """A call whose `notes` is a list of one note gets that note alone, an object instead of a list."""
    key = _items_key(answer)
    if key:
        answer[key] = [
            {**r, "notes": r["notes"][0]} if isinstance(r.get("notes"), list) and len(r["notes"]) == 1 else r
            for r in answer[key]
        ]


# How `secret_in_record` writes the request's secret into a play URL.
SECRET_FORMS: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "quote": lambda s: quote(s, safe=""),
    "quote_lower": lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s, safe="")),
    "quote_plus": quote_plus,
    "json": lambda s: json.dumps(s)[1:-1],
}


def secret_form_of(record: dict[str, Any], forms: tuple[str, ...]) -> str:
    """Which of `forms` `secret_in_record` uses for a record (stable: crc32 of its id and time, like `odd_rates`)."""
    return forms[_record_hash(record) % len(forms)]


def play_url(appid: Any, secret: str, file: Any) -> str:
    """A recording's play URL as TeleCMI builds it: the app id and secret (or a user's token) in its query."""
    credentials = f"appid={appid}&secret={secret}" if appid is not None else f"token={secret}"
    return f"https://rest.telecmi.com/v2/play?{credentials}&file={file}"


def _fault_secret_in_record(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    secret = str(req.body.get("secret", req.body.get("token", "")))
    forms = tuple(o.get("forms", ("plain", "quote", "quote_plus")))
    req.transforms.append(partial(_secret_in_record, req.body.get("appid"), secret, forms, o.get("field")))
    return False


def _secret_in_record(
    appid: Any, secret: str, forms: tuple[str, ...], field: str | None, answer: dict[str, Any]
) -> None:
    key = _items_key(answer)
    if not key or not forms:
        return
    name = field or ("recording_url" if key == "cdr" else "url")
    out = []
    for rec in answer[key]:
        encoded = SECRET_FORMS[secret_form_of(rec, forms)](secret)
        file = rec.get("filename") or rec.get("voicename") or "call.mp3"
        out.append({**rec, name: play_url(appid, encoded, file)})
    answer[key] = out


def _string_code(answer: dict[str, Any]) -> None:
    if isinstance(answer.get("code"), int):
        answer["code"] = str(answer["code"])


def _transform(make: Callable[[dict[str, Any]], Callable[[dict[str, Any]], None]]) -> Callable[..., bool]:
    """A fault that adjusts the normal answer: ``make(options)`` gives the transform."""

    def handler(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
        req.transforms.append(make(o))
        return False

    return handler


def _fault_bad_utf8(sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    req.transforms.append(partial(_name_suffix, "\udcf0\udc9f"))  # -> raw b"\xf0\x9f"
    req.encode = _dumps_raw
    return False


# --------------------------------------------------------------------------- play (recordings)

#: What play answers, HTTP 200, for a file TeleCMI has not published yet: 42 bytes of JSON.
UNPUBLISHED_ENVELOPE = _dumps({"code": 502, "msg": "Internal Server Error"})
#: ``play_content_type``'s default: the type the file's name says (audio/wav, else audio/mpeg).
BY_NAME = "by_name"
#: ``play_content_length``: True (Content-Length), False or "chunked" (chunked), "close" (neither: ends at close).
PLAY_FRAMINGS = (True, False, "chunked", "close")
# Faults of how a file goes out: with endpoint=None they match only the play paths.
PLAY_FAULTS = frozenset({"truncate", "reset_mid_file", "slow_body", "envelope_as_audio"})
# The lists whose files each play path serves: global (user-level and account-wide), India.
_GLOBAL_RECORDING_PATHS: tuple[str, ...] = (*USER_ENDPOINTS, *ACCOUNT_ENDPOINTS, GLOBAL_VOICEMAIL)
_INDIA_RECORDING_PATHS: tuple[str, ...] = (*INDIA_ENDPOINTS, INDIA_VOICEMAIL)


class Recording(NamedTuple):
    """A file a play path serves."""

    name: str
    kind: str  # "call", "voicemail", or "added" (Simulator(recordings=...), add_recordings)
    path: str | None  # the list holding it (None for an added name)
    size: int  # bytes, as served
    content_type: str  # by its name


def _play_query(target: str) -> tuple[dict[str, str], bytes]:
    """The query parameters of a request target (the first value of each) and the raw query."""
    query = target.partition("?")[2]
    params: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, value)
    return params, query.encode()


def _recording_name(path: str, rec: dict[str, Any]) -> str | None:
    """The file a stored record has: a voicemail's `voicename`; a call's `filename` if `record` is true."""
    if path in VOICEMAIL_PATHS:
        name = rec.get("voicename")
    elif rec.get("record") in ("true", True):
        name = rec.get("filename")
    else:
        return None
    return name if isinstance(name, str) and name else None


def _send_audio(sim: Simulator, req: _Req, name: str, size: int, fault: str, o: dict[str, Any]) -> None:
    """The file's bytes in pieces, framed as ``play_content_length`` says, maybe cut or slowed by a fault."""
    h, stats = req.h, sim.stats
    if fault == "envelope_as_audio":  # an audio type, the not-yet-published JSON as its body
        h.respond(200, UNPUBLISHED_ENVELOPE, content_type(name))
        return
    framing = sim.play_content_length
    chunked = framing is False or framing == "chunked"
    h.send_response(200)
    ctype = content_type(name) if sim.play_content_type == BY_NAME else sim.play_content_type
    if ctype is not None:
        h.send_header("Content-Type", ctype)
    if framing is True:
        h.send_header("Content-Length", str(size))
    elif chunked:
        h.send_header("Transfer-Encoding", "chunked")
    else:
        h.send_header("Connection", "close")
        h.close_connection = True
    h.release()
    h.end_headers()
    cut = max(0, min(size, int(o.get("after_bytes", size // 2)))) if fault in ("truncate", "reset_mid_file") else None
    rate = max(1.0, float(o.get("bytes_per_s", 16384))) if fault == "slow_body" else None
    # Bytes and a whole file are counted right before they are written: a client that has read the
    # last byte finds them in the stats. A write that fails takes its count back.
    sent, start, whole, piece = 0, time.monotonic(), False, b""
    try:
        for chunk in audio_chunks(name, size):
            if cut is not None:
                chunk = chunk[: cut - sent]
            step = len(chunk) if rate is None else max(1, int(rate / 20))
            for i in range(0, len(chunk), step):
                piece = chunk[i : i + step]
                if rate is not None:
                    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
                sent += len(piece)
                stats._sent(len(piece))
                if cut is None and not chunked and sent == size:
                    whole = True
                    stats._served(name)
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if cut is not None and sent >= cut:
                break
        if cut is not None:  # FIN (truncate) or RST (reset_mid_file) where the body should go on
            h.drop(reset=fault == "reset_mid_file")
            return
        if chunked:
            whole, piece = True, b""
            stats._served(name)
            h.wfile.write(b"0\r\n\r\n")
    except OSError:  # the client went away
        h.close_connection = True
        stats._sent(-len(piece))
        if whole:
            stats._served(name, undo=True)


def _fault_play(name: str, sim: Simulator, req: _Req, o: dict[str, Any]) -> bool:
    """A fault of how a file goes out; no effect on other paths."""
    if req.h.command != "GET" or req.path not in PLAY_PATHS:
        return False
    sim._play(req, name, o)
    return True


_FAULT_HANDLERS: dict[str, Callable[[Simulator, _Req, dict[str, Any]], bool]] = {
    "429": _fault_429,
    "500": partial(_fault_http, 500),
    "502": partial(_fault_http, 502),
    "503": partial(_fault_http, 503),
    "http": _fault_any_http,
    "body_5xx": partial(_fault_canned, _dumps(_error(500, MSG_INTERNAL)), _JSON),
    "html_200": partial(_fault_canned, _HTML_MAINTENANCE, _HTML),
    "garbage": partial(_fault_canned, _GARBAGE, _JSON),
    "drop": _fault_drop,
    "stall": _fault_stall,
    "expire_token": _fault_expire_token,
    "refuse": _fault_refuse,
    "echo_secret": _fault_echo_secret,
    "echo_cut": _fault_echo_cut,
    "trickle": _fault_trickle,
    "truncate": partial(_fault_play, "truncate"),
    "reset_mid_file": partial(_fault_play, "reset_mid_file"),
    "slow_body": partial(_fault_play, "slow_body"),
    "envelope_as_audio": partial(_fault_play, "envelope_as_audio"),
    "ignore_page": partial(_fault_flag, "ignore_page"),
    "shuffle_ties": partial(_fault_flag, "shuffle"),
    "inflate_count": _transform(lambda o: partial(_inflate, int(o.get("extra", 1000)))),
    "short_page": _transform(lambda o: partial(_short_page, int(o.get("drop", 3)))),
    "time_as": _transform(lambda o: partial(_time_as, _TIME_FORMS[o.get("form", "string")])),
    "surrogate": _transform(lambda o: partial(_name_suffix, "\ud83d")),
    "bad_utf8": _fault_bad_utf8,
    "string_code": _transform(lambda o: _string_code),
    "no_count": _transform(lambda o: _no_count),
    "odd_rates": _transform(
        lambda o: partial(_odd_rates, tuple(o.get("forms", ("", "NA"))), max(1, int(o.get("every", 3))))
    ),
    "lone_note": _transform(lambda o: _lone_note),
    "secret_in_record": _fault_secret_in_record,
}
FAULTS = frozenset(_FAULT_HANDLERS)
# Faults that only make sense on a list of records (calls, voicemails): with endpoint=None
# they skip other paths (marked *calls* in the README).
_CDR_ONLY_FAULTS = frozenset(
    {"ignore_page", "inflate_count", "short_page", "shuffle_ties", "time_as", "surrogate", "bad_utf8", "odd_rates"}
) | {"lone_note", "secret_in_record"}


class _Fault:
    __slots__ = ("after", "endpoint", "handler", "name", "options", "remaining")

    def __init__(self, name: str, remaining: int, endpoint: str | None, after: int, options: dict[str, Any]) -> None:
        self.name = name
        self.handler = _FAULT_HANDLERS[name]
        self.remaining = remaining
        self.endpoint = endpoint
        self.after = after
        self.options = options

    def matches(self, path: str, is_cdr: bool) -> bool:
        if self.endpoint is not None:
            return self.endpoint == path
        if self.name in PLAY_FAULTS:
            return path in PLAY_PATHS
        return is_cdr or self.name not in _CDR_ONLY_FAULTS


# --------------------------------------------------------------------------- simulator


class Simulator:
    """The TeleCMI API on 127.0.0.1. ``with Simulator(...) as sim:`` starts it."""

    def __init__(
        self,
        *,
        calls: dict[str, list[dict[str, Any]]] | None = None,
        users: dict[str, str] | None = None,
        tokens: list[str] | tuple[str, ...] = (),
        apps: dict[int, str] | None = None,
        agents: list[dict[str, Any]] | None = None,
        error_placement: str = "body",
        edges: str = "inclusive",
        latency_ms: float = 0.0,
        page_cap: int | None = None,
        v3_users: bool = True,
        rate_limit: float | None = None,
        rate_limit_form: str = "retry_after",
        token_lifetime: int | None = None,
        offset_cap: int | None = None,
        users_count: bool = True,
        limiter: Any = None,
        voicemails: dict[str, list[dict[str, Any]]] | None = None,
        balance: dict[str, Any] | None = None,
        recording_sizes: Any = None,
        unpublished: Any = None,
        play_content_length: bool | str = True,
        play_content_type: str | None = BY_NAME,
        recordings: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if limiter is not None and not callable(getattr(limiter, "take", None)):
            raise TypeError("limiter must have a take() -> bool method")
        if error_placement not in ("body", "status"):
            raise ValueError("error_placement must be 'body' or 'status'")
        if edges not in ("inclusive", "exclusive"):
            raise ValueError("edges must be 'inclusive' or 'exclusive'")
        if rate_limit_form not in RATE_LIMIT_FORMS:
            raise ValueError(f"rate_limit_form must be one of {sorted(RATE_LIMIT_FORMS)}")
        self.error_placement = error_placement
        self.edges = edges
        self.page_cap = page_cap
        self.offset_cap = offset_cap
        self.users_count = users_count
        # "html": another path is HTTP 404 with an HTML page; "envelope": HTTP 404 in TeleCMI's own
        # envelope, {"code": 404, "msg": "Not found"} (as a server behind an api_url with a path too many)
        self.missing_path = "html"
        self.token_lifetime = token_lifetime
        # the fields of the balance answers; a DROP value leaves that key out
        self.balance: dict[str, Any] = {**DEFAULT_BALANCE, **(balance or {})}
        if play_content_length not in PLAY_FRAMINGS:
            raise ValueError(f"play_content_length must be one of {PLAY_FRAMINGS}")
        # play: each file's size, which files are not yet published, how the audio goes out
        self.recording_sizes: Any = recording_sizes
        self.unpublished: Any = {} if unpublished is None else unpublished
        self.play_content_length = play_content_length
        self.play_content_type = play_content_type
        self._added_recordings: set[str] = set(recordings)
        self._play_asks: dict[str, tuple[int, float]] = {}  # name -> (authorized requests, first one's time)
        self._recording_index_cache: dict[bool, tuple[Any, dict[str, tuple[str, str]]]] = {}
        self.host = host
        self.port = port
        self.stats = Stats()
        self._lock = threading.Lock()
        self._latency_s = max(0.0, float(latency_ms)) / 1000.0
        self._users = dict(users or {})
        self._tokens: set[str] = set(tokens)
        self._token_uses: dict[str, int] = {}  # login-issued token -> requests left (token_lifetime)
        self._apps = {int(k): v for k, v in (apps or {}).items()}
        self._agents = list(agents or [])
        self._bucket: Any = limiter if limiter is not None else (_Bucket(float(rate_limit)) if rate_limit else None)
        self._rate_answer = RATE_LIMIT_FORMS[rate_limit_form]
        self._stores: dict[str, _Store] = {ep: _Store() for ep in STORE_PATHS}
        self._faults: deque[_Fault] = deque()
        self._refused: dict[str, tuple[int, str]] = {}
        self._pending: list[list[Any]] = []  # [remaining, endpoint, records]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._routes: dict[str, tuple[Callable[[_Req, _Api], tuple[int, dict[str, Any]]], _Api]] = {
            LOGIN_PATH: (self._login, _LOGIN_API),
            ANALYSIS_PATH: (partial(self._analysis, ACCOUNT_ENDPOINTS), _ANALYSIS_API),
            INDIA_ANALYSIS_PATH: (partial(self._analysis, INDIA_ENDPOINTS), _INDIA_ANALYSIS_API),
            USERS_V2_PATH: (self._users_list, _USERS_V2_API),
            INDIA_USERS_PATH: (self._users_list, _INDIA_USERS_API),
            GLOBAL_VOICEMAIL: (self._calls, _VOICEMAIL_API),
            INDIA_VOICEMAIL: (self._calls, _INDIA_VOICEMAIL_API),
            BALANCE_PATH: (self._balance, _BALANCE_API),
            INDIA_BALANCE_PATH: (self._balance, _INDIA_BALANCE_API),
        }
        if v3_users:
            self._routes[USERS_V3_PATH] = (self._users_list, _USERS_V3_API)
        for paths, api in (
            (USER_ENDPOINTS, _USER_API),
            (ACCOUNT_ENDPOINTS, _ACCOUNT_API),
            (INDIA_ENDPOINTS, _INDIA_API),
        ):
            for path in paths:
                self._routes[path] = (self._calls, api)
        for endpoint, records in (calls or {}).items():
            self.add_calls(endpoint, records)
        for endpoint, records in (voicemails or {}).items():
            if normalize_endpoint(endpoint) not in VOICEMAIL_PATHS:
                raise ValueError(f"unknown voicemail path {endpoint!r}; known: {VOICEMAIL_PATHS}")
            self.add_calls(endpoint, records)

    # lifecycle ----------------------------------------------------------------
    def start(self) -> Simulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((self.host, self.port), self)
        self._server = server
        host, port = server.server_address[:2]
        self.port = port
        self._base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"telecmi-simulator:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.conn_lock:
            conns = list(server.connections)
        for conn in conns:  # idle keep-alive connections would otherwise live on
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("simulator not started")
        return self._base_url

    # configuration --------------------------------------------------------------
    def add_calls(self, endpoint: str, records: list[dict[str, Any]]) -> None:
        """Add records to a call-record path or a voicemail path (STORE_PATHS)."""
        ep = _check_store(endpoint)
        with self._lock:
            self._stores[ep].add(records)

    def records(self, endpoint: str, from_ms: int | None = None, to_ms: int | None = None) -> list[dict[str, Any]]:
        """What the API holds for a window (current edge mode), newest first.

        Without bounds: every record of the endpoint. For test expectations.
        """
        ep = _check_store(endpoint)
        with self._lock:
            store = self._stores[ep]
            lo_ms = -(2**63) if from_ms is None else from_ms
            hi_ms = 2**63 if to_ms is None else to_ms
            lo, hi = store.bounds(lo_ms, hi_ms, self.edges == "exclusive")
            return store.recs[lo:hi][::-1]

    def add_user(self, user_id: str, password: str) -> None:
        with self._lock:
            self._users[user_id] = password

    def add_token(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._token_uses.clear()

    def valid_tokens(self) -> set[str]:
        with self._lock:
            return set(self._tokens)

    def set_latency(self, ms: float) -> None:
        self._latency_s = max(0.0, float(ms)) / 1000.0

    def inject(self, fault: str, times: int = 1, *, endpoint: str | None = None, **options: Any) -> None:
        """Queue a fault for the next ``times`` matching requests (-1: until clear_faults()).

        ``after=N`` lets the first N matching requests through untouched first.
        """
        if fault not in _FAULT_HANDLERS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if fault == "time_as" and options.get("form", "string") not in _TIME_FORMS:
            raise ValueError(f"time_as form must be one of {sorted(_TIME_FORMS)}")
        if fault == "http" and (
            not 200 <= int(options.get("status", 502)) <= 599 or int(options.get("status", 502)) in (204, 304)
        ):
            raise ValueError("http status must be within 200..599 and carry a body (not 204/304)")
        if fault == "http" and options.get("body", "html") not in ("html", "json"):
            raise ValueError("body must be 'html' or 'json'")
        if fault == "echo_cut" and options.get("form", "json") not in ("json", "text"):
            raise ValueError("echo_cut form must be 'json' or 'text'")
        if times == 0:
            return
        if times < -1:
            raise ValueError("times must be >= 1, or -1 for 'until clear_faults()'")
        after = int(options.pop("after", 0))
        ep = normalize_endpoint(endpoint) if endpoint is not None else None
        with self._lock:
            self._faults.append(_Fault(fault, times, ep, after, options))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def refuse_endpoint(self, endpoint: str, code: int = 403, msg: str = MSG_FORBIDDEN) -> None:
        with self._lock:
            self._refused[normalize_endpoint(endpoint)] = (code, msg)

    def allow_endpoint(self, endpoint: str) -> None:
        with self._lock:
            self._refused.pop(normalize_endpoint(endpoint), None)

    def insert_after(self, requests: int, endpoint: str, records: list[dict[str, Any]]) -> None:
        """Add ``records`` once ``requests`` successful answers of ``endpoint`` have been served."""
        ep = _check_store(endpoint)
        if requests <= 0:
            self.add_calls(ep, records)
            return
        with self._lock:
            self._pending.append([requests, ep, list(records)])

    def upsert_after(self, requests: int, endpoint: str, records: list[dict[str, Any]]) -> None:
        """Like ``insert_after``, but a record with the (time, id) of a stored one replaces it (a note added)."""
        ep = _check_store(endpoint)
        with self._lock:
            if requests <= 0:
                self._stores[ep].upsert(records)
                return
            self._pending.append([requests, ep, list(records), True])

    # recordings (play) ----------------------------------------------------------
    def add_recordings(self, *names: str) -> None:
        """Files both play paths serve besides those of the stored calls and voicemails."""
        with self._lock:
            self._added_recordings.update(names)

    def recordings(self, region: str = "global") -> dict[str, Recording]:
        """Every file ``/v2/play`` (``"global"``) or ``/v1/play`` (``"india"``) serves, by name."""
        if region not in ("global", "india"):
            raise ValueError("region must be 'global' or 'india'")
        with self._lock:
            index = dict(self._recording_index(region == "india", fresh=True))
            added = set(self._added_recordings)
        out = {name: (kind, path) for name, (kind, path) in index.items()}
        out.update((name, ("added", None)) for name in added if name not in out)
        return {
            name: Recording(name, kind, path, self.recording_size(name), content_type(name))
            for name, (kind, path) in sorted(out.items())
        }

    def recording_size(self, name: str) -> int:
        """The size in bytes of the file ``name`` as served (``recording_sizes``, exact)."""
        return audio_size(name, self.recording_sizes)

    def recording_sha256(self, name: str) -> str:
        """The lower-case hex SHA-256 of the file ``name`` as served, computed by streaming it."""
        return audio_sha256(name, self.recording_size(name))

    def play_requests(self, name: str) -> int:
        """How many play requests with good credentials asked for ``name`` (what ``unpublished`` counts)."""
        with self._lock:
            return self._play_asks.get(name, (0, 0.0))[0]

    def _recording_index(self, india: bool, fresh: bool = False) -> dict[str, tuple[str, str]]:
        """name -> (kind, list path) of the stored records' files (call under self._lock).

        Rebuilt when a store changed size or list; ``fresh`` rebuilds anyway (a record replaced in place).
        """
        paths = _INDIA_RECORDING_PATHS if india else _GLOBAL_RECORDING_PATHS
        key = tuple((id(self._stores[p].recs), len(self._stores[p].recs)) for p in paths)
        cached = self._recording_index_cache.get(india)
        if cached is not None and cached[0] == key and not fresh:
            return cached[1]
        index: dict[str, tuple[str, str]] = {}
        for path in paths:
            kind = "voicemail" if path in VOICEMAIL_PATHS else "call"
            for rec in self._stores[path].recs:
                name = _recording_name(path, rec)
                if name is not None:
                    index.setdefault(name, (kind, path))
        self._recording_index_cache[india] = (key, index)
        return index

    def _has_recording(self, name: str, india: bool) -> bool:
        """Call under self._lock."""
        return (
            name in self._added_recordings
            or name in self._recording_index(india)
            or name in self._recording_index(india, fresh=True)
        )

    def _published(self, name: str) -> bool:
        """Count an authorized play request for ``name``; whether the file is published (call under self._lock)."""
        now = time.monotonic()
        count, first = self._play_asks.get(name, (0, now))
        count += 1
        self._play_asks[name] = (count, first)
        wait = self.unpublished(name) if callable(self.unpublished) else self.unpublished.get(name)
        if wait is None or wait is False:
            return True
        if wait is True:
            return False
        if isinstance(wait, int):
            return count > wait
        return now - first >= float(wait)

    def _play(self, req: _Req, fault: str = "", options: dict[str, Any] | None = None) -> None:
        """GET /v2/play (India /v1/play): a file's audio, or TeleCMI's JSON saying why not."""
        india = req.path == INDIA_PLAY_PATH
        query, secret_key = req.body, ("token" if india else "secret")
        try:
            if any(not query.get(k) for k in ("appid", secret_key, "file")):
                raise _Reject(404, MSG_PARAM_MISSING)
            name = query["file"]
            with self._lock:
                try:
                    ok = self._apps.get(_as_int(query["appid"])) == query[secret_key]
                except _Invalid:
                    ok = False
                if not ok:
                    raise _Reject(407, MSG_PLAY_AUTH)
                refused = self._refused.get(req.path)
                if refused is not None:
                    raise _Reject(*refused)
                if not self._has_recording(name, india):
                    raise _Reject(404, MSG_FILE_NOT_FOUND)
                published = self._published(name)
        except _Reject as r:
            self._send(req, self._error_status(r.code), _error(r.code, r.msg, india))
            return
        if not published:
            self.stats._count("unpublished_served")
            req.send(200, UNPUBLISHED_ENVELOPE, _JSON)
            return
        _send_audio(self, req, name, self.recording_size(name), fault, options or {})

    # request handling -----------------------------------------------------------
    def _take_fault(self, path: str, is_cdr: bool) -> _Fault | None:
        """The first queued fault matching the request, or None (no fault, or still in ``after``)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, is_cdr):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    if fault.remaining > 0:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _error_status(self, code: int) -> int:
        return code if self.error_placement == "status" else 200

    def _handle(self, h: _Handler) -> None:
        path = h.path.split("?", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        stats = self.stats
        stats._begin(path)
        h.released = False
        try:
            try:
                raw = h.read_body()
            except (ValueError, OSError):
                h.close_connection = True
                h.respond(400, b"Bad Request", "text/plain")
                return
            body: Any
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            if h.command == "GET" and path in PLAY_PATHS:  # the query is the body; its secret is never kept
                body, raw = _play_query(h.path)
                stats._body({"path": path, **{k: body[k] for k in ("appid", "file") if k in body}})
            elif isinstance(body, dict):
                stats._body({**body, "path": path})
            else:
                stats._body({"path": path, "_invalid_json": raw[:1000].decode("utf-8", "replace")})
                body = {}
            if self._bucket is not None and not self._bucket.take():
                stats._count("rate_limited")
                status, headers = self._rate_answer
                h.respond(status, _TOO_MANY, _JSON, headers)
                return
            if self._latency_s:
                time.sleep(self._latency_s)
            req = _Req(h, path, body, raw)
            fault = self._take_fault(path, h.command == "POST" and path in _LIST_PATHS)
            if fault is not None:
                stats._count("faults_served")
                if fault.handler(self, req, fault.options):
                    return
            self._answer(req)
        finally:
            h.release()

    def _answer(self, req: _Req) -> None:
        if req.h.command == "GET" and req.path in PLAY_PATHS:  # the API's only GET
            self._play(req)
            return
        route = self._routes.get(req.path) if req.h.command == "POST" else None
        if route is None and self.missing_path == "envelope":
            req.send(404, json.dumps({"code": 404, "msg": "Not found"}).encode(), _JSON)
            return
        if route is None:
            req.send(404, _HTML_404.format(method=req.h.command, path=req.path).encode(), _HTML)
            return
        method, api = route
        try:
            status, answer = method(req, api)
        except _Reject as r:
            status, answer = self._error_status(r.code), _error(r.code, r.msg, api.india)
        self._send(req, status, answer)

    def _send(self, req: _Req, status: int, answer: dict[str, Any]) -> None:
        for transform in req.transforms:
            transform(answer)
        req.send(status, req.encode(answer), _JSON)

    def _send_error(self, req: _Req, code: int, msg: str) -> None:
        self._send(req, self._error_status(code), _error(code, msg))

    def _parse(self, req: _Req, api: _Api) -> tuple[int, int, int, int]:
        """(window low, window high, page, limit) of a body, or _Reject(400)."""
        body = req.body
        keys = ("appid", api.secret) if api.app else (api.secret,)
        if any(body.get(k) in (None, "") for k in keys + (api.window or ())):
            raise _Reject(400, MSG_PARAM_MISSING)
        try:
            lo, hi = (_as_int(body[k]) for k in api.window) if api.window else (0, 0)
            page = _opt_int(body.get("page"), 1)
            limit = _opt_int(body.get("limit"), DEFAULT_LIMIT)
        except _Invalid:
            raise _Reject(400, MSG_PARAM_MISSING) from None
        if limit > api.max_limit:
            raise _Reject(400, f"Parameter limit lesser then equals {api.max_limit}")
        return lo, hi, page, limit

    def _paging(self, req: _Req, page: int, limit: int) -> tuple[int, int]:
        """(offset, size) of a page, after page_cap and ignore_page."""
        if limit < 1:
            limit = DEFAULT_LIMIT
        limit = min(limit, self.page_cap or limit)
        if page < 1 or req.ignore_page:
            page = 1
        start = (page - 1) * limit
        if self.offset_cap is not None and start >= self.offset_cap:
            return start, 0  # past what the server serves: an empty page, the true count
        return start, limit

    def _authorize(self, req: _Req, api: _Api) -> None:
        """Check the credential (and refuse_endpoint); call under self._lock."""
        body = req.body
        if api.app:
            try:
                ok = self._apps.get(_as_int(body["appid"])) == body[api.secret]
            except _Invalid:
                ok = False
            if not ok:
                raise _Reject(404, api.auth_msg or (MSG_INDIA_AUTH if api.india else MSG_APP_AUTH))
        elif not self._use_token(body[api.secret]):
            raise _Reject(404, MSG_BAD_TOKEN)
        refused = self._refused.get(req.path)
        if refused is not None:
            raise _Reject(*refused)

    def _use_token(self, token: Any) -> bool:
        if not isinstance(token, str) or token not in self._tokens:
            return False
        left = self._token_uses.get(token)
        if left is not None:
            if left <= 1:  # this is its last request
                self._tokens.discard(token)
                del self._token_uses[token]
            else:
                self._token_uses[token] = left - 1
        return True

    def _login(self, req: _Req, api: _Api) -> tuple[int, dict[str, Any]]:
        user_id, password = req.body.get("id"), req.body.get("password")
        if user_id in (None, "") or password in (None, ""):
            raise _Reject(400, MSG_PARAM_MISSING)
        with self._lock:
            if not isinstance(user_id, str) or self._users.get(user_id) != password:
                raise _Reject(404, MSG_LOGIN_FAILED)
            token = str(uuid.uuid4())
            self._tokens.add(token)
            if self.token_lifetime:
                self._token_uses[token] = self.token_lifetime
        self.stats._count("logins")
        ext = user_id.split("_", 1)[0]
        agent = {
            "id": user_id,
            "name": f"Agent {ext}",
            "inet_no": int("9192" + ext.zfill(8)) if ext.isdigit() else 919200000000,
            "category": "user",
        }
        return 200, {"code": 200, "msg": MSG_LOGIN_OK, "token": token, "agent": agent}

    def _calls(self, req: _Req, api: _Api) -> tuple[int, dict[str, Any]]:
        lo_ms, hi_ms, page, limit = self._parse(req, api)
        start, size = self._paging(req, page, limit)
        with self._lock:
            self._authorize(req, api)
            store = self._stores[req.path]
            lo, hi = store.bounds(lo_ms, hi_ms, self.edges == "exclusive")
            items = store.page(lo, hi, start, size, req.shuffle) if size else []
            self._after_success(req.path)
        if api.india:
            return 200, {"total": hi - lo, api.items: items}
        return 200, {"count": hi - lo, api.items: items, "code": 200}

    def _analysis(self, paths: tuple[str, ...], req: _Req, api: _Api) -> tuple[int, dict[str, Any]]:
        lo_ms, hi_ms, _, _ = self._parse(req, api)
        with self._lock:
            self._authorize(req, api)
            counts = []
            for path in paths:  # answered, missed, out_answered, out_missed
                lo, hi = self._stores[path].bounds(lo_ms, hi_ms, self.edges == "exclusive")
                counts.append(hi - lo)
        answered, missed = counts[0] + counts[2], counts[1] + counts[3]
        return 200, {"code": 200, "total": answered + missed, "answered": answered, "missed": missed}

    def _users_list(self, req: _Req, api: _Api) -> tuple[int, dict[str, Any]]:
        _, _, page, limit = self._parse(req, api)
        start, size = self._paging(req, page, limit)
        with self._lock:
            self._authorize(req, api)
            count = len(self._agents)
            agents = self._agents[start : start + size]
        if req.path == USERS_V2_PATH:  # the older form: one `name`
            agents = [_v2_agent(a) for a in agents]
        answer: dict[str, Any] = {"code": "cmi-2000" if api.india else 200, "status": "success", "count": count}
        if not self.users_count:
            del answer["count"]
        answer["agents"] = agents
        return 200, answer

    def _balance(self, req: _Req, api: _Api) -> tuple[int, dict[str, Any]]:
        self._parse(req, api)
        with self._lock:
            self._authorize(req, api)
            fields = dict(self.balance)
        answer: dict[str, Any] = {"code": 200}
        for key in ("expire", "sms", "balance"):
            if key in fields:
                answer[key] = fields.pop(key)
        answer.update(fields)  # any extra field, after the documented ones
        answer = {k: v for k, v in answer.items() if v is not DROP}
        if api.india and isinstance(answer.get("balance"), int | float) and not isinstance(answer["balance"], bool):
            answer["balance"] = str(answer["balance"])  # India: the number as a string
        return 200, answer

    def _after_success(self, path: str) -> None:
        """Count a successful call-record answer for insert_after (called under self._lock)."""
        if not self._pending:
            return
        keep = []
        for item in self._pending:
            if item[1] == path:
                item[0] -= 1
                if item[0] <= 0:
                    if len(item) > 3:  # upsert_after
                        self._stores[path].upsert(item[2])
                    else:
                        self._stores[path].add(item[2])
                    continue
            keep.append(item)
        self._pending = keep


def _check_store(endpoint: str) -> str:
    """The normalized path of a record store (a call list or a voicemail list), or ValueError."""
    ep = normalize_endpoint(endpoint)
    if ep not in _LIST_PATHS:
        raise ValueError(f"unknown record path {endpoint!r}; known: {STORE_PATHS}")
    return ep


def _v2_agent(agent: dict[str, Any]) -> dict[str, Any]:
    out = {"agent_id": agent.get("agent_id"), "name": f"{agent.get('first_name', '')} {agent.get('last_name', '')}"}
    out.update((k, v) for k, v in agent.items() if k not in ("agent_id", "first_name", "last_name"))
    return out
