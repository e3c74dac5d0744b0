"""Follow ``<prefix>.jobs`` as a consumer group, rebuilding state before acting.

Thin aiokafka shell (to be replaced by ``streams.kafka.observable.KafkaSource`` once it
supports rebalance hooks). On every assignment each new partition is read **from the
beginning** up to its end offset at assignment time; the handler folds those records
(``caught_up`` tells it when the history is complete) and only then acts. So a job whose
``job.submitted`` was written by a previous owner — even one that crashed before
committing — is never submitted again. Offsets are committed manually, only up to what the
handler says is done (``committable``), so consumer-group lag shows outstanding work.

Delivery settings follow STYLE.md §9: auto-commit off, ``auto_offset_reset=earliest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from streams.errors import BrokerError
from streams.events import Envelope, EventDecodeError, decode

log = logging.getLogger(__name__)


class LedgerHandler(Protocol):
    """What a follower drives; all methods are called from the event loop, in order."""

    def assigned(self, partitions: frozenset[int]) -> None:
        """These partitions are now ours; their history follows from offset 0."""

    async def revoked(self, partitions: frozenset[int]) -> None:
        """These partitions are no longer ours: drop waiting work, finish in-flight work."""

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        """Fold one event (and, once the partition is caught up, act on it)."""

    def caught_up(self, partition: int) -> None:
        """The partition's history up to its end at assignment time has been folded."""

    def committable(self, partition: int) -> int | None:
        """Next offset of ``partition`` that may be committed (``None``: nothing new)."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, follower: LedgerFollower) -> None:
        self.follower = follower

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.follower.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.follower.on_assigned(assigned)


class LedgerFollower:
    """Consume ``topic`` in ``group_id`` and feed ``handler``; see the module docstring."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        handler: LedgerHandler,
        client_id: str = "dicom-adapter",
        commit_interval_s: float = 1.0,
    ) -> None:
        self.topic = topic
        self.handler = handler
        self.commit_interval_s = commit_interval_s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._catching_up: dict[int, int] = {}  # partition -> end offset at assignment
        self._rewind: set[TopicPartition] = set()
        self._committed: dict[int, int] = {}
        self.skipped = 0

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Pause new partitions until they are rewound to their beginning."""
        mine = {tp for tp in assigned if tp.topic == self.topic}
        if not mine:
            return
        partitions = frozenset(tp.partition for tp in mine)
        self.handler.assigned(partitions)
        # Paused until rewound: no record of them is delivered from the committed offset.
        # The rewind itself needs the broker, so it runs (and is retried) in the main loop.
        self._consumer.pause(*mine)
        self._rewind |= mine
        log.info("jobs ledger: assigned partitions %s of %s", sorted(partitions), self.topic)

    async def _rewind_assigned(self) -> None:
        """Seek newly assigned partitions to their beginning and note their end."""
        tps = [tp for tp in self._rewind if tp in self._consumer.assignment()]
        self._rewind.intersection_update(tps)
        if not tps:
            return
        try:
            ends = await self._consumer.end_offsets(tps)
            starts = await self._consumer.beginning_offsets(tps)
        except KafkaError as exc:
            log.warning("jobs ledger: cannot read offsets of %s yet (%s); retrying", tps, exc)
            return
        for tp in tps:
            if tp not in self._consumer.assignment():
                continue
            self._consumer.seek(tp, starts[tp])
            self._consumer.resume(tp)
            self._rewind.discard(tp)
            if ends[tp] > starts[tp]:
                self._catching_up[tp.partition] = ends[tp]
            else:
                self.handler.caught_up(tp.partition)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let the handler finish in-flight work, then commit what is done."""
        mine = {tp for tp in revoked if tp.topic == self.topic}
        if not mine:
            return
        partitions = frozenset(tp.partition for tp in mine)
        self._rewind -= mine
        await self.handler.revoked(partitions)
        with contextlib.suppress(KafkaError):
            await self.commit(set(partitions))
        for p in partitions:
            self._catching_up.pop(p, None)
            self._committed.pop(p, None)

    async def commit(self, partitions: set[int] | None = None) -> None:
        """Commit the handler's committable offsets (only those that moved)."""
        assignment = {tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic}
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for p in partitions if partitions is not None else assignment:
            if p in self._catching_up or TopicPartition(self.topic, p) in self._rewind:
                continue  # history not read yet: the handler cannot know what is done
            offset = self.handler.committable(p)
            if offset is not None and offset != self._committed.get(p):
                offsets[TopicPartition(self.topic, p)] = OffsetAndMetadata(offset, "")
        if offsets:
            await self._consumer.commit(offsets)
            for tp, meta in offsets.items():
                self._committed[tp.partition] = meta.offset

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; commits on the way and once more at the end."""
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise BrokerError(f"cannot reach Kafka to follow {self.topic}: {exc}") from exc
        self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + self.commit_interval_s
        try:
            while not stop.is_set():
                if self._rewind:
                    await self._rewind_assigned()
                batch = await self._consumer.getmany(timeout_ms=200, max_records=1000)
                for tp, records in batch.items():
                    for rec in records:
                        self._deliver(tp.partition, rec.offset, rec.key, rec.value)
                await self._check_caught_up()
                if loop.time() >= next_commit:
                    try:
                        await self.commit()
                    except KafkaError as exc:  # e.g. a rebalance in progress: next round
                        log.warning("jobs ledger: commit failed, will retry: %s", exc)
                    next_commit = loop.time() + self.commit_interval_s
            with contextlib.suppress(KafkaError):
                await self.commit()
        finally:
            await self._consumer.stop()

    def _deliver(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        try:
            if value is None:
                raise EventDecodeError("empty record")
            env = decode(value)
        except EventDecodeError as exc:
            self.skipped += 1
            log.warning("skipping record %s[%d]@%d: %s", self.topic, partition, offset, exc)
            return
        self.handler.record(partition, offset, (key or b"").decode("utf-8", "replace"), env)

    async def _check_caught_up(self) -> None:
        for p, end in list(self._catching_up.items()):
            tp = TopicPartition(self.topic, p)
            if tp not in self._consumer.assignment():
                continue
            if await self._consumer.position(tp) >= end:
                del self._catching_up[p]
                log.debug("jobs ledger: partition %d caught up at %d", p, end)
                self.handler.caught_up(p)
