"""Tests of the TeleCMI simulator itself, over real HTTP (http.client / urllib)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from integration_tests.telecmi_simulator import (
    ANSWERED,
    CDR_ENDPOINTS,
    DROP,
    FAULTS,
    MISSED,
    OUT_ANSWERED,
    OUT_MISSED,
    Simulator,
    generate_calls,
    make_call,
)

TOKEN = "test-token"
USER, PASSWORD = "101_1111112", "secret"
DAY = 86_400_000
T0 = 1_700_000_000_000  # a fixed epoch ms
REPO_ROOT = Path(__file__).resolve().parents[3]


class Resp:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def post(
    sim: Simulator,
    path: str,
    body: Any,
    timeout: float = 5.0,
    conn: http.client.HTTPConnection | None = None,
) -> Resp:
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, data, {"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, raw)
    finally:
        if own:
            conn.close()


def cdr(sim: Simulator, path: str = OUT_MISSED, **body: Any) -> Resp:
    body.setdefault("token", TOKEN)
    body.setdefault("from", T0 - 10 * DAY)
    body.setdefault("to", T0 + 10 * DAY)
    return post(sim, path, body)


@pytest.fixture
def sim():
    calls = {OUT_MISSED: generate_calls(25, T0 - DAY, T0, seed=7)}
    with Simulator(calls=calls, tokens=[TOKEN], users={USER: PASSWORD}) as s:
        yield s


def expected_order(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r["time"], r["cmiuid"]), reverse=True)


# ----------------------------------------------------------------------- data


def test_generate_calls_is_deterministic_and_in_range():
    a = generate_calls(300, T0 - DAY, T0, seed=3)
    b = generate_calls(300, T0 - DAY, T0, seed=3)
    c = generate_calls(300, T0 - DAY, T0, seed=4)
    assert a == b and a != c
    assert all(T0 - DAY <= r["time"] <= T0 and isinstance(r["time"], int) for r in a)
    assert len({r["cmiuid"] for r in a}) == 300
    assert generate_calls(5, T0, T0, seed=1)[0]["time"] == T0  # inclusive bounds
    with pytest.raises(ValueError):
        generate_calls(1, T0, T0, endpoint="/v2/user/nope")


def test_record_shapes_per_endpoint():
    n = 400
    om = generate_calls(n, T0 - DAY, T0, endpoint=OUT_MISSED, notes_ratio=0.2)
    for r in om:
        assert len(r["cmiuid"]) == 36 and r["cmiuid"].count("-") == 4
        assert r["billedsec"] == 0 and r["rate"] == 0
        assert isinstance(r["from"], str) and isinstance(r["to"], int)
        assert "filename" not in r
        for note in r.get("notes", []):
            assert note["date"] >= r["time"] and set(note) == {"msg", "date", "agent"}
    with_notes = [r for r in om if "notes" in r]
    assert 0.1 * n < len(with_notes) < 0.3 * n
    assert any(len(r["notes"]) == 2 for r in with_notes)
    assert any(
        r["notes"][0]["date"] == r["notes"][1]["date"] and r["notes"][0]["agent"] == r["notes"][1]["agent"]
        for r in with_notes
        if len(r["notes"]) == 2
    )
    assert sum(r["duration"] == 0 for r in om) > 0.8 * n
    assert any(r["duration"] > 0 for r in om)

    missed = generate_calls(n, T0 - DAY, T0, endpoint=MISSED)
    for r in missed:
        assert len(r["cmiuid"]) == 24 and int(r["cmiuid"], 16) >= 0
        assert isinstance(r["from"], int) and "to" not in r
    assert any(r["duration"] > 0 for r in missed)

    for ep in (ANSWERED, OUT_ANSWERED):
        recs = generate_calls(n, T0 - DAY, T0, endpoint=ep)
        for r in recs:
            assert r["record"] == "true" and r["filename"].endswith(".mp3")
            assert r["duration"] > 0
        if ep == ANSWERED:
            assert all(isinstance(r["from"], int) and "to" not in r for r in recs)
        else:
            assert all(isinstance(r["from"], str) for r in recs)
            assert all(isinstance(r["to"], int) for r in recs)


def test_make_call_overrides():
    r = make_call(T0, cmiuid="abc", duration=3, name=DROP)
    assert r["time"] == T0 and r["cmiuid"] == "abc" and r["duration"] == 3
    assert "name" not in r and "notes" not in r
    assert make_call(T0)["cmiuid"] != make_call(T0)["cmiuid"]
    assert len(make_call(T0, endpoint="missed")["cmiuid"]) == 24


# ----------------------------------------------------------------------- paging


def test_paging_newest_first_and_count(sim):
    everything = expected_order(sim.records(OUT_MISSED))
    assert len(everything) == 25
    got = []
    for page in (1, 2, 3):
        ans = cdr(sim, page=page, limit=10).json
        assert ans["code"] == 200 and ans["count"] == 25
        assert len(ans["cdr"]) == (10 if page < 3 else 5)
        got += ans["cdr"]
    assert got == everything
    assert cdr(sim, page=4, limit=10).json["cdr"] == []
    # defaults: page 1, limit 10
    ans = post(sim, OUT_MISSED, {"token": TOKEN, "from": 0, "to": 2 * T0}).json
    assert ans["cdr"] == everything[:10]
    assert cdr(sim, page=2, limit=7).json["cdr"] == everything[7:14]
    # the window restricts count
    mid = everything[12]["time"]
    ans = cdr(sim, **{"from": mid, "to": T0}).json
    assert ans["count"] == sum(1 for r in everything if r["time"] >= mid)
    # other endpoints exist and are empty
    assert cdr(sim, MISSED).json == {"count": 0, "cdr": [], "code": 200}


def test_ties_are_broken_by_cmiuid_descending(sim):
    ids = ["a0", "c2", "b1"]
    sim.add_calls(OUT_MISSED, [make_call(T0 + DAY, cmiuid=i) for i in ids])
    ans = cdr(sim, **{"from": T0 + DAY, "to": T0 + DAY}).json
    assert [r["cmiuid"] for r in ans["cdr"]] == ["c2", "b1", "a0"]


@pytest.mark.parametrize("edges", ["inclusive", "exclusive"])
def test_window_edges(edges):
    lo, hi = T0, T0 + 1000
    recs = [
        make_call(lo - 1, cmiuid="before"),
        make_call(lo, cmiuid="on-from"),
        make_call(lo + 500, cmiuid="inside"),
        make_call(hi, cmiuid="on-to"),
        make_call(hi + 1, cmiuid="after"),
    ]
    with Simulator(calls={OUT_MISSED: recs}, tokens=[TOKEN], edges=edges) as s:
        ans = cdr(s, **{"from": lo, "to": hi}).json
        ids = [r["cmiuid"] for r in ans["cdr"]]
        if edges == "inclusive":
            assert ids == ["on-to", "inside", "on-from"] and ans["count"] == 3
        else:
            assert ids == ["inside"] and ans["count"] == 1
        assert [r["cmiuid"] for r in s.records(OUT_MISSED, lo, hi)] == ids


def test_late_records_and_stop_closes_keepalive():
    s = Simulator(tokens=[TOKEN]).start()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    body = {"token": TOKEN, "from": 0, "to": 2 * T0}
    assert post(s, MISSED, body, conn=conn).json["count"] == 0
    s.add_calls("missed", generate_calls(40, T0 - DAY, T0, endpoint=MISSED))
    s.add_calls(MISSED, [make_call(T0 + 5, endpoint=MISSED, cmiuid="late")])
    ans = post(s, MISSED, body, conn=conn).json
    assert ans["count"] == 41 and ans["cdr"][0]["cmiuid"] == "late"
    s.stop()
    s.stop()  # idempotent
    # the idle keep-alive connection was closed by stop(): no answer after stop
    with pytest.raises((OSError, http.client.HTTPException)):
        post(s, MISSED, body, conn=conn)
    conn.close()


def test_keep_alive_and_content_length(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    r1 = post(sim, OUT_MISSED, {"token": TOKEN, "from": 0, "to": 2 * T0}, conn=conn)
    sock = conn.sock
    r2 = post(sim, OUT_MISSED, {"token": TOKEN, "from": 0, "to": 2 * T0}, conn=conn)
    assert conn.sock is sock  # same TCP connection reused
    assert int(r1.headers["content-length"]) == len(r1.raw) and r1.raw == r2.raw
    assert r1.headers["content-type"].startswith("application/json")
    conn.close()


# ----------------------------------------------------------------------- auth


def test_login_success_failure_and_token_expiry(sim):
    ok = post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD})
    assert ok.status == 200
    ans = ok.json
    assert ans["code"] == 200 and ans["msg"] == "Login successful"
    assert set(ans["agent"]) == {"id", "name", "inet_no", "category"}
    token = ans["token"]
    token2 = post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).json
    assert token2["token"] != token  # a fresh token per login
    assert cdr(sim, token=token).json["code"] == 200

    bad = post(sim, "/v2/user/login", {"id": USER, "password": "nope"})
    assert bad.status == 200
    assert bad.json == {
        "code": 404,
        "error": True,
        "msg": "Invalid user id or password, authentication failed",
    }
    assert post(sim, "/v2/user/login", {"id": "x", "password": PASSWORD}).json["code"] == (404)
    assert sim.stats.logins == 2
    assert sim.stats.by_path["/v2/user/login"] == 4

    invalid = cdr(sim, token="bogus").json
    assert invalid == {
        "code": 404,
        "error": True,
        "msg": "Invalid user token, Failed to authenticate token",
    }
    sim.expire_tokens()
    assert cdr(sim, token=token).json["code"] == 404
    assert cdr(sim, token=TOKEN).json["code"] == 404  # fixed tokens expire too
    sim.add_token("new")
    assert cdr(sim, token="new").json["code"] == 200


def test_parameter_errors(sim):
    missing = {"code": 400, "error": True, "msg": "Parameter missing"}
    full = {"token": TOKEN, "from": 0, "to": 2 * T0}
    for key in ("token", "from", "to"):
        body = {k: v for k, v in full.items() if k != key}
        r = post(sim, OUT_MISSED, body)
        assert r.status == 200 and r.json == missing
    assert post(sim, OUT_MISSED, b"not json").json == missing
    assert post(sim, OUT_MISSED, {**full, "from": 0}).json["code"] == 200  # 0 is set
    r = post(sim, OUT_MISSED, {**full, "limit": 11}).json
    assert r == {
        "code": 400,
        "error": True,
        "msg": "Parameter limit lesser then equals 10",
    }
    assert post(sim, OUT_MISSED, {**full, "limit": 10}).json["code"] == 200
    # missing params are reported before the token is checked
    assert post(sim, OUT_MISSED, {"token": "bogus", "from": 1}).json == missing


def test_error_placement_status():
    with Simulator(tokens=[TOKEN], error_placement="status", users={"u": "p"}) as s:
        r = cdr(s, token="bogus")
        assert r.status == 404 and r.json["code"] == 404
        r = post(s, OUT_MISSED, {"token": TOKEN})
        assert r.status == 400 and r.json["msg"] == "Parameter missing"
        assert cdr(s, limit=50).status == 400
        assert post(s, "/v2/user/login", {"id": "u", "password": "x"}).status == 404
        assert cdr(s).status == 200
        s.refuse_endpoint(MISSED)
        r = cdr(s, MISSED)
        assert r.status == 403 and r.json["code"] == 403


def test_refuse_endpoint(sim):
    sim.refuse_endpoint("missed")
    r = cdr(sim, MISSED)
    assert r.status == 200
    assert r.json == {
        "code": 403,
        "error": True,
        "msg": "You are not authorized to access this resource",
    }
    assert cdr(sim, MISSED, token="bogus").json["code"] == 404  # token checked first
    assert cdr(sim, OUT_MISSED).json["code"] == 200
    sim.refuse_endpoint(ANSWERED, code=401, msg="nope")
    assert cdr(sim, ANSWERED).json == {"code": 401, "error": True, "msg": "nope"}
    sim.allow_endpoint(MISSED)
    assert cdr(sim, MISSED).json["code"] == 200


def test_unknown_path_is_html_404(sim):
    r = post(sim, "/v2/user/in_nothing", {"token": TOKEN})
    assert r.status == 404 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(r.raw)
    req = urllib.request.Request(sim.base_url + OUT_MISSED)  # GET
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 404
    e.value.close()


# ----------------------------------------------------------------------- faults


def test_fault_429_and_5xx(sim):
    sim.inject("429", retry_after=3)
    r = cdr(sim)
    assert r.status == 429 and r.headers["retry-after"] == "3"
    assert cdr(sim).status == 200  # consumed
    sim.inject("429")
    assert cdr(sim).headers["retry-after"] == "1"
    for code in ("500", "502", "503"):
        sim.inject(code)
        assert cdr(sim).status == int(code)
    sim.inject("502", body="json")
    assert cdr(sim).json["code"] == 502
    sim.inject("body_5xx")
    r = cdr(sim)
    assert r.status == 200
    assert r.json == {"code": 500, "error": True, "msg": "Internal server error"}
    assert sim.stats.faults_served == 7


def test_fault_html_and_garbage(sim):
    sim.inject("html_200")
    sim.inject("garbage")
    r = cdr(sim)
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    r = cdr(sim)
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    assert int(r.headers["content-length"]) == len(r.raw)
    with pytest.raises(ValueError):
        json.loads(r.raw)
    assert cdr(sim).json["code"] == 200


@pytest.mark.parametrize("reset", [False, True])
def test_fault_drop(sim, reset):
    sim.inject("drop", reset=reset)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        cdr(sim)
    assert cdr(sim).json["code"] == 200
    assert sim.stats.faults_served == 1


def test_fault_stall_times_out_client_without_blocking_others(sim):
    sim.inject("stall", seconds=1.0)
    t = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        post(sim, OUT_MISSED, {"token": TOKEN, "from": 0, "to": 2 * T0}, timeout=0.3)
    # while the stalled request still sleeps, others are answered at once
    assert cdr(sim).json["code"] == 200
    assert time.monotonic() - t < 0.9
    sim.inject("stall", seconds=0.2)
    t = time.monotonic()
    assert cdr(sim).json["count"] == 25  # a patient client gets a normal answer
    assert time.monotonic() - t >= 0.2


def test_fault_expire_token(sim):
    token = post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["token"]
    sim.inject("expire_token")
    assert cdr(sim, token=token).json["code"] == 404
    assert cdr(sim, token=token).json["code"] == 404
    assert cdr(sim, token=TOKEN).json["code"] == 404
    token = post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["token"]
    assert cdr(sim, token=token).json["code"] == 200


def test_fault_ignore_page_and_inflate_count(sim):
    first = cdr(sim, page=1).json
    sim.inject("ignore_page", times=-1)
    assert cdr(sim, page=2).json == first
    assert cdr(sim, page=3).json == first
    # CDR-only faults do not get consumed by a login when endpoint=None
    assert post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).status == 200
    sim.clear_faults()
    assert cdr(sim, page=2).json != first
    sim.inject("inflate_count")
    sim.inject("inflate_count", extra=5)
    assert cdr(sim).json["count"] == 1025
    ans = cdr(sim).json
    assert ans["count"] == 30 and ans["cdr"] == first["cdr"]
    assert cdr(sim).json["count"] == 25


def test_faults_order_endpoint_filter_and_persistent(sim):
    sim.inject("500", endpoint="missed")
    sim.inject("503")
    sim.inject("502")
    assert cdr(sim, OUT_MISSED).status == 503  # the missed-only fault is skipped
    assert cdr(sim, MISSED).status == 500
    assert post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).status == 502
    assert cdr(sim).status == 200
    sim.inject("503", times=-1, endpoint=ANSWERED)
    for _ in range(5):
        assert cdr(sim, ANSWERED).status == 503
    assert cdr(sim, OUT_ANSWERED).status == 200
    assert sim.pending_faults() == 1
    sim.clear_faults()
    assert cdr(sim, ANSWERED).status == 200
    sim.inject("500", times=2)
    assert [cdr(sim).status for _ in range(3)] == [500, 500, 200]
    assert sim.stats.faults_served == 10
    with pytest.raises(ValueError):
        sim.inject("nope")
    assert {"429", "drop", "stall", "garbage", "ignore_page"} <= FAULTS


# ----------------------------------------------------------------------- insert_after


def test_insert_after_shifts_pages(sim):
    before = expected_order(sim.records(OUT_MISSED))
    sim.insert_after(1, OUT_MISSED, [make_call(T0 + 1, cmiuid="z")])  # newest
    cdr(sim, MISSED)  # other endpoints do not count
    p1 = cdr(sim, page=1).json
    assert p1["count"] == 25 and p1["cdr"] == before[:10]
    p2 = cdr(sim, page=2).json
    assert p2["count"] == 26
    assert p2["cdr"][0] == before[9]  # the last of page 1 shows up again
    assert p2["cdr"] == before[9:19]
    assert cdr(sim, page=1).json["cdr"][0]["cmiuid"] == "z"


def test_insert_after_counts_only_successes(sim):
    sim.insert_after(2, OUT_MISSED, [make_call(T0, cmiuid="late")])
    cdr(sim, token="bogus")
    sim.inject("500")
    cdr(sim)
    assert cdr(sim).json["count"] == 25
    assert cdr(sim).json["count"] == 25
    assert cdr(sim).json["count"] == 26


# ----------------------------------------------------------------------- stats


def test_stats_bodies_and_reset(sim):
    cdr(sim, page=2, limit=5)
    post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD})
    st = sim.stats
    assert st.requests == 2 and st.by_path == {OUT_MISSED: 1, "/v2/user/login": 1}
    assert st.bodies[0]["path"] == OUT_MISSED and st.bodies[0]["limit"] == 5
    assert st.bodies_for("out_missed") == [st.bodies[0]]
    assert st.logins == 1 and st.max_in_flight == 1 and st.in_flight == 0
    st.reset()
    assert (st.requests, st.by_path, st.bodies, st.logins) == (0, {}, [], 0)


def test_max_in_flight_with_latency():
    with Simulator(tokens=[TOKEN], latency_ms=300) as s:
        barrier = threading.Barrier(6)
        results = []

        def worker():
            barrier.wait()
            results.append(cdr(s).status)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results == [200] * 6
        assert time.monotonic() - t < 1.0  # served concurrently
        assert s.stats.max_in_flight == 6
        s.stats.reset()
        s.set_latency(0)
        for _ in range(3):
            cdr(s)
        assert s.stats.max_in_flight == 1

        # a client with 3 workers never shows up as 4 in flight, even without latency
        s.stats.reset()

        def sequential():
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            body = {"token": TOKEN, "from": 0, "to": 2 * T0}
            for _ in range(100):
                assert post(s, OUT_MISSED, body, conn=conn).status == 200
            conn.close()

        threads = [threading.Thread(target=sequential) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert s.stats.requests == 300 and s.stats.max_in_flight <= 3


# ----------------------------------------------------------------------- speed


def test_100k_calls_served_fast():
    recs = generate_calls(100_000, T0 - 365 * DAY, T0, seed=1)
    with Simulator(calls={OUT_MISSED: recs}, tokens=[TOKEN]) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        t = time.monotonic()
        for page in [*range(1, 51), *range(5000, 5050)]:  # shallow and deep pages
            body = {"token": TOKEN, "from": T0 - 200 * DAY, "to": T0, "page": page}
            ans = post(s, OUT_MISSED, body, conn=conn).json
            assert len(ans["cdr"]) == 10
        elapsed = time.monotonic() - t
        conn.close()
        assert elapsed < 2.0, elapsed  # ~0.05 s on an idle machine
        assert ans["count"] > 50_000


# ----------------------------------------------------------------------- CLI


def test_cli_port_file_and_sigterm(tmp_path):
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integration_tests.telecmi_simulator",
            "--port-file",
            str(port_file),
            "--calls",
            "30",
            "--days",
            "2",
            "--endpoints",
            "out_missed,missed",
        ],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        port = int(port_file.read_text())
        end = 1767225600000  # 2026-01-01T00:00:00Z, the default --end
        body = {"token": "demo-token", "from": end - 2 * DAY, "to": end}

        def call(path: str, b: dict) -> dict:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                json.dumps(b).encode(),
                {"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())

        assert call(OUT_MISSED, body)["count"] == 30
        assert call(MISSED, body)["count"] == 30
        assert call(ANSWERED, body)["count"] == 0
        login = call("/v2/user/login", {"id": "101_1111112", "password": "demo-password"})
        assert login["code"] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"TeleCMI simulator on http://127.0.0.1:{port} (30 calls per endpoint" in err
    assert not port_file.exists()


def test_all_endpoints_constant():
    assert CDR_ENDPOINTS == (OUT_MISSED, MISSED, ANSWERED, OUT_ANSWERED)
