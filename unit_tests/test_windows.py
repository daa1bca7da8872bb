"""Reading a list exactly once, whatever TeleCMI's paging does: windows of calls, and lists read whole."""

import math
import random
import threading

import pytest

from source_telecmi.engine.ledger import (
    Ledger,
    PageSize,
    PagingError,
    Probe,
    WindowAudit,
    calls_in,
    fingerprint,
    identity,
    page_size_of,
    split,
)
from source_telecmi.engine.reading import (
    LEAST_REREAD_REQUESTS,
    MOST_PAGES_WITHOUT_COUNT,
    REREAD_REQUESTS_PER_PAGE,
    Lister,
)
from source_telecmi.engine.whole_read import WHOLE_LIST_READS, WholeRead
from source_telecmi.engine.window_read import WindowRead
from source_telecmi.telecmi.page import Page
from source_telecmi.telecmi.platforms import CALL_LISTS, USERS_LIST
from source_telecmi.timeline.instants import Window, instant_of

T0 = 1764547200000  # 2025-12-01T00:00:00Z
WINDOW = Window(T0, T0 + 999)
STREAM = "incoming_answered_calls"
ROW = {row.stream: row for row in CALL_LISTS}[STREAM]


def call(i, at=None, **fields):
    return {"cmiuid": f"c{i:04d}", "time": T0 + i if at is None else at, "to": 919100000000 + i, **fields}


def spread(n, first=T0, step=1):
    return [call(i, at=first + i * step) for i in range(n)]


class FakeEndpoint:
    """TeleCMI's paging over a list of calls: LIMIT/OFFSET over the calls of [from, to] sorted by time.

    Options simulate what TeleCMI has been seen doing: serving at most `cap` calls a page whatever
    `limit` asks; calls that share a millisecond in a fresh order on every request; a count off
    by `extra_count`; a page shorter than it should be (`short_page`: page number -> calls dropped,
    once); answers that are a random part of what they should be, forever (`subsets`); no
    record served past the offset `offset_cap` while the count says more follow; and calls it
    counts at the instants `phantoms` but never serves (deleted calls, say).
    """

    path = "/v2/answered"
    row = ROW

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
        offset_cap=None,
        phantoms=(),
    ):
        self.calls = list(calls)
        self.largest_page = largest_page
        self.requests = []
        self._cap = cap
        self._shuffle_ties = shuffle_ties
        self._extra_count = extra_count
        self._short_page = dict(short_page or {})
        self._subsets = subsets
        self._random = random.Random(seed)
        self._most_requests = most_requests
        self._offset_cap = offset_cap
        self._phantoms = list(phantoms)
        self._lock = threading.Lock()

    served = False  # whether a page was served (a refusal after that is a fault, not a skip)

    def page(self, number, limit, span=None):
        assert span is not None, "a list of calls is always asked for a window"
        request_from, request_to = span
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
            offset = (number - 1) * size
            records = ordered[offset : offset + size]
            if self._offset_cap is not None:
                records = ordered[offset : min(offset + size, self._offset_cap)]
            drop = self._short_page.pop(number, 0)
            if drop:
                records = records[:-drop]
            if self._subsets:
                records = [r for r in records if self._random.random() < 0.5]
            phantoms = sum(1 for at in self._phantoms if request_from <= at <= request_to)
            self.served = True
            return Page(count=len(inside) + self._extra_count + phantoms, records=[dict(r) for r in records])

    def limits(self):
        return [limit for *_, limit in self.requests]


def shape(record, instant):
    return {**record, "time": instant}


def by_call(record, instant):
    return identity(record.get("cmiuid"), instant, record, "time")


def lister_of(endpoint, log, audit=None, stream=STREAM):
    return Lister(stream, endpoint, shape, lambda r: instant_of(r.get("time")), log.logger, audit, by_call)


def read_window(lister, window=WINDOW, order=None):
    """What the partitions do with a window: read each page (in any order); the last to finish settles it."""
    probe = lister.probe(window, most_calls=5000)
    read = WindowRead(lister, window, probe)
    numbers = list(range(1, read.pages + 1))
    if order is not None:
        random.Random(order).shuffle(numbers)
    records = []
    for number in numbers:
        read.read_page(number)
        if read.finish_page():
            for batch in read.records():
                records += batch
        read.page_closed()  # the cursor closed the page's partition
    assert read.slice == window.as_slice()
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
        (10, None, 20, 20, 20),  # without a count nothing says more follow: not a page size
    ],
)
def test_page_size_of(served, count, asked, learned, size):
    assert page_size_of(Page(count, [call(i) for i in range(served)]), asked, learned) == size


def test_calls_in_trusts_a_short_first_page_over_the_count():
    assert calls_in(Page(45, [call(i) for i in range(10)]), 10) == 45
    assert calls_in(Page(45, [call(i) for i in range(7)]), 10) == 7
    assert calls_in(Page(0, []), 10) == 0
    assert calls_in(Page(None, [call(i) for i in range(10)]), 10) == 0


def test_page_size_learns_what_telecmi_serves_and_says_so(log):
    size = PageSize(20, STREAM, log.logger)
    assert size.size == size.largest == 20
    size.confirm(20, 20)  # a full page says nothing
    size.confirm(0, 20)  # nor does an empty one
    assert size.size == 20
    size.confirm(10, 20)  # 10 served when 20 were asked, and the next page brought more
    size.confirm(10, 20)
    assert size.size == 10
    learned = [m for m in log.messages() if "serves pages of 10" in m]
    assert len(learned) == 1 and STREAM in learned[0] and "asked for 20" in learned[0]


def test_page_size_only_grows_from_what_it_learned(log):
    size = PageSize(20, STREAM, log.logger)
    size.confirm(5, 20)
    size.confirm(10, 20)
    size.confirm(7, 20)
    assert size.size == 10


def test_a_short_first_page_is_no_page_size_until_the_next_page_brings_more(log):
    # 7 calls counted as 12: page 1 is short and page 2 empty. That is the window's end, not a page size.
    endpoint = FakeEndpoint(spread(7) + spread(30, first=T0 + 5000), extra_count=5)
    lister = lister_of(endpoint, log)
    read_window(lister)
    assert lister.page_size.size == 10
    assert not any("serves pages of" in m for m in log.messages())
    endpoint.requests.clear()
    read_window(lister, Window(T0 + 5000, T0 + 5999))
    assert endpoint.limits()[0] == 10, "the next window is asked in pages of 10"


def test_a_last_page_partly_full_teaches_nothing(log):
    calls = spread(45, step=5)  # pages of 10, 10, 10, 10 and 5
    endpoint = FakeEndpoint(calls)
    lister = lister_of(endpoint, log)
    read_window(lister)
    assert lister.page_size.size == 10 and set(endpoint.limits()) == {10}


def test_fingerprint_is_the_content_of_a_call():
    a = {"cmiuid": "x", "time": T0, "notes": [{"msg": "hi"}]}
    assert fingerprint(a) == fingerprint({"notes": [{"msg": "hi"}], "time": T0, "cmiuid": "x"})
    assert fingerprint(a) != fingerprint({**a, "time": T0 + 1})
    assert fingerprint(a) != fingerprint({**a, "notes": [{"msg": "hi"}, {"msg": "later"}]})


def test_fingerprint_of_an_integer_beyond_64_bits():
    a = {"cmiuid": "x", "to": 919100000000000000000001}
    assert fingerprint(a) == fingerprint({"to": 919100000000000000000001, "cmiuid": "x"})
    assert fingerprint(a) != fingerprint({**a, "to": 919100000000000000000002})


def test_the_intake_gives_each_record_its_identity_and_its_time_parsed_once(log):
    lister = lister_of(FakeEndpoint([]), log)
    records = [call(1), {"cmiuid": "no-time", "time": "yesterday"}, {"time": T0 + 2, "msg": "no key"}]
    taken = lister.intake(Page(3, records))
    assert [(key, instant) for _, key, instant in taken] == [
        ((call(1)["cmiuid"], T0 + 1), T0 + 1),
        (("no-time", "'yesterday'"), None),
        (fingerprint(records[2]), T0 + 2),
    ]


def test_a_call_is_its_key_and_its_time_not_its_content():
    a = {"cmiuid": "x", "time": T0, "notes": []}
    assert identity("x", T0, a, "time") == identity("x", T0, {**a, "notes": [{"msg": "added later"}]}, "time")
    assert identity("x", T0, a, "time") != identity("x", T0 + 1, {**a, "time": T0 + 1}, "time")
    assert identity(None, T0, a, "time") == fingerprint(a)  # no key: its content
    assert identity("", T0, a, "time") == fingerprint(a)


# ------------------------------------------------------------------------------------------ the ledger


def keyed(records):
    return [fingerprint(r) for r in records], {fingerprint(r): r["time"] for r in records}


def take(ledger, number, page):
    keys, when = keyed(page.records)
    return ledger.take(number, page, keys, when)


def test_a_ledger_adds_up_a_read():
    ledger = Ledger(10)
    assert ledger.count is None and ledger.complete()
    calls = spread(15)
    assert take(ledger, 1, Page(15, calls[:10]))
    assert take(ledger, 2, Page(16, calls[10:]))
    assert ledger.count == 16 and len(ledger.found) == 15 and not ledger.complete()
    assert ledger.lengths == {1: 10, 2: 5}
    assert not ledger.fits_one_page() and not ledger.tied() and ledger.stopped_early() is None


def test_a_page_that_only_repeats_records_is_an_anomaly():
    ledger = Ledger(10)
    calls = spread(20)
    take(ledger, 1, Page(20, calls[:10]))
    assert not take(ledger, 2, Page(20, calls[:10]))
    assert ledger.anomaly == "page 2 repeats records of other pages"


def test_a_record_served_again_marks_its_millisecond():
    ledger = Ledger(10)
    calls = spread(20)
    take(ledger, 1, Page(20, calls[:10]))
    take(ledger, 2, Page(20, calls[9:19]))
    assert ledger.again == {calls[9]["time"]} and ledger.tied()


def test_two_records_at_one_millisecond_are_tied():
    ledger = Ledger(10)
    take(ledger, 1, Page(2, [call(1, at=T0), call(2, at=T0)]))
    assert ledger.tied() and ledger.fits_one_page()


def test_a_ledger_tells_a_read_that_stopped_before_its_count():
    capped = Ledger(10)
    calls = spread(45)
    take(capped, 1, Page(45, calls[:10]))
    take(capped, 2, Page(45, calls[10:20]))
    take(capped, 3, Page(45, []))
    assert "page 3 has 0 records while TeleCMI counts 45" in capped.stopped_early()
    gap = Ledger(10)
    take(gap, 1, Page(45, calls[:10]))
    take(gap, 2, Page(45, calls[10:17]))
    take(gap, 3, Page(45, calls[20:30]))
    assert gap.stopped_early() == "page 2 is shorter than 10 records and page 3 has records"
    last = Ledger(10)
    take(last, 1, Page(15, calls[:10]))
    take(last, 2, Page(15, calls[10:15]))
    assert last.stopped_early() is None  # a short last page is where the list ends


# ------------------------------------------------------------------------------------------------ split


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


def test_split_with_a_busy_threshold_given():
    parts = split(Window(0, 999), [100, 100, 600], count=3, page_size=10, busy_at=2)
    busy_part(parts, 100)
    assert_covers(Window(0, 999), parts)


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
    probe = lister_of(endpoint, log).probe(WINDOW, most_calls=5000)
    assert (probe.pages, probe.size, probe.calls) == (1, 10, 7)
    assert endpoint.requests == [(WINDOW.request_from, WINDOW.request_to, 1, 10)]


def test_probe_reads_the_last_page_once(log):
    endpoint = FakeEndpoint(spread(45))
    probe = lister_of(endpoint, log).probe(WINDOW, most_calls=5000)
    assert probe.pages == 5 and set(probe.read) == {1, 5}
    assert [number for _, _, number, _ in endpoint.requests] == [1, 5]


def test_probe_of_a_window_as_full_as_expected_reads_page_one_only(log):
    endpoint = FakeEndpoint(spread(45))
    probe = lister_of(endpoint, log).probe(WINDOW, most_calls=5000, expected=40)
    assert probe.pages == 5 and set(probe.read) == {1}
    assert len(endpoint.requests) == 1


def test_probe_finds_the_last_page_of_an_inflated_count_in_few_requests(log):
    endpoint = FakeEndpoint(spread(45), extra_count=1000)
    probe = lister_of(endpoint, log).probe(WINDOW, most_calls=5000)
    assert probe.pages == 5
    assert len(endpoint.requests) <= 12  # a binary search, not 105 pages
    assert set(probe.read) <= set(range(1, 6))


def test_probe_stops_at_page_one_when_the_window_is_to_be_split(log):
    endpoint = FakeEndpoint(spread(45), extra_count=10_000)
    assert lister_of(endpoint, log).probe(WINDOW, most_calls=5000).first.count == 10_045
    assert len(endpoint.requests) == 1


def test_probe_calls_is_the_count_or_what_the_pages_hold():
    assert Probe(Page(45, []), 10, 5, {}).calls == 45
    assert Probe(Page(1045, []), 10, 5, {}).calls == 50
    assert Probe(Page(None, []), 10, 1, {}).calls == 0


# ----------------------------------------------------------------------------------- reading windows


@pytest.mark.parametrize("order", [None, 1, 2, 3])
def test_every_call_once_in_any_page_order(log, order):
    calls = spread(45, step=7)
    endpoint = FakeEndpoint(calls)
    assert_exactly_once(read_window(lister_of(endpoint, log), order=order), calls)
    assert len(endpoint.requests) == 5
    assert not log.warnings()


def test_the_window_is_asked_one_millisecond_wider_and_keeps_only_its_own_calls(log):
    calls = [call(0, at=T0 - 1), call(1, at=T0), call(2, at=T0 + 999), call(3, at=T0 + 1000)]
    endpoint = FakeEndpoint(calls)
    records = read_window(lister_of(endpoint, log))
    assert ids(records) == ["c0001", "c0002"]
    assert {(a, b) for a, b, _, _ in endpoint.requests} == {(T0 - 1, T0 + 1000)}


def test_pages_capped_at_10_when_20_are_asked(log):
    calls = spread(45, step=3)
    endpoint = FakeEndpoint(calls, largest_page=20, cap=10)
    lister = lister_of(endpoint, log)
    assert_exactly_once(read_window(lister), calls)
    assert endpoint.limits() == [20, 10, 10, 10, 10]
    assert lister.page_size.size == 10
    assert any("serves pages of 10 records (asked for 20)" in m for m in log.messages())


def test_pages_of_20_when_20_are_honoured(log):
    calls = spread(45, step=3)
    endpoint = FakeEndpoint(calls, largest_page=20)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    assert len(endpoint.requests) == 3


def test_a_partly_full_last_page_does_not_shrink_the_page_size(log):
    calls = spread(45) + spread(45, first=T0 + 5000)  # 45 calls: pages of 10, 10, 10, 10 and 5
    endpoint = FakeEndpoint(calls)
    lister = lister_of(endpoint, log)
    read_window(lister, Window(T0, T0 + 999))
    endpoint.requests.clear()
    read_window(lister, Window(T0 + 5000, T0 + 5999))
    assert lister.page_size.size == 10
    assert len(endpoint.requests) == 5  # not 9, in pages of 5
    assert not any("serves pages of 5" in m for m in log.messages())


@pytest.mark.parametrize("page", [2, 3])
def test_a_short_page_in_the_middle_loses_nothing(log, page):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, short_page={page: 3})
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    assert any("read 42 of the 45 records" in m for m in log.warnings())
    assert not any("count is wrong" in m for m in log.warnings())


def test_a_short_first_page_is_read_again(log):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, short_page={1: 4})
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)


def test_calls_sharing_a_millisecond_in_random_order_are_each_read_once(log):
    tied = [call(i, at=T0 + 500) for i in range(30)]
    calls = spread(15, step=20) + tied
    endpoint = FakeEndpoint(calls, shuffle_ties=True, seed=7)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    busy = [(a, b) for a, b, _, _ in endpoint.requests if a <= T0 + 500 <= b and b - a <= 4]
    assert busy, "the busy millisecond is read again on its own"


def test_ties_in_random_order_never_cost_a_call(log):
    lost = []
    for seed in range(60):
        calls = spread(20)
        calls[9]["time"] = calls[10]["time"] = T0 + 9  # two calls share the millisecond across pages 1 and 2
        records = read_window(lister_of(FakeEndpoint(calls, shuffle_ties=True, seed=seed), log))
        if ids(records) != ids(calls):
            lost.append(seed)
    assert lost == []


def test_an_inflated_count_is_accepted_with_a_warning_when_reads_agree(log):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, extra_count=5)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    wrong = [m for m in log.warnings() if "count is wrong" in m]
    assert len(wrong) == 1
    assert STREAM in wrong[0] and str(WINDOW) in wrong[0] and "5 more records" in wrong[0]


def test_calls_counted_but_never_served_among_the_records_are_blamed_on_the_count(log):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, phantoms=[T0 + 7, T0 + 100, T0 + 222, T0 + 500, T0 + 900])
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    assert any("5 more records" in m and "count is wrong" in m for m in log.warnings())


@pytest.mark.parametrize("phantoms", [[T0 + 700] * 5, [T0 + 100] * 5, [T0 + 5] * 3])
def test_calls_counted_but_never_served_are_blamed_on_the_count_once_the_pieces_fit_one_page(log, phantoms):
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, phantoms=phantoms)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    wrong = [m for m in log.warnings() if "count is wrong" in m]
    assert len(wrong) == 1
    assert STREAM in wrong[0] and str(WINDOW) in wrong[0] and f"{len(phantoms)} more records" in wrong[0]
    assert "read in pieces of one page each" in wrong[0]
    # Blamed only after the pieces holding them were read, and read again, each piece on one page.
    pieces = {(x, y) for x, y, _, _ in endpoint.requests if x <= phantoms[0] <= y and y - x < 1001}
    assert pieces, "the window is read in pieces"
    smallest = min(pieces, key=lambda xy: xy[1] - xy[0])
    assert sum(1 for x, y, n, _ in endpoint.requests if (x, y) == smallest and n == 1) >= 2


def test_two_complete_reads_that_agree_are_not_enough_when_they_span_pages(log):
    # The window read twice, whole, each time the same 45 of the 50 counted: it is read in pieces next.
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, phantoms=[T0 + 700] * 5)
    read_window(lister_of(endpoint, log))
    whole = [n for x, y, n, _ in endpoint.requests if (x, y) == (WINDOW.request_from, WINDOW.request_to)]
    assert whole.count(1) == 2, "the window is read whole twice"
    assert any((x, y) != (WINDOW.request_from, WINDOW.request_to) for x, y, _, _ in endpoint.requests)


def test_an_inflated_count_on_a_busy_millisecond_is_accepted_too(log):
    calls = [call(i, at=T0 + 500) for i in range(25)]
    endpoint = FakeEndpoint(calls, extra_count=2)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    assert any("count is wrong" in m for m in log.warnings())


@pytest.mark.parametrize("cap", [20, 25, 30])
def test_a_server_that_stops_serving_past_an_offset_is_read_again_in_pieces(log, cap):
    # TeleCMI's count says 45, but no page past record `cap` holds anything: an anomaly, not a wrong count.
    calls = spread(45, step=20)
    endpoint = FakeEndpoint(calls, offset_cap=cap)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    warnings = log.warnings()
    assert any(f"read {cap} of the 45 records" in m for m in warnings)
    assert not any("count is wrong" in m for m in warnings)


def test_a_page_cut_short_by_an_offset_cap_is_named_as_an_anomaly(log):
    calls = spread(45, step=20)
    endpoint = FakeEndpoint(calls, offset_cap=25)
    assert_exactly_once(read_window(lister_of(endpoint, log)), calls)
    assert any("page 3 has 5 records while TeleCMI counts 45: it stopped serving pages" in m for m in log.warnings())
    # Read again in pieces split by time, each under the cap.
    assert any((a, b) != (WINDOW.request_from, WINDOW.request_to) for a, b, _, _ in endpoint.requests)


@pytest.mark.parametrize("elsewhere", [0, 15])
def test_records_of_one_millisecond_hidden_by_an_offset_cap_are_never_dropped_quietly(log, elsewhere):
    calls = [call(i, at=T0 + 500) for i in range(25)] + [call(100 + i, at=T0 + 10 * i) for i in range(elsewhere)]
    endpoint = FakeEndpoint(calls, offset_cap=20)
    try:
        records = read_window(lister_of(endpoint, log))
    except PagingError:
        return  # the sync stops rather than skip records
    assert_exactly_once(records, calls)


@pytest.mark.parametrize("seed", range(4))
def test_random_subsets_forever_end_in_a_paging_error_within_the_budget(log, seed):
    # A random half of each page on every request, and one call counted that never comes: nothing adds up.
    calls = spread(200, step=4)
    endpoint = FakeEndpoint(calls, subsets=True, extra_count=1, seed=seed)
    with pytest.raises(PagingError) as error:
        read_window(lister_of(endpoint, log))
    pages = math.ceil(201 / min(endpoint.limits()))  # however small the page size it learned
    assert len(endpoint.requests) <= pages + max(LEAST_REREAD_REQUESTS, REREAD_REQUESTS_PER_PAGE * pages) + 1
    message = error.value.message
    assert STREAM in message and str(WINDOW) in message
    assert "stops rather than skip records" in message


def test_a_millisecond_that_never_settles_ends_in_a_paging_error(log):
    class Growing(FakeEndpoint):
        """Calls at one millisecond: every answer holds one call never seen before, and the count stays ahead."""

        def page(self, number, limit, span=None):
            self.requests.append((*span, number, limit))
            assert len(self.requests) < 5000, "the reader never stops asking"
            fresh = call(1000 + len(self.requests), at=T0 + 500)
            return Page(9 + len(self.requests) + 5, [call(k, at=T0 + 500) for k in range(9)] + [fresh])

    endpoint = Growing([])
    with pytest.raises(PagingError) as error:
        read_window(lister_of(endpoint, log), Window(T0 + 500, T0 + 500))
    assert STREAM in error.value.message
    assert len(endpoint.requests) <= 1 + LEAST_REREAD_REQUESTS + 10


def test_records_sharing_a_cmiuid_at_other_times_are_both_emitted(log):
    calls = [call(1, at=T0 + 10), {**call(1, at=T0 + 20)}, call(2, at=T0 + 30)]
    records = read_window(lister_of(FakeEndpoint(calls), log))
    assert sorted((r["cmiuid"], r["time"]) for r in records) == [
        ("c0001", T0 + 10),
        ("c0001", T0 + 20),
        ("c0002", T0 + 30),
    ]


def test_the_same_call_served_twice_is_emitted_once(log):
    calls = spread(5) + [call(3)]
    records = read_window(lister_of(FakeEndpoint(calls), log))
    assert ids(records) == ["c0000", "c0001", "c0002", "c0003", "c0004"]


def test_calls_with_odd_times_are_converted(log):
    calls = [call(1, at=str(T0 + 1)), call(2, at=float(T0 + 2)), call(3, at="2025-12-01T00:00:00.003Z")]

    class AnyTime(FakeEndpoint):
        def page(self, number, limit, span=None):
            self.requests.append(number)
            return Page(3, [dict(c) for c in calls])

    records = read_window(lister_of(AnyTime([]), log))
    assert sorted(r["time"] for r in records) == [T0 + 1, T0 + 2, T0 + 3]


def test_a_call_without_a_usable_time_is_emitted_once_with_a_warning(log):
    timeless = {"cmiuid": "no-time", "time": "yesterday"}

    class Timeless(FakeEndpoint):
        def page(self, number, limit, span=None):
            request_from, request_to = span
            inside = [c for c in self.calls if request_from <= c["time"] <= request_to]
            return Page(len(inside) + 1, [dict(c) for c in inside] + [dict(timeless)])

    lister = lister_of(Timeless(spread(3) + spread(3, first=T0 + 2000)), log)
    first = read_window(lister, Window(T0, T0 + 999))
    second = read_window(lister, Window(T0 + 2000, T0 + 2999))
    emitted = [r for r in first + second if r["cmiuid"] == "no-time"]
    assert emitted == [{"cmiuid": "no-time", "time": None}]
    assert any("no usable time" in m and STREAM in m for m in log.warnings())
    assert len(first + second) == 7


# ---------------------------------------------------------------------------------------------- audit


def test_every_window_read_is_audited(log):
    audits = []
    calls = spread(45, step=5)
    read_window(lister_of(FakeEndpoint(calls), log, audits.append))
    (audit,) = audits
    assert isinstance(audit, WindowAudit)
    assert (audit.stream, audit.window, audit.verdict) == (STREAM, WINDOW, "complete")
    assert (audit.telecmi_count, audit.records_emitted, audit.shortfall, audit.requests) == (45, 45, 0, 5)
    assert audit.calls_read == 45


def test_a_window_whose_count_is_wrong_is_audited_as_such(log):
    audits = []
    calls = spread(45, step=5)
    endpoint = FakeEndpoint(calls, phantoms=[T0 + 700] * 5)
    read_window(lister_of(endpoint, log, audits.append))
    (audit,) = audits
    assert (audit.verdict, audit.shortfall, audit.records_emitted, audit.telecmi_count) == ("count_wrong", 5, 45, 50)
    assert audit.calls_read == 45  # what was observed: 50 counted, 45 distinct calls returned
    assert audit.requests == len(endpoint.requests)


def test_a_window_is_audited_only_once_its_last_page_closed(log):
    audits = []
    lister = lister_of(FakeEndpoint(spread(45, step=5)), log, audits.append)
    read = WindowRead(lister, WINDOW, lister.probe(WINDOW, most_calls=5000))
    for number in range(1, read.pages + 1):
        read.read_page(number)
        if read.finish_page():
            list(read.records())
    assert read.done is not None and read.done.verdict == "complete"
    for _ in range(read.pages - 1):
        read.page_closed()
    assert audits == [], "a page is still open: its records (and the state) may not be out yet"
    read.page_closed()
    assert audits == [read.done]


def test_a_window_audit_counts_only_the_records_the_window_owns(log):
    audits = []
    calls = [call(0, at=T0 - 1), call(1, at=T0), call(2, at=T0 + 999), call(3, at=T0 + 1000)]
    read_window(lister_of(FakeEndpoint(calls), log, audits.append))
    assert audits[0].records_emitted == 2
    assert (audits[0].telecmi_count, audits[0].calls_read) == (4, 4)  # the requests reach 1 ms past each end


# ------------------------------------------------------------------------------ lists read whole (users)


def user(n, **fields):
    return {"agent_id": f"{100 + n}_1111112", "name": f"User {n}", "password": f"pw-{n}", **fields}


class FakeUserList:
    """TeleCMI's user list: LIMIT/OFFSET pages, options for what it has been seen doing."""

    row = USERS_LIST
    path = "/v3/user/list"
    served = False  # whether a page was served (a refusal after that is a fault, not a skip)

    def __init__(self, users, largest_page=20, cap=None, extra_count=0, subsets=False, seed=0, count=True):
        self.users = users
        self.largest_page = largest_page
        self.requests = []
        self._cap = cap
        self._extra_count = extra_count
        self._subsets = subsets
        self._count = count
        self._random = random.Random(seed)

    def page(self, number, limit, span=None):
        assert span is None, "a list without a cursor is read whole"
        self.requests.append((number, limit))
        assert len(self.requests) < 1000, "the reader never stops asking"
        size = min(limit, self._cap or limit)
        records = self.users[(number - 1) * size : number * size]
        if self._subsets:
            records = [u for u in self.users if self._random.random() < 0.5][:size]
        count = len(self.users) + self._extra_count if self._count else None
        self.served = True
        return Page(count, [dict(u) for u in records])


def read_whole(endpoint, log):
    lister = Lister("users", endpoint, lambda record, instant: dict(record), lambda record: None, log.logger)
    return [record for batch in WholeRead(lister).records() for record in batch]


def agent_ids(users):
    return sorted(u["agent_id"] for u in users)


def test_user_list_pages_until_the_count(log):
    users = [user(n) for n in range(45)]
    endpoint = FakeUserList(users)
    assert agent_ids(read_whole(endpoint, log)) == agent_ids(users)
    assert endpoint.requests == [(1, 20), (2, 20), (3, 20)]
    assert not log.warnings()


def test_user_list_learns_the_page_size_served(log):
    users = [user(n) for n in range(25)]
    endpoint = FakeUserList(users, cap=10)
    assert agent_ids(read_whole(endpoint, log)) == agent_ids(users)
    assert endpoint.requests == [(1, 20), (2, 10), (3, 10)]
    assert any("serves pages of 10" in m for m in log.messages())


def test_user_list_without_a_count_is_read_until_a_short_page(log):
    users = [user(n) for n in range(45)]
    endpoint = FakeUserList(users, count=False)
    assert agent_ids(read_whole(endpoint, log)) == agent_ids(users)
    assert endpoint.requests == [(1, 20), (2, 20), (3, 20)]


def test_user_list_without_a_count_is_read_until_an_empty_page(log):
    users = [user(n) for n in range(40)]
    endpoint = FakeUserList(users, count=False)
    assert agent_ids(read_whole(endpoint, log)) == agent_ids(users)
    assert endpoint.requests == [(1, 20), (2, 20), (3, 20)]


def test_user_list_with_a_wrong_count_is_read_with_a_warning(log):
    users = [user(n) for n in range(25)]
    endpoint = FakeUserList(users, extra_count=3)
    assert agent_ids(read_whole(endpoint, log)) == agent_ids(users)
    assert any("count is wrong" in m and "28" in m for m in log.warnings())
    assert len(endpoint.requests) < 20


def test_user_list_that_falls_short_differently_on_every_read_is_an_error(log):
    users = [user(n) for n in range(25)]
    endpoint = FakeUserList(users, extra_count=1, subsets=True, seed=1)
    with pytest.raises(PagingError) as error:
        read_whole(endpoint, log)
    assert "users" in error.value.message and "counts 26 records" in error.value.message
    assert "the whole list" in error.value.message
    assert len({n for n, _ in endpoint.requests if n == 1}) == 1
    assert sum(1 for n, _ in endpoint.requests if n == 1) == WHOLE_LIST_READS


def test_an_empty_user_list_is_fine(log):
    assert read_whole(FakeUserList([]), log) == []


def test_a_user_read_twice_is_emitted_once(log):
    users = [user(n) for n in range(25)]

    class Overlapping(FakeUserList):
        def page(self, number, limit, span=None):
            page = super().page(number, limit, span)
            return Page(page.count, page.records + ([dict(users[0])] if number == 2 else []))

    assert agent_ids(read_whole(Overlapping(users), log)) == agent_ids(users)


def test_a_list_that_never_runs_dry_without_a_count_ends_in_an_error(log, monkeypatch):
    from source_telecmi.engine import reading

    monkeypatch.setattr(reading, "MOST_PAGES_WITHOUT_COUNT", 5)

    class Endless(FakeUserList):
        def page(self, number, limit, span=None):
            self.requests.append((number, limit))
            return Page(None, [user(number * 100 + k) for k in range(limit)])

    with pytest.raises(PagingError, match="full pages and no end"):
        read_whole(Endless([]), log)
    assert MOST_PAGES_WITHOUT_COUNT == 10_000


def test_a_list_without_a_count_whose_pages_repeat_is_never_cut_short_quietly(log):
    users = [user(n) for n in range(45)]

    class IgnoresPage(FakeUserList):
        def page(self, number, limit, span=None):
            return super().page(1, limit, span)

    try:
        records = read_whole(IgnoresPage(users, count=False), log)
    except PagingError:
        return
    assert agent_ids(records) == agent_ids(users)


def test_a_list_with_a_count_whose_pages_repeat_ends_in_a_paging_error(log):
    users = [user(n) for n in range(45)]

    class IgnoresPage(FakeUserList):
        def page(self, number, limit, span=None):
            return super().page(1, limit, span)

    with pytest.raises(PagingError, match="counts 45 records but its pages return 20, then 20, then 20"):
        read_whole(IgnoresPage(users), log)
