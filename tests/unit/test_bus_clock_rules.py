"""The bus clock (pure): heartbeats in bus time whatever the sources' clocks, sources that
owe hold it back, silent ones are lost after the idle timeout; and when ticks are due."""

from __future__ import annotations

import pytest

from processors.runtime.clock import BusClock
from processors.runtime.ticker import PartitionView, ticks_due
from streams.events import SOURCE_LOST, SOURCE_STOPPED, SourceHeartbeat

T = 1_700_000_000_000  # bus time of the first heartbeats (epoch ms)


def beat(source: str, sent_at: int, owes_ms: int = 0, state: str = "up") -> SourceHeartbeat:
    """A heartbeat that still owes what was received in the last ``owes_ms``."""
    return SourceHeartbeat(source, sent_at=sent_at, watermark=sent_at - owes_ms, state=state)


def test_a_source_clock_offset_cancels_out() -> None:
    clock = BusClock(idle_timeout_ms=60_000)
    # scp-b's clock is 20 s ahead of the bus; both owe what they received 300 ms ago.
    clock.heartbeat(beat("scp-a", T, owes_ms=300), appended=T + 5, local=0)
    clock.heartbeat(beat("scp-b", T + 20_000, owes_ms=300), appended=T + 7, local=2)
    assert clock.watermark(local=2) == T + 5 - 300
    assert clock.now(local=2) == T + 7


def test_bus_now_moves_with_the_local_monotonic_clock_not_the_local_wall_clock() -> None:
    clock = BusClock(idle_timeout_ms=60_000)
    assert clock.now(local=10) is None and clock.watermark(local=10) is None
    clock.heartbeat(beat("p", 99), appended=T, local=1000)
    assert clock.now(local=1750) == T + 750


def test_the_slowest_live_source_holds_the_watermark() -> None:
    clock = BusClock(idle_timeout_ms=60_000, grace_ms=200)
    clock.heartbeat(beat("fast", T + 1000), appended=T + 1000, local=0)
    clock.heartbeat(beat("outbox", T, owes_ms=15_000), appended=T + 900, local=0)
    assert clock.watermark(local=0) == T + 900 - 15_000 - 200
    # The outbox drained: the source says so, the watermark jumps to its heartbeat.
    clock.heartbeat(beat("outbox", T + 1200), appended=T + 1200, local=0)
    assert clock.watermark(local=0) == T + 1000 - 200


def test_a_paused_source_holds_the_clock_until_it_is_lost() -> None:
    clock = BusClock(idle_timeout_ms=10_000)
    clock.heartbeat(beat("paused", T), appended=T, local=0)
    clock.heartbeat(beat("busy", T + 9_000), appended=T + 9_000, local=0)
    assert clock.watermark(local=0) == T  # the silence of "paused" holds it
    assert clock.lost(local=0) == []
    clock.heartbeat(beat("busy", T + 10_001), appended=T + 10_001, local=0)
    assert clock.lost(local=0) == ["paused"]
    assert clock.watermark(local=0) == T + 10_001  # lost: holds nothing back any more
    # Declared lost on the bus: never declared again, until it speaks.
    clock.heartbeat(beat("paused", T + 10_010, state=SOURCE_LOST), appended=T + 10_010, local=0)
    assert clock.lost(local=0) == []
    clock.heartbeat(beat("paused", T + 10_020), appended=T + 10_020, local=0)
    assert clock.watermark(local=0) == T + 10_001


def test_a_stopped_source_owes_nothing_and_with_no_live_source_the_clock_is_bus_now() -> None:
    clock = BusClock(idle_timeout_ms=60_000, grace_ms=100)
    clock.heartbeat(beat("scp", T, owes_ms=5_000), appended=T, local=0)
    clock.heartbeat(beat("scp", T + 50, state=SOURCE_STOPPED), appended=T + 50, local=0)
    assert clock.watermark(local=1_000) == T + 50 + 1_000 - 100


def test_a_heartbeat_delayed_by_a_broker_outage_claims_no_more_than_it_knew() -> None:
    # Chaos seed 1008: an SCP's heartbeat (nothing owed when sent) waited in its producer
    # through a 15 s broker pause; the SCP was then killed with events in its outbox.
    # Appended late, the heartbeat must not say "all delivered up to my append time".
    clock = BusClock(idle_timeout_ms=60_000)
    clock.heartbeat(beat("scp", T), appended=T + 5, local=0)  # offset 5 ms
    clock.heartbeat(beat("other", T + 15_000), appended=T + 15_000, local=0)
    clock.heartbeat(beat("scp", T + 250), appended=T + 15_010, local=0)  # sent before the pause
    assert clock.watermark(local=0) == T + 250 + 5  # what it knew when sent, in bus time
    clock.heartbeat(beat("scp", T + 15_030), appended=T + 15_035, local=0)  # back, on time
    assert clock.watermark(local=0) == T + 15_000  # now "other" is the slowest


def test_a_source_clock_stepped_back_holds_the_watermark_for_at_most_the_window() -> None:
    clock = BusClock(idle_timeout_ms=10_000)
    clock.heartbeat(beat("scp", T), appended=T, local=0)
    # NTP steps the SCP's clock back by 20 s: each heartbeat now looks 20 s late, and the
    # source is trusted for no more than its best offset of the window (the earlier one).
    clock.heartbeat(beat("scp", T + 1_000 - 20_000), appended=T + 1_000, local=0)
    assert clock.watermark(local=0) == T + 1_000 - 20_000  # later, never earlier
    clock.heartbeat(beat("scp", T + 10_001 - 20_000), appended=T + 10_001, local=0)
    assert clock.watermark(local=0) == T + 10_001  # the old offset left the window


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        BusClock(idle_timeout_ms=0)


def test_a_tick_is_due_when_the_watermark_passes_something_due_or_to_keep_alive() -> None:
    views = {
        0: PartitionView(next_due=T + 5_000, last_instance=T),
        1: PartitionView(next_due=None, last_instance=T),  # nothing open, recently active
        2: PartitionView(next_due=None, last_instance=None),  # idle
    }
    due = ticks_due(T + 5_000, views, {}, local=0, keepalive_ms=5_000, horizon_ms=60_000)
    assert due == [0, 1]  # 0 is not passed yet (strict) but was never ticked: keep-alive
    last = {0: (T + 5_000, 0), 1: (T + 5_000, 0)}
    assert ticks_due(T + 5_001, views, last, local=10, keepalive_ms=5_000, horizon_ms=60_000) == [0]
    # keep-alive again after its interval, never backwards, not past the horizon
    assert ticks_due(
        T + 6_000, views, last, local=5_000, keepalive_ms=5_000, horizon_ms=60_000
    ) == [
        0,
        1,
    ]
    assert (
        ticks_due(T + 4_000, views, last, local=9_999, keepalive_ms=5_000, horizon_ms=60_000) == []
    )
    far = T + 61_000
    assert (
        ticks_due(far, {1: views[1]}, last, local=99_999, keepalive_ms=5_000, horizon_ms=60_000)
        == []
    )
