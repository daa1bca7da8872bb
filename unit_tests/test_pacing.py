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
    assert (Pacer.DECREASE, Pacer.SLOW_NEAR_LIMIT) == (0.7, 8)


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


def test_retry_after_is_honoured():
    pacer, fake = fake_pacer(8)
    assert round_of_429(pacer, 7.0) == 7.0
    send(pacer)
    assert fake.sleeps == [7.0]
    assert round_of_429(pacer, 0.0) == 0.0  # Retry-After: 0 means no pause at all
    send(pacer)
    assert fake.sleeps == [7.0]
    assert pacer.level == pytest.approx(3.92)


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
    pacer = Pacer(4, LOGGER, first_pause_s=0.0)
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
    pacer = Pacer(4, LOGGER, first_pause_s=0.0)
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
    pacer = Pacer(16, LOGGER, first_pause_s=0.0)
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
    pacer = Pacer(16, LOGGER, first_pause_s=0.0)
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
