"""Benchmark of the `source-telecmi` command against the TeleCMI simulator.

The simulator runs in this process; the connector runs as the real `source-telecmi read` next to
this interpreter, started through a small wrapper process that times it and reaps it with wait4,
so its wall time, CPU time and peak RSS are its own (on Linux a child's ru_maxrss starts at the
high-water mark of the process it was forked from, and this one holds the generated calls).
Every run reads `outgoing_missed_calls` (in full refresh, but the rate-limited ones) and must exit 0 with
every generated call exactly once (each cmiuid once, none other); otherwise this script exits 1. It prints figures
and the issues' targets; it asserts nothing about speed.

  a  8,000 calls over 30 days, 100 ms latency, 8 workers, user token (pages of 10)
  b  8,000 calls inside one day, same settings
  c  records per CPU-second, 20,000 calls, 0 ms
  d  peak RSS, 100,000 calls, 0 ms
  e  account-wide: 8,000 calls over 30 days, 100 ms, 8 workers, app credentials, pages of 20
  f  the same with the simulator serving pages of 10 whatever is asked (nothing lost)
  g  8,000 calls over 30 days, 100 ms, a limit of 20 requests/s answered with HTTP 429 and Retry-After
  h  the same, HTTP 429 without Retry-After
  i  the same, HTTP 200 with body code 429
(g) to (i) use the simulator's bucket: 20 a second, a burst of 20.

Rate limits of other shapes, each answered in another of the 429 forms (integration_tests/limiters.py):
  j  the simulator's bucket of (g), 2 ms, HTTP 429 with Retry-After: 0 (no hint: the pacer's own pause applies)
  k  a token bucket of 20/s with a burst of 1, continuous refill, 100 ms, HTTP 429 without Retry-After
  l  a token bucket of 20/s with a burst of 100 (5 s worth), 100 ms, HTTP 429 with Retry-After: 1
  m  a fixed window of 20 per clock second, 100 ms, HTTP 429 with Retry-After: 0
  n  a token bucket of 50/s with a burst of 250 refilled in whole seconds, 2 ms, HTTP 200 with body code 429
  o  a token bucket of 5/s with a burst of 1, 2 ms, HTTP 429 with Retry-After: 1
  w  (k) at 2 ms
  x  (m) at 2 ms
  y  a token bucket of 20/s with a burst of 1, 2 ms, HTTP 200 with body code 429
In (g) to (y) the allowed requests are R a second of wall time plus the limiter's burst beyond one
second's worth (what it banked before the sync); the share of the allowed rate is the requests
answered over that, the share refused the 429s over all requests. Each of them syncs twice,
incrementally: the first sync reads 30 days; the second, with the first's final state (and a fresh
limiter of the same shape), the next 30 days' as many calls. The second's figures are printed
under the first's: the requests answered over the limiter's rate in the wall time (for (l) and (n), whose
limiters bank more than a second's worth, also over the allowed requests above: the second sync paces at
what the first learned from its first request and leaves the bank alone), and those of its first 5
seconds (from its first request, as the limiter saw them).

    .venv/bin/python scripts/bench.py [--only a,e] [--quick] [SCENARIO ...]   e.g. scripts/bench.py g h i
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root

from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    COMMAND,
    DAY_MS,
    ENDPOINTS,
    FAST_ENV,
    START,
    START_MS,
    STREAM,
    call_id,
    catalog,
    config,
    simulator,
)
from integration_tests.limiters import FixedWindow, Recorded, TokenBucket
from integration_tests.telecmi_simulator import generate_calls

try:
    from orjson import loads
except ImportError:  # pragma: no cover - the connector's venv has orjson
    from json import loads

# Forks and execs the command, then writes its exit code, wall time and rusage to argv[1].
WRAPPER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"returncode": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - started,
               "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}, out)
"""
RATE = 20  # requests per second allowed in (g), (h), (i)
FIRST_S = 5.0  # the second sync's first seconds, measured apart


@dataclass(frozen=True)
class Scenario:
    key: str
    calls: int
    days: int
    latency: bool  # --latency-ms applies; else 0 ms
    kind: str = "token"  # the harness's kind of config
    options: dict = field(default_factory=dict)  # the simulator's
    limiter: Callable[[], object] | None = None  # makes the simulator's rate limiter, fresh for each run
    rate: float = 0.0  # the limiter's rate, for the figure
    burst: float = 0.0  # the limiter's burst
    latency_ms: float | None = None  # this latency rather than --latency-ms


SCENARIOS = {
    "a": Scenario("a", 8_000, 30, True),
    "b": Scenario("b", 8_000, 1, True),
    "c": Scenario("c", 20_000, 30, False),
    "d": Scenario("d", 100_000, 30, False),
    "e": Scenario("e", 8_000, 30, True, "app"),
    "f": Scenario("f", 8_000, 30, True, "app", {"page_cap": 10}),
}


def limited(key: str, calls: int, form: str, rate: float, burst: float, make, latency_ms: float | None = None):
    """A scenario of the rate-limit block (j to o): `make()` builds its limiter, answered in `form`."""
    return Scenario(key, calls, 30, True, "token", {"rate_limit_form": form}, make, rate, burst, latency_ms)


def simulators_bucket() -> TokenBucket:
    """The simulator's own bucket (its `rate_limit`): RATE a second, a burst of RATE."""
    return TokenBucket(RATE, RATE)


# (g) to (i) the simulator's bucket in each 429 form; (j) the same answering Retry-After: 0; (k) to (y) limiters
# of other shapes: bursts of 1 and of 5 s, refills in whole seconds, a fixed window.
SHAPED = {
    "g": limited("g", 8_000, "retry_after", RATE, RATE, simulators_bucket),
    "h": limited("h", 8_000, "no_retry_after", RATE, RATE, simulators_bucket),
    "i": limited("i", 8_000, "body", RATE, RATE, simulators_bucket),
    "j": limited("j", 8_000, "retry_after_zero", RATE, RATE, simulators_bucket, latency_ms=2),
    "k": limited("k", 8_000, "no_retry_after", 20, 1, lambda: TokenBucket(20, 1)),
    "l": limited("l", 8_000, "retry_after", 20, 100, lambda: TokenBucket(20, 100)),
    "m": limited("m", 8_000, "retry_after_zero", 20, 20, lambda: FixedWindow(20)),
    "n": limited("n", 19_000, "body", 50, 250, lambda: TokenBucket(50, 250, refill="per_second"), latency_ms=2),
    "o": limited("o", 1_800, "retry_after", 5, 1, lambda: TokenBucket(5, 1), latency_ms=2),
    "w": limited("w", 8_000, "no_retry_after", 20, 1, lambda: TokenBucket(20, 1), latency_ms=2),
    "x": limited("x", 8_000, "retry_after_zero", 20, 20, lambda: FixedWindow(20), latency_ms=2),
    "y": limited("y", 8_000, "body", 20, 1, lambda: TokenBucket(20, 1), latency_ms=2),
}
SCENARIOS.update(SHAPED)


@dataclass
class Result:
    scenario: Scenario
    latency_ms: float
    records: int = 0
    requests: int = 0
    refused: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_mib: float = 0.0
    problems: list[str] = field(default_factory=list)
    takes: list[tuple[float, bool]] = field(default_factory=list)  # what the limiter saw (rate-limited scenarios)
    state: list[dict] = field(default_factory=list)  # the final state messages
    second: Result | None = None  # a rate-limited scenario's second sync, with the first's state

    @property
    def rate(self) -> float:
        return self.records / self.wall_s if self.wall_s else 0.0


def measure(
    argv: list[str],
    expected: set[str] | None,
    timeout: float,
    workdir: str,
    again: frozenset[str] = frozenset(),
    states: list[dict] | None = None,
) -> tuple[dict, int, list[str]]:
    """Run argv through the wrapper; its measures, the records it printed, and what was wrong. Records of `again`
    (read by an earlier sync) may come once each too; the STATE messages printed go to `states`."""
    usage_path, stderr_path = os.path.join(workdir, "usage.json"), os.path.join(workdir, "stderr.txt")
    env = {k: v for k, v in os.environ.items() if k not in FAST_ENV}  # production waits and timeouts
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, usage_path, *argv], stdout=subprocess.PIPE, stderr=stderr, env=env
        )
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    records, seen, problems = 0, set(), []
    for line in process.stdout:
        try:
            message = loads(line)
        except ValueError:
            problems.append(f"not JSON: {line[:100]!r}")
            continue
        if message["type"] == "RECORD":
            records += 1
            seen.add(call_id(message["record"]["data"]))
        elif message["type"] == "TRACE" and message["trace"]["type"] == "ERROR":
            problems.append(f"error trace: {message['trace']['error']['message'][:300]}")
        elif message["type"] == "STATE" and states is not None:
            states.append(message["state"])
    process.wait()
    watchdog.cancel()
    if not os.path.exists(usage_path):
        return {}, records, [f"killed after {timeout:g} s", *problems]
    usage = json.loads(Path(usage_path).read_text())
    if usage["returncode"]:
        problems += [f"exit {usage['returncode']}", Path(stderr_path).read_text()[-1500:]]
    if expected is not None and (records != len(seen) or seen - again != expected):
        problems.append(
            f"{records} records, {len(seen)} unique, {len(seen - expected - again)} unexpected, "
            f"{len(expected - seen)} missing; want {len(expected)}"
        )
    return usage, records, problems


def run(scenario: Scenario, args: argparse.Namespace) -> Result:
    """One sync in full refresh; a rate-limited scenario's two incremental syncs (the second in `Result.second`)."""
    n = scenario.calls // 10 if args.quick else scenario.calls
    span = scenario.days * DAY_MS
    path = (ACCOUNT_ENDPOINTS if scenario.kind == "app" else ENDPOINTS)[STREAM]
    calls = generate_calls(n, START_MS, START_MS + span - 1, seed=100 + ord(scenario.key), endpoint=path)
    if scenario.limiter is None:
        return sync(scenario, args, calls, calls, START_MS + span, "full_refresh")
    later = generate_calls(n, START_MS + span, START_MS + 2 * span - 1, seed=200 + ord(scenario.key), endpoint=path)
    first = sync(scenario, args, calls, calls, START_MS + span, "incremental")
    if not first.problems:
        first.second = sync(scenario, args, calls + later, later, START_MS + 2 * span, "incremental", first)
    return first


def sync(
    scenario: Scenario,
    args: argparse.Namespace,
    served: list[dict],
    expected: list[dict],
    end_ms: int,
    mode: str,
    before: Result | None = None,
) -> Result:
    """A sync up to `end_ms` against a simulator serving `served`, which must read `expected` (and may read again
    what `before`, whose final state it starts from, read)."""
    path = (ACCOUNT_ENDPOINTS if scenario.kind == "app" else ENDPOINTS)[STREAM]
    latency_ms = scenario.latency_ms if scenario.latency_ms is not None else args.latency_ms
    result = Result(scenario, latency_ms if scenario.latency else 0.0)
    recorder = Recorded(scenario.limiter()) if scenario.limiter else None
    options = {**scenario.options, **({"limiter": recorder} if recorder else {})}
    wanted = {call_id(c) for c in expected}
    again = frozenset(call_id(c) for c in served) - wanted if before is not None else frozenset()
    with simulator({path: served}, latency_ms=result.latency_ms, **options) as sim:
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_ms / 1000))
        cfg = config(sim.base_url, scenario.kind, start_date=START, end_date=end, num_workers=args.workers)
        with tempfile.TemporaryDirectory(prefix="telecmi-bench-") as workdir:
            Path(workdir, "config.json").write_text(json.dumps(cfg))
            Path(workdir, "catalog.json").write_text(json.dumps(catalog(mode, STREAM)))
            argv = [COMMAND, "read", "--config", f"{workdir}/config.json", "--catalog", f"{workdir}/catalog.json"]
            if before is not None:
                Path(workdir, "state.json").write_text(json.dumps(before.state[-1:]))
                argv += ["--state", f"{workdir}/state.json"]
            timeout = max(300.0, 5 * len(expected) / 10 * result.latency_ms / 1000)
            usage, result.records, result.problems = measure(argv, wanted, timeout, workdir, again, result.state)
        result.requests, result.refused = sim.stats.requests, getattr(sim.stats, "rate_limited", 0)
    result.takes = list(recorder.takes) if recorder else []
    result.wall_s, result.cpu_s, result.rss_mib = usage.get("wall_s", 0), usage.get("cpu_s", 0), usage.get("rss_mib", 0)
    return result


def figure(r: Result, results: dict[str, Result]) -> tuple[str, str, bool]:
    """What the scenario is about: the figure, its target, and whether it meets it."""
    key = r.scenario.key
    if key in "ab":
        speedup = math.ceil(r.records / 10) * r.latency_ms / 1000 / r.wall_s if r.latency_ms else 0
        return f"{speedup:.1f}x one-at-a-time", ">= 6x", speedup >= 6
    if key == "c":
        per_cpu = r.records / r.cpu_s if r.cpu_s else 0
        return f"{per_cpu:,.0f} records/CPU-s", ">= 5,000", per_cpu >= 5000
    if key == "d":
        return f"{r.rss_mib:.0f} MiB peak RSS", "< 200 MiB", r.rss_mib < 200
    if key in "ef":
        if "a" not in results or not results["a"].rate:
            return "(run a for the ratio)", ">= 1.8x (a)" if key == "e" else "nothing lost", key == "f"
        ratio = r.rate / results["a"].rate
        return (
            f"{ratio:.2f}x the records/s of (a)",
            ">= 1.8x (a)" if key == "e" else "nothing lost",
            ratio >= 1.8 or key == "f",
        )
    return shaped_figure(r)


def shares(r: Result, seconds: float, served: int, refused: int) -> tuple[float, float]:
    """The share of the allowed rate and the share refused of `served` and `refused` requests in `seconds`: the
    allowed requests are the limiter's rate a second plus its burst beyond one second's worth."""
    allowed = r.scenario.rate * seconds + max(0.0, r.scenario.burst - r.scenario.rate)
    return (served / allowed if allowed else 0.0), (refused / (served + refused) if served + refused else 0.0)


def shaped_figure(r: Result) -> tuple[str, str, bool]:
    """(g) to (y): the requests answered over those the limiter allows in the wall time, and the share refused."""
    share, refused = shares(r, r.wall_s, r.requests - r.refused, r.refused)
    return f"{share:.0%} of the rate, {refused:.1%} refused", ">= 85%, <= 5%", share >= 0.85 and refused <= 0.05


def second_figure(r: Result) -> tuple[str, str, bool]:
    """A second sync's figure: the requests answered over the limiter's rate in the wall time (and, for a limiter
    that banks more than a second's worth, over `shaped_figure`'s allowed requests too: the second sync paces at
    what the first learned from its first request, and leaves the bank alone), the share refused; and those of
    its first FIRST_S seconds from its first request."""
    share, refused = shares(r, r.wall_s, r.requests - r.refused, r.refused)
    of_rate = (r.requests - r.refused) / (r.scenario.rate * r.wall_s) if r.wall_s else 0.0
    start = r.takes[0][0] if r.takes else 0.0
    early = [served for at, served in r.takes if at < start + FIRST_S]
    share_early = sum(early) / (r.scenario.rate * FIRST_S)
    refused_early = (len(early) - sum(early)) / len(early) if early else 0.0
    banked = f" ({share:.0%} with the bank)" if r.scenario.burst > r.scenario.rate else ""
    text = f"{of_rate:.0%}{banked}, {refused:.1%}; first {FIRST_S:g} s: {share_early:.0%}, {refused_early:.1%}"
    return text, ">= 90%, <= 1%", min(of_rate, share_early) >= 0.9 and refused <= 0.01


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run, like a,e (default all)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the calls, for a smoke run")
    parser.add_argument("--workers", type=int, default=8, help="num_workers of the connector (8)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency per request where it applies (100)")
    parser.add_argument("scenario", nargs="*", help="scenarios to run, like g h i (the same as --only g,h,i)")
    args = parser.parse_args()
    keys = args.scenario or [k.strip() for k in args.only.split(",") if k.strip()]
    if not keys or set(keys) - set(SCENARIOS):
        parser.error(f"scenarios are some of {','.join(SCENARIOS)}, got {','.join(keys) or args.only!r}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        usage, _, problems = measure([COMMAND, "spec"], None, 120, workdir)
    if problems:
        print(f"`source-telecmi spec` failed: {problems}", file=sys.stderr)
        return 1
    print(f"{COMMAND}, {os.cpu_count()} CPUs; start-up (spec): {usage['wall_s']:.2f} s, {usage['rss_mib']:.0f} MiB")
    results: dict[str, Result] = {}
    head = f"{'':3}{'records':>8}{'requests':>9}{'429s':>6}{'wall s':>8}{'rec/s':>7}{'CPU s':>7}{'RSS MiB':>8}  "
    print(head + f"{'figure':<34}{'target':<15}")
    for key in keys:
        r = results[key] = run(SCENARIOS[key], args)
        line(f"({key})", r, *figure(r, results))
        if r.second is not None:
            line("2nd", r.second, *second_figure(r.second))
    print(f"bench took {time.perf_counter() - started:.0f} s{' (--quick)' if args.quick else ''}")
    return 1 if any(r.problems or (r.second and r.second.problems) for r in results.values()) else 0


def line(name: str, r: Result, text: str, target: str, meets: bool) -> None:
    verdict = "FAILED: " + "; ".join(r.problems) if r.problems else ("meets" if meets else "misses")
    print(
        f"{name:<3}{r.records:>8,}{r.requests:>9,}{r.refused:>6}{r.wall_s:>8.1f}{r.rate:>7,.0f}{r.cpu_s:>7.1f}"
        f"{r.rss_mib:>8.0f}  {text:<34}{target:<15}{verdict}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
