"""Integration tests run the real `source-telecmi` command against the TeleCMI simulator over HTTP.

Everything but the fixtures lives in integration_tests/harness.py, shared with the scripts.
"""

from __future__ import annotations

import ast
import functools
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

HERE = Path(__file__).resolve().parent
SHARED_SCOPES = {"module", "class", "package"}


@functools.cache
def shares_a_fixture(module: Path) -> bool:
    """Whether a test module defines a fixture wider than a test (`@pytest.fixture(scope="module")`...)."""
    try:
        tree = ast.parse(module.read_text(), str(module))
    except (OSError, SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("fixture"):
                    for keyword in decorator.keywords:
                        scope = keyword.value
                        if keyword.arg == "scope" and isinstance(scope, ast.Constant) and scope.value in SHARED_SCOPES:
                            return True
    return False


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs `pytest -n N --dist loadgroup`: every test goes to whichever worker is free, except
    that the tests of a module defining a fixture wider than a test all run on one worker, one after the
    other. That fixture (a sync loaded into DuckDB, a simulator on a fixed port held under a lock) is then
    made once, not once per worker, and no worker waits for another's lock.

    (xdist's own `xdist_group` marks do not group anything under pytest 9.2, pytest-xdist issue 1386: it
    marks a group in the test's id, which pytest 9.2 no longer lets it change. Hence this scheduler.)
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedFixtureScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if shares_a_fixture(config.rootpath / path) else super()._split_scope(nodeid)

    return SharedFixtureScheduling(config, log)


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
