"""The source: spec, check, the catalog, and the wiring of streams into the CDK's concurrent reader.

Streams are read one at a time, each with the full concurrency (windows and pages in parallel):
a stream's records, its states and its final status come out together, then the next stream's.
Some destinations write only the state's stream on each STATE and drop the rest of their buffer,
so interleaved streams lose rows there; one stream at a time costs only each stream's last pages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from queue import Queue
from typing import Any, Optional

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteStateMessage,
    AirbyteStreamStatus,
    ConfiguredAirbyteCatalog,
    Status,
    TraceType,
    Type,
)
from airbyte_cdk.sources.concurrent_source.concurrent_source import ConcurrentSource
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import InMemoryMessageRepository, MessageRepository
from airbyte_cdk.sources.message.concurrent_repository import ConcurrentMessageRepository
from airbyte_cdk.sources.source import Source
from airbyte_cdk.sources.streams.concurrent.default_stream import DefaultStream
from airbyte_cdk.sources.utils.slice_logger import DebugSliceLogger
from airbyte_cdk.utils.stream_status_utils import as_airbyte_message as stream_status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.changes import RecordQueue, take_changes
from source_telecmi.config import ConfigError, TelecmiConfig, upgraded
from source_telecmi.engine.audit import SYNC_AUDIT, Audit
from source_telecmi.engine.refusals import Skipped
from source_telecmi.records import Conformer
from source_telecmi.saved_state import learned_pacing, only_stream_states, unreadable_state
from source_telecmi.secrets import one_line
from source_telecmi.streams import Wiring, audit_stream, declared
from source_telecmi.telecmi.answers import AccessRefused, EndpointMissing
from source_telecmi.telecmi.client import CHECK_MAX_RETRIES, TelecmiApi
from source_telecmi.telecmi.pacing_log import summary as pacing_summary
from source_telecmi.telecmi.platforms import CALL_LISTS, LISTS, ListRow
from source_telecmi.timeline.instants import check_window, now_ms

QUEUE_SIZE = 10_000
STREAMS_AT_ONCE_ENV = "SOURCE_TELECMI_STREAMS_AT_ONCE"


class SyncFailed(AirbyteTracedException):
    """A stream failed: its error is already reported; the sync ends now, with no further request."""

    reported = True


def reason_of(error: BaseException) -> str:
    """A one-line reason for a failure, for check and for logs."""
    if isinstance(error, AirbyteTracedException):
        message = error.message or error.internal_message or repr(error)
        cause = getattr(error, "_exception", None)
        if message.startswith("Exhausted available request attempts") and cause is not None:
            message = f"TeleCMI did not give a usable answer after retries: {cause}"
        return one_line(message)
    return one_line(f"{type(error).__name__}: {error}")


def api_of(settings: TelecmiConfig, logger: logging.Logger, **options: Any) -> TelecmiApi:
    return TelecmiApi(
        settings.api_url, settings.platform, settings.credentials, settings.num_workers, logger, **options
    )


def rows_for(settings: TelecmiConfig) -> list[ListRow]:
    """The lists these credentials can read on their platform."""
    return [row for row in LISTS if row.on(settings.platform.name)]


class SourceTelecmi(Source):
    """Airbyte source for TeleCMI's call records and users."""

    def __init__(self) -> None:
        self._message_repository: MessageRepository = InMemoryMessageRepository()

    @property
    def message_repository(self) -> MessageRepository:
        return self._message_repository

    @classmethod
    def read_state(cls, state_path: str) -> list[AirbyteStateMessage]:
        """The saved state: the per-stream states this connector writes, or a config error saying a reset fixes it."""
        if not state_path:
            return []

        try:
            saved = cls._read_json_file(state_path)
        except Exception as error:  # noqa: BLE001 - any unreadable file means the same to the user
            raise unreadable_state(f"it is not JSON ({type(error).__name__})") from None
        if not saved:
            return []
        if not isinstance(saved, list):
            raise unreadable_state(f"it is a JSON {type(saved).__name__}, not the list of state messages Airbyte sends")
        try:
            states = super().read_state(state_path)
        except Exception as error:  # noqa: BLE001
            raise unreadable_state(one_line(str(error), 200)) from None
        return only_stream_states(states)

    def configure(self, config: Mapping[str, Any], temp_dir: str) -> Mapping[str, Any]:
        """The config as the spec types it, before anything validates it: an older integer app id as digits."""
        return super().configure(upgraded(config), temp_dir)

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """One cheap request that proves the credentials: FAILED with a one-line reason, never raises."""
        try:
            settings = TelecmiConfig.parse(config)
            api = api_of(settings, logger, max_retries=CHECK_MAX_RETRIES)
            window = check_window(settings.start, settings.end)
            if settings.credentials.kind == "app":
                try:
                    api.prove_app_credentials(window.first, window.last)
                    return AirbyteConnectionStatus(status=Status.SUCCEEDED)
                except (EndpointMissing, AccessRefused):  # refused: the credentials are right, the totals not theirs
                    logger.info("TeleCMI gives no call totals here: proving the credentials with a page of calls")
            refusals = []
            for row in CALL_LISTS:
                (endpoint, *_) = api.endpoints(row)
                try:
                    endpoint.page(1, 1, (window.request_from, window.request_to))
                    return AirbyteConnectionStatus(status=Status.SUCCEEDED)
                except AccessRefused as refused:
                    refusals.append(f"{row.stream}: {refused}")
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
        streams = [declared(row, logger) for row in rows_for(settings)]
        return AirbyteCatalog(streams=[s.as_airbyte_stream() for s in [*streams, audit_stream(logger)]])

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: Optional[list[AirbyteStateMessage]] = None,
    ) -> Iterator[AirbyteMessage]:
        settings = TelecmiConfig.parse(config)
        queue: Queue[Any] = RecordQueue(maxsize=QUEUE_SIZE)  # a record's changes reach its meta (records.py)
        messages = ConcurrentMessageRepository(queue, InMemoryMessageRepository())
        self._message_repository = messages
        state_manager = ConnectorStateManager(state=state)
        wanted = {c.stream.name: c.sync_mode for c in catalog.streams}
        rows = rows_for(settings)
        unknown = set(wanted) - {row.stream for row in rows} - {SYNC_AUDIT}
        if unknown:
            raise ConfigError(
                f"The catalog asks for {', '.join(sorted(unknown))}, which this source does not have with these "
                f"credentials (it has {', '.join(row.stream for row in rows)}; users and recordings need the app id and secret)"
            )
        api = api_of(settings, logger)
        saved = ((name, state_manager.get_stream_state(name, None)) for name in wanted)
        api.pacer.resume(learned_pacing(saved, now_ms(), logger))  # what earlier syncs learned of the rate limit
        skipped = Skipped()
        audit = Audit(messages)
        conformers: dict[str, Conformer] = {}  # per stream: what could not be converted to its schema
        files = frozenset(c.stream.name for c in catalog.streams if getattr(c, "include_files", None))
        wiring = Wiring(
            settings, logger, api, state_manager, messages, skipped, audit, conformers, SYNC_AUDIT in wanted, files, {}
        )
        streams = [wiring.wired(row, wanted[row.stream]) for row in rows if row.stream in wanted]
        if not streams and SYNC_AUDIT not in wanted:
            return
        api.sign_in()  # wrong login credentials fail here, once, not in every stream
        # The bench compares one stream at a time with 0.2's interleaved read of all streams at once.
        batches = [streams] if os.environ.get(STREAMS_AT_ONCE_ENV) == "1" else [[stream] for stream in streams]
        failed: Optional[SyncFailed] = None
        try:
            for batch in batches:
                paced = api.pacer.snapshot()
                try:
                    yield from self._read_one(batch, settings, logger, messages, queue, skipped, audit)
                except SyncFailed as error:
                    failed = error
                    break
                for stream in batch:
                    for line in conformers[stream.name].report():
                        logger.warning("Stream %s: %s", stream.name, line)
                    summary = audit.summary(stream.name)
                    if summary:
                        logger.info(summary)
                    if stream.name in wiring.after:
                        for line in wiring.after[stream.name].warnings():
                            logger.warning(line)
                        logger.info(wiring.after[stream.name].summary())
                logger.info(pacing_summary([s.name for s in batch], paced, api.pacer.snapshot()))
            api.end("the sync failed" if failed else "the sync is over")
            if SYNC_AUDIT in wanted:  # after the streams it audits; if the sync failed, the windows it completed
                yield from audit.messages(audit_stream(logger).as_airbyte_stream())
        finally:
            api.end("the sync is over")
            for delivered in wiring.after.values():
                delivered.close()
        if failed is not None:
            raise failed

    def _read_one(
        self,
        streams: list[DefaultStream],
        settings: TelecmiConfig,
        logger: logging.Logger,
        messages: MessageRepository,
        queue: Queue[Any],
        skipped: Skipped,
        audit: Audit,
    ) -> Iterator[AirbyteMessage]:
        """One stream, with every worker; its final status says INCOMPLETE where TeleCMI refused it."""
        concurrent = ConcurrentSource.create(
            num_workers=settings.num_workers + 1,  # one thread probes windows, the others read pages
            initial_number_of_partitions_to_generate=1,
            logger=logger,
            slice_logger=DebugSliceLogger(),
            message_repository=messages,
            queue=queue,
        )
        by_name = {stream.name: stream for stream in streams}
        for message in concurrent.read(list(streams)):
            take_changes(message)  # a RECORD's changes, carried in its data, become its meta.changes
            if audit.take(message):
                continue
            if message.type == Type.TRACE and message.trace.type == TraceType.ERROR:
                yield message
                failed = message.trace.error.stream_descriptor
                for stream in streams if failed is None or failed.name not in by_name else [by_name[failed.name]]:
                    yield stream_status(stream.as_airbyte_stream(), AirbyteStreamStatus.INCOMPLETE)
                error = message.trace.error
                raise SyncFailed(
                    message=error.message,
                    internal_message=error.internal_message,
                    failure_type=error.failure_type,
                )
            name = _status_of(message)
            if name is not None and name in skipped.reasons:
                yield stream_status(by_name[name].as_airbyte_stream(), AirbyteStreamStatus.INCOMPLETE)
                continue
            yield message


def _status_of(message: AirbyteMessage) -> Optional[str]:
    """The stream a COMPLETE status message is about, if it is one."""
    if message.type == Type.TRACE and message.trace.type == TraceType.STREAM_STATUS:
        status = message.trace.stream_status
        if status.status == AirbyteStreamStatus.COMPLETE:
            return status.stream_descriptor.name
    return None
