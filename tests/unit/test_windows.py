"""The session window operator on virtual time (TestScheduler; 1 tick = 1 s)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from reactivex import abc
from reactivex.testing import ReactiveTest, TestScheduler

from processors.windows import ClosedGroup, SessionState, session_window

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


def rec(t_ms: int, key: str, partition: int = 0, offset: int = 0) -> tuple[int, int, Any]:
    return (partition, offset, SimpleNamespace(received_at=t_ms, key=key))


def key_of(value: Any) -> str:
    return str(value.key)


def summary(group: ClosedGroup[Any, Any, Any]) -> tuple[int, str, tuple[int, ...], int]:
    return (group.partition, group.key, group.offsets, group.deadline)


def run(
    messages: list[Any],
    *,
    timeout_ms: int = 5000,
    grace_ms: int = 0,
    caught_up: bool = True,
    until: float | None = None,
    scheduler: TestScheduler | None = None,
) -> tuple[list[tuple[float, Any]], Any]:
    sched = scheduler or TestScheduler()
    window = session_window(key_of, timeout_ms, sched, grace_ms=grace_ms, caught_up=caught_up)
    out: list[tuple[float, Any]] = []
    sched.create_hot_observable(messages).pipe(window).subscribe(
        on_next=lambda g: out.append((sched.clock, summary(g))),
        on_error=lambda e: out.append((sched.clock, ("error", str(e)))),
        on_completed=lambda: out.append((sched.clock, "completed")),
    )
    if until is None:
        sched.start()
    else:
        sched.advance_to(until)
    return out, window


def test_group_closes_exactly_at_its_deadline() -> None:
    out, _ = run([on_next(1.0, rec(1000, "a", offset=0)), on_next(2.0, rec(2000, "a", offset=1))])
    assert out == [(7.0, (0, "a", (0, 1), 7000))]


def test_no_emission_before_the_deadline() -> None:
    messages = [on_next(1.0, rec(1000, "a"))]
    out, _ = run(messages, until=5.999)
    assert out == []
    out, _ = run(messages, until=6.0)
    assert out == [(6.0, (0, "a", (0,), 6000))]


def test_every_record_resets_the_quiet_timer_and_there_is_no_max_size() -> None:
    # 50 records 4 s apart: never quiet for 5 s until the last one.
    messages = [on_next(1.0 + 4 * i, rec(1000 + 4000 * i, "a", offset=i)) for i in range(50)]
    out, _ = run(messages)
    assert out == [(1.0 + 4 * 49 + 5, (0, "a", tuple(range(50)), 1000 + 4000 * 49 + 5000))]


def test_gap_equal_to_timeout_joins_and_longer_gap_splits() -> None:
    joined, _ = run(
        [on_next(1.0, rec(1000, "a", offset=0)), on_next(6.0, rec(6000, "a", offset=1))]
    )
    assert joined == [(11.0, (0, "a", (0, 1), 11000))]
    split, _ = run(
        [on_next(1.0, rec(1000, "a", offset=0)), on_next(6.001, rec(6001, "a", offset=1))]
    )
    assert split == [(6.0, (0, "a", (0,), 6000)), (11.001, (0, "a", (1,), 11001))]


def test_same_key_after_close_starts_a_new_group() -> None:
    out, _ = run([on_next(0.0, rec(0, "a", offset=0)), on_next(7.0, rec(7000, "a", offset=1))])
    assert out == [(5.0, (0, "a", (0,), 5000)), (12.0, (0, "a", (1,), 12000))]


def test_groups_with_the_same_deadline_close_in_order_of_their_last_record() -> None:
    messages = [
        on_next(1.0, rec(1000, "b", partition=1, offset=0)),
        on_next(1.0, rec(1000, "a", partition=0, offset=0)),
        on_next(1.0, rec(1000, "c", partition=1, offset=1)),
        on_next(1.0, rec(1000, "b", partition=1, offset=2)),
    ]
    out, _ = run(messages)
    assert [g[1] for _, g in out] == ["a", "c", "b"]
    assert {t for t, _ in out} == {6.0}


def test_grace_delays_wall_clock_closing() -> None:
    out, _ = run([on_next(1.0, rec(1000, "a"))], grace_ms=1000)
    assert out == [(7.0, (0, "a", (0,), 6000))]


def test_not_caught_up_closes_on_the_event_clock_only_and_strictly() -> None:
    messages = [
        on_next(1.0, rec(1000, "a", offset=0)),
        on_next(6.0, rec(6000, "b", offset=1)),  # clock == deadline of a: not passed
        on_next(9.0, rec(6001, "c", partition=1, offset=0)),  # other partition: no effect
        on_next(20.0, rec(6001, "b", offset=2)),  # clock passes a's deadline
    ]
    out, _ = run(messages, caught_up=False)
    assert out == [(20.0, (0, "a", (0,), 6000))]


def test_caught_up_later_closes_overdue_groups_at_once() -> None:
    sched = TestScheduler()
    window = session_window(key_of, 5000, sched, caught_up=False)
    out: list[tuple[float, Any]] = []
    sched.create_hot_observable([on_next(1.0, rec(1000, "a"))]).pipe(window).subscribe(
        lambda g: out.append((sched.clock, summary(g)))
    )
    sched.advance_to(30.0)
    assert out == []
    window.set_caught_up(0)
    sched.advance_to(30.5)
    assert out == [(30.0, (0, "a", (0,), 6000))]


def test_a_late_record_whose_window_already_passed_closes_on_arrival() -> None:
    messages = [on_next(1.0, rec(20000, "a", offset=0)), on_next(2.0, rec(1000, "z", offset=1))]
    out, _ = run(messages, caught_up=False)
    assert out == [(2.0, (0, "z", (1,), 6000))]


def test_revocation_drops_open_groups_without_emitting() -> None:
    sched = TestScheduler()
    window = session_window(key_of, 5000, sched)
    out: list[Any] = []
    sched.create_hot_observable(
        [
            on_next(1.0, rec(1000, "a", partition=0, offset=10)),
            on_next(1.0, rec(1000, "b", partition=1, offset=20)),
            on_next(8.0, rec(8000, "a", partition=0, offset=11)),
        ]
    ).pipe(window).subscribe(lambda g: out.append((sched.clock, summary(g))))
    sched.advance_to(2.0)
    assert window.held_offsets() == {0: 10, 1: 20}
    assert window.revoke([0]) == 1
    assert window.held_offsets() == {1: 20}
    sched.start()
    assert out == [(6.0, (1, "b", (20,), 6000)), (13.0, (0, "a", (11,), 13000))]


def test_completion_does_not_emit_partial_groups() -> None:
    out, window = run([on_next(1.0, rec(1000, "a", offset=3)), on_completed(2.0)])
    assert out == [(2.0, "completed")]
    assert window.oldest_held_offset(0) == 3  # still reported, for the final commit


def test_errors_are_forwarded_and_stop_the_timer() -> None:
    out, _ = run([on_next(1.0, rec(1000, "a")), on_error(2.0, ValueError("boom"))])
    assert out == [(2.0, ("error", "boom"))]


def test_oldest_held_offset_follows_open_groups() -> None:
    state: SessionState[str, Any, Any] = SessionState(key_of, 5000, caught_up=False)
    closed: list[Any] = []
    state.emit = closed.append
    for p, o, v in [rec(0, "a", 0, 0), rec(1000, "b", 0, 1), rec(2000, "a", 0, 2)]:
        state.add(p, o, v)
    assert state.oldest_held_offset(0) == 0
    assert state.open_instances == 3
    state.add(*rec(5500, "c", 0, 3))  # clock 5500 > a's deadline? no (7000); b's? no
    assert state.oldest_held_offset(0) == 0
    state.add(*rec(6001, "c", 0, 4))  # passes b's deadline (6000) only
    assert [summary(g)[1] for g in closed] == ["b"]
    assert state.oldest_held_offset(0) == 0
    state.add(*rec(7001, "c", 0, 5))  # passes a's deadline
    assert [summary(g)[1] for g in closed] == ["b", "a"]
    assert state.oldest_held_offset(0) == 3
    assert state.open_groups == 1
    assert state.open_instances == 3
    assert state.oldest_held_offset(7) is None


def test_advance_moves_the_clock_without_joining() -> None:
    state: SessionState[str, Any, Any] = SessionState(key_of, 5000, caught_up=False)
    closed: list[Any] = []
    state.emit = closed.append
    state.add(*rec(0, "a", 0, 0))
    state.advance(0, 5001)
    assert [summary(g) for g in closed] == [(0, "a", (0,), 5000)]
    assert state.clock(0) == 5001
    assert state.open_instances == 0


def test_members_opener_and_times() -> None:
    state: SessionState[str, Any, str] = SessionState(
        key_of, 5000, caught_up=False, element_fn=lambda v: f"m{v.received_at}"
    )
    closed: list[ClosedGroup[str, Any, str]] = []
    state.emit = closed.append
    for item in [rec(3000, "a", 0, 0), rec(1000, "a", 0, 1), rec(4000, "a", 0, 2)]:
        state.add(*item)
    state.advance(0, 10_000)
    (group,) = closed
    assert group.members == ("m3000", "m1000", "m4000")
    assert group.opener.received_at == 3000
    assert (group.first_received_at, group.last_received_at, group.deadline) == (1000, 4000, 9000)
    assert group.reason == "timeout"


class CountingScheduler(TestScheduler):
    """A TestScheduler that counts the timers scheduled on it."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.timers = 0

    def schedule_absolute(self, duetime: Any, action: Any, state: Any = None) -> abc.DisposableBase:
        self.timers += 1
        return super().schedule_absolute(duetime, action, state)


def test_one_timer_not_one_per_record() -> None:
    sched = CountingScheduler()
    # 2000 records over 100 keys, all within one quiet period per key.
    messages = [
        on_next(1.0 + i / 1000, rec(1000 + i, f"k{i % 100}", offset=i)) for i in range(2000)
    ]
    source = sched.create_hot_observable(messages)
    hot_timers = sched.timers
    window = session_window(key_of, 5000, sched)
    out: list[Any] = []
    source.pipe(window).subscribe(out.append)
    sched.start()
    assert len(out) == 100
    # Lazy deadlines: at most a wake-up per group per elapsed timeout (here 2 per group),
    # never one per record (2000).
    assert sched.timers - hot_timers <= 2 * 100 + 5


def test_a_scheduler_is_required() -> None:
    window = session_window(key_of, 5000)
    errors: list[Exception] = []
    TestScheduler().create_hot_observable([]).pipe(window).subscribe(on_error=errors.append)
    assert errors and "needs a scheduler" in str(errors[0])


def test_one_subscription_at_a_time() -> None:
    sched = TestScheduler()
    window = session_window(key_of, 5000, sched)
    source = sched.create_hot_observable([])
    source.pipe(window).subscribe()
    errors: list[Exception] = []
    source.pipe(window).subscribe(on_error=errors.append)
    assert errors and "one subscription" in str(errors[0])


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_ms"):
        SessionState(key_of, -1)
