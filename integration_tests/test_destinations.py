"""One stream at a time on stdout, so a destination that commits per stream on STATE gets every row.

Airbyte's DuckDB/MotherDuck destination writes only the state's stream on each STATE and then
drops its whole buffer: records of another stream still in that buffer are lost. The connector
reads one stream at a time, so no stream's records or states fall between another stream's first
message and its last. Proven here with the real `source-telecmi` command against the simulator,
for every stream discover lists (app credentials, global and India), full refresh and
incremental: on the message order, and through `CommitOnStateDestination`, a stand-in for such a
destination fed the command's stdout through a pipe. A hand-built interleaving, and the real
output interleaved, show that destination losing rows, so the tests can fail.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterable
from itertools import zip_longest
from typing import Any

import pytest

from integration_tests.harness import (
    ALL_ENDPOINTS,
    APP_ID,
    END_MS,
    START_MS,
    USERS,
    call_id,
    calls_for,
    config_for,
    configured,
    endpoints,
    simulator,
)
from integration_tests.telecmi_simulator import (
    DEFAULT_BALANCE,
    GLOBAL_VOICEMAIL,
    INDIA_VOICEMAIL,
    generate_agents,
    generate_voicemails,
)

KINDS = ["app", "india"]
MODES = ["full_refresh", "incremental"]
VOICEMAILS = {"app": GLOBAL_VOICEMAIL, "india": INDIA_VOICEMAIL}
AGENTS = generate_agents(23, app_id=APP_ID, seed=9)
FINAL = ("COMPLETE", "INCOMPLETE")


class CommitOnStateDestination:
    """A destination like Airbyte's DuckDB one: it buffers records; on each STATE it writes the
    buffered records of the state's stream into its table and drops the whole buffer, every
    stream's. What is still buffered when its input ends is never written."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE TABLE rows (stream TEXT, data TEXT)")
        self.buffer: list[tuple[str, str]] = []
        self.received: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # records received and never written, per stream

    def consume(self, lines: Iterable[str]) -> None:
        for line in lines:
            message = json.loads(line)
            if message["type"] == "RECORD":
                record = message["record"]
                self.received[record["stream"]] += 1
                self.buffer.append((record["stream"], json.dumps(record["data"], sort_keys=True)))
            elif message["type"] == "STATE":
                stream = message["state"]["stream"]["stream_descriptor"]["name"]  # per-stream states only
                with self.db:
                    self.db.executemany("INSERT INTO rows VALUES (?, ?)", [r for r in self.buffer if r[0] == stream])
                self.dropped.update(name for name, _ in self.buffer if name != stream)
                self.buffer.clear()
        self.dropped.update(name for name, _ in self.buffer)  # no STATE came after them: never committed
        self.buffer.clear()

    def rows(self, stream: str) -> list[dict[str, Any]]:
        return [json.loads(data) for (data,) in self.db.execute("SELECT data FROM rows WHERE stream = ?", (stream,))]


def stream_of(message: dict[str, Any]) -> tuple[str | None, str]:
    """The stream a message belongs to and what it is: RECORD, STATE or a status (STARTED, ..., COMPLETE)."""
    if message["type"] == "RECORD":
        return message["record"]["stream"], "RECORD"
    if message["type"] == "STATE":
        return message["state"]["stream"]["stream_descriptor"]["name"], "STATE"
    if message["type"] == "TRACE" and message["trace"]["type"] == "STREAM_STATUS":
        status = message["trace"]["stream_status"]
        return status["stream_descriptor"]["name"], status["status"]
    return None, message["type"]


def order_problems(messages: list[dict[str, Any]]) -> list[str]:
    """What makes `messages` more than one stream at a time: another stream's RECORD or STATE between a
    stream's first message (record, state or status) and its last (its final status or its last state),
    a record after its stream's last state, a stream without exactly one STARTED and one final status."""
    tagged = [(i, *stream_of(m)) for i, m in enumerate(messages)]
    tagged = [(i, stream, kind) for i, stream, kind in tagged if stream is not None]
    problems = []
    for stream in dict.fromkeys(s for _, s, _ in tagged):
        own = [(i, kind) for i, s, kind in tagged if s == stream]
        first, last = own[0][0], own[-1][0]
        kinds = Counter(kind for _, kind in own)
        if kinds["STARTED"] != 1 or sum(kinds[k] for k in FINAL) != 1:
            problems.append(f"{stream}: {kinds['STARTED']} STARTED and {sum(kinds[k] for k in FINAL)} final statuses")
        others = Counter(s for i, s, kind in tagged if first < i < last and s != stream and kind in ("RECORD", "STATE"))
        if others:
            problems.append(f"{stream}: records or states of {dict(others)} between its first message and its last")
        records, states = [i for i, k in own if k == "RECORD"], [i for i, k in own if k == "STATE"]
        if records and (not states or records[-1] > states[-1]):
            problems.append(f"{stream}: records after its last state")
    return problems


@pytest.fixture(scope="module")
def sim():
    """Calls on every platform, voicemails (global and India), 23 users: every stream has rows."""
    voicemails = {
        GLOBAL_VOICEMAIL: generate_voicemails(90, START_MS, END_MS - 1, seed=3),
        INDIA_VOICEMAIL: generate_voicemails(90, START_MS, END_MS - 1, seed=4, india=True),
    }
    with simulator(calls_for(ALL_ENDPOINTS, 300, seed=31), voicemails=voicemails, agents=AGENTS) as running:
        yield running


def discovered(connector, sim, kind):
    config = config_for(sim, kind)
    return config, connector.run("discover", config).ok().streams


def sync(connector, config: dict, catalog: dict) -> CommitOnStateDestination:
    """The real command's stdout piped into the destination, line by line, as a platform would."""
    destination = CommitOnStateDestination()
    stderr_path = connector.workdir / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            connector.args("read", config, catalog, None),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=connector.environment(),
        )
        try:
            destination.consume(process.stdout)
            returncode = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
    assert returncode == 0, f"exit {returncode}: {stderr_path.read_text()[-2000:]}"
    return destination


def assert_every_row_landed(destination: CommitOnStateDestination, sim, kind: str, names: list[str]) -> None:
    """Every record the connector printed is in the table, and every row the simulator holds was printed."""
    assert not destination.dropped, f"rows lost: {dict(destination.dropped)} of {dict(destination.received)}"
    assert set(destination.received) == set(names), "a stream without rows"
    for stream in names:
        assert len(destination.rows(stream)) == destination.received[stream], stream
    calls = {stream: sim.records(path) for stream, path in endpoints(kind).items()}
    for stream, held in calls.items():
        got = sorted(call_id(r) for r in destination.rows(stream))
        assert got == sorted(call_id(c) for c in held), f"{stream}: not every call exactly once"
    voicemails = sim.records(VOICEMAILS[kind])
    assert sorted(r["voicename"] for r in destination.rows("voicemails")) == sorted(v["voicename"] for v in voicemails)
    assert sorted(u["agent_id"] for u in destination.rows(USERS)) == sorted(a["agent_id"] for a in AGENTS)
    days = destination.rows("daily_call_totals")
    assert len({d["day"] for d in days}) == len(days), "a day twice"
    for field in ("answered", "missed"):
        held = sum(len(records) for stream, records in calls.items() if stream.endswith(f"_{field}_calls"))
        assert sum(d[field] for d in days) == held, f"daily_call_totals: {field} do not add up"
    assert sum(d["total"] for d in days) == sum(len(records) for records in calls.values())
    assert [b["balance"] for b in destination.rows("account_balance")] == [DEFAULT_BALANCE["balance"]]
    lists = {*endpoints(kind).values(), VOICEMAILS[kind]}  # the files these credentials' lists name
    held_files = sorted(
        n for n, r in sim.recordings("india" if kind == "india" else "global").items() if r.path in lists
    )
    files = destination.rows("recordings")
    assert held_files and sorted(f["file"] for f in files) == held_files, "recordings: not every file exactly once"
    audited = Counter()
    for row in destination.rows("sync_audit"):
        audited[row["stream"]] += row["records_emitted"]
    expected = {**{s: len(c) for s, c in calls.items()}, "voicemails": len(voicemails), "recordings": len(held_files)}
    assert audited == expected


# ----------------------------------------------------------------------------- the order on stdout


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_every_discovered_stream_comes_out_as_one_block(connector, sim, kind, mode):
    """Records and states of one stream never fall between another stream's first message and its last.

    A stream's last message may be its final STATE, which the CDK's queue prints after its COMPLETE
    status: the block runs to it."""
    config, streams = discovered(connector, sim, kind)
    run = connector.run("read", config, configured(streams, mode)).ok()
    names = {s["name"] for s in streams}
    assert order_problems(run.messages) == []
    assert {stream_of(m)[0] for m in run.messages} - {None} == names, "a discovered stream not read"
    assert all(run.records_of(name) for name in names), "a stream without records: its order is not proven"


# ----------------------------------------------------------------------------- a destination that commits on state


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_a_destination_that_commits_only_the_states_stream_gets_every_row(connector, sim, kind, mode):
    config, streams = discovered(connector, sim, kind)
    destination = sync(connector, config, configured(streams, mode))
    assert_every_row_landed(destination, sim, kind, [s["name"] for s in streams])


def record(stream: str, n: int) -> dict[str, Any]:
    return {"type": "RECORD", "record": {"stream": stream, "data": {"n": n}, "emitted_at": 0}}


def state(stream: str, n: int) -> dict[str, Any]:
    blob = {"stream_descriptor": {"name": stream}, "stream_state": {"n": n}}
    return {"type": "STATE", "state": {"type": "STREAM", "stream": blob}}


def status(stream: str, value: str) -> dict[str, Any]:
    stream_status = {"stream_descriptor": {"name": stream}, "status": value}
    return {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 0, "stream_status": stream_status}}


def one_stream(stream: str, *numbers: int) -> list[dict[str, Any]]:
    return [
        status(stream, "STARTED"),
        *(record(stream, n) for n in numbers),
        status(stream, "COMPLETE"),
        state(stream, 9),
    ]


def fed(messages: list[dict[str, Any]]) -> CommitOnStateDestination:
    destination = CommitOnStateDestination()
    destination.consume(json.dumps(m) for m in messages)
    return destination


def test_interleaved_streams_lose_rows_in_that_destination_and_one_at_a_time_does_not():
    """The same messages, interleaved then one stream at a time: only the interleaving loses rows."""
    a, b = one_stream("a", 1, 2), one_stream("b", 3, 4)
    interleaved = [x for pair in zip(a, b, strict=True) for x in pair]  # a's STATE while b's rows are buffered
    lost = fed(interleaved)
    assert lost.dropped == {"b": 2} and [r["n"] for r in lost.rows("a")] == [1, 2] and lost.rows("b") == []
    assert order_problems(interleaved)
    kept = fed(a + b)
    assert not kept.dropped and [r["n"] for r in kept.rows("b")] == [3, 4]
    assert order_problems(a + b) == []
    unfinished = fed([record("a", 1), state("a", 1), record("a", 2)])  # no STATE after the last record
    assert unfinished.dropped == {"a": 1} and order_problems([record("a", 1), state("a", 1), record("a", 2)])


@pytest.mark.parametrize("mode", MODES)
def test_the_connectors_own_output_interleaved_loses_rows(connector, sim, mode):
    """The real messages of two streams taken in turns: the check sees it, the destination loses rows."""
    config, streams = discovered(connector, sim, "app")
    run = connector.run("read", config, configured(streams, mode)).ok()
    first, second = (
        [m for m in run.messages if stream_of(m)[0] == stream] for stream in ("incoming_missed_calls", "voicemails")
    )
    interleaved = [m for pair in zip_longest(first, second) for m in pair if m is not None]
    assert order_problems(interleaved)
    destination = fed(interleaved)
    assert destination.dropped, "an interleaving that loses nothing proves nothing"
    assert fed(first + second).dropped == {}
