"""Helpers for scripts/bench.py: a small launcher of connector processes, and a profiler.

The launcher (`python scripts/_bench_helpers.py --launcher`) is started by the bench before it
generates any data, and starts every connector process for it. On Linux a child's ru_maxrss
includes the high-water mark of the process it was forked from (the mark survives fork, vfork
and exec), so a connector forked from the bench, which holds the simulator and 100,000
generated calls, would report the bench's peak instead of its own. Forked from this small
launcher, its ru_maxrss is its own (or the launcher's, about 20 MiB, if ever larger). The
launcher also times the process and samples /proc/PID/status VmHWM as a cross-check.

Protocol, one JSON object a line: the bench writes {"argv", "env", "stdout", "stderr"}
(stdout is a FIFO the bench reads); the launcher answers {"pid"} once started (or {"error"}),
then {"returncode", "wall_s", "user_s", "sys_s", "maxrss_kib", "hwm_kib"} once reaped.

Run as `python scripts/_bench_helpers.py OUT.prof PROGRAM [ARGS...]`, this file profiles every
thread of another Python program.

`python -m cProfile` sees only the main thread; the connector reads pages in a pool of worker
threads (the CDK's concurrent source), so each thread started through `threading.Thread` gets
its own profiler here, and all of them are merged into OUT.prof when the program exits. The
clock is each thread's CPU time (`time.thread_time`), so time spent waiting on sockets, locks
or the GIL is not counted: the profile shows where CPU goes. Profiling slows pure-Python code
a lot more than C code, so read it for proportions, not for absolute speed.
"""

from __future__ import annotations

import atexit
import cProfile
import json
import os
import pstats
import runpy
import subprocess
import sys
import sysconfig
import threading
import time
from typing import Any


class _Snapshot:
    """Stats already taken from a profiler, in the shape pstats.Stats accepts."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


def profile_program(out: str, program: str, args: list[str]) -> None:
    """Run `program` as __main__ with `args`, profiling all threads into `out`."""
    finished: list[_Snapshot] = []
    lock = threading.Lock()
    plain_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        try:
            plain_run(self)
        finally:
            profiler.disable()
            profiler.create_stats()
            with lock:
                finished.append(_Snapshot(profiler.stats))  # type: ignore[attr-defined]

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main = cProfile.Profile(time.thread_time)

    def dump() -> None:
        # atexit runs after the interpreter joined the non-daemon threads (the worker pool).
        main.disable()
        main.create_stats()
        with lock:
            parts = [_Snapshot(main.stats), *finished]  # type: ignore[attr-defined]
        merged = pstats.Stats(parts[0])
        for part in parts[1:]:
            merged.add(part)
        merged.dump_stats(out)
        print(f"profile: {len(parts)} threads merged into {out}", file=sys.stderr)

    atexit.register(dump)
    sys.argv = [program, *args]
    main.enable()
    try:
        runpy.run_path(program, run_name="__main__")
    finally:
        main.disable()


def _short(path: str) -> str:
    for prefix in sorted(
        {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], os.getcwd()},
        key=len,
        reverse=True,
    ):
        if path.startswith(prefix + os.sep):
            return path[len(prefix) + 1 :]
    return path


def _label(key: tuple[str, int, str]) -> str:
    file, line, func = key
    if file == "~" and line == 0:
        return func  # a built-in, like {method 'recv_into' of '_socket.socket' objects}
    return f"{_short(file)}:{line}({func})"


def top_functions(path: str, sort: str, limit: int) -> list[str]:
    """The `limit` heaviest functions of a profile, by "cumulative" or "tottime", as lines."""
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    index = 3 if sort == "cumulative" else 2
    rows = sorted(stats.items(), key=lambda kv: kv[1][index], reverse=True)[:limit]
    lines = [f"{'ncalls':>12} {'tottime':>8} {'cumtime':>8}  function"]
    for key, (primitive, total, tottime, cumtime, _callers) in rows:
        calls = str(total) if total == primitive else f"{total}/{primitive}"
        lines.append(f"{calls:>12} {tottime:8.3f} {cumtime:8.3f}  {_label(key)}")
    return lines


def total_time(path: str) -> float:
    """The profile's total (CPU) time over all threads."""
    return float(pstats.Stats(path).total_tt)  # type: ignore[attr-defined]


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _sample_hwm(pid: int, hwm: list[int], done: threading.Event) -> None:
    while not done.wait(0.02):
        hwm[0] = max(hwm[0], _vm_hwm_kib(pid))


def launcher_main() -> None:
    """Start, time and reap the processes the bench asks for, one at a time."""

    def answer(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        with open(command["stdout"], "wb") as out, open(command["stderr"], "wb") as err:
            started = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    command["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=command["env"]
                )
            except OSError as error:
                answer({"error": f"{type(error).__name__}: {error}"})
                continue
        answer({"pid": proc.pid})
        hwm = [0]
        done = threading.Event()
        sampler = threading.Thread(target=_sample_hwm, args=(proc.pid, hwm, done), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        answer(
            {
                "returncode": proc.returncode,
                "wall_s": wall,
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
                "hwm_kib": hwm[0],
            }
        )


class Launcher:
    """The bench's side of the launcher process."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def start(self, argv: list[str], env: dict[str, str], stdout_fifo: str, stderr_path: str) -> Any:
        """Ask for a process whose stdout goes to `stdout_fifo`; returns the FIFO opened for reading and the pid."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        command = {"argv": argv, "env": env, "stdout": stdout_fifo, "stderr": stderr_path}
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        reader = open(stdout_fifo, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        started = json.loads(self._proc.stdout.readline())
        if "error" in started:
            reader.close()
            raise RuntimeError(f"could not start {argv[0]}: {started['error']}")
        return reader, int(started["pid"])

    def finished(self) -> dict[str, Any]:
        """The rusage and timing of the process started last, once it has exited."""
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        return json.loads(line)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["--launcher"]:
        launcher_main()
        sys.exit(0)
    if len(sys.argv) < 3:
        sys.exit("usage: _bench_helpers.py OUT.prof PROGRAM [ARGS...]")
    profile_program(sys.argv[1], sys.argv[2], sys.argv[3:])
