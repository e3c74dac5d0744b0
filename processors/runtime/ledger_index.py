"""What the owner of some instances partitions knows about the jobs ledger (pure).

For every owned instances partition ``p`` it keeps the acknowledged ``group.closed``
records a replay from ``p``'s next commit could still meet, as ``(jobs partition, jobs
offset, newest input offset on p)``, and the known end of each jobs partition. From
that it answers the two questions of DESIGN.md §4 ("exactly-once jobs without luck"):

* on assignment, *where to read the ledger from* (:meth:`LedgerIndex.starts`, from the
  positions in the commit metadata) and *which inputs are covered*
  (:meth:`LedgerIndex.load`);
* on commit of offset ``c``, *where a new owner must start reading*
  (:meth:`LedgerIndex.positions`): the oldest record with an input at or after ``c``,
  or the known end of the jobs partition (records acknowledged later land after it) --
  moved past other writers' records by :meth:`LedgerIndex.observed`, so a start-up
  does not re-read what the submitter wrote after our last record.

Placement: with as many jobs partitions as instances partitions, the runtime writes the
records of instances partition ``p`` to jobs partition ``p`` (one position per
partition); otherwise the key decides and every jobs partition is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processors.exactly_once import CoveredInputs
from streams.events import GroupClosed


@dataclass(frozen=True, slots=True)
class _Entry:
    jobs_partition: int
    jobs_offset: int
    newest_input: int  # the record's newest input offset on the instances partition


class LedgerIndex:
    """Ledger positions per owned instances partition; see the module docstring."""

    def __init__(self, instances_partitions: int, jobs_partitions: int) -> None:
        if instances_partitions < 1 or jobs_partitions < 1:
            raise ValueError("partition counts must be positive")
        self.jobs_partitions = jobs_partitions
        self.same_partition = instances_partitions == jobs_partitions
        self._entries: dict[int, list[_Entry]] = {}
        self._ends: dict[int, int] = {}

    # -- placement -------------------------------------------------------------------

    def jobs_partition_for(self, partition: int) -> int | None:
        """The jobs partition for records of instances partition ``partition``
        (``None``: let the key decide)."""
        return partition if self.same_partition else None

    def home(self, partition: int) -> tuple[int, ...]:
        """Jobs partitions that may hold records of instances partition ``partition``."""
        if self.same_partition:
            return (partition,)
        return tuple(range(self.jobs_partitions))

    # -- assignment ------------------------------------------------------------------

    def starts(self, stored: Mapping[int, Mapping[int, int] | None]) -> dict[int, int | None]:
        """Where to read each jobs partition from, for newly owned instances partitions
        with their stored positions (``None``: no usable metadata, read everything)."""
        out: dict[int, int | None] = {}
        for partition, positions in stored.items():
            wanted = set(self.home(partition)) | set(positions or ())
            for jobs_partition in wanted:
                if not 0 <= jobs_partition < self.jobs_partitions:
                    continue
                start = None if positions is None else positions.get(jobs_partition)
                if jobs_partition not in out:
                    out[jobs_partition] = start
                else:
                    known = out[jobs_partition]
                    out[jobs_partition] = (
                        None if known is None or start is None else min(known, start)
                    )
        return out

    def load(
        self,
        partitions: Iterable[int],
        committed: Mapping[int, int],
        records: Iterable[tuple[int, int, GroupClosed]],
        ends: Mapping[int, int],
    ) -> CoveredInputs:
        """Start owning ``partitions`` from the ledger records read for them.

        ``committed`` has the committed offset per partition (absent: never committed),
        ``records`` are ``(jobs partition, jobs offset, record)`` in any order, ``ends``
        the end offset of each jobs partition read. Returns the covered inputs.
        """
        owned = frozenset(partitions)
        for partition in owned:
            self._entries[partition] = []
        for jobs_partition, end in ends.items():
            self._ends[jobs_partition] = max(self._ends.get(jobs_partition, 0), end)
        covered = CoveredInputs(owned)
        for jobs_partition, jobs_offset, record in records:
            newest = _newest_inputs(record)
            if not any(p in owned and o >= committed.get(p, 0) for p, o in newest.items()):
                continue
            covered.add(record)
            for p, offset in newest.items():
                if p in owned and offset >= committed.get(p, 0):
                    self._entries[p].append(_Entry(jobs_partition, jobs_offset, offset))
        for partition in owned:
            covered.prune(partition, committed.get(partition, 0))
        return covered

    def forget(self, partitions: Iterable[int]) -> None:
        """Stop tracking partitions (no longer owned)."""
        for partition in partitions:
            self._entries.pop(partition, None)

    @property
    def owned(self) -> frozenset[int]:
        """Instances partitions being tracked."""
        return frozenset(self._entries)

    # -- running ---------------------------------------------------------------------

    def acked(self, jobs_partition: int, jobs_offset: int, record: GroupClosed) -> None:
        """A record was acknowledged at ``(jobs_partition, jobs_offset)``."""
        if jobs_offset + 1 > self._ends.get(jobs_partition, 0):
            self._ends[jobs_partition] = jobs_offset + 1
        for partition, offset in _newest_inputs(record).items():
            entries = self._entries.get(partition)
            if entries is not None:
                entries.append(_Entry(jobs_partition, jobs_offset, offset))

    def observed(self, ends: Mapping[int, int]) -> bool:
        """The jobs partitions' ends, read while this writer had nothing in flight:
        every record of ours is below them and every later one lands at or after them,
        so what lies between our last record and these ends (other writers' records:
        the submitter's, the reclaimer's) need not be read by a new owner. True if a
        known end moved (the stored positions are then stale)."""
        moved = False
        for jobs_partition, end in ends.items():
            if end > self._ends.get(jobs_partition, 0):
                self._ends[jobs_partition] = end
                moved = True
        return moved

    def positions(self, partition: int, commit: int) -> dict[int, int]:
        """``{jobs partition: offset}`` to store with the commit of ``commit`` on
        ``partition``; forgets records the commit passes (commits never go back)."""
        entries = self._entries.get(partition)
        if entries is None:
            return {}  # not loaded: store nothing, the next owner reads everything
        kept = [e for e in entries if e.newest_input >= commit]
        self._entries[partition] = kept
        out = {jp: self._ends[jp] for jp in self.home(partition) if jp in self._ends}
        for entry in kept:
            current = out.get(entry.jobs_partition)
            if current is None or entry.jobs_offset < current:
                out[entry.jobs_partition] = entry.jobs_offset
        return out

    def pending(self, partition: int) -> int:
        """How many records of ``partition`` a replay could still meet (diagnostics)."""
        return len(self._entries.get(partition, ()))


def _newest_inputs(record: GroupClosed) -> dict[int, int]:
    newest: dict[int, int] = {}
    for item in record.inputs:
        if item.offset > newest.get(item.partition, -1):
            newest[item.partition] = item.offset
    return newest
