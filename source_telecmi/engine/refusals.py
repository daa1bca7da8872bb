"""The one rule for a list TeleCMI refuses through every retry (`AccessRefused`).

Refused before the endpoint served anything, the credentials simply lack the list: the stream is
skipped (reported INCOMPLETE by the source, never COMPLETE; its table and state left as they were)
and the sync goes on. Refused after it served, something changed mid-sync: skipping would pass off
a partial read as done, so the sync fails and is retried from its last state. Every place that
reads a list applies the rule through `refusals`, so the rule cannot drift between them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi.answers import AccessRefused

if TYPE_CHECKING:
    from source_telecmi.engine.reading import Lister


class Skipped:
    """The streams of a sync that TeleCMI refused before they served anything, with its reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, stream: str, reason: str) -> bool:
        """Note the stream skipped; False if it already was."""
        with self._lock:
            if stream in self.reasons:
                return False
            self.reasons[stream] = reason
            return True


def refused_after_serving(stream: str, path: str, reason: str) -> AirbyteTracedException:
    """The sync's failure for a list refused after it served: transient, as the refusal may not last."""
    message = f"Stream {stream}: TeleCMI refused {path} after serving it, through every retry ({reason})"
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def skip(lister: Lister, skipped: Skipped, reason: str) -> None:
    """Skip the stream of `lister` (once, however many of its partitions meet the refusal)."""
    if not skipped.add(lister.stream, reason):
        return
    lister.logger.warning(
        "Stream %s skipped, reported INCOMPLETE: TeleCMI refuses %s to these credentials through every retry (%s). "
        "Its table is left as it was.",
        lister.stream,
        lister.endpoint.path,
        reason,
    )


@dataclass
class Refusal:
    """What `refusals` met: `skipped` once the stream was skipped, so the caller stops reading it."""

    skipped: bool = False


@contextmanager
def refusals(lister: Lister, skipped: Skipped) -> Iterator[Refusal]:
    """Apply the rule to a refusal met inside the block: fail the sync if `lister`'s endpoint served, else skip.

    A skip ends the block quietly, with `skipped` set on the `Refusal` yielded; anything else passes through.
    """
    refusal = Refusal()
    try:
        yield refusal
    except AccessRefused as refused:
        if lister.endpoint.served:
            raise refused_after_serving(lister.stream, lister.endpoint.path, str(refused)) from None
        skip(lister, skipped, str(refused))
        refusal.skipped = True
