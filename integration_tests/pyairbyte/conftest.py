"""The PyAirbyte test runs only in its own venv, through scripts/pyairbyte_test.sh.

PyAirbyte (the `airbyte` package) is not in the project's .venv, so there this folder is not
collected at all. The script sets PYAIRBYTE_TEST=1: then a missing `airbyte` is an error. PyAirbyte
reads its offline and telemetry switches at import, so they are set here, before the test imports it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket

import pytest

HAVE_AIRBYTE = importlib.util.find_spec("airbyte") is not None
if os.environ.get("PYAIRBYTE_TEST") == "1" and not HAVE_AIRBYTE:
    raise RuntimeError("PYAIRBYTE_TEST=1 but PyAirbyte is not importable: run scripts/pyairbyte_test.sh")
collect_ignore_glob = [] if HAVE_AIRBYTE else ["test_*.py"]
os.environ.update(AIRBYTE_OFFLINE_MODE="1", DO_NOT_TRACK="1", NO_LIVE_PROGRESS="1")


def _loopback(host: object) -> bool:
    host = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").split("%")[0]
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch):
    """This process may look up and connect to no address beyond this machine."""
    attempts: list[str] = []
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and not _loopback(host):
            attempts.append(f"look-up of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not loopback")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            attempts.append(f"connection to {address!r}")
            raise ConnectionRefusedError(f"{address!r} is not loopback")
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield
    assert not attempts, f"PyAirbyte tried to reach beyond this machine: {attempts}"
