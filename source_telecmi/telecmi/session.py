"""What the error handler of every endpoint shares within one sync, and nothing more.

A narrow port: the handler sees the API address, the credentials and their token, the platform's
success codes, whether TeleCMI was ever reached, and which token an answer's request carried. It
never sees the API object that builds it, so the two modules import each other in one direction only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import requests

from source_telecmi.telecmi.credentials import Credentials, TokenKeeper

# Tests shorten every wait (backoffs, pauses, giving up on an unreachable address) with this; production keeps 1.
BACKOFF_SCALE_ENV = "SOURCE_TELECMI_BACKOFF_SCALE"


def wait_scale() -> float:
    return float(os.environ.get(BACKOFF_SCALE_ENV, "1") or 1)


class SyncEnded(requests.ConnectionError):
    """The sync is over (it failed, or its output was closed): no further request goes out."""


# With no answer at all yet, connection failures (a name that does not resolve, a refused
# connection) end the sync after this long instead of spending every retry of every request.
UNREACHABLE_AFTER_S = 60.0


class Reachability:
    """Whether TeleCMI ever answered in this sync, and when to stop trying to reach it if not.

    Once given up, `unreachable` says why: the transport fails every later request with it at once,
    rather than each one spending its retries on an address that never answered.
    """

    def __init__(self, scale: Callable[[], float], clock: Callable[[], float] = time.monotonic) -> None:
        self._scale = scale  # the tests' shortening of every wait
        self._clock = clock
        self._first_failure: Optional[float] = None
        self._lock = threading.Lock()
        self.answered = False
        self.unreachable: Optional[str] = None

    def reached(self) -> None:
        """TeleCMI answered: from now on connection failures are faults to retry, never the end."""
        self.answered = True

    def give_up_connecting(self, why: str) -> bool:
        """Whether connection failures have lasted long enough, with no answer ever, to stop trying.

        Giving up keeps `why` as the message of every later request.
        """
        if self.answered:
            return False
        with self._lock:
            now = self._clock()
            self._first_failure = self._first_failure or now
            if now - self._first_failure < UNREACHABLE_AFTER_S * self._scale():
                return False
            self.unreachable = self.unreachable or why
            return True


@dataclass(frozen=True)
class Session:
    """What every endpoint's error handler needs of the sync it serves."""

    api_url: str
    credentials: Credentials
    tokens: TokenKeeper
    success_codes: frozenset[Any]
    reachability: Reachability
    token_sent: Callable[[requests.Response], Optional[str]]  # the user token an answer's request carried, if any
