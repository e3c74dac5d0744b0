"""Pure ledger logic for exactly-once jobs (DESIGN.md §4).

The jobs topic is the ledger: every ``group.closed`` record lists the instances-topic
inputs ``(partition, offset)`` it consumed. The rules that make a crash at any instant
yield every job exactly once:

1. write ``group.closed`` (acks=all) before committing past any of its inputs;
2. commit an instances partition only up to the oldest input still held by an open
   group or by a ``group.closed`` not yet acknowledged: processors hold a group's first
   offset in the consumer's ``streams.kafka.CommitTracker`` when it opens, the sink
   releases it (:func:`held_input`) once the record is acknowledged;
3. on assignment, read the ledger from :func:`resume_positions` (kept in the commit
   metadata; a partition never committed reads the ledger from its beginning), build
   :class:`CoveredInputs`, and skip covered inputs while replaying (they still advance
   the window's event clock, see ``SessionWindow.advance``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reactivex import Observable
from reactivex import operators as ops

from streams.events import GroupClosed, InputOffset

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


def covered_inputs(
    records: Iterable[GroupClosed], partitions: Iterable[int] | None = None
) -> dict[int, frozenset[int]]:
    """``{instances partition: covered offsets}`` of some ``group.closed`` records."""
    covered = CoveredInputs.from_records(records, partitions)
    return {p: covered.offsets(p) for p in covered._by_partition}


def skip_covered(
    covered: CoveredInputs,
) -> Callable[[Observable[tuple[int, int, Any]]], Observable[tuple[int, int, Any]]]:
    """Rx filter dropping ``(partition, offset, value)`` records a closed group covers.

    For windows prefer ``JobProcessor.set_covered`` (skipped inputs must still advance
    the event clock); this plain filter suits consumers without event-time state.
    """
    result: Callable[[Observable[tuple[int, int, Any]]], Observable[tuple[int, int, Any]]]
    result = ops.filter(lambda record: not covered.covers(record[0], record[1]))
    return result


def held_input(record: GroupClosed) -> InputOffset | None:
    """The input a processor held for ``record``: its first input (the group's oldest).

    Release it in the consumer's ``CommitTracker`` once ``record`` is acknowledged.
    """
    return record.inputs[0] if record.inputs else None


def resume_positions(
    written: Iterable[tuple[int, int, GroupClosed]], commits: Mapping[int, int]
) -> dict[int, dict[int, int]]:
    """Where a new owner of each instances partition must start reading the ledger.

    ``written`` holds ``(jobs partition, jobs offset, record)`` of acknowledged
    ``group.closed`` records; ``commits`` the instances offsets about to be committed,
    per instances partition. A record is still needed for instances partition ``p`` if
    one of its inputs on ``p`` is at or after ``commits[p]`` (a replay from the commit
    meets it again). Returns ``{p: {jobs partition: smallest needed jobs offset}}`` --
    what to keep in ``p``'s commit metadata. Partitions absent from the result need no
    record older than the ledger's current end; records on partitions absent from
    ``commits`` are ignored.
    """
    positions: dict[int, dict[int, int]] = {}
    for jobs_partition, jobs_offset, record in written:
        for item in record.inputs:
            commit = commits.get(item.partition)
            if commit is None or item.offset < commit:
                continue
            per_jobs = positions.setdefault(item.partition, {})
            current = per_jobs.get(jobs_partition)
            if current is None or jobs_offset < current:
                per_jobs[jobs_partition] = jobs_offset
    return positions
