"""Publishing events: acknowledged by all in-sync replicas before a call returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from streams.errors import BrokerError
from streams.events import Envelope, encode
from streams.lifecycle import Service

log = logging.getLogger(__name__)


class EventPublisher(Service):
    """An async context manager around ``AIOKafkaProducer`` for event envelopes.

    ``acks="all"`` always; idempotent by default (no duplicates or reordering on
    retries). A broker that refuses ``InitProducerId`` gets a non-idempotent producer
    and a warning (:attr:`idempotent` tells which). Create it inside the running loop.
    Keys are UTF-8 strings such as ``<called_ae>/<PatientID>``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "dicom-adapter",
        idempotent: bool = True,
        linger_ms: int = 5,
        request_timeout_ms: int = 30_000,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
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
                    self.bootstrap_servers,
                    type(exc).__name__,
                    exc,
                )
        self._producer = await self._open(idempotent=False)
        self._idempotent = False

    async def _open(self, *, idempotent: bool) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
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
            raise BrokerError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
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
        self,
        topic: str,
        items: Iterable[tuple[str, Envelope]],
        *,
        partitions: Sequence[int | None] | None = None,
    ) -> list[tuple[int, int]]:
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
