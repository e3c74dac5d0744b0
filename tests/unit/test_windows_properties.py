"""Properties of the session window (hypothesis, virtual time only).

1. The fast operator equals the stock chain (``group_by_until`` + ``debounce`` +
   ``to_list``): random in-order logs replayed on a TestScheduler at their
   ``received_at`` times give the same groups at the same virtual times (wall-clock
   mode, grace 0, every partition caught up).
2. Groups formed live equal groups formed by replaying the same log in one batch
   (event-time clock only), whatever the delivery timing and even with out-of-order
   ``received_at`` values.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

from processors.windows import reference_session_window, session_window

Item = tuple[int, int, Any]
KEYS = ("a", "b", "c", "d", "e")


def key_of(value: Any) -> str:
    return str(value.key)


@st.composite
def in_order_logs(draw: st.DrawFn) -> tuple[int, list[Item]]:
    """(timeout_ms, items) with non-decreasing received_at; gaps hit the boundaries."""
    timeout = draw(st.integers(min_value=1, max_value=8000))
    n = draw(st.integers(min_value=0, max_value=60))
    gap = st.one_of(
        st.sampled_from([0, 0, timeout, timeout - 1, timeout + 1]),
        st.integers(min_value=0, max_value=2 * timeout),
    )
    partitions = draw(st.integers(min_value=1, max_value=3))
    t = draw(st.integers(min_value=0, max_value=10_000))
    next_offset = dict.fromkeys(range(partitions), 0)
    items: list[Item] = []
    for _ in range(n):
        t += draw(gap) // draw(st.sampled_from([1, 1, 3]))  # bursts of close records
        p = draw(st.integers(min_value=0, max_value=partitions - 1))
        items.append(
            (p, next_offset[p], SimpleNamespace(received_at=t, key=draw(st.sampled_from(KEYS))))
        )
        next_offset[p] += 1
    return timeout, items


def replay_fast(timeout: int, items: list[Item]) -> list[tuple[float, int, str, tuple[int, ...]]]:
    sched = TestScheduler()
    source = sched.create_hot_observable(
        [ReactiveTest.on_next(i[2].received_at / 1000, i) for i in items]
    )
    out: list[tuple[float, int, str, tuple[int, ...]]] = []
    source.pipe(session_window(key_of, timeout, sched, grace_ms=0, caught_up=True)).subscribe(
        lambda g: out.append((sched.clock, g.partition, g.key, g.offsets))
    )
    sched.start()
    return out


def replay_reference(
    timeout: int, items: list[Item]
) -> list[tuple[float, int, str, tuple[int, ...]]]:
    sched = TestScheduler()
    source = sched.create_hot_observable(
        [ReactiveTest.on_next(i[2].received_at / 1000, i) for i in items]
    )
    out: list[tuple[float, int, str, tuple[int, ...]]] = []

    def record(kv: tuple[tuple[int, str], list[Item]]) -> None:
        (partition, key), values = kv
        out.append((sched.clock, partition, key, tuple(v[1] for v in values)))

    chain = reference_session_window(lambda i: (i[0], key_of(i[2])), timeout, sched)
    source.pipe(chain).subscribe(record)
    sched.start()
    return out


@settings(max_examples=300, deadline=None)
@given(in_order_logs())
def test_fast_operator_matches_the_stock_chain(log: tuple[int, list[Item]]) -> None:
    timeout, items = log
    fast = replay_fast(timeout, items)
    assert fast == replay_reference(timeout, items)
    # Every input is in exactly one group (the source never completes: all close).
    assert sorted((p, o) for _, p, _, offs in fast for o in offs) == sorted(
        (i[0], i[1]) for i in items
    )


@st.composite
def any_order_logs(draw: st.DrawFn) -> tuple[int, list[Item], list[float]]:
    """(timeout_ms, items, delivery ticks): event times jitter, delivery is increasing."""
    timeout = draw(st.integers(min_value=1, max_value=5000))
    n = draw(st.integers(min_value=0, max_value=60))
    partitions = draw(st.integers(min_value=1, max_value=3))
    base = 0
    next_offset = dict.fromkeys(range(partitions), 0)
    items: list[Item] = []
    deliveries: list[float] = []
    tick = 0.0
    for _ in range(n):
        base += draw(st.integers(min_value=0, max_value=2 * timeout))
        jitter = draw(st.integers(min_value=-2 * timeout, max_value=timeout))
        p = draw(st.integers(min_value=0, max_value=partitions - 1))
        value = SimpleNamespace(received_at=max(0, base + jitter), key=draw(st.sampled_from(KEYS)))
        items.append((p, next_offset[p], value))
        next_offset[p] += 1
        tick += draw(st.sampled_from([0.0, 0.001, 1.0, 100.0]))
        deliveries.append(tick)
    return timeout, items, deliveries


def groups_and_held(
    timeout: int, items: list[Item], deliveries: list[float] | None
) -> tuple[list[tuple[int, str, tuple[int, ...], int, int]], dict[int, int], int]:
    sched = TestScheduler()
    window = session_window(key_of, timeout, sched, caught_up=False)
    if deliveries is None:  # one batch, all at once
        source = reactivex.from_iterable(items)
    else:  # live: records trickle in over virtual time
        source = sched.create_hot_observable(
            [ReactiveTest.on_next(t, i) for t, i in zip(deliveries, items, strict=True)]
        )
    out: list[tuple[int, str, tuple[int, ...], int, int]] = []
    source.pipe(window).subscribe(
        lambda g: out.append((g.partition, g.key, g.offsets, g.first_received_at, g.deadline)),
        scheduler=sched,
    )
    sched.start()
    return out, window.held_offsets(), window.open_instances


@settings(max_examples=300, deadline=None)
@given(any_order_logs())
def test_live_groups_equal_batch_replay_groups(log: tuple[int, list[Item], list[float]]) -> None:
    timeout, items, deliveries = log
    live = groups_and_held(timeout, items, deliveries)
    batch = groups_and_held(timeout, items, None)
    assert live == batch
    closed, _, open_instances = live
    assert sum(len(g[2]) for g in closed) + open_instances == len(items)
