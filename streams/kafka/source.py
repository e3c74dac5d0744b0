"""The consumer-group shell: Kafka records as a reactivex Observable on the asyncio loop.

Every consumer-group member of the adapter is a :class:`KafkaSource` (the processor
runtime reads the instances topic with it; :class:`~streams.kafka.follower.LogFollower`
builds the submitter's and reclaimer's ledger followers on it). It reads with
``getmany`` in one task, decodes each partition's part of a batch in one call and pushes
the records synchronously on the loop thread (no thread hops; use
:attr:`KafkaSource.scheduler`, an ``AsyncIOScheduler``, for time operators): one by one
into :attr:`KafkaSource.records`, and as one list per partition and read round into
:attr:`KafkaSource.record_batches` (one Rx hop per batch instead of per record: the
processor runtime's path). After each batch it emits a :class:`BatchEnd` on
:attr:`KafkaSource.batches` with per-partition "caught up" progress.

Offsets: auto-commit is off. A record counts as done once ``on_next`` returned; the
subscriber says which records it still needs through ``commit_bound(tp)`` -- the oldest
offset still needed on a partition (``None``: none). Safe offsets are committed every
``commit_interval_s``, on revocation and on stop, never per record, and never below what
the group had committed when the partition was assigned. Consumer lag per partition goes
to ``streams.metrics`` after each batch.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import reactivex
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from streams import metrics
from streams.errors import BrokerError
from streams.events import EventDecodeError
from streams.kafka.clients import Connection, connection
from streams.kafka.commits import CommitBound
from streams.kafka.committer import CommitMetadata, Committer, Metadata
from streams.kafka.records import BatchEnd, PartitionProgress, Record, decode_messages
from streams.kafka.retry import retry_transient
from streams.lifecycle import Service

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[frozenset[TopicPartition]], Awaitable[None] | None]
"""Called with the partitions assigned to / revoked from this consumer."""

Throttle = Callable[[], Awaitable[None]]
"""Awaited before every fetch: subscribers push back by not returning yet."""

ASSIGNMENT_TIMEOUT_S = 60.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source._revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._source._assigned(frozenset(assigned))


async def _call(callback: PartitionsCallback | None, partitions: frozenset[TopicPartition]) -> None:
    if callback is None:
        return
    result = callback(partitions)
    if inspect.isawaitable(result):
        await result


class KafkaSource(Service):
    """A consumer-group member whose records are a reactivex Observable.

    Create it inside the running loop (``async with KafkaSource(...) as source``).
    On assignment the new partitions are paused at once, the group's committed offsets
    (and metadata) read (:meth:`committed_at`), then ``on_assigned`` runs -- it may
    rebuild state and :meth:`seek` -- and only after it returned do the partitions
    deliver records. If it raises, the source fails and they stay paused.
    ``on_revoked`` runs before revoked partitions are committed and forgotten.
    ``commit_bound(tp)`` is the oldest offset still needed on ``tp``;
    ``commit_metadata(tp, offset)`` the metadata stored with each automatic commit.
    ``throttle`` is awaited before every fetch (back-pressure).
    """

    def __init__(
        self,
        kafka: Connection,
        topics: Sequence[str],
        group_id: str,
        *,
        client_id: str = "dicom-adapter",
        max_records: int = 500,
        poll_timeout_ms: int = 100,
        commit_interval_s: float | None = 1.0,
        commit_bound: CommitBound[TopicPartition] | None = None,
        commit_metadata: CommitMetadata | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        throttle: Throttle | None = None,
        assignment_timeout_s: float = ASSIGNMENT_TIMEOUT_S,
    ) -> None:
        self.kafka = connection(kafka)
        self.topics = tuple(topics)
        self.group_id = group_id
        self.client_id = client_id
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_interval_s = commit_interval_s
        self.assignment_timeout_s = assignment_timeout_s
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._throttle = throttle
        self._options = dict(consumer_options or {})
        self.commits = Committer(
            self.kafka, group_id, client_id, bound=commit_bound, metadata=commit_metadata
        )
        self._records: Subject[Record] = Subject()
        self._record_batches: Subject[Sequence[Record]] = Subject()
        self._batches: Subject[BatchEnd] = Subject()
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._last_commit = 0.0
        self.failure: BaseException | None = None
        self.skipped = 0

    # -- observables -------------------------------------------------------------

    @property
    def records(self) -> reactivex.Observable[Record]:
        """Every decoded record, in partition order, on the loop thread."""
        return self._records

    @property
    def record_batches(self) -> reactivex.Observable[Sequence[Record]]:
        """The same records as :attr:`records`, as one list per partition per read round
        (partition order within each list; never an empty list)."""
        return self._record_batches

    @property
    def batches(self) -> reactivex.Observable[BatchEnd]:
        """One :class:`BatchEnd` after each read round (records first, then the marker)."""
        return self._batches

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The ``AsyncIOScheduler`` of the loop the source runs on."""
        if self._scheduler is None:
            raise BrokerError("KafkaSource is not started")
        return self._scheduler

    @property
    def progress(self) -> Mapping[TopicPartition, PartitionProgress]:
        """Latest progress of each assigned partition."""
        return dict(self._progress)

    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions currently assigned to this member."""
        if self._consumer is None:
            return frozenset()
        return frozenset(self._consumer.assignment())

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Join the group and start reading; raises :class:`BrokerError` if unreachable."""
        if self._consumer is not None:
            return
        loop = asyncio.get_running_loop()
        self._scheduler = AsyncIOScheduler(loop)
        options: dict[str, Any] = {"fetch_max_wait_ms": 100, **self._options}
        consumer = self.kafka.consumer(client_id=self.client_id, group_id=self.group_id, **options)
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.kafka}: {exc}") from exc
        consumer.subscribe(list(self.topics), listener=_Listener(self))
        self._consumer = consumer
        self._last_commit = loop.time()
        self._task = asyncio.create_task(self._read(), name=f"kafka-source-{self.group_id}")

    def _running(self) -> Any:
        if self._consumer is None:
            raise BrokerError("KafkaSource is not started")
        return self._consumer

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next (an assigned partition)."""
        self._running().seek(tp, offset)

    async def offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """``(beginning, end)`` offsets of ``partitions`` now."""
        consumer = self._running()
        begins = await consumer.beginning_offsets(list(partitions))
        ends = await consumer.end_offsets(list(partitions))
        return dict(begins), dict(ends)

    async def halt(self) -> None:
        """Stop reading (no more records or batches) but stay in the group, commit nothing.

        The first step of a graceful shutdown: finish in-flight work, then :meth:`stop`
        commits what is safe and leaves. Idempotent.
        """
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Stop reading, commit what is safe, leave the group. Idempotent.

        ``records`` is not completed: completing would flush open windows early; a
        restarted consumer re-reads them from the committed offsets.
        """
        await self.halt()
        consumer = self._consumer
        if consumer is None:
            return
        try:
            await self._commit_pending()
        finally:
            self._consumer = None
            await consumer.stop()
            await self.commits.close()

    async def join(self) -> None:
        """Wait until reading ends; re-raises the error that ended it, if any."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- commits -----------------------------------------------------------------

    async def commit(
        self, offsets: Mapping[TopicPartition, int] | None = None, metadata: Metadata = None
    ) -> dict[TopicPartition, int]:
        """Commit ``offsets`` (default: what is safe within ``commit_bound``); return what
        was committed. ``metadata`` is one string for all, a mapping per partition, or
        ``None`` to use ``commit_metadata``. Only assigned partitions are committed.
        Raises :class:`BrokerError` if the broker refuses (e.g. the group rebalanced).
        """
        return await self.commits.commit(self._running(), offsets, metadata)

    def restamp(self, partitions: Iterable[TopicPartition]) -> None:
        """Store fresh ``commit_metadata`` with the last commit of ``partitions`` at the
        next periodic commit (or at :meth:`stop`), though their offsets did not move."""
        self.commits.restamp(partitions)

    def committed_at(self, tp: TopicPartition) -> OffsetAndMetadata | None:
        """What the group had committed for ``tp`` when it was assigned (``None``: none)."""
        return self.commits.at_assignment(tp)

    async def committed(
        self, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Committed offsets with their metadata, asked of the broker now (default: the
        current assignment). Partitions without a commit are left out."""
        wanted = list(partitions) if partitions is not None else sorted(self.assignment())
        return await self.commits.committed(wanted)

    async def _commit_pending(self, only: frozenset[TopicPartition] | None = None) -> None:
        if self._consumer is not None:
            await self.commits.commit_pending(self._consumer, only)

    # -- rebalance ---------------------------------------------------------------

    async def _revoked(self, revoked: frozenset[TopicPartition]) -> None:
        if not revoked:  # aiokafka reports an empty revocation before the first assignment
            return
        log.info("group %s: %d partition(s) revoked", self.group_id, len(revoked))
        await _call(self._on_revoked, revoked)
        await self._commit_pending(revoked)
        self.commits.forget(revoked)
        for tp in revoked:
            self._progress.pop(tp, None)
            metrics.forget_partition(self.group_id, tp.topic, tp.partition)

    async def _assigned(self, assigned: frozenset[TopicPartition]) -> None:
        log.info("group %s: %d partition(s) assigned", self.group_id, len(assigned))
        consumer = self._consumer
        if not assigned or consumer is None:
            return
        # Before the first await: no record of a new partition may be delivered until
        # the subscriber rebuilt its state for it (the fetcher runs meanwhile).
        consumer.pause(*assigned)
        try:
            found = await retry_transient(
                lambda: self.committed(sorted(assigned)),
                what=f"reading the commits of group {self.group_id}",
                timeout_s=self.assignment_timeout_s,
            )
        except BrokerError as exc:
            self._fail(exc)
            return
        self.commits.assigned(found)
        try:
            await _call(self._on_assigned, assigned)
        except Exception as exc:  # a subscriber that cannot rebuild stops the source
            self._fail(exc)
            return
        owned = [tp for tp in assigned if tp in consumer.assignment()]
        if owned and self.failure is None:
            consumer.resume(*owned)

    def _fail(self, error: BaseException) -> None:
        """Stop delivering (subscribers get ``on_error``) because ``error`` happened."""
        if self.failure is not None:
            return
        self.failure = error
        log.error("consumer of %s stopped: %s", ", ".join(self.topics), error)
        consumer = self._consumer
        if consumer is not None:
            consumer.pause(*consumer.assignment())
        exc = error if isinstance(error, Exception) else RuntimeError(error)
        self._records.on_error(exc)
        self._record_batches.on_error(exc)
        self._batches.on_error(exc)

    # -- reading -----------------------------------------------------------------

    async def _read(self) -> None:
        consumer = self._consumer
        loop = asyncio.get_running_loop()
        try:
            while self.failure is None:
                if self._throttle is not None:
                    await self._throttle()
                batch = await consumer.getmany(
                    timeout_ms=self.poll_timeout_ms, max_records=self.max_records
                )
                if self.failure is not None:
                    return
                delivered = skipped = 0
                for tp, messages in batch.items():
                    if not messages:
                        continue
                    records = decode_messages(
                        tp.topic,
                        tp.partition,
                        messages,
                        functools.partial(self._skip, tp),
                    )
                    delivered += len(records)
                    skipped += len(messages) - len(records)
                    if records:
                        self._deliver(records)
                    # every record of the list was handed over (or skipped): on_next returned
                    self.commits.tracker.mark_done(tp, messages[-1].offset)
                self._batches.on_next(BatchEnd(delivered, skipped, await self._snapshot()))
                interval = self.commit_interval_s
                if interval is not None and loop.time() - self._last_commit >= interval:
                    self._last_commit = loop.time()
                    await self._commit_pending()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reading from %s stopped", ", ".join(self.topics))
            self._fail(exc)
            raise

    def _deliver(self, records: list[Record]) -> None:
        if self._records.observers:
            on_next = self._records.on_next
            for record in records:
                on_next(record)
        if self._record_batches.observers:
            self._record_batches.on_next(records)

    def _skip(self, tp: TopicPartition, msg: Any, exc: EventDecodeError) -> None:
        self.skipped += 1
        # The error names what is wrong, never the record's content (it may hold PHI).
        log.warning(
            "skipping undecodable record %s[%d]@%d: %s", tp.topic, tp.partition, msg.offset, exc
        )

    async def _snapshot(self) -> tuple[PartitionProgress, ...]:
        consumer = self._consumer
        out: list[PartitionProgress] = []
        for tp in sorted(consumer.assignment()):
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp) if highwater is not None else None
            progress = PartitionProgress(tp.topic, tp.partition, position, highwater)
            self._progress[tp] = progress
            if position is not None and highwater is not None:
                metrics.set_consumer_lag(self.group_id, tp.topic, tp.partition, highwater, position)
            out.append(progress)
        return tuple(out)
