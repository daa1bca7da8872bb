"""Benchmark of the recordings stream's files: downloads in parallel, memory on a large file, requests per sync.

Runs the real `source-telecmi read` of `recordings` (app credentials, `include_files` on, production
waits) against the simulator in this process, through scripts/bench.py's wrapper, so wall time, CPU
time and peak RSS are the connector's own. Files are staged in a temporary directory removed after
each run. Every run must exit 0, emit each file of the simulator exactly once as `downloaded`, with
a `file_reference` to a staged file of the size served under recordings/YYYY/MM/DD/, and print the
stream's INFO line on its files; otherwise this script exits 1. It prints figures against the
targets; it asserts nothing about speed or memory.

  t  500 files of 1 MB (500 answered calls), 100 ms latency: num_workers 8 against 1 (one at a
     time); the parallel run within 1/5 of the sequential one's wall time
  u  peak RSS of the connector while it downloads one 500 MB file (among 19 small ones), 0 ms:
     under 200 MiB
  v  (t)'s parallel run: bytes staged and files per second, and requests per sync (list pages,
     one play request per file, retries) against the number of files

    .venv/bin/python scripts/bench_files.py [--only t,u,v] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root

from integration_tests.harness import (
    COMMAND,
    END_MS,
    FAST_ENV,
    START_MS,
    catalog,
    config_for,
    simulator,
)
from integration_tests.telecmi_simulator import PLAY_PATH, file_sha256, generate_calls
from scripts.bench import WRAPPER, loads

ANSWERED = "/v2/answered"  # account-wide incoming answered calls: each has a file
STREAM = "recordings"
MB = 1_000_000
MIB = 2**20
LATENCY_MS = 100
FILES = 500  # (t)
BIG = 500 * MB  # (u)
SUMMARY = re.compile(r"^Stream recordings: (\d+) files downloaded, (\d+) bytes \(.*?\) staged under (.*?);")


def files_catalog() -> dict:
    """The recordings stream, incremental, with its files."""
    cat = catalog("incremental", STREAM)
    cat["streams"][0]["include_files"] = True
    return cat


def free_bytes(path: str) -> int:
    return shutil.disk_usage(path).free


def sync(sim, workers: int, timeout: float, sha_sample: int = 0) -> dict:
    """One read of `recordings` with its files through the wrapper: measures, stats, and what was wrong.

    Checks every record against the simulator's files; the SHA-256 of `sha_sample` staged files (the
    largest first) against the simulator's."""
    cfg = config_for(sim, "app", num_workers=workers)
    expected = {name: r.size for name, r in sim.recordings("global").items()}
    env = {k: v for k, v in os.environ.items() if k not in FAST_ENV}  # production waits and timeouts
    out: dict = {"problems": [], "files": 0, "bytes": 0, "summary": None}
    with (
        tempfile.TemporaryDirectory(prefix="telecmi-bench-") as workdir,
        tempfile.TemporaryDirectory(prefix="telecmi-staging-", dir=workdir) as staging,
    ):
        Path(workdir, "config.json").write_text(json.dumps(cfg))
        Path(workdir, "catalog.json").write_text(json.dumps(files_catalog()))
        usage_path, stderr_path = f"{workdir}/usage.json", f"{workdir}/stderr.txt"
        argv = [COMMAND, "read", "--config", f"{workdir}/config.json", "--catalog", f"{workdir}/catalog.json"]
        sim.stats.reset()
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", WRAPPER, usage_path, *argv],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**env, "AIRBYTE_STAGING_DIRECTORY": staging},
            )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        records: list[tuple[dict, dict | None]] = []
        for line in process.stdout:
            message = loads(line)
            if message["type"] == "RECORD" and message["record"]["stream"] == STREAM:
                records.append((message["record"]["data"], message["record"].get("file_reference")))
            elif message["type"] == "LOG" and SUMMARY.match(message["log"]["message"]):
                out["summary"] = message["log"]["message"]
            elif message["type"] == "TRACE" and message["trace"]["type"] == "ERROR":
                out["problems"].append(f"error trace: {message['trace']['error']['message'][:300]}")
        process.wait()
        watchdog.cancel()
        stats = sim.stats
        out.update(
            requests=stats.requests,
            by_path=dict(stats.by_path),
            refused=stats.rate_limited,
            faults=stats.faults_served,
            unpublished=stats.unpublished_served,
            max_in_flight=stats.max_in_flight,
            bytes_sent=stats.bytes_sent,
        )
        if not os.path.exists(usage_path):
            out["problems"].insert(0, f"killed after {timeout:g} s")
            return out
        out.update(json.loads(Path(usage_path).read_text()))
        if out["returncode"]:
            out["problems"] += [f"exit {out['returncode']}", Path(stderr_path).read_text()[-1500:]]
        out["problems"] += check(records, expected, staging, out)
        largest = sorted(expected, key=lambda name: (-expected[name], name))[:sha_sample]
        for data, ref in records:
            if data["file"] in largest and ref and os.path.exists(ref["staging_file_url"]):
                staged = file_sha256(ref["staging_file_url"])
                if staged != data.get("sha256") or staged != sim.recording_sha256(data["file"]):
                    out["problems"].append(f"{data['file']}: staged SHA-256 is not the file's")
        out["hashed"] = len(largest)
    # The staging directory is gone: the files it held are no longer on disk.
    return out


def check(records: list[tuple[dict, dict | None]], expected: dict[str, int], staging: str, out: dict) -> list[str]:
    """Each file once, downloaded, staged whole under recordings/YYYY/MM/DD/; the INFO line agrees."""
    problems, seen = [], {}
    for data, ref in records:
        name = data["file"]
        seen[name] = seen.get(name, 0) + 1
        if data.get("status") != "downloaded" or ref is None:
            problems.append(f"{name}: status {data.get('status')}, file_reference {ref}")
            continue
        day = (data.get("started_at") or "")[:10].replace("-", "/")
        if ref["source_file_relative_path"] != f"recordings/{day}/{name}":
            problems.append(f"{name}: staged as {ref['source_file_relative_path']}, not recordings/{day}/{name}")
        path = Path(ref["staging_file_url"])
        size = path.stat().st_size if path.exists() else None
        if not (size == expected.get(name) == ref["file_size_bytes"] == data.get("file_size_bytes")):
            problems.append(f"{name}: {size} bytes staged, {expected.get(name)} served, reference {ref}")
        elif Path(staging) not in path.parents:
            problems.append(f"{name}: staged at {path}, outside {staging}")
        else:
            out["files"] += 1
            out["bytes"] += size
    if set(seen) != set(expected) or any(n != 1 for n in seen.values()):
        problems.append(
            f"{len(records)} records of {len(seen)} files; want {len(expected)} once each "
            f"({len(set(expected) - set(seen))} missing, {len(set(seen) - set(expected))} unknown)"
        )
    summary = SUMMARY.match(out["summary"] or "")
    if summary is None:
        problems.append("no INFO line 'Stream recordings: N files downloaded, B bytes ... staged under ...'")
    elif (int(summary[1]), int(summary[2]), summary[3]) != (out["files"], out["bytes"], staging):
        problems.append(f"the INFO line says {summary.groups()}; staged: {out['files']} files, {out['bytes']} bytes")
    return problems[:10]


def answered_calls(n: int, seed: int) -> dict[str, list[dict]]:
    """`n` answered calls over December, each with a file (record "true"), and nothing else."""
    return {ANSWERED: generate_calls(n, START_MS, END_MS - 1, seed=seed, endpoint=ANSWERED)}


def verdict(r: dict, meets: bool) -> str:
    return "FAILED: " + "; ".join(r["problems"]) if r["problems"] else ("meets" if meets else "MISSES")


def line(key: str, r: dict, text: str, target: str, meets: bool) -> None:
    print(
        f"({key}){r['files']:>6}{r['bytes'] / MIB:>8.0f}{r['requests']:>9}{r.get('wall_s', 0):>8.1f}"
        f"{r.get('cpu_s', 0):>7.1f}{r.get('rss_mib', 0):>8.0f}  {text:<44}{target:<16}{verdict(r, meets)}",
        flush=True,
    )


def requests_per_sync(r: dict) -> tuple[int, int, int]:
    """(list requests, play requests, retries): play requests beyond one per file, plus 429s and faults served."""
    play = r["by_path"].get(PLAY_PATH, 0)
    lists = r["requests"] - play
    return lists, play, max(0, play - r["files"]) + r["refused"] + r["faults"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="t,u,v", help="figures to give, of t,u,v (v runs (t)'s parallel sync)")
    parser.add_argument("--quick", action="store_true", help="a fifth of the files in (t), 100 MB in (u)")
    args = parser.parse_args()
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    if not keys or set(keys) - {"t", "u", "v"}:
        parser.error(f"figures are some of t,u,v, got {args.only!r}")
    files, big = (FILES // 5, BIG // 5) if args.quick else (FILES, BIG)
    started = time.perf_counter()
    tmp = tempfile.gettempdir()
    need = max(files * MB, big) * 2
    if free_bytes(tmp) < need:
        print(f"{tmp} has {free_bytes(tmp) / 2**30:.1f} GiB free; the bench stages up to {need / 2**30:.1f} GiB")
        return 1
    print(f"{COMMAND}, {os.cpu_count()} CPUs, staging in {tmp} ({free_bytes(tmp) / 2**30:.0f} GiB free)")
    print(f"{'':3}{'files':>6}{'MiB':>8}{'requests':>9}{'wall s':>8}{'CPU s':>7}{'RSS MiB':>8}  {'figure':<44}target")
    results: dict[str, dict] = {}
    if {"t", "v"} & set(keys):
        with simulator(answered_calls(files, seed=500), latency_ms=LATENCY_MS, recording_sizes=MB) as sim:
            results["t8"] = parallel = sync(sim, 8, 240, sha_sample=20)
            if "t" in keys:
                results["t1"] = one = sync(sim, 1, 240)
        if "t" in keys:
            ratio = parallel["wall_s"] / one["wall_s"] if one.get("wall_s") and parallel.get("wall_s") else 0
            line("t", one, f"num_workers 1: {one.get('wall_s', 0):.1f} s", "", True)
            text = f"num_workers 8: {parallel.get('wall_s', 0):.1f} s, {ratio:.2f}x (1)'s time"
            line("t", parallel, text, "<= 0.20x (1)", 0 < ratio <= 0.2)
            if ratio:
                print(
                    f"    {1 / ratio:.1f}x faster than one at a time; at most {parallel['max_in_flight']} requests at once"
                )
        if "v" in keys:
            wall = parallel.get("wall_s") or 0
            lists, play, retries = requests_per_sync(parallel)
            per_s = f"{parallel['bytes'] / MB / wall:.1f} MB/s, {parallel['files'] / wall:.1f} files/s" if wall else "-"
            line("v", parallel, per_s, "(README)", True)
            total = lists + play
            print(
                f"    requests per sync: {lists} list pages + {play} play ({parallel['files']} files, {retries} retries)"
                f" = {total} for {parallel['files']} files ({total / max(1, parallel['files']):.3f} a file);"
                f" by path: {parallel['by_path']}"
            )
        print(f"    INFO: {parallel['summary']}")
    if "u" in keys:
        calls = answered_calls(20, seed=501)
        name = calls[ANSWERED][0]["filename"]
        with simulator(calls, recording_sizes={name: big}) as sim:
            results["u"] = r = sync(sim, 8, 300, sha_sample=1)
        under = 0 < r.get("rss_mib", 0) < 200
        line("u", r, f"{r.get('rss_mib', 0):.0f} MiB peak RSS, {big / MB:.0f} MB file staged", "< 200 MiB", under)
        print(f"    requests: {r['requests']}, by path: {r['by_path']}")
        print(f"    INFO: {r['summary']}")
    print(f"files bench took {time.perf_counter() - started:.0f} s{' (--quick)' if args.quick else ''}")
    return 1 if any(r["problems"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
