"""The streams, as rows: a name, a schema, and the endpoint that serves it for each of TeleCMI's APIs.

Adding an endpoint or a platform is adding a path to a row (the APIs themselves are rows of
`telecmi.CALL_APIS`). Records are TeleCMI's, with a few fields made usable in a warehouse.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.concurrent.cursor import Cursor, CursorField
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.streams.concurrent.partitions.partition_generator import PartitionGenerator
from airbyte_cdk.sources.types import Record
from airbyte_cdk.sources.utils.schema_helpers import ResourceSchemaLoader
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi import AccessRefused, EndpointMissing, Page, UserListEndpoint, secret_named
from source_telecmi.timeline import instant_of, iso_ms
from source_telecmi.windows import PageSize, fingerprint

CALL_KEY = "cmiuid"
CURSOR_FIELD = "time"
USERS = "users"
USERS_KEY = "agent_id"
# Phone numbers are identifiers: TeleCMI sends some as JSON numbers, the schemas say strings.
PHONE_FIELDS = ("from", "to")


@dataclass(frozen=True)
class CallStream:
    """One kind of call record, named `<direction>_<status>_calls`, and its path on each API (`telecmi.CALL_APIS`)."""

    name: str
    paths: Mapping[str, str]

    @property
    def direction(self) -> str:
        return self.name.split("_")[0]

    @property
    def status(self) -> str:
        return self.name.split("_")[1]

    def schema(self) -> dict[str, Any]:
        return ResourceSchemaLoader("source_telecmi").get_schema(self.name)


CALL_STREAMS: tuple[CallStream, ...] = (
    CallStream(
        "incoming_answered_calls", {"user": "/v2/user/answered", "account": "/v2/answered", "india": "/v1/answered"}
    ),
    CallStream("incoming_missed_calls", {"user": "/v2/user/missed", "account": "/v2/missed", "india": "/v1/missed"}),
    CallStream(
        "outgoing_answered_calls",
        {"user": "/v2/user/out_answered", "account": "/v2/out_answered", "india": "/v1/outanswered"},
    ),
    CallStream(
        "outgoing_missed_calls", {"user": "/v2/user/out_missed", "account": "/v2/out_missed", "india": "/v1/outmissed"}
    ),
)


def call_instant(record: Mapping[str, Any]) -> Optional[int]:
    """When a call was made, in epoch ms, whatever form TeleCMI sent `time` in."""
    return instant_of(record.get(CURSOR_FIELD))


def shape_call(stream: CallStream) -> Callable[[dict[str, Any], Optional[int]], dict[str, Any]]:
    """The function that makes a TeleCMI call record warehouse-ready for `stream`."""

    def shape(record: dict[str, Any], instant: Optional[int]) -> dict[str, Any]:
        out = dict(record)
        for field in PHONE_FIELDS:
            value = out.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[field] = str(int(value)) if float(value).is_integer() else str(value)
        if out.get(CALL_KEY) is None and out.get("_id") is not None:
            out[CALL_KEY] = str(out["_id"])  # India's id, so every platform keys on cmiuid
        rate = out.get("rate")
        if isinstance(rate, str):
            with contextlib.suppress(ValueError):  # else kept as TeleCMI sent it; the schema allows a string
                out["rate"] = float(rate)
        out[CURSOR_FIELD] = instant
        out["started_at"] = iso_ms(instant) if instant is not None else None
        out["direction"] = stream.direction
        out["status"] = stream.status
        return out

    return shape


def build_stream(
    name: str,
    json_schema: Mapping[str, Any],
    partitions: PartitionGenerator,
    cursor: Cursor,
    logger: logging.Logger,
    primary_key: str,
    cursor_field: Optional[str],
) -> DefaultStream:
    """A concurrent CDK stream."""
    return DefaultStream(
        partition_generator=partitions,
        name=name,
        json_schema=dict(json_schema),
        primary_key=[primary_key],
        cursor_field=CursorField(cursor_field) if cursor_field else None,
        logger=logger,
        cursor=cursor,
    )


# ------------------------------------------------------------------------------------------- users


def users_schema() -> dict[str, Any]:
    return ResourceSchemaLoader("source_telecmi").get_schema(USERS)


def without_secrets(user: Mapping[str, Any]) -> dict[str, Any]:
    """A user as TeleCMI sent it, less its password (and anything else named like a secret)."""
    return {k: v for k, v in user.items() if not secret_named(k)}


class UsersPartition(Partition):
    """The whole list of users: one partition, read page after page."""

    def __init__(self, endpoints: list[UserListEndpoint], logger: logging.Logger) -> None:
        self._endpoints = endpoints
        self._logger = logger

    def read(self) -> Iterable[Record]:
        for number, endpoint in enumerate(self._endpoints, 1):
            try:
                for user in read_user_list(endpoint, self._logger):
                    yield Record(data=without_secrets(user), stream_name=USERS, associated_slice=None)
                return
            except EndpointMissing:
                if number == len(self._endpoints):
                    raise
                self._logger.info(
                    "TeleCMI has no %s here; reading the users from %s", endpoint.url, self._endpoints[number].url
                )
            except AccessRefused as refused:
                self._logger.warning(
                    "Stream users skipped: TeleCMI refuses %s to these credentials (%s).", endpoint.url, refused
                )
                return

    def to_slice(self) -> Optional[Mapping[str, Any]]:
        return None

    def stream_name(self) -> str:
        return USERS

    def __hash__(self) -> int:
        return hash(USERS)


class UsersPartitions(PartitionGenerator):
    def __init__(self, endpoints: list[UserListEndpoint], logger: logging.Logger) -> None:
        self._partition = UsersPartition(endpoints, logger)

    def generate(self) -> Iterable[Partition]:
        yield self._partition


def read_user_list(endpoint: UserListEndpoint, logger: logging.Logger) -> list[dict[str, Any]]:
    """Every user of the list, each once: pages until TeleCMI's count is reached, read again if it is not."""
    page_size = PageSize(endpoint.largest_page, USERS, logger)
    reads: list[dict[bytes, dict[str, Any]]] = []
    count = 0
    for _ in range(2):
        found: dict[bytes, dict[str, Any]] = {}
        number = 1
        while True:
            asked = page_size.size
            page: Page = endpoint.page(number, asked)
            page_size.learn(asked, page, number)
            count = page.count
            fresh = {fingerprint(u): u for u in page.records}
            if not fresh or set(fresh) <= set(found):
                break
            found.update(fresh)
            if len(found) >= count or number * page_size.size >= count:
                break
            number += 1
        reads.append(found)
        union = {k: v for read in reads for k, v in read.items()}
        if len(union) >= count:
            return list(union.values())
    if set(reads[0]) == set(reads[1]):
        logger.warning(
            "Stream users: TeleCMI counts %d users but two complete reads return the same %d: its count is wrong; "
            "the users read are emitted.",
            count,
            len(reads[0]),
        )
        return list(reads[0].values())
    raise AirbyteTracedException(
        message=f"Stream users: TeleCMI counts {count} users but its pages return {len(reads[0])} and then "
        f"{len(reads[1])} different ones. The sync stops rather than emit an incomplete list.",
        failure_type=FailureType.system_error,
    )
