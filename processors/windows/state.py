"""Pure bookkeeping of keyed session windows over a partitioned log (DESIGN.md §4).

No Rx, no clock reads: every time is an argument, in epoch milliseconds. The Rx operator
in :mod:`processors.windows.operator` wraps this with one sweep timer.

Semantics (one open group per ``(partition, key)``; Kafka keying puts a key on one
partition):

* event time of a record is ``time_fn(value)`` (``InstanceReceived.received_at``);
* a group's deadline is ``max(event time in group) + timeout``; every record resets it,
  there is no maximum size or age;
* **event clock**: the clock of a partition. A group closes when the clock is
  *strictly* greater than its deadline (Clara's ``elapsed > timeout``), so a record
  stamped exactly at the deadline still joins, and a gap longer than the timeout splits
  a group. Two ways to move it, both functions of the log: by the records' own times
  (``record_clock``: the newest event time seen), or only by :meth:`SessionState.advance`
  (the runtime does it with the bus's ``clock.tick`` records, which are in the log:
  docs/processing.md "Time"); then a record joins its key's open group whatever its
  time, and only the ticks close groups.
* **wall clock**: once a partition is caught up with its end, :meth:`SessionState.sweep`
  at ``now`` also closes groups whose deadline is ``<= now - grace``. ``<=`` because the
  sweep runs at the instant the quiet period has fully elapsed -- the instant RxPY's
  ``debounce`` fires -- and a record due at that same instant is processed first (the
  scheduler runs work queued earlier first), exactly like the stock chain.
* closed groups are emitted once, in ``(deadline, sequence of last record)`` order,
  which is the order in which the stock chain's debounce timers fire. Revoked partitions
  and completion emit nothing: partial groups are re-formed from the log.

Cost: O(1) amortised per record (a dict lookup and two list appends); a heap holds one
entry per open group (re-pushed lazily when a group was extended), not one per record.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable
from operator import attrgetter
from typing import Any, Generic, TypeVar

from processors.windows.groups import (
    REASON_COMPLETE,
    REASON_MAX_AGE,
    REASON_TIMEOUT,
    ClosedGroup,
    OpenGroup,
)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
M = TypeVar("M")

_NEVER = -(1 << 62)  # an event clock that has seen nothing
_NO_KEY: Any = object()  # add() without a precomputed key

received_at: Callable[[Any], int] = attrgetter("received_at")


class _Open:
    """An open group (plain slots object: no Rx objects per group)."""

    __slots__ = ("born", "first", "last", "members", "offsets", "opener", "seq")

    def __init__(self, time: int, seq: int, member: Any, offset: int, opener: Any) -> None:
        self.first = time
        self.last = time
        self.seq = seq
        self.born = seq  # heap entries older than this belong to a closed predecessor
        self.members = [member]
        self.offsets = [offset]
        self.opener = opener


class _Partition:
    """Per-partition state: open groups (creation order), deadline heap, event clock."""

    __slots__ = ("caught_up", "changes", "clock", "groups", "heap")

    def __init__(self, caught_up: bool) -> None:
        self.groups: dict[Any, _Open] = {}
        # (registered deadline, sequence, key): one entry per open group; an entry is
        # stale when the group was extended since, and is re-pushed when it surfaces.
        self.heap: list[tuple[int, int, Any]] = []
        self.clock = _NEVER
        self.caught_up = caught_up
        self.changes = 0  # bumped when a group opens, grows or closes (what operators see)


class SessionState(Generic[K, T, M]):
    """Keyed session windows over ``(partition, offset, value)`` records.

    ``emit`` receives each :class:`ClosedGroup`; ``on_due`` (optional) is told the wall
    time (ms) at which a sweep becomes useful whenever a new group opens on a caught-up
    partition, so a timer owner can arm its single timer; ``on_open`` (optional) is
    told ``(partition, offset)`` of the first record of every new group -- the offset
    to hold uncommitted until the group's ledger record is durable. None of them may
    re-enter the state.
    """

    def __init__(
        self,
        key_fn: Callable[[T], K],
        timeout_ms: int,
        *,
        grace_ms: int = 0,
        caught_up: bool = True,
        time_fn: Callable[[T], int] = received_at,
        element_fn: Callable[[T], M] | None = None,
        emit: Callable[[ClosedGroup[K, T, M]], None] | None = None,
        on_open: Callable[[int, int], None] | None = None,
        record_clock: bool = True,
        max_age_ms: int | None = None,
    ) -> None:
        if timeout_ms < 0 or grace_ms < 0:
            raise ValueError("timeout_ms and grace_ms must be >= 0")
        self.key_fn = key_fn
        self.timeout_ms = timeout_ms
        self.grace_ms = grace_ms
        self.caught_up_default = caught_up
        self.time_fn = time_fn
        self.element_fn = element_fn
        self.emit: Callable[[ClosedGroup[K, T, M]], None] = emit or _discard
        self.on_due: Callable[[int], None] | None = None
        self.on_open = on_open
        self.record_clock = record_clock
        self.max_age_ms = max_age_ms
        # complete_fn(count, newest record) -> True closes the group now (reason complete)
        self.complete_fn: Callable[[int, T], bool] | None = None
        self._parts: dict[int, _Partition] = {}
        self._seq = 0
        self._open_instances = 0

    # -- records ---------------------------------------------------------------------

    def add(
        self, partition: int, offset: int, value: T, key: Any = _NO_KEY, time: int | None = None
    ) -> None:
        """Take one record: advance the partition's event clock (``record_clock``), then
        join or open.

        ``key`` may be given when the caller already computed it (else ``key_fn``), and
        ``time`` (else ``time_fn``).
        """
        t = self.time_fn(value) if time is None else time
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(self.caught_up_default)
        if self.record_clock and t > part.clock:
            part.clock = t
            heap = part.heap
            if heap and heap[0][0] < t:
                self._expire_event_time(partition, part)
        if key is _NO_KEY:
            key = self.key_fn(value)
        self._seq = seq = self._seq + 1
        part.changes += 1
        member: Any = value if self.element_fn is None else self.element_fn(value)
        self._open_instances += 1
        group = part.groups.get(key)
        if group is not None:
            group.members.append(member)
            group.offsets.append(offset)
            if t >= group.last:
                group.last = t
                group.seq = seq
            elif t < group.first:
                group.first = t
            if self.complete_fn is not None and self.complete_fn(len(group.offsets), value):
                self.close(partition, key, REASON_COMPLETE, group.last)
            return
        group = part.groups[key] = _Open(t, seq, member, offset, value)
        if self.on_open is not None:
            self.on_open(partition, offset)
        if self.complete_fn is not None and self.complete_fn(1, value):
            self.close(partition, key, REASON_COMPLETE, t)
            return
        deadline = self._due(group)[0]
        heapq.heappush(part.heap, (deadline, seq, key))
        if self.record_clock and deadline < part.clock:  # its window has already passed
            self._expire_event_time(partition, part)
        elif part.caught_up and self.on_due is not None:
            self.on_due(deadline + self.grace_ms)

    def advance(self, partition: int, time_ms: int) -> None:
        """Advance a partition's event clock without adding a record; closes the groups
        it passes.

        With ``record_clock``: for inputs skipped because a closed group already covers
        them (they moved the clock in the original run, so they must in a replay too).
        Without: the clock's only mover (the bus's ``clock.tick`` records).
        """
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(self.caught_up_default)
        if time_ms > part.clock:
            part.clock = time_ms
            if part.heap and part.heap[0][0] < time_ms:
                self._expire_event_time(partition, part)

    def _due(self, group: _Open) -> tuple[int, str]:
        """When ``group`` is due to close, and why."""
        quiet = group.last + self.timeout_ms
        if self.max_age_ms is not None and group.first + self.max_age_ms < quiet:
            return group.first + self.max_age_ms, REASON_MAX_AGE
        return quiet, REASON_TIMEOUT

    def _pop_due(
        self, partition: int, part: _Partition, limit: int, *, inclusive: bool
    ) -> list[tuple[int, int, ClosedGroup[K, T, M]]]:
        """Close the groups of ``part`` due before ``limit`` (or at it, ``inclusive``);
        heap entries of groups extended since are re-pushed at their new due time."""
        found: list[tuple[int, int, ClosedGroup[K, T, M]]] = []
        heap, groups = part.heap, part.groups
        while heap and (heap[0][0] <= limit if inclusive else heap[0][0] < limit):
            deadline, seq, key = heapq.heappop(heap)
            group = groups.get(key)
            if group is None or seq < group.born:
                continue  # the entry of a group closed early (forced, complete)
            actual, reason = self._due(group)
            if actual == deadline and group.seq == seq:
                del groups[key]
                part.changes += 1
                found.append((deadline, seq, self._closed(partition, key, group, deadline, reason)))
            else:
                heapq.heappush(heap, (actual, group.seq, key))
        return found

    def _expire_event_time(self, partition: int, part: _Partition) -> None:
        for _, _, item in self._pop_due(partition, part, part.clock, inclusive=False):
            self.emit(item)

    def close(self, partition: int, key: Any, reason: str, at: int) -> bool:
        """Close the open group of ``key`` on ``partition`` now (e.g. ``forced`` by an
        operator), due at ``at``; False when there is no such open group."""
        part = self._parts.get(partition)
        if part is None or (group := part.groups.pop(key, None)) is None:
            return False
        part.changes += 1
        self.emit(self._closed(partition, key, group, at, reason))
        return True  # its heap entry is dropped lazily (no group for the key, or a newer one)

    # -- wall clock ------------------------------------------------------------------

    def sweep(self, now_ms: int) -> int:
        """Close groups of caught-up partitions with ``deadline <= now - grace``.

        Emits them in ``(deadline, last sequence)`` order across partitions and returns
        how many closed.
        """
        limit = now_ms - self.grace_ms
        found: list[tuple[int, int, ClosedGroup[K, T, M]]] = []
        for partition, part in self._parts.items():
            if part.caught_up:
                found.extend(self._pop_due(partition, part, limit, inclusive=True))
        if len(found) > 1:
            found.sort(key=_deadline_then_seq)
        for _, _, item in found:
            self.emit(item)
        return len(found)

    def next_deadline(self, partition: int) -> int | None:
        """The earliest deadline of an open group on ``partition`` (may be early: an
        extended group's older entry; ``None``: no open group)."""
        part = self._parts.get(partition)
        if part is None or not part.heap:
            return None
        return part.heap[0][0]

    def next_due(self) -> int | None:
        """Wall time (ms) of the next useful sweep, or ``None`` if none is needed.

        May be early (the earliest heap entry can belong to a group extended since);
        an early sweep closes nothing and is harmless.
        """
        due: int | None = None
        for part in self._parts.values():
            if part.caught_up and part.heap:
                candidate = part.heap[0][0] + self.grace_ms
                if due is None or candidate < due:
                    due = candidate
        return due

    # -- partitions ------------------------------------------------------------------

    def set_caught_up(self, partition: int, caught_up: bool = True) -> None:
        """Say whether the consumer has reached the end of ``partition``.

        Only caught-up partitions are closed by the wall clock; a partition that is
        replaying a backlog is closed by its event clock alone.
        """
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(caught_up)
        part.caught_up = caught_up

    def is_caught_up(self, partition: int) -> bool:
        """Whether the wall clock may close groups of ``partition``."""
        part = self._parts.get(partition)
        return self.caught_up_default if part is None else part.caught_up

    def revoke(self, partitions: Iterable[int]) -> int:
        """Forget partitions (rebalance): drop their open groups without emitting.

        Returns the number of groups dropped. Their inputs are not committed past, so
        the next owner of the partition re-forms them from the log.
        """
        dropped = 0
        for partition in partitions:
            part = self._parts.pop(partition, None)
            if part is not None:
                dropped += len(part.groups)
                self._open_instances -= sum(len(g.offsets) for g in part.groups.values())
        return dropped

    # -- queries ---------------------------------------------------------------------

    def oldest_held_offset(self, partition: int) -> int | None:
        """Earliest input offset of any open group on ``partition`` (``None``: none).

        Offsets must not be committed past this. Groups are kept in creation order and
        a partition's offsets arrive in increasing order, so this is the first group's
        first offset.
        """
        part = self._parts.get(partition)
        if part is None or not part.groups:
            return None
        return next(iter(part.groups.values())).offsets[0]

    def held_offsets(self) -> dict[int, int]:
        """:meth:`oldest_held_offset` of every partition that holds an open group."""
        return {
            p: next(iter(part.groups.values())).offsets[0]
            for p, part in self._parts.items()
            if part.groups
        }

    def clock(self, partition: int) -> int | None:
        """The event clock of ``partition`` (newest event time seen), or ``None``."""
        part = self._parts.get(partition)
        if part is None or part.clock == _NEVER:
            return None
        return part.clock

    @property
    def open_groups(self) -> int:
        """Number of open groups over all partitions."""
        return sum(len(part.groups) for part in self._parts.values())

    @property
    def open_instances(self) -> int:
        """Number of records held in open groups."""
        return self._open_instances

    def partitions(self) -> tuple[int, ...]:
        """Partitions the state knows about."""
        return tuple(self._parts)

    # -- helpers ---------------------------------------------------------------------

    def _closed(
        self, partition: int, key: Any, group: _Open, deadline: int, reason: str
    ) -> ClosedGroup[K, T, M]:
        self._open_instances -= len(group.offsets)
        return ClosedGroup(
            partition=partition,
            key=key,
            members=tuple(group.members),
            offsets=tuple(group.offsets),
            first_received_at=group.first,
            last_received_at=group.last,
            deadline=deadline,
            opener=group.opener,
            reason=reason,
        )

    def open_count(self, partition: int) -> int:
        """How many groups of ``partition`` are open."""
        return len(part.groups) if (part := self._parts.get(partition)) is not None else 0

    def changes(self, partition: int) -> int:
        """Moves whenever a group of ``partition`` opens, grows or closes."""
        return part.changes if (part := self._parts.get(partition)) is not None else -1

    def open_groups_of(self, partition: int, limit: int | None = None) -> list[OpenGroup[K]]:
        """Snapshots of the open groups of ``partition``, oldest first (the first
        ``limit`` of them if given: a snapshot costs, ten thousand open groups are many)."""
        part = self._parts.get(partition)
        groups = itertools.islice(part.groups.items(), limit) if part is not None else ()
        return [
            OpenGroup(partition, key, g.offsets[0], len(g.offsets), g.first, g.last, *self._due(g))
            for key, g in groups
        ]


def _discard(_: object) -> None:
    return None


def _deadline_then_seq(item: tuple[int, int, object]) -> tuple[int, int]:
    return item[0], item[1]
