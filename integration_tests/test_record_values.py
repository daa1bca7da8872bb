"""Values through the real command: none lost by a conversion, none changed without a trace on its row,
no secret inside any of them.

A lone note object where TeleCMI's list belongs comes out as a list of one; every value the
connector has to null, every field it drops because it is named like a secret, and every value
it takes a secret out of is declared on its record's `meta.changes` (the protocol's
`AirbyteRecordMessageMeta`, kept by destinations in `_airbyte_meta`), on exactly those records.
Every run's stdout lines are validated as AirbyteMessages (meta included) and every record against
its discovered schema (harness).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from integration_tests.conftest import APP_SECRET, catalog, config_for
from integration_tests.harness import (
    APP_ID,
    DAY_MS,
    END_MS,
    START_MS,
    USERS,
    call_id,
    calls_for,
    endpoints,
    simulator,
)
from integration_tests.telecmi_simulator import (
    DEFAULT_USER_ID,
    GLOBAL_VOICEMAIL,
    INDIA_VOICEMAIL,
    Simulator,
    generate_agents,
    generate_voicemails,
    make_call,
)
from integration_tests.telecmi_simulator.server import SECRET_FORMS, _record_hash, play_url, secret_form_of

KINDS = ["token", "login", "app", "india"]
REASON = "SOURCE_SERIALIZATION_ERROR"
MASK = "****"
VOICEMAILS = "voicemails"


def nulled(*fields: str) -> list[dict[str, str]]:
    return [{"field": field, "change": "NULLED", "reason": REASON} for field in fields]


def messages_of(run, stream):
    return [m["record"] for m in run.of("RECORD") if m["record"]["stream"] == stream]


def by_id(records):
    return {call_id(r): r for r in records}


def changes_of(record_message: dict[str, Any]) -> list[dict[str, str]] | None:
    """The record's meta.changes; None when it carries no meta (a record nothing was changed in)."""
    meta = record_message.get("meta")
    return None if meta is None else meta["changes"]


def post(sim: Simulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the simulator answers a request (to see a fault's shape for oneself)."""
    request = urllib.request.Request(
        sim.base_url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def one_note_calls(kind: str, n: int = 30) -> dict[str, list[dict[str, Any]]]:
    """Calls for every call path of `kind`, a third of them with exactly one note, some with two.

    TeleCMI's Indian calls carry no notes in the simulator's data: they are given some here, so that
    every platform's records go through the same conversion.
    """
    calls = {}
    for number, path in enumerate(endpoints(kind).values()):
        made = []
        for i in range(n):
            at = START_MS + (i + 1) * DAY_MS // 2 + number
            notes: Any = {}
            if i % 3 == 0:
                notes = {"notes": [{"msg": f"Call back {i}", "date": at + 60_000, "agent": "101_1111112"}]}
            elif i % 3 == 1 and i % 2:
                notes = {
                    "notes": [
                        {"msg": f"First {i}", "date": at + 1, "agent": "102_1111112"},
                        {"msg": f"Second {i}", "date": at + 2, "agent": "102_1111112"},
                    ]
                }
            made.append(make_call(at, endpoint=path, **notes))
        calls[path] = sorted(made, key=lambda c: c["time"], reverse=True)
    return calls


# ----------------------------------------------------------------------------- a lone note object


@pytest.mark.parametrize("kind", KINDS)
def test_a_lone_note_object_comes_out_as_a_list_of_one_equal_to_what_was_served(connector, kind):
    calls = one_note_calls(kind)
    with simulator(calls) as sim:
        for path in endpoints(kind).values():
            sim.inject("lone_note", times=-1, endpoint=path)
        run = connector.run("read", config_for(sim, kind), catalog("incremental", *endpoints(kind)))
        assert run.returncode == 0 and not run.errors, run.errors or run.stderr[-2000:]
        for stream, path in endpoints(kind).items():
            served = by_id(calls[path])
            messages = messages_of(run, stream)
            assert sorted(call_id(m["data"]) for m in messages) == sorted(served), f"{stream}: not every call once"
            lone = several = 0
            for message in messages:
                record, call = message["data"], served[call_id(message["data"])]
                if "notes" not in call:
                    assert "notes" not in record, stream
                elif len(call["notes"]) == 1:
                    lone += 1
                    assert record["notes"] == [call["notes"][0]], f"{stream}: a lone note changed or lost"
                else:
                    several += 1
                    assert record["notes"] == call["notes"], stream
                assert changes_of(message) is None, f"{stream}: nothing was changed, nothing is declared"
            assert lone == 10 and several > 0, (stream, lone, several)
        # The simulator did send lone objects: the test would pass on nothing otherwise.
        path = next(iter(endpoints(kind).values()))
        assert any(isinstance(r.get("notes"), dict) for r in served_page(sim, kind, path))


def served_page(sim: Simulator, kind: str, path: str) -> list[dict[str, Any]]:
    """The records of one page of `path` for the month, as the simulator serves them with its faults."""
    if kind in ("token", "login"):
        sim.add_token("peek-token-1")
        body: dict[str, Any] = {"token": "peek-token-1", "from": START_MS, "to": END_MS, "page": 1, "limit": 10}
    else:
        body = {"appid": APP_ID, "start_date": START_MS, "end_date": END_MS, "page": 1, "limit": 10}
        body.update({"token": APP_SECRET} if kind == "india" else {"secret": APP_SECRET})
    answer = post(sim, path, body)
    return answer.get("cdr") or answer.get("voicemail") or []


# ----------------------------------------------------------------------------- nulled values, declared


@pytest.mark.parametrize("kind", ["token", "app", "india"])
def test_every_nulled_value_is_declared_on_its_own_record_and_only_there(connector, kind):
    forms = ("", "NA", "0.75", "1.5")  # two that no number reads, two that convert: nothing to declare for those
    calls = calls_for(list(endpoints(kind).values()), 90, seed=23, notes_ratio=0.0)
    odd_notes = {}
    for number, path in enumerate(endpoints(kind).values()):
        at = START_MS + 3 * DAY_MS + number
        bad = [
            {"msg": "a", "date": "soon", "agent": "101_1111112"},
            {"msg": "b", "date": at, "agent": "101_1111112"},
            {"msg": "c", "date": 12.5, "agent": {"id": 101}},
        ]
        lone = {"msg": "lone", "date": "tomorrow", "agent": "101_1111112"}
        odd = [make_call(at, endpoint=path, notes=bad), make_call(at + 1, endpoint=path, notes=[lone])]
        odd_notes[path] = {call_id(odd[0]): ["notes[0].date", "notes[2].date", "notes[2].agent"]}
        odd_notes[path][call_id(odd[1])] = ["notes[0].date"]
        calls[path] = sorted([*calls[path], *odd], key=lambda c: c["time"], reverse=True)
    with simulator(calls) as sim:
        for path in endpoints(kind).values():
            sim.inject("odd_rates", times=-1, endpoint=path, forms=forms, every=2)
            sim.inject("lone_note", times=-1, endpoint=path)
        run = connector.run("read", config_for(sim, kind), catalog("incremental", *endpoints(kind)))
        assert run.returncode == 0 and not run.errors, run.errors or run.stderr[-2000:]
        for stream, path in endpoints(kind).items():
            served = by_id(calls[path])
            messages = messages_of(run, stream)
            assert sorted(call_id(m["data"]) for m in messages) == sorted(served), f"{stream}: not every call once"
            declared = 0
            for message in messages:
                record = message["data"]
                call = served[call_id(record)]
                expected = []
                hashed = _record_hash(call)
                if "rate" in call and hashed % 2 == 0:
                    form = forms[(hashed // 2) % len(forms)]
                    if form in ("", "NA"):
                        expected.append("rate")
                        assert record.get("rate") is None  # the CDK leaves a record's top-level nulls out
                    else:
                        assert record["rate"] == float(form)
                expected += odd_notes[path].get(call_id(call), [])
                if expected:
                    declared += 1
                    assert sorted(c["field"] for c in changes_of(message)) == sorted(expected), (stream, record)
                    assert changes_of(message) == nulled(*[c["field"] for c in changes_of(message)])
                else:
                    assert changes_of(message) is None, f"{stream}: a record nothing was nulled in declares {message}"
            assert declared >= 12, (stream, declared)
            first, lone = (by_id(m["data"] for m in messages)[key] for key in odd_notes[path])
            assert first["notes"] == [
                {"msg": "a", "date": None, "agent": "101_1111112"},
                served[call_id(first)]["notes"][1],
                {"msg": "c", "date": None, "agent": None},
            ]
            assert lone["notes"] == [{"msg": "lone", "date": None, "agent": "101_1111112"}]
        warnings = " ".join(run.logs("WARN"))
        assert "rate:" in warnings and "notes[].date:" in warnings, "the warning at the end of the stream stays"


# ----------------------------------------------------------------------------- secrets inside values

# Secrets with every kind of character an encoding changes: a space, a slash, a plus, an ampersand,
# an equals sign, quotes, a backslash and a letter outside ASCII.
WEIRD_APP_SECRET = 'app sécret/+&="q\\9f-3e9f01-integration'
WEIRD_TOKEN = 'tok en/+é"\\-5f2c9a-integration'
WEIRD_PASSWORD = 'pass wörd/+"\\-77d1-integration'


def weird_simulator(calls, **options) -> Simulator:
    return Simulator(
        calls=calls,
        tokens=[WEIRD_TOKEN],
        users={DEFAULT_USER_ID: WEIRD_PASSWORD},
        apps={APP_ID: WEIRD_APP_SECRET},
        agents=generate_agents(12, app_id=APP_ID),
        **options,
    )


def weird_config(sim: Simulator, kind: str) -> dict[str, Any]:
    credentials = {
        "token": {"auth_type": "token", "token": WEIRD_TOKEN},
        "login": {"auth_type": "login", "user_id": DEFAULT_USER_ID, "password": WEIRD_PASSWORD},
        "app": {"auth_type": "app", "app_id": str(APP_ID), "app_secret": WEIRD_APP_SECRET},
        "india": {"auth_type": "app", "app_id": str(APP_ID), "app_secret": WEIRD_APP_SECRET},
    }[kind]
    return config_for(sim, kind, credentials=credentials)


def every_form(secret: str) -> set[str]:
    """The secret as a record value may hold it, and each of those as a line of JSON on stdout holds it."""
    forms = {encode(secret) for encode in SECRET_FORMS.values()}
    return (
        forms
        | {json.dumps(form)[1:-1] for form in forms}
        | {json.dumps(form, ensure_ascii=False)[1:-1] for form in forms}
    )


def strings_in(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


@pytest.mark.parametrize("kind", KINDS)
def test_a_secret_inside_a_record_value_is_replaced_in_every_encoding_and_declared(connector, kind):
    calls = calls_for(list(endpoints(kind).values()), 60, seed=31)
    voicemails = {
        GLOBAL_VOICEMAIL: generate_voicemails(40, START_MS, END_MS - 1, seed=3),
        INDIA_VOICEMAIL: generate_voicemails(40, START_MS, END_MS - 1, seed=4, india=True),
    }
    app = kind in ("app", "india")
    streams = [*endpoints(kind), *([VOICEMAILS] if app else [])]
    forms = tuple(SECRET_FORMS)
    with weird_simulator(calls, voicemails=voicemails) as sim:
        sim.inject("secret_in_record", times=-1, forms=forms)
        run = connector.run("read", weird_config(sim, kind), catalog("incremental", *streams))
        assert run.returncode == 0 and not run.errors, run.errors or run.stderr[-2000:]
        issued = sim.valid_tokens() - {WEIRD_TOKEN}  # the token a login was given
    secrets = {"token": [WEIRD_TOKEN], "login": [WEIRD_PASSWORD, *issued], "app": [WEIRD_APP_SECRET]}
    secrets["india"] = secrets["app"]
    assert secrets[kind] and all(len(s) >= 8 for s in secrets[kind])

    used = set()
    served_paths = dict(endpoints(kind))
    if app:
        served_paths[VOICEMAILS] = GLOBAL_VOICEMAIL if kind == "app" else INDIA_VOICEMAIL
    for stream, path in served_paths.items():
        served = sim.records(path)
        field = "url" if stream == VOICEMAILS else "recording_url"
        key = (lambda r: r["voicename"]) if stream == VOICEMAILS else call_id
        by_key = {key(r): r for r in served}
        messages = messages_of(run, stream)
        assert sorted(key(m["data"]) for m in messages) == sorted(by_key), f"{stream}: not every record once"
        for message in messages:
            record, original = message["data"], by_key[key(message["data"])]
            used.add(secret_form_of(original, forms))
            file = original.get("filename") or original.get("voicename") or "call.mp3"
            assert record[field] == play_url(APP_ID if app else None, MASK, file), (stream, record[field])
            assert changes_of(message) == [{"field": field, "change": "TRUNCATED", "reason": REASON}], stream
            if original.get("agent") is not None:
                assert record["agent"] == original["agent"], "an agent id holding the app id is kept whole"
            if app:
                assert f"appid={APP_ID}&" in record[field], "the app id is not taken out of records"
    assert used == set(forms), f"every form served at least once: {sorted(used)}"

    printed = run.stdout + run.stderr
    values = [s for m in run.messages for s in strings_in(m)]
    for secret in secrets[kind]:
        for form in every_form(secret):
            assert form not in printed, f"a secret is printed ({kind}, {form[:3]}...)"
            assert not [v for v in values if form in v], f"a secret is in a message ({kind}, {form[:3]}...)"


# ----------------------------------------------------------------------------- users' nested secrets


@pytest.mark.parametrize("kind", ["app", "india"])
def test_fields_named_like_secrets_are_declared_on_each_user_they_were_dropped_from(connector, kind):
    agents = generate_agents(20, app_id=APP_ID, seed=12, nested_secrets=True)
    with simulator({}, agents=agents) as sim:
        run = connector.run("read", config_for(sim, kind), catalog("full_refresh", USERS))
        assert run.returncode == 0 and not run.errors, run.errors or run.stderr[-2000:]
    messages = {m["data"]["agent_id"]: m for m in messages_of(run, USERS)}
    assert sorted(messages) == sorted(a["agent_id"] for a in agents)
    for agent in agents:
        message = messages[agent["agent_id"]]
        expected = ["password", "sip.password", "settings.voicemail_pin", "settings.api_token"]
        for number, _device in enumerate(agent["devices"]):
            expected += [f"devices[{number}].password", f"devices[{number}].pin"]
        changes = changes_of(message)
        assert changes is not None and sorted(c["field"] for c in changes) == sorted(expected), agent["agent_id"]
        assert changes == nulled(*[c["field"] for c in changes])
        user = message["data"]
        assert "password" not in user and "password" not in user["sip"] and user["sip"]["domain"]
        assert all(set(device) == {"name"} for device in user["devices"]) and user["settings"] == {}
        printed = json.dumps(user)
        secrets = [agent["password"], agent["sip"]["password"], agent["settings"]["api_token"]]
        assert not [s for s in secrets if s in printed]


@pytest.mark.parametrize("kind", ["token", "app"])
def test_a_time_no_form_of_which_can_be_read_is_declared_on_its_record(connector, kind):
    path = next(iter(endpoints(kind).values()))
    stream = next(iter(endpoints(kind)))
    calls = calls_for([path], 60, seed=29, notes_ratio=0.0)
    with simulator(calls) as sim:
        sim.inject("time_as", times=1, endpoint=path, form="unreadable")  # one page's records
        run = connector.run("read", config_for(sim, kind), catalog("incremental", stream))
        assert run.returncode == 0 and not run.errors, run.errors or run.stderr[-2000:]
    messages = messages_of(run, stream)
    assert sorted(call_id(m["data"]) for m in messages) == sorted(call_id(c) for c in calls[path])
    timeless = [m for m in messages if m["data"].get("time") is None]
    assert timeless, "the page without times was emitted"
    for message in messages:
        if message["data"].get("time") is None:
            assert changes_of(message) == nulled("time") and message["data"].get("started_at") is None
        else:
            assert changes_of(message) is None
    assert [log for log in run.logs("WARN") if "no usable time" in log]
