"""Pure ledger logic for exactly-once jobs (DESIGN.md §4).

The jobs topic is the ledger: every ``group.closed`` record lists the instances-topic
inputs ``(partition, offset)`` it consumed. The rules that make a crash at any instant
yield every job exactly once:

1. write ``group.closed`` (acks=all) before committing past any of its inputs;
2. commit an instances partition only up to the oldest input still needed by an open
   group (each processor's ``held_offsets()``) or by a ``group.closed`` not yet
   acknowledged (the ledger sink): the runtime's commit bound;
3. on assignment, read the ledger from the positions kept in the commit metadata (a
   partition never committed reads the ledger from its beginning;
   ``processors.runtime.LedgerIndex``), build :class:`CoveredInputs`, and skip covered
   inputs while replaying (they still advance the window's event clock, see
   ``SessionWindow.advance``).
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.events import GroupClosed

_EMPTY: frozenset[int] = frozenset()


class CoveredInputs:
    """Inputs ``(partition, offset)`` already consumed by a ``group.closed`` record.

    ``partitions`` limits it to the instances partitions this consumer owns
    (``None``: all). Membership is O(1); :meth:`prune` forgets offsets below a commit.
    """

    __slots__ = ("_by_partition", "_partitions")

    def __init__(self, partitions: Iterable[int] | None = None) -> None:
        self._partitions = None if partitions is None else frozenset(partitions)
        self._by_partition: dict[int, set[int]] = {}

    @classmethod
    def from_records(
        cls, records: Iterable[GroupClosed], partitions: Iterable[int] | None = None
    ) -> CoveredInputs:
        """Covered inputs of the ``group.closed`` records read since the resume position."""
        covered = cls(partitions)
        for record in records:
            covered.add(record)
        return covered

    def add(self, record: GroupClosed) -> None:
        """Mark every input of ``record`` as covered."""
        for item in record.inputs:
            if self._partitions is None or item.partition in self._partitions:
                self._by_partition.setdefault(item.partition, set()).add(item.offset)

    def covers(self, partition: int, offset: int) -> bool:
        """Whether a closed group already consumed this input (skip it)."""
        return offset in self._by_partition.get(partition, _EMPTY)

    def prune(self, partition: int, below: int) -> None:
        """Forget covered offsets ``< below`` (they precede the committed offset)."""
        offsets = self._by_partition.get(partition)
        if offsets:
            kept = {o for o in offsets if o >= below}
            if kept:
                self._by_partition[partition] = kept
            else:
                del self._by_partition[partition]

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions."""
        for partition in partitions:
            self._by_partition.pop(partition, None)

    def offsets(self, partition: int) -> frozenset[int]:
        """The covered offsets of one partition."""
        return frozenset(self._by_partition.get(partition, _EMPTY))

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_partition.values())
