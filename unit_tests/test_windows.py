"""Reading a window of calls exactly once, whatever TeleCMI's paging does."""

import math
import random
import threading
import time
from types import SimpleNamespace

import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.sources.message import InMemoryMessageRepository

from source_telecmi.telecmi import AccessRefused, Page
from source_telecmi.timeline import Window, WindowPlanner, instant_of
from source_telecmi.windows import (
    LEAST_REREAD_REQUESTS,
    REREAD_REQUESTS_PER_PAGE,
    Backlog,
    PagePartition,
    PageSize,
    PagingError,
    StreamReader,
    WindowPartitions,
    WindowRead,
    calls_in,
    fingerprint,
    page_size_of,
    split,
)

T0 = 1764547200000  # 2025-12-01T00:00:00Z
WINDOW = Window(T0, T0 + 999)
STREAM = "incoming_answered_calls"


def call(i, at=None, **fields):
    return {"cmiuid": f"c{i:04d}", "time": T0 + i if at is None else at, "to": 919100000000 + i, **fields}


def spread(n, first=T0, step=1):
    return [call(i, at=first + i * step) for i in range(n)]


class FakeEndpoint:
    """TeleCMI's paging over a list of calls: LIMIT/OFFSET over the calls of [from, to] sorted by time.

    Options simulate what TeleCMI has been seen doing: serving at most `cap` calls a page whatever
    `limit` asks; calls that share a millisecond in a fresh order on every request; a count off
    by `extra_count`; a page shorter than it should be (`short_page`: page number -> calls dropped,
    once); and answers that are a random part of what they should be, forever (`subsets`).
    """

    path = "/v2/answered"

    def __init__(
        self,
        calls,
        largest_page=10,
        cap=None,
        shuffle_ties=False,
        extra_count=0,
        short_page=None,
        subsets=False,
        seed=0,
        most_requests=20_000,
    ):
        self.calls = list(calls)
        self.call_api = SimpleNamespace(largest_page=largest_page)
        self.requests = []
        self._cap = cap
        self._shuffle_ties = shuffle_ties
        self._extra_count = extra_count
        self._short_page = dict(short_page or {})
        self._subsets = subsets
        self._random = random.Random(seed)
        self._most_requests = most_requests
        self._lock = threading.Lock()

    def page(self, request_from, request_to, number, limit):
        with self._lock:
            self.requests.append((request_from, request_to, number, limit))
            assert len(self.requests) <= self._most_requests, "the reader never stops asking"
            inside = [c for c in self.calls if request_from <= c["time"] <= request_to]
            ties = [self._random.random() if self._shuffle_ties else n for n in range(len(inside))]
            ordered = [
                c
                for _, _, c in sorted(zip([c["time"] for c in inside], ties, inside, strict=True), key=lambda x: x[:2])
            ]
            size = min(limit, self._cap or limit)
            records = ordered[(number - 1) * size : number * size]
            drop = self._short_page.pop(number, 0)
            if drop:
                records = records[:-drop]
            if self._subsets:
                records = [r for r in records if self._random.random() < 0.5]
            return Page(count=len(inside) + self._extra_count, records=[dict(r) for r in records])

    def limits(self):
        return [limit for *_, limit in self.requests]


def shape(record, instant):
    return {**record, "time": instant}


def reader_of(endpoint, log):
    return StreamReader(STREAM, endpoint, shape, lambda r: instant_of(r.get("time")), log.logger)


def read_window(reader, window=WINDOW, order=None):
    """What the CDK does with a window's partitions: read each page (in any order); the last to finish settles it."""
    probe = reader.probe(window, most_calls=5000)
    read = WindowRead(reader, window, probe)
    numbers = list(range(1, read.pages + 1))
    if order is not None:
        random.Random(order).shuffle(numbers)
    records = []
    for number in numbers:
        partition = PagePartition(read, number, Backlog(10**6))
        assert partition.to_slice() == window.as_slice()
        assert partition.stream_name() == STREAM
        records += [r.data for r in partition.read()]
    return records


def ids(records):
    return sorted(r["cmiuid"] for r in records)


def assert_exactly_once(records, calls):
    assert ids(records) == ids(calls)
    assert len({fingerprint(r) for r in records}) == len(records)


# ---------------------------------------------------------------------------------- small functions


@pytest.mark.parametrize(
    "served, count, asked, learned, size",
    [
        (10, 45, 20, 20, 10),  # 10 served when 20 asked, and more follow: TeleCMI serves 10
        (10, 10, 20, 20, 20),  # a page holding every call of the window says nothing about the size
        (20, 45, 20, 20, 20),
        (0, 45, 20, 10, 10),  # an empty page: the size learned so far
        (0, 0, 20, 20, 20),
        (5, 45, 10, 20, 5),
    ],
)
def test_page_size_of(served, count, asked, learned, size):
    assert page_size_of(Page(count, [call(i) for i in range(served)]), asked, learned) == size


def test_calls_in_trusts_a_short_first_page_over_the_count():
    assert calls_in(Page(45, [call(i) for i in range(10)]), 10) == 45
    assert calls_in(Page(45, [call(i) for i in range(7)]), 10) == 7
    assert calls_in(Page(0, []), 10) == 0


def test_page_size_learns_what_telecmi_serves_and_says_so(log):
    size = PageSize(20, STREAM, log.logger)
    assert size.size == 20
    size.learn(20, Page(45, [call(i) for i in range(20)]), 1)
    size.learn(20, Page(10, [call(i) for i in range(10)]), 1)  # the whole window on one page
    assert size.size == 20
    size.learn(20, Page(45, [call(i) for i in range(10)]), 1)
    size.learn(20, Page(45, [call(i) for i in range(10)]), 1)
    assert size.size == 10
    learned = [m for m in log.messages() if "serves pages of 10" in m]
    assert len(learned) == 1 and STREAM in learned[0]


def test_a_last_page_partly_full_teaches_nothing(log):
    size = PageSize(10, STREAM, log.logger)
    size.learn(10, Page(45, [call(i) for i in range(5)]), 5)
    assert size.size == 10


def test_fingerprint_is_the_content_of_a_call():
    a = {"cmiuid": "x", "time": T0, "notes": [{"msg": "hi"}]}
    assert fingerprint(a) == fingerprint({"notes": [{"msg": "hi"}], "time": T0, "cmiuid": "x"})
    assert fingerprint(a) != fingerprint({**a, "time": T0 + 1})
    assert fingerprint(a) != fingerprint({**a, "notes": [{"msg": "hi"}, {"msg": "later"}]})


# --------------------------------------------------------------------------------------------- split


def assert_covers(piece, parts):
    assert len(parts) >= 2
    assert parts[0].first == piece.first and parts[-1].last == piece.last
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.last + 1 == after.first, f"{before} and {after} leave a gap or overlap"
    assert all(p.first <= p.last for p in parts)


def busy_part(parts, at):
    """The part holding the busy millisecond `at`: small (a millisecond of margin each side at most)."""
    (part,) = [p for p in parts if p.first <= at <= p.last]
    assert part.span <= 3
    return part


def test_split_isolates_a_busy_millisecond():
    piece = Window(0, 999)
    times = [500] * 30 + [100, 200, 800]
    parts = split(piece, times, count=33, page_size=10)
    part = busy_part(parts, 500)
    assert not any(part.first <= t <= part.last for t in (100, 200, 800))
    assert_covers(piece, parts)


def test_split_isolates_the_only_millisecond_seen():
    piece = Window(0, 999)
    parts = split(piece, [700, 700], count=25, page_size=20)
    busy_part(parts, 700)
    assert_covers(piece, parts)


def test_split_cuts_equal_spans_a_page_each():
    piece = Window(0, 999)
    parts = split(piece, list(range(0, 1000, 25)), count=40, page_size=10)
    assert [p.span for p in parts] == [250, 250, 250, 250]


def test_split_makes_at_least_two_parts():
    assert_covers(Window(0, 999), split(Window(0, 999), [], count=1, page_size=10))
    assert split(Window(5, 6), [], count=0, page_size=10) == [Window(5, 5), Window(6, 6)]
    assert_covers(Window(5, 7), split(Window(5, 7), [5, 5, 5, 5, 5], count=5, page_size=10))
    assert_covers(Window(5, 7), split(Window(5, 7), [7, 7, 7, 7, 7], count=5, page_size=10))


@pytest.mark.parametrize("seed", range(40))
def test_split_covers_any_piece_exactly(seed):
    rng = random.Random(seed)
    first = rng.randrange(0, 10**6)
    piece = Window(first, first + rng.randrange(1, 5000))
    times = [rng.randint(piece.first - 10, piece.last + 10) for _ in range(rng.randrange(0, 200))]
    times += [rng.randint(piece.first, piece.last)] * rng.randrange(0, 40)
    parts = split(piece, times, count=rng.randrange(0, 5000), page_size=rng.choice([1, 5, 10, 20]))
    assert_covers(piece, parts)


# ------------------------------------------------------------------------------------------ probing


def test_probe_of_a_window_on_one_page_is_one_request(log):
    endpoint = FakeEndpoint(spread(7))
    probe = reader_of(endpoint, log).probe(WINDOW, most_calls=5000)
    assert (probe.pages, probe.size, probe.calls) == (1, 10, 7)
    assert endpoint.requests == [(WINDOW.request_from, WINDOW.request_to, 1, 10)]


def test_probe_reads_the_last_page_once(log):
    endpoint = FakeEndpoint(spread(45))
    probe = reader_of(endpoint, log).probe(WINDOW, most_calls=5000)
    assert probe.pages == 5 and set(probe.read) == {1, 5}
    assert [number for _, _, number, _ in endpoint.requests] == [1, 5]


def test_probe_finds_the_last_page_of_an_inflated_count_in_few_requests(log):
    endpoint = FakeEndpoint(spread(45), extra_count=1000)
    probe = reader_of(endpoint, log).probe(WINDOW, most_calls=5000)
    assert probe.pages == 5
    assert len(endpoint.requests) <= 12  # a binary search, not 105 pages


def test_probe_stops_at_page_one_when_the_window_is_to_be_split(log):
    endpoint = FakeEndpoint(spread(45), extra_count=10_000)
    assert reader_of(endpoint, log).probe(WINDOW, most_calls=5000).first.count == 10_045
    assert len(endpoint.requests) == 1


# ----------------------------------------------------------------------------------- reading windows


@pytest.mark.parametrize("order", [None, 1, 2, 3])
def test_every_call_once_in_any_page_order(log, order):
    calls = spread(45, step=7)
    endpoint = FakeEndpoint(calls)
    assert_exactly_once(read_window(reader_of(endpoint, log), order=order), calls)
    assert len(endpoint.requests) == 5
    assert not log.warnings()


def test_the_window_is_asked_one_millisecond_wider_and_keeps_only_its_own_calls(log):
    calls = [call(0, at=T0 - 1), call(1, at=T0), call(2, at=T0 + 999), call(3, at=T0 + 1000)]
    endpoint = FakeEndpoint(calls)
    records = read_window(reader_of(endpoint, log))
    assert ids(records) == ["c0001", "c0002"]
    assert {(a, b) for a, b, _, _ in endpoint.requests} == {(T0 - 1, T0 + 1000)}


def test_pages_capped_at_10_when_20_are_asked(log):
    calls = spread(45, step=3)
    endpoint = FakeEndpoint(calls, largest_page=20, cap=10)
    reader = reader_of(endpoint, log)
    assert_exactly_once(read_window(reader), calls)
    assert endpoint.limits() == [20, 10, 10, 10, 10]
    assert reader.page_size.size == 10
    assert any("serves pages of 10 calls (asked for 20)" in m for m in log.messages())


def test_pages_of_20_when_20_are_honoured(log):
    calls = spread(45, step=3)
    endpoint = FakeEndpoint(calls, largest_page=20)
    assert_exactly_once(read_window(reader_of(endpoint, log)), calls)
    assert len(endpoint.requests) == 3


def test_a_partly_full_last_page_does_not_shrink_the_page_size(log):
    calls = spread(45) + spread(45, first=T0 + 5000)  # 45 calls: pages of 10, 10, 10, 10 and 5
    endpoint = FakeEndpoint(calls)
    reader = reader_of(endpoint, log)
    read_window(reader, Window(T0, T0 + 999))
    endpoint.requests.clear()
    read_window(reader, Window(T0 + 5000, T0 + 5999))
    assert reader.page_size.size == 10
    assert len(endpoint.requests) == 5  # not 9, in pages of 5
    assert not any("serves pages of 5" in m for m in log.messages())


@pytest.mark.parametrize("page", [2, 3])
def test_a_short_page_in_the_middle_loses_nothing(log, page):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, short_page={page: 3})
    assert_exactly_once(read_window(reader_of(endpoint, log)), calls)
    assert any("read 42 of the 45 calls" in m for m in log.warnings())
    assert not any("count is wrong" in m for m in log.warnings())


def test_a_short_first_page_is_read_again(log):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, short_page={1: 4})
    assert_exactly_once(read_window(reader_of(endpoint, log)), calls)


def test_calls_sharing_a_millisecond_in_random_order_are_each_read_once(log):
    tied = [call(i, at=T0 + 500) for i in range(30)]
    calls = spread(15, step=20) + tied
    endpoint = FakeEndpoint(calls, shuffle_ties=True, seed=7)
    assert_exactly_once(read_window(reader_of(endpoint, log)), calls)
    busy = [(a, b) for a, b, _, _ in endpoint.requests if a <= T0 + 500 <= b and b - a <= 4]
    assert busy, "the busy millisecond is read again on its own"


def test_ties_in_random_order_never_cost_a_call(log):
    lost = []
    for seed in range(60):
        calls = spread(20)
        calls[9]["time"] = calls[10]["time"] = T0 + 9  # two calls share the millisecond across pages 1 and 2
        records = read_window(reader_of(FakeEndpoint(calls, shuffle_ties=True, seed=seed), log))
        if ids(records) != ids(calls):
            lost.append(seed)
    assert lost == []


def test_an_inflated_count_is_accepted_with_a_warning_when_reads_agree(log):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, extra_count=5)
    assert_exactly_once(read_window(reader_of(endpoint, log)), calls)
    wrong = [m for m in log.warnings() if "count is wrong" in m]
    assert len(wrong) == 1
    assert STREAM in wrong[0] and str(WINDOW) in wrong[0] and "5 more calls" in wrong[0]


def test_an_inflated_count_on_a_busy_millisecond_is_accepted_too(log):
    calls = [call(i, at=T0 + 500) for i in range(25)]
    endpoint = FakeEndpoint(calls, extra_count=2)
    assert_exactly_once(read_window(reader_of(endpoint, log)), calls)
    assert any("count is wrong" in m for m in log.warnings())


@pytest.mark.parametrize("seed", range(4))
def test_random_subsets_forever_end_in_a_paging_error_within_the_budget(log, seed):
    # A random half of each page on every request, and one call counted that never comes: nothing adds up.
    calls = spread(200, step=4)
    endpoint = FakeEndpoint(calls, subsets=True, extra_count=1, seed=seed)
    with pytest.raises(PagingError) as error:
        read_window(reader_of(endpoint, log))
    pages = math.ceil(201 / min(endpoint.limits()))  # however small the page size it learned
    assert len(endpoint.requests) <= pages + max(LEAST_REREAD_REQUESTS, REREAD_REQUESTS_PER_PAGE * pages) + 1
    message = error.value.message
    assert STREAM in message and str(WINDOW) in message
    assert "stops rather than skip calls" in message


def test_a_millisecond_that_never_settles_ends_in_a_paging_error(log):
    class Growing(FakeEndpoint):
        """Calls at one millisecond: every answer holds one call never seen before, and the count stays ahead."""

        def page(self, request_from, request_to, number, limit):
            self.requests.append((request_from, request_to, number, limit))
            assert len(self.requests) < 5000, "the reader never stops asking"
            fresh = call(1000 + len(self.requests), at=T0 + 500)
            return Page(9 + len(self.requests) + 5, [call(k, at=T0 + 500) for k in range(9)] + [fresh])

    endpoint = Growing([])
    with pytest.raises(PagingError) as error:
        read_window(reader_of(endpoint, log), Window(T0 + 500, T0 + 500))
    assert STREAM in error.value.message
    assert len(endpoint.requests) <= 1 + LEAST_REREAD_REQUESTS + 10


def test_records_sharing_a_cmiuid_at_other_times_are_both_emitted(log):
    calls = [call(1, at=T0 + 10), {**call(1, at=T0 + 20)}, call(2, at=T0 + 30)]
    records = read_window(reader_of(FakeEndpoint(calls), log))
    assert sorted((r["cmiuid"], r["time"]) for r in records) == [
        ("c0001", T0 + 10),
        ("c0001", T0 + 20),
        ("c0002", T0 + 30),
    ]


def test_the_same_call_served_twice_is_emitted_once(log):
    calls = spread(5) + [call(3)]
    records = read_window(reader_of(FakeEndpoint(calls), log))
    assert ids(records) == ["c0000", "c0001", "c0002", "c0003", "c0004"]


def test_calls_with_odd_times_are_converted(log):
    calls = [call(1, at=str(T0 + 1)), call(2, at=float(T0 + 2)), call(3, at="2025-12-01T00:00:00.003Z")]

    class AnyTime(FakeEndpoint):
        def page(self, request_from, request_to, number, limit):
            self.requests.append(number)
            return Page(3, [dict(c) for c in calls])

    records = read_window(reader_of(AnyTime([]), log))
    assert sorted(r["time"] for r in records) == [T0 + 1, T0 + 2, T0 + 3]


def test_a_call_without_a_usable_time_is_emitted_once_with_a_warning(log):
    timeless = {"cmiuid": "no-time", "time": "yesterday"}

    class Timeless(FakeEndpoint):
        def page(self, request_from, request_to, number, limit):
            inside = [c for c in self.calls if request_from <= c["time"] <= request_to]
            return Page(len(inside) + 1, [dict(c) for c in inside] + [dict(timeless)])

    reader = reader_of(Timeless(spread(3) + spread(3, first=T0 + 2000)), log)
    first = read_window(reader, Window(T0, T0 + 999))
    second = read_window(reader, Window(T0 + 2000, T0 + 2999))
    emitted = [r for r in first + second if r["cmiuid"] == "no-time"]
    assert emitted == [{"cmiuid": "no-time", "time": None}]
    assert any("no usable time" in m and STREAM in m for m in log.warnings())
    assert len(first + second) == 7


# -------------------------------------------------------------------------------------- partitions


def partitions_of(endpoint, log, ranges, expected=None):
    messages = InMemoryMessageRepository()
    generator = WindowPartitions(
        reader_of(endpoint, log),
        lambda: ranges,
        WindowPlanner(target_calls=500, most_calls=5000),
        messages,
        (lambda window, pages: expected.append((window, pages))) if expected is not None else None,
    )
    return list(generator.generate()), list(messages.consume_queue())


def test_a_partition_per_page_and_the_cursor_told_how_many(log):
    expected = []
    calls = spread(45, step=1000)
    partitions, messages = partitions_of(FakeEndpoint(calls), log, [(T0, T0 + 86_400_000 - 1)], expected)
    assert expected == [(Window(T0, T0 + 86_400_000 - 1), 5)]
    assert len(partitions) == 5
    records = [r.data for p in partitions for r in p.read()]
    assert_exactly_once(records, calls)
    estimates = [m.trace.estimate.row_estimate for m in messages if m.type == Type.TRACE]
    assert estimates == [45]


def test_a_stream_refused_on_its_first_request_is_skipped_with_a_warning(log):
    class Refusing(FakeEndpoint):
        def page(self, *args):
            raise AccessRefused("Not enabled for this account")

    partitions, _ = partitions_of(Refusing([]), log, [(T0, T0 + 999)])
    assert partitions == []
    assert any(STREAM in m and "skipped" in m and "Not enabled" in m for m in log.warnings())


def test_a_millisecond_with_more_calls_than_a_window_may_hold_ends_the_sync(log):
    class Crowded(FakeEndpoint):
        def page(self, *args):
            return Page(50_000, [call(k, at=T0) for k in range(10)])

    with pytest.raises(PagingError, match="in one millisecond"):
        partitions_of(Crowded([]), log, [(T0, T0)])


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
