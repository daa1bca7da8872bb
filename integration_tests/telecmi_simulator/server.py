"""An in-process HTTP simulator of the TeleCMI user REST API (login + CDR endpoints).

Standard library only. One ``ThreadingHTTPServer`` on 127.0.0.1, HTTP/1.1 keep-alive,
records stored per endpoint sorted by ``(time, cmiuid)`` so a window query is two
bisections and a page is a slice.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from .data import CDR_ENDPOINTS, normalize_endpoint

LOGIN_PATH = "/v2/user/login"

MSG_LOGIN_OK = "Login successful"
MSG_LOGIN_FAILED = "Invalid user id or password, authentication failed"
MSG_BAD_TOKEN = "Invalid user token, Failed to authenticate token"
MSG_PARAM_MISSING = "Parameter missing"
MSG_LIMIT = "Parameter limit lesser then equals 10"
MSG_FORBIDDEN = "You are not authorized to access this resource"
MSG_INTERNAL = "Internal server error"

MAX_LIMIT = 10
DEFAULT_LIMIT = 10
BODIES_CAP = 200_000

FAULTS = frozenset(
    {
        "429",
        "500",
        "502",
        "503",
        "body_5xx",
        "html_200",
        "garbage",
        "drop",
        "stall",
        "expire_token",
        "ignore_page",
        "inflate_count",
    }
)
# Faults that only make sense on a CDR answer: with endpoint=None they skip other paths.
_CDR_ONLY_FAULTS = frozenset({"ignore_page", "inflate_count"})

_HTML_404 = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Error</title>\n</head>\n<body>\n<pre>Cannot {method} {path}</pre>\n"
    "</body>\n</html>\n"
)
_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_HTML_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HTML_500 = (
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HTML_MAINTENANCE = (
    "<!DOCTYPE html>\n<html>\n<head><title>TeleCMI - Scheduled maintenance</title>"
    "</head>\n<body>\n<h1>We'll be back soon!</h1>\n<p>TeleCMI is undergoing "
    "scheduled maintenance. Please try again in a few minutes.</p>\n</body>\n</html>\n"
)
_GARBAGE = b'{"count": 57, "cdr": [{"cmiuid": "834a35bb-733a-4839-8338-99391'

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "error": True, "msg": msg}


class _Invalid(Exception):
    pass


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


# --------------------------------------------------------------------------- stats


class Stats:
    """Request counters, thread-safe. Read the attributes directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_path: dict[str, int] = {}
        self.logins = 0  # successful logins (tokens issued); attempts are in by_path
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.bodies_dropped = 0  # bodies not kept once BODIES_CAP is reached
        self.faults_served = 0

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_path = {}
            self.logins = 0
            self.max_in_flight = self.in_flight
            self.bodies = []
            self.bodies_dropped = 0
            self.faults_served = 0

    def bodies_for(self, path: str) -> list[dict[str, Any]]:
        """The recorded bodies sent to one path (``"out_missed"`` or a full path)."""
        path = normalize_endpoint(path)
        with self._lock:
            return [b for b in self.bodies if b.get("path") == path]

    # internal -----------------------------------------------------------------
    def _begin(self, path: str) -> None:
        with self._lock:
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

    def _login(self) -> None:
        with self._lock:
            self.logins += 1

    def _fault(self) -> None:
        with self._lock:
            self.faults_served += 1

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, by_path={self.by_path}, "
            f"logins={self.logins}, max_in_flight={self.max_in_flight}, "
            f"faults_served={self.faults_served})"
        )


# --------------------------------------------------------------------------- store


class _Store:
    """Records of one endpoint, ascending by (time, cmiuid); newest first = reversed."""

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
        return (t, str(rec.get("cmiuid", "")))

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        new = [(self._key(r), r) for r in records]
        if not new:
            return
        if len(new) <= 32:
            for key, rec in new:
                i = bisect.bisect_right(self.keys, key)
                self.keys.insert(i, key)
                self.times.insert(i, key[0])
                self.recs.insert(i, rec)
            return
        merged = list(zip(self.keys, self.recs, strict=True)) + new
        merged.sort(key=lambda kr: kr[0])
        self.keys = [k for k, _ in merged]
        self.times = [k[0] for k in self.keys]
        self.recs = [r for _, r in merged]

    def bounds(self, lo_ms: int, hi_ms: int, exclusive: bool) -> tuple[int, int]:
        if exclusive:
            lo = bisect.bisect_right(self.times, lo_ms)
            hi = bisect.bisect_left(self.times, hi_ms)
        else:
            lo = bisect.bisect_left(self.times, lo_ms)
            hi = bisect.bisect_right(self.times, hi_ms)
        return lo, max(lo, hi)

    def page(self, lo: int, hi: int, start: int, limit: int) -> list[dict[str, Any]]:
        """Items [start, start+limit) of the window [lo, hi) in newest-first order."""
        top = hi - start  # exclusive upper ascending index
        bottom = max(lo, top - limit)
        if top <= bottom:
            return []
        return self.recs[bottom:top][::-1]


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

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = _JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.release()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

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


class _Fault:
    __slots__ = ("endpoint", "name", "options", "remaining")

    def __init__(self, name: str, remaining: int, endpoint: str | None, options: dict[str, Any]) -> None:
        self.name = name
        self.remaining = remaining
        self.endpoint = endpoint
        self.options = options

    def matches(self, path: str, is_cdr: bool) -> bool:
        if self.endpoint is not None:
            return self.endpoint == path
        return is_cdr or self.name not in _CDR_ONLY_FAULTS


# --------------------------------------------------------------------------- simulator


class Simulator:
    """The TeleCMI user API on 127.0.0.1. ``with Simulator(...) as sim:`` starts it."""

    def __init__(
        self,
        *,
        calls: dict[str, list[dict[str, Any]]] | None = None,
        users: dict[str, str] | None = None,
        tokens: list[str] | tuple[str, ...] = (),
        error_placement: str = "body",
        edges: str = "inclusive",
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if error_placement not in ("body", "status"):
            raise ValueError("error_placement must be 'body' or 'status'")
        if edges not in ("inclusive", "exclusive"):
            raise ValueError("edges must be 'inclusive' or 'exclusive'")
        self.error_placement = error_placement
        self.edges = edges
        self.host = host
        self.port = port
        self.stats = Stats()
        self._lock = threading.Lock()
        self._latency_s = max(0.0, float(latency_ms)) / 1000.0
        self._users = dict(users or {})
        self._tokens: set[str] = set(tokens)
        self._stores: dict[str, _Store] = {ep: _Store() for ep in CDR_ENDPOINTS}
        self._faults: deque[_Fault] = deque()
        self._refused: dict[str, tuple[int, str]] = {}
        self._pending: list[list[Any]] = []  # [remaining, endpoint, records]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        for endpoint, records in (calls or {}).items():
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

    @property
    def running(self) -> bool:
        return self._server is not None

    # configuration --------------------------------------------------------------
    def add_calls(self, endpoint: str, records: list[dict[str, Any]]) -> None:
        ep = normalize_endpoint(endpoint)
        with self._lock:
            store = self._stores.get(ep)
            if store is None:
                store = self._stores[ep] = _Store()
            store.add(records)

    def records(self, endpoint: str, from_ms: int | None = None, to_ms: int | None = None) -> list[dict[str, Any]]:
        """What the API holds for a window (current edge mode), newest first.

        Without bounds: every record of the endpoint. For test expectations.
        """
        ep = normalize_endpoint(endpoint)
        with self._lock:
            store = self._stores.get(ep)
            if store is None:
                return []
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

    def valid_tokens(self) -> set[str]:
        with self._lock:
            return set(self._tokens)

    def set_latency(self, ms: float) -> None:
        self._latency_s = max(0.0, float(ms)) / 1000.0

    def inject(self, fault: str, times: int = 1, *, endpoint: str | None = None, **options: Any) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if times == 0:
            return
        if times < -1:
            raise ValueError("times must be >= 1, or -1 for 'until clear_faults()'")
        ep = normalize_endpoint(endpoint) if endpoint is not None else None
        with self._lock:
            self._faults.append(_Fault(fault, times, ep, options))

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
        ep = normalize_endpoint(endpoint)
        if requests <= 0:
            self.add_calls(ep, records)
            return
        with self._lock:
            self._pending.append([requests, ep, list(records)])

    # request handling -----------------------------------------------------------
    def _take_fault(self, path: str, is_cdr: bool) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, is_cdr):
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
            if isinstance(body, dict):
                stats._body({**body, "path": path})
            else:
                text = raw[:1000].decode("utf-8", "replace")
                stats._body({"path": path, "_invalid_json": text})
                body = {}
            if self._latency_s:
                time.sleep(self._latency_s)
            is_cdr = h.command == "POST" and path in self._stores
            fault = self._take_fault(path, is_cdr)
            mods: dict[str, Any] = {}
            if fault is not None:
                stats._fault()
                if self._serve_fault(h, fault, mods):
                    return
            if h.command != "POST":
                self._not_found(h, path)
            elif path == LOGIN_PATH:
                self._login(h, body)
            elif is_cdr:
                self._cdr(h, path, body, mods)
            else:
                self._not_found(h, path)
        finally:
            h.release()

    def _serve_fault(self, h: _Handler, fault: _Fault, mods: dict[str, Any]) -> bool:
        """Serve a fault. True if the request is fully answered (or dropped)."""
        name, opts = fault.name, fault.options
        if name == "429":
            headers = {}
            retry_after = opts.get("retry_after", 1)
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            body = _dumps(_error(429, "Too many requests, please try again later"))
            h.respond(429, body, _JSON, headers)
        elif name in ("500", "502", "503"):
            status = int(name)
            fmt = opts.get("body", "json" if status == 500 else "html")
            if fmt == "json":
                h.respond(status, _dumps(_error(status, MSG_INTERNAL)))
            else:
                page = {500: _HTML_500, 502: _HTML_502, 503: _HTML_503}[status]
                h.respond(status, page.encode(), _HTML)
        elif name == "body_5xx":
            h.respond(200, _dumps(_error(500, MSG_INTERNAL)))
        elif name == "html_200":
            h.respond(200, _HTML_MAINTENANCE.encode(), _HTML)
        elif name == "garbage":
            h.respond(200, _GARBAGE, _JSON)
        elif name == "drop":
            h.drop(reset=bool(opts.get("reset", False)))
        elif name == "stall":
            time.sleep(float(opts.get("seconds", 5)))
            return False
        elif name == "expire_token":
            self.expire_tokens()
            h.respond(self._error_status(404), _dumps(_error(404, MSG_BAD_TOKEN)))
        elif name == "ignore_page":
            mods["ignore_page"] = True
            return False
        elif name == "inflate_count":
            mods["extra_count"] = int(opts.get("extra", 1000))
            return False
        return True

    def _not_found(self, h: _Handler, path: str) -> None:
        page = _HTML_404.format(method=h.command, path=path)
        h.respond(404, page.encode(), _HTML)

    def _send_error(self, h: _Handler, code: int, msg: str) -> None:
        h.respond(self._error_status(code), _dumps(_error(code, msg)))

    def _login(self, h: _Handler, body: dict[str, Any]) -> None:
        user_id, password = body.get("id"), body.get("password")
        if user_id in (None, "") or password in (None, ""):
            self._send_error(h, 400, MSG_PARAM_MISSING)
            return
        with self._lock:
            ok = isinstance(user_id, str) and self._users.get(user_id) == password
            token = str(uuid.uuid4()) if ok else ""
            if ok:
                self._tokens.add(token)
        if not ok:
            self._send_error(h, 404, MSG_LOGIN_FAILED)
            return
        self.stats._login()
        ext = user_id.split("_", 1)[0]
        agent = {
            "id": user_id,
            "name": f"Agent {ext}",
            "inet_no": int("9192" + ext.zfill(8)) if ext.isdigit() else 919200000000,
            "category": "user",
        }
        answer = {"code": 200, "msg": MSG_LOGIN_OK, "token": token, "agent": agent}
        h.respond(200, _dumps(answer))

    def _cdr(self, h: _Handler, path: str, body: dict[str, Any], mods: dict[str, Any]) -> None:
        token, from_v, to_v = body.get("token"), body.get("from"), body.get("to")
        if token in (None, "") or from_v is None or to_v is None:
            self._send_error(h, 400, MSG_PARAM_MISSING)
            return
        try:
            from_ms, to_ms = _as_int(from_v), _as_int(to_v)
            page_v, limit_v = body.get("page"), body.get("limit")
            page = 1 if page_v is None else _as_int(page_v)
            limit = DEFAULT_LIMIT if limit_v is None else _as_int(limit_v)
        except _Invalid:
            self._send_error(h, 400, MSG_PARAM_MISSING)
            return
        if limit > MAX_LIMIT:
            self._send_error(h, 400, MSG_LIMIT)
            return
        if limit < 1:
            limit = DEFAULT_LIMIT
        if page < 1 or mods.get("ignore_page"):
            page = 1
        with self._lock:
            if not isinstance(token, str) or token not in self._tokens:
                refused = None
                valid = False
            else:
                refused = self._refused.get(path)
                valid = True
            if valid and refused is None:
                store = self._stores[path]
                lo, hi = store.bounds(from_ms, to_ms, self.edges == "exclusive")
                count = hi - lo
                cdr = store.page(lo, hi, (page - 1) * limit, limit)
                self._after_success(path)
        if not valid:
            self._send_error(h, 404, MSG_BAD_TOKEN)
            return
        if refused is not None:
            self._send_error(h, refused[0], refused[1])
            return
        count += mods.get("extra_count", 0)
        h.respond(200, _dumps({"count": count, "cdr": cdr, "code": 200}))

    def _after_success(self, path: str) -> None:
        """Count a successful CDR answer for insert_after (called under self._lock)."""
        if not self._pending:
            return
        keep = []
        for item in self._pending:
            if item[1] == path:
                item[0] -= 1
                if item[0] <= 0:
                    store = self._stores.get(path)
                    if store is None:
                        store = self._stores[path] = _Store()
                    store.add(item[2])
                    continue
            keep.append(item)
        self._pending = keep
