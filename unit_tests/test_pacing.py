"""The pacer: level (AIMD), rounds, pauses, Retry-After, the rate, patience, logging, threads, and limiters."""

import heapq
import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from integration_tests.limiters import FixedWindow, TokenBucket
from source_telecmi.telecmi.memory import Learned
from source_telecmi.telecmi.pacing import Pacer, RateLimitExhausted
from source_telecmi.telecmi.pacing_log import summary

LOGGER = logging.getLogger("test_pacing")


class FakeTime:
    """A clock that only moves when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def fake_pacer(ceiling: int = 8, **kwargs) -> tuple[Pacer, FakeTime]:
    fake = FakeTime()
    return Pacer(ceiling, LOGGER, clock=fake.clock, sleep=fake.sleep, **kwargs), fake


def send(pacer: Pacer) -> None:
    """One request through the pacer (the pause, if any, is slept by the fake)."""
    with pacer.slot():
        pass


def round_of_429(pacer: Pacer, retry_after_s=None) -> float:
    """A request sent now (after any earlier decrease) that is answered 429."""
    send(pacer)
    return pacer.rate_limited(retry_after_s)


def answer(pacer: Pacer) -> float:
    """A request sent now that gets a usable answer; returns the level it was sent at."""
    before = pacer.level
    with pacer.slot():
        pacer.answered()
    return before


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_the_tuning():
    assert (Pacer.DECREASE, Pacer.SLOW_NEAR_LIMIT, Pacer.MAX_RETRY_AFTER_S) == (0.7, 8, 600.0)


def test_starts_at_the_ceiling():
    pacer, _ = fake_pacer(8)
    assert (pacer.ceiling, pacer.level, pacer.in_flight, pacer.rate) == (8, 8.0, 0, None)
    assert pacer.stats() == {"answered": 0, "rate_limited": 0, "decreases": 0, "lowest_level": 8.0}
    with pytest.raises(ValueError):
        Pacer(0, LOGGER)


def test_answers_without_any_429_keep_the_ceiling(caplog):
    pacer, fake = fake_pacer(4)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        for _ in range(50):
            with pacer.slot():
                pacer.answered()
    assert pacer.level == 4.0 and pacer.in_flight == 0 and pacer.rate is None  # no rate: no wait at all
    assert fake.sleeps == [] and caplog.records == []
    assert pacer.stats()["answered"] == 50


def test_a_429_decreases_once_per_round_not_once_per_429():
    pacer, _ = fake_pacer(8)
    workers = [ThreadPoolExecutor(max_workers=1) for _ in range(8)]  # one thread each, as the CDK's workers
    try:
        for worker in workers:  # eight requests in flight at level 8 ...
            worker.submit(send, pacer).result()
        for worker in workers:  # ... all answered 429
            worker.submit(pacer.rate_limited, None).result()
        assert pacer.level == pytest.approx(5.6)  # 8 * 0.7, once
        assert pacer.stats()["decreases"] == 1 and pacer.stats()["rate_limited"] == 8
        workers[3].submit(round_of_429, pacer).result()  # sent after the decrease: a new round
        assert pacer.level == pytest.approx(3.92) and pacer.stats()["decreases"] == 2
        assert pacer.stats()["lowest_level"] == pytest.approx(3.92)
    finally:
        for worker in workers:
            worker.shutdown()


def test_answers_to_requests_sent_before_the_decrease_do_not_raise_the_level():
    pacer, _ = fake_pacer(8)
    with ThreadPoolExecutor(max_workers=1) as old, ThreadPoolExecutor(max_workers=1) as new:
        old.submit(send, pacer).result()
        new.submit(round_of_429, pacer).result()
        old.submit(pacer.answered).result()
        assert pacer.level == pytest.approx(5.6)
        new.submit(send, pacer).result()
        new.submit(pacer.answered).result()
        assert pacer.level == pytest.approx(5.6 + 1 / 5.6)  # 6.6 is below the last limit, 8: a full step


def test_never_below_one_never_above_the_ceiling():
    pacer, _ = fake_pacer(8, first_pause_s=0.0)
    levels = []
    for _ in range(10):
        round_of_429(pacer)
        levels.append(pacer.level)
    assert levels == pytest.approx([5.6, 3.92, 2.744, 1.9208, 1.34456, 1, 1, 1, 1, 1])
    assert pacer.level == 1.0 and pacer.stats()["lowest_level"] == 1.0
    assert pacer.stats()["decreases"] == 10  # still one per round at the floor
    answers = 0
    while pacer.level < 8.0:
        before = answer(pacer)
        answers += 1
        # the last 429 came at level 1: the whole climb is near or above that limit, so slow
        assert pacer.level == pytest.approx(min(8.0, before + 1 / before / 8))
    assert answers == 251  # about 4 * (8**2 - 1**2): +1/8 per round of L answers
    for _ in range(20):
        answer(pacer)
        assert pacer.level == 8.0


def test_growth_is_fast_up_to_one_below_the_last_limit_and_eight_times_slower_near_it():
    pacer, _ = fake_pacer(8)
    round_of_429(pacer)  # at level 8: the limit seen is 8
    assert pacer.level == pytest.approx(5.6)
    fast = slow = 0
    while pacer.level < 8.0 and fast + slow < 200:
        before = answer(pacer)
        if before + 1.0 < 8.0:
            fast += 1
            assert pacer.level == pytest.approx(before + 1 / before)
        else:
            slow += 1
            assert pacer.level == pytest.approx(min(8.0, before + 1 / before / 8))
        assert 5.6 < pacer.level <= 8.0
    assert pacer.level == 8.0
    assert fast == 9  # about (7**2 - 5.6**2) / 2: +1 per round of L answers, up to 7
    assert slow == 58  # about 8 * (8**2 - 7**2) / 2: +1/8 per round from 7 on


def test_retry_after_is_honoured_up_to_ten_minutes():
    pacer, fake = fake_pacer(8)
    assert round_of_429(pacer, 7.0) == 7.0
    send(pacer)
    assert fake.sleeps == [7.0]
    assert round_of_429(pacer, 0.25) == 0.25
    assert round_of_429(pacer, 600.0) == 600.0  # the longest hint taken
    assert pacer.level == pytest.approx(8 * 0.7**3)


@pytest.mark.parametrize("retry_after", [0.0, -3.0, 600.5, 3600.0, math.inf, math.nan])
def test_a_retry_after_that_is_no_hint_gets_the_pacers_own_pause(retry_after):
    """Retry-After: 0 (or negative, or absurd) is no advice after a 429: the pacer's own doubling pause applies."""
    pacer, fake = fake_pacer(8)
    assert round_of_429(pacer, retry_after) == 1.0
    send(pacer)
    assert fake.sleeps[0] == 1.0  # every worker waits it out, as without a Retry-After
    assert round_of_429(pacer, retry_after) == 2.0  # and it doubles while 429s continue
    with pacer.slot():
        pacer.answered()
    assert round_of_429(pacer, retry_after) == 1.0


def test_a_late_429_of_the_same_round_can_only_lengthen_the_pause():
    pacer, fake = fake_pacer(8)
    with ThreadPoolExecutor(max_workers=1) as other:
        other.submit(send, pacer).result()
        assert round_of_429(pacer, None) == 1.0
        assert other.submit(pacer.rate_limited, None).result() == 1.0  # no growth for the same round
        assert other.submit(pacer.rate_limited, 5.0).result() == 5.0
    send(pacer)
    assert fake.sleeps == [5.0] and pacer.level == pytest.approx(5.6)


def test_pauses_without_retry_after_grow_then_reset_after_an_answer():
    pacer, _ = fake_pacer(8)
    assert [round_of_429(pacer) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    with pacer.slot():
        pacer.answered()
    assert round_of_429(pacer) == 1.0


def test_waiting_workers_sleep_out_the_pause():
    pacer, fake = fake_pacer(8)
    pacer.rate_limited(None)
    send(pacer)
    assert fake.sleeps == [1.0]
    send(pacer)
    assert fake.sleeps == [1.0]


def test_patience_raises_rate_limit_exhausted():
    pacer, fake = fake_pacer(8)
    while fake.now < 850:  # 429 after 429 (30 s pauses by now) for over 14 minutes
        round_of_429(pacer)
    fake.now = 900.0
    with pytest.raises(RateLimitExhausted, match=r"429 \(rate limited\) for 900 s without serving a request"):
        send(pacer)
    with pytest.raises(RateLimitExhausted, match="TeleCMI kept answering 429"):
        pacer.rate_limited(None)


def test_an_answer_restarts_patience_and_a_long_retry_after_cannot_outwait_it():
    pacer, fake = fake_pacer(8, patience_s=300.0)
    round_of_429(pacer)
    fake.now = 299.0
    with pacer.slot():
        pacer.answered()
    fake.now = 1000.0
    send(pacer)  # served at t=299, so patience starts over
    round_of_429(pacer, 500.0)
    limited_at = fake.now
    with pytest.raises(RateLimitExhausted):
        send(pacer)
    assert fake.now == limited_at + 300.0  # woke at the end of patience, not after the whole 500 s


def test_wait_scale_scales_pauses_and_patience():
    pacer, fake = fake_pacer(8, wait_scale=0.01)
    assert round_of_429(pacer) == pytest.approx(0.01)
    assert round_of_429(pacer) == pytest.approx(0.02)
    assert round_of_429(pacer, 10.0) == pytest.approx(0.1)
    fake.now = 9.0  # patience: 900 s * 0.01
    with pytest.raises(RateLimitExhausted, match="for 9 s"):
        send(pacer)


def test_log_lines_say_from_to_and_why_and_are_rate_limited(caplog):
    pacer, fake = fake_pacer(8, log_interval_s=5.0)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        round_of_429(pacer)  # 8 -> 5.6 at t=0, pause 1 s
        round_of_429(pacer)  # 5.6 -> 3.92 at t=1: within 5 s, not logged
        fake.now = 10.0
        while pacer.level < 4:  # 3 -> 4
            answer(pacer)
        while pacer.level < 5:  # 4 -> 5, also at t=10: within 5 s, not logged
            answer(pacer)
        for _ in range(3):  # no whole step: nothing to log, nothing counted
            answer(pacer)
        fake.now = 20.0
        while pacer.level < 6:  # 5 -> 6
            answer(pacer)
    messages = [record.getMessage() for record in caplog.records]
    assert all(record.levelno == logging.INFO for record in caplog.records)
    assert messages == [
        "Concurrency 8 -> 5: TeleCMI is rate limiting (HTTP 429); pausing 1.0 s",
        "Concurrency 3 -> 4: answers flowing (1 earlier changes not logged)",
        "Concurrency 5 -> 6: answers flowing (1 earlier changes not logged)",
    ]


def test_level_one_lets_exactly_one_request_through():
    pacer, _ = fake_pacer(4, first_pause_s=0.0)  # the rate's waits on the fake clock: only the level blocks
    for _ in range(4):  # 4 -> 2.8 -> 1.96 -> 1.372 -> 1 (not 0.96)
        round_of_429(pacer)
    assert pacer.level == 1.0
    entered = threading.Event()
    with pacer.slot():
        worker = threading.Thread(target=lambda: (send(pacer), entered.set()))
        worker.start()
        assert not entered.wait(0.05)  # blocked while the one slot is taken
    assert entered.wait(2.0)  # woken by the release
    worker.join(2.0)
    assert pacer.in_flight == 0


def test_a_rising_level_wakes_a_waiting_worker():
    pacer, _ = fake_pacer(4, first_pause_s=0.0)
    round_of_429(pacer)
    round_of_429(pacer)  # 4 -> 2.8 -> 1.96: one slot, and the last limit is 2.8
    assert pacer.level == pytest.approx(1.96)
    entered = threading.Event()
    with pacer.slot():
        worker = threading.Thread(target=lambda: (send(pacer), entered.set()))
        worker.start()
        assert not entered.wait(0.05)
        pacer.answered()  # 1.96 -> 2.02 (a slow step, near the limit) while this slot is still held
        assert pacer.level == pytest.approx(1.96 + 1 / 1.96 / 8)
        assert entered.wait(2.0)
    worker.join(2.0)


def test_a_waiting_worker_goes_once_the_real_pause_ends():
    pacer = Pacer(4, LOGGER, wait_scale=0.05)  # first pause: 50 ms of real time
    started = time.monotonic()
    round_of_429(pacer)
    send(pacer)
    assert time.monotonic() - started >= 0.045


def test_in_flight_is_held_at_floor_of_the_level_with_16_threads():
    pacer, _ = fake_pacer(16, first_pause_s=0.0)
    for _ in range(3):
        round_of_429(pacer)
    assert pacer.level == pytest.approx(5.488)  # 16 * 0.7**3: five slots
    go = threading.Event()

    def hold() -> None:
        with pacer.slot():
            go.wait(5.0)

    threads = [threading.Thread(target=hold) for _ in range(16)]
    for thread in threads:
        thread.start()
    wait_until(lambda: pacer.in_flight == 5)
    time.sleep(0.05)
    assert pacer.in_flight == 5  # the eleven others wait
    go.set()
    for thread in threads:
        thread.join(5.0)
    assert pacer.in_flight == 0


def test_in_flight_never_exceeds_the_level_while_it_climbs_under_16_threads():
    pacer, _ = fake_pacer(16, first_pause_s=0.0)
    for _ in range(5):
        round_of_429(pacer)
    assert pacer.level == pytest.approx(2.68912)  # 16 * 0.7**5, the last limit 3.8416
    over: list[tuple[int, float]] = []

    def work() -> None:
        for _ in range(64):  # 987 answers reach 16: fast to 2.84, then +1/8 per round of L answers
            with pacer.slot():
                if pacer.in_flight > int(pacer.level):
                    over.append((pacer.in_flight, pacer.level))
                time.sleep(0.0005)
                pacer.answered()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert over == []
    assert pacer.in_flight == 0 and pacer.level == 16.0
    assert pacer.stats()["answered"] == 1024


def test_near_the_limit_it_probes_rarely(monkeypatch):
    """A TeleCMI that serves six requests at a time and refuses the round that sends a seventh."""

    def rounds_between_429s(pacer: Pacer) -> list[int]:
        gaps, rounds = [], 0
        while pacer.stats()["answered"] < 1200:
            if int(pacer.level) > 6:
                round_of_429(pacer)
                gaps.append(rounds)
                rounds = 0
            else:
                rounds += 1
                for _ in range(int(pacer.level)):
                    answer(pacer)
        return gaps

    pacer, _ = fake_pacer(8, first_pause_s=0.0)
    gaps = rounds_between_429s(pacer)
    assert gaps[:2] == [0, 2]  # the ceiling is refused at once; 5.6 -> 7 in two fast rounds
    assert min(gaps[2:]) >= 9  # then ~5 -> ~6 fast, and ~6 -> 7 at 1/8 per round: a 429 every 9 to 11 rounds
    assert len(gaps) == 23 and pacer.stats()["lowest_level"] > 4.9  # 0.7 of 7.x keeps four slots at least

    monkeypatch.setattr(Pacer, "SLOW_NEAR_LIMIT", 1)  # without slow probing, the limit is hit every 2-3 rounds
    pacer, _ = fake_pacer(8, first_pause_s=0.0)
    gaps = rounds_between_429s(pacer)
    assert max(gaps) <= 3 and len(gaps) > 3 * 23


# The rate ------------------------------------------------------------------------------------------------------


def test_the_first_429_sets_a_rate_of_half_the_last_second_and_requests_then_start_evenly():
    pacer, fake = fake_pacer(8, first_pause_s=0.5)
    for _ in range(9):  # nine requests at t=0, the ninth refused
        send(pacer)
    pacer.rate_limited(None)
    assert pacer.rate == pytest.approx(4.5)
    for _ in range(4):
        send(pacer)
    assert fake.sleeps == pytest.approx([0.5, 1 / 4.5, 1 / 4.5, 1 / 4.5])  # the pause, then one start every 1/R


def test_the_rate_doubles_every_half_second_by_a_fifth_at_most_per_answer_until_the_next_429():
    pacer, fake = fake_pacer(8, first_pause_s=0.5)
    for _ in range(9):
        send(pacer)
    pacer.rate_limited(None)  # 4.5 a second, and a pause to t=0.5
    then, rate = 0.5, 4.5
    while fake.now < 3.0:
        answer(pacer)  # one answer every 1/R: the growth per answer is the smaller of the two
        assert pacer.rate == pytest.approx(rate * min(2 ** ((fake.now - then) / 0.5), 1 + max(0.2, 1 / rate)))
        then, rate = fake.now, pacer.rate
    assert rate > 20


def test_a_refusal_right_at_the_rate_restarts_just_under_it_and_probes_again_only_after_tens_of_seconds():
    """Against a strict limit of 20 a second (a token bucket of burst 1), as in the simulated runs below."""
    pacer, fake = fake_pacer(8, first_pause_s=0.5)
    limiter = TokenBucket(20, 1, clock=fake.clock)
    refusals = []
    while fake.now < 120:
        with pacer.slot():
            served = limiter.take()
        if served:
            pacer.answered()
        else:
            pacer.rate_limited(None)
            refusals.append(round(fake.now, 1))
    assert refusals[0] == 0.0 and 2.0 < refusals[1] < 4.0  # the start, then the end of the doubling
    probes = refusals[2:]
    assert len(probes) <= 4 and all(b - a >= 20 for a, b in zip(probes, probes[1:], strict=False))  # then rarely
    assert 19.0 <= pacer.rate <= 20.5


def test_the_first_request_after_a_pause_waits_for_the_pause_only():
    """However low the rate, a storm of 429s is spaced by the doubling pauses, so patience measures TeleCMI."""
    pacer, fake = fake_pacer(8, first_pause_s=0.01)
    round_of_429(pacer)  # one request in the last second: half a request a second
    assert pacer.rate == 0.5
    for _ in range(5):
        round_of_429(pacer)
    assert fake.sleeps == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16])  # the pauses, not 2 s each


def test_a_round_in_which_nothing_was_served_leaves_the_rate_alone():
    """A storm of 429s (or an outage) says nothing of the rate: the pauses, which double, deal with it."""
    pacer, _ = fake_pacer(8, first_pause_s=0.01)
    for _ in range(9):
        send(pacer)
    pacer.rate_limited(None)
    rate = pacer.rate
    for _ in range(10):
        round_of_429(pacer)
    assert pacer.rate == rate and pacer.stats()["decreases"] == 11


# The pacer against simulated limiters --------------------------------------------------------------------------


class Sim:
    """Workers sending through a pacer to a limiter, on a fake clock, one event at a time.

    Each worker loops as one of the connector's threads: take a slot (`Pacer._try_acquire`, the step
    `slot()` repeats), send, release the slot, report the answer. A request reaches the limiter up to
    `jitter_s` after it starts (or `jitter(random)` seconds after, a model of real threads' timing); a served
    one is answered after about `latency_s`, a refused one at once (as the simulator answers a 429 before its
    latency). Each worker has its own thread-local, as a thread. `learned`: what an earlier sync learned
    (`Pacer.resume`). `takes`: when each request reached the limiter, and whether it was served.
    """

    def __init__(
        self,
        limiter,
        latency_s: float,
        retry_after=None,
        workers: int = 8,
        jitter_s=0.0005,
        seed=1,
        jitter=None,
        learned=None,
    ):
        self.now = 0.0
        self.limiter = limiter(lambda: self.now)
        self.pacer = Pacer(workers, LOGGER, clock=lambda: self.now, sleep=self._no_sleep)
        self.pacer.resume(learned)
        self.latency_s, self.retry_after = latency_s, retry_after
        self.jitter = jitter or (lambda rnd: rnd.uniform(0, jitter_s))
        self.random = random.Random(seed)
        self.locals = [SimpleNamespace() for _ in range(workers)]
        self.events: list = [(0.0, w, w, "try") for w in range(workers)]
        self.waiting: set[int] = set()
        self.served = self.refused = 0
        self.takes: list[tuple[float, bool]] = []
        self._n = workers

    @staticmethod
    def _no_sleep(seconds: float) -> None:
        raise AssertionError("the simulation never sleeps")

    def _at(self, when: float, worker: int, what: str) -> None:
        self._n += 1
        heapq.heappush(self.events, (when, self._n, worker, what))

    def run(self, duration_s: float) -> "Sim":
        while self.events and self.events[0][0] <= duration_s:
            self.now, _, worker, what = heapq.heappop(self.events)
            self.pacer._local = self.locals[worker]
            if what == "try":
                self._try(worker)
            elif worker not in self.waiting:  # an answer
                self.pacer._release()
                if what == "served":
                    self.served += 1
                    self.pacer.answered()
                else:
                    self.refused += 1
                    self.pacer.rate_limited(self.retry_after)
                self._at(self.now + 0.0003, worker, "try")  # the worker's own work between requests
                for other in self.waiting:  # a release wakes the workers waiting for a slot
                    self._at(self.now, other, "try")
                self.waiting.clear()
        return self

    def _try(self, worker: int) -> None:
        wait = self.pacer._try_acquire()
        if wait is None:
            arrives = self.now + self.jitter(self.random)
            now, self.now = self.now, arrives
            served = self.limiter.take()
            self.takes.append((arrives, served))
            self.now = now
            latency = self.latency_s * self.random.uniform(0.9, 1.1) if served else 0.0005
            self._at(arrives + latency, worker, "served" if served else "refused")
        elif math.isinf(wait):
            self.waiting.add(worker)
        else:
            self._at(self.now + wait, worker, "try")


SHAPES = {  # name: (limiter maker for a rate and a clock, its burst)
    "token bucket, burst 1": (lambda r: lambda clock: TokenBucket(r, 1, clock=clock), lambda r: 1),
    "token bucket, burst = rate": (lambda r: lambda clock: TokenBucket(r, r, clock=clock), lambda r: r),
    "token bucket, burst 5 x rate": (lambda r: lambda clock: TokenBucket(r, 5 * r, clock=clock), lambda r: 5 * r),
    "token bucket, burst 5 x rate, whole seconds": (
        lambda r: lambda clock: TokenBucket(r, 5 * r, refill="per_second", clock=clock),
        lambda r: 5 * r,
    ),
    "fixed window of N a second": (lambda r: lambda clock: FixedWindow(r, clock=clock), lambda r: r),
}


@pytest.mark.slow  # 1.6 million simulated events: `make test` runs it, `make unit` leaves it out
@pytest.mark.parametrize("shape", list(SHAPES))
def test_any_limiter_gets_85_percent_of_its_rate_or_more_with_5_percent_refused_or_less(shape):
    """5, 20 and 50 a second, 2, 50 and 100 ms a request, 429s without Retry-After, with Retry-After: 0 and 1.

    A minute of fake time each (1,000 requests at 5 a second's 80 s): the share of the rate is the requests
    served over what the limiter allowed, its burst included.
    """
    make, burst = SHAPES[shape]
    misses = []
    for rate in (5, 20, 50):
        duration_s = max(60.0, 400 / rate)
        allowed = rate * duration_s + burst(rate)
        for latency_s in (0.002, 0.05, 0.1):
            for retry_after in (None, 0.0, 1.0):
                sim = Sim(make(rate), latency_s, retry_after).run(duration_s)
                share, refused = sim.served / allowed, sim.refused / (sim.served + sim.refused)
                if share < 0.85 or refused > 0.05:
                    misses.append(
                        f"{rate}/s {latency_s * 1000:g} ms Retry-After {retry_after}: {share:.1%}, {refused:.1%}"
                    )
    assert misses == []


def test_retry_after_zero_from_a_fast_api_does_not_hammer_it():
    """The review's case: 2 ms a request, the simulator's bucket (20 a second, burst 20), every 429 with Retry-After: 0."""
    sim = Sim(lambda clock: TokenBucket(20, 20, clock=clock), 0.002, retry_after=0.0).run(8.0)
    assert sim.refused <= 10  # not 387 in 8 s
    sim.run(60.0)
    assert sim.refused / (sim.served + sim.refused) <= 0.05 and sim.served >= 0.85 * (20 * 60 + 20)


def test_without_a_rate_limit_the_simulated_workers_never_wait():
    sim = Sim(lambda clock: SimpleNamespace(take=lambda: True), 0.05).run(10.0)
    assert sim.pacer.rate is None and sim.refused == 0
    assert sim.served >= 8 * 10 / 0.0555 * 0.95  # eight in flight all the time: the latency, and nothing more


# Lone 429s, the margin, and what a sync learned ------------------------------------------------------------


def anchored(fake: FakeTime, pacer: Pacer, limiter, until_s: float) -> None:
    """Requests one after the other against `limiter` (on the fake clock) until `until_s`."""
    while fake.now < until_s:
        with pacer.slot():
            served = limiter.take()
        if served:
            pacer.answered()
        else:
            pacer.rate_limited(None)


def test_the_lone_tuning():
    assert (Pacer.LONE_SERVED, Pacer.LONE_PAUSE) == (8, 1.0)


def test_a_lone_429_once_answers_flow_costs_an_interval_and_429s_that_keep_coming_pause_every_worker():
    pacer, fake = fake_pacer(8)
    for _ in range(9):
        send(pacer)
    assert pacer.rate_limited(None) == 1.0  # the first round: no rate yet, the pacer's own pause
    for _ in range(Pacer.LONE_SERVED):
        answer(pacer)
    rate = pacer.rate
    assert round_of_429(pacer) == pytest.approx(1 / rate)  # lone: one interval of the rate, not 1 s
    assert round_of_429(pacer) == 1.0  # at once another: 429s keep coming, every worker pauses ...
    assert round_of_429(pacer) == 2.0  # ... doubling while they do
    for _ in range(Pacer.LONE_SERVED):
        answer(pacer)
    assert round_of_429(pacer) < 1.0  # lone again


def test_the_retry_after_of_a_lone_429_holds_the_refused_request_only_while_429s_keep_coming_hold_all():
    pacer, fake = fake_pacer(8)
    with ThreadPoolExecutor(max_workers=1) as other:
        for _ in range(9):
            send(pacer)
        pacer.rate_limited(5.0)  # the first round: every worker pauses 5 s
        for _ in range(Pacer.LONE_SERVED):
            answer(pacer)
        assert round_of_429(pacer, 5.0) == pytest.approx(5.0)  # lone: this thread waits 5 s ...
        refused_at = fake.now
        other.submit(answer, pacer).result()  # ... the others go on at the rate
        assert fake.now - refused_at < 1.0
        send(pacer)  # this one waits its Retry-After
        assert fake.now == pytest.approx(refused_at + 5.0)
        assert round_of_429(pacer, 5.0) == pytest.approx(5.0)  # at once another: this time every worker pauses
        paused_at = fake.now
        other.submit(send, pacer).result()
        assert fake.now == pytest.approx(paused_at + 5.0)


def test_a_lone_refusal_under_the_estimate_widens_the_margin_and_keeps_the_estimate():
    """A request that arrived early (a client's timing is never exact): the next ones start a millisecond later."""
    pacer, fake = fake_pacer(8, first_pause_s=0.5)
    anchored(fake, pacer, TokenBucket(20, 1, clock=fake.clock), 12.0)  # converged: 20 a second, just under
    rate, anchor = pacer.rate, pacer._rates.anchor
    assert pacer._rates.margin_s == 0.0 and 19.0 < rate <= anchor < 20.0
    round_of_429(pacer)  # refused though under the estimate
    assert (pacer.rate, pacer._rates.anchor) == (rate, anchor)
    assert pacer._rates.margin_s == pytest.approx(0.001)
    send(pacer)  # one interval's pause
    with pacer.slot():
        pass
    assert fake.sleeps[-1] == pytest.approx(1 / rate + 0.001, abs=1e-6)  # then 1/R and the margin apart
    for _ in range(100):
        answer(pacer)
    assert pacer._rates.margin_s == pytest.approx(0.0005)  # narrowed while none is refused


def test_a_refusal_right_after_one_taken_for_early_was_no_accident():
    pacer, fake = fake_pacer(8, first_pause_s=0.5)
    anchored(fake, pacer, TokenBucket(20, 1, clock=fake.clock), 12.0)
    anchor = pacer._rates.anchor
    round_of_429(pacer)
    assert pacer._rates.margin_s == pytest.approx(0.001)
    round_of_429(pacer)  # the next request refused too: the limiter had nothing left
    assert pacer._rates.margin_s == 0.0 and pacer._rates.anchor != anchor


def test_refusals_that_come_often_are_a_lower_limit_not_timing():
    pacer, fake = fake_pacer(8, first_pause_s=0.5)
    anchored(fake, pacer, TokenBucket(20, 1, clock=fake.clock), 12.0)
    anchored(fake, pacer, TokenBucket(14, 1, clock=fake.clock), 30.0)  # TeleCMI lowers its limit
    assert 12.0 < pacer.rate < 14.0 and pacer._rates.anchor < 14.5
    assert pacer._rates.margin_s == 0.0  # the refusals taken for early arrivals at first were the limit's


def test_a_pacer_resumed_from_what_a_sync_learned_paces_from_its_first_request():
    pacer, fake = fake_pacer(8, wall_ms=lambda: 1_700_000_000_000)
    pacer.resume(Learned(20.0, 1_600_000_000_000, 2.0))
    assert pacer.rate == pytest.approx(19.8)  # just under it
    assert pacer.learned() == Learned(20.0, 1_600_000_000_000, 2.0)
    for _ in range(5):
        answer(pacer)  # no burst at the start: evenly spaced from the first
    assert fake.sleeps == pytest.approx([1 / 19.8 + 0.002] * 4, rel=1e-3)
    round_of_429(pacer)  # a 429 confirms it
    assert pacer.learned().confirmed_at == 1_700_000_000_000


def test_nothing_learned_without_a_429_nor_while_the_rate_doubles_nor_once_it_left_the_estimate_behind():
    pacer, fake = fake_pacer(8)
    pacer.resume(None)  # a state without it (0.3's): as without
    for _ in range(20):
        answer(pacer)
    assert pacer.learned() is None and pacer.rate is None and fake.sleeps == []
    for _ in range(9):
        send(pacer)
    pacer.rate_limited(None)
    assert pacer.rate is not None and pacer.learned() is None  # doubling: no estimate yet
    pacer, fake = fake_pacer(8)
    pacer.resume(Learned(5.0, 1_600_000_000_000))
    while pacer.learned() is not None and fake.now < 300:  # TeleCMI no longer refuses at 5 a second
        answer(pacer)
    assert pacer.rate >= 10.0 and fake.now < 150  # twice the estimate without a 429: probing again, nothing to keep


def test_snapshots_give_a_streams_requests_429s_estimate_and_pauses():
    pacer, fake = fake_pacer(8)
    before = pacer.snapshot()
    assert (
        summary(["calls"], before, before)
        == "Stream calls: 0 requests, 0 answered 429; no rate limit met; paused 0.0 s"
    )
    for _ in range(9):
        send(pacer)
    pacer.rate_limited(None)  # 1 s
    for _ in range(Pacer.LONE_SERVED):
        answer(pacer)
    after = pacer.snapshot()
    assert after.requests == 17 and after.rate_limited == 1 and after.paused_s == 1.0
    assert summary(["calls"], before, after) == (
        "Stream calls: 17 requests, 1 answered 429 (5.9%); allowed rate not estimated yet; paused 1.0 s"
    )
    pacer._rates.resume(19.6, 0.0, fake.now)
    assert "allowed rate estimated at 19.6 requests a second" in summary(["calls"], after, pacer.snapshot())
    assert summary(["a", "b"], after, after).startswith("Streams a, b: 0 requests")


# Simulated syncs under the jitter of real threads, and the second sync of each limiter ---------------------------

# A request's way from its start to the limiter, as measured against the simulator (2 cores, another process):
# within a millisecond or two, and one in twenty up to 5 ms more.
REAL_THREADS = {
    "up to 2 ms": lambda rnd: rnd.uniform(0, 0.002),
    "1 ms, one in 20 up to 5 ms more": lambda rnd: (
        rnd.uniform(0, 0.001) + (rnd.uniform(0, 0.005) if rnd.random() < 0.05 else 0.0)
    ),
}


def shares(sim: Sim, rate: float, burst: float, seconds: float, start: float = 0.0) -> tuple[float, float]:
    """Of the requests that reached the limiter in `seconds` from `start`: those served over those it allowed (its
    rate, and its burst), and those refused over all."""
    takes = [served for at, served in sim.takes if start <= at < start + seconds]
    return sum(takes) / (rate * seconds + burst), (len(takes) - sum(takes)) / max(1, len(takes))


@pytest.mark.slow
@pytest.mark.parametrize("jitter", list(REAL_THREADS))
def test_a_burst_of_one_gets_85_percent_of_its_rate_with_5_percent_refused_under_real_threads_jitter(jitter):
    """The limiters that mind a client's timing most: a token bucket of a burst of one refuses two requests closer
    than 1/rate. At the bench's rates (5 and 20 a second), 2, 50 and 100 ms, each 429 form."""
    make, burst = SHAPES["token bucket, burst 1"]
    misses = []
    for rate in (5, 20):
        duration_s = max(60.0, 400 / rate)
        for latency_s in (0.002, 0.05, 0.1):
            for retry_after in (None, 0.0, 1.0):
                sim = Sim(make(rate), latency_s, retry_after, jitter=REAL_THREADS[jitter]).run(duration_s)
                share, refused = shares(sim, rate, burst(rate), duration_s)
                if share < 0.85 or refused > 0.05:
                    misses.append(f"{rate}/s {latency_s * 1000:g} ms {retry_after}: {share:.1%}, {refused:.1%}")
    assert misses == []


def second_sync(make, rate: float, latency_s: float, retry_after, duration_s: float, jitter=None, first_s=None) -> Sim:
    """A sync against a fresh limiter of the same shape, from what a first sync (of `first_s`) against one learned."""
    first = Sim(make(rate), latency_s, retry_after, jitter=jitter).run(first_s or duration_s)
    learned = first.pacer.learned()
    assert learned is not None
    return Sim(make(rate), latency_s, retry_after, seed=2, jitter=jitter, learned=learned).run(duration_s)


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_second_sync_gets_90_percent_of_the_rate_from_its_first_seconds_with_1_percent_refused(shape):
    """What the first sync learned, the second starts from: 90% of the rate over its first 5 s and over the whole of it,
    1% refused at most."""
    make, burst = SHAPES[shape]
    misses = []
    for rate in (5, 20, 50):
        duration_s = max(60.0, 400 / rate)
        for latency_s in (0.002, 0.05, 0.1):
            for retry_after in (None, 1.0):
                sim = second_sync(make, rate, latency_s, retry_after, duration_s)
                early = shares(sim, rate, 0.0, 5.0)[0]  # of the rate: what the limiter banked is not the rate
                share, refused = shares(sim, rate, max(0.0, burst(rate) - rate), duration_s)
                if min(early, share) < 0.9 or refused > 0.01:
                    misses.append(
                        f"{rate}/s {latency_s * 1000:g} ms {retry_after}: {early:.1%}, {share:.1%}, {refused:.1%}"
                    )
    assert misses == []


@pytest.mark.slow
def test_a_second_sync_against_a_burst_of_one_under_real_threads_jitter_gets_90_percent_with_1_percent_refused():
    make, _ = SHAPES["token bucket, burst 1"]
    misses = []
    for rate in (5, 20):
        duration_s = max(60.0, 400 / rate)
        for latency_s in (0.002, 0.05, 0.1):
            for retry_after in (None, 1.0):
                sim = second_sync(make, rate, latency_s, retry_after, duration_s, REAL_THREADS["up to 2 ms"])
                early = shares(sim, rate, 0.0, 5.0)[0]
                share, refused = shares(sim, rate, 0.0, duration_s)
                if min(early, share) < 0.9 or refused > 0.01:
                    misses.append(
                        f"{rate}/s {latency_s * 1000:g} ms {retry_after}: {early:.1%}, {share:.1%}, {refused:.1%}"
                    )
    assert misses == []


def test_a_second_sync_against_a_burst_of_one_starts_at_its_rate_and_is_seldom_refused():
    """20 a second, a burst of one, 2 ms, arrivals up to 2 ms late: without what the first sync learned the second
    would start as the first (a burst refused, a pause, the rate doubling up from one a second)."""
    make, _ = SHAPES["token bucket, burst 1"]
    jitter = REAL_THREADS["up to 2 ms"]
    first = Sim(make(20), 0.002, None, jitter=jitter).run(40.0)
    share, refused = shares(first, 20, 0, 5.0)
    assert share < 0.7 and refused > 0.05
    second = second_sync(make, 20, 0.002, None, 20.0, jitter, first_s=40.0)
    for seconds in (2.0, 5.0, 20.0):
        assert shares(second, 20, 0, seconds)[0] >= 0.9, seconds
    assert shares(second, 20, 0, 20.0)[1] <= 0.01
