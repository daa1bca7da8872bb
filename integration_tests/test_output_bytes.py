"""What reaches the reader is exactly the messages the sync made: one line a message, every byte delivered.

Through the real command: every string field of every list carrying each Unicode line or paragraph
separator and each control character comes out inside one RECORD, equal to what TeleCMI served
(a destination splits lines at "\\n" alone); and stdout given as a file, a blocking pipe or a slow
non-blocking pipe delivers every record whole, or the sync fails non-zero.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from integration_tests.harness import (
    APP_ID,
    Connector,
    calls_for,
    config_for,
    configured,
    discovered,
    endpoints,
    parse,
    simulator,
)
from integration_tests.telecmi_simulator import GLOBAL_VOICEMAIL, INDIA_VOICEMAIL, generate_agents, generate_voicemails

# What `str.splitlines` breaks at besides "\n" and "\r": a record holding one must stay one line.
SEPARATORS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"
# Control characters JSON escapes (a raw one in a string is invalid JSON), and a tab, a CR, a NUL.
CONTROLS = "\t\r\x00\x01\x1f\x7f"
ODD = SEPARATORS + CONTROLS


def with_odd_strings(value: Any, salt: list[int]) -> Any:
    """`value` with one odd character (cycling through all of them) put inside every string, at any depth."""
    if isinstance(value, str) and not is_number(value):  # numbers in strings are converted to numbers
        salt[0] += 1
        odd = ODD[salt[0] % len(ODD)]
        return f"{value[:2]}{odd}{value[2:]}{SEPARATORS}"
    if isinstance(value, dict):
        return {k: with_odd_strings(v, salt) if k not in ("time",) else v for k, v in value.items()}
    if isinstance(value, list):
        return [with_odd_strings(v, salt) for v in value]
    return value


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def strings_of(value: Any, path: str = "") -> dict[str, str]:
    """Every string at any depth, by its path."""
    if isinstance(value, str):
        return {path: value}
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(strings_of(item, f"{path}.{key}" if path else key))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            found.update(strings_of(item, f"{path}[{number}]"))
    return found


def odd_simulator(kind: str) -> tuple[Any, dict[str, list[dict]], list[dict]]:
    salt = [0]
    paths = endpoints(kind)
    calls = {
        path: [with_odd_strings(c, salt) for c in records]
        for path, records in calls_for(paths.values(), n=60, notes_ratio=0.5).items()
    }
    voicemail = INDIA_VOICEMAIL if kind == "india" else GLOBAL_VOICEMAIL
    start, end = 1764547200000, 1767225599999
    calls[voicemail] = [with_odd_strings(v, salt) for v in generate_voicemails(40, start, end, india=kind == "india")]
    agents = [with_odd_strings(a, salt) for a in generate_agents(15, app_id=APP_ID)]
    for agent in agents:  # the key fields stay plain: they are what a record is found by
        agent["agent_id"] = agent["agent_id"].translate({ord(c): None for c in ODD})
    return simulator(calls, agents=agents), calls, agents


@pytest.mark.parametrize("kind", ["app", "india"])
def test_every_string_with_a_separator_or_control_character_comes_out_in_one_record(tmp_path: Path, kind: str):
    sim, calls, agents = odd_simulator(kind)
    names = [n for n in discovered(kind) if n not in ("daily_call_totals", "account_balance", "sync_audit")]
    with sim:
        run = Connector(tmp_path).run(
            "read", config_for(sim, kind), configured([discovered(kind)[n] for n in names], "full_refresh")
        )
    run.ok()
    assert run.stdout.count("\n") == len(run.messages)  # every line one message: no record split in two
    for stream in names:
        emitted = run.records_of(stream)
        if stream == "users":
            served = {a["agent_id"]: a for a in agents}
            by_key = {r["agent_id"]: r for r in emitted}
        elif stream == "voicemails":
            served = {v["voicename"]: v for v in calls[INDIA_VOICEMAIL if kind == "india" else GLOBAL_VOICEMAIL]}
            by_key = {r["voicename"]: r for r in emitted}
        elif stream == "recordings":  # a file's record carries the name and the call's strings as served
            served = files_of(calls, kind)
            by_key = {r["file"]: r for r in emitted}
        else:
            served = {c.get("cmiuid") or c["_id"]: c for c in calls[endpoints(kind)[stream]]}
            by_key = {r["cmiuid"]: r for r in emitted}
        assert len(emitted) == len(served) and set(by_key) == set(served), stream
        compared = 0
        for key, record in served.items():
            for path, text in strings_of(record).items():
                if "password" in path or is_number(text):
                    continue  # a password never reaches a record; a number in a string becomes a number
                got = strings_of(by_key[key]).get(path)
                assert got == text, f"{stream} {key} {path}: {got!r} != {text!r}"
                compared += 1
        assert compared >= len(served), stream


def files_of(calls: dict[str, list[dict]], kind: str) -> dict[str, dict[str, Any]]:
    """The files the answered calls and voicemails served name, with what their recordings records repeat."""
    files = {}
    for stream, path in endpoints(kind).items():
        for call in calls[path] if "answered" in stream else ():
            if call.get("record") in ("true", True) and call.get("filename"):
                key = call.get("cmiuid") or call["_id"]
                files[call["filename"]] = {"file": call["filename"], "agent": call.get("agent"), "cmiuid": key}
    for voicemail in calls[INDIA_VOICEMAIL if kind == "india" else GLOBAL_VOICEMAIL]:
        files[voicemail["voicename"]] = {"file": voicemail["voicename"]}
    return files


def catalog_of_calls(kind: str) -> dict[str, Any]:
    return configured([discovered(kind)[n] for n in endpoints(kind)], "full_refresh")


def expected_records(calls: dict[str, list[dict]]) -> int:
    return sum(len(records) for records in calls.values())


def run_into(connector: Connector, config: dict, catalog: dict, stdout: Any) -> subprocess.Popen:
    return subprocess.Popen(
        connector.args("read", config, catalog, None),
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        env=connector.environment(),
    )


def check_delivered(text: str, count: int) -> None:
    messages = parse(text)  # every line a valid AirbyteMessage
    records = [m for m in messages if m["type"] == "RECORD"]
    assert len(records) == count
    assert len({r["record"]["data"]["cmiuid"] for r in records}) == count
    assert not [m for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


BIG_NOTES = "x" * 2000  # records of a few KB: a pipe buffer (64 KB) fills after a few dozen


@pytest.fixture(scope="module")
def busy():
    calls = calls_for(endpoints("app").values(), n=350, notes_ratio=1.0)
    for records in calls.values():
        for call in records:
            call["notes"] = [{"msg": BIG_NOTES, "date": call["time"], "agent": "101_1111112"}]
    with simulator(calls) as sim:
        yield sim, calls


def test_stdout_as_a_file_gets_every_record(tmp_path: Path, busy):
    sim, calls = busy
    connector = Connector(tmp_path)
    out = tmp_path / "out.jsonl"
    with out.open("wb") as sink:
        process = run_into(connector, config_for(sim, "app"), catalog_of_calls("app"), sink)
        assert process.wait(timeout=120) == 0
    check_delivered(out.read_text(encoding="utf-8"), expected_records(calls))


def read_slowly(fd: int, into: bytearray, pause_s: float) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(pause_s)
            continue
        if not chunk:
            return
        into.extend(chunk)
        time.sleep(pause_s)


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking-pipe", "slow-non-blocking-pipe"])
def test_stdout_as_a_pipe_read_slowly_gets_every_byte(tmp_path: Path, busy, blocking: bool):
    sim, calls = busy
    connector = Connector(tmp_path)
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: the writer meets a full pipe often
    os.set_blocking(write_end, blocking)
    received = bytearray()
    reader = threading.Thread(target=read_slowly, args=(read_end, received, 0.002))
    reader.start()
    try:
        process = run_into(connector, config_for(sim, "app"), catalog_of_calls("app"), write_end)
    finally:
        os.close(write_end)
    code = process.wait(timeout=300)
    reader.join(timeout=60)
    os.close(read_end)
    assert code == 0
    text = received.decode("utf-8")
    assert text.endswith("\n")
    check_delivered(text, expected_records(calls))
