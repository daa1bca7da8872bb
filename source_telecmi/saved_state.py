"""Reading a saved state (a stream's, or the state file): what this connector wrote, in the cursor's own form,
or a config error that says what is wrong and that resetting the stream fixes it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from airbyte_cdk.models import AirbyteStateMessage
from airbyte_cdk.sources.streams.concurrent.state_converters.abstract_stream_state_converter import (
    ConcurrencyCompatibleStateType,
)

from source_telecmi.config import ConfigError
from source_telecmi.telecmi.memory import MAX_AGE_DAYS, PACING, Learned, learned_of
from source_telecmi.timeline.instants import instant_of, iso_ms

# The key of a windowed stream's state that holds its audit trail (0.4 and later): this sync's synced_at
# (epoch ms), where it began reading again windows audited before it, the end of what was read before it,
# and the windows it read to their end (the newest ones, from a day before the next lookback point on).
TRAIL = "audit_trail"
# The key of a stream of files' state that holds the files not yet published when asked: file -> what its
# record needs (engine.deliveries.PendingFiles).
PENDING = "pending_files"


# The instants a saved state may hold: those of a date, years 1 to 9999 (one of 10**20 claimed every call
# ever made read, and printed nothing).
FIRST_INSTANT_MS, LAST_INSTANT_MS = -62_135_596_800_000, 253_402_300_799_999


def readable_state(stream: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """A stream's saved state in the cursor's own form, or a config error saying what is wrong.

    ISO-8601 instants where epoch ms belong, digit strings and floats are migrated (their meaning
    is clear); anything else cannot be guessed at, and a reset of the stream is the way out.
    """
    if not state:
        return {}

    def problem(what: str) -> ValueError:
        return ValueError(
            f"The saved state of stream {stream} cannot be read: {what}. Reset the stream {stream} "
            "(its calls are read again from start_date) to fix it."
        )

    def instant(value: Any, where: str) -> int:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            parsed = instant_of(value)
            if parsed is not None and FIRST_INSTANT_MS <= parsed <= LAST_INSTANT_MS:
                return parsed
        raise problem(f"{where} is {repr(value)[:80]}, not an instant (epoch milliseconds)")

    if not isinstance(state, Mapping):
        raise problem(f"it is {type(state).__name__}, not an object")
    if "slices" not in state:
        if set(state) - {"time"} or "time" not in state:
            raise problem(f"it has {sorted(state)}, not 'time' or 'slices'")
        return {"time": instant(state["time"], "time")}
    slices = state["slices"]
    if not isinstance(slices, list):
        raise problem("'slices' is not a list")
    readable = []
    for number, piece in enumerate(slices, 1):
        if not isinstance(piece, Mapping) or "start" not in piece or "end" not in piece:
            raise problem(f"slice {number} has no start or no end")
        entry = {
            "start": instant(piece["start"], f"slice {number} start"),
            "end": instant(piece["end"], f"slice {number} end"),
        }
        if entry["end"] < entry["start"]:
            raise problem(f"slice {number} ends before it starts")
        if piece.get("most_recent_cursor_value") is not None:
            entry["most_recent_cursor_value"] = instant(piece["most_recent_cursor_value"], f"slice {number} cursor")
        readable.append(entry)
    out = {**state, "state_type": ConcurrencyCompatibleStateType.date_range.value, "slices": readable}
    if state.get(TRAIL) is not None:
        out[TRAIL] = readable_trail(state[TRAIL], problem)
    if PACING in state:  # what an earlier sync learned of the rate limit: a hint, dropped if unreadable
        try:
            out[PACING] = learned_of(state[PACING]).as_state()
        except ValueError:
            del out[PACING]
    return out


def readable_trail(trail: Any, problem: Any) -> dict[str, Any]:
    """A state's audit trail with integers where it holds instants; `problem` makes the error if it is not one."""

    def instant(value: Any, where: str, optional: bool = True) -> Optional[int]:
        if value is None and optional:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise problem(f"{TRAIL} {where} is {value!r}, not an instant (epoch milliseconds)")

    if not isinstance(trail, Mapping) or not isinstance(trail.get("windows"), list):
        raise problem(f"{TRAIL} is not an object with a list of windows")
    windows = []
    for number, window in enumerate(trail["windows"], 1):
        if not isinstance(window, list) or len(window) != 2:
            raise problem(f"{TRAIL} window {number} is {window!r}, not [start, end]")
        first, last = (instant(v, f"window {number}", optional=False) for v in window)
        if last < first:  # type: ignore[operator]
            raise problem(f"{TRAIL} window {number} ends before it starts")
        windows.append([first, last])
    return {
        "synced_at": instant(trail.get("synced_at"), "synced_at"),
        "read_from": instant(trail.get("read_from"), "read_from"),
        "until": instant(trail.get("until"), "until"),
        "windows": windows,
    }


def learned_pacing(states: Iterable[tuple[str, Any]], now_ms: int, logger: logging.Logger) -> Optional[Learned]:
    """What earlier syncs learned of TeleCMI's rate limit, from the streams' saved states (stream, state): the most
    recently confirmed estimate, if fresh (`telecmi.memory`). An unreadable one is only a hint lost: a warning."""
    found = []
    for stream, state in states:
        if not isinstance(state, Mapping) or state.get(PACING) is None:
            continue
        try:
            found.append(learned_of(state[PACING]))
        except ValueError as unreadable:
            logger.warning(
                "Stream %s: the saved state's %s cannot be read (%s); it is ignored: the rate limit is probed again",
                stream,
                PACING,
                unreadable,
            )
    latest = max(found, key=lambda learned: learned.confirmed_at, default=None)
    if latest is None:
        return None
    confirmed = iso_ms(latest.confirmed_at)
    if not latest.fresh(now_ms):
        logger.info(
            "The rate limit an earlier sync learned (%.4g requests a second, confirmed %s) is older than %d days: "
            "it is probed again",
            latest.allowed_rate,
            confirmed,
            MAX_AGE_DAYS,
        )
        return None
    logger.info(
        "Pacing from the rate limit an earlier sync learned: %.4g requests a second (confirmed %s)",
        latest.allowed_rate,
        confirmed,
    )
    return latest


def unreadable_state(what: str) -> ConfigError:
    """The config error for a saved state this connector cannot read: saying what, and that a reset fixes it."""
    return ConfigError(
        f"The saved state cannot be read: {what}. This connector writes one STREAM state per stream; reset "
        "the connection's streams (their records are read again from start_date) to fix it."
    )


def only_stream_states(states: list[AirbyteStateMessage]) -> list[AirbyteStateMessage]:
    """The states, if every one is a STREAM state (the only kind this connector writes); else a config error."""
    kinds = {str(getattr(s.type, "value", s.type)) for s in states} - {"STREAM"}
    if kinds:
        raise unreadable_state(f"it holds a {', '.join(sorted(kinds))} state, which this connector never writes")
    return states
