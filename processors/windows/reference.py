"""The stock RxPY chain: the executable specification of the session window.

    group_by_until(key, None, lambda g: g.pipe(debounce(timeout, scheduler)))
    flat_map(to_list)

It is correct but slow (a debounce timer per record, ~10 Rx objects and ~16 KB per
open group, ≈16k records/s with 10k open groups; see DESIGN.md §4), so production uses
:func:`processors.windows.session_window`; the tests replay random logs through both on
a ``TestScheduler`` at the records' ``received_at`` times and require the same groups at
the same virtual times.

Where the reference differs on purpose (so comparisons avoid these cases):

* it runs on processing time only (no event clock, no grace, no caught-up notion), so
  it matches the fast operator only when records are delivered at their event time and
  every partition is caught up with ``grace_ms=0``;
* completing the source flushes every open group (``to_list`` on completion), while the
  fast operator never emits partial groups on shutdown;
* it cannot drop groups on partition revocation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import reactivex
from reactivex import GroupedObservable, Observable, abc
from reactivex import operators as ops

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def reference_session_window(
    key_fn: Callable[[V], K],
    timeout_ms: int,
    scheduler: abc.SchedulerBase,
) -> Callable[[Observable[V]], Observable[tuple[K, list[V]]]]:
    """``Observable[V] -> Observable[(key, [values])]``, one emission per quiet period."""
    timeout_s = timeout_ms / 1000

    def to_group(group: GroupedObservable[K, V]) -> Observable[tuple[K, list[V]]]:
        key = group.key
        return group.pipe(ops.to_list(), ops.map(lambda values: (key, values)))

    def closer(group: GroupedObservable[K, Any]) -> Observable[Any]:
        return group.pipe(ops.debounce(timeout_s, scheduler=scheduler))

    chain: Callable[[Observable[V]], Observable[tuple[K, list[V]]]] = reactivex.compose(
        ops.group_by_until(key_fn, None, closer),
        ops.flat_map(to_group),
    )
    return chain
