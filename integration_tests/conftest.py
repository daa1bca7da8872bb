"""Integration tests run the real `source-telecmi` command against the TeleCMI simulator over HTTP.

Everything but the fixtures lives in integration_tests/harness.py, shared with the scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integration_tests.harness import (  # noqa: F401 - the tests import these from here
    ACCOUNT_ENDPOINTS,
    ALL_ENDPOINTS,
    APP_ID,
    APP_SECRET,
    DAY_MS,
    END,
    END_MS,
    ENDPOINTS,
    FAST_ENV,
    INDIA_ENDPOINTS,
    PASSWORD,
    START,
    START_MS,
    STREAM,
    TOKEN,
    Connector,
    Run,
    app_credentials,
    calls_for,
    catalog,
    config_for,
    login_credentials,
    parse,
    simulator,
    state_messages,
)


@pytest.fixture
def connector(tmp_path: Path) -> Connector:
    return Connector(tmp_path)


@pytest.fixture(params=list(ENDPOINTS))
def stream(request: pytest.FixtureRequest) -> str:
    """Each call stream in turn, for the tests that prove a guarantee per stream."""
    return request.param


@pytest.fixture
def endpoint(stream: str) -> str:
    return ENDPOINTS[stream]


@pytest.fixture
def calls_by_endpoint() -> dict[str, list[dict[str, Any]]]:
    """600 calls for each path of every platform (user-level, account-wide, India)."""
    return calls_for(ALL_ENDPOINTS, 600, seed=7)


@pytest.fixture
def calls(calls_by_endpoint: dict[str, list[dict[str, Any]]], request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The calls of the stream under test (outgoing missed calls where a test names no stream)."""
    stream = request.getfixturevalue("stream") if "stream" in request.fixturenames else STREAM
    return calls_by_endpoint[ENDPOINTS[stream]]


@pytest.fixture
def sim(calls_by_endpoint: dict[str, list[dict[str, Any]]]):
    """The simulator with those calls, the token, the login, the app and a dozen agents."""
    with simulator(calls_by_endpoint) as running:
        yield running
