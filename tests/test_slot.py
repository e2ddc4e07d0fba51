"""The one-slot handoff: newest frame wins in live mode, nothing lost in lossless mode."""

from __future__ import annotations

import threading
import time

import pytest

from mattecam.slot import Slot, SlotClosed


def test_newest_wins_and_counts_drops() -> None:
    slot: Slot[int] = Slot()
    for i in range(5):
        assert slot.put(i)
    assert slot.dropped == 4
    assert slot.get(timeout=0) == 4
    assert slot.get(timeout=0) is None


def test_get_times_out_without_item() -> None:
    slot: Slot[int] = Slot()
    t = time.monotonic()
    assert slot.get(timeout=0.05) is None
    assert time.monotonic() - t >= 0.04


def test_close_lets_consumer_drain_then_raises() -> None:
    slot: Slot[int] = Slot()
    slot.put(7)
    slot.close()
    assert slot.get() == 7
    with pytest.raises(SlotClosed):
        slot.get()
    with pytest.raises(SlotClosed):
        slot.put(8)


def test_close_wakes_a_waiting_consumer() -> None:
    slot: Slot[int] = Slot()
    result: list[object] = []

    def consume() -> None:
        try:
            slot.get(timeout=5)
        except SlotClosed as e:
            result.append(e)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.05)
    slot.close()
    t.join(1)
    assert not t.is_alive()
    assert isinstance(result[0], SlotClosed)


def test_lossless_put_waits_for_consumer() -> None:
    slot: Slot[int] = Slot(lossless=True)
    assert slot.put(1)
    assert not slot.put(2, timeout=0.02)  # full: refused, not overwritten
    assert slot.get() == 1
    assert slot.put(2, timeout=0.02)
    assert slot.dropped == 0


def test_slow_consumer_sees_newest_frames_only() -> None:
    """A fast producer and a slow consumer: the consumer's items increase, the producer never
    blocks, and every item is either taken or counted as dropped."""
    slot: Slot[int] = Slot()
    n = 200
    taken: list[int] = []
    done = threading.Event()

    def consume() -> None:
        while True:
            try:
                item = slot.get(timeout=0.5)
            except SlotClosed:
                break
            if item is not None:
                taken.append(item)
                time.sleep(0.005)
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        slot.put(i)
        time.sleep(0.0005)
    slot.close()
    assert done.wait(5)
    t.join()
    assert taken == sorted(taken)
    assert taken[-1] == n - 1  # the newest item always gets through
    assert len(taken) + slot.dropped == n
    assert slot.dropped > n // 4


def test_lossless_producer_consumer_keeps_every_item_in_order() -> None:
    slot: Slot[int] = Slot(lossless=True)
    taken: list[int] = []

    def consume() -> None:
        while True:
            try:
                item = slot.get(timeout=0.5)
            except SlotClosed:
                return
            if item is not None:
                taken.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(300):
        while not slot.put(i, timeout=0.1):
            pass
    slot.close()
    t.join(5)
    assert taken == list(range(300))
