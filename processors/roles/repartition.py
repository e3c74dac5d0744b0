"""Repartitioning: the instances of one AE title re-keyed by its group key (issue 14).

A processor forms groups from one partition at a time. The instances topic is keyed by
the called AE title and the patient, so a ``groupBy`` nested in a patient (Patient,
Study, Series) keeps each group in one partition; any other tag (Modality,
StationName, ...) does not. For such an AE title the process runs a
:class:`Repartitioner`: consumer group ``<prefix>.repartition.<AE>`` on the instances
topic, copying each instance of the AE title, byte for byte, to
``<prefix>.rekeyed.<AE>`` keyed by its group key, with the instance's log time as the
record's timestamp (the rekeyed topic keeps ``CreateTime``). The AE title's lane reads
that topic (``read_committed``) instead of the instances topic -- as Kafka Streams and
Quix Streams do for a ``groupBy`` on another key.

Exactly once (consume-transform-produce, KIP-98): every instances partition ``p`` has
a transactional producer of its own, ``transactional_id``
``<prefix>.repartition.<AE>.<p>``, and the copies of one batch of ``p`` commit in one
transaction with the consumer offset after it. A new owner of ``p`` initialises the
same transactional id before it reads: the old owner's open transaction is aborted and
its later commits fail (fenced); the new owner then reads the committed offset again,
so it starts exactly where the last committed transaction ended.

Time: a rekeyed partition's clock ticks are written by the ticker of its owner, and
only once this group's committed offsets reached the end every instances partition had
when the watermark was read (:class:`RepartitionGate`): nothing appended before the
watermark can arrive in the rekeyed partition after the tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord, TopicPartition

from processors.roles.repartition_gate import RepartitionGate
from processors.runtime import processor_classes
from streams.config import AdapterConfig
from streams.events import EventDecodeError, InstanceReceived, decode
from streams.kafka import KafkaConnection, ensure_topics, rekeyed_topic, rekeyed_topic_configs

log = logging.getLogger(__name__)

KeyFn = Callable[[InstanceReceived], str]
RecordKeyFn = Callable[[str, str], str]  # (AE title, group key) -> record key


def repartition_group(prefix: str, ae_title: str) -> str:
    """Consumer group (and transactional id prefix) of ``ae_title``'s repartitioner."""
    return f"{prefix}.repartition.{ae_title}"


def rekey(
    records: Sequence[ConsumerRecord[bytes, bytes]],
    ae_title: str,
    key_fn: KeyFn,
    record_key: RecordKeyFn,
) -> tuple[list[tuple[str, bytes, int]], int]:
    """The copies to write for ``records`` of one partition (pure): ``(key, value, log
    time)`` of every instance of ``ae_title``, and how many records could not be read.
    ``record_key`` hides the group key as the bus's keys hide a Patient ID (a group key
    may be an identifier, e.g. an Accession Number)."""
    prefix = f"{ae_title}/".encode()
    out: list[tuple[str, bytes, int]] = []
    unreadable = 0
    for record in records:
        key, value = record.key, record.value
        if key is None or value is None or not key.startswith(prefix):
            continue  # another AE title's instance, a clock tick, a request
        try:
            data = decode(value).data
        except EventDecodeError:
            unreadable += 1
            continue
        if isinstance(data, InstanceReceived) and data.called_ae == ae_title:
            out.append((record_key(ae_title, key_fn(data)), value, record.timestamp))
    return out, unreadable


class Repartitioner:
    """Copies ``ae_title``'s instances into ``target`` keyed by ``key_fn`` (see the
    module docstring); :meth:`run` until its stop event is set."""

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        prefix: str,
        ae_title: str,
        key_fn: KeyFn,
        record_key: RecordKeyFn,
        source: str,
        target: str,
        client_id: str,
        max_records: int = 500,
        poll_ms: int = 100,
        retry_s: float = 1.0,
    ) -> None:
        self.kafka = kafka
        self.ae_title = ae_title
        self.key_fn = key_fn
        self.record_key = record_key
        self.source = source
        self.target = target
        self.group_id = repartition_group(prefix, ae_title)
        self.client_id = client_id
        self.max_records = max_records
        self.poll_ms = poll_ms
        self.retry_s = retry_s
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._reseek: set[int] = set()
        self._unowned: set[int] = set()  # assigned, but the producer could not start yet
        # A rebalance callback must not stop a producer inside a transaction: aiokafka's
        # commit then waits forever for an end the stopped sender never reports.
        self._owning = asyncio.Lock()
        self.copied = 0
        self.unreadable = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Copy until ``stop``; a broker error stops the repartitioner (the role fails,
        a restart resumes from the last committed transaction)."""
        consumer = self.kafka.consumer(
            client_id=f"{self.client_id}-repartition",
            group_id=self.group_id,
            max_poll_records=self.max_records,
        )
        consumer.subscribe([self.source], listener=_Listener(self))
        await consumer.start()
        try:
            while not stop.is_set():
                if self._unowned:
                    await self._take_unowned(consumer)
                batches = await consumer.getmany(
                    timeout_ms=self.poll_ms, max_records=self.max_records
                )
                for tp, records in batches.items():
                    if tp.partition in self._reseek:
                        # Fetched before the fencing settled: read from the commit again
                        # (outside the rebalance callback, where it cannot be asked).
                        self._reseek.discard(tp.partition)
                        committed = await consumer.committed(tp)
                        consumer.seek(tp, committed or 0)
                    elif records:
                        await self._copy(tp, records)
        finally:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            await self._release(list(self._producers))

    async def _copy(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        async with self._owning:
            await self._copy_owned(tp, records)

    async def _copy_owned(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        producer = self._producers.get(tp.partition)
        if producer is None:
            return  # fenced: not ours any more (the rebalance that follows says so)
        copies, unreadable = rekey(records, self.ae_title, self.key_fn, self.record_key)
        next_offset = records[-1].offset + 1
        try:
            async with producer.transaction():
                sent = [
                    await producer.send(self.target, value=value, key=key.encode(), timestamp_ms=at)
                    for key, value, at in copies
                ]
                await asyncio.gather(*sent)
                await producer.send_offsets_to_transaction({tp: next_offset}, self.group_id)
        except ProducerFenced:
            log.warning(
                "repartitioner %s: partition %d is copied by another process now",
                self.ae_title,
                tp.partition,
            )
            await self._release([tp.partition])
            return
        self.copied += len(copies)
        self.unreadable += unreadable

    async def _acquire(self, partitions: list[int]) -> None:
        """Own ``partitions``: fence their previous owner (its open transaction is
        aborted); their first batch is then discarded and read again from the offset
        the last committed transaction left (see :meth:`_copy`)."""
        fresh = [p for p in partitions if p not in self._producers]
        producers = {
            p: self.kafka.producer(
                client_id=f"{self.client_id}-repartition-{p}",
                transactional_id=f"{self.group_id}.{p}",
                enable_idempotence=True,
                acks="all",
            )
            for p in fresh
        }
        started = await asyncio.gather(
            *(producer.start() for producer in producers.values()), return_exceptions=True
        )
        for (p, producer), result in zip(producers.items(), started, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled
            if result is None:
                self._producers[p] = producer
                self._unowned.discard(p)
                self._reseek.add(p)
                continue
            # A broker that just came back may not know a coordinator yet: its batches
            # are not copied (nor committed) until the run loop takes it again.
            self._unowned.add(p)
            with contextlib.suppress(Exception):
                await producer.stop()
            log.warning(
                "repartitioner %s: cannot take partition %d yet (%s); trying again",
                self.ae_title,
                p,
                result,
            )
        log.info("repartitioner %s: copying partitions %s", self.ae_title, sorted(self._producers))

    async def _take_unowned(self, consumer: Any) -> None:
        """Start the producers :meth:`_acquire` could not, then read those partitions
        again from their commit (what was fetched meanwhile was not copied)."""
        async with self._owning:
            waiting = sorted(self._unowned)
            await self._acquire(waiting)
        for p in waiting:
            tp = TopicPartition(self.source, p)
            if p in self._producers and p in self._reseek and tp in consumer.assignment():
                self._reseek.discard(p)
                committed = await consumer.committed(tp)
                with contextlib.suppress(IllegalStateError):
                    consumer.seek(tp, committed or 0)
        if self._unowned:
            await asyncio.sleep(self.retry_s)

    async def _release(self, partitions: list[int]) -> None:
        self._reseek.difference_update(partitions)
        self._unowned.difference_update(partitions)
        producers = [self._producers.pop(p) for p in partitions if p in self._producers]
        for producer in producers:
            with contextlib.suppress(KafkaError):
                await producer.stop()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Repartitioner) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.owner._owning:  # after the transaction in flight ended
            await self.owner._release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.owner._owning:
            await self.owner._acquire(sorted(tp.partition for tp in assigned))


class Repartitioning:
    """The repartitioned AE titles of one process: their rekeyed topics, copiers and
    tick gates (``keys``: AE title -> group key, :func:`repartition_keys`;
    ``record_keys``: the bus's record keys, :class:`~streams.events.RecordKeys`)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        prefix: str,
        instances_topic: str,
        keys: Mapping[str, KeyFn],
        record_keys: RecordKeyFn,
        client_id: str,
    ) -> None:
        self.kafka = kafka
        self.prefix = prefix
        self.instances_topic = instances_topic
        self.keys = dict(keys)
        self.record_keys = record_keys
        self.client_id = client_id
        self.topics = {ae: rekeyed_topic(prefix, ae) for ae in self.keys}
        self.gates = {
            self.topics[ae]: RepartitionGate(
                kafka,
                source=instances_topic,
                group_id=repartition_group(prefix, ae),
                client_id=client_id,
            )
            for ae in self.keys
        }
        self._tasks: list[asyncio.Task[None]] = []

    async def create_topics(
        self, partitions: int, replication_factor: int, settings: Mapping[str, str] | None = None
    ) -> dict[str, int]:
        """Create the rekeyed topics with the instances topic's (real) partition count
        and ``settings`` (default: :func:`~streams.kafka.rekeyed_topic_configs`)."""
        for gate in self.gates.values():
            gate.partitions = partitions
        topics = dict.fromkeys(self.topics.values(), partitions)
        return await ensure_topics(
            self.kafka,
            topics,
            replication_factor,
            configs=dict.fromkeys(topics, settings or rekeyed_topic_configs()),
        )

    def start(self, done: asyncio.Event) -> list[asyncio.Task[None]]:
        """Start one copier per AE title; each runs until ``done`` or fails."""
        self._tasks = [
            asyncio.create_task(
                Repartitioner(
                    self.kafka,
                    prefix=self.prefix,
                    ae_title=ae,
                    key_fn=key,
                    record_key=self.record_keys,
                    source=self.instances_topic,
                    target=self.topics[ae],
                    client_id=self.client_id,
                ).run(done),
                name=f"repartition-{ae}",
            )
            for ae, key in self.keys.items()
        ]
        return self._tasks

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The running copiers."""
        return list(self._tasks)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Wait for the copiers (after ``done``; cancelled past ``timeout_s``: what they
        did not commit is copied again by the next owner) and close the gates."""
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for gate in self.gates.values():
            await gate.close()

    def failure(self) -> BaseException | None:
        """Why a copier stopped, if one did."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None


def repartition_keys(config: AdapterConfig) -> dict[str, KeyFn]:
    """The AE titles whose groups span patients, with the key that keeps each group in
    one partition (:meth:`JobProcessor.repartition_key`)."""
    classes = processor_classes(config)
    keys: dict[str, KeyFn] = {}
    for index, ae in enumerate(config.scp.ae_titles):
        cls = classes[ae.ae_title]
        settings, _ = cls.parse_settings(
            ae.ae_title, ae.processor_settings, where=f"scp.ae_titles[{index}]"
        )
        key = cls.repartition_key(settings)
        if key is not None:
            keys[ae.ae_title] = key
    return keys
