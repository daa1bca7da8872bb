"""Within one read a call is its identity, not its content; the audit counts calls and says TeleCMI's count as answered.

Through the real command, the race an outside run found: between a window's count probe and its
page 2, one call lands at the newest millisecond (every later page shifts by one) and an agent adds a
note to the last call of page 1 (so page 2 serves it again, with other content). Every call comes
out once, the noted one with its note, the late one in the same sync, and the window's audit row
gives the count TeleCMI answered last and the distinct calls that account for it. On every list with
windows: calls by `cmiuid`, India's by `_id`, voicemails by `voicename`.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest

from integration_tests.harness import START_MS, Connector, config_for, configured, discovered, simulator
from integration_tests.telecmi_simulator import generate_calls, generate_voicemails, make_call, make_voicemail

DAY_MS = 86_400_000
CALLS = 130
# (kind of config, stream, path, key)
LISTS = [
    ("app", "incoming_answered_calls", "/v2/answered", "cmiuid"),
    ("india", "outgoing_answered_calls", "/v1/outanswered", "_id"),
    ("app", "voicemails", "/v2/voicemail", "voicename"),
    ("india", "voicemails", "/v1/voicemail", "voicename"),
]


def served(path: str, india: bool) -> list[dict]:
    if "voicemail" in path:
        return generate_voicemails(CALLS, START_MS, START_MS + DAY_MS - 2, seed=3, india=india)
    return generate_calls(CALLS, START_MS, START_MS + DAY_MS - 2, seed=3, endpoint=path, notes_ratio=0.5)


def late_and_changed(path: str, records: list[dict], india: bool, page_size: int) -> tuple[dict, dict]:
    """A call at the newest millisecond, and the last call of page 1 with new content."""
    newest_first = sorted(records, key=lambda r: r["time"], reverse=True)
    newest = newest_first[0]["time"]
    if "voicemail" in path:
        late = make_voicemail(newest, india=india)
        changed = {**copy.deepcopy(newest_first[page_size - 1]), "from": 910000000042}
    else:
        late = make_call(newest, endpoint=path)
        changed = copy.deepcopy(newest_first[page_size - 1])
        changed["notes"] = [*(changed.get("notes") or []), {"msg": "added between pages", "date": newest, "agent": "x"}]
    return late, changed


@pytest.mark.parametrize(("kind", "stream", "path", "key"), LISTS, ids=[f"{s}-{k}" for k, s, _, _ in LISTS])
def test_a_call_landing_and_a_note_added_between_pages_leave_every_call_once(
    tmp_path: Path, kind: str, stream: str, path: str, key: str
):
    india = kind == "india"
    records = served(path, india)
    page_size = 10 if india or "voicemail" in path else 20
    late, changed = late_and_changed(path, records, india, page_size)
    # Full refresh: the day is one window, so the race happens inside it (an incremental read cuts its last windows
    # small, for the next sync's lookback, and the newest calls would fall in a window not yet probed).
    catalog = configured([discovered(kind)[stream], discovered(kind)["sync_audit"]], "full_refresh")
    with simulator({path: records}) as sim:
        # After the window's probe (its page 1) is answered, before any other page is.
        sim.upsert_after(1, path, [late, changed])
        config = config_for(sim, kind, start_date="2025-12-01T00:00:00Z", end_date="2025-12-01T23:59:59Z")
        run = Connector(tmp_path).run("read", config, catalog).ok()
    emitted = run.records_of(stream)
    field = "cmiuid" if key == "_id" else key
    counts = Counter(r[field] for r in emitted)
    assert [k for k, n in counts.items() if n > 1] == []  # every call once
    assert set(counts) == {r[key] for r in [*records, late]}  # the late call read in the same sync
    (noted,) = [r for r in emitted if r[field] == changed[key]]
    if "voicemail" in path:
        assert noted["from"] == "910000000042"
    else:
        assert noted["notes"][-1]["msg"] == "added between pages"  # the newest content
    rows = [r for r in run.records_of("sync_audit") if r["stream"] == stream]
    assert [
        (r["telecmi_count"], r["calls_read"], r["records_emitted"], r["verdict"], r["shortfall"]) for r in rows
    ] == [(CALLS + 1, CALLS + 1, CALLS + 1, "complete", 0)]
