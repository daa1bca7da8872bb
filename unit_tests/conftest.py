"""Unit tests run without real waits between retries, and leave the secrets registered as they found them."""

import itertools
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from airbyte_cdk.sources.streams.http import rate_limiting
from airbyte_cdk.test.mock_http import HttpMocker
from airbyte_cdk.utils import airbyte_secrets_utils

from source_telecmi import secrets

_real_sleep = time.sleep


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "0.001")
    # The CDK sleeps one second more than every backoff the connector asks for ("to cover fractions of
    # a second"); the connector's scale cannot shorten that, so the tests do.
    monkeypatch.setattr(rate_limiting, "time", SimpleNamespace(sleep=lambda seconds: _real_sleep(seconds / 1000)))


@pytest.fixture(autouse=True)
def _secrets_restored():
    """Secrets registered by one test (or any test before it) must not mask the text another test looks for.

    Both lists are restored: the CDK's, and the connector's own (`secrets._forms`), which
    `register_secret` consults to skip forms it already knows: left behind, it would keep a later
    test's registration of the same secret from reaching the CDK's list at all.
    """
    saved = list(getattr(airbyte_secrets_utils, "__SECRETS_FROM_CONFIG"))
    forms, ordered = set(secrets._forms), list(secrets._ordered)
    # Each test starts with none: under `make test` a worker runs integration tests too, in this process,
    # and what they registered (the simulator's app id) is no secret of a unit test.
    airbyte_secrets_utils.update_secrets([])
    with secrets._lock:
        secrets._forms.clear()
        secrets._ordered.clear()
    yield
    airbyte_secrets_utils.update_secrets(saved)
    with secrets._lock:
        secrets._forms.clear()
        secrets._forms.update(forms)
        secrets._ordered[:] = ordered


@pytest.fixture
def http_mocker():
    """The CDK's HttpMocker; at the end, every request it was told about must have been asked."""
    with HttpMocker() as mocker:
        yield mocker
        mocker._validate_all_matchers_called()


_loggers = itertools.count()


class Log:
    """A logger of its own, DEBUG on, and every record it got."""

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"unit_tests.log{next(_loggers)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.records: list[logging.LogRecord] = []
        keep = logging.Handler(level=logging.DEBUG)
        keep.emit = self.records.append
        self.logger.addHandler(keep)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    def warnings(self) -> list[str]:
        return self.messages(logging.WARNING)


@pytest.fixture
def log():
    return Log()


class Answer:
    """One scripted HTTP answer: a status, headers and a body, sent whole, trickled, or cut off."""

    def __init__(self, body=b"", status=200, headers=None, trickle_s=0.0, cut=False):
        self.body = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.status = status
        self.headers = dict(headers or {})
        self.trickle_s = trickle_s
        self.cut = cut

    def send(self, handler):
        handler.send_response(self.status)
        handler.send_header("Content-Type", "application/json")
        for name, value in self.headers.items():
            handler.send_header(name, value)
        if self.trickle_s:  # a byte at a time, for ever longer than any timeout: a body that never ends
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            try:
                for _ in range(int(self.trickle_s / 0.01)):
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
                    time.sleep(0.01)
            except OSError:
                pass  # the client gave up, as it should
            return
        handler.send_header("Content-Length", str(len(self.body) + (100 if self.cut else 0)))
        handler.end_headers()
        handler.wfile.write(self.body)
        if self.cut:
            handler.wfile.flush()
            handler.close_connection = True


class _Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        with server.lock:
            server.requests.append((self.path, json.loads(body) if body else None))
            answer = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
        answer.send(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server answering POSTs from `server.answers` in turn (the last one for ever after).

    `server.url` is its address; `server.requests` every (path, JSON body) it was sent.
    """
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.requests = []
    httpd.answers = [Answer({"code": 200, "count": 0, "cdr": []})]
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it: waits of any length take no time."""

    def __init__(self, start=1000.0):
        self.now_s = start
        self.slept = []
        self._lock = threading.Lock()

    def now(self):
        with self._lock:
            return self.now_s

    def sleep(self, seconds):
        with self._lock:
            self.slept.append(seconds)
            self.now_s += max(0.0, seconds)
