"""The tick gate of a repartitioned AE title (see :mod:`processors.roles.repartition`,
"Time"): a rekeyed partition's clock may tick only once the repartitioner copied
everything the instances topic held when the watermark was read."""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.kafka import KafkaConnection


class RepartitionGate:
    """Whether a tick may be written to an AE title's rekeyed partitions now: the
    repartitioner's committed offsets reached the current end of every instances
    partition (called after the watermark was read; see the module docstring)."""

    def __init__(self, kafka: KafkaConnection, *, source: str, group_id: str, client_id: str):
        self.kafka = kafka
        self.source = source
        self.group_id = group_id
        self.client_id = client_id
        self.partitions = 0  # the instances topic's count, set before the first call
        self._consumer: Any = None
        self._admin: Any = None

    async def __call__(self) -> bool:
        if self._consumer is None:
            self._consumer = self.kafka.consumer(client_id=f"{self.client_id}-gate")
            self._admin = self.kafka.admin(client_id=f"{self.client_id}-gate")
            await self._consumer.start()
            await self._admin.start()
        tps = [TopicPartition(self.source, p) for p in range(self.partitions)]
        ends = await self._consumer.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        for tp in tps:
            done = committed.get(tp)
            if ends[tp] > 0 and (done is None or done.offset < ends[tp]):
                return False
        return True

    async def close(self) -> None:
        """Stop the clients."""
        with contextlib.suppress(KafkaError):
            if self._consumer is not None:
                await self._consumer.stop()
            if self._admin is not None:
                await self._admin.close()
