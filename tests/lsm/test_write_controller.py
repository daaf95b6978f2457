"""The write controller (hedge/lsm/write_controller.py): backlog steps,
the rate at each step, and the pacing of write groups on a fake clock."""
from __future__ import annotations

import pytest

from hedge.lsm.write_controller import (DELAYED_WRITE_RATE, MAX_DELAY, MAX_IMMUTABLES, MIN_DELAY,
                                        WriteController, debt_steps, rate_at)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_backlog_below_the_slowdown_trigger_with_memtables_flushing():
    assert [debt_steps(n, 0, 8) for n in range(8)] == [0] * 8
    assert debt_steps(7, MAX_IMMUTABLES - 1, 8) == 0


def test_one_step_at_the_slowdown_trigger_and_one_more_per_table_beyond():
    assert [debt_steps(n, 0, 8) for n in (8, 9, 10, 11)] == [1, 2, 3, 4]


def test_memtables_waiting_for_flush_are_a_backlog_of_their_own():
    assert debt_steps(0, MAX_IMMUTABLES, 8) == 1
    assert debt_steps(10, MAX_IMMUTABLES, 8) == 3


def test_the_rate_halves_with_each_step():
    assert rate_at(1) == DELAYED_WRITE_RATE
    assert [rate_at(k) / rate_at(k + 1) for k in (1, 2, 3)] == [2.0, 2.0, 2.0]
    assert rate_at(1000) > 0
    with pytest.raises(ValueError, match="no rate limit"):
        rate_at(0)


def test_no_delay_without_backlog():
    wc = WriteController(FakeClock())
    assert wc.delay(1 << 30, 0) == 0.0
    assert not wc.pacing and wc.delays == 0


def test_groups_wait_for_the_bytes_booked_before_them():
    clock = FakeClock()
    wc = WriteController(clock)
    nbytes = DELAYED_WRITE_RATE // 250
    t = nbytes / DELAYED_WRITE_RATE                    # ~4 ms of writing at step 1
    assert wc.delay(nbytes, 1) == 0.0                  # the first group goes at once
    assert wc.delay(nbytes, 1) == pytest.approx(t)
    assert wc.delay(nbytes, 1) == pytest.approx(2 * t)
    clock.now += 2 * t                                 # the groups waited their turns
    assert wc.delay(nbytes, 2) == pytest.approx(t)     # booked at step 1 before; this one at half the rate
    assert wc.delay(nbytes, 2) == pytest.approx(3 * t)
    assert wc.delays == 4 and wc.delayed_seconds == pytest.approx(7 * t)


def test_a_debt_under_the_minimum_is_carried_not_slept():
    clock = FakeClock()
    wc = WriteController(clock)
    small = int(DELAYED_WRITE_RATE * MIN_DELAY / 4) + 1     # a little over a quarter of MIN_DELAY
    waits = [wc.delay(small, 1) for _ in range(6)]
    # Booked ahead of each: 0, 1/4, 2/4, 3/4 (not slept), then 4/4 and 5/4 of MIN_DELAY.
    assert waits[:4] == [0.0] * 4
    assert waits[4] == pytest.approx(4 * small / DELAYED_WRITE_RATE) and waits[4] >= MIN_DELAY
    assert waits[5] == pytest.approx(5 * small / DELAYED_WRITE_RATE)


def test_no_single_wait_exceeds_the_maximum_and_the_excess_is_forgiven():
    clock = FakeClock()
    wc = WriteController(clock)
    huge = int(DELAYED_WRITE_RATE * 2.0)               # two seconds of writing
    assert wc.delay(huge, 1) == 0.0
    assert wc.delay(1, 1) == MAX_DELAY
    clock.now += MAX_DELAY                             # the next group owes nothing more
    assert wc.delay(1, 1) == 0.0


def test_booking_starts_afresh_once_the_backlog_is_gone():
    clock = FakeClock()
    wc = WriteController(clock)
    nbytes = int(DELAYED_WRITE_RATE * 0.01)
    wc.delay(nbytes, 1)
    assert wc.delay(nbytes, 1) == pytest.approx(0.01)
    assert wc.delay(nbytes, 0) == 0.0 and not wc.pacing
    assert wc.delay(nbytes, 1) == 0.0                  # nothing owed from before
