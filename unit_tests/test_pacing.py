"""The adaptive concurrency (AIMD) pacer: level, rounds, pauses, patience, logging, and threads."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from source_telecmi.pacing import Pacer, RateLimitExhausted

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


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_starts_at_the_ceiling():
    pacer, _ = fake_pacer(8)
    assert (pacer.ceiling, pacer.level, pacer.in_flight) == (8, 8.0, 0)
    assert pacer.stats() == {"answered": 0, "rate_limited": 0, "decreases": 0, "lowest_level": 8.0}
    with pytest.raises(ValueError):
        Pacer(0, LOGGER)


def test_answers_without_any_429_keep_the_ceiling(caplog):
    pacer, fake = fake_pacer(4)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        for _ in range(50):
            with pacer.slot():
                pacer.answered()
    assert pacer.level == 4.0 and pacer.in_flight == 0
    assert fake.sleeps == [] and caplog.records == []
    assert pacer.stats()["answered"] == 50


def test_a_429_halves_once_per_round_not_once_per_429():
    pacer, _ = fake_pacer(8)
    workers = [ThreadPoolExecutor(max_workers=1) for _ in range(8)]  # one thread each, as the CDK's workers
    try:
        for worker in workers:  # eight requests in flight at level 8 ...
            worker.submit(send, pacer).result()
        for worker in workers:  # ... all answered 429
            worker.submit(pacer.rate_limited, None).result()
        assert pacer.level == 4.0
        assert pacer.stats()["decreases"] == 1 and pacer.stats()["rate_limited"] == 8
        workers[3].submit(round_of_429, pacer).result()  # sent after the decrease: a new round
        assert pacer.level == 2.0 and pacer.stats()["decreases"] == 2
    finally:
        for worker in workers:
            worker.shutdown()


def test_answers_to_requests_sent_before_the_decrease_do_not_raise_the_level():
    pacer, _ = fake_pacer(8)
    with ThreadPoolExecutor(max_workers=1) as old, ThreadPoolExecutor(max_workers=1) as new:
        old.submit(send, pacer).result()
        new.submit(round_of_429, pacer).result()
        old.submit(pacer.answered).result()
        assert pacer.level == 4.0
        new.submit(send, pacer).result()
        new.submit(pacer.answered).result()
        assert pacer.level == 4.25


def test_never_below_one_never_above_the_ceiling():
    pacer, _ = fake_pacer(8, first_pause_s=0.0)
    for _ in range(10):
        round_of_429(pacer)
    assert pacer.level == 1.0 and pacer.stats()["lowest_level"] == 1.0
    for _ in range(200):
        with pacer.slot():
            pacer.answered()
    assert pacer.level == 8.0


def test_additive_increase_climbs_back_to_the_ceiling():
    pacer, _ = fake_pacer(8)
    round_of_429(pacer)
    assert pacer.level == 4.0
    answers = 0
    while pacer.level < 8.0 and answers < 100:
        with pacer.slot():
            pacer.answered()
        answers += 1
        assert 4.0 < pacer.level <= 8.0
    assert pacer.level == 8.0
    assert 18 <= answers <= 30  # about (8**2 - 4**2) / 2: +1 per round of L answers


def test_retry_after_is_honoured():
    pacer, fake = fake_pacer(8)
    assert round_of_429(pacer, 7.0) == 7.0
    send(pacer)
    assert fake.sleeps == [7.0]
    assert round_of_429(pacer, 0.0) == 0.0  # Retry-After: 0 means no pause at all
    send(pacer)
    assert fake.sleeps == [7.0]
    assert pacer.level == 2.0


def test_a_late_429_of_the_same_round_can_only_lengthen_the_pause():
    pacer, fake = fake_pacer(8)
    with ThreadPoolExecutor(max_workers=1) as other:
        other.submit(send, pacer).result()
        assert round_of_429(pacer, None) == 1.0
        assert other.submit(pacer.rate_limited, None).result() == 1.0  # no growth for the same round
        assert other.submit(pacer.rate_limited, 5.0).result() == 5.0
    send(pacer)
    assert fake.sleeps == [5.0] and pacer.level == 4.0


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
    pacer, fake = fake_pacer(8)
    round_of_429(pacer)
    fake.now = 899.0
    with pacer.slot():
        pacer.answered()
    fake.now = 1800.0
    send(pacer)  # served at t=899, so patience starts over
    round_of_429(pacer, 3600.0)
    with pytest.raises(RateLimitExhausted):
        send(pacer)
    assert fake.now == 2700.0  # woke at the end of patience, not after the whole hour


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
        round_of_429(pacer)  # 8 -> 4 at t=0, pause 1 s
        round_of_429(pacer)  # 4 -> 2 at t=1: within 5 s, not logged
        fake.now = 10.0
        while pacer.level < 3:
            with pacer.slot():
                pacer.answered()
        for _ in range(3):  # 2 -> 3 then up: further steps within 5 s are not logged
            with pacer.slot():
                pacer.answered()
    messages = [record.getMessage() for record in caplog.records]
    assert all(record.levelno == logging.INFO for record in caplog.records)
    assert messages == [
        "Concurrency 8 -> 4: TeleCMI is rate limiting (HTTP 429); pausing 1.0 s",
        "Concurrency 2 -> 3: answers flowing (1 earlier changes not logged)",
    ]


def test_level_one_lets_exactly_one_request_through():
    pacer = Pacer(4, LOGGER, first_pause_s=0.0)
    round_of_429(pacer)
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
    pacer = Pacer(2, LOGGER, first_pause_s=0.0)
    round_of_429(pacer)
    assert pacer.level == 1.0
    entered = threading.Event()
    with pacer.slot():
        worker = threading.Thread(target=lambda: (send(pacer), entered.set()))
        worker.start()
        assert not entered.wait(0.05)
        pacer.answered()  # 1 -> 2 while this slot is still held
        assert entered.wait(2.0)
    worker.join(2.0)


def test_a_waiting_worker_goes_once_the_real_pause_ends():
    pacer = Pacer(4, LOGGER, wait_scale=0.05)  # first pause: 50 ms of real time
    started = time.monotonic()
    round_of_429(pacer)
    send(pacer)
    assert time.monotonic() - started >= 0.045


def test_in_flight_is_held_at_floor_of_the_level_with_16_threads():
    pacer = Pacer(16, LOGGER, first_pause_s=0.0)
    round_of_429(pacer)
    round_of_429(pacer)
    assert pacer.level == 4.0
    go = threading.Event()

    def hold() -> None:
        with pacer.slot():
            go.wait(5.0)

    threads = [threading.Thread(target=hold) for _ in range(16)]
    for thread in threads:
        thread.start()
    wait_until(lambda: pacer.in_flight == 4)
    time.sleep(0.05)
    assert pacer.in_flight == 4  # the twelve others wait
    go.set()
    for thread in threads:
        thread.join(5.0)
    assert pacer.in_flight == 0


def test_in_flight_never_exceeds_the_level_while_it_climbs_under_16_threads():
    pacer = Pacer(16, LOGGER, first_pause_s=0.0)
    for _ in range(3):
        round_of_429(pacer)
    assert pacer.level == 2.0
    over: list[tuple[int, float]] = []

    def work() -> None:
        for _ in range(25):
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
    assert pacer.stats()["answered"] == 400
