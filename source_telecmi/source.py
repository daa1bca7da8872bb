"""The source: spec, check, the catalog, and the wiring of streams into the CDK's concurrent reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from queue import Queue
from typing import Any, Optional

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteStateMessage,
    AirbyteStream,
    ConfiguredAirbyteCatalog,
    Status,
    SyncMode,
)
from airbyte_cdk.sources.concurrent_source.concurrent_source import ConcurrentSource
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository, MessageRepository
from airbyte_cdk.sources.message.concurrent_repository import ConcurrentMessageRepository
from airbyte_cdk.sources.source import Source
from airbyte_cdk.sources.streams.concurrent.cursor import Cursor, FinalStateCursor
from airbyte_cdk.sources.utils.slice_logger import DebugSliceLogger
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.streams import (
    CALL_STREAMS,
    CURSOR_FIELD,
    PRIMARY_KEY,
    CallStream,
    WindowPartitions,
    build_stream,
)
from source_telecmi.telecmi import CHECK_MAX_RETRIES, PAGE_SIZE, AccessRefused, TelecmiApi, one_line
from source_telecmi.timeline import WindowCursor, WindowPlanner, check_window, ranges_to_read

QUEUE_SIZE = 10_000


def planner_for(num_workers: int) -> WindowPlanner:
    """Windows big enough to keep every worker busy, small enough to checkpoint often."""
    target_pages = max(4 * num_workers, 50)
    return WindowPlanner(target_calls=target_pages * PAGE_SIZE, most_calls=max(5_000, 4 * target_pages * PAGE_SIZE))


def reason_of(error: BaseException) -> str:
    """A one-line reason for a failure, for check and for logs."""
    if isinstance(error, AirbyteTracedException):
        message = error.message or error.internal_message or repr(error)
        cause = getattr(error, "_exception", None)
        if message.startswith("Exhausted available request attempts") and cause is not None:
            message = f"TeleCMI did not give a usable answer after retries: {cause}"
        return one_line(message)
    return one_line(f"{type(error).__name__}: {error}")


class SourceTelecmi(Source):
    """Airbyte source for TeleCMI's call records."""

    def __init__(self) -> None:
        self._message_repository: MessageRepository = InMemoryMessageRepository()

    @property
    def message_repository(self) -> MessageRepository:
        return self._message_repository

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Log in or use the token, and ask for one page of the last day: FAILED with a one-line reason, never raises."""
        try:
            settings = TelecmiConfig.parse(config)
            api = TelecmiApi(
                settings.api_url, settings.credentials, settings.num_workers, logger, max_retries=CHECK_MAX_RETRIES
            )
            window = check_window(settings.start, settings.end)
            refusals = []
            for stream in CALL_STREAMS:
                try:
                    api.endpoint(stream.name, stream.path).page(window.request_from, window.request_to, 1)
                    return AirbyteConnectionStatus(status=Status.SUCCEEDED)
                except AccessRefused as refused:
                    refusals.append(f"{stream.name}: {refused}")
            return AirbyteConnectionStatus(
                status=Status.FAILED,
                message=one_line(
                    "TeleCMI refuses every call-record endpoint to this user (" + "; ".join(refusals) + ")"
                ),
            )
        except Exception as error:  # noqa: BLE001 - check reports every failure, it never raises
            return AirbyteConnectionStatus(status=Status.FAILED, message=reason_of(error))

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        return AirbyteCatalog(streams=[catalog_entry(stream) for stream in CALL_STREAMS])

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
        api = TelecmiApi(settings.api_url, settings.credentials, settings.num_workers, logger)
        by_name = {stream.name: stream for stream in CALL_STREAMS}
        streams = []
        for configured in catalog.streams:
            stream = by_name.get(configured.stream.name)
            if stream is None:
                raise ConfigError(
                    f"The catalog asks for stream {configured.stream.name!r}, which this source does not have "
                    f"(it has {', '.join(by_name)})"
                )
            cursor, ranges = self._cursor_and_ranges(stream, configured.sync_mode, settings, state_manager, messages)
            endpoint = api.endpoint(stream.name, stream.path)
            partitions = WindowPartitions(stream, endpoint, ranges, planner_for(settings.num_workers), messages)
            streams.append(build_stream(stream, partitions, cursor, logger))
        if not streams:
            return
        concurrent = ConcurrentSource.create(
            num_workers=settings.num_workers + 1,  # one thread probes windows, the others read pages
            initial_number_of_partitions_to_generate=1,
            logger=logger,
            slice_logger=DebugSliceLogger(),
            message_repository=messages,
            queue=queue,
        )
        yield from concurrent.read(streams)

    @staticmethod
    def _cursor_and_ranges(
        stream: CallStream,
        sync_mode: SyncMode,
        settings: TelecmiConfig,
        state_manager: ConnectorStateManager,
        messages: MessageRepository,
    ) -> tuple[Cursor, Any]:
        if sync_mode != SyncMode.incremental:
            full = [(settings.start, settings.end)]
            return FinalStateCursor(stream.name, None, messages), lambda: full
        cursor = WindowCursor(
            stream.name,
            state_manager.get_stream_state(stream.name, None),
            messages,
            state_manager,
            start=settings.start,
            end=settings.end,
            cursor_field=CURSOR_FIELD,
        )
        return cursor, lambda: ranges_to_read(cursor.finished(), settings.start, settings.end, settings.lookback_ms)


def catalog_entry(stream: CallStream) -> AirbyteStream:
    """How a stream appears in the catalog: full refresh and incremental on `time`, keyed by `cmiuid`."""
    return AirbyteStream(
        name=stream.name,
        json_schema=stream.schema(),
        supported_sync_modes=[SyncMode.full_refresh, SyncMode.incremental],
        source_defined_cursor=True,
        default_cursor_field=[CURSOR_FIELD],
        source_defined_primary_key=[[PRIMARY_KEY]],
        is_resumable=True,
    )
