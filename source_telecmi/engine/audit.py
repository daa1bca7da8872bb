"""The sync's audit: the engine's own ledger of every window it read to its end, as the `sync_audit` stream.

A window's row is taken only once the window is done on stdout: its last page closed and (for an
incremental stream) its state emitted, which the CDK does from a worker thread ahead of the main
thread's printing. So the window's row waits in the message queue as a marker behind its records
and its state, and is taken when the main thread reaches it (`take`): a sync that fails emits rows
for the windows it completed, never for the others. It costs no request.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

from airbyte_cdk.models import (
    AirbyteLogMessage,
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateBlob,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStream,
    AirbyteStreamState,
    AirbyteStreamStatus,
    Level,
    StreamDescriptor,
    Type,
)
from airbyte_cdk.sources.message import MessageRepository
from airbyte_cdk.utils.stream_status_utils import as_airbyte_message as stream_status

from source_telecmi.engine.ledger import WindowAudit
from source_telecmi.timeline.instants import iso_ms, now_ms

SYNC_AUDIT = "sync_audit"
AUDIT_KEY = ("sync_id", "stream", "window_start")
AUDIT_CURSOR = "synced_at"


class Audit:
    """The audit rows of one sync, per stream, in the order their windows were done on stdout."""

    def __init__(self, messages: MessageRepository) -> None:
        self.sync_id = str(uuid.uuid4())
        self.synced_at = iso_ms(now_ms())
        self._messages = messages
        self._marks: dict[int, WindowAudit] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def window_done(self, done: WindowAudit) -> None:
        """A window's last page closed (its state, if any, is queued): queue its row behind them."""
        marker = AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=Level.DEBUG, message="window done"))
        with self._lock:
            self._marks[id(marker)] = done
        self._messages.emit_message(marker)

    def take(self, message: AirbyteMessage) -> bool:
        """Whether `message` is a window's marker (then its row is taken, and the message is not printed)."""
        with self._lock:
            done = self._marks.pop(id(message), None)
        if done is None:
            return False
        self._rows.setdefault(done.stream, []).append(self.row(done))
        return True

    def row(self, done: WindowAudit) -> dict[str, Any]:
        return {
            "sync_id": self.sync_id,
            "synced_at": self.synced_at,
            "stream": done.stream,
            "window_start": done.window.first,
            "window_end": done.window.last,
            "window_start_at": iso_ms(done.window.first),
            "window_end_at": iso_ms(done.window.last),
            "telecmi_count": done.telecmi_count,
            "calls_read": done.calls_read,
            "records_emitted": done.records_emitted,
            "requests": done.requests,
            "verdict": done.verdict,
            "shortfall": done.shortfall,
            "files_downloaded": done.files_downloaded,
            "files_pending": done.files_pending,
        }

    def rows(self, stream: Optional[str] = None) -> list[dict[str, Any]]:
        if stream is not None:
            return list(self._rows.get(stream, []))
        return [row for rows in self._rows.values() for row in rows]

    def summary(self, stream: str) -> Optional[str]:
        """One line on a windowed stream: windows, records, and whether every window was complete."""
        rows = self._rows.get(stream)
        if rows is None:
            return None
        records = sum(r["records_emitted"] for r in rows)
        short = [r for r in rows if r["verdict"] != "complete"]
        if not short:
            return f"Stream {stream}: {len(rows)} windows, {records} records, every window complete"
        worst = ", ".join(
            f"{r['window_start_at']} .. {r['window_end_at']} short by {r['shortfall']}" for r in short[:5]
        )
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        return (
            f"Stream {stream}: {len(rows)} windows, {records} records; {len(short)} windows where TeleCMI's count is "
            f"wrong (proven by repeated reads): {worst}{more}"
        )

    def messages(self, stream: AirbyteStream) -> Iterator[AirbyteMessage]:
        """The `sync_audit` stream of this sync: its status, a record per window, its state, its end."""
        yield stream_status(stream, AirbyteStreamStatus.STARTED)
        rows = self.rows()
        if rows:
            yield stream_status(stream, AirbyteStreamStatus.RUNNING)
        emitted_at = int(time.time() * 1000)
        for row in rows:
            yield AirbyteMessage(
                type=Type.RECORD, record=AirbyteRecordMessage(stream=SYNC_AUDIT, data=row, emitted_at=emitted_at)
            )
        yield AirbyteMessage(
            type=Type.STATE,
            state=AirbyteStateMessage(
                type=AirbyteStateType.STREAM,
                stream=AirbyteStreamState(
                    stream_descriptor=StreamDescriptor(name=SYNC_AUDIT),
                    stream_state=AirbyteStateBlob(**{AUDIT_CURSOR: self.synced_at}),
                ),
            ),
        )
        yield stream_status(stream, AirbyteStreamStatus.COMPLETE)
