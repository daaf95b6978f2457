"""InlineGate: every read asks the page cache while it answers; a window
of mostly unanswered attempts makes the gate ask for fewer (down to one in
MAX_SKIP), a window of answered ones for more again."""
from __future__ import annotations

import threading

from hedge.lsm.inline_gate import ANSWERED_BACK, GATE_WINDOW, MAX_SKIP, MISSED_SHARE, InlineGate


def window(gate: InlineGate, missed_share: float) -> None:
    """One judged window of attempts, ``missed_share`` of them unanswered."""
    missed = round(GATE_WINDOW * missed_share)
    for i in range(GATE_WINDOW):
        gate.record(i >= missed)


def tried(gate: InlineGate, reads: int) -> int:
    return sum(gate.try_now() for _ in range(reads))


def test_a_new_gate_tries_every_read():
    gate = InlineGate()
    assert gate.skip == 1 and tried(gate, 1000) == 1000


def test_unanswered_windows_double_the_skip_up_to_the_bound():
    gate = InlineGate()
    skips = []
    for _ in range(12):
        window(gate, 1.0)
        skips.append(gate.skip)
    expected = [min(2 ** (i + 1), MAX_SKIP) for i in range(12)]
    assert skips == expected and skips[-1] == MAX_SKIP


def test_at_a_skip_of_s_one_read_in_s_is_tried():
    gate = InlineGate()
    for _ in range(3):
        window(gate, 1.0)
    assert gate.skip == 8
    assert tried(gate, 8 * 100) == 100


def test_answered_windows_halve_it_back_to_every_read():
    gate = InlineGate()
    steps = MAX_SKIP.bit_length() - 1           # doublings from 1 to MAX_SKIP
    for _ in range(steps):
        window(gate, 1.0)
    assert gate.skip == MAX_SKIP
    for _ in range(steps):
        window(gate, ANSWERED_BACK)
    assert gate.skip == 1
    assert tried(gate, 50) == 50


def test_a_window_between_the_bounds_changes_nothing():
    gate = InlineGate()
    window(gate, 1.0)
    window(gate, 1.0)
    assert gate.skip == 4
    window(gate, (MISSED_SHARE + ANSWERED_BACK) / 2)
    assert gate.skip == 4
    window(gate, MISSED_SHARE)                  # at the share: fewer
    assert gate.skip == 8


def test_threads_recording_at_once_keep_it_in_bounds():
    gate = InlineGate()
    start = threading.Barrier(4)
    seen = []

    def body(answered: bool) -> None:
        start.wait()
        for _ in range(GATE_WINDOW * 20):
            gate.record(answered)
            seen.append(gate.skip)

    threads = [threading.Thread(target=body, args=(False,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(1 <= s <= MAX_SKIP for s in seen)
    assert gate.skip == MAX_SKIP                # every attempt unanswered
