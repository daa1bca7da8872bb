"""PyAirbyte runs the connector into a DuckDB cache, then again incrementally from the state it kept.

Run by scripts/pyairbyte_test.sh in its own venv (.venv-pyairbyte), which has PyAirbyte (the
`airbyte` package) and this checkout installed editable, so `source-telecmi` sits beside the
venv's Python. The TeleCMI simulator runs in-process on 127.0.0.1; PyAirbyte is offline (no
registry, no telemetry) and this process may open no connection to any other address.

What PyAirbyte does, as of 0.71: its catalog asks for incremental on every stream that supports
it; the cache keeps the last STATE message of each stream in its `_airbyte_state` table and hands
it back on the next `read()` with the same cache; the default write strategy `auto` resolves to
`merge` for a stream with a primary key, so a call read twice stays one row.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import airbyte as ab
import pytest
import sqlalchemy as sa
from airbyte import constants as ab_constants
from airbyte.caches import DuckDBCache
from airbyte.shared.catalog_providers import CatalogProvider
from airbyte.strategies import WriteMethod, WriteStrategy

from integration_tests.telecmi_simulator import OUT_MISSED, Simulator, generate_calls
from source_telecmi.timeline import finished_ranges

CONNECTOR = Path(sys.executable).parent / "source-telecmi"
SOURCE_NAME = "source-telecmi"
STREAM = "outgoing_missed_calls"
SCHEMA = "telecmi"
TOKEN = "pyairbyte-token-8d41b7"
DAY_MS = 86_400_000
START, START_MS = "2025-12-01T00:00:00Z", 1764547200000
END, END_MS = "2026-01-01T00:00:00Z", 1767225600000
LATER_END, LATER_END_MS = "2026-01-02T00:00:00Z", 1767312000000


# ------------------------------------------------------------------ helpers


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuses (and records) any name look-up or connection from this process to a non-loopback host."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            attempts.append(f"look-up of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"blocked by the test: {host!r} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    def guard(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            attempts.append(f"connection to {address!r}")
            raise ConnectionRefusedError(f"blocked by the test: {address!r} is not loopback")

    def connect(sock: socket.socket, address: Any) -> None:
        guard(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert attempts == [], f"PyAirbyte tried to reach beyond this machine: {attempts}"


@pytest.fixture(scope="session")
def summary() -> Iterator[dict[str, Any]]:
    """Facts for scripts/pyairbyte_test.sh to print, written where PYAIRBYTE_TEST_SUMMARY says."""
    facts: dict[str, Any] = {"pyairbyte_version": version("airbyte"), "airbyte_cdk_version": version("airbyte-cdk")}
    yield facts
    path = os.environ.get("PYAIRBYTE_TEST_SUMMARY")
    if path:
        Path(path).write_text(json.dumps(facts, indent=2, default=str))


def config_for(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "credentials": {"auth_type": "token", "token": TOKEN},
        "start_date": START,
        "end_date": END,
        "lookback_window_days": 0,
        "num_workers": 4,
        "api_url": sim.base_url,
    }
    config.update(overrides)
    return config


def telecmi_source(config: dict[str, Any]) -> ab.Source:
    assert CONNECTOR.is_file(), f"{CONNECTOR} is missing: install this checkout into the venv (pip install -e .)"
    source = ab.get_source(SOURCE_NAME, local_executable=str(CONNECTOR), config=config, install_if_missing=False)
    source.select_streams([STREAM])
    return source


def new_cache(tmp_path: Path) -> DuckDBCache:
    # The file name must differ from the schema: DuckDB names the database after the file, and
    # a database and a schema both called "telecmi" make every "telecmi.x" ambiguous.
    return DuckDBCache(db_path=tmp_path / "pyairbyte_cache.duckdb", schema_name=SCHEMA)


def rows_of(cache: DuckDBCache) -> list[dict[str, Any]]:
    return [dict(row) for row in cache[STREAM]]


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by cmiuid, after checking there is exactly one row per cmiuid."""
    ids = [r["cmiuid"] for r in rows]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    assert not doubled, f"{len(doubled)} calls have more than one row, e.g. {doubled[:3]}"
    return {r["cmiuid"]: r for r in rows}


def as_json(value: Any) -> Any:
    """A JSON column's value as Python data (DuckDB may hand it over as text)."""
    return json.loads(value) if isinstance(value, str) else value


def column_types(cache: DuckDBCache) -> dict[str, str]:
    query = sa.text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = :schema AND table_name = :table"
    )
    with cache.get_sql_engine().connect() as connection:
        return {name: kind for name, kind in connection.execute(query, {"schema": SCHEMA, "table": STREAM})}


def kept_state(cache: DuckDBCache) -> dict[str, Any]:
    """The stream state PyAirbyte kept in the cache for the next read."""
    message = cache.get_state_provider(SOURCE_NAME).get_stream_state(STREAM)
    return json.loads(message.model_dump_json())["stream"]["stream_state"]


def newest_in_state(state: dict[str, Any]) -> int:
    ranges = finished_ranges(state)
    assert ranges, f"the kept state has no finished range: {state}"
    newest = ranges[-1][2]
    assert newest is not None, f"the kept state has no newest call: {state}"
    return newest


# ------------------------------------------------------------------ tests


def test_pyairbyte_is_offline() -> None:
    assert ab_constants.AIRBYTE_OFFLINE_MODE is True, "AIRBYTE_OFFLINE_MODE=1 was not set before airbyte was imported"
    assert os.environ.get("DO_NOT_TRACK"), "DO_NOT_TRACK is not set"


def test_two_reads_into_duckdb_the_second_incremental(tmp_path, loopback_only, summary) -> None:
    first_calls = generate_calls(150, START_MS, START_MS + 20 * DAY_MS, seed=11)
    noted = [c for c in first_calls if c.get("notes")]
    assert noted, "the generated calls should include some with notes"
    newest = max(c["time"] for c in first_calls)

    with Simulator(calls={OUT_MISSED: first_calls}, tokens=[TOKEN]) as sim:
        config = config_for(sim)
        source = telecmi_source(config)
        source.check()
        assert STREAM in source.get_available_streams()

        configured = source.get_configured_catalog()
        (stream,) = [s for s in configured.streams if s.stream.name == STREAM]
        write_method = CatalogProvider(configured).resolve_write_method(STREAM, WriteStrategy.AUTO)
        summary.update(
            sync_mode=stream.sync_mode.value,
            destination_sync_mode=stream.destination_sync_mode.value,
            primary_key=stream.primary_key,
            cursor_field=stream.cursor_field,
            auto_write_method=write_method.value,
        )
        assert stream.sync_mode.value == "incremental"
        assert stream.primary_key == [["cmiuid"]]
        assert write_method == WriteMethod.MERGE, "with a primary key, PyAirbyte's `auto` should merge"

        cache = new_cache(tmp_path)

        # ---------------------------------------------------------- first read: everything
        first = source.read(cache=cache)
        assert first.processed_records == len(first_calls)
        rows = by_id(rows_of(cache))
        assert set(rows) == {c["cmiuid"] for c in first_calls}
        assert all(isinstance(r["to"], str) and r["to"].isdigit() for r in rows.values()), "`to` should be text"
        assert column_types(cache)["to"] == "VARCHAR"
        assert column_types(cache)["time"] == "BIGINT"
        for call in noted:
            assert as_json(rows[call["cmiuid"]]["notes"]) == call["notes"], "a call's notes were not kept as sent"
        for call in first_calls:
            assert rows[call["cmiuid"]]["time"] == call["time"]
            assert rows[call["cmiuid"]]["to"] == str(call["to"])
        state = kept_state(cache)
        assert newest_in_state(state) == newest
        summary["state_after_first_read"] = state
        first_raw_ids = {r["_airbyte_raw_id"] for r in rows.values()}

        # ---------------------------------------------------------- second read: only what is new
        # Calls made after the first read's newest call, up to its end_date, and calls after that
        # end_date, which the second read reaches because its end_date is a day later.
        before_end = generate_calls(30, newest + 1, END_MS, seed=12)
        after_end = generate_calls(20, END_MS + 1, LATER_END_MS, seed=13)
        new_calls = before_end + after_end
        assert all(c["time"] > newest for c in new_calls)
        sim.add_calls(OUT_MISSED, new_calls)
        sim.stats.reset()
        source.set_config(config_for(sim, end_date=LATER_END))

        second = source.read(cache=cache)
        assert second.processed_records == len(new_calls), "the second read should bring exactly the new calls"
        asked_from = min(b["from"] for b in sim.stats.bodies_for(OUT_MISSED))
        assert asked_from >= newest - 1, (
            f"the second read asked TeleCMI for calls from {asked_from}, before the first read's newest call "
            f"{newest}: PyAirbyte's state was not used"
        )
        rows = by_id(rows_of(cache))
        assert set(rows) == {c["cmiuid"] for c in first_calls + new_calls}
        written_again = {r["cmiuid"] for r in rows.values() if r["_airbyte_raw_id"] not in first_raw_ids}
        assert written_again == {c["cmiuid"] for c in new_calls}, "rows of the first read were rewritten"
        state = kept_state(cache)
        assert newest_in_state(state) == max(c["time"] for c in new_calls)
        summary.update(
            first_read_records=first.processed_records,
            second_read_records=second.processed_records,
            second_read_requests=len(sim.stats.bodies_for(OUT_MISSED)),
            rows_after_second_read=len(rows),
            state_after_second_read=state,
        )


def test_lookback_rereads_recent_calls_into_the_same_rows(tmp_path, loopback_only, summary) -> None:
    calls = generate_calls(150, START_MS, START_MS + 10 * DAY_MS, seed=21)
    newest = max(c["time"] for c in calls)
    recent = [c for c in calls if c["time"] > newest - DAY_MS]
    assert 0 < len(recent) < len(calls)

    with Simulator(calls={OUT_MISSED: calls}, tokens=[TOKEN]) as sim:
        source = telecmi_source(config_for(sim))
        cache = new_cache(tmp_path)
        source.read(cache=cache)
        assert len(by_id(rows_of(cache))) == len(calls)

        # An agent adds a note to the newest call after the first read. The simulator serves the
        # records it was given, so changing that record changes its later answers.
        target = max(calls, key=lambda c: c["time"])
        note = {"msg": "Called back, sorted", "date": newest + DAY_MS // 2, "agent": "101_1111112"}
        target["notes"] = [*(target.get("notes") or []), note]
        (served,) = [
            r for r in sim.records(OUT_MISSED, target["time"], target["time"]) if r["cmiuid"] == target["cmiuid"]
        ]
        assert served["notes"][-1] == note

        source.set_config(config_for(sim, lookback_window_days=1))
        again = source.read(cache=cache)
        assert again.processed_records == len(recent), "a one-day lookback should re-read the last day's calls"
        rows = by_id(rows_of(cache))
        assert len(rows) == len(calls), "re-read calls should replace their rows (merge on cmiuid), not add rows"
        assert as_json(rows[target["cmiuid"]]["notes"]) == target["notes"], "the note added later is missing"
        summary.update(lookback_rereads=again.processed_records, rows_after_lookback_read=len(rows))
