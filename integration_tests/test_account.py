"""The whole call centre in one connection (app id + secret), and TeleCMI's Indian platform.

Through the real command against the simulator: every call of every stream exactly once, in full
refresh and incremental syncs, across a crash; the users, never with a password; check; bad
credentials; and the rate limit every platform may impose.
"""

from __future__ import annotations

from collections import Counter

import pytest

from integration_tests.conftest import APP_ID, APP_SECRET, DAY_MS, END_MS, catalog, config_for
from integration_tests.harness import endpoints, last_states, reread_from, simulator
from integration_tests.telecmi_simulator import generate_agents, generate_calls, make_call

APP_KINDS = ["app", "india"]
# The users the harness's simulator serves (generated the same way, with their passwords).
AGENTS = generate_agents(12, app_id=APP_ID)


def keys(records):
    return Counter(r["cmiuid"] for r in records)


def assert_exactly(records, calls):
    got = keys(records)
    assert not [k for k, n in got.items() if n > 1], "a call was emitted twice"
    assert set(got) == {c.get("cmiuid") or c["_id"] for c in calls}


@pytest.mark.parametrize("kind", APP_KINDS)
@pytest.mark.parametrize("sync_mode", ["full_refresh", "incremental"])
def test_every_call_of_the_account_exactly_once_with_its_agent(connector, sim, kind, sync_mode):
    streams = endpoints(kind)
    run = connector.run("read", config_for(sim, kind, num_workers=8), catalog(sync_mode, *streams)).ok()
    for stream, path in streams.items():
        records = run.records_of(stream)
        assert_exactly(records, sim.records(path))
        direction, status = stream.split("_")[:2]
        assert {(r["direction"], r["status"]) for r in records} == {(direction, status)}
        assert all(r["started_at"].endswith("Z") and isinstance(r["time"], int) for r in records)
        if kind == "india":
            assert all(r["cmiuid"] == r["_id"] and isinstance(r["rate"], float) for r in records)
    agents = {r.get("agent") for r in run.records if r.get("agent")}
    assert len(agents) >= 10, "the account's calls come from a dozen agents"
    limits = {b["limit"] for b in sim.stats.bodies if b["path"] in streams.values()}
    assert limits == ({20} if kind == "app" else {10})
    if sync_mode == "incremental":
        assert {s["stream"]["stream_descriptor"]["name"] for s in run.states} == set(streams)


@pytest.mark.parametrize("kind", APP_KINDS)
def test_app_credentials_in_the_body_as_each_platform_wants_them(connector, sim, kind):
    connector.run("read", config_for(sim, kind), catalog("incremental", "incoming_missed_calls")).ok()
    (path,) = {endpoints(kind)["incoming_missed_calls"]}
    body = sim.stats.bodies_for(path)[0]
    secret_field = "secret" if kind == "app" else "token"
    assert body["appid"] == APP_ID and body[secret_field] == APP_SECRET
    assert {"start_date", "end_date", "page", "limit"} <= set(body)


@pytest.mark.parametrize("kind", APP_KINDS)
def test_incremental_syncs_and_a_crash_lose_nothing_and_repeat_only_the_last_window(connector, kind):
    path = endpoints(kind)["outgoing_answered_calls"]
    stream = "outgoing_answered_calls"
    many = generate_calls(3000, END_MS - 30 * DAY_MS, END_MS - 1, seed=3, endpoint=path)
    with simulator({path: many}, latency_ms=10) as sim:
        config = config_for(sim, kind, num_workers=6)
        emitted, states = connector.killed_after(3, config, catalog("incremental", stream))
        assert len(emitted) < len(many), "the sync should be killed mid-way"
        resumed = connector.run("read", config, catalog("incremental", stream), [states[-1]]).ok()
        assert {c["_id"] if kind == "india" else c["cmiuid"] for c in many} == set(keys(emitted)) | set(
            keys(resumed.records)
        )
        assert max(keys(resumed.records).values()) == 1
        new = [make_call(END_MS + 1000 + i, endpoint=path) for i in range(7)]
        sim.add_calls(path, new)
        later = connector.run(
            "read", {**config, "end_date": "2026-01-02T00:00:00Z"}, catalog("incremental", stream), last_states(resumed)
        ).ok()
        # The window of the resumed sync holding the point after its newest call is read again from its start (a
        # page or two), so that its sync_audit row covers it whole; nothing older.
        (state,) = [
            s["stream"]["stream_state"]
            for s in last_states(resumed)
            if s["stream"]["stream_descriptor"]["name"] == stream
        ]
        resume = reread_from(state)
        again = [c for c in many if c["time"] >= resume]
        page = 10 if kind == "india" else 20
        assert 1 <= len(again) <= 2 * page, f"{len(again)} calls read again: more than the last window's two pages"
        assert_exactly(later.records, again + new)


@pytest.mark.parametrize("kind", APP_KINDS)
def test_users_are_read_without_their_passwords(connector, sim, kind):
    run = connector.run("read", config_for(sim, kind), catalog("full_refresh", "users"), debug=True).ok()
    users = run.records_of("users")
    assert sorted(u["agent_id"] for u in users) == sorted(a["agent_id"] for a in AGENTS)
    assert not [u for u in users if any("pass" in k.lower() for k in u)]
    for agent in AGENTS:
        assert agent["password"] not in run.stdout + run.stderr
    assert APP_SECRET not in run.stdout + run.stderr


def test_users_fall_back_to_the_v2_list_where_v3_is_not_there(connector, calls_by_endpoint):
    with simulator(calls_by_endpoint, v3_users=False) as sim:
        run = connector.run("read", config_for(sim, "app"), catalog("full_refresh", "users")).ok()
        assert sim.stats.by_path.get("/v3/user/list") == 1 and sim.stats.by_path.get("/v2/user/list")
        assert sorted(u["agent_id"] for u in run.records) == sorted(a["agent_id"] for a in AGENTS)
        assert all("name" in u and "password" not in u for u in run.records)


def test_discover_lists_users_only_with_app_credentials(connector, sim):
    token_streams = {s["name"] for s in connector.run("discover", config_for(sim, "token")).streams}
    assert token_streams == {*endpoints("token"), "sync_audit"}
    streams = {s["name"]: s for s in connector.run("discover", config_for(sim, "app")).streams}
    more = {"users", "voicemails", "daily_call_totals", "account_balance", "recordings", "sync_audit"}
    assert set(streams) == {*endpoints("app"), *more}
    assert streams["recordings"]["is_file_based"] is True
    assert not any(s.get("is_file_based") for name, s in streams.items() if name != "recordings")
    assert streams["users"]["supported_sync_modes"] == ["full_refresh"]
    assert streams["users"]["source_defined_primary_key"] == [["agent_id"]]
    assert not [name for name in streams["users"]["json_schema"]["properties"] if "pass" in name.lower()]
    for name in endpoints("app"):
        properties = streams[name]["json_schema"]["properties"]
        assert {"agent", "direction", "status", "started_at"} <= set(properties)
        assert properties["started_at"]["airbyte_type"] == "timestamp_with_timezone"


def test_users_with_user_credentials_is_a_config_error(connector, sim):
    run = connector.run("read", config_for(sim, "token"), catalog("full_refresh", "users"))
    assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
    assert "app id and secret" in run.errors[0]["message"]


@pytest.mark.parametrize("kind", APP_KINDS)
def test_check_proves_app_credentials_with_one_request(connector, sim, kind):
    assert connector.run("check", config_for(sim, kind)).connection_status["status"] == "SUCCEEDED"
    assert sim.stats.requests == 1
    if kind == "app":
        assert list(sim.stats.by_path) == ["/v2/analysis"]


@pytest.mark.parametrize("kind", APP_KINDS)
def test_bad_app_credentials_fail_check_and_read_naming_the_field_not_the_secret(connector, sim, kind):
    credentials = {"auth_type": "app", "app_id": APP_ID, "app_secret": "wrong-secret-9d7"}
    status = connector.run("check", config_for(sim, kind, credentials=credentials)).connection_status
    # The app id is a secret of the spec now (the acceptance suite's rule): the message names its field.
    assert status["status"] == "FAILED" and "credentials.app_id" in status["message"]
    assert "wrong-secret-9d7" not in status["message"] and "\n" not in status["message"]
    sim.stats.reset()
    run = connector.run(
        "read", config_for(sim, kind, credentials=credentials), catalog("incremental", *endpoints(kind))
    )
    assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
    assert "credentials.app_id" in run.errors[0]["message"]
    assert "wrong-secret-9d7" not in run.outside_config_control  # the integer app id is migrated: CONTROL holds it
    assert sim.stats.requests <= len(endpoints(kind)), "a bad secret is not retried"


def test_india_with_user_credentials_fails_check_in_one_line(connector, sim):
    status = connector.run("check", config_for(sim, "token", region="india")).connection_status
    assert status["status"] == "FAILED" and "Indian platform" in status["message"] and "app id" in status["message"]


@pytest.mark.parametrize("form", ["retry_after", "no_retry_after", "body"])
def test_a_rate_limit_of_any_form_loses_nothing_and_spends_no_retry(connector, form):
    path = endpoints("app")["incoming_answered_calls"]
    calls = generate_calls(1500, END_MS - 30 * DAY_MS, END_MS - 1, seed=9, endpoint=path)
    with simulator({path: calls}, rate_limit=40, rate_limit_form=form) as sim:
        connector.env["SOURCE_TELECMI_BACKOFF_SCALE"] = "0.05"
        run = connector.run(
            "read",
            config_for(sim, "app", num_workers=8),
            catalog("incremental", "incoming_answered_calls"),
            timeout=240,
        ).ok()
        assert_exactly(run.records, calls)
        assert sim.stats.rate_limited > 0
    assert any("Concurrency" in log and "rate limit" in log for log in run.logs("INFO"))


def test_a_long_storm_of_429s_does_not_fail_the_sync(connector, sim):
    path = endpoints("app")["outgoing_missed_calls"]
    connector.env["SOURCE_TELECMI_BACKOFF_SCALE"] = "0.05"
    sim.inject("429", times=20, endpoint=path, retry_after=None)
    run = connector.run(
        "read", config_for(sim, "app"), catalog("incremental", "outgoing_missed_calls"), timeout=240
    ).ok()
    assert_exactly(run.records, sim.records(path))
    assert sim.stats.faults_served == 20


@pytest.mark.parametrize("kind", APP_KINDS)
@pytest.mark.parametrize("edges", ["inclusive", "exclusive"])
def test_calls_exactly_on_window_edges_are_read_once(connector, kind, edges):
    path = endpoints(kind)["incoming_missed_calls"]
    start = END_MS - 31 * DAY_MS
    edge_calls = [
        make_call(start + day * DAY_MS + delta, endpoint=path) for day in range(1, 31) for delta in (-1, 0, 1)
    ]
    edge_calls += [make_call(END_MS - 1, endpoint=path)]
    with simulator({path: edge_calls}, edges=edges) as sim:
        config = config_for(sim, kind, start_date="2025-12-01T00:00:00Z")
        run = connector.run("read", config, catalog("incremental", "incoming_missed_calls")).ok()
        windows = {(b["start_date"], b["end_date"]) for b in sim.stats.bodies if b.get("page") == 1}
    assert_exactly(run.records, [c for c in edge_calls if c["time"] >= 1764547200000])
    assert len(windows) > 1, "the range was read in several windows"
