"""What a sync learned of TeleCMI's rate limit goes into its state, and the next sync starts from it.

Two syncs of the real command, each against a fresh limiter of the same shape (integration_tests/limiters.py):
the second, given the first's state, paces from its first request. A third, given the same state without
the estimate (as 0.3 wrote it), starts as the first did.
"""

from __future__ import annotations

import time

from integration_tests.conftest import DAY_MS, ENDPOINTS, START, START_MS, STREAM, catalog, config_for, simulator
from integration_tests.limiters import Recorded, TokenBucket
from integration_tests.telecmi_simulator import generate_calls

RATE = 40  # requests a second, a burst of one tenth of a second
DAYS = 15


def sync(connector, calls, days: int, state=None):
    """A sync of `days` days from START against a fresh limiter; its run and the limiter."""
    limiter = Recorded(TokenBucket(RATE, RATE / 10))
    with simulator({ENDPOINTS[STREAM]: calls}, limiter=limiter, rate_limit_form="no_retry_after", latency_ms=2) as sim:
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((START_MS + days * DAY_MS) / 1000))
        config = config_for(sim, start_date=START, end_date=end, num_workers=4)
        run = connector.run("read", config, catalog("incremental"), state=state).ok()
    return run, limiter


def test_a_second_sync_starts_from_the_rate_limit_the_first_learned(connector):
    path = ENDPOINTS[STREAM]
    first_calls = generate_calls(2_000, START_MS, START_MS + DAYS * DAY_MS - 1, seed=41, endpoint=path)
    later = generate_calls(1_200, START_MS + DAYS * DAY_MS, START_MS + 2 * DAYS * DAY_MS - 1, seed=42, endpoint=path)
    first, limited = sync(connector, first_calls, DAYS)
    state = [first.states[-1]]
    learned = state[0]["stream"]["stream_state"]["pacing"]
    assert 0.9 * RATE <= learned["allowed_rate"] <= 1.05 * RATE
    assert abs(learned["confirmed_at"] - time.time() * 1000) < 120_000
    assert limited.shares(2.0)[0] < 0.7  # the first sync probes: a burst refused, a pause, a rate doubling up

    second, limiter = sync(connector, first_calls + later, 2 * DAYS, state)
    assert len(second.records) >= 1_200
    share, refused = limiter.shares()
    assert share >= 0.9 and refused <= 0.01, (share, refused)
    assert limiter.shares(2.0)[0] >= 0.9  # from its first seconds
    assert second.states[-1]["stream"]["stream_state"]["pacing"]["allowed_rate"] > 0.9 * RATE
    (line,) = [m for m in second.logs("INFO") if m.startswith(f"Stream {STREAM}: ") and "answered 429" in m]
    requests = len(limiter.takes)
    assert line.startswith(f"Stream {STREAM}: {requests} requests, {requests - sum(ok for _, ok in limiter.takes)} ")
    assert "allowed rate estimated at" in line and "paused" in line
    assert any(m.startswith("Pacing from the rate limit an earlier sync learned") for m in second.logs("INFO"))

    without = [{**state[0], "stream": {**state[0]["stream"], "stream_state": dict(state[0]["stream"]["stream_state"])}}]
    del without[0]["stream"]["stream_state"]["pacing"]  # 0.3's state: no estimate
    _, probing = sync(connector, first_calls + later, 2 * DAYS, without)
    assert probing.shares(2.0)[0] < 0.7 and probing.shares(2.0)[1] > 0.01  # as the first sync: it probes again
