"""The source: spec, check, the catalog, and the wiring of streams into the CDK's concurrent reader."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from queue import Queue
from typing import Any, Optional

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteStateMessage,
    ConfiguredAirbyteCatalog,
    Status,
    SyncMode,
)
from airbyte_cdk.sources.concurrent_source.concurrent_source import ConcurrentSource
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository, MessageRepository
from airbyte_cdk.sources.message.concurrent_repository import ConcurrentMessageRepository
from airbyte_cdk.sources.source import Source
from airbyte_cdk.sources.streams.concurrent.cursor import FinalStateCursor
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.utils.slice_logger import DebugSliceLogger
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.streams import (
    CALL_KEY,
    CALL_STREAMS,
    CURSOR_FIELD,
    USERS,
    USERS_KEY,
    CallStream,
    UsersPartitions,
    build_stream,
    call_instant,
    shape_call,
    users_schema,
)
from source_telecmi.telecmi import CHECK_MAX_RETRIES, AccessRefused, EndpointMissing, TelecmiApi, one_line
from source_telecmi.timeline import WindowCursor, WindowPlanner, check_window, ranges_to_read, readable_state
from source_telecmi.windows import StreamReader, WindowPartitions

QUEUE_SIZE = 10_000


def planner_for(num_workers: int, page_size: int) -> WindowPlanner:
    """Windows big enough to keep every worker busy, small enough to checkpoint often."""
    target_pages = max(4 * num_workers, 50)
    return WindowPlanner(target_calls=target_pages * page_size, most_calls=max(5_000, 4 * target_pages * page_size))


def reason_of(error: BaseException) -> str:
    """A one-line reason for a failure, for check and for logs."""
    if isinstance(error, AirbyteTracedException):
        message = error.message or error.internal_message or repr(error)
        cause = getattr(error, "_exception", None)
        if message.startswith("Exhausted available request attempts") and cause is not None:
            message = f"TeleCMI did not give a usable answer after retries: {cause}"
        return one_line(message)
    return one_line(f"{type(error).__name__}: {error}")


def ranges_for(cursor: Optional[WindowCursor], settings: TelecmiConfig) -> Callable[[], list[tuple[int, int]]]:
    """What a sync reads: the whole range, or (incremental) what the state has not finished, less the lookback."""
    if cursor is None:
        return lambda: [(settings.start, settings.end)]
    return lambda: ranges_to_read(cursor.finished(), settings.start, settings.end, settings.lookback_ms)


def api_of(settings: TelecmiConfig, logger: logging.Logger, **options: Any) -> TelecmiApi:
    return TelecmiApi(settings.api_url, settings.region, settings.credentials, settings.num_workers, logger, **options)


class SourceTelecmi(Source):
    """Airbyte source for TeleCMI's call records and users."""

    def __init__(self) -> None:
        self._message_repository: MessageRepository = InMemoryMessageRepository()

    @property
    def message_repository(self) -> MessageRepository:
        return self._message_repository

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """One cheap request that proves the credentials: FAILED with a one-line reason, never raises."""
        try:
            settings = TelecmiConfig.parse(config)
            api = api_of(settings, logger, max_retries=CHECK_MAX_RETRIES)
            window = check_window(settings.start, settings.end)
            if settings.credentials.kind == "app" and settings.region == "global":
                try:
                    api.prove_app_credentials(window.first, window.last)
                    return AirbyteConnectionStatus(status=Status.SUCCEEDED)
                except EndpointMissing:
                    logger.info("TeleCMI has no /v2/analysis here: proving the credentials with a page of calls")
            refusals = []
            for stream in CALL_STREAMS:
                endpoint = api.calls(stream.name, stream.paths[api.call_api.name])
                try:
                    endpoint.page(window.request_from, window.request_to, 1, 1)
                    return AirbyteConnectionStatus(status=Status.SUCCEEDED)
                except AccessRefused as refused:
                    refusals.append(f"{stream.name}: {refused}")
            return AirbyteConnectionStatus(
                status=Status.FAILED,
                message=one_line(
                    "TeleCMI refuses every call-record endpoint to these credentials (" + "; ".join(refusals) + ")"
                ),
            )
        except Exception as error:  # noqa: BLE001 - check reports every failure, it never raises
            return AirbyteConnectionStatus(status=Status.FAILED, message=reason_of(error))

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        settings = TelecmiConfig.parse(config)
        return AirbyteCatalog(streams=[s.as_airbyte_stream() for s in self._streams(settings, logger)])

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: Optional[list[AirbyteStateMessage]] = None,
    ) -> Iterator[AirbyteMessage]:
        settings = TelecmiConfig.parse(config)
        queue: Queue[Any] = Queue(maxsize=QUEUE_SIZE)
        messages = ConcurrentMessageRepository(queue, InMemoryMessageRepository())
        self._message_repository = messages
        state_manager = ConnectorStateManager(state=state)
        api = api_of(settings, logger)
        wanted = {c.stream.name: c.sync_mode for c in catalog.streams}
        streams = self._streams(settings, logger, api, wanted, state_manager, messages)
        unknown = set(wanted) - {s.name for s in streams}
        if unknown:
            raise ConfigError(
                f"The catalog asks for {', '.join(sorted(unknown))}, which this source does not have with these "
                f"credentials (it has {', '.join(s.name for s in self._streams(settings, logger))}; users needs "
                "the app id and secret)"
            )
        if not streams:
            return
        api.sign_in()  # wrong login credentials fail here, once, not in every stream
        concurrent = ConcurrentSource.create(
            num_workers=settings.num_workers + 1,  # one thread probes windows, the others read pages
            initial_number_of_partitions_to_generate=1,
            logger=logger,
            slice_logger=DebugSliceLogger(),
            message_repository=messages,
            queue=queue,
        )
        yield from concurrent.read(streams)

    def _streams(
        self,
        settings: TelecmiConfig,
        logger: logging.Logger,
        api: Optional[TelecmiApi] = None,
        wanted: Optional[Mapping[str, SyncMode]] = None,
        state_manager: Optional[ConnectorStateManager] = None,
        messages: Optional[MessageRepository] = None,
    ) -> list[DefaultStream]:
        """The streams these credentials can read; with `api`, only those in `wanted`, wired to read."""
        api = api or api_of(settings, logger)
        messages = messages or self._message_repository
        streams = []
        for stream in CALL_STREAMS:
            if wanted is not None and stream.name not in wanted:
                continue
            endpoint = api.calls(stream.name, stream.paths[api.call_api.name])
            reader = StreamReader(stream.name, endpoint, shape_call(stream), call_instant, logger)
            partitions: Any = None
            cursor: Any = FinalStateCursor(stream.name, None, messages)
            if wanted is not None:
                incremental = wanted[stream.name] == SyncMode.incremental
                if incremental:
                    cursor = self._cursor(stream, settings, state_manager, messages)
                ranges = ranges_for(cursor if incremental else None, settings)
                planner = planner_for(settings.num_workers, reader.page_size.largest)
                expect = cursor.expect if incremental else None
                partitions = WindowPartitions(reader, ranges, planner, messages, expect)
            streams.append(
                build_stream(stream.name, stream.schema(), partitions, cursor, logger, CALL_KEY, CURSOR_FIELD)
            )
        user_lists = api.user_lists()
        if user_lists and (wanted is None or USERS in wanted):
            cursor = FinalStateCursor(USERS, None, messages)
            streams.append(
                build_stream(
                    USERS, users_schema(), UsersPartitions(user_lists, logger), cursor, logger, USERS_KEY, None
                )
            )
        return streams

    @staticmethod
    def _cursor(
        stream: CallStream,
        settings: TelecmiConfig,
        state_manager: Optional[ConnectorStateManager],
        messages: MessageRepository,
    ) -> WindowCursor:
        assert state_manager is not None
        try:
            saved = readable_state(stream.name, state_manager.get_stream_state(stream.name, None))
        except ValueError as unreadable:
            raise ConfigError(str(unreadable)) from None
        return WindowCursor(
            stream.name,
            saved,
            messages,
            state_manager,
            start=settings.start,
            end=settings.end,
            cursor_field=CURSOR_FIELD,
        )
