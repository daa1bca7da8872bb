"""`make demo`: the connector against the TeleCMI simulator, spec to read, with a short readable summary.

Runs the real `source-telecmi` command, as Airbyte would, against a simulator on 127.0.0.1 holding
a month of calls for each of the four endpoints. Files it writes are left in .demo/ to look at.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration_tests.telecmi_simulator import (  # noqa: E402
    CDR_ENDPOINTS,
    DEFAULT_TOKEN,
    Simulator,
    generate_calls,
)

COMMAND = str(Path(sys.executable).parent / "source-telecmi")
DEMO = ROOT / ".demo"
START, END = "2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"
START_MS, END_MS = 1764547200000, 1767225600000
DAY_MS = 86_400_000


def run(verb: str, *args: str) -> list[dict]:
    done = subprocess.run([COMMAND, verb, *args], capture_output=True, text=True)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    errors = [
        m["trace"]["error"]["message"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"
    ]
    if done.returncode != 0 or errors:
        sys.exit(f"source-telecmi {verb} failed: {errors or done.stderr[-2000:]}")
    return messages


def of(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["type"] == kind]


def main() -> None:
    DEMO.mkdir(exist_ok=True)
    calls = {
        endpoint: generate_calls(400 + 150 * i, START_MS, END_MS - 1, seed=i, endpoint=endpoint)
        for i, endpoint in enumerate(CDR_ENDPOINTS)
    }
    with Simulator(calls=calls, tokens=[DEFAULT_TOKEN], latency_ms=20) as sim:
        print(
            f"TeleCMI simulator on {sim.base_url}: {sum(map(len, calls.values()))} calls in {len(calls)} endpoints, 20 ms per request\n"
        )
        config = {
            "credentials": {"auth_type": "token", "token": DEFAULT_TOKEN},
            "start_date": START,
            "end_date": END,
            "api_url": sim.base_url,
            "lookback_window_days": 0,
            "num_workers": 8,
        }
        config_path = DEMO / "config.json"
        config_path.write_text(json.dumps(config, indent=2))

        spec = of(run("spec"), "SPEC")[0]["spec"]["connectionSpecification"]
        print(f"spec      {len(spec['properties'])} settings: {', '.join(spec['properties'])}")

        status = of(run("check", "--config", str(config_path)), "CONNECTION_STATUS")[0]["connectionStatus"]
        print(f"check     {status['status']} {status.get('message') or ''}".rstrip())

        streams = of(run("discover", "--config", str(config_path)), "CATALOG")[0]["catalog"]["streams"]
        print(f"discover  {len(streams)} streams: {', '.join(s['name'] for s in streams)}")
        catalog = {
            "streams": [
                {
                    "stream": s,
                    "sync_mode": "incremental",
                    "cursor_field": ["time"],
                    "destination_sync_mode": "append_dedup",
                    "primary_key": [["cmiuid"]],
                }
                for s in streams
            ]
        }
        catalog_path = DEMO / "catalog.json"
        catalog_path.write_text(json.dumps(catalog, indent=2))

        started = time.monotonic()
        first = run("read", "--config", str(config_path), "--catalog", str(catalog_path))
        elapsed = time.monotonic() - started
        records = of(first, "RECORD")
        per_stream = Counter(m["record"]["stream"] for m in records)
        unique = len({(m["record"]["stream"], m["record"]["data"]["cmiuid"]) for m in records})
        print(
            f"read      {len(records)} calls ({unique} unique) in {elapsed:.1f} s, {sim.stats.requests} requests, "
            f"{len(of(first, 'STATE'))} checkpoints"
        )
        for name, count in per_stream.items():
            print(f"            {name:<26} {count:>5}")
        sample = records[0]["record"]["data"]
        print(f"          a call: {json.dumps(sample)[:200]}...")

        states = {}
        for message in of(first, "STATE"):
            states[message["state"]["stream"]["stream_descriptor"]["name"]] = message["state"]
        state_path = DEMO / "state.json"
        state_path.write_text(json.dumps(list(states.values()), indent=2))

        sim.add_calls(CDR_ENDPOINTS[0], generate_calls(25, END_MS + 1, END_MS + DAY_MS // 2, seed=99))
        config["end_date"] = "2026-01-02T00:00:00Z"
        config_path.write_text(json.dumps(config, indent=2))
        second = run("read", "--config", str(config_path), "--catalog", str(catalog_path), "--state", str(state_path))
        print(f"read      again from the saved state, after 25 new calls: {len(of(second, 'RECORD'))} calls read")
    print(
        f"\nThe config, catalog and state used are in {DEMO.relative_to(ROOT)}/. `make test` runs the full test suite."
    )


if __name__ == "__main__":
    main()
