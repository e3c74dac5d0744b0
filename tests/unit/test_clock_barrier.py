"""The test suites' barrier instead of a fixed wait (tests.helpers.waiting): which tick
proves every group of an AE title's instances on a partition has closed."""

from __future__ import annotations

from streams.events import ClockTick, EventData, envelope
from streams.kafka import Record
from tests.helpers.instances import make_instance
from tests.helpers.waiting import ticks_past_inputs

QUIET_MS = 5_000


def rec(partition: int, offset: int, at: int, data: EventData) -> Record:
    env = envelope(data, source="test", time_ms=at)
    return Record("t", partition, offset, None, at, env)


def instance(partition: int, offset: int, at: int, ae: str = "AE") -> Record:
    return rec(partition, offset, at, make_instance(received_at=at, ae=ae))


def tick(partition: int, offset: int, watermark: int) -> Record:
    return rec(partition, offset, watermark, ClockTick(watermark, "p"))


def test_the_first_tick_past_the_last_deadline_of_every_partition() -> None:
    records = [
        instance(0, 0, 1_000),
        tick(0, 1, 5_000),  # not past 1_000 + 5_000
        instance(1, 0, 2_000),
        tick(0, 2, 6_001),
        tick(0, 3, 9_000),
        tick(1, 1, 7_001),
    ]
    assert ticks_past_inputs(records, "AE", QUIET_MS) == {0: 2, 1: 1}


def test_a_partition_without_such_a_tick_means_not_yet() -> None:
    records = [instance(0, 0, 1_000), tick(0, 1, 6_001), instance(1, 0, 2_000)]
    assert ticks_past_inputs(records, "AE", QUIET_MS) is None
    # an instance after the tick needs a tick of its own
    assert ticks_past_inputs([*records[:2], instance(0, 2, 3_000)], "AE", QUIET_MS) is None


def test_other_ae_titles_and_republished_copies_need_no_tick() -> None:
    first = instance(0, 0, 1_000)
    records = [
        first,
        tick(0, 1, 6_001),
        instance(0, 2, 50_000, ae="OTHER"),
        Record("t", 0, 3, None, 60_000, first.envelope),  # the same envelope again
    ]
    assert ticks_past_inputs(records, "AE", QUIET_MS) == {0: 1}


def test_no_instance_no_partition() -> None:
    assert ticks_past_inputs([tick(0, 0, 10_000)], "AE", QUIET_MS) == {}
