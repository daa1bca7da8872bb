"""Synthetic TeleCMI call detail records (CDR), shaped like the real user endpoints.

Shapes follow the TeleCMI docs (see telecmi-api.md):

* ``/v2/user/out_missed``  outgoing, not answered: UUID ``cmiuid``, ``from`` is the
  agent's number as a *string*, ``to`` the dialled number as an *integer*,
  ``duration`` 0 (occasionally a few seconds), optional ``notes``.
* ``/v2/user/missed``      incoming, not answered: 24-hex ``cmiuid`` (not a UUID),
  numeric ``from`` (the caller), no ``to``; ``duration`` sometimes non-zero.
* ``/v2/user/answered``    incoming, answered: like ``missed`` plus ``filename`` and
  ``record`` (``"true"`` as a string), non-zero durations, UUID ``cmiuid``.
* ``/v2/user/out_answered`` outgoing, answered: like ``out_missed`` plus ``filename``
  and ``record``, non-zero durations.

Everything here is deterministic for a given seed, except ``make_call`` without an
explicit ``cmiuid`` (it draws a fresh random id so two calls never collide).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

OUT_MISSED = "/v2/user/out_missed"
MISSED = "/v2/user/missed"
ANSWERED = "/v2/user/answered"
OUT_ANSWERED = "/v2/user/out_answered"
CDR_ENDPOINTS: tuple[str, ...] = (OUT_MISSED, MISSED, ANSWERED, OUT_ANSWERED)

#: Pass as an override value to ``make_call`` to remove that key from the record.
DROP = object()

_AGENT_IDS = ("101_1111112", "102_1111112", "103_1111112")
_AGENT_NUMBERS = ("919200000000", "919300000000", "919400000000", "6500000001")
_NAMES = ("Ravi Kumar", "Priya", "John Smith", "Acme Support", "Mohan")
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


def _check_endpoint(endpoint: str) -> str:
    ep = normalize_endpoint(endpoint)
    if ep not in CDR_ENDPOINTS:
        raise ValueError(f"unknown CDR endpoint {endpoint!r}; known: {CDR_ENDPOINTS}")
    return ep


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


def _record(
    rng: random.Random,
    time_ms: int,
    endpoint: str,
    notes_ratio: float,
    cmiuid: str | None = None,
) -> dict[str, Any]:
    outgoing = endpoint in (OUT_MISSED, OUT_ANSWERED)
    answered = endpoint in (ANSWERED, OUT_ANSWERED)
    if cmiuid is None:
        cmiuid = _object_id(rng, time_ms) if endpoint == MISSED else _uuid(rng)
    if answered:
        duration = rng.randint(5, 900)
    elif endpoint == MISSED:
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
    return rec


def generate_calls(
    n: int,
    start_ms: int,
    end_ms: int,
    seed: int = 0,
    endpoint: str = OUT_MISSED,
    notes_ratio: float = 0.2,
) -> list[dict[str, Any]]:
    """``n`` records, ``time`` uniform in ``[start_ms, end_ms]`` (inclusive, epoch ms).

    Deterministic for ``(seed, endpoint)``; different endpoints get different streams.
    Returned newest first, like the API.
    """
    ep = _check_endpoint(endpoint)
    if n < 0:
        raise ValueError("n must be >= 0")
    if end_ms < start_ms:
        raise ValueError("end_ms must be >= start_ms")
    rng = random.Random(f"telecmi:{seed}:{ep}")
    times = [rng.randint(int(start_ms), int(end_ms)) for _ in range(n)]
    out = [_record(rng, t, ep, notes_ratio) for t in times]
    out.sort(key=lambda r: (r["time"], r["cmiuid"]), reverse=True)
    return out


def make_call(
    time_ms: int,
    endpoint: str = OUT_MISSED,
    cmiuid: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One record at exactly ``time_ms`` with the endpoint's shape.

    ``cmiuid`` defaults to a fresh random id (UUID, or 24-hex for ``missed``). Keyword
    ``overrides`` replace fields (``notes=[...]``, ``duration=3``...); an override
    value of ``DROP`` removes the key. Notes are only added when passed explicitly.
    """
    ep = _check_endpoint(endpoint)
    rng = random.Random()
    rec = _record(rng, int(time_ms), ep, notes_ratio=0.0, cmiuid=cmiuid)
    for key, value in overrides.items():
        if value is DROP:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec
