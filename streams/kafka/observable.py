"""The consumer → reactivex bridge: Kafka records as an Observable on the asyncio loop.

:class:`KafkaSource` reads with ``getmany`` in one task and pushes every decoded record
into :attr:`KafkaSource.records` synchronously on the loop thread (no thread hops; use
:attr:`KafkaSource.scheduler`, an ``AsyncIOScheduler``, for time operators). After each
batch it emits a :class:`BatchEnd` on :attr:`KafkaSource.batches` with per-partition
"caught up" progress.

Offsets: auto-commit is off. A record counts as done once ``on_next`` returned, unless a
subscriber held its offset in :attr:`KafkaSource.commits` during ``on_next`` (an open
group holds its first offset, releases it when the group is closed and recorded).
Safe offsets are committed every ``commit_interval_s``, on revocation and on stop —
never per record. Consumer lag per partition goes to ``streams.metrics`` after each batch.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import reactivex
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from streams import metrics
from streams.errors import BrokerError
from streams.events import EventDecodeError
from streams.kafka.commits import CommitTracker
from streams.kafka.records import BatchEnd, PartitionProgress, Record, decode_message
from streams.lifecycle import Service

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[frozenset[TopicPartition]], Awaitable[None] | None]
"""Called with the partitions assigned to / revoked from this consumer."""

CommitMetadata = Callable[[TopicPartition, int], str]
"""Metadata to store with the commit of ``offset`` on a partition: ``(tp, offset) -> str``."""

Throttle = Callable[[], Awaitable[None]]
"""Awaited before every fetch: subscribers push back by not returning yet."""


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
    ``on_assigned`` / ``on_revoked`` run inside the rebalance, before records of newly
    assigned partitions flow and before revoked ones are committed and forgotten.
    ``commit_metadata(tp, offset)`` supplies the metadata string stored with each
    automatic commit of ``offset`` (e.g. the jobs-topic position). ``throttle`` is
    awaited before every fetch (back-pressure). :meth:`pause` keeps partitions from
    delivering records (e.g. while ``on_assigned`` rebuilds state for them).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        group_id: str,
        *,
        client_id: str = "dicom-adapter",
        max_records: int = 500,
        poll_timeout_ms: int = 100,
        commit_interval_s: float | None = 1.0,
        commit_metadata: CommitMetadata | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = tuple(topics)
        self.group_id = group_id
        self.client_id = client_id
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_interval_s = commit_interval_s
        self._commit_metadata = commit_metadata
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._throttle = throttle
        self._options = dict(consumer_options or {})
        self.commits: CommitTracker[TopicPartition] = CommitTracker()
        self._records: Subject[Record] = Subject()
        self._batches: Subject[BatchEnd] = Subject()
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._consumer: Any = None
        self._admin: Any = None
        self._task: asyncio.Task[None] | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._last_commit = 0.0
        self.skipped = 0

    # -- observables -------------------------------------------------------------

    @property
    def records(self) -> reactivex.Observable[Record]:
        """Every decoded record, in partition order, on the loop thread."""
        return self._records

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
        options: dict[str, Any] = {"fetch_max_wait_ms": 100}
        options.update(self._options)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        consumer.subscribe(list(self.topics), listener=_Listener(self))
        self._consumer = consumer
        self._last_commit = loop.time()
        self._task = asyncio.create_task(self._read(), name=f"kafka-source-{self.group_id}")

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Deliver no records of ``partitions`` (fetched ones are dropped) until resumed.

        Call it synchronously inside ``on_assigned`` to rebuild state before records flow.
        """
        consumer = self._consumer
        if consumer is None:
            raise BrokerError("KafkaSource is not started")
        owned = [tp for tp in partitions if tp in consumer.assignment()]
        if owned:
            consumer.pause(*owned)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Deliver records of paused ``partitions`` again (unassigned ones are ignored)."""
        consumer = self._consumer
        if consumer is None:
            raise BrokerError("KafkaSource is not started")
        owned = [tp for tp in partitions if tp in consumer.assignment()]
        if owned:
            consumer.resume(*owned)

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
            if self._admin is not None:
                await self._admin.close()
                self._admin = None

    async def join(self) -> None:
        """Wait until reading ends; re-raises the error that ended it, if any."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- commits -----------------------------------------------------------------

    async def commit(
        self,
        offsets: Mapping[TopicPartition, int] | None = None,
        metadata: str | Mapping[TopicPartition, str] | None = None,
    ) -> dict[TopicPartition, int]:
        """Commit ``offsets`` (default: the tracker's pending safe offsets); return them.

        ``metadata`` is one string for all, a mapping per partition, or ``None`` to use
        ``commit_metadata``. Only assigned partitions are committed. Raises
        :class:`BrokerError` if the broker refuses (e.g. the group rebalanced).
        """
        consumer = self._consumer
        if consumer is None:
            raise BrokerError("KafkaSource is not started")
        wanted = dict(self.commits.pending() if offsets is None else offsets)
        assigned = self.assignment()
        chosen = {tp: off for tp, off in wanted.items() if tp in assigned}
        if not chosen:
            return {}
        payload = {
            tp: OffsetAndMetadata(off, self._metadata(tp, off, metadata))
            for tp, off in chosen.items()
        }
        try:
            await consumer.commit(payload)
        except KafkaError as exc:
            raise BrokerError(f"commit for group {self.group_id!r} failed: {exc}") from exc
        self.commits.committed(chosen)
        log.debug("group %s committed %s", self.group_id, chosen)
        return chosen

    async def committed(
        self, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Committed offsets with their metadata (default: the current assignment).

        Partitions without a commit are left out.
        """
        wanted = list(partitions) if partitions is not None else sorted(self.assignment())
        if not wanted:
            return {}
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-offsets"
            )
            await admin.start()
            self._admin = admin
        found = await self._admin.list_consumer_group_offsets(self.group_id, partitions=wanted)
        return {tp: om for tp, om in found.items() if om.offset >= 0}

    def _metadata(
        self, tp: TopicPartition, offset: int, metadata: str | Mapping[TopicPartition, str] | None
    ) -> str:
        if isinstance(metadata, str):
            return metadata
        if metadata is not None:
            return metadata.get(tp, "")
        return self._commit_metadata(tp, offset) if self._commit_metadata is not None else ""

    async def _commit_pending(self, only: frozenset[TopicPartition] | None = None) -> None:
        if self._consumer is None:
            return
        pending = self.commits.pending()
        if only is not None:
            pending = {tp: off for tp, off in pending.items() if tp in only}
        if not pending:
            return
        try:
            await self.commit(pending)
        except BrokerError as exc:
            # The next owner re-reads from the last good commit; the ledger dedupes.
            log.warning("could not commit %d partition(s): %s", len(pending), exc)

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
        await _call(self._on_assigned, assigned)

    # -- reading -----------------------------------------------------------------

    async def _read(self) -> None:
        consumer = self._consumer
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._throttle is not None:
                    await self._throttle()
                batch = await consumer.getmany(
                    timeout_ms=self.poll_timeout_ms, max_records=self.max_records
                )
                delivered = skipped = 0
                for tp, messages in batch.items():
                    for msg in messages:
                        record = self._decode(tp, msg)
                        if record is None:
                            skipped += 1
                        else:
                            self._records.on_next(record)
                            delivered += 1
                        self.commits.mark_done(tp, msg.offset)
                self._batches.on_next(BatchEnd(delivered, skipped, await self._snapshot()))
                interval = self.commit_interval_s
                if interval is not None and loop.time() - self._last_commit >= interval:
                    self._last_commit = loop.time()
                    await self._commit_pending()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reading from %s stopped", ", ".join(self.topics))
            self._records.on_error(exc)
            self._batches.on_error(exc)
            raise

    def _decode(self, tp: TopicPartition, msg: Any) -> Record | None:
        try:
            return decode_message(tp.topic, tp.partition, msg)
        except EventDecodeError as exc:
            self.skipped += 1
            # The error names what is wrong, never the record's content (it may hold PHI).
            log.warning(
                "skipping undecodable record %s[%d]@%d: %s", tp.topic, tp.partition, msg.offset, exc
            )
            return None

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
