"""Benchmark of 0.3's lists: streams one at a time, a year of daily totals, and the audit's cost.

Runs the real `source-telecmi read` against the simulator (in this process), production waits, and
prints figures against the issues' targets; it asserts nothing about speed, but exits 1 if a run
fails or does not read every record exactly once.

  p  five streams account-wide (the four call lists and voicemails, 8,000 records each over 30
     days), 100 ms latency, 8 workers, full refresh: one stream at a time, as the connector reads
  q  the same, all five streams at once (0.2's interleaved read): (p)'s wall time within 10% of it
  r  a year of daily_call_totals (366 days), 100 ms: against one request at a time, start-up included
  s  20,000 calls of one stream, 0 ms, with sync_audit selected: the same requests as without (t),
     CPU within 5%
  t  the same without sync_audit

    .venv/bin/python scripts/bench_lists.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root

from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    COMMAND,
    DAY_MS,
    FAST_ENV,
    START_MS,
    catalog,
    config,
    simulator,
)
from integration_tests.telecmi_simulator import GLOBAL_VOICEMAIL, generate_calls, generate_voicemails

START = "2025-12-01T00:00:00Z"
LATENCY_MS = 100


def run(sim, cfg: dict, streams: list[str], env: dict[str, str] | None = None) -> dict:
    """One read through the real command: wall and CPU time, records per stream, requests, and what was wrong."""
    with tempfile.TemporaryDirectory(prefix="telecmi-bench-") as workdir:
        Path(workdir, "config.json").write_text(json.dumps(cfg))
        Path(workdir, "catalog.json").write_text(json.dumps(catalog("full_refresh", *streams)))
        argv = [COMMAND, "read", "--config", f"{workdir}/config.json", "--catalog", f"{workdir}/catalog.json"]
        environment = {k: v for k, v in os.environ.items() if k not in FAST_ENV} | (env or {})
        sim.stats.reset()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=900)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    records: Counter = Counter()
    keys: dict[str, set] = {}
    problems = [] if done.returncode == 0 else [f"exit {done.returncode}: {done.stderr[-500:]}"]
    for line in done.stdout.removesuffix("\n").split("\n") if done.stdout else []:  # at "\n" alone, as a destination
        message = json.loads(line)
        if message["type"] == "RECORD":
            stream, data = message["record"]["stream"], message["record"]["data"]
            records[stream] += 1
            key = (data["stream"], data["window_start"]) if stream == "sync_audit" else None
            key = key or data.get("cmiuid") or data.get("voicename") or data.get("day")
            keys.setdefault(stream, set()).add(key)
        elif message["type"] == "TRACE" and message["trace"]["type"] == "ERROR":
            problems.append(message["trace"]["error"]["message"][:300])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    twice = [s for s, n in records.items() if n != len(keys[s])]
    problems += [f"{s}: a record emitted twice" for s in twice]
    return {"wall": wall, "cpu": cpu, "records": dict(records), "requests": sim.stats.requests, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the records, for a smoke test")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    failed = False
    rows = []

    # (p) and (q): five streams, one at a time and all at once.
    n = 8_000 // scale
    end_ms = START_MS + 30 * DAY_MS
    data = {
        path: generate_calls(n, START_MS, end_ms - 1, seed=300 + i, endpoint=path)
        for i, path in enumerate(ACCOUNT_ENDPOINTS.values())
    }
    data[GLOBAL_VOICEMAIL] = generate_voicemails(n, START_MS, end_ms - 1, seed=310)
    streams = [*ACCOUNT_ENDPOINTS, "voicemails"]
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_ms / 1000))
    with simulator(data, latency_ms=LATENCY_MS) as sim:
        cfg = config(sim.base_url, "app", start_date=START, end_date=end, num_workers=8)
        one = run(sim, cfg, streams)
        once = run(sim, cfg, streams, {"SOURCE_TELECMI_STREAMS_AT_ONCE": "1"})
    for result in (one, once):
        if any(result["records"].get(s) != n for s in streams):
            result["problems"].append(f"records per stream {result['records']}, want {n} each")
    ratio = one["wall"] / once["wall"]
    rows.append(("p", "five streams one at a time, 8,000 each, 100 ms", one, f"{one['wall']:.1f} s", ""))
    rows.append(
        ("q", "the same, interleaved (0.2)", once, f"{once['wall']:.1f} s", f"(p) is **{ratio:.2f}x** of it; <= 1.10")
    )

    # (r) a year of daily totals at 100 ms.
    year_calls = {ACCOUNT_ENDPOINTS["incoming_answered_calls"]: []}
    with simulator(year_calls, latency_ms=LATENCY_MS) as sim:
        cfg = config(sim.base_url, "app", start_date="2025-01-01", end_date="2026-01-01T00:00:00Z", num_workers=8)
        year = run(sim, cfg, ["daily_call_totals"])
    days = year["records"].get("daily_call_totals", 0)
    if days != 366:
        year["problems"].append(f"{days} days of totals, want 366")
    speedup = year["requests"] * LATENCY_MS / 1000 / year["wall"]
    rows.append(
        (
            "r",
            "a year of daily_call_totals, 100 ms",
            year,
            f"{year['wall']:.1f} s",
            f"**{speedup:.1f}x** one at a time; >= 6x",
        )
    )

    # (s) and (t): the audit's cost.
    n = 20_000 // scale
    path = ACCOUNT_ENDPOINTS["outgoing_missed_calls"]
    with simulator({path: generate_calls(n, START_MS, end_ms - 1, seed=320, endpoint=path)}) as sim:
        cfg = config(sim.base_url, "app", start_date=START, end_date=end, num_workers=8)
        without = [run(sim, cfg, ["outgoing_missed_calls"]) for _ in range(3)]
        with_audit = [run(sim, cfg, ["outgoing_missed_calls", "sync_audit"]) for _ in range(3)]
    best = {"s": min(with_audit, key=lambda r: r["cpu"]), "t": min(without, key=lambda r: r["cpu"])}
    extra = best["s"]["requests"] - best["t"]["requests"]
    cpu = best["s"]["cpu"] / best["t"]["cpu"] - 1
    rows.append(
        (
            "s",
            "20,000 calls with sync_audit, 0 ms",
            best["s"],
            f"{best['s']['cpu']:.2f} CPU-s",
            f"{extra} extra requests, CPU **{cpu:+.1%}**; 0, <= 5%",
        )
    )
    rows.append(("t", "the same without sync_audit (best of 3)", best["t"], f"{best['t']['cpu']:.2f} CPU-s", ""))

    print("| scenario | requests | wall | result | target |")
    print("|---|---|---|---|---|")
    for key, what, result, measured, against in rows:
        print(f"| ({key}) {what} | {result['requests']:,} | {result['wall']:.1f} s | {measured} | {against} |")
        for problem in result["problems"]:
            failed = True
            print(f"  ({key}) FAILED: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
