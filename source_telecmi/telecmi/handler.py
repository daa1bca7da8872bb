"""The CDK error handler of every TeleCMI endpoint, and its backoff: where only the handler can act.

Every answer goes through `answers.resolve` to a row of its tables, whose value is the resolution.
The handler adds only what the tables cannot know: it renews an expired user token (then RETRY),
registers secrets an answer carries before the CDK logs it, names the endpoint in what it says,
and gives up early when TeleCMI cannot be reached at all. It sees the sync through a `Session`,
never through the API object that builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, Union

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import (
    BackoffStrategy,
    ErrorHandler,
    ErrorResolution,
    ResponseAction,
)

from source_telecmi.secrets import register_named
from source_telecmi.telecmi.answers import (
    ADDRESS_IN_DOUBT,
    BODY_CODES,
    REFUSED,
    SERVED,
    UNREACHABLE,
    UNUSABLE_URL,
    WRONG_CREDENTIALS,
    address_in_doubt,
    resolve,
    row_of,
    say,
)
from source_telecmi.telecmi.body import body_of, reason_of
from source_telecmi.telecmi.session import Session, SyncEnded, wait_scale

FIRST_BACKOFF_S = 5.0
LONGEST_BACKOFF_S = 120.0
# A refusal is retried sooner: a proxy's or a firewall's passing 403 clears in seconds, and a
# refusal that lasts (the account does not have the list) should not hold the sync for minutes.
FIRST_REFUSAL_BACKOFF_S = 1.0
# Rows whose message stands alone: a refusal names the endpoint itself, the others are about
# api_url, not about one endpoint. Every other fault is said with the endpoint's name first.
_SAID_WHOLE = (REFUSED, UNREACHABLE, UNUSABLE_URL)


class AnswerHandler(ErrorHandler):
    """The CDK error handler of one endpoint: `answers.resolve`, plus what only the handler can do."""

    def __init__(self, session: Session, what: str, lacking: Callable[[Any], Optional[str]], max_retries: int) -> None:
        self._session = session
        self._what = what
        self._lacking = lacking
        self._max_retries = max_retries
        self._codes = {**BODY_CODES, **dict.fromkeys(session.success_codes, SERVED)}
        self.served = False  # whether this endpoint ever gave a usable answer

    @property
    def max_retries(self) -> Optional[int]:
        return self._max_retries

    @property
    def max_time(self) -> Optional[int]:
        return None

    def resolve(
        self, answer: Optional[Union[requests.Response, BaseException]]
    ) -> tuple[ErrorResolution, ErrorResolution]:
        """The row of an answer to this endpoint and its resolution, said as this endpoint's."""
        row, resolution = resolve(answer, self._lacking, self._codes, api_url=self._session.api_url, what=self._what)
        said_whole = any(row is whole for whole in _SAID_WHOLE)
        if resolution.response_action in (ResponseAction.RETRY, ResponseAction.FAIL) and not said_whole:
            named = f"{self._what}: {resolution.error_message}"
            resolution = ErrorResolution(resolution.response_action, resolution.failure_type, named)
        return row, resolution

    def interpret_response(self, answer: Optional[Union[requests.Response, Exception]]) -> ErrorResolution:
        if isinstance(answer, SyncEnded):
            return ErrorResolution(ResponseAction.FAIL, FailureType.transient_error, str(answer))
        row, resolution = self.resolve(answer)
        if row is SERVED and isinstance(answer, requests.Response):
            # Before the CDK's debug log prints the answer: a login's token, users' passwords at any depth.
            register_named(body_of(answer))
            self._session.reachability.reached()
            self.served = True
            sent_token = self._session.token_sent(answer)
            if sent_token:
                self._session.tokens.accepted(sent_token)
            return resolution
        if isinstance(answer, requests.Response) and (
            row is WRONG_CREDENTIALS or (row is REFUSED and self._what == "login")
        ):
            return self._credentials_rejected(answer)
        if row is UNREACHABLE and self._session.reachability.give_up_connecting(resolution.error_message or ""):
            return ErrorResolution(ResponseAction.FAIL, FailureType.transient_error, resolution.error_message)
        return resolution

    def _credentials_rejected(self, answer: requests.Response) -> ErrorResolution:
        """Wrong credentials, as TeleCMI says; where the answer may come from a wrong api_url, it is named too."""
        reason = reason_of(body_of(answer))
        doubt = say(ADDRESS_IN_DOUBT, answer, api_url=self._session.api_url) if address_in_doubt(answer) else ""
        sent_token = self._session.token_sent(answer)
        credentials = self._session.credentials
        also = f", {doubt}" if doubt else ""
        and_url = ", and api_url" if doubt else ""
        if credentials.kind == "app":
            return ErrorResolution(
                ResponseAction.FAIL,
                FailureType.config_error,
                f"TeleCMI rejected the app id and app secret (credentials.app_id, credentials.app_secret: {reason})"
                f"{also}. Check both in the TeleCMI dashboard, that region matches the account's platform{and_url}.",
            )
        if sent_token is None:  # the login itself
            return ErrorResolution(
                ResponseAction.FAIL,
                FailureType.config_error,
                f"TeleCMI refused the login of user {credentials.user_id} ({reason}){also}. Check user_id "
                f"(extension_appid, like 101_1111112) and password{and_url}.",
            )
        self._session.tokens.renew(sent_token, f"{reason}{also}")
        return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, "TeleCMI's token expired: renewed")


class Backoff(BackoffStrategy):
    """Exponential waits for faults, shorter ones for refusals; none before retrying with a renewed token."""

    def backoff_time(
        self,
        response_or_exception: Optional[Union[requests.Response, requests.RequestException]],
        attempt_count: int,
    ) -> Optional[float]:
        answer = response_or_exception
        first = FIRST_BACKOFF_S
        if isinstance(answer, requests.Response):
            row, _ = row_of(answer)  # the row the handler found, without saying its message again
            if row is WRONG_CREDENTIALS:
                return 0.001  # a renewed token: retried at once
            if row is REFUSED:
                first = FIRST_REFUSAL_BACKOFF_S
        wait = min(LONGEST_BACKOFF_S, first * 2 ** max(attempt_count - 1, 0))
        return max(wait * wait_scale(), 0.001)
