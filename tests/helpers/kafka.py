"""Read events back from a real Kafka topic (no consumer group, all partitions)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.events import Envelope, decode


async def read_events(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 30.0
) -> list[tuple[str, Envelope]]:
    """Every event on ``topic`` once at least ``at_least`` are there (or the timeout).

    After the count is reached it reads on to the current end of every partition, so
    duplicates written so far are returned too. Returns ``(key, envelope)`` pairs.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # readiness, not a wait
                await asyncio.sleep(0.1)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[str, Envelope]] = []
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for records in batch.values():
                for r in records:
                    out.append((r.key.decode() if r.key else "", decode(r.value)))
            if len(out) >= at_least:
                ends = await consumer.end_offsets(tps)
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    return out
        return out
    finally:
        await consumer.stop()
