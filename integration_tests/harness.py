"""One harness to run source-telecmi against the TeleCMI simulator.

Used by the integration and standard tests, the docs test, `make demo`, `make bench`, the image
test and the PyAirbyte test: it runs the connector (the `source-telecmi` command next to this
interpreter, or an image through a runner prefix), parses what it prints into a `Run`, writes
config, catalog and state files, builds configs for each kind of credentials and region, and
starts a simulator that accepts all of them.

    python -m integration_tests.harness image --workdir DIR -- RUNNER... ENTRYPOINT

runs spec, check, discover and an incremental read through `RUNNER... ENTRYPOINT VERB ARGS`, a
command that sees DIR at /data (scripts/image_test.sh passes a `buildah run` or `docker run`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airbyte_cdk.models import AirbyteMessage as CdkMessage
from airbyte_cdk.models import AirbyteMessageSerializer, Type
from airbyte_protocol.models import AirbyteMessage
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from integration_tests.telecmi_simulator import (
    ANSWERED,
    DEFAULT_USER_ID,
    GLOBAL_VOICEMAIL,
    INDIA_VOICEMAIL,
    MISSED,
    OUT_ANSWERED,
    OUT_MISSED,
    Simulator,
    generate_agents,
    generate_calls,
)
from integration_tests.telecmi_simulator.audio import file_sha256

COMMAND = str(Path(sys.executable).parent / "source-telecmi")
TOKEN = "integration-token-5f2c9a"
PASSWORD = "integration-password-77d1"
APP_ID = 1111112
APP_SECRET = "integration-app-secret-3e9f01"
SECRETS = (TOKEN, PASSWORD, APP_SECRET)
START, END = "2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"
START_MS, END_MS = 1764547200000, 1767225600000
DAY_MS = 86_400_000
STREAM = "outgoing_missed_calls"
USERS = "users"
# Each call stream and the path that serves it, per kind of credentials (users is not a call stream).
ENDPOINTS = {
    "outgoing_missed_calls": OUT_MISSED,
    "incoming_missed_calls": MISSED,
    "incoming_answered_calls": ANSWERED,
    "outgoing_answered_calls": OUT_ANSWERED,
}
ACCOUNT_ENDPOINTS = {
    "outgoing_missed_calls": "/v2/out_missed",
    "incoming_missed_calls": "/v2/missed",
    "incoming_answered_calls": "/v2/answered",
    "outgoing_answered_calls": "/v2/out_answered",
}
INDIA_ENDPOINTS = {
    "outgoing_missed_calls": "/v1/outmissed",
    "incoming_missed_calls": "/v1/missed",
    "incoming_answered_calls": "/v1/answered",
    "outgoing_answered_calls": "/v1/outanswered",
}
ALL_ENDPOINTS = (*ENDPOINTS.values(), *ACCOUNT_ENDPOINTS.values(), *INDIA_ENDPOINTS.values())
# Waits between retries are scaled down; request timeouts too, so a stalled API is seen quickly.
FAST_ENV = {"SOURCE_TELECMI_BACKOFF_SCALE": "0.001", "SOURCE_TELECMI_REQUEST_TIMEOUT": "2"}


def token_credentials() -> dict[str, Any]:
    return {"auth_type": "token", "token": TOKEN}


def login_credentials() -> dict[str, Any]:
    return {"auth_type": "login", "user_id": DEFAULT_USER_ID, "password": PASSWORD}


def app_credentials() -> dict[str, Any]:
    """App credentials as the spec types them: the app id as its digits (0.2's integer is migrated: migration.py)."""
    return {"auth_type": "app", "app_id": str(APP_ID), "app_secret": APP_SECRET}


# The kinds of config: credentials and region. "india" is app credentials on TeleCMI's Indian platform.
KINDS = {
    "token": lambda: {"credentials": token_credentials()},
    "login": lambda: {"credentials": login_credentials()},
    "app": lambda: {"credentials": app_credentials()},
    "india": lambda: {"credentials": app_credentials(), "region": "india"},
}


def endpoints(kind: str) -> dict[str, str]:
    """The call streams and the paths that serve them for a kind of config."""
    return {"app": ACCOUNT_ENDPOINTS, "india": INDIA_ENDPOINTS}.get(kind, ENDPOINTS)


def config(api_url: str, kind: str = "token", **overrides: Any) -> dict[str, Any]:
    """The config the tests, demo and bench use: all of December 2025, no lookback, 4 workers."""
    return {
        **KINDS[kind](),
        "start_date": START,
        "end_date": END,
        "api_url": api_url,
        "lookback_window_days": 0,
        "num_workers": 4,
        **overrides,
    }


def config_for(sim: Simulator, kind: str = "token", **overrides: Any) -> dict[str, Any]:
    """The config of `kind` for a running simulator; `overrides` may change any field, api_url too."""
    return {**config(sim.base_url, kind), **overrides}


def call_id(record: dict[str, Any]) -> str:
    """A call's key: `cmiuid`, which the connector copies from `_id` on the Indian platform."""
    return record.get("cmiuid") or record["_id"]


def calls_for(paths: Any = ALL_ENDPOINTS, n: int = 600, seed: int = 7, **kwargs: Any) -> dict[str, list[dict]]:
    """`n` calls in December 2025 for each path, each path with its own seed."""
    start, end = kwargs.pop("start_ms", START_MS), kwargs.pop("end_ms", END_MS - 1)
    return {path: generate_calls(n, start, end, seed=seed + i, endpoint=path, **kwargs) for i, path in enumerate(paths)}


def simulator(calls: dict[str, list[dict]] | None = None, **options: Any) -> Simulator:
    """A simulator (not started) accepting every credential above, with a dozen agents."""
    return Simulator(
        calls=calls,
        tokens=[TOKEN],
        users={DEFAULT_USER_ID: PASSWORD},
        apps={APP_ID: APP_SECRET},
        **{"agents": generate_agents(12, app_id=APP_ID), **options},
    )


def stream_entry(name: str) -> dict[str, Any]:
    """A stream as discover lists it, enough for a configured catalog."""
    if name == USERS:
        return {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh"]}
    return {
        "name": name,
        "json_schema": {},
        "supported_sync_modes": ["full_refresh", "incremental"],
        "source_defined_cursor": True,
        "default_cursor_field": ["time"],
    }


def configured(streams: list[dict[str, Any]], sync_mode: str = "incremental") -> dict[str, Any]:
    """A configured catalog of discovered streams: `sync_mode` where a stream supports it."""
    entries = []
    for stream in streams:
        mode = sync_mode if sync_mode in stream["supported_sync_modes"] else "full_refresh"
        entry = {"stream": stream, "sync_mode": mode, "destination_sync_mode": "append"}
        if mode == "incremental":
            entry["cursor_field"] = stream.get("default_cursor_field") or ["time"]
        if stream.get("source_defined_primary_key"):
            entry["primary_key"] = stream["source_defined_primary_key"]
        entries.append(entry)
    return {"streams": entries}


def catalog(sync_mode: str = "incremental", stream: str = STREAM, *more: str) -> dict[str, Any]:
    """A configured catalog of one or more streams, all in the same sync mode where supported."""
    return configured([stream_entry(name) for name in (stream, *more)], sync_mode)


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

    def records_of(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"]["data"] for m in self.of("RECORD") if m["record"]["stream"] == stream]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["state"] for m in self.of("STATE")]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [t["error"] for t in self.traces("ERROR")]

    def traces(self, kind: str) -> list[dict[str, Any]]:
        return [m["trace"] for m in self.of("TRACE") if m["trace"].get("type") == kind]

    @property
    def connection_status(self) -> dict[str, Any]:
        (status,) = [m["connectionStatus"] for m in self.of("CONNECTION_STATUS")]
        return status

    @property
    def streams(self) -> list[dict[str, Any]]:
        """The streams of the one CATALOG message (discover)."""
        (message,) = self.of("CATALOG")
        return message["catalog"]["streams"]

    @property
    def outside_config_control(self) -> str:
        """stdout and stderr but the CONTROL message of a config migration (CONNECTOR_CONFIG), the one line that holds
        the config's secrets, unmasked, by design (the platform stores its config): no other line may hold one."""
        kept = [line for line in self.stdout.split("\n") if not is_config_control(line)]
        return "\n".join(kept) + "\n" + self.stderr

    def logs(self, *levels: str) -> list[str]:
        return [m["log"]["message"] for m in self.of("LOG") if not levels or m["log"]["level"] in levels]

    def ok(self) -> Run:
        """This run, after checking it exited 0 without an error trace."""
        assert self.returncode == 0 and not self.errors, f"exit {self.returncode}: {self.errors or self.stderr[-2000:]}"
        return self


def parse(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be a protocol message, valid against the Airbyte protocol's own models."""
    messages = []
    for number, line in enumerate(stdout.split("\n"), 1):  # as a destination splits: at "\n" alone
        if not line.strip():
            continue
        try:
            AirbyteMessage.model_validate_json(line)
        except ValueError as invalid:
            raise AssertionError(
                f"stdout line {number} is not a valid AirbyteMessage ({invalid}): {line[:300]}"
            ) from None
        messages.append(json.loads(line))
    return messages


def is_config_control(line: str) -> bool:
    """Whether a stdout line is a CONTROL message of type CONNECTOR_CONFIG."""
    if not line.startswith('{"type":"CONTROL"'):
        return False
    control = json.loads(line).get("control") or {}
    return control.get("type") == "CONNECTOR_CONFIG"


_SCHEMAS: dict[str, dict[str, Draft7Validator]] = {}


def schemas_of(config: dict[str, Any]) -> dict[str, Draft7Validator]:
    """A validator per stream of the schemas discover declares for this kind of config (discovered in-process)."""
    credentials = config.get("credentials") or {}
    key = f"{credentials.get('auth_type')}-{config.get('region') or 'global'}"
    if key not in _SCHEMAS:
        from source_telecmi import SourceTelecmi

        catalog = SourceTelecmi().discover(logging.getLogger("airbyte.harness"), config)
        _SCHEMAS[key] = {s.name: Draft7Validator(s.json_schema) for s in catalog.streams}
    return _SCHEMAS[key]


def check_records(run: Run, config: dict[str, Any]) -> None:
    """Every record of a run matches the schema discover declares for its stream."""
    validators = schemas_of(config)
    for message in run.of("RECORD"):
        stream, data = message["record"]["stream"], message["record"]["data"]
        assert stream in validators, f"a record of {stream}, which discover does not declare"
        error = best_match(validators[stream].iter_errors(data))
        assert error is None, f"a {stream} record does not match its schema: {error.message} at {list(error.path)}"


def state_messages(run: Run) -> list[dict[str, Any]]:
    """The last state of a run, as the platform would hand it to the next run."""
    return [run.states[-1]] if run.states else []


def last_states(run: Run) -> list[dict[str, Any]]:
    """The last state of each stream, as a state file for the next run."""
    return list({json.dumps(s["stream"]["stream_descriptor"]): s for s in run.states}.values())


@dataclass
class Connector:
    """Writes config, catalog and state files into `workdir` and runs the connector on them.

    `prefix` is the command (default: the `source-telecmi` next to this interpreter); an image
    runner that mounts `workdir` elsewhere gives that place as `files_at`. `fast` shortens the
    connector's waits (FAST_ENV).
    """

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=lambda: [COMMAND])
    files_at: str | None = None
    fast: bool = True
    validate: bool = True  # every record checked against its discovered schema (the bench turns it off)

    def write(self, name: str, content: Any) -> str:
        path = Path(self.workdir) / name
        path.write_text(json.dumps(content, indent=1))
        return f"{self.files_at}/{name}" if self.files_at else str(path)

    def args(self, verb: str, config: dict, catalog: dict | None, state: list | None) -> list[str]:
        args = [*self.prefix, verb]
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
        config: dict | None = None,
        catalog: dict | None = None,
        state: list | None = None,
        debug: bool = False,
        timeout: float = 120,
    ) -> Run:
        args = self.args(verb, config or {}, catalog, state) + (["--debug"] if debug else [])
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=self.environment())
        run = Run(done.returncode, parse(done.stdout), done.stdout, done.stderr)
        if verb == "read" and self.validate:
            check_records(run, config or {})
        return run

    def start(self, verb: str, config: dict, catalog: dict, state: list | None = None) -> subprocess.Popen:
        """Start a run whose output the caller reads as it comes (to kill it mid-way)."""
        return subprocess.Popen(
            self.args(verb, config, catalog, state),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.environment(),
        )

    def killed_after(self, states: int, config: dict, catalog: dict) -> tuple[list[dict], list[dict]]:
        """Start a read and kill it at its `states`-th checkpoint after a record: (records, states) it emitted."""
        process = self.start("read", config, catalog)
        emitted: list[dict] = []
        seen: list[dict] = []
        for line in process.stdout or ():
            message = json.loads(line)
            if message["type"] == "RECORD":
                emitted.append(message["record"]["data"])
            elif message["type"] == "STATE" and emitted:
                seen.append(message["state"])
                if len(seen) == states:
                    process.kill()
                    break
        process.wait()
        return emitted, seen

    def environment(self) -> dict[str, str]:
        return {**os.environ, **(FAST_ENV if self.fast else {}), **self.env}


def prove(
    connector: Connector, kind: str, calls: dict[str, list[dict]], sim: Simulator, staging: Path | None = None
) -> list[str]:
    """spec, check, discover and an incremental read of every stream, each call exactly once.

    With `staging` (the host folder mounted as the connector's staging folder, /staging/files in an
    image), the files of streams that have them are asked for too, and each must be there, whole,
    and readable by any user (the destination reads them as its own user).
    Returns a line per step; raises AssertionError with the reason when a step is wrong,
    including when any secret of the harness appears in any output.
    """
    started, lines, runs = time.monotonic(), [], []

    def step(verb: str, **kwargs: Any) -> Run:
        run = connector.run(verb, timeout=300, **kwargs)
        runs.append(run)
        return run.ok()

    spec = step("spec").of("SPEC")[0]["spec"]["connectionSpecification"]
    lines.append(f"spec: {len(spec['properties'])} settings")
    cfg = config_for(sim, kind)
    status = step("check", config=cfg).connection_status
    assert status["status"] == "SUCCEEDED", status
    lines.append("check: SUCCEEDED")
    streams = step("discover", config=cfg).streams
    names = sorted(s["name"] for s in streams)
    assert set(endpoints(kind)) <= set(names), names
    lines.append(f"discover: {', '.join(names)}")
    chosen = configured(streams)
    for entry in chosen["streams"]:
        entry["include_files"] = staging is not None and entry["stream"].get("is_file_based", False)
    read = step("read", config=cfg, catalog=chosen)
    if staging is not None and any(s.get("is_file_based") for s in streams):
        lines.append(staged_files(read, sim, staging, kind))
    for stream, path in endpoints(kind).items():
        got = sorted(call_id(r) for r in read.records_of(stream))
        assert got == sorted(call_id(c) for c in calls.get(path, [])), f"{stream}: not every call exactly once"
    if USERS in names:
        users = read.records_of(USERS)
        assert users and not any("password" in u for u in users), "users missing, or with a password"
    assert read.states, "no STATE message"
    lines.append(f"read: {len(read.records)} records exactly once, {len(read.states)} states, incremental")
    leaks = [s for s in SECRETS for r in runs if s in r.stdout or s in r.stderr]
    assert not leaks, "a secret appears in the output"
    lines.append(f"secrets: none in any output ({time.monotonic() - started:.1f} s)")
    return lines


def staged_files(read: Run, sim: Simulator, staging: Path, kind: str) -> str:
    """Every file the lists of `kind` name delivered once, whole, where its record says, readable by any user."""
    records = [m["record"] for m in read.of("RECORD") if m["record"]["stream"] == "recordings"]
    india = kind == "india"
    lists = {*endpoints(kind).values(), INDIA_VOICEMAIL if india else GLOBAL_VOICEMAIL}
    held = sorted(name for name, r in sim.recordings("india" if india else "global").items() if r.path in lists)
    assert held and sorted(r["data"]["file"] for r in records) == held, "not every file exactly once"
    for record in records:
        data, reference = record["data"], record.get("file_reference") or {}
        assert data["status"] == "downloaded", data
        relative = reference.get("source_file_relative_path", "")
        assert reference.get("staging_file_url", "").endswith("/" + relative), reference
        path = staging / relative
        assert path.stat().st_size == data["file_size_bytes"] == sim.recording_size(data["file"]), relative
        assert file_sha256(path) == data["sha256"] == sim.recording_sha256(data["file"]), f"{relative}: hash"
        for place in (path, *path.relative_to(staging).parents):
            mode = (staging / place).stat().st_mode
            wanted = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
            assert mode & wanted == wanted, f"{place} is {stat.filemode(mode)}: another user cannot read it"
    leftovers = [p.name for p in staging.rglob("*.partial")]
    assert not leftovers, f"partial files left behind: {leftovers}"
    return f"files: {len(records)} staged whole, hashes as TeleCMI's, readable by another user"


def merged_slices(state: dict[str, Any]) -> list[tuple]:
    """The finished ranges of a window stream's state (the CDK's date-range slices), merged where they meet:
    (first, last, newest record seen or None)."""
    merged: list[list] = []
    for piece in sorted(state.get("slices", []), key=lambda s: (int(s["start"]), int(s["end"]))):
        newest = piece.get("most_recent_cursor_value")
        newest = int(newest) if newest is not None else None
        if merged and int(piece["start"]) <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], int(piece["end"]))
            if newest is not None:
                merged[-1][2] = newest if merged[-1][2] is None else max(merged[-1][2], newest)
        else:
            merged.append([int(piece["start"]), int(piece["end"]), newest])
    return [tuple(m) for m in merged]


def reread_from(state: dict[str, Any], lookback_ms: int = 0) -> int | None:
    """Where an incremental sync from a window stream's `state` starts reading again what was read: after the newest
    record of the last finished range, less the lookback, from the start of the window of the state's audit trail
    (the last sync's windows) that holds that point; the point itself where no window of the trail holds it (0.3's
    states have no trail). None without a finished range."""
    finished = merged_slices(state)
    if not finished:
        return None
    first, _, newest = finished[-1]
    point = (newest if newest is not None else first - 1) - lookback_ms + 1
    windows = (state.get("audit_trail") or {}).get("windows") or []
    return next((int(a) for a, b in windows if int(a) <= point <= int(b)), point)


@functools.cache
def discovered(kind: str) -> dict[str, dict[str, Any]]:
    """The streams discover declares for a kind of config, by name (discovered in-process: no request)."""
    from source_telecmi import SourceTelecmi

    catalog = SourceTelecmi().discover(logging.getLogger("airbyte.harness"), config("http://127.0.0.1:9", kind))
    message = AirbyteMessageSerializer.dump(CdkMessage(type=Type.CATALOG, catalog=catalog))
    return {stream["name"]: stream for stream in message["catalog"]["streams"]}


def catalog_of(kind: str, mode: str, *names: str) -> dict[str, Any]:
    """A configured catalog of discovered streams, in `mode` where they support it."""
    return configured([discovered(kind)[name] for name in names], mode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integration_tests.harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    image = sub.add_parser("image", help="prove an image: spec, check, discover, read, no secret printed")
    image.add_argument("--workdir", required=True, help="a folder the runner mounts at /data")
    image.add_argument("--kinds", default="token,app", help="configs to prove, of " + ",".join(KINDS))
    image.add_argument("--staging", help="the host folder the runner mounts as the staging folder (/staging/files)")
    image.add_argument("runner", nargs=argparse.REMAINDER, help="-- RUNNER... ENTRYPOINT")
    args = parser.parse_args(argv)
    runner = args.runner[1:] if args.runner[:1] == ["--"] else args.runner
    workdir = Path(args.workdir)
    workdir.chmod(0o755)  # the image's non-root user reads the files written here
    calls = calls_for(n=50, seed=20251201)
    staging = Path(args.staging) if args.staging else None
    with simulator(calls) as sim:
        for kind in args.kinds.split(","):
            try:
                lines = prove(Connector(workdir, prefix=runner, files_at="/data"), kind, calls, sim, staging)
            except AssertionError as error:
                print(f"{kind}: FAILED: {error}", file=sys.stderr)
                return 1
            print("\n".join(f"{kind:>6} {line}" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
