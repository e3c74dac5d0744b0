"""Which offsets are safe to commit: pure bookkeeping (no I/O, no clock).

A consumer may commit offset ``n`` of a partition only when every record below ``n`` is
finished with. A record is finished once it was handed to the subscribers, unless
something still needs it: an open group still needs its first input, a ``group.closed``
not yet acknowledged still needs the inputs it lists (DESIGN.md §4, "Exactly-once jobs
without luck"). Whoever consumes the records answers one question per partition -- the
*bound*: the oldest offset still needed (``None``: nothing). Per partition::

    safe offset = min(bound, last seen offset + 1)

so a crash replays from the oldest record still needed and never skips one.

:class:`CommitTracker` keeps what was seen and committed; :class:`HeldOffsets` is a
counted set of offsets for whoever keeps records in flight (the ledger writer).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)

CommitBound = Callable[[P], "int | None"]
"""The oldest offset of a partition still needed (``None``: nothing is)."""


@dataclass(slots=True)
class _Partition:
    last_seen: int = -1
    committed: int = -1


class CommitTracker(Generic[P]):
    """Per-partition bookkeeping of seen and committed offsets.

    ``P`` is the partition key (``aiokafka.TopicPartition`` in the shell; anything
    hashable in tests). Offsets are Kafka offsets of records; the commit offset is the
    offset of the *next* record to read, as Kafka expects.
    """

    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}

    def _part(self, partition: P) -> _Partition:
        state = self._parts.get(partition)
        if state is None:
            state = self._parts[partition] = _Partition()
        return state

    def mark_done(self, partition: P, offset: int) -> None:
        """The record at ``offset`` was handed over (needed no more unless bounded)."""
        state = self._part(partition)
        state.last_seen = max(state.last_seen, offset)

    def safe_offset(self, partition: P, bound: int | None = None) -> int | None:
        """The offset it is safe to commit for ``partition`` (``None``: nothing seen)."""
        state = self._parts.get(partition)
        if state is None or state.last_seen < 0:
            return None
        next_unseen = state.last_seen + 1
        return next_unseen if bound is None else min(next_unseen, bound)

    def committable(self, bound: CommitBound[P] | None = None) -> dict[P, int]:
        """The safe commit offset of every partition that has seen a record."""
        out: dict[P, int] = {}
        for partition in self._parts:
            safe = self.safe_offset(partition, None if bound is None else bound(partition))
            if safe is not None:
                out[partition] = safe
        return out

    def pending(self, bound: CommitBound[P] | None = None) -> dict[P, int]:
        """Safe offsets that move past what was last committed (what to commit now)."""
        return {
            partition: safe
            for partition, safe in self.committable(bound).items()
            if safe > self._parts[partition].committed
        }

    def committed(self, offsets: Mapping[P, int]) -> None:
        """Record that ``offsets`` are committed (commits never move backwards here).

        Also used on assignment with the group's committed offsets, so that a bound
        below them never moves a commit back.
        """
        for partition, offset in offsets.items():
            state = self._part(partition)
            state.committed = max(state.committed, offset)

    def last_committed(self, partition: P) -> int | None:
        """The last offset recorded by :meth:`committed` (``None`` if none)."""
        state = self._parts.get(partition)
        if state is None or state.committed < 0:
            return None
        return state.committed

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop all state of ``partitions`` (they were revoked from this consumer)."""
        for partition in partitions:
            self._parts.pop(partition, None)

    def partitions(self) -> frozenset[P]:
        """Partitions with any state."""
        return frozenset(self._parts)


class HeldOffsets(Generic[P]):
    """A counted set of offsets per partition that must not be committed past yet.

    For a writer that keeps records in flight: :meth:`hold` when a record that consumed
    an input is queued, :meth:`release` once the broker acknowledged it; :meth:`oldest`
    is that writer's part of the consumer's commit bound.
    """

    def __init__(self) -> None:
        self._held: dict[P, dict[int, int]] = {}  # partition -> offset -> holders

    def hold(self, partition: P, offset: int) -> None:
        """Keep ``offset`` (and everything after it) uncommitted; holds are counted."""
        held = self._held.setdefault(partition, {})
        held[offset] = held.get(offset, 0) + 1

    def release(self, partition: P, offset: int) -> bool:
        """Drop one hold of ``offset``; ``False`` if it was not held (e.g. forgotten)."""
        held = self._held.get(partition)
        if held is None or offset not in held:
            return False
        remaining = held[offset] - 1
        if remaining:
            held[offset] = remaining
        else:
            del held[offset]
            if not held:
                del self._held[partition]
        return True

    def oldest(self, partition: P) -> int | None:
        """The oldest held offset of ``partition`` (``None``: none held)."""
        held = self._held.get(partition)
        return min(held) if held else None

    def held(self, partition: P) -> tuple[int, ...]:
        """The offsets held on ``partition``, oldest first."""
        return tuple(sorted(self._held.get(partition, ())))

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop the holds of ``partitions``."""
        for partition in partitions:
            self._held.pop(partition, None)


def oldest(*offsets: int | None) -> int | None:
    """The smallest of the offsets that are not ``None`` (``None`` if all are)."""
    found = [o for o in offsets if o is not None]
    return min(found) if found else None
