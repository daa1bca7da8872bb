"""CLI: ``python -m integration_tests.telecmi_simulator [--port 0 --port-file F ...]``.

Serves generated call records (every path: user-level, account-wide and India), voicemails
(global and India), users, and the audio of every answered call's recording and every voicemail
(``GET /v2/play``, ``/v1/play``), in the foreground until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial

from . import DEFAULT_PASSWORD, DEFAULT_TOKEN, DEFAULT_USER_ID
from .audio import default_size
from .data import (
    CDR_ENDPOINTS,
    DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
    GLOBAL_VOICEMAIL,
    INDIA_VOICEMAIL,
    generate_agents,
    generate_calls,
    generate_voicemails,
    normalize_endpoint,
)
from .server import RATE_LIMIT_FORMS, Simulator

DEFAULT_END = "2026-01-01T00:00:00Z"
DEFAULT_RECORDING_KB = "20-200"


def _parse_kb(text: str) -> tuple[int, int]:
    """``"N"`` or ``"LO-HI"`` (KiB) -> (lo, hi) in bytes; ValueError otherwise."""
    lo, sep, hi = text.strip().partition("-")
    low, high = int(lo), int(hi) if sep else int(lo)
    if not 0 < low <= high:
        raise ValueError(text)
    return low * 1024, high * 1024


def _parse_end(text: str) -> int:
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _write_port_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m integration_tests.telecmi_simulator",
        description="HTTP simulator of the TeleCMI REST API.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--calls", type=int, default=200, help="records per endpoint")
    p.add_argument("--days", type=float, default=30, help="spread over D days")
    p.add_argument("--end", default=DEFAULT_END, help="YYYY-MM-DDTHH:MM:SSZ")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--notes-ratio", type=float, default=0.2)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--token", action="append", help=f"valid fixed token (default {DEFAULT_TOKEN})")
    p.add_argument(
        "--user",
        action="append",
        metavar="ID:PASSWORD",
        help=f"login user (default {DEFAULT_USER_ID}:{DEFAULT_PASSWORD})",
    )
    p.add_argument(
        "--app",
        action="append",
        metavar="ID:SECRET",
        help=f"app credentials (default {DEFAULT_APP_ID}:{DEFAULT_APP_SECRET})",
    )
    p.add_argument("--agents", type=int, default=12, help="users in the users lists (of the first app)")
    p.add_argument("--voicemails", type=int, default=30, help="voicemails per platform (global, India)")
    p.add_argument(
        "--recording-kb",
        default=DEFAULT_RECORDING_KB,
        metavar="N|LO-HI",
        help=f"size of each recording in KiB, or a range each file's size is chosen in by its name ({DEFAULT_RECORDING_KB})",
    )
    p.add_argument("--page-cap", type=int, help="serve at most N records per page")
    p.add_argument("--rate-limit", type=float, help="requests/s allowed (token bucket)")
    p.add_argument("--rate-limit-form", choices=sorted(RATE_LIMIT_FORMS), default="retry_after")
    p.add_argument("--error-placement", choices=("body", "status"), default="body")
    p.add_argument("--edges", choices=("inclusive", "exclusive"), default="inclusive")
    p.add_argument(
        "--endpoints",
        default=",".join(CDR_ENDPOINTS),
        help="comma list of CDR endpoints to fill (paths or short names)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        end_ms = _parse_end(args.end)
    except ValueError:
        print(f"invalid --end {args.end!r}", file=sys.stderr)
        return 2
    start_ms = end_ms - int(args.days * 86_400_000)
    endpoints = [normalize_endpoint(e) for e in args.endpoints.split(",") if e.strip()]
    unknown = [e for e in endpoints if e not in CDR_ENDPOINTS]
    if unknown:
        print(f"unknown endpoints: {', '.join(unknown)}", file=sys.stderr)
        return 2
    users = {}
    for spec in args.user or [f"{DEFAULT_USER_ID}:{DEFAULT_PASSWORD}"]:
        user_id, sep, password = spec.partition(":")
        if not sep or not user_id:
            print(f"invalid --user {spec!r} (want ID:PASSWORD)", file=sys.stderr)
            return 2
        users[user_id] = password
    apps = {}
    for spec in args.app or [f"{DEFAULT_APP_ID}:{DEFAULT_APP_SECRET}"]:
        app_id, sep, secret = spec.partition(":")
        if not sep or not app_id.isdigit():
            print(f"invalid --app {spec!r} (want ID:SECRET, ID digits)", file=sys.stderr)
            return 2
        apps[int(app_id)] = secret
    try:
        lo, hi = _parse_kb(args.recording_kb)
    except ValueError:
        print(f"invalid --recording-kb {args.recording_kb!r} (want N or LO-HI, KiB, 0 < LO <= HI)", file=sys.stderr)
        return 2
    if args.voicemails < 0:
        print(f"invalid --voicemails {args.voicemails} (want 0 or more)", file=sys.stderr)
        return 2
    tokens = args.token or [DEFAULT_TOKEN]
    calls = {
        ep: generate_calls(args.calls, start_ms, end_ms, args.seed, ep, notes_ratio=args.notes_ratio)
        for ep in endpoints
    }
    voicemails = {
        path: generate_voicemails(args.voicemails, start_ms, end_ms, args.seed, india=path == INDIA_VOICEMAIL)
        for path in (GLOBAL_VOICEMAIL, INDIA_VOICEMAIL)
    }

    # A plain flag, not threading.Event: Event.set() from a signal handler can
    # deadlock if the signal lands while the main thread holds the Event's lock.
    stop = []

    def _on_signal(signum: int, frame: object) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    sim = Simulator(
        calls=calls,
        voicemails=voicemails,
        recording_sizes=partial(default_size, lo=lo, hi=hi),
        users=users,
        tokens=tokens,
        apps=apps,
        agents=generate_agents(args.agents, app_id=next(iter(apps)), seed=args.seed),
        page_cap=args.page_cap,
        rate_limit=args.rate_limit,
        rate_limit_form=args.rate_limit_form,
        error_placement=args.error_placement,
        edges=args.edges,
        latency_ms=args.latency_ms,
        host=args.host,
        port=args.port,
    )
    sim.start()
    try:
        if args.port_file:
            _write_port_file(args.port_file, sim.port)
        end_iso = datetime.fromtimestamp(end_ms / 1000, UTC)
        print(
            f"TeleCMI simulator on {sim.base_url} ({args.calls} calls per endpoint, "
            f"{len(endpoints)} endpoints, {args.days:g} days to "
            f"{end_iso:%Y-%m-%dT%H:%M:%SZ}, window ms [{start_ms}, {end_ms}], "
            f"seed {args.seed}, {args.voicemails} voicemails per platform, "
            f"recordings of {args.recording_kb} KiB, tokens {','.join(tokens)}, users "
            f"{','.join(users)}, apps {','.join(map(str, apps))}, {args.agents} agents, "
            f"errors in {args.error_placement}, "
            f"{args.edges} edges, latency {args.latency_ms:g} ms)",
            file=sys.stderr,
            flush=True,
        )
        while not stop:
            time.sleep(0.1)
    finally:
        sim.stop()
        if args.port_file:
            with contextlib.suppress(OSError):
                os.remove(args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
