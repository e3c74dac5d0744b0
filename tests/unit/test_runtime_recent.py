"""RecentIds: the per-partition memory that drops re-published copies of an event."""

from __future__ import annotations

import pytest

from processors.runtime.recent import RecentIds


def test_a_second_sighting_on_the_same_partition_is_a_copy() -> None:
    recent = RecentIds(capacity=4)
    assert not recent.seen(0, "a")
    assert recent.seen(0, "a")
    assert not recent.seen(1, "a")  # another partition: another key, not a copy


def test_memory_is_bounded_and_forgets_the_oldest_first() -> None:
    recent = RecentIds(capacity=3)
    for event_id in "abcd":
        assert not recent.seen(0, event_id)
    assert len(recent) == 3
    assert not recent.seen(0, "a")  # forgotten: the oldest went first
    assert recent.seen(0, "d")


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RecentIds(capacity=0)


def test_forgetting_a_partition_lets_its_records_be_read_again() -> None:
    recent = RecentIds(capacity=4)
    recent.seen(0, "a")
    recent.seen(1, "b")
    recent.forget([0])
    assert not recent.seen(0, "a")  # re-read after a rebalance: not a copy
    assert recent.seen(1, "b")
