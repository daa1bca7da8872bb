"""The recordings stream through the real command against the simulator: every file TeleCMI holds, once, whole.

A recording is the audio of an answered call recorded with a filename, or a voicemail. With files
asked for (the catalog entry's `include_files`), each file is fetched from the play path (the app
secret in its query) to `recordings/YYYY/MM/DD/<file>` under `$AIRBYTE_STAGING_DIRECTORY` before its
record, which carries a `file_reference`; each is checked here against the simulator's SHA-256 and
opened as audio. Without `include_files`: records only, no request for a file. Files TeleCMI has not
published yet are pending, kept in the state and delivered by a later sync, once; faults on the file
are retried to a whole file, or fail the sync naming it, with nothing half-written left behind; the
secret is never printed, in any form. The connector leaves null fields out of a record: a missing
key is read here as null.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mutagen
import pytest

from integration_tests.conftest import (
    APP_ID,
    APP_SECRET,
    DAY_MS,
    END_MS,
    PASSWORD,
    START_MS,
    TOKEN,
    Connector,
    app_credentials,
    catalog,
    config_for,
    simulator,
)
from integration_tests.harness import endpoints, last_states, reread_from
from integration_tests.telecmi_simulator import (
    DEFAULT_USER_ID,
    GLOBAL_VOICEMAIL,
    INDIA_PLAY_PATH,
    INDIA_VOICEMAIL,
    PLAY_FAULTS,
    PLAY_PATH,
    PLAY_PATHS,
    Simulator,
    check_audio,
    file_sha256,
    generate_agents,
    generate_calls,
    generate_voicemails,
)

RECORDINGS, AUDIT = "recordings", "sync_audit"
REGION = {"app": "global", "india": "india"}
PLAY = {"app": PLAY_PATH, "india": INDIA_PLAY_PATH}
VOICEMAIL = {"app": GLOBAL_VOICEMAIL, "india": INDIA_VOICEMAIL}
CALL_STREAMS = ("incoming_answered_calls", "outgoing_answered_calls")
FIELDS = ("kind", "cmiuid", "call_stream", "time", "started_at", "agent")
# A secret that changes under percent-encoding, so that each printed form of it is a different string.
ODD_SECRET = "s3cr+t/&=x y%9~ü"


# ----------------------------------------------------------------------------- helpers


def iso(instant: int) -> str:
    seconds, millis = divmod(instant, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def day_path(instant: int, name: str) -> str:
    return "recordings/" + datetime.fromtimestamp(instant / 1000, tz=UTC).strftime("%Y/%m/%d") + "/" + name


def varied_size(name: str) -> int:
    """4 to 40 KiB, by the name: files of different sizes, the same on every request."""
    return 4096 + zlib.crc32(name.encode()) % (36 * 1024)


def file_lists(kind: str, n: int = 30, seed: int = 11, voicemails: int = 15, odd: bool = True, **window: int):
    """Answered calls both ways, missed calls (no file) and voicemails of a kind of config.

    `odd`: some answered calls are not recorded (record "false" or False), some have no filename, some
    say record as a JSON true, and some files are WAV instead of MP3.
    """
    paths = endpoints(kind)
    lo, hi = window.get("start_ms", START_MS), window.get("end_ms", END_MS - 1)
    lists = [paths["incoming_answered_calls"], paths["outgoing_answered_calls"], paths["incoming_missed_calls"]]
    calls = {path: generate_calls(n, lo, hi, seed=seed + i, endpoint=path) for i, path in enumerate(lists)}
    calls[VOICEMAIL[kind]] = generate_voicemails(voicemails, lo, hi, seed=seed, india=kind == "india")
    if odd:
        for path in lists[:2]:
            for i, call in enumerate(calls[path]):
                if i % 9 == 1:
                    call["record"] = "false" if i % 2 else False
                elif i % 9 == 4:
                    call.pop("filename")
                elif i % 9 == 6:
                    call["record"] = True
                if i % 5 == 2 and "filename" in call:
                    call["filename"] = call["filename"][:-4] + ".wav"
    return calls


def expected_files(kind: str, calls: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """What each file's record says of its call or voicemail, from the lists themselves (not the simulator)."""
    paths = endpoints(kind)
    out: dict[str, dict[str, Any]] = {}
    for stream in CALL_STREAMS:
        for call in calls.get(paths[stream], []):
            if call.get("record") in ("true", True) and call.get("filename"):
                out[call["filename"]] = {
                    "kind": "call",
                    "cmiuid": call.get("cmiuid") or call.get("_id"),
                    "call_stream": stream,
                    "time": call["time"],
                    "started_at": iso(call["time"]),
                    "agent": call.get("agent"),
                }
    for mail in calls.get(VOICEMAIL[kind], []):
        out[mail["voicename"]] = {
            "kind": "voicemail",
            "cmiuid": None,
            "call_stream": "voicemails",
            "time": mail["time"],
            "started_at": iso(mail["time"]),
            "agent": None,
        }
    return out


def files_catalog(*more: str, include_files: bool = True) -> dict[str, Any]:
    cat = catalog("incremental", RECORDINGS, *more)
    for entry in cat["streams"]:
        if entry["stream"]["name"] == RECORDINGS:
            entry["include_files"] = include_files
    return cat


def staged_connector(tmp_path: Path) -> tuple[Connector, Path]:
    staging = tmp_path / "staging"
    staging.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    return Connector(work, env={"AIRBYTE_STAGING_DIRECTORY": str(staging)}), staging


def file_messages(run) -> list[dict[str, Any]]:
    return [m["record"] for m in run.of("RECORD") if m["record"]["stream"] == RECORDINGS]


def on_disk(staging: Path) -> set[str]:
    """Every file under the staging folder (hidden ones too), relative."""
    found = set()
    for folder, _, names in os.walk(staging):
        found.update(str(Path(folder, name).relative_to(staging)) for name in names)
    return found


def partials(staging: Path) -> list[str]:
    return sorted(name for name in on_disk(staging) if "partial" in name or Path(name).name.startswith("."))


def recordings_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    (state,) = [s["stream"]["stream_state"] for s in states if s["stream"]["stream_descriptor"]["name"] == RECORDINGS]
    return state


def assert_whole(message: dict[str, Any], sim: Simulator, staging: Path) -> None:
    """A downloaded record's file: where its reference says, the simulator's bytes (size, SHA-256), real audio."""
    data, ref = message["data"], message.get("file_reference")
    name = data["file"]
    assert data["status"] == "downloaded", f"{name}: {data['status']}"
    assert ref, f"{name}: downloaded without a file_reference"
    assert ref["source_file_relative_path"] == day_path(data["time"], name)
    path = Path(ref["staging_file_url"])
    assert path.is_absolute() and path == staging / ref["source_file_relative_path"], ref
    size = sim.recording_size(name)
    assert path.stat().st_size == size == ref["file_size_bytes"] == data["file_size_bytes"], name
    digest = file_sha256(path)
    assert digest == sim.recording_sha256(name) == data["sha256"], f"{name}: not the bytes TeleCMI holds"
    assert data["sha256"] == data["sha256"].lower() and len(data["sha256"]) == 64
    info = check_audio(path)
    assert info.kind == ("wav" if name.lower().endswith(".wav") else "mp3") and info.seconds > 0, info
    opened = mutagen.File(path)  # a real audio library: the file is audio a player can read, of the length served
    assert opened is not None and opened.info.length == pytest.approx(info.seconds, rel=0.05), (name, opened)
    assert opened.info.sample_rate == (8000 if info.kind == "wav" else 32000), (name, opened.info.sample_rate)
    assert data["content_type"] == ("audio/wav" if info.kind == "wav" else "audio/mpeg"), data["content_type"]
    assert data["fetched_at"] and data["fetched_at"].endswith("Z")


def assert_no_url(run) -> None:
    for data in run.records_of(RECORDINGS):
        assert not any("http" in str(v) for v in data.values()), f"a record holds a URL: {data}"


def secret_forms(secret: str) -> set[str]:
    """The secret as it could be printed: plain, percent-encoded (both ways), form-encoded, JSON-escaped."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
    }


def assert_no_secret(run, secret: str = APP_SECRET) -> None:
    for form in secret_forms(secret):
        for where, text in (("stdout", run.stdout), ("stderr", run.stderr)):
            assert form not in text, f"the app secret ({form!r}) appears on {where}"


def odd_secret_simulator(calls: dict[str, list[dict]], **options: Any) -> Simulator:
    """The harness's simulator, but the app's secret is ODD_SECRET."""
    return Simulator(
        calls=calls,
        tokens=[TOKEN],
        users={DEFAULT_USER_ID: PASSWORD},
        apps={APP_ID: ODD_SECRET},
        agents=generate_agents(12, app_id=APP_ID),
        **options,
    )


def odd_secret_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    return config_for(sim, "app", credentials={**app_credentials(), "app_secret": ODD_SECRET}, **overrides)


def now_ms() -> int:
    return int(time.time() * 1000)


def recent_config(sim: Simulator, kind: str = "app", **overrides: Any) -> dict[str, Any]:
    """Reading the last three days up to the moment each sync starts (no end_date)."""
    start = datetime.fromtimestamp((now_ms() - 3 * DAY_MS) // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cfg = config_for(sim, kind, start_date=start, **overrides)
    cfg.pop("end_date")
    return cfg


def recent_calls(n: int = 20, seed: int = 5) -> dict[str, list[dict]]:
    """Answered calls of the last two days (not a second older than a minute ago), global app."""
    hi = now_ms() - 60_000
    return {"/v2/answered": generate_calls(n, hi - 2 * DAY_MS, hi, seed=seed, endpoint="/v2/answered")}


# ----------------------------------------------------------------------------- discover and catalog


def test_discover_declares_recordings_for_app_credentials_only(connector):
    with simulator(None) as sim:
        for kind in ("app", "india"):
            run = connector.run("discover", config_for(sim, kind)).ok()
            (stream,) = [s for s in run.streams if s["name"] == RECORDINGS]
            assert stream.get("is_file_based") is True, stream
            assert stream["source_defined_primary_key"] == [["file"]]
            assert stream["default_cursor_field"] == ["time"] and stream["source_defined_cursor"] is True
            assert "incremental" in stream["supported_sync_modes"]
        for kind in ("token", "login"):
            names = [s["name"] for s in connector.run("discover", config_for(sim, kind)).ok().streams]
            assert RECORDINGS not in names and names, f"{kind}: {names}"


@pytest.mark.parametrize("kind", ["token", "login"])
def test_a_user_asking_for_recordings_gets_a_config_error(connector, kind):
    with simulator(file_lists("app", n=5)) as sim:
        run = connector.run("read", config_for(sim, kind), files_catalog())
        played = sum(sim.stats.by_path.get(p, 0) for p in PLAY_PATHS)
    assert run.returncode != 0 and run.errors, "a catalog the credentials cannot serve must fail"
    (error,) = run.errors
    assert error["failure_type"] == "config_error", error
    assert RECORDINGS in error["message"] and "app id and secret" in error["message"], error["message"]
    assert not run.records and played == 0


@pytest.mark.parametrize("days", [-1, 91])
def test_recording_pending_days_out_of_range_is_a_config_error(tmp_path, days):
    connector = Connector(tmp_path, validate=False)  # no schema to check records against: the config is wrong
    with simulator(None) as sim:
        run = connector.run("read", config_for(sim, "app", recording_pending_days=days), files_catalog())
        assert sim.stats.requests == 0
    assert run.returncode != 0 and run.errors and run.errors[0]["failure_type"] == "config_error", run.errors
    assert "recording_pending_days" in run.errors[0]["message"]


# ----------------------------------------------------------------------------- delivered whole


@pytest.mark.parametrize("kind", ["app", "india"])
def test_every_file_delivered_whole_once(tmp_path, kind):
    calls = file_lists(kind)
    expected = expected_files(kind, calls)
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=varied_size) as sim:
        held = sim.recordings(REGION[kind])
        run = connector.run("read", config_for(sim, kind), files_catalog()).ok()
        by_path = dict(sim.stats.by_path)
        for message in file_messages(run):
            assert_whole(message, sim, staging)
    assert set(expected) == set(held), "test data: the simulator serves the files the lists name"
    assert any(n.endswith(".wav") for n in expected) and any(e["kind"] == "voicemail" for e in expected.values())
    assert any(c.get("record") is True for c in calls[endpoints(kind)["incoming_answered_calls"]])
    got = Counter(r["file"] for r in run.records_of(RECORDINGS))
    assert [f for f, n in got.items() if n > 1] == [], "a file emitted twice"
    assert set(got) == set(expected), f"missing {set(expected) - set(got)}, extra {set(got) - set(expected)}"
    for data in run.records_of(RECORDINGS):
        assert {f: data.get(f) for f in FIELDS} == expected[data["file"]], data
    # Exactly the referenced files, each in its day's folder, readable by another user; nothing else staged.
    refs = [m["file_reference"] for m in file_messages(run)]
    assert on_disk(staging) == {r["source_file_relative_path"] for r in refs}
    for ref in refs:
        assert stat.S_IMODE(os.stat(ref["staging_file_url"]).st_mode) == 0o644, ref
    assert by_path.get(PLAY[kind]) == len(expected), "one play request per file"
    other = {"app": INDIA_PLAY_PATH, "india": PLAY_PATH}[kind]
    assert other not in by_path
    assert_no_url(run)
    assert_no_secret(run)
    assert any(f"{len(expected)} files downloaded" in line for line in run.logs("INFO")), run.logs("INFO")[-3:]


def test_without_include_files_records_only_and_no_file_request(tmp_path):
    calls = file_lists("app")
    expected = expected_files("app", calls)
    connector, staging = staged_connector(tmp_path)
    with simulator(calls) as sim:
        runs = [
            connector.run("read", config_for(sim, "app"), files_catalog(include_files=False)).ok(),
            connector.run("read", config_for(sim, "app"), catalog("incremental", RECORDINGS)).ok(),
        ]
        played = sum(sim.stats.by_path.get(p, 0) for p in PLAY_PATHS)
    assert played == 0, "a play request without include_files"
    for run in runs:
        messages = file_messages(run)
        assert sorted(m["data"]["file"] for m in messages) == sorted(expected)
        for message in messages:
            data = message["data"]
            assert data["status"] == "metadata_only" and "file_reference" not in message, message
            assert data.get("file_size_bytes") is None and data.get("sha256") is None and data.get("fetched_at") is None
            assert {f: data.get(f) for f in FIELDS} == expected[data["file"]]
        assert_no_url(run)
    assert on_disk(staging) == set()


# ----------------------------------------------------------------------------- across syncs


def test_a_second_sync_emits_only_the_reread_window_once(tmp_path):
    calls = file_lists("app", odd=False)
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=8192) as sim:
        cfg = config_for(sim, "app")
        first = connector.run("read", cfg, files_catalog()).ok()
        state = recordings_state(last_states(first))
        before = len(sim.stats.files_served)
        second = connector.run("read", cfg, files_catalog(), state=last_states(first)).ok()
        served_again = sim.stats.files_served[before:]
        for message in file_messages(second):
            assert_whole(message, sim, staging)
    paths = {m["data"]["file"]: m["file_reference"]["source_file_relative_path"] for m in file_messages(first)}
    assert len(paths) == len(file_messages(first)) == len(expected_files("app", calls))
    again = Counter(m["data"]["file"] for m in file_messages(second))
    assert [f for f, n in again.items() if n > 1] == [], "a file emitted twice in one sync"
    start = reread_from(state)
    assert start is not None
    assert set(again) == {f for f, e in expected_files("app", calls).items() if e["time"] >= start}
    assert 0 < len(again) < len(paths), "the second sync re-reads the last window only"
    for message in file_messages(second):
        name = message["data"]["file"]
        assert message["file_reference"]["source_file_relative_path"] == paths[name], "the same file, the same place"
    assert sorted(served_again) == sorted(again), "files fetched again are those of the re-read window"


def test_a_file_not_yet_published_is_delivered_by_the_next_sync_once(tmp_path):
    calls = recent_calls(n=20)
    answered = sorted(calls["/v2/answered"], key=lambda c: c["time"])
    oldest, newest = answered[0]["filename"], answered[-1]["filename"]
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=8192, unpublished={oldest: 1, newest: 1}) as sim:
        cfg = recent_config(sim)
        first = connector.run("read", cfg, files_catalog()).ok()
        pending = {m["data"]["file"]: m for m in file_messages(first) if m["data"]["status"] == "pending"}
        assert set(pending) == {oldest, newest}
        for message in pending.values():
            assert "file_reference" not in message and message["data"].get("sha256") is None, message
        for message in file_messages(first):
            if message["data"]["file"] not in pending:
                assert_whole(message, sim, staging)
        state = recordings_state(last_states(first))
        kept = state.get("pending_files") or {}
        assert set(kept) == {oldest, newest}, kept
        for name, entry in kept.items():
            data = pending[name]["data"]
            assert entry == {f: data.get(f) for f in ("time", "kind", "cmiuid", "call_stream", "agent")}, entry
        assert not [f for f in on_disk(staging) if Path(f).name in pending], "a pending file on disk"

        second = connector.run("read", cfg, files_catalog(), state=last_states(first)).ok()
        counts = Counter(m["data"]["file"] for m in file_messages(second))
        assert [f for f, n in counts.items() if n > 1] == [], "a file emitted twice in one sync"
        delivered = {m["data"]["file"]: m for m in file_messages(second) if m["data"]["file"] in pending}
        assert set(delivered) == {oldest, newest}, "each pending file is asked for again and delivered"
        for name, message in delivered.items():
            assert_whole(message, sim, staging)
            before = pending[name]["data"]
            assert {f: message["data"].get(f) for f in FIELDS} == {f: before.get(f) for f in FIELDS}
        # The oldest call is far behind the re-read window: it was asked for because the state kept it.
        assert answered[0]["time"] < reread_from(state)
        assert sim.play_requests(oldest) == sim.play_requests(newest) == 2
        assert not (recordings_state(last_states(second)).get("pending_files") or {})
        assert all(m["data"]["status"] == "downloaded" for m in file_messages(second))


def test_a_file_still_unpublished_stays_pending_then_leaves_the_state_with_a_warning(tmp_path):
    calls = recent_calls(n=10, seed=8)
    name = calls["/v2/answered"][-1]["filename"]  # the oldest call, outside the re-read window
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=4096, unpublished={name: True}) as sim:
        first = connector.run("read", recent_config(sim), files_catalog()).ok()
        assert name in (recordings_state(last_states(first)).get("pending_files") or {})
        second = connector.run("read", recent_config(sim), files_catalog(), state=last_states(first)).ok()
        asked = sim.play_requests(name)
        assert asked == 2, "a later sync asks again for a file still pending"
        assert name not in [d["file"] for d in second.records_of(RECORDINGS) if d["status"] == "downloaded"]
        assert name in (recordings_state(last_states(second)).get("pending_files") or {}), "kept while young"
        assert not [line for line in second.logs("WARN") if name in line]
        # With no more days to wait, the next sync lets it go, saying which file.
        third = connector.run(
            "read", recent_config(sim, recording_pending_days=0), files_catalog(), state=last_states(second)
        ).ok()
    warned = [line for line in third.logs("WARN") if name in line]
    assert warned and "recording_pending_days" in warned[0], third.logs("WARN")
    assert name not in (recordings_state(last_states(third)).get("pending_files") or {})
    assert name not in [d["file"] for d in third.records_of(RECORDINGS) if d["status"] == "downloaded"]
    assert partials(staging) == []


@pytest.mark.parametrize("when", ["december_2025", "recent_with_0_days"])
def test_a_pending_file_already_too_old_is_named_and_not_kept(tmp_path, when):
    if when == "december_2025":  # a year ago: far past the default 7 days
        calls = {"/v2/answered": generate_calls(10, START_MS, END_MS - 1, seed=4, endpoint="/v2/answered")}
    else:
        calls = recent_calls(n=10, seed=4)
    name = calls["/v2/answered"][3]["filename"]
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=4096, unpublished={name: True}) as sim:
        cfg = config_for(sim, "app") if when == "december_2025" else recent_config(sim, recording_pending_days=0)
        run = connector.run("read", cfg, files_catalog()).ok()
        for message in file_messages(run):
            if message["data"]["file"] != name:
                assert_whole(message, sim, staging)
    (data,) = [d for d in run.records_of(RECORDINGS) if d["file"] == name]
    assert data["status"] == "pending", data
    assert name not in (recordings_state(last_states(run)).get("pending_files") or {})
    warned = [line for line in run.logs("WARN") if name in line]
    assert len(warned) == 1 and "recording_pending_days" in warned[0], run.logs("WARN")


# ----------------------------------------------------------------------------- faults on the file


FAULT_OPTIONS = {
    "truncate": {},
    "reset_mid_file": {},
    "slow_body": {"bytes_per_s": 8192},  # slower than the connector accepts: cut, asked again
    "envelope_as_audio": {},
    "429": {"retry_after": 1},
    "500": {},
}


@pytest.mark.parametrize("fault", sorted(FAULT_OPTIONS))
def test_a_fault_on_the_file_is_retried_to_a_whole_file(tmp_path, fault):
    assert set(PLAY_FAULTS) <= set(FAULT_OPTIONS), "a play fault this test does not cover"
    calls = {"/v2/answered": generate_calls(8, START_MS, END_MS - 1, seed=21, endpoint="/v2/answered")}
    connector, staging = staged_connector(tmp_path)
    times = 3 if fault == "429" else 2
    with simulator(calls, recording_sizes=48 * 1024) as sim:
        sim.inject(fault, endpoint=PLAY_PATH, times=times, **FAULT_OPTIONS[fault])
        started = time.monotonic()
        run = connector.run("read", config_for(sim, "app"), files_catalog()).ok()
        took = time.monotonic() - started
        assert sim.pending_faults() == 0 and sim.stats.faults_served >= times
        messages = file_messages(run)
        assert len(messages) == len(calls["/v2/answered"])
        for message in messages:
            assert_whole(message, sim, staging)
        assert sim.stats.by_path[PLAY_PATH] == len(messages) + times, "each fault answer asked again, once"
    assert partials(staging) == []
    assert took < 60
    assert_no_secret(run)


LASTING = {
    "truncate": {},
    "reset_mid_file": {},
    "envelope_as_audio": {},
    "500": {},
    "drop": {},
    # Every file too slow: when the first one runs out of retries, the others are half-way through theirs.
    "slow_body": {"bytes_per_s": 4096},
}


@pytest.mark.parametrize("fault", sorted(LASTING))
def test_a_lasting_fault_fails_the_sync_naming_the_file(tmp_path, fault):
    calls = {"/v2/answered": generate_calls(4, START_MS, END_MS - 1, seed=22, endpoint="/v2/answered")}
    names = {c["filename"] for c in calls["/v2/answered"]}
    connector, staging = staged_connector(tmp_path)
    if fault == "slow_body":  # a body must come within the request timeout (plus its size at 64 KiB/s)
        connector.env["SOURCE_TELECMI_REQUEST_TIMEOUT"] = "0.5"
    with simulator(calls, recording_sizes=48 * 1024) as sim:
        sim.inject(fault, endpoint=PLAY_PATH, times=-1, **LASTING[fault])
        started = time.monotonic()
        run = connector.run("read", config_for(sim, "app"), files_catalog(), timeout=90)
        took = time.monotonic() - started
        assert run.returncode != 0 and run.errors, "a file that never comes whole must fail the sync"
        named = [n for n in names if any(n in e["message"] for e in run.errors)]
        assert named, f"no error names the file: {[e['message'] for e in run.errors]}"
        for message in file_messages(run):  # any record emitted before the failure references a whole file
            if message.get("file_reference"):
                assert_whole(message, sim, staging)
        referenced = {m["data"]["file"] for m in file_messages(run) if m.get("file_reference")}
    assert not set(named) & referenced, "a record references the file that failed"
    assert took < 60, f"{took:.1f} s to give up"
    assert_no_secret(run)
    assert not any(Path(f).name in named for f in on_disk(staging)), "the failed file is on disk"
    # Checked last: the sync ends while other files are still being fetched; none may be left half-written.
    assert partials(staging) == [], f"half-written files left behind after {run.errors[0]['message']}"


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_files_without_content_length_arrive_whole(tmp_path, framing):
    calls = file_lists("app", n=12, voicemails=6)
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=varied_size, play_content_length=framing) as sim:
        run = connector.run("read", config_for(sim, "app"), files_catalog()).ok()
        messages = file_messages(run)
        assert sorted(m["data"]["file"] for m in messages) == sorted(sim.recordings())
        for message in messages:
            assert_whole(message, sim, staging)
    assert partials(staging) == []


@pytest.mark.parametrize("fault", ["truncate", "reset_mid_file"])
def test_a_chunked_file_cut_short_is_asked_again(tmp_path, fault):
    # Without Content-Length a cut chunked body has no last chunk: the connector must see it is not whole.
    calls = {"/v2/answered": generate_calls(5, START_MS, END_MS - 1, seed=24, endpoint="/v2/answered")}
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=48 * 1024, play_content_length="chunked") as sim:
        sim.inject(fault, endpoint=PLAY_PATH, times=2)
        run = connector.run("read", config_for(sim, "app"), files_catalog()).ok()
        for message in file_messages(run):
            assert_whole(message, sim, staging)
        assert sim.stats.by_path[PLAY_PATH] == 5 + 2
    assert partials(staging) == []


def test_staged_files_readable_by_another_user_under_a_private_umask(tmp_path):
    # A connector container may run with umask 077; the destination reads the files as another user.
    calls = {"/v2/answered": generate_calls(5, START_MS, END_MS - 1, seed=25, endpoint="/v2/answered")}
    connector, staging = staged_connector(tmp_path)
    staging.chmod(0o755)
    with simulator(calls, recording_sizes=4096) as sim:
        old = os.umask(0o077)
        try:
            run = connector.run("read", config_for(sim, "app"), files_catalog())
        finally:
            os.umask(old)
    run.ok()
    for message in file_messages(run):
        path = Path(message["file_reference"]["staging_file_url"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        for folder in path.relative_to(staging).parents:
            mode = stat.S_IMODE((staging / folder).stat().st_mode)
            assert mode & 0o005 == 0o005, f"{staging / folder} is {oct(mode)}: another user cannot reach the file"


# ----------------------------------------------------------------------------- secrets


def test_the_secret_is_never_printed_debug_or_failing(tmp_path):
    calls = file_lists("app", n=8, voicemails=4)
    connector, staging = staged_connector(tmp_path)
    with odd_secret_simulator(calls, recording_sizes=8192) as sim:
        cfg = odd_secret_config(sim)
        good = connector.run("read", cfg, files_catalog(), debug=True).ok()
        for message in file_messages(good):
            assert_whole(message, sim, staging)
        sim.inject("reset_mid_file", endpoint=PLAY_PATH, times=-1)
        cut = connector.run("read", cfg, files_catalog(), debug=True)
        sim.clear_faults()
        sim.inject("500", endpoint=PLAY_PATH, times=-1, body="json")
        refused = connector.run("read", cfg, files_catalog())
    assert good.of("RECORD") and any(m["log"]["level"] == "DEBUG" for m in good.of("LOG")), "debug is on"
    for run in (cut, refused):
        assert run.returncode != 0 and run.errors, run.stderr[-500:]
    for run in (good, cut, refused):
        assert_no_secret(run, ODD_SECRET)
        assert_no_url(run)


def test_the_secret_is_never_printed_when_telecmi_goes_away_mid_sync(tmp_path):
    calls = file_lists("app", n=30, voicemails=10, odd=False)
    connector, staging = staged_connector(tmp_path)
    sim = odd_secret_simulator(calls, recording_sizes=8192, latency_ms=5)
    sim.start()
    stopper = None
    try:

        def stop_at_first_file() -> None:
            deadline = time.monotonic() + 60
            while not sim.stats.by_path.get(PLAY_PATH) and time.monotonic() < deadline:
                time.sleep(0.002)
            sim.stop()

        stopper = threading.Thread(target=stop_at_first_file, daemon=True)
        stopper.start()
        started = time.monotonic()
        run = connector.run("read", odd_secret_config(sim), files_catalog(), debug=True, timeout=90)
        took = time.monotonic() - started
    finally:
        if stopper is not None:
            stopper.join(5)
        sim.stop()
    assert run.returncode != 0 and run.errors, "TeleCMI gone mid-sync must fail the sync"
    assert took < 60
    assert_no_secret(run, ODD_SECRET)
    assert_no_url(run)
    assert partials(staging) == []
    for message in file_messages(run):
        if message.get("file_reference"):
            path = Path(message["file_reference"]["staging_file_url"])
            assert path.stat().st_size == message["file_reference"]["file_size_bytes"]
            check_audio(path)


# ----------------------------------------------------------------------------- sync_audit


def test_sync_audit_counts_the_files_of_each_window(tmp_path):
    calls = file_lists("app", n=30, voicemails=12)
    pending = calls["/v2/voicemail"][2]["voicename"]
    connector, staging = staged_connector(tmp_path)
    with simulator(calls, recording_sizes=4096, unpublished={pending: True}) as sim:
        run = connector.run("read", config_for(sim, "app"), files_catalog(AUDIT, "incoming_answered_calls")).ok()
        rows = run.records_of(AUDIT)
        mine = sorted((r for r in rows if r["stream"] == RECORDINGS), key=lambda r: r["window_start"])
        assert mine, "no audit row for recordings"
        lists = ("/v2/answered", "/v2/out_answered", "/v2/voicemail")
        for row in mine:
            first, last = row["window_start"], row["window_end"]
            assert row["telecmi_count"] == sum(len(sim.records(p, first - 1, last + 1)) for p in lists), row
    records = run.records_of(RECORDINGS)
    statuses = Counter(d["status"] for d in records)
    assert statuses == {"downloaded": len(records) - 1, "pending": 1}, statuses
    for row in mine:
        assert isinstance(row["files_downloaded"], int) and isinstance(row["files_pending"], int), row
        inside = [d for d in records if row["window_start"] <= d["time"] <= row["window_end"]]
        assert row["records_emitted"] == len(inside)
        assert row["files_downloaded"] == sum(d["status"] == "downloaded" for d in inside), row
        assert row["files_pending"] == sum(d["status"] == "pending" for d in inside), row
    assert sum(r["records_emitted"] for r in mine) == len(records)
    assert sum(r["files_downloaded"] for r in mine) == statuses["downloaded"]
    assert sum(r["files_pending"] for r in mine) == 1
    others = [r for r in rows if r["stream"] != RECORDINGS]
    assert others and all(r.get("files_downloaded") is None and r.get("files_pending") is None for r in others)
