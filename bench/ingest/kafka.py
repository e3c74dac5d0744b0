"""Kafka for the bench: our own embedded Apache Kafka broker, and reading a topic back.

The bench never uses the shared development broker implicitly: it starts
``streams.broker.KafkaBroker`` with its own data folder (one JVM for the whole run),
unless ``KAFKA_BOOTSTRAP_SERVERS`` names a broker to use instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker import KafkaBroker
from streams.events import InstanceReceived, decode
from streams.kafka import LogReader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BenchKafka:
    """Where the bench's broker is and, if the bench started it, its pid and version."""

    bootstrap: str
    pid: int | None
    description: str


@contextlib.contextmanager
def bench_kafka(data_dir: Path) -> Iterator[BenchKafka]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else an embedded broker in ``data_dir``."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield BenchKafka(external, None, f"external Kafka at {external}")
        return
    broker = KafkaBroker(data_dir, heap="768m")
    with broker:
        yield BenchKafka(broker.bootstrap_servers, broker.pid, broker.description)


@dataclass(frozen=True, slots=True)
class TopicCount:
    """Records on a topic: all of them, ``instance.received`` ones, their distinct SOPs."""

    records: int
    received: int
    sop_uids: frozenset[str]


async def _read_topic(bootstrap: str, topic: str, timeout_s: float) -> TopicCount:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    # Let aiokafka's no-group offset task start: cancelling it before its first step
    # makes consumer.stop() raise CancelledError (aiokafka 0.14).
    await asyncio.sleep(0)
    try:
        async with LogReader(bootstrap) as reader:
            tps = [TopicPartition(topic, p) for p in await reader.partitions(topic)]
        if not tps:
            return TopicCount(0, 0, frozenset())
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = received = 0
        uids: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if loop.time() > deadline:
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                for record in batch:
                    records += 1
                    data = decode(record.value).data if record.value else None
                    if isinstance(data, InstanceReceived):
                        received += 1
                        uids.add(data.sop_instance_uid)
        return TopicCount(records, received, frozenset(uids))
    finally:
        await consumer.stop()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> TopicCount:
    """Read ``topic`` from the beginning to its current end and count the events."""
    return asyncio.run(_read_topic(bootstrap, topic, timeout_s))
