"""Reading a window exactly once, whatever order pages come in and however TeleCMI shifts them."""

import threading
import time

import pytest
from airbyte_cdk.sources.message import InMemoryMessageRepository

from source_telecmi.streams import CALL_STREAMS, Backlog, PagePartition, PagingError, WindowRead, normalise
from source_telecmi.telecmi import Page
from source_telecmi.timeline import Window

WINDOW = Window(1000, 1999)


def call(i, time=None):
    return {
        "cmiuid": f"c{i:04d}",
        "time": time if time is not None else 1000 + i,
        "to": 919100000000 + i,
        "from": "6500",
    }


class FakeEndpoint:
    """Serves `calls` newest first; `script` may change them between requests."""

    def __init__(self, calls, script=None, ignore_page=False, extra_count=0):
        self.calls = list(calls)
        self.script = script or {}
        self.requests = []
        self.ignore_page = ignore_page
        self.extra_count = extra_count

    def page(self, request_from, request_to, number):
        self.requests.append((request_from, request_to, number))
        change = self.script.pop(len(self.requests), None)
        if change:
            change(self.calls)
        inside = sorted(
            (c for c in self.calls if request_from <= c["time"] <= request_to), key=lambda c: c["time"], reverse=True
        )
        number = 1 if self.ignore_page else number
        return Page(
            count=len(inside) + self.extra_count, records=[dict(c) for c in inside[(number - 1) * 10 : number * 10]]
        )


def read_all(endpoint, order=None):
    first = endpoint.page(WINDOW.request_from, WINDOW.request_to, 1)
    read = WindowRead("calls", WINDOW, first, endpoint, InMemoryMessageRepository(), most_calls=5000)
    numbers = order(read.pages) if order else range(1, read.pages + 1)
    records = []
    for number in numbers:
        partition = PagePartition(read, number, Backlog(10**6))
        records += [r.data for r in partition.read()]
        assert partition.to_slice() == WINDOW.as_slice()
    closes = [PagePartition(read, n, Backlog(10**6)).close_page() for n in range(1, read.pages + 1)]
    assert closes == [False] * (read.pages - 1) + [True]
    return records


def ids(records):
    return sorted(r["cmiuid"] for r in records)


def test_reads_every_call_once_in_any_page_order():
    calls = [call(i) for i in range(35)]
    records = read_all(FakeEndpoint(calls), order=lambda n: [3, 1, 4, 2])
    assert ids(records) == ids(calls)


def test_asks_for_the_window_one_millisecond_wider_and_keeps_only_its_calls():
    calls = [call(0, time=999), call(1, time=1000), call(2, time=1999), call(3, time=2000)]
    endpoint = FakeEndpoint(calls)
    records = read_all(endpoint)
    assert ids(records) == ["c0001", "c0002"]
    assert {(f, t) for f, t, _ in endpoint.requests} == {(999, 2000)}


def test_phone_numbers_become_strings():
    record = normalise({"from": 919200000000, "to": 61400000000, "time": "1654182968809"})
    assert record == {"from": "919200000000", "to": "61400000000", "time": 1654182968809}
    assert normalise({"from": "101_1", "to": None}) == {"from": "101_1", "to": None}


def test_a_call_arriving_between_pages_makes_the_window_read_again_without_repeats():
    calls = [call(i) for i in range(25)]
    late = call(900, time=1990)  # newest: shifts every later page by one
    endpoint = FakeEndpoint(calls, script={2: lambda cs: cs.append(late)})
    records = read_all(endpoint)
    assert ids(records) == ids(calls + [late])
    assert len(records) == len({r["cmiuid"] for r in records})
    assert len(endpoint.requests) > 3  # the window was read a second time


def test_a_page_that_repeats_another_fails_clearly():
    calls = [call(i) for i in range(25)]
    with pytest.raises(PagingError, match="repeats"):
        read_all(FakeEndpoint(calls, ignore_page=True))


def test_a_count_that_overstates_stops_at_the_short_page():
    calls = [call(i) for i in range(25)]
    endpoint = FakeEndpoint(calls, extra_count=1000)  # 103 pages claimed, 3 real
    first = endpoint.page(WINDOW.request_from, WINDOW.request_to, 1)
    read = WindowRead("calls", WINDOW, first, endpoint, InMemoryMessageRepository(), most_calls=5000)
    records = []
    for number in range(1, read.pages + 1):
        records += [r.data for r in PagePartition(read, number, Backlog(10**6)).read()]
    assert ids(records) == ids(calls)
    assert len(endpoint.requests) < 15  # pages past the short page are never asked for


def test_a_count_that_never_settles_fails_after_bounded_rereads():
    calls = [call(i) for i in range(25)]
    script = {n: (lambda cs, n=n: cs.append(call(500 + n, time=1500))) for n in range(2, 200)}
    endpoint = FakeEndpoint(calls, script=script)
    with pytest.raises(PagingError, match="kept changing"):
        read_all(endpoint)
    assert len(endpoint.requests) < 40


def test_an_empty_window_still_has_one_partition_that_closes_it():
    assert read_all(FakeEndpoint([])) == []


def test_streams_are_rows_with_a_resolved_schema():
    for stream in CALL_STREAMS:
        schema = stream.schema()
        assert stream.path.startswith("/v2/user/")
        assert "$ref" not in str(schema)
        assert schema["properties"]["notes"]["items"]["properties"]["agent"]["type"] == ["null", "string"]
        assert "additionalProperties" not in schema


def test_backlog_holds_probing_until_pages_are_read():
    backlog = Backlog(most_pages=5, patience_s=5)
    backlog.add(8)
    prober = threading.Thread(target=backlog.wait_for_room)
    started = time.monotonic()
    prober.start()
    time.sleep(0.05)
    assert prober.is_alive(), "probing waits while 8 pages are unread"
    for _ in range(3):
        backlog.done()
    prober.join(timeout=10)
    assert not prober.is_alive()
    assert time.monotonic() - started < 4, "room came from pages being read, not from running out of patience"


def test_backlog_never_blocks_probing_forever_when_nothing_is_read():
    backlog = Backlog(most_pages=5, patience_s=0.2)
    backlog.add(10)
    started = time.monotonic()
    backlog.wait_for_room()
    assert time.monotonic() - started >= 0.2
