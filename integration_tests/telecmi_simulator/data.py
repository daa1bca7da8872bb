"""Synthetic TeleCMI call detail records (CDR) and users, shaped like the real API.

Shapes follow the TeleCMI docs (see telecmi-api.md). One user's calls (``/v2/user/...``):

* ``out_missed``   outgoing, not answered: UUID ``cmiuid``, ``from`` is the user's
  number as a *string*, ``to`` the dialled number as an *integer*, ``duration`` 0
  (occasionally a few seconds), optional ``notes``.
* ``missed``       incoming, not answered: 24-hex ``cmiuid`` (not a UUID), numeric
  ``from`` (the caller), no ``to``; ``duration`` sometimes non-zero.
* ``answered``     incoming, answered: like ``missed`` plus ``filename`` and ``record``
  (``"true"`` as a string), non-zero durations, UUID ``cmiuid``.
* ``out_answered`` outgoing, answered: like ``out_missed`` plus ``filename`` and
  ``record``, non-zero durations.

The whole account (``/v2/answered``...) adds ``agent``, the user id who handled or dialled
the call (missing on some incoming missed calls). India (``/v1/answered``...) has ``_id``
(24-hex) instead of ``cmiuid``, ``rate`` as a string, no ``duration`` and no ``notes``;
``agent`` on incoming answered calls; on outgoing calls ``from`` is the user id.

Voicemails (``/v2/voicemail``, India ``/v1/voicemail``): ``time``, ``from`` (the caller, a
12-digit integer) and ``voicename`` (the audio file name, the natural key of a global record);
India's records add ``_id`` (24-hex).

Everything here is deterministic for a given seed, except ``make_call`` / ``make_voicemail``
without an explicit id (they draw fresh random ids so two records never collide).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

OUT_MISSED = "/v2/user/out_missed"
MISSED = "/v2/user/missed"
ANSWERED = "/v2/user/answered"
OUT_ANSWERED = "/v2/user/out_answered"
# Each family in the order answered, missed, out_answered, out_missed.
USER_ENDPOINTS: tuple[str, ...] = (ANSWERED, MISSED, OUT_ANSWERED, OUT_MISSED)
ACCOUNT_ENDPOINTS: tuple[str, ...] = ("/v2/answered", "/v2/missed", "/v2/out_answered", "/v2/out_missed")
INDIA_ENDPOINTS: tuple[str, ...] = ("/v1/answered", "/v1/missed", "/v1/outanswered", "/v1/outmissed")
#: Every call-record path; the user-level four first, in their historical order.
CDR_ENDPOINTS: tuple[str, ...] = (OUT_MISSED, MISSED, ANSWERED, OUT_ANSWERED, *ACCOUNT_ENDPOINTS, *INDIA_ENDPOINTS)
GLOBAL_VOICEMAIL = "/v2/voicemail"
INDIA_VOICEMAIL = "/v1/voicemail"
#: The voicemail lists (app credentials): global, India.
VOICEMAIL_PATHS: tuple[str, ...] = (GLOBAL_VOICEMAIL, INDIA_VOICEMAIL)

DEFAULT_APP_ID = 1111112
DEFAULT_APP_SECRET = "demo-app-secret"

#: Pass as an override value to ``make_call`` to remove that key from the record.
DROP = object()

# path -> (family, answered, outgoing)
_SHAPES: dict[str, tuple[str, bool, bool]] = {
    path: (family, answered, outgoing)
    for family, paths in (("user", USER_ENDPOINTS), ("account", ACCOUNT_ENDPOINTS), ("india", INDIA_ENDPOINTS))
    for path, (answered, outgoing) in zip(
        paths, ((True, False), (False, False), (True, True), (False, True)), strict=True
    )
}

_AGENT_IDS = ("101_1111112", "102_1111112", "103_1111112")
_ACCOUNT_AGENTS = tuple(f"{ext}_{DEFAULT_APP_ID}" for ext in range(101, 113))
_AGENT_NUMBERS = ("919200000000", "919300000000", "919400000000", "6500000001")
_NAMES = ("Ravi Kumar", "Priya", "John Smith", "Acme Support", "Mohan")
_FIRST_NAMES = ("Ravi", "Priya", "John", "Anita", "Mohan", "Sara", "Arjun", "Meera", "David", "Lakshmi")
_LAST_NAMES = ("Kumar", "Sharma", "Smith", "Iyer", "Das", "Khan", "Nair", "Patel", "Reddy", "Menon")
_NOTE_MSGS = (
    "Support Query",
    "Regarding the order status",
    "Call back tomorrow",
    "Wrong number",
    "Asked for a quote",
    "Payment issue",
)
_DAY_MS = 86_400_000


def normalize_endpoint(endpoint: str) -> str:
    """``"out_missed"`` -> ``"/v2/user/out_missed"``; full paths are returned as is."""
    endpoint = endpoint.strip()
    if not endpoint.startswith("/"):
        endpoint = "/v2/user/" + endpoint
    if len(endpoint) > 1:
        endpoint = endpoint.rstrip("/")
    return endpoint


def check_endpoint(endpoint: str) -> str:
    """The normalized call-record path, or ValueError if it is none of CDR_ENDPOINTS."""
    ep = normalize_endpoint(endpoint)
    if ep not in _SHAPES:
        raise ValueError(f"unknown CDR endpoint {endpoint!r}; known: {CDR_ENDPOINTS}")
    return ep


def record_id(rec: dict[str, Any]) -> str:
    """The unique id of a record: ``cmiuid``, ``_id`` on India's, ``voicename`` on global voicemails."""
    for key in ("cmiuid", "_id", "voicename"):
        if key in rec:
            return str(rec[key])
    return ""


def _long_number(rng: random.Random) -> int:
    digits = rng.randint(20, 22)
    return rng.randrange(10 ** (digits - 1), 10**digits)


def _phone(rng: random.Random) -> int:
    prefix = rng.choice((91, 91, 91, 1, 44, 61, 65))
    digits = 10 if prefix in (91, 1) else 9
    return int(f"{prefix}{rng.randrange(10 ** (digits - 1), 10**digits)}")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _object_id(rng: random.Random, time_ms: int) -> str:
    # MongoDB ObjectId layout: 4 bytes of epoch seconds, then 8 random bytes.
    return f"{(max(time_ms, 0) // 1000) & 0xFFFFFFFF:08x}{rng.getrandbits(64):016x}"


def _notes(rng: random.Random, time_ms: int) -> list[dict[str, Any]]:
    date = time_ms + rng.randint(0, 2 * _DAY_MS)
    agent = rng.choice(_AGENT_IDS)
    notes = [{"msg": rng.choice(_NOTE_MSGS), "date": date, "agent": agent}]
    if rng.random() < 0.4:
        if rng.random() < 0.5:  # same date and agent, as in the documented sample
            notes.append({"msg": rng.choice(_NOTE_MSGS), "date": date, "agent": agent})
        else:
            later = date + rng.randint(1, _DAY_MS)
            notes.append({"msg": rng.choice(_NOTE_MSGS), "date": later, "agent": agent})
    return notes


def _india_record(rng: random.Random, time_ms: int, answered: bool, outgoing: bool, oid: str | None) -> dict[str, Any]:
    billedsec = rng.randint(5, 900) if answered else 0
    rate = ((billedsec + 59) // 60) * 0.49 if outgoing else 0
    rec: dict[str, Any] = {
        "_id": oid or _object_id(rng, time_ms),
        "billedsec": billedsec,
        "rate": f"{rate:.2f}",
        "name": rng.choice(_NAMES) if rng.random() < 0.1 else "unknown",
    }
    if outgoing:
        rec["from"] = rng.choice(_ACCOUNT_AGENTS)
        rec["to"] = _phone(rng)
    else:
        rec["from"] = _phone(rng)
        if answered:
            rec["agent"] = rng.choice(_ACCOUNT_AGENTS)
    rec["time"] = time_ms
    if answered:
        rec["filename"] = f"{time_ms}_{rng.getrandbits(32):08x}.mp3"
        rec["record"] = "true"
    return rec


def _record(
    rng: random.Random,
    time_ms: int,
    endpoint: str,
    notes_ratio: float,
    cmiuid: str | None = None,
) -> dict[str, Any]:
    family, answered, outgoing = _SHAPES[endpoint]
    if family == "india":
        return _india_record(rng, time_ms, answered, outgoing, cmiuid)
    in_missed = not (answered or outgoing)
    if cmiuid is None:
        cmiuid = _object_id(rng, time_ms) if in_missed else _uuid(rng)
    if answered:
        duration = rng.randint(5, 900)
    elif in_missed:
        duration = rng.choice((4, 7, 12)) if rng.random() < 0.15 else 0
    else:
        duration = rng.randint(1, 5) if rng.random() < 0.05 else 0
    billedsec = duration if answered else 0
    rate = round(((billedsec + 59) // 60) * 0.5, 2) if outgoing and answered else 0
    rec: dict[str, Any] = {"cmiuid": cmiuid, "duration": duration}
    if rng.random() < notes_ratio:
        rec["notes"] = _notes(rng, time_ms)
    rec["billedsec"] = billedsec
    rec["rate"] = rate
    rec["name"] = rng.choice(_NAMES) if rng.random() < 0.1 else "unknown"
    if outgoing:
        rec["from"] = rng.choice(_AGENT_NUMBERS)
        rec["to"] = _phone(rng)
    else:
        rec["from"] = _phone(rng)
    rec["time"] = time_ms
    if answered:
        rec["filename"] = f"{time_ms}_{rng.getrandbits(32):08x}.mp3"
        rec["record"] = "true"
    if family == "account" and (not in_missed or rng.random() < 0.85):
        rec["agent"] = rng.choice(_ACCOUNT_AGENTS)
    return rec


def generate_calls(
    n: int,
    start_ms: int,
    end_ms: int,
    seed: int = 0,
    endpoint: str = OUT_MISSED,
    notes_ratio: float = 0.2,
    long_numbers: bool = False,
) -> list[dict[str, Any]]:
    """``n`` records of ``endpoint``'s shape, ``time`` uniform in ``[start_ms, end_ms]`` (epoch ms).

    Deterministic for ``(seed, endpoint)``; different endpoints get different streams.
    Returned newest first, like the API. ``notes_ratio`` is ignored on India's paths.
    ``long_numbers``: the other party's number (``to`` on outgoing calls, ``from`` on
    incoming ones) is a JSON integer of 20 to 22 digits, beyond 64 bits; everything else
    is the same as without it.
    """
    ep = check_endpoint(endpoint)
    if n < 0:
        raise ValueError("n must be >= 0")
    if end_ms < start_ms:
        raise ValueError("end_ms must be >= start_ms")
    rng = random.Random(f"telecmi:{seed}:{ep}")
    times = [rng.randint(int(start_ms), int(end_ms)) for _ in range(n)]
    out = [_record(rng, t, ep, notes_ratio) for t in times]
    if long_numbers:  # a separate stream: the records are otherwise unchanged
        long_rng = random.Random(f"telecmi-long:{seed}:{ep}")
        key = "to" if _SHAPES[ep][2] else "from"
        for rec in out:
            rec[key] = _long_number(long_rng)
    out.sort(key=lambda r: (r["time"], record_id(r)), reverse=True)
    return out


def make_call(
    time_ms: int,
    endpoint: str = OUT_MISSED,
    cmiuid: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One record at exactly ``time_ms`` with the endpoint's shape.

    ``cmiuid`` sets the record's id (``_id`` on India's paths); it defaults to a fresh
    random id (UUID, or 24-hex for incoming missed calls and India). Keyword ``overrides``
    replace fields (``notes=[...]``, ``duration=3``...); an override value of ``DROP``
    removes the key. Notes are only added when passed explicitly.
    """
    ep = check_endpoint(endpoint)
    rng = random.Random()
    rec = _record(rng, int(time_ms), ep, notes_ratio=0.0, cmiuid=cmiuid)
    for key, value in overrides.items():
        if value is DROP:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


_DEVICE_NAMES = ("desk-phone", "softphone", "mobile-app")


def _secret(rng: random.Random, prefix: str, seen: set[str]) -> str:
    """A fresh secret (>= 8 characters) not in ``seen``."""
    while True:
        value = f"{prefix}{rng.getrandbits(64):016x}"
        if value not in seen:
            seen.add(value)
            return value


def _nested_secrets(rng: random.Random, ext: int, app_id: int, seen: set[str]) -> dict[str, Any]:
    devices = [
        {"name": _DEVICE_NAMES[i], "password": _secret(rng, "dev-", seen), "pin": "4821"}
        for i in range(1 + rng.randrange(len(_DEVICE_NAMES)))
    ]
    while True:
        pin = f"{rng.randrange(10**7, 10**8)}"  # 8 digits
        if pin not in seen:
            seen.add(pin)
            break
    return {
        "sip": {"username": f"{ext}_{app_id}", "password": _secret(rng, "sip-", seen), "domain": "sip.telecmi.com"},
        "devices": devices,
        "settings": {"voicemail_pin": pin, "api_token": _secret(rng, "tok-", seen)},
    }


def _vary(agent: dict[str, Any], i: int, offsets: list[int]) -> None:
    """The same values in TeleCMI's inconsistent types, cycling so every form shows up."""
    ext, phone, start, end = agent["extension"], agent["phone"], agent["start_time"], agent["end_time"]
    agent["extension"] = (ext, str(ext))[(i + offsets[0]) % 2]
    agent["phone"] = (phone, str(phone))[(i + offsets[1]) % 2]
    forms = (True, "true", 1) if agent["notify"] else (False, "false", 0)
    agent["notify"] = forms[(i + offsets[2]) % 3]
    agent["start_time"] = (start, str(start))[(i + offsets[3]) % 2]
    agent["end_time"] = (end, str(end))[(i + offsets[4]) % 2]


def generate_agents(
    n: int,
    app_id: int = DEFAULT_APP_ID,
    seed: int = 0,
    nested_secrets: bool = False,
    varied_types: bool = False,
) -> list[dict[str, Any]]:
    """``n`` users of app ``app_id`` (extensions 101, 102...), as /v3/user/list lists them.

    Each carries a plain-text ``password``, as TeleCMI's users lists do. Deterministic.

    ``nested_secrets``: each user also has ``sip`` (``username``, ``password``, ``domain``),
    ``devices`` (1 to 3 of ``name``, ``password``, ``pin`` ``"4821"``) and ``settings``
    (``voicemail_pin``, 8 digits, and ``api_token``); the passwords, voicemail pins and api
    tokens are all distinct (from each other and every ``password``), 8 characters or more.
    ``varied_types``: the same values in mixed types: ``extension``/``phone``/``start_time``/
    ``end_time`` an int or a digit string, ``notify`` one of ``True``/``"true"``/``1`` or
    ``False``/``"false"``/``0`` (cycling per user, so 6 users show every form of each truth).
    Neither option changes the other fields' values.
    """
    rng = random.Random(f"telecmi-agents:{seed}:{app_id}")
    secrets_rng = random.Random(f"telecmi-agent-secrets:{seed}:{app_id}")
    types_rng = random.Random(f"telecmi-agent-types:{seed}:{app_id}")
    offsets = [types_rng.randrange(6) for _ in range(5)]
    agents = []
    for ext in range(101, 101 + n):
        agents.append(
            {
                "agent_id": f"{ext}_{app_id}",
                "first_name": rng.choice(_FIRST_NAMES),
                "last_name": rng.choice(_LAST_NAMES),
                "extension": ext,
                "password": f"pw-{ext}-{rng.getrandbits(32):08x}",
                "notify": rng.random() < 0.5,
                "phone": int(f"91{rng.randrange(6 * 10**9, 10**10)}"),
                "start_time": 9,
                "end_time": 18,
            }
        )
    if nested_secrets:
        seen = {a["password"] for a in agents}
        for agent in agents:
            agent.update(_nested_secrets(secrets_rng, int(agent["extension"]), app_id, seen))
    if varied_types:
        for i, agent in enumerate(agents):
            _vary(agent, i, offsets)
    return agents


# --------------------------------------------------------------------------- voicemails


def _voicemail(rng: random.Random, time_ms: int, india: bool, taken: set[str]) -> dict[str, Any]:
    while True:
        caller = int(f"{rng.choice((91, 91, 91, 44, 65))}{rng.randrange(10**9, 10**10)}")  # 12 digits
        name = f"{time_ms}_{caller}.mp3"
        if name not in taken:
            taken.add(name)
            break
    rec: dict[str, Any] = {"_id": _object_id(rng, time_ms)} if india else {}
    rec.update({"time": time_ms, "from": caller, "voicename": name})
    return rec


def generate_voicemails(
    n: int,
    start_ms: int,
    end_ms: int,
    seed: int = 0,
    india: bool = False,
) -> list[dict[str, Any]]:
    """``n`` voicemails in ``[start_ms, end_ms]``, newest first (by time, then id/voicename).

    Records ``{"time", "from": <12-digit int>, "voicename": "<time>_<from>.mp3"}`` (unique
    file names); India's add ``_id`` (24-hex). About one in eight shares its millisecond
    with another. Deterministic for ``(seed, india)``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if end_ms < start_ms:
        raise ValueError("end_ms must be >= start_ms")
    rng = random.Random(f"telecmi-voicemail:{seed}:{'india' if india else 'global'}")
    times: list[int] = []
    for _ in range(n):
        if times and rng.random() < 0.125:
            times.append(rng.choice(times))  # a busy millisecond
        else:
            times.append(rng.randint(int(start_ms), int(end_ms)))
    taken: set[str] = set()
    out = [_voicemail(rng, t, india, taken) for t in times]
    out.sort(key=lambda r: (r["time"], record_id(r)), reverse=True)
    return out


def make_voicemail(time_ms: int, india: bool = False, **overrides: Any) -> dict[str, Any]:
    """One voicemail at exactly ``time_ms``, with fresh random ``from`` (and ``_id`` on India).

    Keyword ``overrides`` replace fields (``**{"from": 1}``, ``voicename="x.mp3"``...); an
    override value of ``DROP`` removes the key.
    """
    rec = _voicemail(random.Random(), int(time_ms), india, set())
    for key, value in overrides.items():
        if value is DROP:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec
