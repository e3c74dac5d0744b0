"""CommitTracker: which offsets are safe to commit (pure, no broker)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.kafka import CommitTracker, HeldOffsets
from streams.kafka.commits import oldest

P0 = ("instances", 0)
P1 = ("instances", 1)


def test_nothing_seen_means_nothing_to_commit() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    assert tracker.safe_offset(P0) is None
    assert tracker.pending() == {}
    assert tracker.committable() == {}


def test_done_records_commit_past_the_last_seen() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    for offset in range(5):
        tracker.mark_done(P0, offset)
    assert tracker.pending() == {P0: 5}


def test_a_bound_keeps_the_oldest_needed_offset_uncommitted() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    for offset in range(7):
        tracker.mark_done(P0, offset)
    needed = {P0: 2}  # the first instance of an open group
    assert tracker.safe_offset(P0, needed[P0]) == 2
    assert tracker.pending(needed.get) == {P0: 2}
    needed.clear()  # the group closed and its record is durable
    assert tracker.safe_offset(P0, needed.get(P0)) == 7
    assert tracker.pending(needed.get) == {P0: 7}


def test_oldest_hold_wins_whatever_the_order_of_holds() -> None:
    held: HeldOffsets[tuple[str, int]] = HeldOffsets()
    held.hold(P0, 5)
    held.hold(P0, 3)
    assert held.held(P0) == (3, 5)
    assert held.oldest(P0) == 3
    held.release(P0, 3)
    assert held.oldest(P0) == 5


def test_holds_are_counted() -> None:
    held: HeldOffsets[tuple[str, int]] = HeldOffsets()
    held.hold(P0, 4)
    held.hold(P0, 4)
    held.release(P0, 4)
    assert held.oldest(P0) == 4
    held.release(P0, 4)
    assert held.oldest(P0) is None
    assert held.release(P0, 4) is False


def test_oldest_of_several_bounds_ignores_the_missing_ones() -> None:
    assert oldest(None, 7, 3, None) == 3
    assert oldest(None, None) is None


def test_a_bound_below_the_committed_offset_is_not_pending() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.mark_done(P0, 9)
    tracker.committed({P0: 10})  # e.g. what the group had committed at assignment
    assert tracker.safe_offset(P0, 7) == 7
    assert tracker.pending(lambda _p: 7) == {}


def test_revoked_partitions_are_forgotten() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    held: HeldOffsets[tuple[str, int]] = HeldOffsets()
    tracker.mark_done(P0, 1)
    held.hold(P0, 1)
    tracker.mark_done(P1, 3)
    tracker.forget([P0])
    held.forget([P0])
    assert tracker.partitions() == frozenset({P1})
    assert held.release(P0, 1) is False
    assert tracker.pending(held.oldest) == {P1: 4}


@given(
    count=st.integers(min_value=1, max_value=60),
    data=st.data(),
)
def test_safe_offset_is_the_oldest_still_open_record(count: int, data: st.DataObject) -> None:
    """Commit never passes a held record, and never lags behind when nothing is held."""
    held_set = data.draw(st.sets(st.integers(min_value=0, max_value=count - 1)))
    released = data.draw(st.sets(st.sampled_from(sorted(held_set)))) if held_set else set()
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    held: HeldOffsets[tuple[str, int]] = HeldOffsets()
    for offset in range(count):
        if offset in held_set:
            held.hold(P0, offset)
        tracker.mark_done(P0, offset)
    for offset in released:
        held.release(P0, offset)
    still_open = held_set - released
    expected = min(still_open) if still_open else count
    assert tracker.safe_offset(P0, held.oldest(P0)) == expected
