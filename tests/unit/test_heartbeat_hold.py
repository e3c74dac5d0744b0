"""After a freeze, an SCP's heartbeat holds its watermark (streams/kafka/heartbeat.py)."""

from __future__ import annotations

from streams.kafka.heartbeat import HeartbeatSender


class Clocks:
    """The sender's wall clock (ms) and monotonic clock (s), moved by the test."""

    def __init__(self) -> None:
        self.wall = 1_000_000
        self.mono = 100.0

    def sleep(self, seconds: float) -> None:
        self.wall += int(seconds * 1000)
        self.mono += seconds


def sender(clocks: Clocks, busy: list[bool]) -> HeartbeatSender:
    return HeartbeatSender(
        source="scp-1", topic="p.sources", publisher=lambda: None,
        clock=lambda: clocks.wall, monotonic=lambda: clocks.mono,
        interval_ms=250, hold_ms=2000, hold_max_ms=30_000, busy=lambda: busy[0],
    )  # fmt: skip


def test_a_freeze_holds_the_watermark_for_the_minimum_hold_then_while_busy() -> None:
    clocks, busy = Clocks(), [False]
    beat = sender(clocks, busy)
    beat.check_stall()
    before = clocks.wall
    assert beat.heartbeat().watermark == before  # nothing owed: now
    clocks.sleep(10)  # SIGSTOP
    beat.check_stall()
    assert beat.stalls == 1
    assert beat.heartbeat().watermark == before  # held at the last beat before the freeze
    clocks.sleep(1.9)
    assert beat.heartbeat().watermark == before  # within the minimum hold, busy or not
    busy[0] = True  # a sender that knocked during the freeze is being served
    clocks.sleep(5)
    assert beat.heartbeat().watermark == before
    busy[0] = False
    assert beat.heartbeat().watermark == clocks.wall  # released once done


def test_the_hold_is_capped_however_busy_the_source_stays() -> None:
    clocks, busy = Clocks(), [True]
    beat = sender(clocks, busy)
    beat.check_stall()
    before = clocks.wall
    clocks.sleep(10)
    beat.check_stall()
    clocks.sleep(29)
    assert beat.heartbeat().watermark == before
    clocks.sleep(2)  # past hold_max_ms since the stall was seen
    assert beat.heartbeat().watermark == clocks.wall


def test_a_regular_loop_is_no_stall() -> None:
    clocks, busy = Clocks(), [True]
    beat = sender(clocks, busy)
    for _ in range(10):
        beat.check_stall()
        clocks.sleep(0.25)
    assert beat.stalls == 0 and beat.heartbeat().watermark == clocks.wall
