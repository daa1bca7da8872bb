"""Integration tests run the real `source-telecmi` command against the TeleCMI simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from integration_tests.telecmi_simulator import (
    ANSWERED,
    DEFAULT_USER_ID,
    MISSED,
    OUT_ANSWERED,
    OUT_MISSED,
    Simulator,
    generate_calls,
)

COMMAND = str(Path(sys.executable).parent / "source-telecmi")
TOKEN = "integration-token-5f2c9a"
PASSWORD = "integration-password-77d1"
START = "2025-12-01T00:00:00Z"
END = "2026-01-01T00:00:00Z"
START_MS = 1764547200000
END_MS = 1767225600000
DAY_MS = 86_400_000
STREAM = "outgoing_missed_calls"
# Every stream and the endpoint it reads: each guarantee is proven for each.
ENDPOINTS = {
    "outgoing_missed_calls": OUT_MISSED,
    "incoming_missed_calls": MISSED,
    "incoming_answered_calls": ANSWERED,
    "outgoing_answered_calls": OUT_ANSWERED,
}
# Waits between retries are scaled down; request timeouts too, so a stalled API is seen quickly.
FAST_ENV = {"SOURCE_TELECMI_BACKOFF_SCALE": "0.001", "SOURCE_TELECMI_REQUEST_TIMEOUT": "2"}


@dataclass
class Run:
    """The messages and exit code of one connector run."""

    returncode: int
    messages: list[dict[str, Any]]
    stdout: str
    stderr: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"]["data"] for m in self.of("RECORD")]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["state"] for m in self.of("STATE")]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of("TRACE") if m["trace"].get("type") == "ERROR"]

    def traces(self, kind: str) -> list[dict[str, Any]]:
        return [m["trace"] for m in self.of("TRACE") if m["trace"].get("type") == kind]

    @property
    def connection_status(self) -> dict[str, Any]:
        (status,) = [m["connectionStatus"] for m in self.of("CONNECTION_STATUS")]
        return status

    def logs(self, *levels: str) -> list[str]:
        return [m["log"]["message"] for m in self.of("LOG") if not levels or m["log"]["level"] in levels]


@dataclass
class Connector:
    """Writes config, catalog and state files and runs the connector command on them."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, content: Any) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(content))
        return str(path)

    def args(self, verb: str, config: dict, catalog: Optional[dict], state: Optional[list]) -> list[str]:
        args = [COMMAND, verb]
        if verb != "spec":
            args += ["--config", self.write("config.json", config)]
        if catalog is not None:
            args += ["--catalog", self.write("catalog.json", catalog)]
        if state is not None:
            args += ["--state", self.write("state.json", state)]
        return args

    def run(
        self,
        verb: str,
        config: Optional[dict] = None,
        catalog: Optional[dict] = None,
        state: Optional[list] = None,
        debug: bool = False,
        timeout: float = 120,
    ) -> Run:
        args = self.args(verb, config or {}, catalog, state) + (["--debug"] if debug else [])
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=self.environment())
        return Run(done.returncode, parse(done.stdout), done.stdout, done.stderr)

    def start(self, verb: str, config: dict, catalog: dict, state: Optional[list] = None) -> subprocess.Popen:
        """Start a run whose output the test reads as it comes (to kill it mid-way)."""
        return subprocess.Popen(
            self.args(verb, config, catalog, state),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.environment(),
        )

    def environment(self) -> dict[str, str]:
        return {**os.environ, **FAST_ENV, **self.env}


def parse(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be a protocol message."""
    messages = []
    for line in stdout.splitlines():
        if line.strip():
            messages.append(json.loads(line))
    return messages


def config_for(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    config = {
        "credentials": {"auth_type": "token", "token": TOKEN},
        "start_date": START,
        "end_date": END,
        "api_url": sim.base_url,
        "lookback_window_days": 0,
        "num_workers": 4,
    }
    config.update(overrides)
    return config


def login_credentials() -> dict[str, str]:
    return {"auth_type": "login", "user_id": DEFAULT_USER_ID, "password": PASSWORD}


def catalog(sync_mode: str = "incremental", stream: str = STREAM, *more: str) -> dict[str, Any]:
    """A configured catalog of one or more streams, all in the same sync mode."""
    return {
        "streams": [
            {
                "stream": {
                    "name": name,
                    "json_schema": {},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                    "source_defined_cursor": True,
                    "default_cursor_field": ["time"],
                },
                "sync_mode": sync_mode,
                "cursor_field": ["time"],
                "destination_sync_mode": "append",
            }
            for name in (stream, *more)
        ]
    }


def state_messages(run: Run) -> list[dict[str, Any]]:
    """The last state of a run, as the platform would hand it to the next run."""
    return [run.states[-1]] if run.states else []


@pytest.fixture
def connector(tmp_path: Path) -> Connector:
    return Connector(tmp_path)


@pytest.fixture(params=list(ENDPOINTS))
def stream(request: pytest.FixtureRequest) -> str:
    """Each stream in turn, for the tests that prove a guarantee per stream."""
    return request.param


@pytest.fixture
def endpoint(stream: str) -> str:
    return ENDPOINTS[stream]


@pytest.fixture
def calls_by_endpoint() -> dict[str, list[dict[str, Any]]]:
    return {
        endpoint: generate_calls(600, START_MS, END_MS - 1, seed=7 + i, endpoint=endpoint)
        for i, endpoint in enumerate(ENDPOINTS.values())
    }


@pytest.fixture
def calls(calls_by_endpoint: dict[str, list[dict[str, Any]]], request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The calls of the stream under test (outgoing missed calls where a test names no stream)."""
    stream = request.getfixturevalue("stream") if "stream" in request.fixturenames else STREAM
    return calls_by_endpoint[ENDPOINTS[stream]]


@pytest.fixture
def sim(calls_by_endpoint: dict[str, list[dict[str, Any]]]):
    with Simulator(calls=calls_by_endpoint, tokens=[TOKEN], users={DEFAULT_USER_ID: PASSWORD}) as simulator:
        yield simulator
