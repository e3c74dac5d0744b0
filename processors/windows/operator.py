"""The session window as a custom Rx operator with one sweep timer (DESIGN.md §4).

``source.pipe(session_window(key_fn, timeout_ms, scheduler))`` turns an observable of
``(partition, offset, value)`` records (or ``(partition, offset, value, key)`` when the
key is already known, ``(partition, offset, value, key, time)`` with the time too) -- or
of lists of such records, taken in order as if one by one (one Rx hop per list) -- into
an observable of
:class:`~processors.windows.state.ClosedGroup`. It keeps per-key state in plain dicts
(:class:`~processors.windows.state.SessionState`) and schedules at most ONE timer on the
injected scheduler, at the earliest wall-clock deadline of a caught-up partition -- not
on a fixed period, so it emits at exactly the virtual time the stock chain
(:mod:`processors.windows.reference`) does.

The returned :class:`SessionWindow` is stateful: it serves one subscription at a time
and is also the handle the Kafka wiring uses to report "caught up" / revocations and to
read the oldest held offset per partition for commits. Call it only from the
scheduler's thread (the asyncio loop with ``AsyncIOScheduler``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from processors.windows.groups import ClosedGroup
from processors.windows.state import K, M, SessionState, T, received_at

log = logging.getLogger(__name__)

# (partition, offset, value), or (partition, offset, value, key) with the key precomputed
Record = tuple[int, int, Any] | tuple[int, int, Any, Any]


def now_ms(scheduler: abc.SchedulerBase) -> int:
    """The scheduler's notion of now as epoch milliseconds (rounded to the nearest ms).

    ``AsyncIOScheduler.now`` is wall-clock UTC, ``TestScheduler.now`` the virtual clock
    (1 tick = 1 s), so ``received_at / 1000`` is a record's virtual time in tests.
    """
    return round(scheduler.to_seconds(scheduler.now) * 1000)


class SessionWindow(Generic[K, T, M]):
    """Stateful Rx operator: ``Observable[(partition, offset, T)] -> Observable[ClosedGroup]``.

    Keyed session windows: a quiet ``timeout_ms`` closes a group. ``key_fn(value)`` gives
    the group key; ``time_fn(value)`` the event time in epoch ms (default
    ``value.received_at``); ``element_fn(value)`` what a group keeps per record
    (default: the value itself). ``grace_ms`` delays wall-clock closing for clock skew
    and publish delay (≈1000 in production, 0 to match the stock chain). ``caught_up``
    is the initial state of partitions not reported yet (the runtime reports each
    partition with :meth:`set_caught_up`). ``on_open(partition, offset)`` is called when
    a group opens, with its first offset. Completion of the source completes the output
    *without* emitting open (partial) groups; an error is forwarded.
    """

    def __init__(
        self,
        key_fn: Callable[[T], K],
        timeout_ms: int,
        scheduler: abc.SchedulerBase | None = None,
        *,
        grace_ms: int = 0,
        caught_up: bool = True,
        time_fn: Callable[[T], int] = received_at,
        element_fn: Callable[[T], M] | None = None,
        on_open: Callable[[int, int], None] | None = None,
    ) -> None:
        self.state: SessionState[K, T, M] = SessionState(
            key_fn,
            timeout_ms,
            grace_ms=grace_ms,
            caught_up=caught_up,
            time_fn=time_fn,
            element_fn=element_fn,
            on_open=on_open,
        )
        self.log_clock = False
        self._scheduler = scheduler
        self._active: abc.SchedulerBase | None = None
        self._observer: abc.ObserverBase[ClosedGroup[K, T, M]] | None = None
        self._timer: abc.DisposableBase | None = None
        self._timer_due: int | None = None

    # -- Rx plumbing -----------------------------------------------------------------

    def __call__(self, source: Observable[Any]) -> Observable[ClosedGroup[K, T, M]]:
        def subscribe(
            observer: abc.ObserverBase[ClosedGroup[K, T, M]],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            if self._observer is not None:
                raise RuntimeError("a SessionWindow serves one subscription at a time")
            active = self._scheduler or scheduler
            if active is None:
                raise ValueError(
                    "session_window needs a scheduler: pass AsyncIOScheduler(loop) "
                    "(or a TestScheduler) to session_window() or to subscribe()"
                )
            self._active = active
            self._observer = observer
            self.state.emit = observer.on_next
            self.state.on_due = self._due
            self._rearm()
            add = self.state.add

            def on_next(record: Record | list[Record]) -> None:
                if type(record) is list:  # a run of records: one Rx hop for all of them
                    for item in record:
                        add(*item)
                else:
                    add(*record)

            subscription = source.subscribe(
                on_next, self._on_error, self._on_completed, scheduler=scheduler
            )
            return CompositeDisposable(subscription, Disposable(self._detach))

        return Observable(subscribe)

    def _on_error(self, error: Exception) -> None:
        observer = self._observer
        self._detach()
        if observer is not None:
            observer.on_error(error)

    def _on_completed(self) -> None:
        # Graceful shutdown: open groups are NOT emitted; their inputs stay uncommitted
        # and are re-formed from the log by the next run.
        observer = self._observer
        self._detach()
        if observer is not None:
            observer.on_completed()

    def _detach(self) -> None:
        self._cancel_timer()
        self._observer = None
        self._active = None
        self.state.on_due = None
        self.state.emit = _drop

    # -- the one timer ---------------------------------------------------------------

    def _due(self, due_ms: int) -> None:
        if self._timer_due is None or due_ms < self._timer_due:
            self._arm(due_ms)

    def _rearm(self) -> None:
        due = self.state.next_due()
        if due is None:
            self._cancel_timer()
        elif due != self._timer_due:
            self._arm(due)

    def _arm(self, due_ms: int) -> None:
        self._cancel_timer()
        if self._active is None:
            return
        self._timer_due = due_ms
        self._timer = self._active.schedule_absolute(due_ms / 1000.0, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.dispose()
        self._timer = None
        self._timer_due = None

    def _on_timer(self, scheduler: abc.SchedulerBase, _state: Any = None) -> None:
        self._timer = None
        self._timer_due = None
        if self._observer is None:
            return
        try:
            self.state.sweep(now_ms(scheduler))
        except Exception as exc:  # a timer has no caller: the error goes downstream
            log.exception("session window sweep failed")
            self._on_error(exc)
            return
        self._rearm()

    # -- control and queries (the Kafka wiring's handle) -----------------------------

    def use_log_clock(self) -> None:
        """Close groups only by :meth:`advance` (the bus's ``clock.tick`` records): no
        record time moves the clock and the scheduler's clock is never used."""
        self.log_clock = True
        self.state.record_clock = False
        self.state.caught_up_default = False
        for partition in self.state.partitions():
            self.state.set_caught_up(partition, False)
        self._rearm()

    def set_caught_up(self, partition: int, caught_up: bool = True) -> None:
        """The consumer reached (``True``) or fell behind (``False``) the partition end
        (ignored with the log clock)."""
        self.state.set_caught_up(partition, caught_up and not self.log_clock)
        self._rearm()

    def set_grace(self, grace_ms: int) -> None:
        """How long after a deadline the wall clock may close a group (clock skew)."""
        if grace_ms < 0:
            raise ValueError("grace_ms must be >= 0")
        self.state.grace_ms = grace_ms
        self._rearm()

    def revoke(self, partitions: Iterable[int]) -> int:
        """Drop the open groups of revoked partitions without emitting; returns how many."""
        dropped = self.state.revoke(partitions)
        self._rearm()
        return dropped

    def advance(self, partition: int, time_ms: int) -> None:
        """Advance a partition's event clock for a skipped (already covered) input."""
        self.state.advance(partition, time_ms)

    def oldest_held_offset(self, partition: int) -> int | None:
        """Earliest input offset of an open group on ``partition`` (commit bound)."""
        return self.state.oldest_held_offset(partition)

    def held_offsets(self) -> dict[int, int]:
        """``{partition: oldest held offset}`` for partitions with open groups."""
        return self.state.held_offsets()

    @property
    def open_groups(self) -> int:
        """Number of open groups."""
        return self.state.open_groups

    @property
    def open_instances(self) -> int:
        """Number of records held in open groups."""
        return self.state.open_instances


session_window = SessionWindow
"""The operator's constructor in Rx style: ``source.pipe(session_window(key_fn, ...))``."""


def _drop(_: object) -> None:
    return None
