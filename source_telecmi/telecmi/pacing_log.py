"""What the pacer did, said once per stream: its requests, its 429s, the allowed rate estimated, the time paused.

The pacer is shared by the streams of a sync, which are read one after the other: a stream's figures
are the differences of the pacer's counters (`Snapshot`) at its two ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional


class Snapshot(NamedTuple):
    """The pacer's counters at one moment."""

    requests: int  # sent through the pacer, refused ones included
    rate_limited: int  # answered 429
    paused_s: float  # every worker paused (not the rate's spacing, nor one request held for its Retry-After)
    allowed_rate: Optional[float]  # the estimate of the allowed rate (requests a second), if there is one


def summary(streams: Sequence[str], before: Snapshot, after: Snapshot) -> str:
    """One line on what the pacer did while `streams` (their names; one, but for 0.2's read of all at once) were read."""
    requests, refused = after.requests - before.requests, after.rate_limited - before.rate_limited
    share = f" ({refused / requests:.1%})" if requests else ""
    if after.allowed_rate is not None:
        allowed = f"allowed rate estimated at {after.allowed_rate:.3g} requests a second"
    elif after.rate_limited:
        allowed = "allowed rate not estimated yet"
    else:
        allowed = "no rate limit met"
    paused = after.paused_s - before.paused_s
    named = ("Stream " if len(streams) == 1 else "Streams ") + ", ".join(streams)
    return f"{named}: {requests} requests, {refused} answered 429{share}; {allowed}; paused {paused:.1f} s"
