"""Asking TeleCMI: one API object per sync, the CDK error handler of each endpoint, and a page of a list.

Every answer goes through `answers.resolve` to a row of its tables. Two rows end here, after the
CDK's client is done: a refusal that lasted through every retry is `AccessRefused`, and a path
that is not there (an answer the handler had the CDK ignore) is `EndpointMissing`. Either way
the stream is skipped. The handlers see this API only through its `Session`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Optional

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.exceptions import BaseBackoffException
from airbyte_cdk.sources.streams.http.http_client import HttpClient
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.secrets import register_secret
from source_telecmi.telecmi.answers import ENDPOINT_MISSING, REFUSED, AccessRefused, EndpointMissing
from source_telecmi.telecmi.body import as_count, body_of, reason_of
from source_telecmi.telecmi.credentials import Credentials, TokenKeeper
from source_telecmi.telecmi.files import FileFetcher
from source_telecmi.telecmi.handler import AnswerHandler, Backoff
from source_telecmi.telecmi.pacing import Pacer
from source_telecmi.telecmi.page import Page
from source_telecmi.telecmi.platforms import ANALYSIS, LOGIN_PATH, ListRow, Path, Platform
from source_telecmi.telecmi.session import Reachability, Session, wait_scale
from source_telecmi.telecmi.transport import Transport, request_timeout_s

MAX_RETRIES = 5
CHECK_MAX_RETRIES = 2


class TelecmiApi:
    """Everything the connector asks TeleCMI, over one transport shared by every worker of a sync."""

    def __init__(
        self,
        api_url: str,
        platform: Platform,
        credentials: Credentials,
        num_workers: int,
        logger: logging.Logger,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.platform = platform
        self.credentials = credentials
        self._logger = logger
        self._max_retries = max_retries
        self.pacer = Pacer(num_workers, logger, wait_scale=wait_scale())
        self.reachability = Reachability(wait_scale)
        self.transport = Transport(self.pacer, self.api_url, request_timeout_s(), self.reachability)
        self.tokens = TokenKeeper(credentials, self._log_in)
        self.session = Session(
            api_url=self.api_url,
            credentials=credentials,
            tokens=self.tokens,
            success_codes=platform.success_codes,
            reachability=self.reachability,
            token_sent=self.transport.token_sent,
        )
        self._login = self._client("login", _needs_token)

    def _client(self, what: str, lacking: Callable[[Any], Optional[str]]) -> tuple[HttpClient, AnswerHandler]:
        handler = AnswerHandler(self.session, what, lacking, self._max_retries)
        client = HttpClient(
            name=what,
            logger=self._logger,
            error_handler=handler,
            session=self.transport,
            backoff_strategy=Backoff(),
        )
        return client, handler

    def _sign(self, url: str, fields: Mapping[str, str]) -> None:
        """Requests to `url` carry these credential fields, read when sent (a token may have been renewed)."""

        def fill() -> dict[str, Any]:
            return {
                name: self.tokens.current() if what == "token" else getattr(self.credentials, what)
                for name, what in fields.items()
            }

        self.transport.sign(url, fill, next((name for name, what in fields.items() if what == "token"), None))

    def end(self, why: str) -> None:
        """The sync is over: no further request goes out."""
        self.transport.end(why)

    def _log_in(self) -> str:
        url = self.api_url + LOGIN_PATH
        self.transport.sign(url, lambda: {"id": self.credentials.user_id, "password": self.credentials.password})
        client, handler = self._login
        answer = post(client, handler, url, {})
        token = str(answer["token"])
        register_secret(token)
        self._logger.info("Logged in to TeleCMI as user %s", self.credentials.user_id)
        return token

    def sign_in(self) -> None:
        """Verify credentials that can be verified without reading anything (a login): once per sync."""
        if self.credentials.kind == "login":
            self.tokens.current()

    def endpoints(self, row: ListRow) -> list[ListEndpoint]:
        """The endpoints serving `row` on this platform, to try in order; empty if the platform lacks it."""
        endpoints = []
        for path in row.on(self.platform.name):
            url = self.api_url + path.path
            self._sign(url, path.credentials or self.platform.credentials)
            count_field = path.count_field or self.platform.count_field
            lacking = listing(row.items, count_field, row.count_required) if row.items else needing(row.fields)
            client, handler = self._client(row.stream, lacking)
            endpoints.append(
                ListEndpoint(client, handler, url, path, row, count_field, self.platform.window_fields, self.transport)
            )
        return endpoints

    def file_fetcher(self, row: ListRow) -> Optional[FileFetcher]:
        """What fetches the files of `row` (its path: play) on this platform; None if the platform has none."""
        paths = row.on(self.platform.name)
        if not paths:
            return None
        fields = paths[0].credentials or self.platform.credentials

        def fill() -> dict[str, Any]:
            return {name: getattr(self.credentials, what) for name, what in fields.items() if what != "token"}

        return FileFetcher(self.transport, self.api_url + paths[0].path, fill, request_timeout_s(), self._max_retries)

    def prove_app_credentials(self, first: int, last: int) -> None:
        """One cheap request that proves an app id and secret: the account's call totals for a window."""
        path = ANALYSIS[self.platform.name]
        url = self.api_url + path.path
        self._sign(url, self.platform.credentials)
        client, handler = self._client("check", lambda body: None)
        first_field, last_field = self.platform.window_fields
        post(client, handler, url, {first_field: first, last_field: last})


def post(client: HttpClient, handler: AnswerHandler, url: str, body: Mapping[str, Any]) -> Any:
    """POST `body` to `url` through the CDK's client: TeleCMI's answer, read.

    A refusal through every retry is `AccessRefused`, with TeleCMI's reason: the CDK gives up
    while handling the backoff exception of the last attempt, which carries the last answer.
    A path that is not there is `EndpointMissing`, once the CDK handed the ignored answer back.
    """
    try:
        _, response = client.send_request("POST", url, request_kwargs={}, json=dict(body))
    except AirbyteTracedException as error:
        last = error.__context__
        if isinstance(last, BaseBackoffException) and isinstance(last.response, requests.Response):
            row, _ = handler.resolve(last.response)
            if row is REFUSED:
                raise AccessRefused(reason_of(body_of(last.response))) from None
        raise
    row, resolution = handler.resolve(response)
    if row is ENDPOINT_MISSING:
        message = resolution.error_message
        raise EndpointMissing(message=message, internal_message=message, failure_type=FailureType.config_error)
    return body_of(response)


def _needs_token(body: Mapping[str, Any]) -> Optional[str]:
    return None if isinstance(body.get("token"), str) and body["token"] else "a token"


def listing(items: str, count_field: str, count_required: bool = True) -> Callable[[Mapping[str, Any]], Optional[str]]:
    """What a page of a list lacks, if anything: a list of objects under `items`, and the count.

    An empty page may come without its list (`{"count": 0}`).
    """

    def lacking(body: Mapping[str, Any]) -> Optional[str]:
        found, count = body.get(items), as_count(body.get(count_field))
        if count is None and count_required:
            return f"the field '{count_field}' (how many records the range holds)"
        if found is None:
            return None if count == 0 or (count is None and not count_required) else f"the list '{items}'"
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            return f"a list of records under '{items}'"
        return None

    return lacking


def needing(fields: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Optional[str]]:
    """What an answer that is one record (totals, a balance) lacks, if anything: each of `fields`."""

    def lacking(body: Mapping[str, Any]) -> Optional[str]:
        missing = [name for name in fields if body.get(name) is None]
        return (
            None
            if not missing
            else "the field" + ("s " if len(missing) > 1 else " ") + ", ".join(f"'{name}'" for name in missing)
        )

    return lacking


class ListEndpoint:
    """One path serving a list: a page of it, for a time range or for the whole list."""

    def __init__(
        self,
        http: HttpClient,
        handler: AnswerHandler,
        url: str,
        path: Path,
        row: ListRow,
        count_field: str,
        window_fields: tuple[str, str],
        transport: Optional[Transport] = None,
    ) -> None:
        self._http = http
        self._handler = handler
        self.url = url
        self.path = path.path
        self.largest_page = path.page_size
        self.row = row
        self._count_field = count_field
        self._window_fields = window_fields
        self._transport = transport

    @property
    def served(self) -> bool:
        """Whether TeleCMI ever gave this endpoint a usable answer in this sync (a later refusal is a fault)."""
        return self._handler.served

    def ask(self, span: Optional[tuple[int, int]] = None) -> dict[str, Any]:
        """The answer for the records from span[0] to span[1] ms (as sent), or with no range: one record's fields."""
        body: dict[str, Any] = {}
        if span is not None:
            body[self._window_fields[0]], body[self._window_fields[1]] = span
        return post(self._http, self._handler, self.url, body)

    def page(self, number: int, limit: int, span: Optional[tuple[int, int]] = None) -> Page:
        """Page `number` of `limit` records, of the calls from span[0] to span[1] ms (as sent) or of the whole list."""
        body: dict[str, Any] = {"page": number, "limit": limit}
        if span is not None:
            body[self._window_fields[0]], body[self._window_fields[1]] = span
        before = self._transport.sent_here() if self._transport else 0
        answer = post(self._http, self._handler, self.url, body)
        sent = self._transport.sent_here() - before if self._transport else 1
        records = answer.get(self.row.items) or []
        return Page(count=as_count(answer.get(self._count_field)), records=records, sent=max(1, sent))
