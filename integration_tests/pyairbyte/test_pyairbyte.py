"""PyAirbyte runs the connector into a DuckDB cache, then again incrementally from the state it kept.

Run by scripts/pyairbyte_test.sh in .venv-pyairbyte, which has PyAirbyte and this checkout
installed, so `source-telecmi` sits beside the venv's Python. As of PyAirbyte 0.71: its catalog
asks for incremental wherever a stream supports it; the cache keeps each stream's last state and
hands it back on the next `read()` with the same cache; the `auto` write strategy merges on the
primary key, so a call read twice stays one row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import airbyte as ab
import sqlalchemy as sa
from airbyte import constants as ab_constants
from airbyte.caches import DuckDBCache
from airbyte.exceptions import AirbyteConnectorValidationFailedError
from airbyte.shared.catalog_providers import CatalogProvider
from airbyte.strategies import WriteMethod, WriteStrategy

from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    APP_ID,
    COMMAND,
    DAY_MS,
    END_MS,
    START_MS,
    STREAM,
    calls_for,
    config_for,
    reread_from,
    simulator,
)
from integration_tests.telecmi_simulator import OUT_MISSED, generate_calls
from source_telecmi.state import finished_ranges

SCHEMA = "telecmi"
LATER_END, LATER_END_MS = "2026-01-02T00:00:00Z", 1767312000000


def telecmi_source(config: dict[str, Any], **options: Any) -> ab.Source:
    source = ab.get_source(
        "source-telecmi", local_executable=COMMAND, config=config, install_if_missing=False, **options
    )
    source.select_streams([STREAM])
    return source


def new_cache(tmp_path: Path) -> DuckDBCache:
    # The file is not named like the schema: DuckDB names the database after the file.
    return DuckDBCache(db_path=tmp_path / "pyairbyte_cache.duckdb", schema_name=SCHEMA)


def rows_by_id(cache: DuckDBCache) -> dict[str, dict[str, Any]]:
    """Rows by cmiuid, after checking there is exactly one row per cmiuid."""
    rows = [dict(row) for row in cache[STREAM]]
    assert len({r["cmiuid"] for r in rows}) == len(rows), "a call has more than one row"
    return {r["cmiuid"]: r for r in rows}


def notes(row: dict[str, Any]) -> Any:
    return json.loads(row["notes"]) if isinstance(row["notes"], str) else row["notes"]


def column_types(cache: DuckDBCache) -> dict[str, str]:
    query = sa.text(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"
    )
    with cache.get_sql_engine().connect() as connection:
        return dict(connection.execute(query, {"s": SCHEMA, "t": STREAM}).all())


def kept_state(cache: DuckDBCache) -> dict[str, Any]:
    """The stream state PyAirbyte kept in the cache for the next read."""
    message = cache.get_state_provider("source-telecmi").get_stream_state(STREAM)
    return json.loads(message.model_dump_json())["stream"]["stream_state"]


def newest_in_kept_state(cache: DuckDBCache) -> int:
    """The newest call of the stream state PyAirbyte kept in the cache for the next read."""
    ranges = finished_ranges(kept_state(cache))
    assert ranges and ranges[-1][2] is not None, f"no newest call in the kept state: {ranges}"
    return ranges[-1][2]


def test_pyairbyte_is_offline() -> None:
    assert ab_constants.AIRBYTE_OFFLINE_MODE is True, "AIRBYTE_OFFLINE_MODE=1 was not set before airbyte was imported"


def test_two_reads_into_duckdb_the_second_incremental(tmp_path: Path) -> None:
    first_calls = generate_calls(150, START_MS, START_MS + 20 * DAY_MS, seed=11)
    assert any(c.get("notes") for c in first_calls), "some calls should have notes"
    newest = max(c["time"] for c in first_calls)
    with simulator({OUT_MISSED: first_calls}) as sim:
        source = telecmi_source(config_for(sim))
        source.check()
        assert STREAM in source.get_available_streams()
        configured = source.get_configured_catalog()
        (stream,) = [s for s in configured.streams if s.stream.name == STREAM]
        assert stream.sync_mode.value == "incremental"
        assert stream.primary_key == [["cmiuid"]]
        assert CatalogProvider(configured).resolve_write_method(STREAM, WriteStrategy.AUTO) == WriteMethod.MERGE

        cache = new_cache(tmp_path)
        assert source.read(cache=cache).processed_records == len(first_calls)
        rows = rows_by_id(cache)
        assert set(rows) == {c["cmiuid"] for c in first_calls}
        assert column_types(cache)["to"] == "VARCHAR" and column_types(cache)["time"] == "BIGINT"
        for call in first_calls:
            row = rows[call["cmiuid"]]
            assert (row["time"], row["to"]) == (call["time"], str(call["to"]))
            if call.get("notes"):
                assert notes(row) == call["notes"], "a call's notes were not kept as sent"
        assert newest_in_kept_state(cache) == newest
        first_raw_ids = {r["_airbyte_raw_id"] for r in rows.values()}

        # Calls after the first read's newest call, before its end_date and after it (the second
        # read's end_date is a day later).
        new_calls = generate_calls(30, newest + 1, END_MS, seed=12) + generate_calls(
            20, END_MS + 1, LATER_END_MS, seed=13
        )
        sim.add_calls(OUT_MISSED, new_calls)
        sim.stats.reset()
        # The first read's last window (a page or two, holding the point after its newest call) is read again from
        # its start, so that its sync_audit row covers it whole.
        resume = reread_from(kept_state(cache))
        again = [c for c in first_calls if c["time"] >= resume]
        assert 1 <= len(again) <= 40 and resume > newest - DAY_MS
        source.set_config(config_for(sim, end_date=LATER_END))
        assert source.read(cache=cache).processed_records == len(again) + len(new_calls), (
            "the second read should bring the new calls, and the first read's last window again"
        )
        asked_from = min(b["from"] for b in sim.stats.bodies_for(OUT_MISSED))
        assert asked_from >= resume - 1, f"asked from {asked_from}, before {resume}: PyAirbyte's state was not used"
        rows = rows_by_id(cache)
        assert set(rows) == {c["cmiuid"] for c in first_calls + new_calls}
        rewritten = {i for i, r in rows.items() if r["_airbyte_raw_id"] not in first_raw_ids}
        assert rewritten == {c["cmiuid"] for c in again + new_calls}, "rows of the first read were rewritten"
        assert newest_in_kept_state(cache) == max(c["time"] for c in new_calls)


def test_lookback_rereads_recent_calls_into_the_same_rows(tmp_path: Path) -> None:
    calls = generate_calls(150, START_MS, START_MS + 10 * DAY_MS, seed=21)
    newest = max(c["time"] for c in calls)
    with simulator({OUT_MISSED: calls}) as sim:
        source = telecmi_source(config_for(sim, lookback_window_days=1))
        cache = new_cache(tmp_path)
        source.read(cache=cache)
        assert len(rows_by_id(cache)) == len(calls)
        # The last day, from the start of the first read's window holding its lookback point (at most a day before).
        resume = reread_from(kept_state(cache), DAY_MS)
        assert newest - 2 * DAY_MS <= resume <= newest - DAY_MS + 1
        recent = [c for c in calls if c["time"] >= resume]
        assert 0 < len(recent) < len(calls)

        # An agent adds a note to the newest call after the first read; the simulator serves the
        # records it was given, so the change shows in its later answers.
        target = max(calls, key=lambda c: c["time"])
        target["notes"] = [
            *(target.get("notes") or []),
            {"msg": "Called back", "date": newest + 1, "agent": "101_1111112"},
        ]
        source.set_config(config_for(sim, lookback_window_days=1))
        assert source.read(cache=cache).processed_records == len(recent), "one day of lookback re-reads the last day"
        rows = rows_by_id(cache)
        assert len(rows) == len(calls), "re-read calls should replace their rows (merge on cmiuid)"
        assert notes(rows[target["cmiuid"]]) == target["notes"], "the note added later is missing"


def test_a_config_saved_by_0_2_is_refused_naming_app_id_and_reads_with_app_id_as_a_string(tmp_path: Path) -> None:
    """PyAirbyte checks a config against the spec before a read starts the connector: 0.2's number for app_id is
    refused, naming the field and the type the spec asks for, whatever the connector would migrate. The docs tell
    PyAirbyte users to write it as a string; so written, it reads. PyAirbyte's check (not validated first) runs the
    connector, whose CONTROL message of the migrated config reaches `config_change_callback`."""
    calls = calls_for([ACCOUNT_ENDPOINTS[STREAM]], 30, seed=31)
    with simulator(calls) as sim:
        new = config_for(sim, "app")
        old = {**new, "credentials": {**new["credentials"], "app_id": APP_ID}}
        stored: list[dict[str, Any]] = []
        source = telecmi_source(old, config_change_callback=stored.append)
        try:
            source.read(cache=new_cache(tmp_path))
            raise AssertionError("PyAirbyte read a config the spec refuses")
        except AirbyteConnectorValidationFailedError as refused:
            context = refused.context or {}
            assert context["error_message"] == f"{APP_ID} is not of type 'string'", context["error_message"]
            assert list(context["error_path"])[-1] == "app_id" and context["error_instance"] == APP_ID

        source.check()
        # One per run of the connector with the old config (the read's discover, before its refusal, then check).
        assert stored and all(c == new for c in stored), "the CONTROL message holds the config with app_id a string"
        source.set_config(new)
        assert source.read(cache=new_cache(tmp_path)).processed_records == len(calls[ACCOUNT_ENDPOINTS[STREAM]])
