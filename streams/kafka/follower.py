"""Follow a topic as a consumer group, rebuilding state from the log before acting.

A :class:`LogFollower` is a :class:`~streams.kafka.source.KafkaSource` whose assigned
partitions are first read again from a start position (their beginning, or the group's
committed offset) up to their end at assignment time; the :class:`LogHandler` folds those
records (``caught_up`` tells it when the history is complete) and only then acts. The
submitter and the reclaimer follow the jobs ledger this way, so a job whose
``job.submitted`` was written by a previous owner -- even one that crashed before
committing -- is never submitted again. Offsets are committed only up to what the
handler says is done (``committable``), so consumer-group lag shows outstanding work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Literal, Protocol

from aiokafka.structs import TopicPartition

from streams.events import Envelope
from streams.kafka.clients import Connection
from streams.kafka.records import BatchEnd, Record
from streams.kafka.retry import retry_transient
from streams.kafka.source import KafkaSource

log = logging.getLogger(__name__)

Start = Literal["beginning", "committed"]

#: Stored with every commit of a follower that resumes from its commits. A commit without
#: it -- written by an older version, whose commits did not promise that everything
#: before them is done -- is not resumed from: the partition is read from its beginning
#: once, and the next commit carries the mark (docs/operations.md, "Upgrading").
RESUMABLE = '{"v":1,"resume":"open-work"}'


class LogHandler(Protocol):
    """What a follower drives; all methods are called from the event loop, in order."""

    def assigned(self, partitions: frozenset[int]) -> None:
        """These partitions are now ours; their history follows from the start position."""

    async def revoked(self, partitions: frozenset[int]) -> None:
        """These partitions are no longer ours: drop waiting work, finish in-flight work."""

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        """Fold one event (and, once the partition is caught up, act on it)."""

    def caught_up(self, partition: int) -> None:
        """The partition's history up to its end at assignment time has been folded."""

    def committable(self, partition: int) -> int | None:
        """Next offset of ``partition`` that may be committed (``None``: nothing new)."""


def committable_offset(
    opened_at: Iterable[tuple[int, int]], position: int | None, partition: int
) -> int | None:
    """What a handler may commit on ``partition``: the oldest of the ``(partition,
    offset)`` records that opened work still open there, else ``position`` (the next
    offset after everything folded)."""
    opened = [offset for p, offset in opened_at if p == partition]
    return min(opened) if opened else position


class LogFollower:
    """Consume ``topic`` in ``group_id`` and feed ``handler``; see the module docstring.

    ``start`` is where an assigned partition is read from: ``"beginning"``, or
    ``"committed"`` (the group's committed offset if it carries :data:`RESUMABLE`, the
    beginning otherwise) for a handler whose ``committable`` never passes a record it
    still needs.
    """

    def __init__(
        self,
        kafka: Connection,
        *,
        topic: str,
        group_id: str,
        handler: LogHandler,
        client_id: str = "dicom-adapter",
        commit_interval_s: float = 1.0,
        start: Start = "beginning",
        rebuild_timeout_s: float = 60.0,
    ) -> None:
        self.topic = topic
        self.handler = handler
        self.start = start
        self.rebuild_timeout_s = rebuild_timeout_s
        self.source = KafkaSource(
            kafka,
            [topic],
            group_id,
            client_id=client_id,
            max_records=1000,
            commit_interval_s=commit_interval_s,
            commit_bound=self._bound,
            commit_metadata=(lambda _tp, _offset: RESUMABLE) if start == "committed" else None,
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
        )
        self._catching_up: dict[int, int] = {}  # partition -> end offset at assignment
        self._history: dict[int, tuple[float, int]] = {}  # partition -> (since, records)
        self._live: set[int] = set()
        self.source.records.subscribe(self._record, lambda _exc: None)
        self.source.batches.subscribe(self._batch, lambda _exc: None)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until ``stop`` is set; commits what is done on the way and at the end.

        Raises the error that stopped the consumer, if any.
        """
        async with self.source:
            waiters = [
                asyncio.create_task(stop.wait(), name="follower-stop"),
                asyncio.create_task(self.source.join(), name="follower-read"),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waiters:
                    task.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
        if self.source.failure is not None:
            raise self.source.failure

    # -- rebalance -------------------------------------------------------------------

    async def _on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        mine = sorted(tp for tp in assigned if tp.topic == self.topic)
        if not mine:
            return
        partitions = frozenset(tp.partition for tp in mine)
        self.handler.assigned(partitions)
        begins, ends = await retry_transient(
            lambda: self.source.offsets(mine),
            what=f"reading the offsets of {self.topic}",
            timeout_s=self.rebuild_timeout_s,
        )
        for tp in mine:
            start = begins[tp]
            committed = self.source.committed_at(tp)
            if self.start == "committed" and committed is not None:
                if committed.metadata == RESUMABLE:
                    start = max(start, min(committed.offset, ends[tp]))
                else:
                    log.info(
                        "%s[%d]: the committed offset %d is not a resume point (an older "
                        "version's); reading the history from the beginning once",
                        self.topic, tp.partition, committed.offset,
                    )  # fmt: skip
            self.source.seek(tp, start)
            self._live.discard(tp.partition)
            self._history[tp.partition] = (time.monotonic(), 0)
            if ends[tp] > start:
                self._catching_up[tp.partition] = ends[tp]
            else:
                self._caught_up(tp.partition)
        log.info(
            "%s: partitions %s assigned, history read from the %s",
            self.topic, sorted(partitions), self.start,
        )  # fmt: skip

    async def _on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        partitions = frozenset(tp.partition for tp in revoked if tp.topic == self.topic)
        if not partitions:
            return
        for p in partitions:
            self._catching_up.pop(p, None)
        # Still "live" until the source has committed what the handler says is done;
        # the next assignment reads them again from the start position.
        await self.handler.revoked(partitions)

    # -- records ---------------------------------------------------------------------

    def _record(self, record: Record) -> None:
        history = self._history.get(record.partition)
        if history is not None:
            self._history[record.partition] = (history[0], history[1] + 1)
        self.handler.record(record.partition, record.offset, record.key or "", record.envelope)

    def _batch(self, batch: BatchEnd) -> None:
        for progress in batch.partitions:
            end = self._catching_up.get(progress.partition)
            if end is not None and progress.position is not None and progress.position >= end:
                del self._catching_up[progress.partition]
                self._caught_up(progress.partition)

    def _caught_up(self, partition: int) -> None:
        self._live.add(partition)
        since, records = self._history.pop(partition, (time.monotonic(), 0))
        # What start-up costs: the history a new owner reads before it acts.
        log.info(
            "%s: partition %d caught up, %d record(s) of history read in %.2f s",
            self.topic, partition, records, time.monotonic() - since,
        )  # fmt: skip
        self.handler.caught_up(partition)

    def _bound(self, tp: TopicPartition) -> int | None:
        if tp.partition not in self._live:
            return 0  # history not read yet: the handler cannot know what is done
        committable = self.handler.committable(tp.partition)
        return 0 if committable is None else committable
