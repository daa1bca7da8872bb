"""Benchmark of the `source-telecmi` command against the TeleCMI simulator.

The simulator runs in this process (a thread); the connector runs as a separate process, the
real `source-telecmi read` command next to this interpreter, so its wall time, CPU time
(user + sys, from os.wait4) and peak RSS (ru_maxrss) are the connector's alone. The connector is
forked by a small launcher process started first (see _bench_helpers): on Linux a child's
ru_maxrss inherits the high-water mark of the process it was forked from, and this process
grows with the generated calls (100,000 in d). Every run reads
the stream `outgoing_missed_calls` (full_refresh by default, destination_sync_mode append) and
must exit 0 with exactly the generated calls, each cmiuid once; otherwise this script exits 1.

Scenarios (from the issue):
  a  8,000 calls over 30 days, 100 ms latency per request, num_workers 8
  b  8,000 calls inside one day, same settings
  c  records per CPU-second of the connector process (start-up included), 20,000 calls, 0 ms
  d  peak RSS of the connector process, 100,000 calls, 0 ms

    .venv/bin/python scripts/bench.py                  # all four
    .venv/bin/python scripts/bench.py --only a,b --quick
    .venv/bin/python scripts/bench.py --profile /tmp/prof.out   # scenario c under cProfile

The script prints figures and the issue's targets; it asserts nothing about them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for the simulator package

import _bench_helpers as helpers  # next to this script, so on sys.path already

from integration_tests.conftest import catalog
from integration_tests.telecmi_simulator import OUT_MISSED, Simulator, generate_calls

try:
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover - the connector's venv has orjson
    loads = json.loads

COMMAND = str(Path(sys.executable).parent / "source-telecmi")
HELPERS = helpers.__file__
LAUNCHER: helpers.Launcher
STREAM = "outgoing_missed_calls"
TOKEN = "tok"
PAGE_SIZE = 10
START = "2025-12-01T00:00:00Z"
DAY_MS = 86_400_000
MIB = 1024 * 1024
# Production waits and timeouts: the bench measures the connector as shipped.
DROPPED_ENV = ("SOURCE_TELECMI_BACKOFF_SCALE", "SOURCE_TELECMI_REQUEST_TIMEOUT")


@dataclass(frozen=True)
class Scenario:
    key: str
    about: str
    calls: int
    quick_calls: int
    days: int
    latency: bool  # True: --latency-ms applies; False: 0 ms
    seed: int
    target: str


SCENARIOS = {
    "a": Scenario("a", "speedup", 8_000, 800, 30, True, 101, "speedup >= 6x"),
    "b": Scenario("b", "speedup", 8_000, 800, 1, True, 102, "speedup >= 6x"),
    "c": Scenario("c", "CPU", 20_000, 2_000, 30, False, 103, ">= 5,000 rec/CPU-s"),
    "d": Scenario("d", "RSS", 100_000, 10_000, 30, False, 104, "peak RSS < 200 MiB"),
}


@dataclass
class Run:
    """One connector process, as this script saw it."""

    returncode: int = -1
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    maxrss_kib: int = 0  # ru_maxrss from wait4, in the launcher
    hwm_kib: int = 0  # the largest VmHWM the launcher sampled (every 20 ms), a cross-check
    lines: int = 0
    records: int = 0
    unique: int = 0
    unexpected: int = 0
    non_json: int = 0
    kinds: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: deque = field(default_factory=lambda: deque(maxlen=5))
    stderr_tail: str = ""
    timed_out: bool = False

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib * 1024 / MIB


@dataclass
class Result:
    scenario: Scenario
    calls: int
    latency_ms: float
    expected: int
    run: Run
    requests: int
    max_in_flight: int
    bench_cpu_s: float
    problems: list[str]

    @property
    def label(self) -> str:
        return f"({self.scenario.key}) {self.calls:,} / {self.scenario.days} d"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rate(self) -> float:
        return self.run.records / self.run.wall_s if self.run.wall_s else 0.0

    @property
    def ideal_serial_s(self) -> float:
        return math.ceil(self.run.records / PAGE_SIZE) * self.latency_ms / 1000

    @property
    def speedup(self) -> float | None:
        if not self.latency_ms or not self.run.wall_s:
            return None
        return self.ideal_serial_s / self.run.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.run.records / self.run.cpu_s if self.run.cpu_s else 0.0


def parse_utc_ms(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000


def format_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connector_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    return env


def run_process(
    argv: list[str], expected_ids: set[str] | None, timeout_s: float, workdir: str
) -> Run:
    """Run one process through the launcher, stream its stdout, and take its own rusage."""
    run = Run()
    seen: set[Any] = set()
    stderr_path = os.path.join(workdir, "stderr.txt")
    fifo = os.path.join(workdir, "stdout.fifo")
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo)
    stdout, pid = LAUNCHER.start(argv, connector_env(), fifo, stderr_path)

    def kill() -> None:
        run.timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    watchdog = threading.Timer(timeout_s, kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        with stdout:
            for line in stdout:
                run.lines += 1
                try:
                    message = loads(line)
                except ValueError:
                    run.non_json += 1
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                run.kinds[kind] += 1
                if kind == "RECORD":
                    run.records += 1
                    seen.add(message["record"]["data"].get("cmiuid"))
                elif kind == "TRACE":
                    trace = message.get("trace") or {}
                    if trace.get("type") == "ERROR":
                        run.errors.append(str((trace.get("error") or {}).get("message")))
                elif kind == "LOG":
                    log = message.get("log") or {}
                    if log.get("level") in ("WARN", "ERROR", "FATAL"):
                        run.warnings.append(f"{log.get('level')}: {str(log.get('message'))[:300]}")
        finished = LAUNCHER.finished()
    finally:
        watchdog.cancel()
    run.returncode = finished["returncode"]
    run.wall_s = finished["wall_s"]
    run.user_s, run.sys_s = finished["user_s"], finished["sys_s"]
    run.maxrss_kib, run.hwm_kib = finished["maxrss_kib"], finished["hwm_kib"]
    run.unique = len(seen)
    if expected_ids is not None:
        run.unexpected = len(seen - expected_ids)
    with open(stderr_path, "rb") as stderr:
        stderr.seek(0, os.SEEK_END)
        stderr.seek(max(0, stderr.tell() - 2000))
        run.stderr_tail = stderr.read().decode("utf-8", "replace")
    return run


def read_argv(workdir: str, config: dict[str, Any], sync_mode: str) -> list[str]:
    config_path = os.path.join(workdir, "config.json")
    catalog_path = os.path.join(workdir, "catalog.json")
    Path(config_path).write_text(json.dumps(config))
    Path(catalog_path).write_text(json.dumps(catalog(sync_mode, STREAM)))
    return ["read", "--config", config_path, "--catalog", catalog_path]


@dataclass
class Prepared:
    scenario: Scenario
    calls: list[dict[str, Any]]
    start: str
    end: str
    expected_ids: set[str]
    latency_ms: float


def prepare(scenario: Scenario, args: argparse.Namespace) -> Prepared:
    """Calls with a fixed seed, all inside [start, end) of the config (end is exclusive here)."""
    n = scenario.quick_calls if args.quick else scenario.calls
    start_ms = parse_utc_ms(START)
    end_ms = start_ms + scenario.days * DAY_MS
    calls = generate_calls(n, start_ms, end_ms - 1, seed=scenario.seed)
    inside = [c for c in calls if start_ms <= c["time"] <= end_ms]
    expected_ids = {c["cmiuid"] for c in inside}
    if len(expected_ids) != len(inside):
        raise SystemExit(f"scenario {scenario.key}: generated cmiuids are not unique")
    latency = args.latency_ms if scenario.latency else 0.0
    return Prepared(scenario, calls, START, format_utc(end_ms), expected_ids, latency)


def run_scenario(
    prepared: Prepared, args: argparse.Namespace, profile: str | None = None
) -> Result:
    scenario = prepared.scenario
    sim = Simulator(calls={OUT_MISSED: prepared.calls}, tokens=[TOKEN], latency_ms=prepared.latency_ms)
    sim.start()
    try:
        config = {
            "credentials": {"auth_type": "token", "token": TOKEN},
            "start_date": prepared.start,
            "end_date": prepared.end,
            "api_url": sim.base_url,
            "num_workers": args.workers,
            "lookback_window_days": 0,
        }
        with tempfile.TemporaryDirectory(prefix="telecmi-bench-") as workdir:
            argv = read_argv(workdir, config, args.sync_mode)
            if profile is None:
                argv = [COMMAND, *argv]
            elif args.profile_main_thread:
                argv = [sys.executable, "-m", "cProfile", "-o", profile, COMMAND, *argv]
            else:
                argv = [sys.executable, HELPERS, profile, COMMAND, *argv]
            ideal = math.ceil(len(prepared.expected_ids) / PAGE_SIZE) * prepared.latency_ms / 1000
            timeout = args.timeout or max(300.0, 5 * ideal)
            before = resource.getrusage(resource.RUSAGE_SELF)
            run = run_process(argv, prepared.expected_ids, timeout, workdir)
            after = resource.getrusage(resource.RUSAGE_SELF)
        requests, max_in_flight = sim.stats.requests, sim.stats.max_in_flight
    finally:
        sim.stop()
    bench_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    expected = len(prepared.expected_ids)
    problems = []
    if run.timed_out:
        problems.append(f"killed after {timeout:g} s")
    if run.returncode != 0:
        problems.append(f"exit code {run.returncode}")
    if run.records != expected:
        problems.append(f"{run.records} RECORD messages, expected {expected}")
    if run.unique != run.records:
        problems.append(f"{run.records - run.unique} duplicate cmiuids")
    if run.unexpected:
        problems.append(f"{run.unexpected} cmiuids not generated")
    if run.non_json:
        problems.append(f"{run.non_json} stdout lines are not JSON")
    if run.errors:
        problems.append(f"{len(run.errors)} error traces")
    return Result(
        scenario, len(prepared.calls), prepared.latency_ms, expected, run, requests,
        max_in_flight, bench_cpu, problems,
    )


def describe(result: Result) -> None:
    s, run = result.scenario, result.run
    print(
        f"({s.key}) {s.about}: {result.calls:,} calls {START} .. {format_utc(parse_utc_ms(START) + s.days * DAY_MS)}, "
        f"latency {result.latency_ms:g} ms, num_workers {ARGS.workers}, {ARGS.sync_mode}"
    )
    print(
        f"    records {run.records} (expected {result.expected}, unique {run.unique}), "
        f"requests {result.requests} (most in flight {result.max_in_flight}), exit {run.returncode}"
    )
    line = f"    wall {run.wall_s:.2f} s, {result.rate:,.0f} records/s"
    if result.speedup is not None:
        line += (
            f", ideal one-at-a-time {result.ideal_serial_s:.1f} s -> speedup {result.speedup:.2f}x"
        )
    print(line)
    print(
        f"    connector CPU {run.cpu_s:.2f} s (user {run.user_s:.2f} + sys {run.sys_s:.2f}), "
        f"{result.per_cpu_s:,.0f} records/CPU-s, peak RSS {run.rss_mib:.1f} MiB "
        f"(sampled VmHWM {run.hwm_kib / 1024:.1f}); "
        f"bench process (simulator + reader) CPU {result.bench_cpu_s:.2f} s"
    )
    other = {k: v for k, v in run.kinds.items() if k != "RECORD"}
    print(f"    other messages: {dict(sorted(other.items(), key=str))}")
    for problem in result.problems:
        print(f"    FAILED: {problem}")
    if result.problems:
        for error in run.errors[:3]:
            print(f"    error trace: {error[:500]}")
        for warning in run.warnings:
            print(f"    {warning}")
        if run.stderr_tail.strip():
            print("    stderr tail:\n" + "\n".join("      " + x for x in run.stderr_tail.splitlines()[-15:]))
    sys.stdout.flush()


def measured(result: Result) -> tuple[str, str]:
    """The figure the scenario's target is about, and how it compares (informational)."""
    key, run = result.scenario.key, result.run
    if not result.ok:
        return "-", "-"
    if key in ("a", "b"):
        if result.speedup is None:
            return "n/a (0 ms)", "-"
        return f"{result.speedup:.2f}x", "meets" if result.speedup >= 6 else "misses"
    if key == "c":
        return f"{result.per_cpu_s:,.0f}/CPU-s", "meets" if result.per_cpu_s >= 5000 else "misses"
    return f"{run.rss_mib:.1f} MiB", "meets" if run.rss_mib < 200 else "misses"


def table(results: list[Result], baseline: Run | None) -> None:
    head = (
        f"{'scenario':<24}{'lat':>6}{'records':>9}{'reqs':>7}{'wall s':>8}{'rec/s':>8}"
        f"{'speedup':>9}{'CPU s':>7}{'rec/CPU-s':>10}{'RSS MiB':>9}  {'target':<20}{'measured':<15}{'':7}run"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        run = r.run
        speed = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        figure, verdict = measured(r)
        print(
            f"{r.label:<24}{r.latency_ms:>4g}ms{run.records:>9}{r.requests:>7}"
            f"{run.wall_s:>8.2f}{r.rate:>8,.0f}{speed:>9}{run.cpu_s:>7.2f}{r.per_cpu_s:>10,.0f}"
            f"{run.rss_mib:>9.1f}  {r.scenario.target:<20}{figure:<15}{verdict:<7}"
            f"{'ok' if r.ok else 'FAILED'}"
        )
    if baseline is not None:
        print(
            f"start-up baseline (`source-telecmi spec`): wall {baseline.wall_s:.2f} s, "
            f"CPU {baseline.cpu_s:.2f} s, peak RSS {baseline.rss_mib:.1f} MiB"
        )
    print(
        "targets (issue): speedup >= 6x in (a) and (b); >= 5,000 records per CPU-second in (c); "
        "peak RSS < 200 MiB in (d)"
    )


def print_profile(path: str, top: int) -> None:
    print(f"\nprofile {path}: total {helpers.total_time(path):.2f} s")
    for sort in ("cumulative", "tottime"):
        print(f"\ntop {top} by {sort}:")
        print("\n".join(helpers.top_functions(path, sort, top)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="a,b,c,d", help="scenarios to run, like a,c (default all)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the calls, for a smoke run")
    parser.add_argument("--workers", type=int, default=8, help="num_workers of the connector (8)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency per request in (a), (b) (100)")
    parser.add_argument("--sync-mode", choices=("full_refresh", "incremental"), default="full_refresh")
    parser.add_argument("--timeout", type=float, default=0, help="seconds before a run is killed (auto)")
    parser.add_argument("--profile", metavar="OUT", help="run scenario c once under cProfile into OUT, print the top")
    parser.add_argument("--profile-main-thread", action="store_true",
                        help="with --profile: plain `python -m cProfile` (main thread only)")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    keys = [k.strip().lower() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown or not keys:
        parser.error(f"--only takes some of {','.join(SCENARIOS)}, got {args.only!r}")
    args.keys = keys
    return args


def main() -> int:
    started = time.perf_counter()
    if not os.access(COMMAND, os.X_OK):
        print(f"{COMMAND} not found: install the connector in this interpreter's venv", file=sys.stderr)
        return 1
    print(f"connector: {COMMAND}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="telecmi-bench-") as workdir:
        # The smallest ru_maxrss a process started by the launcher can report (see _bench_helpers).
        floor = run_process(["/bin/true"], None, 30, workdir)
        baseline = run_process([COMMAND, "spec"], None, 120, workdir)
    print(f"RSS floor of a launched process: {floor.rss_mib:.1f} MiB (ru_maxrss of /bin/true)")
    if baseline.returncode != 0:
        print(f"`source-telecmi spec` failed (exit {baseline.returncode}):\n{baseline.stderr_tail}")
        return 1
    if ARGS.profile:
        prepared = prepare(SCENARIOS["c"], ARGS)
        mode = "main thread only" if ARGS.profile_main_thread else "all threads, CPU clock"
        print(f"profiling scenario (c) ({mode}) with {len(prepared.calls)} calls ...")
        result = run_scenario(prepared, ARGS, profile=ARGS.profile)
        describe(result)
        print_profile(ARGS.profile, ARGS.profile_top)
        return 0 if result.ok else 1
    results = []
    for key in ARGS.keys:
        prepared = prepare(SCENARIOS[key], ARGS)
        result = run_scenario(prepared, ARGS)
        describe(result)
        results.append(result)
    print()
    table(results, baseline)
    print(f"bench took {time.perf_counter() - started:.1f} s{' (--quick)' if ARGS.quick else ''}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    ARGS = parse_args()
    # Started before any data is generated, so that it stays small: see _bench_helpers.
    LAUNCHER = helpers.Launcher()
    try:
        code = main()
    finally:
        LAUNCHER.close()
    sys.exit(code)
