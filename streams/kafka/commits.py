"""Which offsets are safe to commit: a pure bookkeeping object (no I/O, no clock).

A consumer may commit offset ``n`` of a partition only when every record below ``n`` is
finished with. Records are finished ("done") as soon as they were handed to the
processor, except those an open group still needs: the processor *holds* the first
offset of every open group and *releases* it once the group is closed and its ledger
record is durable (DESIGN.md §4, "Exactly-once jobs without luck"). Per partition::

    safe offset = min(oldest held offset, last seen offset + 1)

so a crash replays from the oldest open group and never skips an instance.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class _Partition:
    last_seen: int = -1
    held: dict[int, int] = field(default_factory=dict)  # offset -> number of holders
    committed: int = -1


class CommitTracker(Generic[P]):
    """Per-partition bookkeeping of seen, held and committed offsets.

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
        """The record at ``offset`` was handled (it needs nothing more unless held)."""
        state = self._part(partition)
        state.last_seen = max(state.last_seen, offset)

    def hold(self, partition: P, offset: int) -> None:
        """Keep ``offset`` (and everything after it) uncommitted until :meth:`release`.

        Holds are counted: two holders of one offset need two releases.
        """
        state = self._part(partition)
        state.held[offset] = state.held.get(offset, 0) + 1
        state.last_seen = max(state.last_seen, offset)

    def release(self, partition: P, offset: int) -> bool:
        """Drop one hold of ``offset``; ``False`` if it was not held (e.g. after revoke)."""
        state = self._parts.get(partition)
        if state is None or offset not in state.held:
            return False
        remaining = state.held[offset] - 1
        if remaining:
            state.held[offset] = remaining
        else:
            del state.held[offset]
        return True

    def held(self, partition: P) -> tuple[int, ...]:
        """The offsets held on ``partition``, oldest first."""
        state = self._parts.get(partition)
        return tuple(sorted(state.held)) if state is not None else ()

    def safe_offset(self, partition: P) -> int | None:
        """The offset it is safe to commit for ``partition`` (``None``: nothing seen)."""
        state = self._parts.get(partition)
        if state is None or state.last_seen < 0:
            return None
        next_unseen = state.last_seen + 1
        oldest_held = min(state.held, default=next_unseen)
        return min(next_unseen, oldest_held)

    def committable(self) -> dict[P, int]:
        """The safe commit offset of every partition that has seen a record."""
        out: dict[P, int] = {}
        for partition in self._parts:
            safe = self.safe_offset(partition)
            if safe is not None:
                out[partition] = safe
        return out

    def pending(self) -> dict[P, int]:
        """Safe offsets that move past what was last committed (what to commit now)."""
        return {
            partition: safe
            for partition, safe in self.committable().items()
            if safe > self._parts[partition].committed
        }

    def committed(self, offsets: Mapping[P, int]) -> None:
        """Record that ``offsets`` were committed (commits never move backwards here)."""
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
