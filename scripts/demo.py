"""`make demo`: the connector against the TeleCMI simulator, spec to read, in a short summary.

Runs the real `source-telecmi` command, as Airbyte would, against a simulator on 127.0.0.1 with a
month of calls: first account-wide (app credentials: every call with its agent, the voicemails,
the users, TeleCMI's daily totals, the balance, the recordings as files with their hashes and the
sync's audit), then one user's calls (login). The config, catalog and state of each are left in .demo/.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root

from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    END_MS,
    ENDPOINTS,
    START_MS,
    USERS,
    Connector,
    calls_for,
    config_for,
    configured,
    last_states,
    simulator,
)
from integration_tests.telecmi_simulator import GLOBAL_VOICEMAIL, generate_calls, generate_voicemails

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"


def show(sim, kind: str, paths: dict[str, str]) -> None:
    staging = DEMO / kind / "staging"  # where Airbyte mounts the folder the destination copies files from
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    connector = Connector(DEMO / kind, fast=False, env={"AIRBYTE_STAGING_DIRECTORY": str(staging)})
    connector.workdir.mkdir(parents=True, exist_ok=True)
    config = config_for(sim, kind, num_workers=8)
    status = connector.run("check", config).ok().connection_status
    print(f"  check     {status['status']} {status.get('message') or ''}".rstrip())
    streams = connector.run("discover", config).ok().streams
    print(f"  discover  {len(streams)} streams: {', '.join(s['name'] for s in streams)}")
    catalog = configured(streams)
    for entry in catalog["streams"]:
        entry["include_files"] = entry["stream"].get("is_file_based", False)  # the audio too, not only its records
    sim.stats.reset()
    started = time.monotonic()
    read = connector.run("read", config, catalog).ok()
    elapsed = time.monotonic() - started
    calls = [r for s in paths for r in read.records_of(s)]
    users = read.records_of(USERS)
    print(
        f"  read      {len(calls)} calls ({len({c['cmiuid'] for c in calls})} unique)"
        f"{f', {len(users)} users' if users else ''} in {elapsed:.1f} s, {sim.stats.requests} requests, "
        f"{len(read.states)} checkpoints, one stream after the other"
    )
    for stream in paths:
        print(f"            {stream:<24}{len(read.records_of(stream)):>5}")
    if users:
        names = {u["agent_id"]: f"{u.get('first_name', '')} {u.get('last_name', '')}".strip() for u in users}
        print(f"  users     {', '.join(list(names.values())[:4])}, ... (fields: {', '.join(users[0])}; no password)")
        per_agent = Counter(c.get("agent") for c in calls).most_common(3)
        print("  by agent  " + ", ".join(f"{names.get(a, a)} ({a}) {n}" for a, n in per_agent) + ", ...")
    keys = ("started_at", "direction", "status", "agent", "from", "to", "duration")
    print(f"  a call    {', '.join(f'{k}={calls[0][k]}' for k in keys if calls[0].get(k) is not None)}")
    voicemails = read.records_of("voicemails")
    if voicemails:
        newest = max(voicemails, key=lambda v: v["time"])
        print(f"  voicemail {len(voicemails)} to call back; the newest from {newest['from']} at {newest['started_at']}")
    totals = sorted(read.records_of("daily_call_totals"), key=lambda d: d["day"])
    if totals:
        days = ", ".join(f"{d['day']} {d['answered']}/{d['total']}" for d in totals[-4:-1])
        print(f"  totals    TeleCMI's own, answered/total per day: ..., {days} ({len(totals)} days)")
    for balance in read.records_of("account_balance"):
        print(f"  balance   {balance['balance']} credit, {balance['sms']} SMS, expires {balance['expires_at']}")
    show_recordings(read, sim, staging)
    audit = read.records_of("sync_audit")
    if audit:
        complete = sum(r["verdict"] == "complete" for r in audit)
        emitted = sum(r["records_emitted"] for r in audit)
        print(
            f"  audit     {len(audit)} windows, {complete} complete against TeleCMI's counts, "
            f"{emitted} records accounted for, 0 extra requests"
        )
    new_calls = generate_calls(25, END_MS + 1, END_MS + 43_200_000, seed=99, endpoint=paths["outgoing_missed_calls"])
    sim.add_calls(paths["outgoing_missed_calls"], new_calls)
    config["end_date"] = "2026-01-02T00:00:00Z"
    again = connector.run("read", config, catalog, last_states(read)).ok()
    got = sum(len(again.records_of(stream)) for stream in paths)
    lookback = config.get("lookback_window_days", 1)
    print(
        f"  again     from the saved state, after 25 new calls: {got} calls: the new ones, and per stream "
        f"the last {lookback} day(s) and the window holding that point read again (late calls, notes)"
    )


def show_recordings(read, sim, staging: Path) -> None:
    """The recordings delivered: whole files in the staging folder, each hashing as its record says."""
    files = [m["record"] for m in read.of("RECORD") if m["record"]["stream"] == "recordings"]
    if not files:
        return
    statuses = Counter(f["data"]["status"] for f in files)
    whole = 0
    for f in files:
        reference = f.get("file_reference")
        if reference:
            digest = hashlib.sha256(Path(reference["staging_file_url"]).read_bytes()).hexdigest()
            whole += digest == f["data"]["sha256"] == sim.recording_sha256(f["data"]["file"])
    staged = sum(f["data"]["file_size_bytes"] or 0 for f in files)
    print(
        f"  recordings {len(files)} files ({', '.join(f'{n} {s}' for s, n in statuses.items())}), "
        f"{staged / 2**20:.1f} MiB staged in {staging.relative_to(ROOT)}; {whole} hash as their records and "
        "TeleCMI's files say"
    )
    newest = max(files, key=lambda f: f["data"]["time"] or 0)
    data, reference = newest["data"], newest.get("file_reference") or {}
    print(
        f"            the newest: {reference.get('source_file_relative_path', data['file'])} "
        f"({data['kind']} of {data['call_stream']}, {data['file_size_bytes']} bytes, sha256 {data['sha256'][:16]}...)"
    )


def main() -> None:
    calls = calls_for([*ACCOUNT_ENDPOINTS.values(), *ENDPOINTS.values()], n=500, seed=1)
    calls[GLOBAL_VOICEMAIL] = generate_voicemails(60, START_MS, END_MS - 1, seed=1)
    with simulator(calls, latency_ms=20, recording_sizes=lambda name: 24_000 + len(name) * 1_000) as sim:
        print(f"TeleCMI simulator on {sim.base_url}: a month of calls, 12 agents, 20 ms per request")
        spec = Connector(DEMO).run("spec").ok().of("SPEC")[0]["spec"]["connectionSpecification"]
        print(f"spec: {len(spec['properties'])} settings: {', '.join(spec['properties'])}\n")
        print("The whole account (app id and secret: what a team uses)")
        show(sim, "app", ACCOUNT_ENDPOINTS)
        print("\nOne user (user id and password)")
        show(sim, "login", ENDPOINTS)
    where = DEMO.relative_to(ROOT)
    print(f"\nConfigs, catalogs and states are in {where}/app and {where}/login. `make test` tests it all.")


if __name__ == "__main__":
    main()
