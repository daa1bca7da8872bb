"""The state of a windowed stream: the CDK's concurrent date-range state in epoch ms, and its cursor.

Reading a saved state, with a config error saying a reset fixes it, is `saved_state.py`."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Optional

from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.message import MessageRepository
from airbyte_cdk.sources.streams.concurrent.cursor import ConcurrentCursor, CursorField
from airbyte_cdk.sources.streams.concurrent.partitions.partition import Partition
from airbyte_cdk.sources.streams.concurrent.state_converters.abstract_stream_state_converter import (
    ConcurrencyCompatibleStateType,
)
from airbyte_cdk.sources.streams.concurrent.state_converters.incrementing_count_stream_state_converter import (
    IncrementingCountStreamStateConverter,
)
from airbyte_cdk.sources.types import Record

from source_telecmi.saved_state import PENDING, TRAIL
from source_telecmi.telecmi.memory import PACING
from source_telecmi.timeline.instants import DAY_MS, Window
from source_telecmi.timeline.resuming import Trail, lookback_point

# At most this many windows are kept in the trail (a lookback of years in busy windows would need more; the
# newest are kept).
MOST_TRAIL_WINDOWS = 2000


class MillisecondStateConverter(IncrementingCountStreamStateConverter):
    """The CDK's converter of an integer cursor (its values, zero, increment), for epoch milliseconds.

    The state is the CDK's concurrent form, `{"state_type": "date-range", "slices": [{"start",
    "end", "most_recent_cursor_value"}]}`, all epoch ms, so windows finished out of order are all
    remembered. A legacy state `{"time": <epoch ms>}` (every call up to that instant read) is read
    too.
    """

    def __init__(self) -> None:
        super().__init__(is_sequential_state=False)

    def _from_state_message(self, value: Any) -> Any:
        return int(value)

    def _to_state_message(self, value: Any) -> Any:
        return int(value)

    def serialize(self, state: MutableMapping[str, Any], state_type: ConcurrencyCompatibleStateType) -> Any:
        serialized = super().serialize(state, state_type)
        for kept in (TRAIL, PENDING, PACING):  # the CDK keeps only the slices
            if state.get(kept) is not None:
                serialized[kept] = copy.deepcopy(state[kept])
        return serialized

    def convert_from_sequential_state(  # date ranges (windows finished out of order), not the CDK's integer state
        self, cursor_field: CursorField, stream_state: MutableMapping[str, Any], start: Optional[Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        sync_start = int(start) if start is not None else 0
        # A marker just before the start: it claims no call, and merges with the first window.
        slices: list[dict[str, Any]] = [{self.START_KEY: sync_start - 1, self.END_KEY: sync_start - 1}]
        legacy = stream_state.get(cursor_field.cursor_field_key) if stream_state else None
        if legacy is not None:
            newest = int(legacy)
            if newest >= sync_start:
                slices = [
                    {
                        self.START_KEY: sync_start - 1,
                        self.END_KEY: newest,
                        self.MOST_RECENT_RECORD_KEY: newest,
                    }
                ]
        return sync_start, {
            "state_type": ConcurrencyCompatibleStateType.date_range.value,
            "slices": slices,
        }


def finished_ranges(state: MutableMapping[str, Any]) -> list[tuple[int, int, Optional[int]]]:
    """The merged finished ranges of a state in the converter's concurrent form."""
    converter = MillisecondStateConverter()
    merged = converter.merge_intervals([dict(s) for s in state.get("slices", [])])
    return [
        (
            int(s[converter.START_KEY]),
            int(s[converter.END_KEY]),
            int(s[converter.MOST_RECENT_RECORD_KEY]) if s.get(converter.MOST_RECENT_RECORD_KEY) is not None else None,
        )
        for s in merged
    ]


def trail_of(saved: Optional[Mapping[str, Any]], audit_landed_at: Optional[int]) -> Optional[Trail]:
    """The audit trail of a saved state (None for a state without one: 0.3's), given the synced_at (epoch ms) of the
    newest audit known to have reached the warehouse (None: not known, so every sync's is taken to have)."""
    if saved is None:
        return None
    landed = audit_landed_at is None or saved["synced_at"] is None or saved["synced_at"] <= audit_landed_at
    return Trail(
        windows=tuple(sorted((int(a), int(b)) for a, b in saved["windows"])),
        read_from=saved.get("read_from"),
        until=saved.get("until"),
        landed=landed,
    )


class WindowCursor(ConcurrentCursor):
    """The CDK's concurrent cursor, told that several partitions (pages) make one window.

    A window is recorded as done only when the last of its pages closes, so a checkpoint never
    covers a window with a page still unread, whatever order the pages finish in.

    With `synced_at` (the sync's own, epoch ms), each state also holds the sync's audit trail
    (`TRAIL`): the windows it read to their end, and where it began reading again windows audited
    before it; the next sync reads again from the start of a window, never from its middle
    (`trail`, `timeline.Trail`). `audit_landed_at` is the synced_at of the newest `sync_audit` the
    platform kept (its state), to tell a sync killed before printing its audit. With `pacing`, each
    state also holds what the sync learned of TeleCMI's rate limit (`PACING`, `telecmi.memory`), as
    `pacing()` says at the checkpoint (None: nothing, the key goes).
    """

    def __init__(
        self,
        stream_name: str,
        stream_state: MutableMapping[str, Any],
        message_repository: MessageRepository,
        state_manager: ConnectorStateManager,
        start: int,
        end: int,
        cursor_field: str = "time",
        lookback_ms: int = 0,
        synced_at: Optional[int] = None,
        audit_landed_at: Optional[int] = None,
        pacing: Optional[Callable[[], Optional[dict[str, Any]]]] = None,
    ) -> None:
        saved = stream_state.get(TRAIL) if stream_state else None
        # Keys kept beside the CDK's slices, each read anew at every checkpoint (None: the key goes).
        self._beside: dict[str, Callable[[], Optional[Any]]] = {PACING: pacing} if pacing is not None else {}
        super().__init__(
            stream_name=stream_name,
            stream_namespace=None,
            stream_state=stream_state,
            message_repository=message_repository,
            connector_state_manager=state_manager,
            connector_state_converter=MillisecondStateConverter(),
            cursor_field=CursorField(cursor_field),
            slice_boundary_fields=("start", "end"),
            start=start,
            end_provider=lambda: end,
            cursor_granularity=1,
        )
        self._observe_lock = threading.Lock()

        self._pages: dict[tuple[int, int], int] = {}
        self.trail = trail_of(saved, audit_landed_at)
        self._lookback_ms = lookback_ms
        if synced_at is not None:
            finished = self.finished()
            self._concurrent_state[TRAIL] = {
                "synced_at": synced_at,
                "read_from": None,
                "until": finished[-1][1] if finished else None,
                "windows": [],
            }

    def _emit_state_message(self) -> None:
        for key, read in self._beside.items():
            value = read()
            if value is None:
                self._concurrent_state.pop(key, None)
            else:
                self._concurrent_state[key] = value
        super()._emit_state_message()

    def reading(self, ranges: list[tuple[int, int]]) -> None:
        """The ranges this sync reads: where the last begins, if it reads again what was read before, goes in the trail."""
        record = self._concurrent_state.get(TRAIL)
        if record is None or not ranges:
            return
        with self._lock:
            until = record["until"]
            record["read_from"] = ranges[-1][0] if until is not None and ranges[-1][0] <= until else None

    def _add_slice_to_state(self, partition: Partition) -> None:
        # Called by the CDK under its lock, before the state is merged and emitted: the window joins the trail.
        super()._add_slice_to_state(partition)
        record = self._concurrent_state.get(TRAIL)
        bounds = partition.to_slice() or {}
        if record is None or bounds.get("start") is None or bounds.get("end") is None:
            return
        windows = [*record["windows"], [int(bounds["start"]), int(bounds["end"])]]
        point = lookback_point(self.finished(), self._lookback_ms)
        horizon = point - DAY_MS - 1 if point is not None else None
        read_from, until = record["read_from"], record["until"]

        def kept(window: list[int]) -> bool:
            again = read_from is not None and until is not None and window[0] <= until and window[1] >= read_from
            return again or horizon is None or window[1] >= horizon

        record["windows"] = sorted(w for w in windows if kept(w))[-MOST_TRAIL_WINDOWS:]

    def observe(self, record: Record) -> None:
        # Pages of one window share a slice key and are read in parallel threads.
        with self._observe_lock:
            super().observe(record)

    def expect(self, window: Window, pages: int) -> None:
        """The window is read in `pages` partitions: it is done when the last of them closes."""
        with self._observe_lock:
            self._pages[(window.first, window.last)] = pages

    def close_partition(self, partition: Partition) -> None:
        bounds = partition.to_slice() or {}
        key = (bounds.get("start"), bounds.get("end"))
        with self._observe_lock:
            left = self._pages.get(key, 1) - 1  # type: ignore[call-overload]
            self._pages[key] = left  # type: ignore[index]
            if left == 0:
                self._pages.pop(key, None)  # type: ignore[arg-type]
        if left == 0:
            super().close_partition(partition)
        closed = getattr(partition, "closed", None)  # after the state: what waits for the window to be done
        if closed is not None:
            closed()

    def finished(self) -> list[tuple[int, int, Optional[int]]]:
        """The ranges the state says are finished, merged."""
        return finished_ranges(self.state)


class FileCursor(WindowCursor):
    """The cursor of a stream of files: a window cursor whose state also keeps the files still pending
    (`PENDING`, from `pending()` at each checkpoint); the retry of pending files, a partition without a
    window, checkpoints them when it closes."""

    def __init__(self, *args: Any, pending: Callable[[], dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._beside[PENDING] = pending
        self._concurrent_state[PENDING] = pending()

    def close_partition(self, partition: Partition) -> None:
        if partition.to_slice() is None:
            with self._lock:
                self._emit_state_message()
            return
        super().close_partition(partition)
