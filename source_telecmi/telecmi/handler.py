"""The CDK error handler of every TeleCMI endpoint, and its backoff: where only the handler can act.

Every answer goes through `answers.decide`. The handler renews an expired user token (then RETRY),
retries a refusal like any fault (one that lasts through every retry is `AccessRefused` to the
caller: the stream is skipped), registers secrets an answer carries before the CDK logs it, and
gives up early when TeleCMI cannot be reached at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, Union

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
    NETWORK_FAULTS,
    SERVED,
    Action,
    EndpointMissing,
    address_in_doubt,
    body_of,
    code_of,
    decide,
    message_of,
    network_cause,
    say,
)
from source_telecmi.telecmi.transport import SyncEnded, wait_scale

if TYPE_CHECKING:
    from source_telecmi.telecmi.client import TelecmiApi

FIRST_BACKOFF_S = 5.0
LONGEST_BACKOFF_S = 120.0
# A refusal is retried sooner: a proxy's or a firewall's passing 403 clears in seconds, and a
# refusal that lasts (the account does not have the list) should not hold the sync for minutes.
FIRST_REFUSAL_BACKOFF_S = 1.0


class AnswerHandler(ErrorHandler):
    """The CDK error handler of one endpoint: `answers.decide`, plus what only the handler can do."""

    def __init__(self, api: TelecmiApi, what: str, lacking: Callable[[Any], Optional[str]], max_retries: int) -> None:
        self._api = api
        self._what = what
        self._lacking = lacking
        self._max_retries = max_retries
        self._codes = {**BODY_CODES, **{code: SERVED for code in api.platform.success_codes}}
        self._local = threading.local()  # .refused: the reason of this thread's last answer, if a refusal
        self.served = False  # whether this endpoint ever gave a usable answer

    @property
    def max_retries(self) -> Optional[int]:
        return self._max_retries

    @property
    def max_time(self) -> Optional[int]:
        return None

    def refusal(self) -> Optional[str]:
        """TeleCMI's reason, if the last answer this thread got was a refusal."""
        return getattr(self._local, "refused", None)

    def interpret_response(self, answer: Optional[Union[requests.Response, Exception]]) -> ErrorResolution:
        self._local.refused = None
        if not isinstance(answer, requests.Response):
            return self._network(answer)
        decision = decide(answer, self._lacking, self._codes)
        body = body_of(answer)
        sent_token = getattr(answer.request, "telecmi_token", None)
        if decision.action is Action.OK:
            # Before the CDK's debug log prints the answer: a login's token, users' passwords at any depth.
            register_named(body)
            self._api.answered = True
            self.served = True
            if sent_token:
                self._api.tokens.accepted(sent_token)
            return ErrorResolution(ResponseAction.SUCCESS)
        reason = message_of(body) or f"code {code_of(body)}"
        if decision.action is Action.CREDENTIALS or (decision.action is Action.REFUSED and self._what == "login"):
            doubt = say(ADDRESS_IN_DOUBT, answer, api_url=self._api.api_url) if address_in_doubt(answer) else ""
            return self._credentials_rejected(sent_token, reason, doubt)
        if decision.action is Action.REFUSED:
            self._local.refused = reason
            return ErrorResolution(
                ResponseAction.RETRY, FailureType.transient_error, f"TeleCMI refused {self._what} ({reason})"
            )
        message = say(decision, answer, api_url=self._api.api_url)
        if decision.action is Action.MISSING:
            raise EndpointMissing(message=message, internal_message=message, failure_type=FailureType.config_error)
        if decision.action is Action.RETRY:
            return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, f"{self._what}: {message}")
        failure = FailureType.config_error if decision.action is Action.CONFIG else FailureType.system_error
        return ErrorResolution(ResponseAction.FAIL, failure, f"{self._what}: {message}")

    def _credentials_rejected(self, sent_token: Optional[str], reason: str, doubt: str = "") -> ErrorResolution:
        """Wrong credentials, as TeleCMI says; `doubt` names api_url too where the answer may come from a wrong one."""
        credentials = self._api.credentials
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
        self._api.tokens.renew(sent_token, f"{reason}{also}")
        return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, "TeleCMI's token expired: renewed")

    def _network(self, error: Optional[Exception]) -> ErrorResolution:
        if isinstance(error, SyncEnded):
            return ErrorResolution(ResponseAction.FAIL, FailureType.transient_error, str(error))
        decision = next((d for kind, d in NETWORK_FAULTS if isinstance(error, kind)), NETWORK_FAULTS[-1][1])
        message = say(decision, None, api_url=self._api.api_url, cause=network_cause(error) if error else "no answer")
        if decision.action is Action.CONFIG:
            return ErrorResolution(ResponseAction.FAIL, FailureType.config_error, message)
        if decision.action is Action.UNREACHABLE:
            if self._api.give_up_connecting():
                self._api.transport.unreachable = message
                return ErrorResolution(ResponseAction.FAIL, FailureType.transient_error, message)
            return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, message)
        return ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, f"{self._what}: {message}")


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
            action = decide(answer, lambda body: None).action  # what the handler decided, as it decided it
            if action is Action.CREDENTIALS:
                return 0.001  # a renewed token: retried at once
            if action is Action.REFUSED:
                first = FIRST_REFUSAL_BACKOFF_S
        wait = min(LONGEST_BACKOFF_S, first * 2 ** max(attempt_count - 1, 0))
        return max(wait * wait_scale(), 0.001)
