"""The CDK partitions of a list: a partition per page of each window, one for a whole list, and skipped lists."""

import threading
import time

import pytest
from airbyte_cdk.models import FailureType, Type
from airbyte_cdk.sources.message import InMemoryMessageRepository
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from test_windows import STREAM, T0, FakeEndpoint, FakeUserList, assert_exactly_once, call, lister_of, spread, user

from source_telecmi.engine.ledger import PagingError
from source_telecmi.engine.partitions import (
    Backlog,
    FullRefreshWindows,
    OnePartition,
    PagePartition,
    WholeListPartition,
    WindowPartitions,
)
from source_telecmi.engine.reading import Lister
from source_telecmi.engine.refusals import Skipped
from source_telecmi.engine.window_read import WindowRead
from source_telecmi.records import Conformer
from source_telecmi.shaping import schema_of, shaper
from source_telecmi.telecmi.answers import AccessRefused, EndpointMissing
from source_telecmi.telecmi.page import Page
from source_telecmi.telecmi.platforms import USERS_LIST
from source_telecmi.timeline.instants import Window
from source_telecmi.timeline.planning import WindowPlanner

DAY = 86_400_000


def partitions_of(endpoint, log, ranges, expected=None, skipped=None, planner=None):
    messages = InMemoryMessageRepository()
    generator = WindowPartitions(
        lister_of(endpoint, log),
        lambda: ranges,
        planner or WindowPlanner(target_calls=500, most_calls=5000),
        messages,
        skipped if skipped is not None else Skipped(),
        (lambda window, pages: expected.append((window, pages))) if expected is not None else None,
    )
    return list(generator.generate()), list(messages.consume_queue())


# ------------------------------------------------------------------------------------ window partitions


def test_a_partition_per_page_and_the_cursor_told_how_many(log):
    expected = []
    calls = spread(45, step=1000)
    partitions, messages = partitions_of(FakeEndpoint(calls), log, [(T0, T0 + DAY - 1)], expected)
    assert expected == [(Window(T0, T0 + DAY - 1), 5)]
    assert len(partitions) == 5
    records = [r.data for p in partitions for r in p.read()]
    assert_exactly_once(records, calls)
    estimates = [m.trace.estimate.row_estimate for m in messages if m.type == Type.TRACE]
    assert estimates == [45]
    assert {m.trace.estimate.name for m in messages} == {STREAM}


def test_partitions_name_their_stream_window_and_page(log):
    partitions, _ = partitions_of(FakeEndpoint(spread(15, step=1000)), log, [(T0, T0 + DAY - 1)])
    first, second = partitions
    assert first.stream_name() == STREAM
    assert first.to_slice() == Window(T0, T0 + DAY - 1).as_slice() == second.to_slice()
    assert "page 1/2" in repr(first) and "page 2/2" in repr(second) and STREAM in repr(first)
    assert hash(first) != hash(second)


def test_records_carry_their_stream_and_the_windows_slice(log):
    partitions, _ = partitions_of(FakeEndpoint(spread(3)), log, [(T0, T0 + 999)])
    (record,) = list(partitions[0].read())[:1]
    assert record.stream_name == STREAM
    assert record.associated_slice == Window(T0, T0 + 999).as_slice()


def test_windows_cover_every_range_given(log):
    expected = []
    calls = spread(10, step=1000) + spread(10, first=T0 + 5 * DAY, step=1000)
    ranges = [(T0, T0 + DAY - 1), (T0 + 5 * DAY, T0 + 6 * DAY - 1)]
    partitions, messages = partitions_of(FakeEndpoint(calls), log, ranges, expected)
    assert [window for window, _ in expected] == [Window(*r) for r in ranges]
    assert_exactly_once([r.data for p in partitions for r in p.read()], calls)
    assert [m.trace.estimate.row_estimate for m in messages] == [20, 20]


def test_the_estimate_extrapolates_from_the_windows_probed_so_far(log):
    calls = spread(10, step=1000)
    _, messages = partitions_of(FakeEndpoint(calls), log, [(T0, T0 + 4 * DAY - 1)])
    estimates = [m.trace.estimate.row_estimate for m in messages]
    assert estimates[0] == 40  # 10 calls in the first day of four
    assert estimates[-1] == 10


def test_no_estimate_of_0_before_a_call_is_counted_and_0_at_the_end_of_an_empty_list(log):
    calls = spread(10, first=T0 + 3 * DAY, step=1000)  # the first three days hold nothing
    ranges = [(T0 + d * DAY, T0 + (d + 1) * DAY - 1) for d in range(4)]
    _, messages = partitions_of(FakeEndpoint(calls), log, ranges)
    estimates = [m.trace.estimate.row_estimate for m in messages]
    assert estimates and estimates[0] > 0, estimates
    _, messages = partitions_of(FakeEndpoint([]), log, ranges)
    assert [m.trace.estimate.row_estimate for m in messages] == [0]


def test_the_last_page_of_a_window_to_finish_settles_it(log):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, short_page={3: 3})
    partitions, _ = partitions_of(endpoint, log, [(T0, T0 + 999)])
    records = []
    for partition in reversed(partitions):  # any order
        records += [r.data for r in partition.read()]
    assert_exactly_once(records, calls)
    assert any("read 42 of the 45 records" in m for m in log.warnings())


def test_a_window_too_big_is_split_before_its_pages_are_handed_out(log):
    calls = spread(400, step=100)
    expected = []
    generator = WindowPartitions(
        lister_of(FakeEndpoint(calls), log),
        lambda: [(T0, T0 + DAY - 1)],
        WindowPlanner(target_calls=100, most_calls=150),
        InMemoryMessageRepository(),
        Skipped(),
        lambda window, pages: expected.append((window, pages)),
    )
    # Pages read as they are handed out, as the CDK's workers do: probing waits for them (the backlog).
    records = [r.data for partition in generator.generate() for r in partition.read()]
    assert_exactly_once(records, calls)
    assert all(pages * 10 <= 150 for _, pages in expected)
    windows = [window for window, _ in expected]
    assert windows[0].first == T0 and windows[-1].last == T0 + DAY - 1
    assert all(a.last + 1 == b.first for a, b in zip(windows, windows[1:], strict=False))


def test_a_millisecond_with_more_calls_than_a_window_may_hold_ends_the_sync(log):
    class Crowded(FakeEndpoint):
        def page(self, number, limit, span=None):
            return Page(50_000, [call(k, at=T0) for k in range(10)])

    with pytest.raises(PagingError, match="in one millisecond"):
        partitions_of(Crowded([]), log, [(T0, T0)])


def test_pages_read_in_full_refresh_hand_on_the_windows_audit_once_the_last_closed(log):
    audits = []
    calls = spread(15, step=1000)
    messages = InMemoryMessageRepository()
    lister = lister_of(FakeEndpoint(calls), log, audits.append)
    generator = WindowPartitions(
        lister, lambda: [(T0, T0 + DAY - 1)], WindowPlanner(500, 5000), messages, Skipped(), None
    )
    cursor = FullRefreshWindows(STREAM, None, messages)
    first, second = generator.generate()
    for partition in (first, second):
        list(partition.read())
    cursor.close_partition(first)
    assert audits == []
    cursor.close_partition(second)
    (audit,) = audits
    assert (audit.records_emitted, audit.verdict) == (15, "complete")
    cursor.close_partition(WholeListPartition([], Skipped()))  # a partition with no pages to tell: nothing


# ------------------------------------------------------------------------------------------ refusals


class Refusing(FakeEndpoint):
    """Serves `serve` pages, then refuses every request through every retry."""

    def __init__(self, calls, serve=0, **options):
        super().__init__(calls, **options)
        self.pages_served = 0
        self._serve = serve

    def page(self, number, limit, span=None):
        if self.pages_served >= self._serve:
            raise AccessRefused("Not enabled for this account")
        self.pages_served += 1
        return super().page(number, limit, span)


def test_a_stream_refused_on_its_first_request_is_skipped_with_a_warning(log):
    skipped = Skipped()
    partitions, _ = partitions_of(Refusing([]), log, [(T0, T0 + 999)], skipped=skipped)
    assert partitions == []
    assert skipped.reasons == {STREAM: "Not enabled for this account"}
    warning = next(m for m in log.warnings() if "skipped" in m)
    assert STREAM in warning and "INCOMPLETE" in warning and "Not enabled" in warning and "/v2/answered" in warning


def test_a_stream_refused_after_it_served_fails_rather_than_skips(log):
    skipped = Skipped()
    calls = spread(5, step=1000) + spread(5, first=T0 + DAY, step=1000)
    with pytest.raises(AirbyteTracedException) as error:
        partitions_of(Refusing(calls, serve=1), log, [(T0, T0 + 2 * DAY - 1)], skipped=skipped)
    assert not isinstance(error.value, AccessRefused)
    assert error.value.failure_type == FailureType.transient_error
    assert STREAM in error.value.message and "after serving it" in error.value.message
    assert skipped.reasons == {}


def test_a_refusal_while_probing_after_page_one_was_served_fails_rather_than_skips(log):
    skipped = Skipped()
    endpoint = Refusing(spread(45, step=5), serve=1)  # page 1 served; the probe then asks for page 5
    planner = WindowPlanner(target_calls=10, most_calls=5000)  # 45 calls is far above what was expected
    with pytest.raises(AirbyteTracedException, match="after serving it"):
        partitions_of(endpoint, log, [(T0, T0 + 999)], skipped=skipped, planner=planner)
    assert skipped.reasons == {}


def test_a_page_refused_after_the_probe_fails_the_stream(log):
    endpoint = Refusing(spread(45, step=5), serve=2)  # the probe reads pages 1 and 5
    partitions, _ = partitions_of(endpoint, log, [(T0, T0 + 999)])
    with pytest.raises(AirbyteTracedException) as error:
        for partition in partitions:
            list(partition.read())
    assert not isinstance(error.value, AccessRefused)
    assert "after serving it" in error.value.message and "Not enabled" in error.value.message


def test_skipped_keeps_the_first_reason_of_each_stream():
    skipped = Skipped()
    skipped.add("users", "first")
    skipped.add("users", "second")
    skipped.add("calls", "other")
    assert skipped.reasons == {"users": "first", "calls": "other"}


# ------------------------------------------------------------------------------------------ whole lists


def users_lister(endpoint, log):
    shape = shaper(USERS_LIST, Conformer("users", schema_of("users")))
    return Lister("users", endpoint, shape, lambda record: None, log.logger)


class Missing(FakeUserList):
    def page(self, number, limit, span=None):
        self.requests.append((number, limit))
        raise EndpointMissing(message=f"TeleCMI has no endpoint {self.path}")


class RefusedUsers(FakeUserList):
    def __init__(self, users, serve=0, **options):
        super().__init__(users, **options)
        self._serve = serve

    def page(self, number, limit, span=None):
        if len(self.requests) >= self._serve:
            raise AccessRefused("not allowed")
        return super().page(number, limit, span)


def read_users(endpoints, log, skipped=None):
    partition = WholeListPartition([users_lister(e, log) for e in endpoints], skipped or Skipped())
    assert partition.stream_name() == "users" and partition.to_slice() is None
    return list(partition.read())


def test_users_come_from_the_next_list_when_the_first_is_missing_and_never_carry_a_password(log):
    users = [user(n, extension=100 + n) for n in range(3)]
    v2 = FakeUserList(users, largest_page=10)
    v2.path = "/v2/user/list"
    records = read_users([Missing([]), v2], log)
    assert sorted(r.data["agent_id"] for r in records) == sorted(u["agent_id"] for u in users)
    assert all("password" not in r.data for r in records)
    assert all(r.stream_name == "users" and r.associated_slice is None for r in records)
    assert [r.data["extension"] for r in records] == ["100", "101", "102"]
    assert any("TeleCMI has no /v3/user/list here; reading users from /v2/user/list" in m for m in log.messages())


def test_users_fail_when_no_list_is_there(log):
    with pytest.raises(EndpointMissing):
        read_users([Missing([]), Missing([])], log)


def test_users_refused_are_skipped_with_a_warning(log):
    skipped = Skipped()
    assert read_users([RefusedUsers([])], log, skipped) == []
    assert skipped.reasons == {"users": "not allowed"}
    assert any("users skipped" in m and "INCOMPLETE" in m and "not allowed" in m for m in log.warnings())


def test_users_refused_after_serving_fail_rather_than_skip(log):
    skipped = Skipped()
    users = [user(n) for n in range(45)]
    with pytest.raises(AirbyteTracedException) as error:
        read_users([RefusedUsers(users, serve=1)], log, skipped)
    assert not isinstance(error.value, AccessRefused)
    assert error.value.failure_type == FailureType.transient_error
    assert "users" in error.value.message and "after serving it" in error.value.message
    assert skipped.reasons == {}


def test_one_partition_hands_out_its_partition():
    partition = WholeListPartition([], Skipped())
    assert list(OnePartition(partition).generate()) == [partition]


# ---------------------------------------------------------------------------------------------- backlog


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


def test_a_page_read_makes_room_even_when_it_fails(log):
    backlog = Backlog(most_pages=0, patience_s=5)
    lister = lister_of(Refusing(spread(45, step=5), serve=2), log)
    window = Window(T0, T0 + 999)
    read = WindowRead(lister, window, lister.probe(window, most_calls=5000))
    backlog.add(1)
    with pytest.raises(AirbyteTracedException):
        list(PagePartition(read, 2, backlog).read())
    started = time.monotonic()
    backlog.wait_for_room()
    assert time.monotonic() - started < 1
