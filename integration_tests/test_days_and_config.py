"""Days, saved states and config text through the real command against the simulator.

- An end_date far ahead: `daily_call_totals` reads and emits no day that has not begun, its state
  never passes the last day read in full (today is read again by the next sync), and the call lists
  read and checkpoint nothing after the moment the sync starts (the real clock, calls around now).
- Saved states that are no date, or no instant, end the sync as a config error naming the stream
  and saying that resetting it fixes it: no crash, no traceback.
- Config text (an app id of unicode digits, spaces around it, numbers as text, nulls, blank
  secrets, dates out of range, URLs with a query): one CONNECTION_STATUS, FAILED naming the field
  exactly where the spec turns the config away (and for the rules only the parser can check).
- An api_url with a path too many, answered HTTP 404 in TeleCMI's own envelope: the check and a
  read name api_url, not only the credentials.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft7Validator

from integration_tests.conftest import DAY_MS, STREAM, config_for
from integration_tests.harness import (
    ACCOUNT_ENDPOINTS,
    app_credentials,
    catalog,
    catalog_of,
    last_states,
    merged_slices,
    simulator,
)
from integration_tests.telecmi_simulator import ANALYSIS_PATH, OUT_MISSED, generate_calls, make_call

TOTALS = "daily_call_totals"
HOUR_MS = 3_600_000
AHEAD_DAYS = 120


def now_ms() -> int:
    return int(time.time() * 1000)


def day_of(instant: int) -> str:
    """The UTC day of an instant, computed here (not with the connector's helper)."""
    return datetime.fromtimestamp(instant / 1000, tz=UTC).strftime("%Y-%m-%d")


def midnight(instant: int) -> int:
    return instant - instant % DAY_MS


def iso(instant: int) -> str:
    return datetime.fromtimestamp(instant / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def away_from_midnight() -> None:
    """Wait past midnight UTC if it is less than two minutes away: a test of 'today' must stay on one day."""
    left = DAY_MS - now_ms() % DAY_MS
    if left < 120_000:
        time.sleep(left / 1000 + 1)


def states_of(run, stream):
    return [s["stream"]["stream_state"] for s in run.states if s["stream"]["stream_descriptor"]["name"] == stream]


def analysis_days(sim):
    """(day, start_date, end_date) of every analysis request the connector sent."""
    return sorted(
        (day_of(b["start_date"]), b["start_date"], b["end_date"]) for b in sim.stats.bodies_for(ANALYSIS_PATH)
    )


def calls_around_now(now: int, seed: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Calls on each account list over the three days before `now`, and (a clock TeleCMI got wrong) some
    timed up to three days after it: no sync may read those before they happen."""
    calls = {}
    for number, path in enumerate(ACCOUNT_ENDPOINTS.values()):
        past = generate_calls(40, midnight(now) - 3 * DAY_MS, now - 60_000, seed=seed + number, endpoint=path)
        ahead = generate_calls(6, now + HOUR_MS, now + 3 * DAY_MS, seed=seed + 10 + number, endpoint=path)
        calls[path] = past + ahead
    return calls


# ------------------------------------------------------------------------------ an end_date far ahead


@pytest.mark.parametrize("lookback", [0, 1])
def test_totals_with_an_end_date_far_ahead_stop_at_today_and_the_next_sync_reads_today_again(connector, lookback):
    away_from_midnight()
    now = now_ms()
    today, yesterday = day_of(now), day_of(now - DAY_MS)
    with simulator(calls_around_now(now)) as sim:
        cfg = config_for(
            sim,
            "app",
            start_date=day_of(now - 3 * DAY_MS),
            end_date=iso(now + AHEAD_DAYS * DAY_MS),
            lookback_window_days=lookback,
        )
        started = now_ms()
        first = connector.run("read", cfg, catalog_of("app", "incremental", TOTALS)).ok()
        ended = now_ms()
        days = [row["day"] for row in first.records_of(TOTALS)]
        assert sorted(days) == [day_of(now - d * DAY_MS) for d in (3, 2, 1, 0)], "no day after today, none twice"
        asked = analysis_days(sim)
        assert [day for day, _, _ in asked] == sorted(days)
        (_, today_from, today_to) = asked[-1]
        assert today_from == midnight(now) and started - 5_000 <= today_to <= ended, "today is cut at the sync's start"
        assert states_of(first, TOTALS)[-1] == {"day": yesterday}, "the state is the last day read in full"
        today_row = next(row for row in first.records_of(TOTALS) if row["day"] == today)

        # Calls made today after the first sync: the next sync reads today again and counts them.
        made = now_ms()
        late = [make_call(made + n, endpoint=path) for n, path in enumerate(ACCOUNT_ENDPOINTS.values())]
        for call, path in zip(late, ACCOUNT_ENDPOINTS.values(), strict=True):
            sim.add_calls(path, [call])
        time.sleep(0.01)
        sim.stats.reset()
        second = connector.run("read", cfg, catalog_of("app", "incremental", TOTALS), last_states(first)).ok()
    again = {row["day"]: row for row in second.records_of(TOTALS)}
    assert sorted(again) == [yesterday, today], "the last day read in full, and today, again"
    assert again[today]["total"] == today_row["total"] + len(late)
    assert states_of(second, TOTALS)[-1] == {"day": yesterday}


def test_a_state_saved_past_today_by_0_3_0_reads_today_again(connector):
    away_from_midnight()
    now = now_ms()
    with simulator(calls_around_now(now)) as sim:
        cfg = config_for(sim, "app", start_date=day_of(now - 3 * DAY_MS), end_date=iso(now + AHEAD_DAYS * DAY_MS))
        saved = {"day": day_of(now + AHEAD_DAYS * DAY_MS)}  # what 0.3.0 saved with this end_date
        ahead = {"type": "STREAM", "stream": {"stream_descriptor": {"name": TOTALS}, "stream_state": saved}}
        run = connector.run("read", cfg, catalog_of("app", "incremental", TOTALS), [ahead]).ok()
    assert sorted(row["day"] for row in run.records_of(TOTALS)) == [day_of(now - DAY_MS), day_of(now)]
    assert states_of(run, TOTALS)[-1] == {"day": day_of(now - DAY_MS)}


@pytest.mark.parametrize("kind", ["app", "token"])
def test_call_lists_with_an_end_date_far_ahead_read_and_checkpoint_nothing_after_the_sync_starts(connector, kind):
    now = now_ms()
    path = ACCOUNT_ENDPOINTS[STREAM] if kind == "app" else OUT_MISSED
    past = generate_calls(300, now - 3 * DAY_MS, now - 60_000, seed=5, endpoint=path)
    ahead = generate_calls(10, now + HOUR_MS, now + 3 * DAY_MS, seed=6, endpoint=path)
    with simulator({path: past + ahead}) as sim:
        cfg = config_for(
            sim, kind, start_date=iso(now - 3 * DAY_MS), end_date=iso(now + AHEAD_DAYS * DAY_MS), lookback_window_days=0
        )
        first = connector.run("read", cfg, catalog("incremental", STREAM)).ok()
        ended = now_ms()
        assert sorted(r["cmiuid"] for r in first.records_of(STREAM)) == sorted(c["cmiuid"] for c in past)
        slices = merged_slices(states_of(first, STREAM)[-1])
        assert max(last for _, last, _ in slices) <= ended, "a state covering time that had not come"
        # A call made between the syncs: read by the next one (a state reaching the calls ahead lost it).
        made = make_call(now_ms(), endpoint=path)
        sim.add_calls(path, [made])
        time.sleep(0.01)
        second = connector.run("read", cfg, catalog("incremental", STREAM), last_states(first)).ok()
    assert made["cmiuid"] in {r["cmiuid"] for r in second.records_of(STREAM)}
    assert not {c["cmiuid"] for c in ahead} & {r["cmiuid"] for r in first.records + second.records}


# ---------------------------------------------------------------------------------- unreadable states


def no_bare_traceback(run) -> bool:
    """No traceback outside the error trace's own stack_trace: none in a log line, none on stderr."""
    return not [log for log in run.logs() if "Traceback" in log] and "Traceback" not in run.stderr


def assert_config_error_naming_the_reset(run, stream):
    assert run.returncode != 0
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    message = error["message"]
    assert "\n" not in message
    assert f"The saved state of stream {stream} cannot be read" in message and f"Reset the stream {stream}" in message
    assert no_bare_traceback(run)
    assert not run.records


@pytest.mark.parametrize("day", ["yesterday", "2026-02-30", 17, {}, None, "2026-02-03T00:00:00Z"])
def test_a_totals_state_whose_day_is_no_date_is_a_config_error_saying_the_reset_fixes_it(connector, day):
    state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": TOTALS}, "stream_state": {"day": day}}}
    with simulator({}) as sim:
        run = connector.run("read", config_for(sim, "app"), catalog_of("app", "incremental", TOTALS), [state])
        assert not sim.stats.bodies_for(ANALYSIS_PATH)
    assert_config_error_naming_the_reset(run, TOTALS)
    assert repr(day) in run.errors[0]["message"]


@pytest.mark.parametrize("instant", [10**20, -(10**20)])
def test_a_call_list_state_with_an_instant_no_date_holds_is_a_config_error(connector, sim, instant):
    slices = [{"start": 1764547200000, "end": 1767225600000, "most_recent_cursor_value": 1767225600000}]
    slices[0]["end" if instant > 0 else "start"] = instant
    stream_state = {"state_type": "date-range", "slices": slices}
    state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": STREAM}, "stream_state": stream_state}}
    run = connector.run("read", config_for(sim), catalog(), [state])
    assert_config_error_naming_the_reset(run, STREAM)


# ------------------------------------------------------------------------------------------ config text


def spec_of(connector) -> dict[str, Any]:
    (spec,) = connector.run("spec").ok().of("SPEC")
    return spec["spec"]["connectionSpecification"]


def app(app_id: Any = "1111112", **more: Any) -> dict[str, Any]:
    return {"credentials": {**app_credentials(), "app_id": app_id, **more}}


# (overrides, the field a FAILED check names). The spec's verdict decides SUCCEEDED or FAILED.
CONFIG_TEXTS = [
    (app("1111112\u00b2"), "credentials.app_id"),  # crashed check in 0.3.0
    (app("\uff11\uff11\uff11\uff11\uff11\uff11\uff12"), "credentials.app_id"),  # fullwidth digits
    (app(" 1111112 "), None),  # the spec admits spaces around it, and the parser reads 1111112
    (app("\t1111112\n"), None),
    (app("0"), "credentials.app_id"),
    (app("1" * 5000), "credentials.app_id"),  # more digits than int() reads: crashed check too
    (app(app_secret="   "), "credentials.app_secret"),
    ({"credentials": {"auth_type": "token", "token": "\u3000"}}, "credentials.token"),
    ({"num_workers": 4.0}, None),  # a whole number the spec's integer admits
    ({"num_workers": "4"}, "num_workers"),
    ({"num_workers": "\uff14"}, "num_workers"),
    ({"num_workers": None}, "num_workers"),
    ({"lookback_window_days": None}, "lookback_window_days"),
    ({"lookback_window_days": 1.5}, "lookback_window_days"),
    ({"end_date": ""}, "end_date"),
    ({"end_date": None}, "end_date"),
    ({"region": ""}, "region"),
    ({"api_url": "http://127.0.0.1:9/?key=1"}, "api_url"),
    ({"api_url": None}, "api_url"),
]
# Rules no pattern can say: the spec admits these, the check names the field.
PARSER_ONLY = [
    ({"start_date": "0001-01-01T00:00+01:00"}, "start_date"),
    ({"end_date": "9999-12-31T23:59-01:00"}, "end_date"),
    ({"start_date": "2025-02-29"}, "start_date"),
]


@pytest.mark.parametrize(("overrides", "field"), CONFIG_TEXTS, ids=[repr(o)[:50] for o, _ in CONFIG_TEXTS])
def test_check_of_config_text_fails_naming_the_field_exactly_where_the_spec_turns_it_away(
    connector, sim, overrides, field
):
    cfg = {**config_for(sim, "app"), **overrides}
    admitted = Draft7Validator(spec_of(connector)).is_valid(cfg)
    assert admitted is (field is None), "the table says what the spec says"
    run = connector.run("check", cfg)
    assert run.returncode == 0, run.stderr[-2000:]
    status = run.connection_status  # exactly one
    if admitted:
        assert status["status"] == "SUCCEEDED", status
    else:
        assert status["status"] == "FAILED"
        assert status["message"].startswith(field) and "\n" not in status["message"], status["message"]
        assert no_bare_traceback(run)


@pytest.mark.parametrize(("overrides", "field"), PARSER_ONLY, ids=[repr(o)[:50] for o, _ in PARSER_ONLY])
def test_check_names_the_field_for_what_only_the_parser_can_check(connector, sim, overrides, field):
    cfg = {**config_for(sim, "app"), **overrides}
    assert Draft7Validator(spec_of(connector)).is_valid(cfg)
    status = connector.run("check", cfg).connection_status
    assert status["status"] == "FAILED" and status["message"].startswith(field), status


def test_a_read_with_an_app_id_of_unicode_digits_is_a_config_error_naming_it(connector, sim):
    run = connector.run(
        "read", {**config_for(sim, "app"), **app("1111112\u00b2")}, catalog_of("app", "full_refresh", TOTALS)
    )
    assert run.returncode != 0
    (error,) = run.errors
    assert error["failure_type"] == "config_error" and error["message"].startswith("credentials.app_id")
    assert no_bare_traceback(run)
    assert not sim.stats.requests


def test_an_app_id_saved_by_0_2_as_an_integer_still_checks(connector, sim):
    cfg = {**config_for(sim, "app"), **app(1111112)}
    assert connector.run("check", cfg).connection_status["status"] == "SUCCEEDED"


# ----------------------------------------------------------------- an api_url with a path too many


@pytest.mark.parametrize("kind", ["app", "token", "login"])
def test_an_api_url_with_a_path_too_many_is_named_by_check(connector, sim, kind):
    sim.missing_path = "envelope"  # HTTP 404 {"code": 404, "msg": "Not found"}, TeleCMI's code for bad credentials
    url = sim.base_url + "/v2"
    status = connector.run("check", config_for(sim, kind, api_url=url)).connection_status
    assert status["status"] == "FAILED"
    assert f"api_url {url} is not TeleCMI's API address" in status["message"], status["message"]
    assert "/v2/v2/" in status["message"], "the path asked"
    assert "credentials" in status["message"] or "token" in status["message"] or "login" in status["message"]
    assert sim.stats.requests and all(path.startswith("/v2/v2/") for path in sim.stats.by_path)


@pytest.mark.parametrize("kind", ["app", "token"])
def test_an_api_url_with_a_path_too_many_is_named_by_a_reads_error(connector, sim, kind):
    sim.missing_path = "envelope"
    url = sim.base_url + "/telecmi"
    run = connector.run("read", config_for(sim, kind, api_url=url), catalog("incremental", STREAM))
    assert run.returncode != 0
    assert run.errors and all(e["failure_type"] == "config_error" for e in run.errors)
    assert f"api_url {url} is not TeleCMI's API address" in run.errors[0]["message"], run.errors[0]["message"]
    assert not run.records


def test_telecmis_own_answer_to_a_wrong_secret_still_blames_the_secret_alone(connector, sim):
    credentials = {**app_credentials(), "app_secret": "not-the-secret-41"}
    status = connector.run("check", config_for(sim, "app", credentials=credentials)).connection_status
    assert status["status"] == "FAILED" and "credentials.app_secret" in status["message"]
    assert "api_url" not in status["message"]
