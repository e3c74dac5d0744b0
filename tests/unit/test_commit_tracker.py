"""CommitTracker: which offsets are safe to commit (pure, no broker)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.kafka import CommitTracker

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


def test_an_open_group_holds_its_first_offset_until_released() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.mark_done(P0, 0)
    tracker.mark_done(P0, 1)
    tracker.hold(P0, 2)  # first instance of an open group
    for offset in range(3, 7):
        tracker.mark_done(P0, offset)
    assert tracker.safe_offset(P0) == 2
    assert tracker.release(P0, 2) is True
    assert tracker.safe_offset(P0) == 7


def test_oldest_hold_wins_whatever_the_order_of_holds() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.hold(P0, 5)
    tracker.hold(P0, 3)
    tracker.mark_done(P0, 9)
    assert tracker.held(P0) == (3, 5)
    assert tracker.safe_offset(P0) == 3
    tracker.release(P0, 3)
    assert tracker.safe_offset(P0) == 5


def test_holds_are_counted() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.hold(P0, 4)
    tracker.hold(P0, 4)
    tracker.mark_done(P0, 8)
    tracker.release(P0, 4)
    assert tracker.safe_offset(P0) == 4
    tracker.release(P0, 4)
    assert tracker.safe_offset(P0) == 9
    assert tracker.release(P0, 4) is False


def test_pending_only_reports_progress_past_the_last_commit() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.mark_done(P0, 4)
    tracker.mark_done(P1, 1)
    tracker.committed({P0: 5})
    assert tracker.pending() == {P1: 2}
    assert tracker.last_committed(P0) == 5
    tracker.committed({P0: 3})  # never moves backwards
    assert tracker.last_committed(P0) == 5
    tracker.mark_done(P0, 5)
    assert tracker.pending() == {P0: 6, P1: 2}


def test_a_hold_below_the_committed_offset_is_not_pending() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.mark_done(P0, 9)
    tracker.committed({P0: 10})
    tracker.hold(P0, 7)
    assert tracker.safe_offset(P0) == 7
    assert tracker.pending() == {}


def test_revoked_partitions_are_forgotten() -> None:
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    tracker.hold(P0, 1)
    tracker.mark_done(P1, 3)
    tracker.forget([P0])
    assert tracker.partitions() == frozenset({P1})
    assert tracker.release(P0, 1) is False
    assert tracker.pending() == {P1: 4}


@given(
    count=st.integers(min_value=1, max_value=60),
    data=st.data(),
)
def test_safe_offset_is_the_oldest_still_open_record(count: int, data: st.DataObject) -> None:
    """Commit never passes a held record, and never lags behind when nothing is held."""
    held = data.draw(st.sets(st.integers(min_value=0, max_value=count - 1)))
    released = data.draw(st.sets(st.sampled_from(sorted(held)))) if held else set()
    tracker: CommitTracker[tuple[str, int]] = CommitTracker()
    for offset in range(count):
        if offset in held:
            tracker.hold(P0, offset)
        else:
            tracker.mark_done(P0, offset)
    for offset in released:
        tracker.release(P0, offset)
    still_open = held - released
    assert tracker.safe_offset(P0) == (min(still_open) if still_open else count)
