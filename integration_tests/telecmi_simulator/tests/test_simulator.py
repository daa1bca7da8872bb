"""Tests of the TeleCMI simulator itself, over real HTTP (http.client / urllib)."""

from __future__ import annotations

import contextlib
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
    ACCOUNT_ENDPOINTS,
    ANSWERED,
    CDR_ENDPOINTS,
    DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
    DROP,
    FAULTS,
    GLOBAL_VOICEMAIL,
    INDIA_ENDPOINTS,
    INDIA_VOICEMAIL,
    MISSED,
    OUT_ANSWERED,
    OUT_MISSED,
    PLAY_FAULTS,
    STORE_PATHS,
    USER_ENDPOINTS,
    VOICEMAIL_PATHS,
    Simulator,
    generate_agents,
    generate_calls,
    generate_voicemails,
    make_call,
    make_voicemail,
    server,
)
from integration_tests.telecmi_simulator.__main__ import main as cli_main

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
            "out_missed,missed,/v2/answered",
            "--app",
            "42:sek",
            "--agents",
            "3",
            "--page-cap",
            "5",
            "--rate-limit",
            "10",
            "--rate-limit-form",
            "body",
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
        app = {"appid": 42, "secret": "sek", "start_date": end - 2 * DAY, "end_date": end}
        answered = call("/v2/answered", app)
        assert answered["count"] == 30 and len(answered["cdr"]) == 5  # --page-cap
        users = call("/v3/user/list", {"appid": 42, "secret": "sek"})
        assert users["count"] == 3 and users["agents"][0]["agent_id"] == "101_42"
        codes = [call("/v2/analysis", app)["code"] for _ in range(20)]  # 10/s, burst 10
        assert 429 in codes and codes[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"TeleCMI simulator on http://127.0.0.1:{port} (30 calls per endpoint" in err
    assert not port_file.exists()


def test_endpoint_constants():
    assert USER_ENDPOINTS == (ANSWERED, MISSED, OUT_ANSWERED, OUT_MISSED)
    assert ACCOUNT_ENDPOINTS == ("/v2/answered", "/v2/missed", "/v2/out_answered", "/v2/out_missed")
    assert INDIA_ENDPOINTS == ("/v1/answered", "/v1/missed", "/v1/outanswered", "/v1/outmissed")
    assert CDR_ENDPOINTS[:4] == (OUT_MISSED, MISSED, ANSWERED, OUT_ANSWERED)  # as before
    assert set(CDR_ENDPOINTS) == {*USER_ENDPOINTS, *ACCOUNT_ENDPOINTS, *INDIA_ENDPOINTS}
    assert len(CDR_ENDPOINTS) == 12
    assert (DEFAULT_APP_ID, DEFAULT_APP_SECRET) == (1111112, "demo-app-secret")


# ======================================================================= app credentials

APP_ID, SECRET = 1111112, "s3cret"
ACC_ANSWERED, ACC_MISSED, ACC_OUT_ANSWERED, ACC_OUT_MISSED = ACCOUNT_ENDPOINTS
IN_ANSWERED, IN_MISSED, IN_OUT_ANSWERED, IN_OUT_MISSED = INDIA_ENDPOINTS


def app_body(path: str, **body: Any) -> dict[str, Any]:
    """A body for an app-credential path: India's calls carry the secret as `token`."""
    body.setdefault("appid", APP_ID)
    body.setdefault("token" if path in INDIA_ENDPOINTS else "secret", SECRET)
    if path in ACCOUNT_ENDPOINTS or path in INDIA_ENDPOINTS or path == "/v2/analysis":
        body.setdefault("start_date", T0 - 10 * DAY)
        body.setdefault("end_date", T0 + 10 * DAY)
    return body


def app_post(sim: Simulator, path: str, **body: Any) -> Resp:
    return post(sim, path, app_body(path, **body))


@pytest.fixture
def app_sim():
    calls = {ep: generate_calls(25, T0 - DAY, T0, seed=i, endpoint=ep) for i, ep in enumerate(CDR_ENDPOINTS)}
    with Simulator(
        calls=calls, tokens=[TOKEN], users={USER: PASSWORD}, apps={APP_ID: SECRET}, agents=generate_agents(23)
    ) as s:
        yield s


def record_key(r: dict) -> tuple:
    return (r["time"], r.get("cmiuid", r.get("_id")))


def test_account_and_india_record_shapes():
    n = 400
    for ep in ACCOUNT_ENDPOINTS:
        recs = generate_calls(n, T0 - DAY, T0, endpoint=ep)
        user_like = generate_calls(n, T0 - DAY, T0, endpoint=USER_ENDPOINTS[ACCOUNT_ENDPOINTS.index(ep)])
        assert {k for r in recs for k in r} == {k for r in user_like for k in r} | {"agent"}
        agents = [r["agent"] for r in recs if "agent" in r]
        assert len(set(agents)) == 12 and set(agents) == {f"{e}_1111112" for e in range(101, 113)}
        if ep == ACC_MISSED:
            assert 0.7 * n < len(agents) < n  # most, not all
            assert all(len(r["cmiuid"]) == 24 for r in recs)
        else:
            assert len(agents) == n
    for ep in INDIA_ENDPOINTS:
        recs = generate_calls(n, T0 - DAY, T0, endpoint=ep, notes_ratio=1.0)
        for r in recs:
            assert len(r["_id"]) == 24 and int(r["_id"], 16) >= 0
            assert "cmiuid" not in r and "duration" not in r and "notes" not in r
            assert isinstance(r["rate"], str) and float(r["rate"]) >= 0 and "." in r["rate"]
        outgoing = ep in (IN_OUT_ANSWERED, IN_OUT_MISSED)
        assert all(isinstance(r["from"], str) and r["from"].endswith("_1111112") for r in recs) == outgoing
        assert all(("agent" in r) == (ep == IN_ANSWERED) for r in recs)
        assert all(("filename" in r) == (ep in (IN_ANSWERED, IN_OUT_ANSWERED)) for r in recs)
    assert any(r["rate"] != "0.00" for r in generate_calls(50, T0 - DAY, T0, endpoint=IN_OUT_ANSWERED))
    # sorted newest first by (time, id) on every path
    recs = generate_calls(50, T0, T0 + 5, endpoint=IN_MISSED)
    assert recs == sorted(recs, key=record_key, reverse=True)
    assert make_call(T0, endpoint=IN_MISSED, cmiuid="abc")["_id"] == "abc"
    assert "agent" in make_call(T0, endpoint=ACC_OUT_MISSED)
    assert make_call(T0, endpoint="/v1/answered", agent=DROP).keys() >= {"_id", "time", "rate"}


def test_generate_agents():
    a = generate_agents(15, seed=2)
    assert a == generate_agents(15, seed=2) and a != generate_agents(15, seed=3)
    assert [x["agent_id"] for x in a[:2]] == ["101_1111112", "102_1111112"]
    assert [x["extension"] for x in a] == list(range(101, 116))
    assert len({x["password"] for x in a}) == 15 and all(x["password"] for x in a)
    assert set(a[0]) == {
        "agent_id",
        "first_name",
        "last_name",
        "extension",
        "password",
        "notify",
        "phone",
        "start_time",
        "end_time",
    }
    assert generate_agents(1, app_id=7)[0]["agent_id"] == "101_7"
    assert str(a[0]["phone"]).startswith("91") and (a[0]["start_time"], a[0]["end_time"]) == (9, 18)


@pytest.mark.parametrize("path", ACCOUNT_ENDPOINTS)
def test_account_endpoints_page_and_count(app_sim, path):
    everything = app_sim.records(path)
    assert len(everything) == 25 and everything == sorted(everything, key=record_key, reverse=True)
    p1 = app_post(app_sim, path, page=1, limit=20).json
    p2 = app_post(app_sim, path, page=2, limit=20).json
    assert p1["code"] == 200 and p1["count"] == 25 and p2["count"] == 25
    assert p1["cdr"] + p2["cdr"] == everything
    assert app_post(app_sim, path).json["cdr"] == everything[:10]  # default limit 10
    assert app_post(app_sim, path, appid=str(APP_ID)).json["code"] == 200  # a string of digits
    assert app_post(app_sim, path, limit=21).json == {
        "code": 400,
        "error": True,
        "msg": "Parameter limit lesser then equals 20",
    }
    auth_failed = {"code": 404, "error": True, "msg": "Authentication Failed"}
    assert app_post(app_sim, path, secret="nope").json == auth_failed
    assert app_post(app_sim, path, appid=999).json == auth_failed
    assert app_post(app_sim, path, appid="x1").json == auth_failed
    missing = {"code": 400, "error": True, "msg": "Parameter missing"}
    for key in ("start_date", "end_date", "appid", "secret"):
        body = {k: v for k, v in app_body(path).items() if k != key}
        assert post(app_sim, path, body).json == missing
    # a user token does not open the account-wide paths
    assert post(app_sim, path, {"token": TOKEN, "from": 0, "to": 2 * T0}).json == missing
    mid = everything[12]["time"]
    ans = app_post(app_sim, path, start_date=mid, end_date=T0).json
    assert ans["count"] == sum(r["time"] >= mid for r in everything)


@pytest.mark.parametrize("edges", ["inclusive", "exclusive"])
def test_account_and_india_window_edges(edges):
    lo, hi = T0, T0 + 1000
    times = {"before": lo - 1, "on-from": lo, "inside": lo + 500, "on-to": hi, "after": hi + 1}
    calls = {
        ep: [make_call(t, endpoint=ep, cmiuid=name) for name, t in times.items()]
        for ep in (ACC_OUT_MISSED, IN_OUT_MISSED)
    }
    with Simulator(calls=calls, apps={APP_ID: SECRET}, edges=edges) as s:
        want = ["on-to", "inside", "on-from"] if edges == "inclusive" else ["inside"]
        ans = app_post(s, ACC_OUT_MISSED, start_date=lo, end_date=hi).json
        assert [r["cmiuid"] for r in ans["cdr"]] == want and ans["count"] == len(want)
        ans = app_post(s, IN_OUT_MISSED, start_date=lo, end_date=hi).json
        assert [r["_id"] for r in ans["cdr"]] == want and ans["total"] == len(want)
        ans = app_post(s, "/v2/analysis", start_date=lo, end_date=hi).json
        assert ans["total"] == ans["missed"] == len(want) and ans["answered"] == 0


@pytest.mark.parametrize("path", INDIA_ENDPOINTS)
def test_india_endpoints_envelope(app_sim, path):
    everything = app_sim.records(path)
    pages = [app_post(app_sim, path, page=p, limit=10).json for p in (1, 2, 3)]
    assert all(set(p) == {"total", "cdr"} and p["total"] == 25 for p in pages)  # no code
    assert [r for p in pages for r in p["cdr"]] == everything
    assert all("_id" in r for r in everything)
    assert app_post(app_sim, path, limit=11).json == {"code": 400, "msg": "Parameter limit lesser then equals 10"}
    bad = {"code": 404, "msg": "Invalid app id or secret, authentication failed"}
    assert app_post(app_sim, path, token="nope").json == bad
    assert app_post(app_sim, path, appid=1).json == bad
    # the secret travels as `token` here: `secret` alone is a missing parameter
    body = {k: v for k, v in app_body(path).items() if k != "token"}
    assert post(app_sim, path, {**body, "secret": SECRET}).json == {"code": 400, "msg": "Parameter missing"}
    assert post(app_sim, path, {k: v for k, v in body.items() if k != "start_date"}).json["code"] == 400


def test_analysis(app_sim):
    ans = app_post(app_sim, "/v2/analysis").json
    assert ans == {"code": 200, "total": 100, "answered": 50, "missed": 50}
    app_sim.add_calls(ACC_OUT_ANSWERED, [make_call(T0, endpoint=ACC_OUT_ANSWERED)])
    assert app_post(app_sim, "/v2/analysis").json["answered"] == 51
    assert app_post(app_sim, "/v2/analysis", start_date=0, end_date=1).json["total"] == 0
    assert app_post(app_sim, "/v2/analysis", secret="x").json["msg"] == "Authentication Failed"
    body = {k: v for k, v in app_body("/v2/analysis").items() if k != "end_date"}
    assert post(app_sim, "/v2/analysis", body).json["msg"] == "Parameter missing"


def test_users_lists(app_sim):
    agents = generate_agents(23)
    got = []
    for page in (1, 2, 3):
        ans = app_post(app_sim, "/v3/user/list", page=page, limit=10).json
        assert ans["code"] == 200 and ans["status"] == "success" and ans["count"] == 23
        got += ans["agents"]
    assert got == agents and all("password" in a for a in got)
    assert app_post(app_sim, "/v3/user/list", limit=20).json["agents"] == agents[:20]
    assert app_post(app_sim, "/v3/user/list", limit=21).json["code"] == 400
    assert app_post(app_sim, "/v3/user/list").json["agents"] == agents[:10]  # defaults

    v2 = app_post(app_sim, "/v2/user/list", page=3, limit=10).json
    assert v2["code"] == 200 and v2["count"] == 23 and len(v2["agents"]) == 3
    first = v2["agents"][0]
    assert first["name"] == f"{agents[20]['first_name']} {agents[20]['last_name']}"
    assert "first_name" not in first and "last_name" not in first
    assert first["password"] == agents[20]["password"] and first["agent_id"] == agents[20]["agent_id"]
    assert app_post(app_sim, "/v2/user/list", limit=11).json["msg"] == "Parameter limit lesser then equals 10"

    india = app_post(app_sim, "/v1/agent/list", page=2, limit=10).json
    assert india == {"code": "cmi-2000", "status": "success", "count": 23, "agents": agents[10:20]}
    assert app_post(app_sim, "/v1/agent/list", limit=11).json["code"] == 400

    for path in ("/v3/user/list", "/v2/user/list"):
        assert app_post(app_sim, path, secret="no").json == {"code": 404, "error": True, "msg": "Authentication Failed"}
        assert post(app_sim, path, {"appid": APP_ID}).json["msg"] == "Parameter missing"
    assert app_post(app_sim, "/v1/agent/list", secret="no").json == {
        "code": 404,
        "msg": "Invalid app id or secret, authentication failed",
    }
    with Simulator(apps={APP_ID: SECRET}) as s:  # no agents
        assert app_post(s, "/v3/user/list").json["count"] == 0


def test_v3_users_off():
    with Simulator(apps={APP_ID: SECRET}, agents=generate_agents(3), v3_users=False) as s:
        r = app_post(s, "/v3/user/list")
        assert r.status == 404 and r.headers["content-type"].startswith("text/html")
        assert b"Cannot POST /v3/user/list" in r.raw
        assert app_post(s, "/v2/user/list").json["count"] == 3


def test_page_cap(app_sim):
    app_sim.page_cap = 10
    everything = app_sim.records(ACC_ANSWERED)
    p1, p2, p3 = (app_post(app_sim, ACC_ANSWERED, page=p, limit=20).json for p in (1, 2, 3))
    assert p1["count"] == 25 and p1["cdr"] == everything[:10]
    assert p2["cdr"] == everything[10:20] and p3["cdr"] == everything[20:]
    assert app_post(app_sim, ACC_ANSWERED, page=2, limit=4).json["cdr"] == everything[4:8]  # below the cap
    assert len(cdr(app_sim, ANSWERED, limit=10).json["cdr"]) == 10
    app_sim.page_cap = 3
    assert cdr(app_sim, ANSWERED, page=2).json["cdr"] == app_sim.records(ANSWERED)[3:6]
    users = app_post(app_sim, "/v3/user/list", limit=20).json
    assert users["count"] == 23 and len(users["agents"]) == 3
    with Simulator(apps={APP_ID: SECRET}, page_cap=5, calls={ACC_MISSED: everything}) as s:
        assert len(app_post(s, ACC_MISSED, limit=20).json["cdr"]) == 5


def test_token_lifetime():
    with Simulator(tokens=[TOKEN], users={USER: PASSWORD}, token_lifetime=3) as s:
        token = post(s, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["token"]
        assert [cdr(s, token=token).json["code"] for _ in range(4)] == [200, 200, 200, 404]
        assert token not in s.valid_tokens()
        assert all(cdr(s).json["code"] == 200 for _ in range(5))  # fixed tokens live on
        fresh = post(s, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["token"]
        assert cdr(s, token=fresh).json["code"] == 200
        assert cdr(s, token="bogus").json["code"] == 404  # does not use up anything
        assert cdr(s, token=fresh).json["code"] == 200


# ----------------------------------------------------------------------- rate limit


@pytest.mark.parametrize(
    ("form", "status", "retry_after"),
    [("retry_after", 429, "1"), ("no_retry_after", 429, None), ("body", 200, None)],
)
def test_rate_limit_forms(form, status, retry_after):
    with Simulator(tokens=[TOKEN], users={USER: PASSWORD}, rate_limit=1, rate_limit_form=form) as s:
        s.inject("500")
        assert cdr(s).status == 500  # the burst of 1
        r = post(s, "/v2/user/login", {"id": USER, "password": PASSWORD})  # every path counts
        assert r.status == status and r.headers.get("retry-after") == retry_after
        assert r.json == {"code": 429, "error": True, "msg": "Too many requests, please try again later"}
        s.inject("503")
        assert cdr(s).json["code"] == 429
        assert s.pending_faults() == 1  # a rate-limited request does not use a fault up
        assert s.stats.rate_limited == 2 and s.stats.requests == 3 and s.stats.faults_served == 1
        time.sleep(1.05)
        assert cdr(s).status == 503
    with pytest.raises(ValueError):
        Simulator(rate_limit=1, rate_limit_form="nope")


def test_rate_limit_is_exact_under_concurrency():
    rate = 200
    with Simulator(tokens=[TOKEN], rate_limit=rate) as s:
        stop = time.monotonic() + 1.0
        ok = []

        def hammer():
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            body = {"token": TOKEN, "from": 0, "to": 1}
            n = 0
            while time.monotonic() < stop:
                n += post(s, OUT_MISSED, body, conn=conn).status == 200
            ok.append(n)
            conn.close()

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - t
        allowed = sum(ok)
        assert s.stats.rate_limited == s.stats.requests - allowed > 2 * allowed  # it was hammered
        # burst (200) plus 200/s; the window seen by the server is within the client's
        assert rate + rate * (elapsed - 0.1) <= allowed <= rate + rate * elapsed + 1, (allowed, elapsed)


# ----------------------------------------------------------------------- new faults


def test_fault_short_page(app_sim):
    full = cdr(app_sim).json
    app_sim.inject("short_page")
    ans = cdr(app_sim).json
    assert ans["count"] == 25 and ans["cdr"] == full["cdr"][:7]
    app_sim.inject("short_page", drop=20)
    assert cdr(app_sim).json["cdr"] == []
    app_sim.inject("short_page", drop=0)
    assert cdr(app_sim).json == full
    app_sim.inject("short_page", drop=1)
    assert app_post(app_sim, "/v3/user/list").json["count"] == 23  # users lists do not use it up
    ans = app_post(app_sim, IN_MISSED).json
    assert ans["total"] == 25 and len(ans["cdr"]) == 9
    assert cdr(app_sim).json == full  # the store is untouched


def test_fault_shuffle_ties():
    tied = [make_call(T0, cmiuid=f"t{i:02d}") for i in range(30)]
    others = generate_calls(25, T0 - DAY, T0 - 1, seed=3) + generate_calls(5, T0 + 1, T0 + DAY, seed=4)
    with Simulator(calls={OUT_MISSED: tied + others}, tokens=[TOKEN]) as s:
        stable = [cdr(s, page=p).json["cdr"] for p in range(1, 7)]
        assert stable == [cdr(s, page=p).json["cdr"] for p in range(1, 7)]  # without it: stable
        s.inject("shuffle_ties", times=-1)
        pages = [cdr(s, page=p).json for p in range(1, 7)]
        # the times per position do not change; only records sharing a millisecond move
        assert [[r["time"] for r in p["cdr"]] for p in pages] == [[r["time"] for r in p] for p in stable]
        assert all(p["count"] == 60 for p in pages)
        ids = [r["cmiuid"] for p in pages for r in p["cdr"]]
        assert len(ids) == 60 and len(set(ids)) < 60  # overlaps and gaps
        assert set(ids) - {f"t{i:02d}" for i in range(30)} == {r["cmiuid"] for r in others}
        assert len({tuple(r["cmiuid"] for r in cdr(s, page=2).json["cdr"]) for _ in range(5)}) > 1
        s.clear_faults()
        assert [cdr(s, page=p).json["cdr"] for p in range(1, 7)] == stable


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("string", ["1764583200123", "1764583200122"]),
        ("float", [1764583200123.0, 1764583200122.0]),
        ("iso", ["2025-12-01T10:00:00.123Z", "2025-12-01T10:00:00.122Z"]),
        ("missing", [None, None]),
    ],
)
def test_fault_time_as(form, expected):
    t = 1764583200123  # 2025-12-01T10:00:00.123Z
    calls = {OUT_MISSED: [make_call(t), make_call(t - 1)], IN_OUT_MISSED: [make_call(t, endpoint=IN_OUT_MISSED)]}
    with Simulator(calls=calls, tokens=[TOKEN], users={USER: PASSWORD}, apps={APP_ID: SECRET}) as s:
        s.inject("time_as", form=form)
        assert post(s, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["code"] == 200  # not used up
        recs = cdr(s, **{"from": 0, "to": 2 * t}).json["cdr"]
        assert [r.get("time", None) for r in recs] == expected
        assert all(("time" in r) == (form != "missing") for r in recs)
        s.inject("time_as", form=form, endpoint=IN_OUT_MISSED)
        assert app_post(s, IN_OUT_MISSED, start_date=0, end_date=2 * t).json["cdr"][0].get("time") == expected[0]
        assert cdr(s, **{"from": 0, "to": 2 * t}).json["cdr"][0]["time"] == t  # the store is untouched
    with pytest.raises(ValueError):
        Simulator().inject("time_as", form="roman")


def test_fault_echo_secret(app_sim):
    app_sim.inject("echo_secret", times=5)
    r = cdr(app_sim)
    assert r.status == 200 and r.json == {"code": 404, "error": True, "msg": f"Invalid user token {TOKEN}"}
    assert app_post(app_sim, ACC_MISSED).json["msg"] == f"Authentication Failed for {SECRET}"
    assert post(app_sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["msg"] == (
        f"Invalid password {PASSWORD}"
    )
    assert app_post(app_sim, "/v3/user/list").json["msg"] == f"Authentication Failed for {SECRET}"
    assert post(app_sim, MISSED, {}).json["msg"] == "Invalid user token "  # nothing to echo
    assert cdr(app_sim).json["code"] == 200
    with Simulator(tokens=[TOKEN], error_placement="status") as s:
        s.inject("echo_secret")
        r = cdr(s)
        assert r.status == 404 and TOKEN in r.json["msg"]


def test_fault_refuse(app_sim):
    app_sim.inject("refuse")
    assert cdr(app_sim).json == {"code": 403, "error": True, "msg": "You are not authorized to access this resource"}
    app_sim.inject("refuse", code=401, msg="no", endpoint="/v2/user/list", after=1)
    assert app_post(app_sim, "/v2/user/list").json["code"] == 200
    assert app_post(app_sim, "/v2/user/list").json == {"code": 401, "error": True, "msg": "no"}
    assert app_post(app_sim, "/v2/user/list").json["code"] == 200


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_fault_trickle(sim):
    sim.inject("trickle", seconds=30, interval=0.05)
    sock = socket.create_connection(("127.0.0.1", sim.port), timeout=1)
    body = json.dumps({"token": TOKEN, "from": 0, "to": 2 * T0}).encode()
    sock.sendall(b"POST /v2/user/out_missed HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    t = time.monotonic()
    head, got = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200") and time.monotonic() - t < 0.5  # headers at once
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert length > 30 / 0.05  # cannot finish within `seconds`
    while time.monotonic() - t < 0.5:
        got += sock.recv(10)  # a byte at a time: a per-read timeout never fires
    assert 4 <= len(got) <= 12 and got == cdr(sim).raw[: len(got)]  # others are served meanwhile
    sock.close()
    deadline = time.monotonic() + 2
    while sim._server.connections and time.monotonic() < deadline:  # the server stops trickling
        time.sleep(0.02)
    assert not sim._server.connections
    # a short one ends with the connection closed before the body is complete
    sim.inject("trickle", seconds=0.3, interval=0.05)
    t = time.monotonic()
    with pytest.raises(http.client.IncompleteRead):
        cdr(sim)
    assert 0.25 < time.monotonic() - t < 2


def test_fault_surrogate_and_bad_utf8(app_sim):
    first = cdr(app_sim).json["cdr"][0]
    app_sim.inject("surrogate")
    r = cdr(app_sim)
    assert b"\\ud83d" in r.raw and r.raw.decode("ascii")
    assert r.json["cdr"][0]["name"] == first["name"] + "\ud83d"  # Python's json accepts it
    app_sim.inject("bad_utf8")
    r = cdr(app_sim)
    assert f'"name":"{first["name"]}'.encode() + b'\xf0\x9f"' in r.raw
    with pytest.raises(UnicodeDecodeError):
        r.raw.decode("utf-8")
    assert cdr(app_sim).json["cdr"][0] == first  # the store is untouched
    app_sim.inject("surrogate")
    app_sim.inject("bad_utf8")
    post(app_sim, "/v2/user/login", {"id": USER, "password": PASSWORD})  # not used up by a login
    assert app_post(app_sim, "/v3/user/list").raw.decode("ascii")  # nor by a users list
    assert b"\\ud83d" in app_post(app_sim, IN_ANSWERED).raw
    assert b"\xf0\x9f" in app_post(app_sim, ACC_ANSWERED).raw
    app_sim.inject("surrogate", endpoint=MISSED)
    assert cdr(app_sim, MISSED, **{"from": 0, "to": 1}).json["cdr"] == []  # nothing to change


def test_fault_string_code(app_sim):
    app_sim.inject("string_code", times=5)
    assert cdr(app_sim).json["code"] == "200"
    assert cdr(app_sim, token="bogus").json["code"] == "404"
    assert post(app_sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).json["code"] == "200"
    assert app_post(app_sim, IN_MISSED).json.keys() == {"total", "cdr"}  # nothing to change
    assert app_post(app_sim, "/v1/agent/list").json["code"] == "cmi-2000"
    assert cdr(app_sim).json["code"] == 200


def test_cdr_only_faults_skip_other_paths(app_sim):
    app_sim.inject("inflate_count", extra=5)
    app_sim.inject("ignore_page")
    assert app_post(app_sim, "/v3/user/list", page=3).json["count"] == 23
    assert len(app_post(app_sim, "/v3/user/list", page=3).json["agents"]) == 3
    assert app_post(app_sim, "/v2/analysis").json["total"] == 100
    assert app_post(app_sim, IN_MISSED).json["total"] == 30
    assert app_post(app_sim, ACC_MISSED, page=3).json["cdr"] == app_post(app_sim, ACC_MISSED).json["cdr"]
    assert app_sim.pending_faults() == 0
    app_sim.inject("inflate_count", extra=5, endpoint="/v3/user/list")  # when asked for explicitly
    assert app_post(app_sim, "/v3/user/list").json["count"] == 28


# options that make each fault quick to serve
FAST = {"stall": {"seconds": 0.01}, "trickle": {"seconds": 0.2, "interval": 0.05}}


@pytest.mark.parametrize("fault", sorted(FAULTS - PLAY_FAULTS))  # the play faults' own: test_play.py
def test_every_fault_waits_after_n(sim, fault):
    baseline = cdr(sim, page=2).raw
    sim.inject(fault, after=2, **FAST.get(fault, {}))
    for _ in range(2):
        assert cdr(sim, page=2).raw == baseline
    assert sim.stats.faults_served == 0 and sim.pending_faults() == 1
    with contextlib.suppress(ConnectionError, http.client.HTTPException):
        cdr(sim, page=2)
    assert sim.stats.faults_served == 1 and sim.pending_faults() == 0


def test_after_counts_matching_requests_only(sim):
    sim.inject("500", times=2, after=1, endpoint=MISSED)
    sim.inject("inflate_count", extra=1, after=1)
    sim.inject("503")
    assert cdr(sim).json["count"] == 25  # inflate_count's `after`; the queue waits
    assert post(sim, "/v2/user/login", {"id": USER, "password": PASSWORD}).status == 503
    assert cdr(sim, MISSED).status == 200  # missed-only 500: its `after`
    assert [cdr(sim, MISSED).status for _ in range(2)] == [500, 500]
    assert cdr(sim).json["count"] == 26
    assert cdr(sim).json["count"] == 25
    assert sim.stats.faults_served == 4 and sim.pending_faults() == 0


# ----------------------------------------------------------------------- transport details


def test_chunked_body_and_bad_request(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    body = json.dumps({"token": TOKEN, "from": 0, "to": 2 * T0}).encode()
    conn.request("POST", OUT_MISSED, iter([body[:10], body[10:]]))  # sent chunked
    r = conn.getresponse()
    assert json.loads(r.read())["count"] == 25
    conn.close()
    sock = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
    sock.sendall(b"POST /v2/user/out_missed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 400")
    sock.close()


def test_bodies_cap(sim, monkeypatch):
    monkeypatch.setattr(server, "BODIES_CAP", 2)
    for _ in range(3):
        cdr(sim)
    assert len(sim.stats.bodies) == 2 and sim.stats.bodies_dropped == 1
    assert "rate_limited=0" in repr(sim.stats)


def test_argument_guards():
    with pytest.raises(ValueError):
        Simulator(error_placement="header")
    with pytest.raises(ValueError):
        Simulator(edges="open")
    s = Simulator(tokens=[TOKEN])
    with pytest.raises(RuntimeError):
        s.base_url  # noqa: B018
    with pytest.raises(ValueError):
        s.add_calls("/v2/user/in_cdr", [])
    with pytest.raises(ValueError):
        s.records("/v3/user/list")
    with pytest.raises(ValueError):
        s.inject("500", times=-2)
    s.inject("500", times=0)
    assert s.pending_faults() == 0
    s.insert_after(0, ACC_MISSED, [make_call(T0, endpoint=ACC_MISSED)])  # at once
    assert len(s.records(ACC_MISSED)) == 1
    with s:
        with pytest.raises(RuntimeError):
            s.start()
        assert cdr(s).json["code"] == 200
    with pytest.raises(ValueError):
        generate_calls(-1, T0, T0)
    with pytest.raises(ValueError):
        generate_calls(1, T0, T0 - 1)


def test_lenient_numbers_login_params_and_add_user(sim):
    missing = {"code": 400, "error": True, "msg": "Parameter missing"}
    assert cdr(sim, **{"from": float(T0 - DAY), "to": str(T0)}).json["count"] == 25  # 1.0 and "1" are numbers
    for bad in ({"from": True}, {"to": 1.5}, {"from": [1]}, {"page": "two"}, {"limit": "x"}):
        assert cdr(sim, **bad).json == missing, bad
    assert len(cdr(sim, limit=0).json["cdr"]) == 10  # no page size: the default
    assert post(sim, "/v2/user/login", {"id": USER}).json == missing
    assert post(sim, "/v2/user/login", {"id": "", "password": "x"}).json == missing
    assert post(sim, "/v2/user/login", {"id": "202_1", "password": "pw"}).json["code"] == 404
    sim.add_user("202_1", "pw")
    assert post(sim, "/v2/user/login", {"id": "202_1", "password": "pw"}).json["code"] == 200
    with pytest.raises(ValueError):
        sim.add_calls(OUT_MISSED, [{"cmiuid": "no-time"}])


@pytest.mark.parametrize(
    "argv",
    [["--end", "soon"], ["--endpoints", "out_missed,nope"], ["--user", "nopassword"], ["--app", "abc:secret"]],
)
def test_cli_rejects_bad_arguments(argv, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "invalid" in err or "unknown" in err


# ======================================================================= more of the account

GV, IV = GLOBAL_VOICEMAIL, INDIA_VOICEMAIL


def vm_post(sim: Simulator, path: str, **body: Any) -> Resp:
    body.setdefault("appid", APP_ID)
    body.setdefault("token" if path.startswith("/v1/") else "secret", SECRET)
    body.setdefault("start_date", T0 - 10 * DAY)
    body.setdefault("end_date", T0 + 10 * DAY)
    return post(sim, path, body)


@pytest.fixture
def vm_sim():
    calls = {ep: generate_calls(25, T0 - DAY, T0, seed=i, endpoint=ep) for i, ep in enumerate(CDR_ENDPOINTS)}
    calls[GV] = generate_voicemails(35, T0 - DAY, T0, seed=1)  # voicemail paths are accepted by calls=
    with Simulator(
        calls=calls,
        voicemails={IV: generate_voicemails(35, T0 - DAY, T0, seed=2, india=True)},
        tokens=[TOKEN],
        users={USER: PASSWORD},
        apps={APP_ID: SECRET},
        agents=generate_agents(23),
    ) as s:
        yield s


def vm_key(r: dict) -> tuple:
    return (r["time"], r.get("_id", r.get("voicename")))


def test_generate_voicemails_and_make_voicemail():
    a = generate_voicemails(400, T0 - DAY, T0, seed=3)
    assert a == generate_voicemails(400, T0 - DAY, T0, seed=3) and a != generate_voicemails(400, T0 - DAY, T0, seed=4)
    assert a == sorted(a, key=vm_key, reverse=True)
    for r in a:
        assert list(r) == ["time", "from", "voicename"]
        assert T0 - DAY <= r["time"] <= T0 and isinstance(r["from"], int) and len(str(r["from"])) == 12
        assert r["voicename"] == f"{r['time']}_{r['from']}.mp3"
    assert len({r["voicename"] for r in a}) == 400
    times = [r["time"] for r in a]
    assert 10 < len(times) - len(set(times)) < 100  # some share a millisecond
    assert max(times) - min(times) > DAY // 2  # spread over the range
    india = generate_voicemails(50, T0 - DAY, T0, seed=3, india=True)
    assert all(len(r["_id"]) == 24 and int(r["_id"], 16) >= 0 for r in india)
    assert india == sorted(india, key=vm_key, reverse=True) and len({r["_id"] for r in india}) == 50
    assert generate_voicemails(0, T0, T0) == []
    with pytest.raises(ValueError):
        generate_voicemails(1, T0, T0 - 1)
    v = make_voicemail(T0, voicename="x.mp3")
    assert v["time"] == T0 and v["voicename"] == "x.mp3" and "_id" not in v
    assert make_voicemail(T0)["voicename"] != make_voicemail(T0)["voicename"]
    assert make_voicemail(T0, india=True, _id="abc")["_id"] == "abc"
    assert "from" not in make_voicemail(T0, **{"from": DROP})
    assert VOICEMAIL_PATHS == ("/v2/voicemail", "/v1/voicemail")
    assert (*CDR_ENDPOINTS, *VOICEMAIL_PATHS) == STORE_PATHS


@pytest.mark.parametrize("path", [GLOBAL_VOICEMAIL, INDIA_VOICEMAIL])
def test_voicemail_endpoints(vm_sim, path):
    india = path == IV
    total = "total" if india else "count"
    everything = vm_sim.records(path)
    assert len(everything) == 35 and everything == sorted(everything, key=vm_key, reverse=True)
    pages = [vm_post(vm_sim, path, page=p, limit=10).json for p in (1, 2, 3, 4, 5)]
    for p in pages:
        assert set(p) == ({"total", "voicemail"} if india else {"count", "voicemail", "code"})
        assert p[total] == 35 and p.get("code", 200) == 200
    assert [r for p in pages for r in p["voicemail"]] == everything and pages[4]["voicemail"] == []
    assert vm_post(vm_sim, path).json["voicemail"] == everything[:10]  # default limit 10
    too_big = vm_post(vm_sim, path, limit=11).json
    assert too_big["code"] == 400 and too_big["msg"] == "Parameter limit lesser then equals 10"
    assert ("error" in too_big) is not india
    bad = vm_post(vm_sim, path, **{"token" if india else "secret": "nope"}).json
    if india:
        assert bad == {"code": 404, "msg": "Invalid app id or secret, authentication failed"}
        # the secret travels as `token`: `secret` alone is a missing parameter
        body = {"appid": APP_ID, "secret": SECRET, "start_date": 0, "end_date": 2 * T0}
        assert post(vm_sim, path, body).json == {"code": 400, "msg": "Parameter missing"}
    else:
        assert bad == {"code": 404, "error": True, "msg": "Authentication Failed"}
    assert vm_post(vm_sim, path, start_date=None).json["msg"] == "Parameter missing"
    mid = everything[17]["time"]
    ans = vm_post(vm_sim, path, start_date=mid, end_date=T0).json
    assert ans[total] == sum(r["time"] >= mid for r in everything)
    # records() and add_calls() / insert_after() take the voicemail paths
    late = make_voicemail(T0 + 1, india=india)
    vm_sim.insert_after(1, path, [late])
    assert vm_post(vm_sim, path).json[total] == 35
    assert vm_post(vm_sim, path).json["voicemail"][0] == late
    vm_sim.refuse_endpoint(path)
    assert vm_post(vm_sim, path).json["code"] == 403


@pytest.mark.parametrize("edges", ["inclusive", "exclusive"])
def test_voicemail_window_edges_and_error_placement(edges):
    lo, hi = T0, T0 + 1000
    times = {"before": lo - 1, "on-from": lo, "inside": lo + 500, "on-to": hi, "after": hi + 1}
    recs = {GV: [make_voicemail(t, voicename=n) for n, t in times.items()]}
    recs[IV] = [make_voicemail(t, india=True, _id=n) for n, t in times.items()]
    with Simulator(voicemails=recs, apps={APP_ID: SECRET}, edges=edges, error_placement="status") as s:
        want = ["on-to", "inside", "on-from"] if edges == "inclusive" else ["inside"]
        ans = vm_post(s, GV, start_date=lo, end_date=hi).json
        assert [r["voicename"] for r in ans["voicemail"]] == want and ans["count"] == len(want)
        ans = vm_post(s, IV, start_date=lo, end_date=hi).json
        assert [r["_id"] for r in ans["voicemail"]] == want and ans["total"] == len(want)
        assert vm_post(s, GV, secret="x").status == 404 and vm_post(s, IV, token="x").status == 404
    with pytest.raises(ValueError):
        Simulator(voicemails={"/v2/answered": []})


def test_calls_faults_match_voicemail_paths(vm_sim):
    full = vm_post(vm_sim, GV).json
    for fault, opts in (("inflate_count", {"extra": 5}), ("short_page", {}), ("ignore_page", {})):
        vm_sim.inject(fault, **opts)
    assert app_post(vm_sim, "/v3/user/list").json["count"] == 23  # a users list does not use them up
    assert vm_post(vm_sim, "/v2/balance").json["code"] == 200  # nor a balance
    assert vm_post(vm_sim, GV).json["count"] == 40
    assert vm_post(vm_sim, GV).json["voicemail"] == full["voicemail"][:7]
    assert vm_post(vm_sim, GV, page=3).json == full
    vm_sim.inject("time_as", form="string", endpoint=IV)
    assert all(isinstance(r["time"], str) for r in vm_post(vm_sim, IV).json["voicemail"])
    vm_sim.inject("surrogate")
    r = vm_post(vm_sim, GV)
    assert r.json["voicemail"][0]["voicename"] == full["voicemail"][0]["voicename"] + "\ud83d"
    assert vm_post(vm_sim, GV).json == full  # the store is untouched
    tied = [make_voicemail(T0, voicename=f"v{i:02d}.mp3") for i in range(30)]
    with Simulator(voicemails={GV: tied}, apps={APP_ID: SECRET}) as s:
        stable = [r["voicename"] for r in vm_post(s, GV).json["voicemail"]]
        assert stable == [f"v{i:02d}.mp3" for i in range(29, 19, -1)]  # ties: voicename descending
        s.inject("shuffle_ties", times=-1)
        assert len({tuple(r["voicename"] for r in vm_post(s, GV).json["voicemail"]) for _ in range(5)}) > 1


def test_offset_cap():
    calls = {
        ACC_ANSWERED: generate_calls(500, T0 - DAY, T0, endpoint=ACC_ANSWERED),
        IN_MISSED: generate_calls(50, T0 - DAY, T0, endpoint=IN_MISSED),
        GV: generate_voicemails(50, T0 - DAY, T0),
        OUT_MISSED: generate_calls(50, T0 - DAY, T0),
    }
    with Simulator(calls=calls, tokens=[TOKEN], apps={APP_ID: SECRET}, agents=generate_agents(23), offset_cap=400) as s:
        everything = s.records(ACC_ANSWERED)
        p20 = app_post(s, ACC_ANSWERED, page=20, limit=20).json
        assert p20["count"] == 500 and p20["cdr"] == everything[380:400]
        for page in (21, 22, 25):
            ans = app_post(s, ACC_ANSWERED, page=page, limit=20).json
            assert ans == {"count": 500, "cdr": [], "code": 200}
        assert app_post(s, ACC_ANSWERED, page=40, limit=10).json["cdr"] == everything[390:400]
        assert app_post(s, ACC_ANSWERED, page=41, limit=10).json["cdr"] == []
        s.page_cap = 10  # the offset after page_cap: pages of 20 asked, 10 served
        assert app_post(s, ACC_ANSWERED, page=40, limit=20).json["cdr"] == everything[390:400]
        assert app_post(s, ACC_ANSWERED, page=41, limit=20).json["cdr"] == []
        s.page_cap = None
        s.inject("ignore_page")
        assert app_post(s, ACC_ANSWERED, page=21, limit=20).json["cdr"] == everything[:20]
        s.offset_cap = 20  # every paged list: calls, India, voicemails, users
        assert app_post(s, IN_MISSED, page=3, limit=10).json == {"total": 50, "cdr": []}
        assert len(app_post(s, IN_MISSED, page=2, limit=10).json["cdr"]) == 10
        assert vm_post(s, GV, page=3).json == {"count": 50, "voicemail": [], "code": 200}
        assert cdr(s, page=3).json == {"count": 50, "cdr": [], "code": 200}
        for path in ("/v3/user/list", "/v2/user/list", "/v1/agent/list"):
            ans = app_post(s, path, page=3, limit=10).json
            assert ans["count"] == 23 and ans["agents"] == []
            assert len(app_post(s, path, page=2, limit=10).json["agents"]) == 10


def test_users_count_off(app_sim):
    app_sim.users_count = False
    agents = generate_agents(23)
    for path in ("/v3/user/list", "/v2/user/list", "/v1/agent/list"):
        pages = [app_post(app_sim, path, page=p, limit=10).json for p in (1, 2, 3)]
        assert all("count" not in p and p["status"] == "success" for p in pages)
        assert [a["agent_id"] for p in pages for a in p["agents"]] == [a["agent_id"] for a in agents]
    assert "count" in app_post(app_sim, ACC_MISSED).json  # only the users lists
    with Simulator(apps={APP_ID: SECRET}, agents=agents, users_count=False) as s:
        assert set(app_post(s, "/v3/user/list").json) == {"code", "status", "agents"}


class ListLimiter:
    """Answers take() from a script, then True; thread-safe."""

    def __init__(self, script: list[bool]) -> None:
        self.script, self.calls, self.lock = list(script), 0, threading.Lock()

    def take(self) -> bool:
        with self.lock:
            self.calls += 1
            return self.script.pop(0) if self.script else True


@pytest.mark.parametrize(
    ("form", "status", "retry_after"),
    [("retry_after", 429, "1"), ("retry_after_zero", 429, "0"), ("no_retry_after", 429, None), ("body", 200, None)],
)
def test_limiter_hook(form, status, retry_after):
    limiter = ListLimiter([True, False, True, False])
    with Simulator(tokens=[TOKEN], limiter=limiter, rate_limit=0.001, rate_limit_form=form) as s:
        answers = [cdr(s) for _ in range(6)]
        assert [r.json["code"] for r in answers] == [200, 429, 200, 429, 200, 200]  # rate_limit is ignored
        refused = answers[1]
        assert refused.status == status and refused.headers.get("retry-after") == retry_after
        assert refused.json == {"code": 429, "error": True, "msg": "Too many requests, please try again later"}
        assert limiter.calls == 6 and s.stats.rate_limited == 2
    with pytest.raises(TypeError):
        Simulator(limiter=object())


@pytest.mark.parametrize("retry_after", ["0", "-5", "soon", "99999", 0, 7, 2.5])
def test_fault_429_sends_retry_after_as_given(sim, retry_after):
    sim.inject("429", retry_after=retry_after)
    r = cdr(sim)
    assert r.status == 429 and r.headers["retry-after"] == str(retry_after)
    sim.inject("429", retry_after=None)
    assert "retry-after" not in cdr(sim).headers


def test_refuse_once_on_a_streams_first_request(app_sim):
    app_sim.inject("refuse", times=1, endpoint=ACC_MISSED, code=403)
    first = app_post(app_sim, ACC_MISSED)
    assert first.status == 200
    assert first.json == {"code": 403, "error": True, "msg": "You are not authorized to access this resource"}
    assert app_post(app_sim, ACC_ANSWERED).json["code"] == 200  # other streams: untouched
    second = app_post(app_sim, ACC_MISSED).json
    assert second["code"] == 200 and second["count"] == 25 and len(second["cdr"]) == 10
    assert app_sim.pending_faults() == 0


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504, 520, 521, 522, 523, 524, 599])
def test_fault_http_any_status(app_sim, status):
    app_sim.inject("http", status=status)
    r = cdr(app_sim)
    assert r.status == status and r.headers["content-type"].startswith("text/html")
    assert f"{status}".encode() in r.raw and b"<html" in r.raw
    with pytest.raises(ValueError):
        json.loads(r.raw)
    if 520 <= status <= 524:
        assert b"cloudflare" in r.raw.lower()
    app_sim.inject("http", status=status, body="json", endpoint=IN_MISSED, retry_after="30")
    r = app_post(app_sim, IN_MISSED)
    assert r.status == status and r.headers["retry-after"] == "30"
    assert set(r.json) == {"message"} and r.json["message"]  # no TeleCMI `code`
    assert cdr(app_sim).json["code"] == 200


def test_fault_http_status_line_and_guards(sim):
    sim.inject("http", status=522)
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    conn.request("POST", OUT_MISSED, json.dumps({"token": TOKEN, "from": 0, "to": 1}).encode())
    r = conn.getresponse()
    assert (r.status, r.reason) == (522, "Connection timed out")
    r.read()
    conn.close()
    sim.inject("http")  # default: 502, HTML
    assert cdr(sim).status == 502
    for bad in ({"status": 99}, {"status": 600}, {"status": 204}, {"body": "xml"}):
        with pytest.raises(ValueError):
            sim.inject("http", **bad)
    with pytest.raises(ValueError):
        sim.inject("echo_cut", form="xml")


def test_fault_no_count(vm_sim):
    vm_sim.inject("no_count", times=6)
    ans = cdr(vm_sim).json
    assert set(ans) == {"cdr", "code"} and len(ans["cdr"]) == 10
    assert set(app_post(vm_sim, IN_MISSED).json) == {"cdr"}
    assert set(vm_post(vm_sim, GV).json) == {"voicemail", "code"}
    assert set(vm_post(vm_sim, IV).json) == {"voicemail"}
    assert set(app_post(vm_sim, "/v3/user/list").json) == {"code", "status", "agents"}  # any path
    assert set(app_post(vm_sim, "/v2/analysis").json) == {"code", "answered", "missed"}
    assert cdr(vm_sim).json["count"] == 25


def test_fault_echo_cut(app_sim):
    raw = b'{"appid": 1111112,   "token": "s3cret",\n "start_date": 0, "end_date": 1, "page": 1}'
    app_sim.inject("echo_cut", length=34, endpoint=IN_MISSED)
    r = post(app_sim, IN_MISSED, raw)
    assert r.status == 200
    assert r.json == {"code": 400, "msg": "Invalid parameters: " + raw.decode()[:34]}  # India's envelope
    assert "s3c" in r.json["msg"] and SECRET not in r.json["msg"]  # the secret cut in the middle
    app_sim.inject("echo_cut")  # default length 200: the whole body here
    r = cdr(app_sim)
    body = json.dumps({"token": TOKEN, "from": T0 - 10 * DAY, "to": T0 + 10 * DAY})
    assert r.json == {"code": 400, "error": True, "msg": f"Invalid parameters: {body}"}
    app_sim.inject("echo_cut", length=30, status=500)
    r = app_post(app_sim, ACC_MISSED)
    assert r.status == 500 and r.json["code"] == 400 and r.json["error"] is True
    assert len(r.json["msg"]) == len("Invalid parameters: ") + 30
    app_sim.inject("echo_cut", length=25, status=400, form="text")
    r = post(app_sim, "/v2/user/login", {"id": USER, "password": PASSWORD})
    assert r.status == 400 and r.headers["content-type"].startswith("text/plain")
    assert r.raw.decode() == "Bad request: " + json.dumps({"id": USER, "password": PASSWORD})[:25]
    app_sim.inject("echo_cut", endpoint="/v1/balance")
    assert app_post(app_sim, "/v1/balance").json["msg"].startswith('Invalid parameters: {"appid": 1111112')
    assert post(app_sim, OUT_MISSED, b"").json["msg"] == "Parameter missing"  # consumed: back to normal
    with Simulator(tokens=[TOKEN], error_placement="status") as s:
        s.inject("echo_cut", length=5)
        r = cdr(s)
        assert r.status == 400 and r.json["msg"] == 'Invalid parameters: {"tok'


def test_fault_odd_rates():
    calls = {
        IN_OUT_ANSWERED: generate_calls(300, T0 - DAY, T0, endpoint=IN_OUT_ANSWERED),
        ACC_OUT_ANSWERED: generate_calls(30, T0 - DAY, T0, endpoint=ACC_OUT_ANSWERED),
    }
    with Simulator(calls=calls, voicemails={GV: generate_voicemails(10, T0 - DAY, T0)}, apps={APP_ID: SECRET}) as s:
        stored = s.records(IN_OUT_ANSWERED)
        s.inject("odd_rates", times=-1)
        seen = [r for p in range(1, 31) for r in app_post(s, IN_OUT_ANSWERED, page=p).json["cdr"]]
        assert [r["_id"] for r in seen] == [r["_id"] for r in stored]
        odd = [r for r in seen if r["rate"] in ("", "NA")]
        assert 60 < len(odd) < 140  # about a third
        assert {r["rate"] for r in odd} == {"", "NA"}
        assert all(r["rate"] == st["rate"] for r, st in zip(seen, stored, strict=True) if r not in odd)
        again = [r for p in range(1, 31) for r in app_post(s, IN_OUT_ANSWERED, page=p).json["cdr"]]
        assert again == seen  # the same record looks the same on every request
        assert any(r["rate"] in ("", "NA") for r in app_post(s, ACC_OUT_ANSWERED, limit=20).json["cdr"])
        assert vm_post(s, GV).json["voicemail"] == s.records(GV)  # no rate to replace
        s.clear_faults()
        s.inject("odd_rates", times=-1, forms=(None, "-", "N/A"))
        forms = {r["rate"] for p in range(1, 31) for r in app_post(s, IN_OUT_ANSWERED, page=p).json["cdr"]}
        assert {None, "-", "N/A"} <= forms
        s.clear_faults()
        assert [r for p in range(1, 31) for r in app_post(s, IN_OUT_ANSWERED, page=p).json["cdr"]] == stored


def test_generate_calls_long_numbers():
    for ep in (OUT_MISSED, MISSED, ACC_OUT_ANSWERED, ACC_ANSWERED, IN_OUT_MISSED, IN_MISSED):
        outgoing = ep in (OUT_MISSED, ACC_OUT_ANSWERED, IN_OUT_MISSED)
        key = "to" if outgoing else "from"
        plain = generate_calls(200, T0 - DAY, T0, seed=5, endpoint=ep)
        long = generate_calls(200, T0 - DAY, T0, seed=5, endpoint=ep, long_numbers=True)
        assert long == generate_calls(200, T0 - DAY, T0, seed=5, endpoint=ep, long_numbers=True)
        assert all(isinstance(r[key], int) and 20 <= len(str(r[key])) <= 22 for r in long)
        assert {len(str(r[key])) for r in long} == {20, 21, 22}
        assert [{k: v for k, v in r.items() if k != key} for r in long] == [
            {k: v for k, v in r.items() if k != key} for r in plain
        ]
    recs = generate_calls(10, T0 - DAY, T0, endpoint=ACC_OUT_MISSED, long_numbers=True)
    with Simulator(calls={ACC_OUT_MISSED: recs}, apps={APP_ID: SECRET}) as s:
        r = app_post(s, ACC_OUT_MISSED)
        assert f'"to":{recs[0]["to"]},'.encode() in r.raw  # an exact JSON integer
        assert [x["to"] for x in r.json["cdr"]] == [x["to"] for x in recs]


def test_generate_agents_nested_secrets_and_varied_types():
    plain = generate_agents(30, seed=4)
    nested = generate_agents(30, seed=4, nested_secrets=True)
    assert nested == generate_agents(30, seed=4, nested_secrets=True)
    assert nested != generate_agents(30, seed=5, nested_secrets=True)
    secrets = [a["password"] for a in nested]
    for a, p in zip(nested, plain, strict=True):
        assert {k: v for k, v in a.items() if k not in ("sip", "devices", "settings")} == p
        assert set(a["sip"]) == {"username", "password", "domain"}
        assert 1 <= len(a["devices"]) <= 3
        assert all(set(d) == {"name", "password", "pin"} and d["pin"] == "4821" for d in a["devices"])
        assert set(a["settings"]) == {"voicemail_pin", "api_token"}
        secrets += [a["sip"]["password"], a["settings"]["voicemail_pin"], a["settings"]["api_token"]]
        secrets += [d["password"] for d in a["devices"]]
    assert len(secrets) == len(set(secrets)) and all(len(x) >= 8 for x in secrets)
    assert any(len(a["devices"]) > 1 for a in nested)

    varied = generate_agents(30, seed=4, varied_types=True)
    assert varied == generate_agents(30, seed=4, varied_types=True)
    for key in ("extension", "phone", "start_time", "end_time"):
        assert {type(a[key]) for a in varied} == {int, str}
        assert [int(a[key]) for a in varied] == [p[key] for p in plain]  # same values
    truth = {"true": True, "false": False}
    assert [truth.get(a["notify"], bool(a["notify"])) for a in varied] == [p["notify"] for p in plain]
    forms = {(type(a["notify"]), a["notify"]) for a in varied}
    assert forms == {(bool, True), (str, "true"), (int, 1), (bool, False), (str, "false"), (int, 0)}
    for a, p in zip(varied, plain, strict=True):
        assert {k: a[k] for k in ("agent_id", "first_name", "last_name", "password")} == {
            k: p[k] for k in ("agent_id", "first_name", "last_name", "password")
        }
    both = generate_agents(30, seed=4, nested_secrets=True, varied_types=True)
    assert [a["sip"] for a in both] == [a["sip"] for a in nested]
    with Simulator(apps={APP_ID: SECRET}, agents=both) as s:
        assert app_post(s, "/v3/user/list", limit=20).json["agents"] == both[:20]


def test_balance():
    with Simulator(apps={APP_ID: SECRET}) as s:
        r = post(s, "/v2/balance", {"appid": APP_ID, "secret": SECRET})
        assert r.status == 200
        assert r.json == {"code": 200, "expire": 1798761600000, "sms": 10969, "balance": 1765.5}
        assert list(r.json) == ["code", "expire", "sms", "balance"]
        india = post(s, "/v1/balance", {"appid": APP_ID, "token": SECRET}).json
        assert india == {"code": 200, "expire": 1798761600000, "sms": 10969, "balance": "1765.5"}
        assert post(s, "/v2/balance", {"appid": APP_ID, "secret": "x"}).json == {
            "code": 404,
            "error": True,
            "msg": "Invalid app id or secret, authentication failed",
        }
        assert post(s, "/v1/balance", {"appid": APP_ID, "token": "x"}).json == {
            "code": 404,
            "msg": "Invalid app id or secret, authentication failed",
        }
        assert post(s, "/v1/balance", {"appid": APP_ID, "secret": SECRET}).json == {
            "code": 400,
            "msg": "Parameter missing",
        }
        assert post(s, "/v2/balance", {"appid": APP_ID}).json["msg"] == "Parameter missing"
        s.balance["balance"] = 17507.49999999892
        assert post(s, "/v1/balance", {"appid": APP_ID, "token": SECRET}).json["balance"] == "17507.49999999892"
        s.inject("string_code", endpoint="/v2/balance")
        assert post(s, "/v2/balance", {"appid": APP_ID, "secret": SECRET}).json["code"] == "200"
    with Simulator(apps={APP_ID: SECRET}, balance={"balance": 0, "sms": DROP}, error_placement="status") as s:
        assert post(s, "/v2/balance", {"appid": APP_ID, "secret": SECRET}).json == {
            "code": 200,
            "expire": 1798761600000,
            "balance": 0,
        }
        assert post(s, "/v1/balance", {"appid": APP_ID, "token": SECRET}).json["balance"] == "0"
        assert post(s, "/v2/balance", {"appid": APP_ID, "secret": "x"}).status == 404


def test_india_analysis(app_sim):
    ans = vm_post(app_sim, "/v1/analysis").json
    assert ans == {"code": 200, "total": 100, "answered": 50, "missed": 50}
    app_sim.add_calls(IN_OUT_ANSWERED, [make_call(T0, endpoint=IN_OUT_ANSWERED)])
    app_sim.add_calls(IN_MISSED, [make_call(T0, endpoint=IN_MISSED)] * 2)
    assert vm_post(app_sim, "/v1/analysis").json == {
        "code": 200,
        "total": 103,
        "answered": 51,
        "missed": 52,
    }
    assert app_post(app_sim, "/v2/analysis").json["total"] == 100  # the account stores only
    assert vm_post(app_sim, "/v1/analysis", token="x").json == {
        "code": 404,
        "msg": "Invalid app id or secret, authentication failed",
    }
    body = {"appid": APP_ID, "token": SECRET, "start_date": 0}
    assert post(app_sim, "/v1/analysis", body).json == {"code": 400, "msg": "Parameter missing"}
    app_sim.inject("inflate_count")  # a *calls* fault: not used up by the analysis
    assert vm_post(app_sim, "/v1/analysis").json["total"] == 103
    assert app_sim.pending_faults() == 1


@pytest.mark.parametrize("edges", ["inclusive", "exclusive"])
def test_analysis_counts_edges_like_the_lists(edges):
    lo, hi = T0, T0 + 60_000
    calls = {}
    for i, ep in enumerate((*ACCOUNT_ENDPOINTS, *INDIA_ENDPOINTS)):
        # calls on both edges, just outside and inside, a different mix per list
        times = [lo] * (i % 3 + 1) + [hi] * (i % 2 + 1) + [lo - 1, hi + 1] + [lo + 1000 * j for j in range(1, i + 2)]
        calls[ep] = [make_call(t, endpoint=ep) for t in times]
    with Simulator(calls=calls, apps={APP_ID: SECRET}, edges=edges) as s:
        for path, lists, total_key in (
            ("/v2/analysis", ACCOUNT_ENDPOINTS, "count"),
            ("/v1/analysis", INDIA_ENDPOINTS, "total"),
        ):
            counts = [app_post(s, ep, start_date=lo, end_date=hi).json[total_key] for ep in lists]
            ans = app_post(s, path, token=SECRET, start_date=lo, end_date=hi).json
            assert ans["answered"] == counts[0] + counts[2] and ans["missed"] == counts[1] + counts[3]
            assert ans["total"] == sum(counts)
            edge_calls = sum(
                sum(r["time"] in (lo, hi) for r in s.records(ep)) for ep in lists
            )  # on the edges: counted exactly when the lists return them
            inside = sum(sum(lo < r["time"] < hi for r in s.records(ep)) for ep in lists)
            assert ans["total"] == inside + (edge_calls if edges == "inclusive" else 0)


def test_stats_request_times(sim, monkeypatch):
    before = time.monotonic()
    cdr(sim)
    cdr(sim, token="bogus")
    mark = time.monotonic()
    assert len(sim.stats.request_times) == 2 and sim.stats.request_times == sorted(sim.stats.request_times)
    assert all(before <= t <= mark for t in sim.stats.request_times)
    assert not any(t > mark for t in sim.stats.request_times)  # nothing arrived after `mark`
    cdr(sim)
    assert sim.stats.request_times[-1] > mark and sim.stats.last_request_time == sim.stats.request_times[-1]
    sim.stats.reset()
    assert sim.stats.request_times == [] and sim.stats.last_request_time is None
    monkeypatch.setattr(server, "BODIES_CAP", 2)
    for _ in range(3):
        cdr(sim)
    assert len(sim.stats.request_times) == 2 and sim.stats.request_times_dropped == 1
    assert sim.stats.last_request_time > sim.stats.request_times[-1]  # the latest is kept apart
