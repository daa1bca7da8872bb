"""A page of a list, as the reader takes it in; a file, as fetching it came to.

It lives apart from the client so the engine can hold pages without importing how TeleCMI is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class Page:
    """One page of a list, and the total TeleCMI reported for what was asked (None where it sends none)."""

    count: Optional[int]
    records: list[dict[str, Any]]
    sent: int = 1  # the requests it took, retries and rate-limited ones included
    answered: int = 0  # when TeleCMI answered it, in the order of the sync's answers (set by the reader)


@dataclass(frozen=True)
class Fetched:
    """What fetching one file came to: `downloaded` (its size, hash and type) or `pending` (why not yet)."""

    status: str
    size: Optional[int] = None
    sha256: Optional[str] = None
    content_type: Optional[str] = None
    reason: Optional[str] = None
