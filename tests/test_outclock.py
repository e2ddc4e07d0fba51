"""The live output's cadence (OutputClock), on a fake clock with exact expected times."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from itertools import pairwise

import pytest

from mattecam.outclock import OutputClock

# 32 fps: the period is a power of two, so every time in these tests is exact in binary
# floating point and compared with ==, not approximately.
P = 1 / 32

Write = tuple[float, int | str]  # (time, frame number or "last", "placeholder", "pause")


class FakeOutput:
    """Drives an OutputClock the way ``Pipeline._output`` does, on a fake clock.

    Time moves only when the loop waits (for a frame, a hold, a due repeat) or a write
    takes time. The producer hands frame ``k`` over at ``arrivals[k]`` into a newest-wins
    slot; ``write_time`` maps a write's number (0-based) to how long it takes.
    """

    def __init__(
        self,
        arrivals: Iterable[float] = (),
        *,
        placeholder: bool = True,
        write_time: dict[int, float] | None = None,
    ) -> None:
        self.clock = OutputClock(P)
        self.t = 0.0
        self.arrivals = list(arrivals)
        self.taken = 0  # frames before this one were written or superseded
        self.placeholder = placeholder
        self.last: int | None = None
        self.write_time = write_time or {}
        self.writes: list[Write] = []

    def _take(self) -> int | None:
        """The slot: the newest frame handed over by now; older untaken ones are dropped."""
        newest = None
        while self.taken < len(self.arrivals) and self.arrivals[self.taken] <= self.t:
            newest = self.taken
            self.taken += 1
        return newest

    def _write(self, what: int | str) -> None:
        assert len(self.writes) < 10_000, "endless writes"  # a broken clock must not hang
        self.writes.append((self.t, what))
        self.t += self.write_time.get(len(self.writes) - 1, 0.0)

    def run(self, until: float) -> None:
        """The live loop, until ``until``."""
        while True:
            fill = self.last is not None or self.placeholder
            wait = self.clock.until_repeat(self.t) if fill else math.inf
            ready = self.arrivals[self.taken] if self.taken < len(self.arrivals) else math.inf
            t = max(self.t, min(ready, self.t + wait))
            if t >= until:
                self.t = max(self.t, until)
                return
            self.t = t
            frame = self._take()
            if frame is not None:
                if hold := self.clock.hold(self.t):
                    self.t += hold
                    newer = self._take()
                    frame = frame if newer is None else newer
                self.last = frame
                self.clock.wrote_new(self.t)
                self._write(frame)
            elif fill and self.clock.until_repeat(self.t) == 0:
                self.clock.wrote_repeat(self.t)
                self._write("placeholder" if self.last is None else "last")

    def pause(self, until: float) -> None:
        """The paused loop, until ``until``: pause pictures, frames handed over are dropped."""
        while True:
            self._take()
            self.last = None
            t = self.t + self.clock.until_pause(self.t)
            if t >= until:
                self.t = max(self.t, until)
                return
            self.t = t
            self.clock.wrote_pause(self.t)
            self._write("pause")


def repeats(first: float, n: int, step: float = P, what: str = "last") -> list[Write]:
    return [(first + i * step, what) for i in range(n)]


def test_a_fresh_clock_has_everything_due_and_queries_change_nothing() -> None:
    clock = OutputClock(P)
    assert (clock.until_repeat(5.0), clock.until_pause(5.0), clock.hold(5.0)) == (0, 0, 0)
    clock.wrote_new(1.0)
    for _ in range(2):  # asking twice gives the same answers: queries are pure
        assert clock.until_repeat(1.0) == 1.25 * P
        assert clock.until_repeat(1.0 + 1.25 * P) == 0
        assert clock.until_repeat(2.0) == 0  # late is still due, never negative
        assert clock.hold(1.0) == 0.5 * P
        assert clock.hold(1.0 + 0.25 * P) == 0.25 * P
        assert clock.hold(1.0 + 0.5 * P) == 0
        assert clock.until_pause(1.0) == P


@pytest.mark.parametrize("period", [0.0, -P, math.inf, math.nan])
def test_a_period_must_be_positive_and_finite(period: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        OutputClock(period)


def test_steady_producer_with_jitter_gets_one_write_per_frame_on_arrival() -> None:
    # Each frame up to 15/128 (about 12 %) of a period early or late: consecutive frames are
    # 0.77 to 1.23 periods apart, inside both the half-period minimum and the grace.
    rng = random.Random(1)
    arrivals = [(k + 1) * P + rng.randint(-15, 15) * P / 128 for k in range(300)]
    out = FakeOutput(arrivals, placeholder=False)
    out.run(until=301 * P)  # before a repeat of the last frame
    assert out.writes == [(a, k) for k, a in enumerate(arrivals)]


def test_jitter_of_30_percent_holds_early_frames_and_repeats_only_after_the_grace() -> None:
    # Up to 38/128 (about 30 %) of a period early or late: frames come 0.4 to 1.6 periods
    # apart, so some are held for the half-period minimum and some gaps reach the grace.
    rng = random.Random(2)
    n = 2000
    arrivals = [(k + 1) * P + rng.randint(-38, 38) * P / 128 for k in range(n)]
    out = FakeOutput(arrivals, placeholder=False)
    out.run(until=(n + 2) * P)

    assert out.writes[0] == (arrivals[0], 0)
    ahead = [*arrivals, math.inf]
    held = repeated = 0
    last_new = 0
    for (t0, what0), (t, what) in pairwise(out.writes):
        assert t - t0 <= 1.25 * P  # readers never wait longer than the grace
        upcoming = ahead[last_new + 1]
        if isinstance(what, str):  # a repeat: the grace (or a period) passed, no frame came
            assert t == t0 + (P if isinstance(what0, str) else 1.25 * P)
            assert upcoming > t
            repeated += 1
        else:  # on arrival, or half a period after the previous write, the newest frame
            assert t == max(upcoming, t0 + 0.5 * P)
            assert arrivals[what] <= t < ahead[what + 1]
            held += t > upcoming
            last_new = what
    # Rarely (here once) a frame comes just after a repeat, is held, and a newer frame that
    # came during the hold supersedes it; every other frame is written once, in order.
    new = [what for _, what in out.writes if isinstance(what, int)]
    assert new == sorted(set(new)) and 0 < n - len(new) < n // 200
    assert held > 100 and repeated > 100  # both rules were exercised


def test_a_fast_producer_is_written_every_half_period_newest_frame_first() -> None:
    arrivals = [k * P / 8 for k in range(81)]  # 8 frames a period, for 10 periods
    out = FakeOutput(arrivals, placeholder=False)
    out.run(until=11 * P)
    # Frame 0 at once; frame 1 is held to half a period, by when frame 4 superseded it.
    assert out.writes == [(j * P / 2, 4 * j) for j in range(21)]


def test_a_stalled_producer_gets_a_repeat_after_the_grace_then_one_per_period() -> None:
    out = FakeOutput([0.0])
    out.run(until=10 * P)
    assert out.writes == [(0.0, 0), *repeats(1.25 * P, 9)]


def test_a_late_output_catches_up_with_one_extra_write_not_a_burst() -> None:
    out = FakeOutput([0.0])
    out.run(until=P)
    out.t = 10 * P  # the output thread was held up for 9 periods (a suspended process)
    out.run(until=13 * P)
    # Eight repeats were missed; one comes on schedule and one catches up, then the cadence.
    assert out.writes == [(0.0, 0), (10 * P, "last"), *repeats(10 * P, 3)]


def test_a_frame_after_a_stall_is_written_at_once_and_restarts_the_grace() -> None:
    out = FakeOutput([0.0, 5.875 * P, 6.875 * P])
    out.run(until=9 * P)
    assert out.writes == [
        (0.0, 0),
        *repeats(1.25 * P, 5),
        (5.875 * P, 1),
        (6.875 * P, 2),
        (8.125 * P, "last"),
    ]


def test_a_frame_right_after_a_repeat_waits_half_a_period_from_it() -> None:
    out = FakeOutput([0.0, 5.5 * P])
    out.run(until=8 * P)
    assert out.writes == [(0.0, 0), *repeats(1.25 * P, 5), (5.75 * P, 1), (7 * P, "last")]


def test_before_the_first_frame_the_placeholder_keeps_the_cadence() -> None:
    out = FakeOutput([3.5 * P])
    out.run(until=5 * P)
    # The very first write counts as late (nothing was ever written): one catch-up write.
    assert out.writes == [
        (0.0, "placeholder"),
        *repeats(0.0, 4, what="placeholder"),
        (3.5 * P, 0),
        (4.75 * P, "last"),
    ]


def test_without_a_placeholder_nothing_is_written_before_the_first_frame() -> None:
    out = FakeOutput([3.5 * P], placeholder=False)
    out.run(until=5 * P)
    assert out.writes == [(3.5 * P, 0), (4.75 * P, "last")]


def test_pause_pictures_come_once_per_period_then_the_placeholder_until_a_frame() -> None:
    out = FakeOutput([0.0, 0.75 * P, 6.5 * P, 7.5 * P])
    out.run(until=0.5 * P)
    out.pause(until=5 * P)  # frame 1, finished as the pause began, is dropped
    out.run(until=9 * P)
    assert out.writes == [
        (0.0, 0),
        *repeats(P, 4, what="pause"),  # a period after the last write, not the grace
        *repeats(5 * P, 2, what="placeholder"),  # not the stale frame from before
        (6.5 * P, 2),
        (7.5 * P, 3),
        (8.75 * P, "last"),
    ]


def test_a_repeat_after_a_short_pause_comes_a_period_after_the_last_pause_picture() -> None:
    out = FakeOutput([0.0])
    out.run(until=0.5 * P)
    out.pause(until=1.5 * P)
    out.run(until=4 * P)
    assert out.writes == [(0.0, 0), (P, "pause"), *repeats(2 * P, 2, what="placeholder")]


def test_a_pause_that_ends_before_its_first_picture_keeps_the_grace() -> None:
    out = FakeOutput([0.0])
    out.run(until=0.25 * P)
    out.pause(until=0.5 * P)
    out.run(until=3 * P)
    assert out.writes == [(0.0, 0), *repeats(1.25 * P, 2, what="placeholder")]


def test_pause_pictures_catch_up_with_one_extra_write_after_a_slow_one() -> None:
    out = FakeOutput(write_time={2: 3 * P})
    out.pause(until=6.5 * P)
    assert out.writes == [
        *repeats(0.0, 2, step=0.0, what="pause"),  # the first ever write: one catch-up
        (P, "pause"),  # takes 3 periods
        (4 * P, "pause"),
        *repeats(4 * P, 3, what="pause"),
    ]


def test_a_slow_write_of_a_new_frame_is_followed_by_the_newest_frame_not_a_burst() -> None:
    out = FakeOutput([k * P for k in range(10)], placeholder=False, write_time={2: 3 * P})
    out.run(until=9.5 * P)
    # Frame 2 takes 3 periods; frames 3 and 4 are superseded by 5, then the cadence resumes.
    assert out.writes == [(0.0, 0), (P, 1), (2 * P, 2), *[(k * P, k) for k in range(5, 10)]]


def test_a_slow_repeat_is_followed_by_one_catch_up_write_not_a_burst() -> None:
    out = FakeOutput([0.0], write_time={1: 3 * P})
    out.run(until=7 * P)
    # The repeat at 1.25 takes 3 periods: those due at 2.25, 3.25 and 4.25 become two.
    assert out.writes == [(0.0, 0), (1.25 * P, "last"), (4.25 * P, "last"), *repeats(4.25 * P, 3)]
