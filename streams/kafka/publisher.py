"""Publishing events: acknowledged by all in-sync replicas before a call returns.

:class:`Publisher` is what every writer of the adapter needs (the SCP's delivery, the
ledger writer, the submitter, the reclaimer); :class:`EventPublisher` is the one
implementation on Kafka.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

from streams.errors import BrokerError
from streams.events import Envelope, encode
from streams.kafka.clients import Connection, connection
from streams.lifecycle import Service, first_of

log = logging.getLogger(__name__)

#: Pauses between attempts of :func:`publish_until_acked` (the last one repeats).
PUBLISH_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


Items = Iterable[tuple[str, Envelope]]
"""``(key, envelope)`` pairs to write in order."""
Placement = Sequence[int | None] | None
"""Per item, the partition to write to (``None``: the key decides)."""
Positions = list[tuple[int, int]]
"""Per item, ``(partition, offset)`` where it was written."""


class Publisher(Protocol):
    """Writes events and returns only once they are durable (acks=all)."""

    async def publish(
        self, topic: str, key: str, env: Envelope, *, partition: int | None = None
    ) -> tuple[int, int]:
        """Write ``env`` under ``key``; return ``(partition, offset)``; raise
        :class:`~streams.errors.BrokerError` when the broker did not acknowledge it."""
        ...

    async def publish_many(
        self, topic: str, items: Items, *, partitions: Placement = None
    ) -> Positions:
        """Write ``(key, envelope)`` pairs in order; return their positions in order."""
        ...


class EventPublisher(Service):
    """An async context manager around ``AIOKafkaProducer`` for event envelopes.

    ``acks="all"`` always; idempotent by default (no duplicates or reordering on
    retries). A broker that refuses ``InitProducerId`` gets a non-idempotent producer
    and a warning (:attr:`idempotent` tells which). Create it inside the running loop.
    Keys are UTF-8 strings such as ``<called_ae>/<PatientID>``.
    """

    def __init__(
        self,
        kafka: Connection,
        *,
        client_id: str = "dicom-adapter",
        idempotent: bool = True,
        linger_ms: int = 5,
        request_timeout_ms: int = 30_000,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.kafka = connection(kafka)
        self.client_id = client_id
        self._want_idempotent = idempotent
        self._idempotent = False
        self._linger_ms = linger_ms
        self._request_timeout_ms = request_timeout_ms
        self._options = dict(producer_options or {})
        self._producer: Any = None

    @property
    def idempotent(self) -> bool:
        """Whether the running producer is idempotent."""
        return self._idempotent

    async def start(self) -> None:
        """Connect; raises :class:`BrokerError` if Kafka cannot be reached."""
        if self._producer is not None:
            return
        if self._want_idempotent:
            try:
                self._producer = await self._open(idempotent=True)
                self._idempotent = True
                return
            except KafkaConnectionError:
                raise
            except KafkaError as exc:
                log.warning(
                    "the broker at %s refused an idempotent producer (%s: %s); publishing "
                    "WITHOUT idempotence: a retried send may duplicate or reorder events",
                    self.kafka,
                    type(exc).__name__,
                    exc,
                )
        self._producer = await self._open(idempotent=False)
        self._idempotent = False

    async def _open(self, *, idempotent: bool) -> Any:
        producer = self.kafka.producer(
            client_id=self.client_id,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
            **self._options,
        )
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await producer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.kafka}: {exc}") from exc
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def stop(self) -> None:
        """Flush what is buffered and disconnect. Idempotent."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _running(self) -> Any:
        if self._producer is None:
            raise BrokerError("EventPublisher is not started; use 'async with EventPublisher(...)'")
        return self._producer

    async def publish(
        self, topic: str, key: str, env: Envelope, *, partition: int | None = None
    ) -> tuple[int, int]:
        """Send one event and wait for the broker's ack; return ``(partition, offset)``.

        ``partition`` overrides the key's partition (default: the key decides).
        """
        producer = self._running()
        try:
            meta = await producer.send_and_wait(
                topic, encode(env), key=key.encode("utf-8"), partition=partition
            )
        except KafkaError as exc:
            raise BrokerError(f"publishing {env.type} to {topic} failed: {exc}") from exc
        return int(meta.partition), int(meta.offset)

    async def publish_many(
        self, topic: str, items: Items, *, partitions: Placement = None
    ) -> Positions:
        """Send a batch of ``(key, envelope)``; return their ``(partition, offset)`` in order.

        Events are handed to the producer in order, so the order on each partition is the
        order of ``items``. ``partitions`` (same length) overrides the key's partition per
        item (``None``: the key decides). Returns only after every event was acknowledged;
        if any failed, raises :class:`BrokerError` (the others may have been written:
        callers retry by id).
        """
        producer = self._running()
        batch = list(items)
        chosen: Sequence[int | None] = partitions if partitions is not None else [None] * len(batch)
        if len(chosen) != len(batch):
            raise ValueError("publish_many: partitions must have one entry per item")
        try:
            futures = [
                await producer.send(
                    topic, encode(env), key=key.encode("utf-8"), partition=partition
                )
                for (key, env), partition in zip(batch, chosen, strict=True)
            ]
            metas = await asyncio.gather(*futures)
        except KafkaError as exc:
            raise BrokerError(f"publishing a batch to {topic} failed: {exc}") from exc
        return [(int(m.partition), int(m.offset)) for m in metas]


async def publish_until_acked(
    publisher: Publisher,
    topic: str,
    key: str,
    env: Envelope,
    stop: asyncio.Event,
    *,
    partition: int | None = None,
) -> bool:
    """Write ``env`` until the broker acknowledges it; False if ``stop`` was set first.

    For writers whose event records something already done (a submitted job, a
    delivered export): waiting out a broker outage beats redoing the work. Broker errors
    are logged at WARNING and retried after :data:`PUBLISH_RETRY_S`; any other error
    propagates. ``partition`` overrides the key's partition.
    """
    for attempt in itertools.count():
        try:
            await publisher.publish(topic, key, env, partition=partition)
            return True
        except BrokerError as exc:
            delay = PUBLISH_RETRY_S[min(attempt, len(PUBLISH_RETRY_S) - 1)]
            log.warning("cannot write %s, retrying in %.1f s: %s", env.type, delay, exc)
            if await first_of(stop, None, delay):
                return False
    raise AssertionError("unreachable")


def partition_for(key: str, partitions: int) -> int:
    """The partition our producers write ``key`` to on a topic of ``partitions``
    partitions (Kafka's default partitioner: murmur2 of the UTF-8 key), so a reader can
    fetch one key's history from one partition."""
    return int(DefaultPartitioner()(key.encode("utf-8"), list(range(partitions)), []))
