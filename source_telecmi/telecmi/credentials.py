"""Credentials: what the connector signs in with, and the user token it obtains and renews."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException


@dataclass(frozen=True)
class Credentials:
    """What the connector signs in with: a user token, a user login, or the app id and secret."""

    kind: str  # "token", "login" or "app"
    token: Optional[str] = None
    user_id: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    app_id: Optional[int] = None
    app_secret: Optional[str] = field(default=None, repr=False)


class TokenKeeper:
    """The user token: fixed, or obtained by login and renewed whenever TeleCMI stops accepting it.

    When many workers meet a rejected token at once, only the first logs in; the others find the
    token already replaced. A token that served requests and is then rejected has expired: it is
    renewed however often that happens. Tokens fresh from login that TeleCMI rejects before
    accepting any request, twice in a row, mean the login itself is useless: a config error.
    A failed login is remembered, so wrong credentials are tried once per sync, not per stream.
    """

    def __init__(self, credentials: Credentials, log_in: Callable[[], str]) -> None:
        self._credentials = credentials
        self._log_in = log_in
        self._token = credentials.token
        self._accepted: set[str] = set()
        self._fresh_rejections = 0
        self._failure: Optional[BaseException] = None
        self._lock = threading.Lock()
        self.logins = 0

    def current(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._login()
            return self._token

    def accepted(self, token: str) -> None:
        if token not in self._accepted:
            with self._lock:
                self._accepted.add(token)
                self._fresh_rejections = 0

    def renew(self, rejected: str, reason: str) -> None:
        """Replace `rejected`, which TeleCMI just refused; raises a config error if that cannot help."""
        if self._credentials.kind != "login":
            raise config_error(
                f"TeleCMI rejected the user token: it is invalid or expired ({reason}). Generate a new "
                "token, or use login credentials so the connector renews it itself."
            )
        with self._lock:
            if self._token != rejected:
                return  # another worker already renewed it
            if rejected not in self._accepted:
                self._fresh_rejections += 1
                if self._fresh_rejections >= 2:
                    raise config_error(
                        f"TeleCMI rejects the tokens it issues at login of user {self._credentials.user_id} "
                        f"on their first use ({reason}). Check that the user may read call records."
                    )
            self._token = self._login()

    def _login(self) -> str:
        if self._failure is not None:
            raise self._failure
        try:
            token = self._log_in()
        except AirbyteTracedException as failure:
            if failure.failure_type == FailureType.config_error:
                self._failure = failure
            raise
        self.logins += 1
        return token


def config_error(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)
