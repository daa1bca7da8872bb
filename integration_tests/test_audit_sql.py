"""The docs' "Prove it is complete" SQL works as written, on a real sync loaded like a destination loads it.

A real sync: the `source-telecmi` command (through the harness) against the simulator with app
credentials, every stream the catalog has (`sync_audit` included, `recordings` with its files
staged), in full refresh. Its records are then written the way an Airbyte destination writes them:
one table per stream named as the stream, one column per top-level property of the stream's
discovered schema with the SQL type of its JSON type (integer BIGINT, number DOUBLE PRECISION,
boolean BOOLEAN, a date-time string TIMESTAMP WITH TIME ZONE, a date DATE, other strings VARCHAR,
objects and arrays as JSON text in a JSON or JSONB column), plus the destinations'
`_airbyte_raw_id`, `_airbyte_extracted_at` and `_airbyte_meta`.

On those tables the SQL blocks under the docs page's "Prove it is complete" heading run exactly as
written, taken from the Markdown by their position under that heading with test_docs.py's own
block reader: check 1 (every audited window landed) returns no row, also when two syncs are
appended (records twice, audit rows twice); check 2 (TeleCMI's daily totals beside the warehouse)
shows the differences the docs say the simulator gives, 0 on every day; check 3 (freshness)
returns a row per stream; check 4 (every recording landed) returns no row, with files delivered and
pending and calls without a file (not recorded, no file name). Then one record is deleted and check
1 returns exactly its window, with found = expected - 1; a recording's row is deleted, or made
metadata_only, and check 4 names exactly its call. Check 4 leaves out calls past the newest audited
`recordings` window (a read of the call streams without it), and after late calls names exactly the
files no sync emitted. The dbt `schema.yml` block must be YAML declaring the expected sources and
tests; the dbt singular tests run as plain SQL once `{{ source('telecmi', 'x') }}` (or
`{{ ref('x') }}`) is replaced by the table `x` and `{{ config(...) }}` is removed, both as written
and wrapped the way dbt wraps a test. Every other SQL block of the page runs in page order too.

The engines: DuckDB (the `duckdb` package) always; PostgreSQL too where its server programs are
installed (`initdb`, `pg_ctl`, `psql`; Debian's postgresql package): a throwaway cluster listening
only on a Unix socket in a temporary folder, run as the `postgres` user when the tests run as
root, queried through `psql`. Where PostgreSQL is not installed its cases are skipped and only
DuckDB proves the SQL; the queries keep to constructs both engines have (no DuckDB-only
functions), which the PostgreSQL cases prove wherever they run.

PyAirbyte's PostgresCache loads through pandas (`read_json`), which turns strings that look like
numbers into numbers (`106_1111112` becomes `1061111112.0`): the docs say so and give a join that
works anyway. The last test loads the tables that way, through pandas' own `read_json`, and shows
the plain join losing agents and the docs' join finding them all. (The same happens with PyAirbyte
0.71's PostgresCache itself, checked by hand; PyAirbyte is not in this venv.)
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    END_MS,
    START_MS,
    Connector,
    Run,
    calls_for,
    config_for,
    configured,
    last_states,
    simulator,
)
from integration_tests.telecmi_simulator import (
    GLOBAL_VOICEMAIL,
    generate_calls,
    generate_voicemails,
    make_call,
    make_voicemail,
)
from integration_tests.test_docs import DOCS, Block, blocks

PAGE = DOCS[1]
SECTION = "## Prove it is complete"
CALL_STREAMS = tuple(ACCOUNT_ENDPOINTS)
WINDOWED = {**{stream: "cmiuid" for stream in CALL_STREAMS}, "voicemails": "voicename"}
RECORDINGS = "recordings"
AUDITED = {**WINDOWED, RECORDINGS: "file"}  # every stream sync_audit has rows of, by its key
RECORDED = ("incoming_answered_calls", "outgoing_answered_calls")  # the call lists whose calls may have a file
DAY_MS = 86_400_000
NULL = "<null>"  # how psql is told to print a null


# ------------------------------------------------------------------------- the docs' blocks


def section_blocks(heading: str = SECTION) -> list[Block]:
    """The code blocks under `heading` (to the next heading of its level or higher), as test_docs.py reads them."""
    headings, fenced = [], False
    for number, line in enumerate(PAGE.read_text().splitlines(), 1):
        fenced ^= line.lstrip().startswith("```")
        if not fenced and line.startswith("#"):
            headings.append((number, line.strip()))
    (start,) = [number for number, line in headings if line == heading]
    level = len(heading.split(" ")[0])
    end = next((n for n, line in headings if n > start and len(line.split(" ")[0]) <= level), math.inf)
    return [b for b in blocks(PAGE) if start < int(b.where.rsplit(":", 1)[1]) < end]


def section() -> dict[str, Any]:
    """The section's blocks by their position: four checks, the dbt schema.yml, the singular tests of checks 1, 2, 4."""
    found = section_blocks()
    assert [b.language for b in found] == ["sql", "sql", "sql", "sql", "yaml", "sql", "sql", "sql"], [
        (b.where, b.language) for b in found
    ]
    check_1, check_2, check_3, check_4, schema_yml, singular_1, singular_2, singular_4 = found
    return {
        "check_1": check_1,
        "check_2": check_2,
        "check_3": check_3,
        "check_4": check_4,
        "schema_yml": schema_yml,
        "singular": [singular_1, singular_2, singular_4],
    }


JINJA_SOURCE = re.compile(r"\{\{\s*source\(\s*'telecmi'\s*,\s*'(\w+)'\s*\)\s*\}\}")
JINJA_REF = re.compile(r"\{\{\s*ref\(\s*'(\w+)'\s*\)\s*\}\}")
JINJA_CONFIG = re.compile(r"\{\{\s*config\([^}]*\)\s*\}\}")


def plain_sql(dbt_sql: str) -> str:
    """A dbt singular test as plain SQL: config() removed, each source()/ref() replaced by its table's name."""
    sql = JINJA_REF.sub(r"\1", JINJA_SOURCE.sub(r"\1", JINJA_CONFIG.sub("", dbt_sql))).strip()
    assert "{{" not in sql and "{%" not in sql, f"Jinja this test cannot replace: {sql[:300]}"
    return sql


def as_dbt_runs_it(test_sql: str) -> str:
    """A singular test wrapped as dbt runs it (dbt counts its rows; a trailing semicolon would break it)."""
    assert not test_sql.rstrip().endswith(";"), "a dbt test must not end with a semicolon"
    return f"select count(*) as failures from (\n{test_sql}\n) dbt_internal_test"


# ------------------------------------------------------------------------- the real sync


@dataclass
class Sync:
    """The streams discover declared (name -> JSON schema) and the runs of one or more full-refresh reads."""

    schemas: dict[str, dict[str, Any]]
    runs: list[Run]
    late_files: list[str]  # the files TeleCMI had not published at the first read: pending there, then delivered
    metadata_only: Run  # a read like the first, the files not asked for
    calls_only: Run  # a read to the next day without `recordings`: calls no recordings read has looked at

    def records(self, stream: str, runs: int = 1) -> list[dict[str, Any]]:
        return [r for run in self.runs[:runs] for r in run.records_of(stream)]

    def audit(self) -> list[dict[str, Any]]:
        return self.runs[0].records_of("sync_audit")


def file_of(stream: str, record: dict[str, Any]) -> str | None:
    """The file a call or voicemail has, read as the connector reads it (`record` true in any case, a name not blank)."""
    flag, name = record.get("record"), record.get("filename")
    if stream == "voicemails":
        flag, name = True, record.get("voicename")
    recorded = flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")
    return name if recorded and isinstance(name, str) and name.strip() else None


def odd_flags(calls: list[dict[str, Any]]) -> list[str]:
    """Some answered calls as TeleCMI also sends them: `record` a JSON true or false, "false", " True "; a filename
    empty, blank or missing. Returns the files of the " True " calls (the simulator serves only "true" and true)."""
    served = []
    for i, call in enumerate(calls):
        odd = i % 40
        if odd == 3:
            call["record"] = True
        elif odd == 8:
            call["record"] = " True "
            served.append(call["filename"])
        elif odd == 13:
            call["record"] = "false"
        elif odd == 18:
            call["record"] = False
        elif odd == 23:
            call["filename"] = ""
        elif odd == 28:
            call["filename"] = "  "
        elif odd == 33:
            call.pop("filename")
    return served


@pytest.fixture(scope="module")
def sync(tmp_path_factory: pytest.TempPathFactory) -> Sync:
    """Two full-refresh reads of every stream, app credentials, 300 calls per call list and 120 voicemails.

    Each list also has a record on the first and on the last millisecond of the sync's range, the
    first window's start and the last window's end, where an exclusive bound would lose them.
    The recordings' files are asked for (`include_files`, a staging folder): some answered calls
    are not recorded or have no file name (`odd_flags`), and one file in 40 is not published yet
    when the first read asks for it (pending there, delivered by the second). A third read does not
    ask for the files. A fourth, to the next day, leaves `recordings` out: its answered calls and
    voicemails have files no read looked for.
    """
    calls = calls_for(ACCOUNT_ENDPOINTS.values(), n=300, seed=31)
    served = [name for stream in RECORDED for name in odd_flags(calls[ACCOUNT_ENDPOINTS[stream]])]
    for path, records in calls.items():
        records += [make_call(START_MS, path), make_call(END_MS, path)]
    for call in calls[ACCOUNT_ENDPOINTS["incoming_missed_calls"]][::25]:
        call.pop("agent", None)  # TeleCMI does not send the agent of every call
    voicemails = generate_voicemails(120, START_MS, END_MS - 1, seed=32) + [make_voicemail(START_MS)]
    voicemails = {GLOBAL_VOICEMAIL: [*voicemails, make_voicemail(END_MS)]}
    held = {
        **{(s, c["cmiuid"]): file_of(s, c) for s in RECORDED for c in calls[ACCOUNT_ENDPOINTS[s]]},
        **{("voicemails", v["voicename"]): v["voicename"] for v in voicemails[GLOBAL_VOICEMAIL]},
    }
    files = sorted(name for name in held.values() if name)
    late_files = files[::40]
    work = tmp_path_factory.mktemp("audit-sync")
    staging = work / "staging"
    staging.mkdir()
    connector = Connector(work, env={"AIRBYTE_STAGING_DIRECTORY": str(staging)})
    unpublished = {name: 1 for name in late_files}  # the first request for it answers 502 "not yet"
    with simulator(calls, voicemails=voicemails, recordings=served, unpublished=unpublished) as sim:
        cfg = config_for(sim, "app")
        streams = connector.run("discover", cfg).ok().streams
        catalog = configured(streams, "full_refresh")
        for entry in catalog["streams"]:
            entry["include_files"] = entry["stream"]["name"] == RECORDINGS
        runs = [connector.run("read", cfg, catalog, timeout=300).ok() for _ in range(2)]
        no_files = {"streams": [{**e, "include_files": False} for e in catalog["streams"]]}
        metadata_only = connector.run("read", cfg, no_files, timeout=300).ok()
        for i, path in enumerate([*(ACCOUNT_ENDPOINTS[s] for s in RECORDED), GLOBAL_VOICEMAIL]):
            if path == GLOBAL_VOICEMAIL:
                sim.add_calls(path, generate_voicemails(5, END_MS + 1, SECOND_END_MS - 1, seed=33))
            else:
                sim.add_calls(path, generate_calls(10, END_MS + 1, SECOND_END_MS - 1, seed=34 + i, endpoint=path))
        calls_only = {"streams": [e for e in catalog["streams"] if e["stream"]["name"] != RECORDINGS]}
        next_day = connector.run("read", {**cfg, "end_date": SECOND_END}, calls_only, timeout=300).ok()
    names = {s["name"] for s in streams}
    assert {*AUDITED, "users", "daily_call_totals", "account_balance", "sync_audit"} <= names, names
    for stream, key in AUDITED.items():
        rows = [r for r in runs[0].records_of("sync_audit") if r["stream"] == stream]
        assert len(rows) > 2, f"{stream}: {len(rows)} windows; the deletion test needs a window in the middle"
        assert sum(r["records_emitted"] for r in rows) == len({r[key] for r in runs[0].records_of(stream)})
        times = {r["time"] for r in runs[0].records_of(stream)}
        edges = (min(r["window_start"] for r in rows), max(r["window_end"] for r in rows))
        assert set(edges) <= times, f"{stream}: no record on the edges {edges} of its windows"
    assert len(files) < len(held), "every answered call has a file: the odd flags are gone"
    for run, pending in zip(runs, (late_files, []), strict=True):
        status = {r["file"]: r["status"] for r in run.records_of(RECORDINGS)}
        assert sorted(status) == files, "not one record per file"
        assert sorted(f for f, s in status.items() if s != "downloaded") == pending, Counter(status.values())
        assert {s for s in status.values() if s != "downloaded"} <= {"pending"}
        audit = [r for r in run.records_of("sync_audit") if r["stream"] == RECORDINGS]
        assert sum(r["files_pending"] for r in audit) == len(pending)
        assert sum(r["files_downloaded"] for r in audit) == len(files) - len(pending)
    assert not next_day.records_of(RECORDINGS) and {r["stream"] for r in next_day.records_of("sync_audit")} == {
        *WINDOWED
    }
    assert {r["status"] for r in metadata_only.records_of(RECORDINGS)} == {"metadata_only"}
    assert sorted(r["file"] for r in metadata_only.records_of(RECORDINGS)) == files
    return Sync({s["name"]: s["json_schema"] for s in streams}, runs, late_files, metadata_only, next_day)


# ------------------------------------------------------------------------- loading like a destination


def column_type(node: dict[str, Any], json_type: str) -> str:
    declared = node.get("type")
    types = [declared] if isinstance(declared, str) else [t for t in declared or [] if t != "null"]
    kind = types[0] if types else ("object" if "properties" in node else "")
    if kind == "string":
        return {"date-time": "TIMESTAMP WITH TIME ZONE", "date": "DATE"}.get(node.get("format"), "VARCHAR")
    return {"integer": "BIGINT", "number": "DOUBLE PRECISION", "boolean": "BOOLEAN"}.get(kind, json_type)


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "NULL"
    text = value if isinstance(value, str) else json.dumps(value)
    return "'" + text.replace("'", "''") + "'"


def pandas_typed(rows: list[dict[str, Any]], string_columns: list[str]) -> list[dict[str, Any]]:
    """Rows as PyAirbyte's PostgresCache inserts them: read back by pandas' `read_json`, which infers types.

    Into a text column, a value pandas made a number lands as that number's text: 1011111112, or
    1061111112.0 in a column that also has nulls (the text PostgreSQL gives a float inserted there).
    """
    import pandas as pd

    if not rows:
        return rows
    frame = pd.read_json(io.StringIO("\n".join(json.dumps(r) for r in rows)), lines=True)
    out = [dict(r) for r in rows]
    for column in string_columns:
        if column not in frame:
            continue
        for row, value in zip(out, frame[column].tolist(), strict=True):
            if row.get(column) is not None:
                row[column] = None if isinstance(value, float) and math.isnan(value) else str(value)
    return out


def load_script(sync: Sync, json_type: str, runs: int = 1, mangled: bool = False) -> str:
    """CREATE TABLE and INSERT statements writing the sync's records as a destination would."""
    return tables_script(sync.schemas, [run.of("RECORD") for run in sync.runs[:runs]], json_type, mangled=mangled)


def tables_script(
    schemas: dict[str, dict[str, Any]],
    runs: list[list[dict[str, Any]]],
    json_type: str,
    mangled: bool = False,
    keys: dict[str, list[str]] | None = None,
) -> str:
    """CREATE TABLE and INSERT statements writing the RECORD messages of `runs` (in order) into one table per stream.

    With `keys` (stream -> primary key), a stream that has one is loaded as Append + Deduped loads it: the
    latest record of each primary key (the last run's, the last one of that run).
    """
    statements = []
    for stream, schema in schemas.items():
        properties = schema.get("properties") or {}
        types = {name: column_type(node, json_type) for name, node in properties.items()}
        meta = {"_airbyte_raw_id": "VARCHAR", "_airbyte_extracted_at": "TIMESTAMP WITH TIME ZONE"}
        columns = {**types, **meta, "_airbyte_meta": json_type}
        statements.append(
            f"CREATE TABLE {stream} (" + ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns.items()) + ");"
        )
        messages = [m["record"] for run in runs for m in run if m["record"]["stream"] == stream]
        key = (keys or {}).get(stream)
        if key:
            latest = {tuple(m["data"].get(k) for k in key): m for m in messages}
            messages = list(latest.values())
        rows = [{name: m["data"].get(name) for name in properties} for m in messages]
        if mangled:
            rows = pandas_typed(rows, [name for name, sql_type in types.items() if sql_type == "VARCHAR"])
        values = []
        for message, row in zip(messages, rows, strict=True):
            extracted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(message["emitted_at"] / 1000))
            cells = [literal(row[name]) for name in properties]
            values.append("(" + ", ".join([*cells, literal(str(uuid.uuid4())), literal(extracted), "'{}'"]) + ")")
        for chunk in range(0, len(values), 500):
            statements.append(f"INSERT INTO {stream} VALUES\n" + ",\n".join(values[chunk : chunk + 500]) + ";")
    return "\n".join(statements)


# ------------------------------------------------------------------------- the engines


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[str | None, ...]]  # every value as text, None for null

    def dicts(self) -> list[dict[str, str | None]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class DuckDB:
    name = "duckdb"
    json_type = "JSON"

    def __init__(self) -> None:
        import duckdb

        self._connection = duckdb.connect()

    def script(self, sql: str) -> None:
        self._connection.execute(sql)

    def query(self, sql: str) -> Result:
        cursor = self._connection.execute(sql)
        if cursor.description is None:
            return Result([], [])
        columns = [d[0] for d in cursor.description]
        return Result(columns, [tuple(as_text(v) for v in row) for row in cursor.fetchall()])

    def close(self) -> None:
        self._connection.close()


def pg_program(name: str) -> str | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(f.split("/")[-2]), reverse=True):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return shutil.which(name)


class PostgresServer:
    """A throwaway PostgreSQL cluster on a Unix socket in a temporary folder (as `postgres` when root)."""

    def __init__(self) -> None:
        programs = {name: pg_program(name) for name in ("initdb", "pg_ctl", "psql")}
        missing = [name for name, path in programs.items() if path is None]
        if missing:
            pytest.skip(f"PostgreSQL is not installed here ({', '.join(missing)} not found): DuckDB alone runs the SQL")
        self.initdb, self.pg_ctl, self.psql_program = (programs[n] for n in ("initdb", "pg_ctl", "psql"))
        self.as_user: list[str] = []
        self.folder = tempfile.mkdtemp(prefix="telecmi-pg-", dir="/tmp")
        if os.geteuid() == 0:  # the server refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a postgres user to run the PostgreSQL server as")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = f"{self.folder}/data"
        self._run([self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
        self._run(
            [
                self.pg_ctl,
                "-D",
                self.data,
                "-w",
                "-l",
                f"{self.folder}/log",
                "-o",
                f"-k {self.folder} -c listen_addresses='' -c fsync=off -c TimeZone=UTC",
                "start",
            ]
        )

    def _run(self, command: list[str]) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}"

    def psql(self, sql: str, schema: str, csv_out: bool = False) -> str:
        args = [
            self.psql_program,
            "-X",
            "-q",
            "-h",
            self.folder,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        if csv_out:
            args += ["--csv", "-P", f"null={NULL}"]
        env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
        done = subprocess.run(args, input=sql, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"PostgreSQL: {done.stderr[-2000:]}\nfor:\n{sql[:1500]}"
        return done.stdout

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


class Postgres:
    name = "postgresql"
    json_type = "JSONB"

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._schema = f"t_{uuid.uuid4().hex[:12]}"
        server.psql(f"CREATE SCHEMA {self._schema};", "public")

    def script(self, sql: str) -> None:
        self._server.psql(sql, self._schema)

    def query(self, sql: str) -> Result:
        out = self._server.psql(sql, self._schema, csv_out=True)
        lines = list(csv.reader(io.StringIO(out)))
        if not lines:
            return Result([], [])
        rows = [tuple(None if v == NULL else v for v in line) for line in lines[1:]]
        return Result(lines[0], rows)

    def close(self) -> None:
        self._server.psql(f"DROP SCHEMA {self._schema} CASCADE;", "public")


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[DuckDB | Postgres]:
    """An empty warehouse of each engine."""
    engine = DuckDB() if request.param == "duckdb" else Postgres(request.getfixturevalue("postgres_server"))
    try:
        yield engine
    finally:
        engine.close()


def loaded(warehouse: DuckDB | Postgres, sync: Sync, runs: int = 1, mangled: bool = False) -> DuckDB | Postgres:
    warehouse.script(load_script(sync, warehouse.json_type, runs, mangled))
    return warehouse


def as_ints(row: dict[str, str | None], *skip: str) -> dict[str, Any]:
    return {k: (v if k in skip or v is None else int(float(v))) for k, v in row.items()}


# ------------------------------------------------------------------------- the tests


def test_the_section_holds_the_blocks_this_test_runs() -> None:
    """Check 1 returns no row when all is well: test_docs cannot run it, this test does (and says so)."""
    found = section()
    for block in (found["check_1"], found["check_4"], *found["singular"]):
        assert block.skip and "test_audit_sql.py" in block.skip, f"{block.where}: not marked as run here"
    for block in (found["check_2"], found["check_3"]):
        assert not block.skip, f"{block.where}: test_docs can run it on PyAirbyte's cache, leave it unmarked"
    assert "{{" not in "".join(found[f"check_{n}"].text for n in (1, 2, 3, 4))
    landed = found["check_1"].text
    assert """UNION SELECT 'recordings', file, "time" FROM recordings""" in landed, "check 1 leaves out recordings"
    as_written = found["check_4"].text.rstrip().removesuffix(";").rsplit("\nORDER BY ", 1)[0]
    assert plain_sql(found["singular"][2].text) == as_written, "check 4's dbt test is not check 4"


def test_check_1_returns_no_row_when_every_window_landed(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    loaded(warehouse, sync)
    assert warehouse.query("SELECT COUNT(*) FROM sync_audit").rows == [(str(len(sync.audit())),)]
    statuses = warehouse.query("SELECT DISTINCT status FROM recordings ORDER BY status").rows
    assert statuses == [("downloaded",), ("pending",)], "the recordings, files delivered and pending, are in"
    result = warehouse.query(section()["check_1"].text)
    assert result.columns == ["stream", "window_start", "window_end", "expected", "found"]
    assert result.rows == []


def test_checks_1_and_2_count_each_record_once_when_syncs_append(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    """Two syncs appended: every record twice, two audit rows per window, two readings of each day's totals."""
    loaded(warehouse, sync, runs=2)
    calls = len(sync.records("incoming_answered_calls"))
    assert warehouse.query("SELECT COUNT(*) FROM incoming_answered_calls").rows == [(str(2 * calls),)]
    # A file pending in the first sync and delivered by the second has a row of each.
    late = ", ".join(literal(f) for f in sync.late_files)
    rows = warehouse.query(f"SELECT status, COUNT(*) FROM recordings WHERE file IN ({late}) GROUP BY status").rows
    assert sorted(rows) == [("downloaded", str(len(sync.late_files))), ("pending", str(len(sync.late_files)))]
    assert warehouse.query(section()["check_1"].text).rows == []
    assert warehouse.query(section()["check_4"].text).rows == []
    days = [as_ints(row, "day") for row in warehouse.query(section()["check_2"].text).dicts()]
    assert [d["day"] for d in days] == sorted(t["day"] for t in sync.records("daily_call_totals")), "a row per day"
    for day in days:
        assert day["answered_difference"] == day["missed_difference"] == day["total_difference"] == 0, day


@pytest.mark.parametrize("stream", ["outgoing_answered_calls", "voicemails", RECORDINGS])
def test_check_1_names_the_window_of_a_deleted_record(warehouse: DuckDB | Postgres, sync: Sync, stream: str) -> None:
    loaded(warehouse, sync)
    windows = sorted((r for r in sync.audit() if r["stream"] == stream), key=lambda r: r["window_start"])
    window = max(windows[1:-1], key=lambda r: r["records_emitted"])  # one in the middle
    key = AUDITED[stream]
    victim = next(r for r in sync.records(stream) if window["window_start"] <= r["time"] <= window["window_end"])
    warehouse.script(f"DELETE FROM {stream} WHERE {key} = {literal(victim[key])};")

    rows = warehouse.query(section()["check_1"].text).rows
    expected = window["records_emitted"]
    assert rows == [(stream, str(window["window_start"]), str(window["window_end"]), str(expected), str(expected - 1))]


def test_check_2_differences_are_what_the_docs_say_on_the_simulator(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    """The simulator counts both directions: every difference 0; the outgoing columns are not 0 (so they tell)."""
    text = PAGE.read_text()
    assert "every difference is 0 on every day" in text and "TeleCMI does not document which lists" in text
    loaded(warehouse, sync)
    result = warehouse.query(section()["check_2"].text)
    days = [as_ints(row, "day") for row in result.dicts()]
    totals = sync.records("daily_call_totals")
    assert [d["day"] for d in days] == sorted(t["day"] for t in totals)
    for day in days:
        assert day["answered_difference"] == day["missed_difference"] == day["total_difference"] == 0, day
        assert day["telecmi_answered"] == day["incoming_answered"] + day["outgoing_answered"], day
        assert day["telecmi_missed"] == day["incoming_missed"] + day["outgoing_missed"], day
    assert sum(d["telecmi_total"] for d in days) == sum(len(sync.records(s)) for s in CALL_STREAMS)
    assert sum(d["outgoing_answered"] for d in days) and sum(d["outgoing_missed"] for d in days), (
        "an incoming-only reading of the totals must differ from the simulator's"
    )


def test_check_3_returns_a_row_per_stream(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    loaded(warehouse, sync)
    rows = [
        as_ints(r, "stream", "newest_started_at", "freshness")
        for r in warehouse.query(section()["check_3"].text).dicts()
    ]
    assert [r["stream"] for r in rows] == sorted(WINDOWED)
    now_ms = time.time() * 1000
    for row in rows:
        newest = max(r["time"] for r in sync.records(row["stream"]))
        assert abs(row["hours_old"] - (now_ms - newest) / 3_600_000) <= 1, row
        assert row["freshness"] == ("fresh" if now_ms - newest <= row["max_hours"] * 3_600_000 else "stale"), row


CHECK_4_COLUMNS = ["call_stream", "call_key", "time", "file", "recording_status"]


def check_4_queries() -> list[str]:
    """Check 4 as written, and its dbt test as plain SQL."""
    return [section()["check_4"].text, plain_sql(section()["singular"][2].text)]


def test_check_4_returns_no_row_when_every_file_landed(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    """Files delivered and files pending: no row. Calls TeleCMI did not record, or sent without a file name (empty,
    blank, missing), have no file and are not named; " True " and a JSON true are recorded (as the connector reads)."""
    loaded(warehouse, sync)
    flags = warehouse.query(
        "SELECT record, filename FROM incoming_answered_calls UNION SELECT record, filename FROM outgoing_answered_calls"
    ).rows
    assert {" True ", "true", "false"} <= {f for f, _ in flags}, "the odd flags are not in the tables"
    assert {None, "", "  "} <= {n for f, n in flags if f == "true"}, "no recorded call without a file name"
    pending = warehouse.query("SELECT COUNT(*) FROM recordings WHERE status = 'pending'").rows
    assert pending == [(str(len(sync.late_files)),)]
    for query in check_4_queries():
        result = warehouse.query(query)
        assert result.columns == CHECK_4_COLUMNS
        assert result.rows == []
    assert warehouse.query(as_dbt_runs_it(check_4_queries()[1])).rows == [("0",)]


@pytest.mark.parametrize("how", ["deleted", "metadata_only"])
@pytest.mark.parametrize("stream", [*RECORDED, "voicemails"])
def test_check_4_names_a_call_whose_file_has_no_row(
    warehouse: DuckDB | Postgres, sync: Sync, stream: str, how: str
) -> None:
    """Its file's row deleted, or saying metadata_only: check 4 and its dbt test name that call, and it alone.

    The incoming call is one TeleCMI marked " True ", the outgoing one a file pending in the sync."""
    loaded(warehouse, sync)
    with_file = [r for r in sync.records(stream) if file_of(stream, r)]
    if stream == "incoming_answered_calls":
        victim = next(r for r in with_file if r.get("record") == " True ")
    elif stream == "outgoing_answered_calls":
        victim = next(r for r in with_file if file_of(stream, r) in sync.late_files)
    else:
        victim = with_file[len(with_file) // 2]
    file = file_of(stream, victim)
    if how == "deleted":
        warehouse.script(f"DELETE FROM recordings WHERE file = {literal(file)};")
    else:
        warehouse.script(f"UPDATE recordings SET status = 'metadata_only' WHERE file = {literal(file)};")

    status = None if how == "deleted" else "metadata_only"
    named = [(stream, victim[WINDOWED[stream]], str(victim["time"]), file, status)]
    for query in check_4_queries():
        assert warehouse.query(query).rows == named
    assert warehouse.query(as_dbt_runs_it(check_4_queries()[1])).rows == [("1",)]


def test_check_4_leaves_out_calls_read_after_the_newest_recordings_window(
    warehouse: DuckDB | Postgres, sync: Sync
) -> None:
    """A later read of the call streams without `recordings` (a sync stopped between them): the calls it added have
    files no read looked for. Check 4 leaves them out; without its limit it would name every one of them."""
    warehouse.script(
        tables_script(sync.schemas, [sync.runs[0].of("RECORD"), sync.calls_only.of("RECORD")], warehouse.json_type)
    )
    until = max(r["window_end"] for r in sync.audit() if r["stream"] == RECORDINGS)
    after = sorted(
        (s, r[WINDOWED[s]], str(r["time"]), file_of(s, r), None)
        for s in (*RECORDED, "voicemails")
        for r in sync.calls_only.records_of(s)
        if r["time"] > until and file_of(s, r)
    )
    assert len(after) >= 20, after
    for query in check_4_queries():
        assert warehouse.query(query).rows == []
        limit = """WHERE f."time" <= a.audited_until\n  AND """
        assert query.count(limit) == 1, "check 4's limit is not where this test expects it"
        assert sorted(warehouse.query(query.replace(limit, "WHERE ")).rows) == after

    # A call on the newest window's last millisecond is checked; one a millisecond later is not.
    warehouse.script(
        'INSERT INTO outgoing_answered_calls (cmiuid, "time", record, filename) VALUES '
        f"('on-the-end', {until}, 'true', 'on-the-end.mp3'), ('past-the-end', {until + 1}, 'true', 'past-the-end.mp3');"
    )
    for query in check_4_queries():
        assert warehouse.query(query).rows == [
            ("outgoing_answered_calls", "on-the-end", str(until), "on-the-end.mp3", None)
        ]


def test_without_files_check_1_counts_the_recordings_and_check_4_names_them_all(
    warehouse: DuckDB | Postgres, sync: Sync
) -> None:
    """A sync that did not ask for the files: its recordings rows (metadata_only) are what its audit counts, so
    check 1 holds; check 4, which needs the files, names every call and voicemail that has one."""
    warehouse.script(tables_script(sync.schemas, [sync.metadata_only.of("RECORD")], warehouse.json_type))
    assert warehouse.query(section()["check_1"].text).rows == []
    every = sorted(
        (s, r[WINDOWED[s]], str(r["time"]), file_of(s, r), "metadata_only")
        for s in (*RECORDED, "voicemails")
        for r in sync.metadata_only.records_of(s)
        if file_of(s, r)
    )
    assert len(every) == len(sync.metadata_only.records_of(RECORDINGS))
    for query in check_4_queries():
        assert sorted(warehouse.query(query).rows) == every


def test_dbt_schema_yml_declares_sources_freshness_and_tests(sync: Sync) -> None:
    schema = yaml.safe_load(section()["schema_yml"].text)
    assert schema["version"] == 2
    (source,) = schema["sources"]
    assert source["name"] == "telecmi"
    assert source["config"]["loaded_at_field"] == "started_at"
    assert set(source["config"]["freshness"]) == {"warn_after", "error_after"}
    tables = {t["name"]: t for t in source["tables"]}
    assert set(tables) == set(sync.schemas), "one source table per stream"
    for name, table in tables.items():
        config = table.get("config") or {}
        loaded_at = config.get("loaded_at_field", source["config"]["loaded_at_field"])
        if config.get("freshness", source["config"]["freshness"]) is not None:
            assert loaded_at in sync.schemas[name]["properties"], f"{name}: freshness on a missing column {loaded_at}"
        tested = {c["name"]: c.get("data_tests") for c in table.get("columns") or []}
        assert set(tested) <= set(sync.schemas[name]["properties"]), name
    for stream, key in AUDITED.items():
        assert tables[stream]["columns"][0] == {"name": key, "data_tests": ["not_null"]}
        assert {"name": "time", "data_tests": ["not_null"]} in tables[stream]["columns"]
    (verdict,) = [c for c in tables["sync_audit"]["columns"] if c["name"] == "verdict"]
    (accepted,) = verdict["data_tests"]
    assert accepted["accepted_values"]["arguments"]["values"] == ["complete"]
    assert accepted["accepted_values"]["config"]["severity"] == "warn"


def test_dbt_singular_tests_run_as_plain_sql(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    """With source() replaced by the table and config() removed: no failure, then a deleted call fails checks 1, 2."""
    landed, totals, recorded = (plain_sql(b.text) for b in section()["singular"])
    loaded(warehouse, sync)
    for test_sql in (landed, totals, recorded):
        assert warehouse.query(test_sql).rows == []
        assert warehouse.query(as_dbt_runs_it(test_sql)).rows == [("0",)]

    last_day = max(t["day_start"] for t in sync.records("daily_call_totals"))
    stream = "outgoing_answered_calls"
    victim = next(r for r in sync.records(stream) if r["time"] < last_day - DAY_MS)
    warehouse.script(f"DELETE FROM {stream} WHERE cmiuid = {literal(victim['cmiuid'])};")
    (window,) = [
        r for r in sync.audit() if r["stream"] == stream and r["window_start"] <= victim["time"] <= r["window_end"]
    ]
    expected = window["records_emitted"]
    short = (stream, str(window["window_start"]), str(window["window_end"]), str(expected), str(expected - 1))
    assert warehouse.query(landed).rows == [short]
    (day,) = [as_ints(r, "day") for r in warehouse.query(totals).dicts()]
    assert day["day"] == time.strftime("%Y-%m-%d", time.gmtime(victim["time"] // 1000))
    assert day["warehouse_answered"] == day["telecmi_answered"] - 1 and day["warehouse_missed"] == day["telecmi_missed"]
    assert warehouse.query(as_dbt_runs_it(totals)).rows == [("1",)]
    assert warehouse.query(recorded).rows == [], "a call gone with its file's row in place is no missing file"


def test_every_sql_block_of_the_page_runs(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    """In page order (the calls view before the queries on it); all but check 1 return rows on this sync."""
    loaded(warehouse, sync)
    empty = {section()[check].where for check in ("check_1", "check_4")}  # no row when all is well
    for block in [b for b in blocks(PAGE) if b.language == "sql" and "{{" not in b.text]:
        result = warehouse.query(block.text)
        if block.text.lstrip().upper().startswith("CREATE"):
            continue
        assert bool(result.rows) == (block.where not in empty), f"{block.where}: {len(result.rows)} rows"


def test_the_users_join_survives_pyairbyte_postgres_typing(warehouse: DuckDB | Postgres, sync: Sync) -> None:
    """Tables loaded through pandas' read_json: the plain join loses agents, the docs' join finds every one."""
    blocks_here = section_blocks("### PostgreSQL through PyAirbyte")
    (robust,) = [b for b in blocks_here if b.language == "sql"]
    (view,) = [b for b in section_blocks("### All calls in one table") if b.text.lstrip().startswith("CREATE")]
    loaded(warehouse, sync, mangled=True)
    ids = [r[0] for r in warehouse.query("SELECT agent_id FROM users ORDER BY agent_id").rows]
    assert ids and not any("_" in i for i in ids), f"pandas should have made the user ids numbers: {ids[:3]}"
    agents = [r[0] for r in warehouse.query("SELECT agent FROM incoming_missed_calls WHERE agent IS NOT NULL").rows]
    assert agents and all(a.endswith(".0") for a in agents), f"a column with nulls should be floats: {agents[:3]}"
    warehouse.script(view.text)

    plain = warehouse.query(
        "SELECT COUNT(*) FROM calls AS c LEFT JOIN users AS u ON u.agent_id = c.agent "
        "WHERE c.agent IS NOT NULL AND u.agent_id IS NULL"
    )
    assert int(plain.rows[0][0]) > 0, "the plain join should lose the agents of the float column"
    rows = [as_ints(r, "agent_id", "first_name", "last_name") for r in warehouse.query(robust.text).dicts()]
    with_agent = sum(1 for s in CALL_STREAMS for r in sync.records(s) if r.get("agent"))
    assert sum(r["calls"] for r in rows) == with_agent
    assert all(r["agent_id"] is not None and r["first_name"] for r in rows), rows
    assert len(rows) == len({r["agent"] for s in CALL_STREAMS for r in sync.records(s) if r.get("agent")})


# ------------------------------------------------------------------------- late calls: two incremental syncs

SECOND_END, SECOND_END_MS = "2026-01-02T00:00:00Z", END_MS + DAY_MS
HOUR_MS = 3_600_000


@dataclass
class LateSyncs:
    """Incremental syncs of the windowed streams (`recordings` with its files) and `sync_audit`, TeleCMI listing calls
    late between them.

    `late` holds, per stream, the calls added after the first sync inside its windows that the next
    sync reads again: the window holding the lookback point (the newest call read, less the
    lookback) and the last window with a call (for `recordings`: the files of those of the answered
    calls and voicemails). In each: one at its first millisecond, one just
    before the lookback point and one just before the newest call (calls still ringing when the
    first sync ran, recorded with the time they started), and one at its very end.
    """

    schemas: dict[str, dict[str, Any]]
    keys: dict[str, list[str]]
    runs: list[Run]
    late: dict[str, list[dict[str, Any]]]
    lookback_days: int

    def audit(self, run: int) -> list[dict[str, Any]]:
        return self.runs[run].records_of("sync_audit")

    def late_windows(self, stream: str) -> list[dict[str, Any]]:
        """The windows of the first sync the late calls were added to (the one holding the lookback point first)."""
        return late_windows(self.audit(0), stream, self.runs[0].records_of(stream), self.lookback_days)

    def script(self, json_type: str, runs: int | None = None) -> str:
        """The tables as Append + Deduped leaves them after `runs` syncs: the latest record of each key."""
        return tables_script(self.schemas, [r.of("RECORD") for r in self.runs[:runs]], json_type, keys=self.keys)


def late_windows(audit: list[dict[str, Any]], stream: str, records: list[dict], lookback_days: int) -> list[dict]:
    """A sync's windows holding its lookback point, and its last with a call (each once), those with calls of their own."""
    rows = sorted((r for r in audit if r["stream"] == stream), key=lambda r: r["window_start"])
    point = max(r["time"] for r in records) - lookback_days * DAY_MS + 1
    holding = [r for r in rows if r["window_start"] <= point <= r["window_end"] and r["records_emitted"]]
    last = [r for r in rows if r["records_emitted"]][-1:]
    return holding + [r for r in last if r not in holding]


def late_data(n: int, seed: int) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """`n` calls per call list and `n // 2` voicemails over December, none in its last hour; and the calls of
    the day after (the second sync's), one of them on that sync's last millisecond."""
    paths = {**{stream: ACCOUNT_ENDPOINTS[stream] for stream in CALL_STREAMS}, "voicemails": GLOBAL_VOICEMAIL}
    held, later = {}, {}
    for i, (stream, path) in enumerate(paths.items()):
        if stream == "voicemails":
            held[path] = generate_voicemails(n // 2, START_MS, END_MS - HOUR_MS, seed=seed + i)
            later[path] = generate_voicemails(10, END_MS + 1, SECOND_END_MS - 1, seed=seed + 10 + i)
            later[path].append(make_voicemail(SECOND_END_MS))
        else:
            held[path] = generate_calls(n, START_MS, END_MS - HOUR_MS, seed=seed + i, endpoint=path)
            later[path] = generate_calls(20, END_MS + 1, SECOND_END_MS - 1, seed=seed + 10 + i, endpoint=path)
            later[path].append(make_call(SECOND_END_MS, path))
    return held, later


def late_calls_in(window: dict[str, Any], newest: int, lookback_days: int, path: str) -> list[dict[str, Any]]:
    """Calls TeleCMI lists late inside `window`: at its start, just before the lookback point and the newest call
    the first sync read, at its end."""
    first, last = window["window_start"], window["window_end"]
    before = [newest - lookback_days * DAY_MS, newest - 1]
    instants = sorted({first, last, *(at for at in before if first <= at <= last)})
    if path == GLOBAL_VOICEMAIL:
        return [make_voicemail(at) for at in instants]
    return [make_call(at, path) for at in instants]


@pytest.fixture(scope="module", params=[0, 1], ids=["lookback-0", "lookback-1"])
def late_syncs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> LateSyncs:
    """Two incremental syncs; between them TeleCMI lists late calls inside the first sync's last window, and new ones.

    With a lookback of a day the second sync's windows do not line up with the first sync's: a row of
    the first sync is then superseded by rows that start elsewhere.
    """
    held, later = late_data(400, seed=51)
    paths = {**{stream: ACCOUNT_ENDPOINTS[stream] for stream in CALL_STREAMS}, "voicemails": GLOBAL_VOICEMAIL}
    work = tmp_path_factory.mktemp("late-syncs")
    staging = work / "staging"
    staging.mkdir()
    connector = Connector(work, env={"AIRBYTE_STAGING_DIRECTORY": str(staging)})
    with simulator(
        {p: r for p, r in held.items() if p != GLOBAL_VOICEMAIL}, voicemails={GLOBAL_VOICEMAIL: held[GLOBAL_VOICEMAIL]}
    ) as sim:
        cfg = config_for(sim, "app", lookback_window_days=request.param)
        streams = [s for s in connector.run("discover", cfg).ok().streams if s["name"] in {*AUDITED, "sync_audit"}]
        catalog = configured(streams, "incremental")
        for entry in catalog["streams"]:
            entry["include_files"] = entry["stream"]["name"] == RECORDINGS
        first = connector.run("read", cfg, catalog, timeout=300).ok()
        late = {}
        for stream, path in paths.items():
            records = first.records_of(stream)
            newest = max(r["time"] for r in records)
            windows = late_windows(first.records_of("sync_audit"), stream, records, request.param)
            late[stream] = [c for w in windows for c in late_calls_in(w, newest, request.param, path)]
            sim.add_calls(path, late[stream] + later[path])
        second = connector.run("read", {**cfg, "end_date": SECOND_END}, catalog, last_states(first), timeout=300).ok()
    late[RECORDINGS] = [
        {**c, "file": file_of(s, c)} for s in (*RECORDED, "voicemails") for c in late[s] if file_of(s, c)
    ]
    keys = {s["name"]: [k[0] for k in s.get("source_defined_primary_key") or []] for s in streams}
    return LateSyncs({s["name"]: s["json_schema"] for s in streams}, keys, [first, second], late, request.param)


def landed_sql(stream: str, first: int, last: int) -> str:
    key = WINDOWED[stream]
    return f'SELECT COUNT(DISTINCT {key}) FROM {stream} WHERE "time" BETWEEN {first} AND {last}'


def test_late_calls_are_read_again_by_the_next_sync_from_the_start_of_the_window_holding_them(
    late_syncs: LateSyncs,
) -> None:
    """The scenario check 1 must see through: the first sync's last window holds more calls in the warehouse than
    its own row says, and the second sync read it again whole, from its start (a row of its own covers it)."""
    first, second = late_syncs.runs
    for stream in WINDOWED:
        window = late_syncs.late_windows(stream)[0]
        emitted = {(r[WINDOWED[stream]], r["time"]) for r in second.records_of(stream)}
        assert {(c[WINDOWED[stream]], c["time"]) for c in late_syncs.late[stream]} <= emitted, f"{stream}: late calls"
        rows = sorted(
            (r for r in second.records_of("sync_audit") if r["stream"] == stream), key=lambda r: r["window_start"]
        )
        starts = {r["window_start"] for r in late_syncs.audit(0) if r["stream"] == stream}
        assert rows[0]["window_start"] in starts, f"{stream}: the second sync began inside a window of the first"
        assert rows[0]["window_start"] <= window["window_start"]
        newest = max(r["time"] for r in first.records_of(stream))
        lookback = late_syncs.lookback_days * DAY_MS
        assert rows[0]["window_start"] >= newest - lookback - DAY_MS, f"{stream}: read again from too far back"
        assert all(a["window_end"] + 1 == b["window_start"] for a, b in zip(rows, rows[1:], strict=False))
        assert rows[-1]["window_end"] == SECOND_END_MS
        # What the old check ("at least records_emitted") was fooled by: the window's old row now says too few.
        in_window = [c for c in late_syncs.late[stream] if window["window_start"] <= c["time"] <= window["window_end"]]
        assert len(in_window) >= 3, f"{stream}: late calls before the lookback point, inside its window"


def test_check_1_is_exact_after_late_calls(warehouse: DuckDB | Postgres, late_syncs: LateSyncs) -> None:
    warehouse.script(late_syncs.script(warehouse.json_type))
    for stream in WINDOWED:
        for window in late_syncs.late_windows(stream):
            late = [c for c in late_syncs.late[stream] if window["window_start"] <= c["time"] <= window["window_end"]]
            rows = warehouse.query(landed_sql(stream, window["window_start"], window["window_end"])).rows
            assert int(rows[0][0]) == window["records_emitted"] + len(late), f"{stream}: the first sync's row is stale"
    assert warehouse.query(section()["check_1"].text).rows == []
    landed = plain_sql(section()["singular"][0].text)
    assert warehouse.query(landed).rows == []
    assert warehouse.query(as_dbt_runs_it(landed)).rows == [("0",)]


@pytest.mark.parametrize("stream", ["incoming_missed_calls", "voicemails", RECORDINGS])
def test_check_1_names_a_lost_call_hidden_behind_late_calls(
    warehouse: DuckDB | Postgres, late_syncs: LateSyncs, stream: str
) -> None:
    """One original call of the window holding the lookback point, where late calls landed, is deleted: check 1 and
    the dbt test name the second sync's window holding it, with found = expected - 1, and nothing else."""
    warehouse.script(late_syncs.script(warehouse.json_type))
    window = late_syncs.late_windows(stream)[0]
    key = AUDITED[stream]
    late_keys = {c[key] for c in late_syncs.late[stream]}
    originals = [
        r
        for r in late_syncs.runs[0].records_of(stream)
        if window["window_start"] <= r["time"] <= window["window_end"] and r[key] not in late_keys
    ]
    assert originals, f"{stream}: the first sync's last window holds no call of its own"
    victim = originals[len(originals) // 2]
    warehouse.script(f"DELETE FROM {stream} WHERE {key} = {literal(victim[key])};")

    (covering,) = [
        r
        for r in late_syncs.audit(1)
        if r["stream"] == stream and r["window_start"] <= victim["time"] <= r["window_end"]
    ]
    expected = covering["records_emitted"]
    short = [(stream, str(covering["window_start"]), str(covering["window_end"]), str(expected), str(expected - 1))]
    assert warehouse.query(section()["check_1"].text).rows == short
    landed = plain_sql(section()["singular"][0].text)
    assert warehouse.query(landed).rows == short
    assert warehouse.query(as_dbt_runs_it(landed)).rows == [("1",)]


def test_check_4_names_exactly_the_files_no_sync_emitted_after_late_calls(
    warehouse: DuckDB | Postgres, late_syncs: LateSyncs
) -> None:
    """After late calls, check 4 names each call and voicemail of the tables whose file neither sync emitted (up to
    the newest recordings window), and nothing else: the files emitted are all downloaded or pending.

    Today these are late answered calls that their call stream read again and `recordings` did not: its lookback
    counts from the newest answered call or voicemail of the three lists, later than the newest of that one list."""
    warehouse.script(late_syncs.script(warehouse.json_type))
    emitted = {r["file"]: r["status"] for run in late_syncs.runs for r in run.records_of(RECORDINGS)}
    assert set(emitted.values()) == {"downloaded"}
    until = max(
        r["window_end"] for run in late_syncs.runs for r in run.records_of("sync_audit") if r["stream"] == RECORDINGS
    )
    held = {
        (s, r[WINDOWED[s]]): r for run in late_syncs.runs for s in (*RECORDED, "voicemails") for r in run.records_of(s)
    }
    missing = sorted(
        (s, key, str(r["time"]), file_of(s, r), None)
        for (s, key), r in held.items()
        if file_of(s, r) and r["time"] <= until and file_of(s, r) not in emitted
    )
    for query in check_4_queries():
        assert sorted(warehouse.query(query).rows) == missing
