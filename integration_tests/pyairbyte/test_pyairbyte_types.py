"""What PyAirbyte's caches write is what the docs page's data type map says, and the balance history it keeps.

Every stream of app credentials is read into PyAirbyte's DuckDB cache and, where PostgreSQL is installed
(Debian's package: `initdb`, `pg_ctl`), into its PostgreSQL cache on a throwaway cluster listening on
127.0.0.1; each column the map names (a backticked field) must have the type of its row, in every table
that has it.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import airbyte as ab
import pytest
import sqlalchemy as sa
from airbyte.caches import DuckDBCache, PostgresCache

from integration_tests.harness import ACCOUNT_ENDPOINTS, COMMAND, END_MS, START_MS, calls_for, config_for, simulator
from integration_tests.telecmi_simulator import GLOBAL_VOICEMAIL, generate_voicemails

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "integrations" / "sources" / "telecmi.md"
SCHEMA = "telecmi"
COLUMNS = {"duckdb": 2, "postgresql": 3}  # the map's columns after its first two (type, fields)


def documented() -> dict[str, dict[str, str]]:
    """Per cache, field -> the type the data type map says it writes."""
    section = PAGE.read_text().split("\n## Data type map\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| :")][1:]
    found: dict[str, dict[str, str]] = {cache: {} for cache in COLUMNS}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for field in re.findall(r"`([a-z_]+)`", cells[1]):
            for cache, column in COLUMNS.items():
                found[cache][field] = cells[column].strip("`")
    assert found["duckdb"], "the docs page has no data type map"
    return found


def all_streams_read_into(cache: ab.caches.CacheBase) -> None:
    calls = calls_for(list(ACCOUNT_ENDPOINTS.values()), 40, seed=5)
    calls[GLOBAL_VOICEMAIL] = generate_voicemails(10, START_MS, END_MS - 1, seed=5)
    with simulator(calls) as sim:
        source = ab.get_source("source-telecmi", local_executable=COMMAND, config=config_for(sim, "app"))
        source.select_all_streams()
        source.read(cache=cache)


def written_types(cache: ab.caches.CacheBase) -> dict[str, set[str]]:
    """Field -> the types the cache's tables gave it (one, where the connector's one-type rule holds)."""
    query = sa.text("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :s")
    with cache.get_sql_engine().connect() as connection:
        rows = connection.execute(query, {"s": SCHEMA}).all()
    types: dict[str, set[str]] = {}
    for column, data_type in rows:
        types.setdefault(column, set()).add(data_type)
    return types


def assert_as_documented(cache: ab.caches.CacheBase, name: str) -> None:
    said, written = documented()[name], written_types(cache)
    assert not [f for f in said if f not in written], f"the map names fields no table of {name} has"
    wrong = {field: written[field] for field, kind in said.items() if written[field] != {kind}}
    assert wrong == {}, f"{name} writes other types than the docs' data type map says"


def test_pyairbyte_duckdb_cache_writes_what_the_data_type_map_says(tmp_path: Path) -> None:
    cache = DuckDBCache(db_path=tmp_path / "types.duckdb", schema_name=SCHEMA)
    all_streams_read_into(cache)
    assert_as_documented(cache, "duckdb")


def test_pyairbyte_keeps_the_balance_history_only_when_appending(tmp_path: Path) -> None:
    with simulator({}) as sim:
        source = ab.get_source("source-telecmi", local_executable=COMMAND, config=config_for(sim, "app"))
        source.select_streams(["account_balance"])
        replaced = DuckDBCache(db_path=tmp_path / "replaced.duckdb", schema_name=SCHEMA)
        appended = DuckDBCache(db_path=tmp_path / "appended.duckdb", schema_name=SCHEMA)
        for _ in range(2):
            source.read(cache=replaced)
            source.read(cache=appended, write_strategy="append")
    assert len(list(replaced["account_balance"])) == 1, "PyAirbyte's default replaces the table: the docs say so"
    assert len(list(appended["account_balance"])) == 2, "append keeps a row per read: the docs' history query"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_program(name: str) -> str | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(f.split("/")[-2]), reverse=True):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return shutil.which(name)


@pytest.fixture
def postgres() -> Iterator[int]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (as `postgres` when root); its port."""
    initdb, pg_ctl = pg_program("initdb"), pg_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed here (initdb, pg_ctl): the DuckDB cache alone is checked")
    folder, as_user = tempfile.mkdtemp(prefix="telecmi-pg-"), []
    if os.geteuid() == 0:  # the server refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    options = f"-k {folder} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c TimeZone=UTC"
    run = [*as_user, initdb, "-D", f"{folder}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    start = [*as_user, pg_ctl, "-D", f"{folder}/data", "-w", "-l", f"{folder}/log", "-o", options, "start"]
    subprocess.run(start, check=True, capture_output=True, timeout=120)
    try:
        yield port
    finally:
        stop = [*as_user, pg_ctl, "-D", f"{folder}/data", "-m", "immediate", "stop"]
        subprocess.run(stop, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_pyairbyte_postgres_cache_writes_what_the_data_type_map_says(postgres: int) -> None:
    cache = PostgresCache(
        host="127.0.0.1", port=postgres, username="postgres", password="unused", database="postgres", schema_name=SCHEMA
    )
    all_streams_read_into(cache)
    assert_as_documented(cache, "postgresql")
